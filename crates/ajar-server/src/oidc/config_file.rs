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

use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use super::{IssuerConfig, KeySource};

/// The label of an issuer when the file names none.
pub const DEFAULT_LABEL: &str = "oidc";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    issuers: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
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
}

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
        out.push(NamedIssuer { label, config });
    }
    Ok(out)
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
}
