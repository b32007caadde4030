//! The issuers `ajar serve --oidc-config FILE` trusts, read from a JSON file:
//!
//! ```json
//! { "issuers": [ { "name": "corp", "issuer": "https://idp.example.com", "audience": "ajar",
//!                  "jwksUri": "https://idp.example.com/keys", "caFile": "/etc/ajar/idp-ca.pem",
//!                  "principalClaim": "email", "nameClaim": "name", "groupsClaim": "groups" } ] }
//! ```
//!
//! Exactly one of `jwksUri` and `jwksFile`. `name` labels the issuer in principal IDs
//! (`oidc:corp/alice@example.com`, `group:corp/admins`); it may be left out when there is one issuer
//! (it is then `oidc`).
//!
//! An issuer may also sign people in to the dashboard (the authorization-code flow with PKCE):
//!
//! ```json
//! "signIn": { "clientId": "ajar-dashboard", "clientSecret": "…",
//!             "authorizationEndpoint": "https://idp.example.com/authorize",
//!             "tokenEndpoint": "https://idp.example.com/token",
//!             "redirectUri": "https://ajar.example.com/ui/signin/oidc/callback",
//!             "scopes": ["openid", "profile", "email"] }
//! ```
//!
//! `clientSecret` is left out for a public client; `scopes` defaults to the three above and must
//! include `openid`. The endpoints and the redirect URI must be https, except on a loopback address.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::{Host, Url};

use super::signin::CALLBACK_PATH;
use super::{IssuerConfig, KeySource, SignInConfig};

/// The label of an issuer when the file names none.
pub const DEFAULT_LABEL: &str = "oidc";

// No Debug: the client secret must not reach a log.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    issuers: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    name: Option<String>,
    issuer: String,
    audience: String,
    jwks_uri: Option<String>,
    jwks_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    principal_claim: Option<String>,
    name_claim: Option<String>,
    groups_claim: Option<String>,
    sign_in: Option<SignInEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignInEntry {
    client_id: String,
    client_secret: Option<String>,
    authorization_endpoint: String,
    token_endpoint: String,
    redirect_uri: String,
    scopes: Option<Vec<String>>,
}

/// The scopes asked for when the file names none.
const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// One trusted issuer and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedIssuer {
    pub label: String,
    pub config: IssuerConfig,
}

fn valid_label(label: &str) -> bool {
    (1..=32).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Reads and checks the file; errors name the file and the entry.
pub fn read(path: &Path) -> Result<Vec<NamedIssuer>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse(bytes: &[u8]) -> Result<Vec<NamedIssuer>, String> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| format!("not a valid OIDC configuration: {e}"))?;
    if file.issuers.is_empty() {
        return Err("\"issuers\" is empty".to_owned());
    }
    let several = file.issuers.len() > 1;
    let mut out: Vec<NamedIssuer> = Vec::with_capacity(file.issuers.len());
    for (i, e) in file.issuers.into_iter().enumerate() {
        let at = format!("issuers[{i}]");
        let label = match (e.name, several) {
            (Some(name), _) => name,
            (None, false) => DEFAULT_LABEL.to_owned(),
            (None, true) => return Err(format!("{at}: give each issuer a \"name\" when there are several")),
        };
        if !valid_label(&label) {
            return Err(format!("{at}.name: '{label}' must be 1 to 32 lowercase letters, digits or '-'"));
        }
        if out.iter().any(|o| o.label == label) {
            return Err(format!("{at}.name: '{label}' names two issuers"));
        }
        let keys = match (e.jwks_uri, e.jwks_file) {
            (Some(url), None) => KeySource::Url(Url::parse(&url).map_err(|e| format!("{at}.jwksUri: '{url}' is not a URL: {e}"))?),
            (None, Some(file)) => KeySource::File(file),
            _ => return Err(format!("{at}: give exactly one of \"jwksUri\" and \"jwksFile\"")),
        };
        let mut config = IssuerConfig::new(e.issuer, e.audience, keys);
        config.ca_file = e.ca_file;
        if let Some(claim) = e.principal_claim {
            config.principal_claim = claim;
        }
        config.name_claim = e.name_claim;
        config.groups_claim = e.groups_claim;
        if let Some(sign_in) = e.sign_in {
            // The start of a sign-in is /ui/signin/oidc/{label}, beside the callback's own path.
            if CALLBACK_PATH.rsplit('/').next() == Some(label.as_str()) {
                return Err(format!("{at}.name: '{label}' is the sign-in callback's path; name the issuer otherwise"));
            }
            config.sign_in = Some(sign_in_config(&format!("{at}.signIn"), sign_in)?);
        }
        out.push(NamedIssuer { label, config });
    }
    Ok(out)
}

fn sign_in_config(at: &str, e: SignInEntry) -> Result<SignInConfig, String> {
    if e.client_id.trim().is_empty() {
        return Err(format!("{at}.clientId: is empty"));
    }
    if e.client_secret.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(format!("{at}.clientSecret: is empty; leave it out for a public client (PKCE alone)"));
    }
    let authorization_endpoint = endpoint(at, "authorizationEndpoint", &e.authorization_endpoint)?;
    let token_endpoint = endpoint(at, "tokenEndpoint", &e.token_endpoint)?;
    let redirect_uri = endpoint(at, "redirectUri", &e.redirect_uri)?;
    if !redirect_uri.path().ends_with(CALLBACK_PATH) || redirect_uri.query().is_some() {
        return Err(format!(
            "{at}.redirectUri: '{}' must be this server's address (as browsers reach it) followed by {CALLBACK_PATH}, without a query",
            e.redirect_uri
        ));
    }
    let scopes = match e.scopes {
        None => DEFAULT_SCOPES.map(str::to_owned).to_vec(),
        Some(scopes) => scopes,
    };
    // RFC 6749 3.3: printable ASCII but space, '"' and '\'.
    if let Some(bad) = scopes.iter().find(|s| s.is_empty() || !s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')) {
        return Err(format!("{at}.scopes: '{bad}' is not a scope (printable ASCII without spaces, quotes or backslashes)"));
    }
    if !scopes.iter().any(|s| s == "openid") {
        return Err(format!("{at}.scopes: must include \"openid\", or the issuer sends no ID token"));
    }
    Ok(SignInConfig {
        client_id: e.client_id,
        client_secret: e.client_secret,
        authorization_endpoint,
        token_endpoint,
        redirect_uri,
        scopes,
    })
}

/// A sign-in URL: https, or http on a loopback address (where nothing crosses a network).
fn endpoint(at: &str, field: &str, value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("{at}.{field}: '{value}' is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err(format!("{at}.{field}: '{value}' has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{at}.{field}: '{value}' is not https: codes, tokens and secrets would cross the network in the clear \
                 (plain http is accepted only on {}, {} or localhost)",
                Ipv4Addr::LOCALHOST,
                Ipv6Addr::LOCALHOST
            ));
        }
        other => return Err(format!("{at}.{field}: '{value}' is a {other} URL, not https")),
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{at}.{field}: '{value}' must have no fragment ('#') and no user name or password"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, expected: Result<Vec<(&str, &str)>, &str>) {
        let got = parse(json.as_bytes()).map(|v| v.into_iter().map(|n| (n.label, n.config.issuer)).collect::<Vec<_>>());
        match expected {
            Ok(want) => assert_eq!(got, Ok(want.into_iter().map(|(l, i)| (l.to_owned(), i.to_owned())).collect()), "{json}"),
            Err(part) => {
                let err = got.expect_err(json);
                assert!(err.contains(part), "{json}: {err}");
            }
        }
    }

    #[test]
    fn issuers_file() {
        let one = r#"{"issuers":[{"issuer":"https://a","audience":"ajar","jwksFile":"/k.json"}]}"#;
        check(one, Ok(vec![("oidc", "https://a")]));
        let two = r#"{"issuers":[{"name":"a","issuer":"https://a","audience":"x","jwksFile":"/k"},
                                  {"name":"b","issuer":"https://b","audience":"x","jwksUri":"https://b/keys","principalClaim":"email"}]}"#;
        check(two, Ok(vec![("a", "https://a"), ("b", "https://b")]));
        check(r#"{"issuers":[]}"#, Err("empty"));
        check(r#"{"issuers":[{"issuer":"https://a","audience":"x"}]}"#, Err("exactly one of"));
        check(r#"{"issuers":[{"issuer":"https://a","audience":"x","jwksFile":"/k","jwksUri":"https://a/k"}]}"#, Err("exactly one of"));
        check(r#"{"issuers":[{"issuer":"https://a","audience":"x","jwksFile":"/k","scope":"openid"}]}"#, Err("unknown field"));
        check(r#"{"issuers":[{"name":"Corp!","issuer":"https://a","audience":"x","jwksFile":"/k"}]}"#, Err("lowercase"));
        let unnamed =
            r#"{"issuers":[{"issuer":"https://a","audience":"x","jwksFile":"/k"},{"issuer":"https://b","audience":"x","jwksFile":"/k"}]}"#;
        check(unnamed, Err("give each issuer a \"name\""));
        let twice = r#"{"issuers":[{"name":"a","issuer":"https://a","audience":"x","jwksFile":"/k"},{"name":"a","issuer":"https://b","audience":"x","jwksFile":"/k"}]}"#;
        check(twice, Err("names two issuers"));
    }

    /// One issuer named `corp` whose `signIn` block is `sign_in` (JSON members).
    fn with_sign_in(sign_in: &str) -> String {
        format!(r#"{{"issuers":[{{"name":"corp","issuer":"https://a","audience":"x","jwksFile":"/k","signIn":{{{sign_in}}}}}]}}"#)
    }

    const ENDPOINTS: &str = r#""authorizationEndpoint":"https://idp.example/authorize","tokenEndpoint":"https://idp.example/token""#;
    const REDIRECT: &str = r#""redirectUri":"https://ajar.example/ui/signin/oidc/callback""#;

    #[test]
    fn sign_in_blocks() {
        let parsed = parse(with_sign_in(&format!(r#""clientId":"dash",{ENDPOINTS},{REDIRECT}"#)).as_bytes()).unwrap();
        let sign_in = parsed[0].config.sign_in.clone().unwrap();
        assert_eq!((sign_in.client_id.as_str(), sign_in.client_secret.as_deref()), ("dash", None));
        assert_eq!(sign_in.scopes, ["openid", "profile", "email"]);
        assert_eq!(sign_in.redirect_uri.as_str(), "https://ajar.example/ui/signin/oidc/callback");
        let behind_a_prefix = r#""redirectUri":"https://gw.example/ajar/ui/signin/oidc/callback""#;
        let loopback = r#""authorizationEndpoint":"http://127.0.0.1:8080/auth","tokenEndpoint":"http://[::1]:8080/token""#;
        for good in [
            format!(r#""clientId":"dash","clientSecret":"s","scopes":["openid","groups"],{ENDPOINTS},{REDIRECT}"#),
            format!(r#""clientId":"dash",{ENDPOINTS},{behind_a_prefix}"#),
            format!(r#""clientId":"dash",{loopback},"redirectUri":"http://localhost:8443/ui/signin/oidc/callback""#),
        ] {
            check(&with_sign_in(&good), Ok(vec![("corp", "https://a")]));
        }
        for (bad, error) in [
            (format!(r#""clientId":" ",{ENDPOINTS},{REDIRECT}"#), "issuers[0].signIn.clientId: is empty"),
            (format!(r#""clientId":"d","clientSecret":"",{ENDPOINTS},{REDIRECT}"#), "issuers[0].signIn.clientSecret: is empty"),
            (format!(r#""clientId":"d",{REDIRECT}"#), "missing field"),
            (format!(r#""clientId":"d","prompt":"login",{ENDPOINTS},{REDIRECT}"#), "unknown field"),
            (
                format!(
                    r#""clientId":"d","authorizationEndpoint":"http://idp.example/a","tokenEndpoint":"https://idp.example/t",{REDIRECT}"#
                ),
                "issuers[0].signIn.authorizationEndpoint: 'http://idp.example/a' is not https",
            ),
            (
                format!(r#""clientId":"d","authorizationEndpoint":"https://idp.example/a","tokenEndpoint":"http://10.0.0.1/t",{REDIRECT}"#),
                "issuers[0].signIn.tokenEndpoint: 'http://10.0.0.1/t' is not https",
            ),
            (
                format!(r#""clientId":"d","authorizationEndpoint":"idp/a","tokenEndpoint":"https://idp.example/t",{REDIRECT}"#),
                "authorizationEndpoint: 'idp/a' is not a URL",
            ),
            (
                format!(
                    r#""clientId":"d","authorizationEndpoint":"https://idp.example/a#x","tokenEndpoint":"https://idp.example/t",{REDIRECT}"#
                ),
                "no fragment",
            ),
            (
                format!(r#""clientId":"d",{ENDPOINTS},"redirectUri":"https://ajar.example/callback""#),
                "followed by /ui/signin/oidc/callback",
            ),
            (format!(r#""clientId":"d",{ENDPOINTS},"redirectUri":"https://ajar.example/ui/signin/oidc/callback?x=1""#), "without a query"),
            (format!(r#""clientId":"d","scopes":["profile"],{ENDPOINTS},{REDIRECT}"#), "must include \"openid\""),
            (format!(r#""clientId":"d","scopes":["openid","a b"],{ENDPOINTS},{REDIRECT}"#), "'a b' is not a scope"),
        ] {
            check(&with_sign_in(&bad), Err(error));
        }
        let named_callback = format!(
            r#"{{"issuers":[{{"name":"callback","issuer":"https://a","audience":"x","jwksFile":"/k","signIn":{{"clientId":"d",{ENDPOINTS},{REDIRECT}}}}}]}}"#
        );
        check(&named_callback, Err("issuers[0].name: 'callback' is the sign-in callback's path"));
    }
}
