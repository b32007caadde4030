//! OIDC bearer tokens: verifies JWTs issued by configured OpenID Connect
//! issuers and turns them into an [`OidcIdentity`].
//!
//! Each issuer is trusted for one audience, with its signing keys taken from a
//! JWKS (an HTTPS URL or a file). Only asymmetric signatures are accepted, and
//! the algorithm is checked against an allow-list before any key is looked up,
//! so `alg: none` and HMAC tokens "signed" with a public key never get near a
//! key. Keys embedded in or pointed to by the token header (`jwk`, `jku`,
//! `x5u`, `x5c`) are never used.
//!
//! Keys rotate: a token whose `kid` is not in the cached set makes the issuer's
//! JWKS be loaded again, at most once per [`MIN_RELOAD_INTERVAL`] per issuer so
//! that made-up `kid`s cannot make this server hammer the issuer; the set is
//! also reloaded when it is older than [`MAX_KEY_AGE`]. A failed reload keeps
//! the previous keys.
//!
//! Errors never contain the token or any part of it (not even decoded header
//! or claim values, which the caller controls): they name the check that
//! failed and the configured issuer involved.

pub mod config_file;
mod jwks;
pub mod signin;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Map, Value};
use url::Url;

use self::jwks::{Key, KeySet, Source};
use crate::sessions::same_secret;

pub use self::jwks::{FETCH_TIMEOUT, MAX_JWKS_BYTES};
pub use self::signin::SignInConfig;

/// Clock skew tolerated between this server and the issuers, in seconds, on
/// `exp`, `nbf` and `iat`: a minute absorbs ordinary NTP drift without
/// noticeably extending a token's life.
pub const CLOCK_LEEWAY_SECS: u64 = 60;
/// An issuer's JWKS is loaded again for an unknown `kid` at most this often.
pub const MIN_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// Cached keys older than this are reloaded at the next verification.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// Longer bearer tokens are refused unread. Real ID and access tokens weigh
/// one or two KiB, a few more with many groups.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

const DEFAULT_PRINCIPAL_CLAIM: &str = "sub";
const DEFAULT_NAME_CLAIM: &str = "name";
const DEFAULT_GROUPS_CLAIM: &str = "groups";

/// Where an issuer's signing keys (a JWKS document) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The issuer's `jwks_uri`; HTTPS only.
    Url(Url),
    /// A JWKS JSON file, read again when keys rotate.
    File(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Url(url) => write!(f, "{url}"),
            KeySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// Must be the token's `aud`, or one of them.
    pub audience: String,
    pub keys: KeySource,
    /// Root CA certificate(s), PEM, trusted for the JWKS URL and the
    /// sign-in's token endpoint instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The claim naming the caller (a non-empty string). With `email`, a
    /// token whose `email_verified` is `false` is refused.
    pub principal_claim: String,
    /// The claim with the caller's display name (`None`: `name`); when the
    /// token lacks it, the principal is shown.
    pub name_claim: Option<String>,
    /// The claim listing the caller's groups (`None`: `groups`): an array of
    /// strings, or one string; absent means no groups.
    pub groups_claim: Option<String>,
    /// Dashboard sign-in through this issuer, when configured.
    pub sign_in: Option<SignInConfig>,
}

impl IssuerConfig {
    /// An issuer with the default claims: `sub`, `name`, `groups`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, keys: KeySource) -> IssuerConfig {
        IssuerConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            keys,
            ca_file: None,
            principal_claim: DEFAULT_PRINCIPAL_CLAIM.to_owned(),
            name_claim: None,
            groups_claim: None,
            sign_in: None,
        }
    }
}

/// A verified ID token from a dashboard sign-in: whom it names, and when it
/// expires (seconds since 1970).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdToken {
    pub identity: OidcIdentity,
    pub expires_at: u64,
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    /// The configured issuer that vouched for the caller.
    pub issuer: String,
    /// The principal claim's value (unique within the issuer only).
    pub subject: String,
    pub display_name: String,
    pub groups: Vec<String>,
}

/// Why a configuration or a token was refused. No message contains the token
/// or anything decoded from it.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("OIDC issuer {issuer:?}: {reason}")]
    Config { issuer: String, reason: String },
    #[error("OIDC issuer {issuer:?}: loading its signing keys from {from}: {reason}")]
    Keys { issuer: String, from: String, reason: String },

    #[error("the bearer token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    #[error(
        "the token's algorithm ({alg}) is refused: only asymmetric signatures are accepted \
         (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"
    )]
    UnsupportedAlgorithm { alg: &'static str },
    #[error("the token's issuer ('iss') is not a configured OIDC issuer")]
    UnknownIssuer,
    #[error(
        "no signing key of issuer {issuer:?} has the token's key id ('kid'); its keys are loaded again for \
         an unknown key id at most every {} s, so a key that was just rotated in may take that long",
        MIN_RELOAD_INTERVAL.as_secs()
    )]
    UnknownKey { issuer: String },
    #[error("the token names no key id ('kid') and issuer {issuer:?} has {count} keys, so none can be chosen")]
    AmbiguousKey { issuer: String, count: usize },
    #[error("issuer {issuer:?} has no key for the token's key id that may verify {alg} (the key is {key})")]
    KeyAlgorithmMismatch { issuer: String, alg: &'static str, key: String },
    #[error("issuer {issuer:?}'s key cannot be used to verify: {reason}")]
    UnusableKey { issuer: String, reason: &'static str },
    #[error("the token's signature does not verify with issuer {issuer:?}'s key")]
    BadSignature { issuer: String },
    #[error("the token has expired ('exp' is past, beyond {CLOCK_LEEWAY_SECS} s of clock leeway)")]
    Expired,
    #[error("the token is not valid yet ('nbf' is ahead, beyond {CLOCK_LEEWAY_SECS} s of clock leeway): check the clocks")]
    NotYetValid,
    #[error("the token was issued in the future ('iat' is ahead, beyond {CLOCK_LEEWAY_SECS} s of clock leeway): check the clocks")]
    IssuedInFuture,
    #[error("the token's audience ('aud') does not include {audience:?}, the audience configured for issuer {issuer:?}")]
    WrongAudience { issuer: String, audience: String },
    #[error("the ID token was issued by another issuer than {issuer:?}, where the sign-in started")]
    WrongIssuer { issuer: String },
    #[error("the ID token was issued to another client ('azp') than {client_id:?}")]
    WrongAuthorizedParty { client_id: String },
    #[error("the ID token's nonce is not the one this sign-in sent: it was not issued for this sign-in")]
    WrongNonce,
    #[error("OIDC issuer {issuer:?} has no sign-in configured")]
    NoSignIn { issuer: String },
    #[error("the token lacks the claim {claim:?}")]
    MissingClaim { claim: String },
    #[error("the token's claim {claim:?} {problem}")]
    InvalidClaim { claim: String, problem: &'static str },
}

/// Verifies bearer JWTs against the configured issuers. Cheap to share in an
/// `Arc`; verifications run concurrently.
pub struct OidcVerifier {
    issuers: HashMap<String, Issuer>,
}

impl fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.issuers.keys().collect();
        names.sort();
        f.debug_struct("OidcVerifier").field("issuers", &names).finish()
    }
}

struct Issuer {
    config: IssuerConfig,
    source: Source,
    /// The client for the issuer's JWKS URL and token endpoint, if it has either.
    http: Option<reqwest::Client>,
    keys: RwLock<Arc<KeySet>>,
    /// When the keys were last loaded again after start (successfully or
    /// not). Held across the load, so concurrent verifications needing a
    /// reload wait for the one in progress instead of loading too.
    last_reload: tokio::sync::Mutex<Option<Instant>>,
    min_reload_interval: Duration,
    max_key_age: Duration,
}

/// The parts of a token read before its signature is checked.
struct Unverified {
    alg: Algorithm,
    kid: Option<String>,
    claims: Map<String, Value>,
}

#[derive(serde::Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

impl OidcVerifier {
    /// Checks each issuer's configuration and loads its keys. Any problem is
    /// an error naming the issuer.
    pub async fn new(issuers: Vec<IssuerConfig>) -> Result<OidcVerifier, OidcError> {
        let mut by_name = HashMap::new();
        let mut system_roots = None;
        for config in issuers {
            let config_err = |reason: String| OidcError::Config { issuer: config.issuer.clone(), reason };
            check_config(&config).map_err(config_err)?;
            if by_name.contains_key(&config.issuer) {
                return Err(config_err("configured more than once".to_owned()));
            }
            // One client per issuer, for its JWKS URL and its sign-in's token endpoint alike. Plain http
            // is allowed only for a token endpoint on loopback (the configuration checks that); the JWKS
            // URL is https, checked above.
            let fetches = matches!(config.keys, KeySource::Url(_)) || config.sign_in.is_some();
            let https_only = config.sign_in.as_ref().is_none_or(|s| s.token_endpoint.scheme() == "https");
            let http = if fetches {
                Some(http_client(config.ca_file.as_deref(), &mut system_roots, https_only).map_err(config_err)?)
            } else {
                None
            };
            let source = match (&config.keys, &http) {
                (KeySource::Url(url), Some(client)) => Source::Url { url: url.clone(), client: client.clone() },
                (KeySource::Url(_), None) => return Err(config_err("no HTTPS client for the JWKS URL".to_owned())),
                (KeySource::File(path), _) => Source::File(path.clone()),
            };
            let keys = source.load().await.map_err(|reason| OidcError::Keys {
                issuer: config.issuer.clone(),
                from: config.keys.to_string(),
                reason,
            })?;
            tracing::info!(issuer = %config.issuer, keys = keys.len(), from = %config.keys, "loaded OIDC signing keys");
            let issuer = Issuer {
                source,
                http,
                keys: RwLock::new(Arc::new(KeySet { keys, loaded_at: Instant::now() })),
                last_reload: tokio::sync::Mutex::new(None),
                min_reload_interval: MIN_RELOAD_INTERVAL,
                max_key_age: MAX_KEY_AGE,
                config,
            };
            by_name.insert(issuer.config.issuer.clone(), issuer);
        }
        Ok(OidcVerifier { issuers: by_name })
    }

    /// The HTTP client of a configured issuer with a JWKS URL or a sign-in (cheap to clone: it shares
    /// its connection pool).
    pub(crate) fn http_client(&self, issuer: &str) -> Option<reqwest::Client> {
        self.issuers.get(issuer).and_then(|i| i.http.clone())
    }

    /// Whether `token` has the shape of a JWS compact serialization (three
    /// base64url parts separated by dots; the signature may be empty), so an
    /// authenticator can send it here rather than to its own token lookup.
    pub fn looks_like_jwt(token: &str) -> bool {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let base64url = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        !header.is_empty() && !payload.is_empty() && base64url(header) && base64url(payload) && base64url(signature)
    }

    /// Verifies `token` and returns who it identifies.
    pub async fn verify(&self, token: &str) -> Result<OidcIdentity, OidcError> {
        let unverified = read_unverified(token)?;
        let iss = match unverified.claims.get("iss") {
            None => return Err(missing("iss")),
            Some(Value::String(iss)) => iss,
            Some(_) => return Err(invalid("iss", "is not a string")),
        };
        let issuer = self.issuers.get(iss).ok_or(OidcError::UnknownIssuer)?;
        let key = issuer.key_for(unverified.alg, unverified.kid.as_deref()).await?;
        let claims = issuer.check(token, &key, &unverified, &issuer.config.audience)?;
        issuer.identity(&claims)
    }

    /// Verifies the ID token of a dashboard sign-in started with `issuer`: its
    /// signature and standard claims as for [`OidcVerifier::verify`], but issued by
    /// that issuer, to the sign-in's client (`aud`, and `azp` when present or
    /// when there are several audiences), and carrying the sign-in's `nonce`.
    pub async fn verify_id_token(&self, issuer: &str, token: &str, nonce: &str) -> Result<IdToken, OidcError> {
        let issuer = self.issuers.get(issuer).ok_or(OidcError::UnknownIssuer)?;
        let client_id = match &issuer.config.sign_in {
            Some(sign_in) => sign_in.client_id.as_str(),
            None => return Err(OidcError::NoSignIn { issuer: issuer.config.issuer.clone() }),
        };
        let unverified = read_unverified(token)?;
        if unverified.claims.get("iss").and_then(Value::as_str) != Some(issuer.config.issuer.as_str()) {
            return Err(OidcError::WrongIssuer { issuer: issuer.config.issuer.clone() });
        }
        let key = issuer.key_for(unverified.alg, unverified.kid.as_deref()).await?;
        let claims = issuer.check(token, &key, &unverified, client_id)?;
        let several_audiences = claims.get("aud").and_then(Value::as_array).is_some_and(|aud| aud.len() > 1);
        match claims.get("azp") {
            None if !several_audiences => {}
            None => return Err(missing("azp")),
            Some(Value::String(azp)) if azp == client_id => {}
            Some(_) => return Err(OidcError::WrongAuthorizedParty { client_id: client_id.to_owned() }),
        }
        match claims.get("nonce") {
            None => return Err(missing("nonce")),
            Some(Value::String(sent)) if same_secret(sent, nonce) => {}
            Some(_) => return Err(OidcError::WrongNonce),
        }
        // `check` made sure `exp` is a number of seconds.
        let expires_at = claims.get("exp").and_then(Value::as_f64).map(|exp| exp.max(0.0) as u64).ok_or_else(|| missing("exp"))?;
        Ok(IdToken { identity: issuer.identity(&claims)?, expires_at })
    }
}

fn check_config(config: &IssuerConfig) -> Result<(), String> {
    if config.issuer.is_empty() {
        return Err("the issuer is empty".to_owned());
    }
    if config.audience.is_empty() {
        return Err("the audience is empty".to_owned());
    }
    let claims = [Some(&config.principal_claim), config.name_claim.as_ref(), config.groups_claim.as_ref()];
    if claims.into_iter().flatten().any(String::is_empty) {
        return Err("a claim name is empty".to_owned());
    }
    match &config.keys {
        KeySource::Url(url) if url.scheme() != "https" => {
            Err(format!("the JWKS URL {url} is not https: keys fetched in the clear could be replaced by anyone on the path"))
        }
        KeySource::Url(url) if url.host().is_none() => Err(format!("the JWKS URL {url} has no host")),
        KeySource::File(_) if config.ca_file.is_some() && config.sign_in.is_none() => {
            Err("a CA file applies only to a JWKS URL or a sign-in's token endpoint, but the keys come from a file and there is no sign-in"
                .to_owned())
        }
        _ => Ok(()),
    }
}

/// A client for an issuer's JWKS URL and token endpoint, trusting its CA file
/// or else the system's root certificates (loaded once for all issuers), and
/// following no redirect. `https_only`: refuse plain http (allowed only for a
/// sign-in endpoint on a loopback address, which the configuration checks).
/// No timeout of its own: each use is bounded as a whole ([`FETCH_TIMEOUT`],
/// [`signin::TOKEN_TIMEOUT`]).
fn http_client(
    ca_file: Option<&Path>,
    system_roots: &mut Option<Vec<CertificateDer<'static>>>,
    https_only: bool,
) -> Result<reqwest::Client, String> {
    let roots = match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("reading the CA file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("the CA file {} holds no PEM certificate", path.display()));
            }
            certs
        }
        None => system_roots.get_or_insert_with(load_system_roots).clone(),
    };
    if roots.is_empty() {
        return Err("no system root certificate was found to check the issuer's certificates: give a CA file".to_owned());
    }
    let mut builder = reqwest::ClientBuilder::new()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .https_only(https_only)
        // A JWKS or token endpoint is served where the issuer's discovery
        // document says; a redirect elsewhere is more likely a mistake or an
        // attack (and would carry the code or the client secret along).
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ajar/", env!("CARGO_PKG_VERSION")));
    for root in roots {
        let cert = reqwest::Certificate::from_der(&root).map_err(|e| format!("a root certificate is unusable: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| format!("cannot set up the HTTPS client: {e}"))
}

fn load_system_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "reading the system's root certificates");
    }
    found.certs
}

/// Decodes the header and claims without trusting them, refusing any
/// algorithm but the accepted asymmetric ones before anything else.
fn read_unverified(token: &str) -> Result<Unverified, OidcError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OidcError::Malformed("it is longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(OidcError::Malformed("it is not three base64url parts separated by dots"));
    };
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| OidcError::Malformed("its header is not base64url"))?;
    let header: Header =
        serde_json::from_slice(&header).map_err(|_| OidcError::Malformed("its header is not a JSON object with string 'alg' and 'kid'"))?;
    let alg = header.alg.ok_or(OidcError::Malformed("its header has no 'alg'"))?;
    let alg = jwks::accepted_algorithm(&alg).ok_or_else(|| OidcError::UnsupportedAlgorithm { alg: algorithm_name(&alg) })?;
    if header.crit.is_some() {
        return Err(OidcError::Malformed("its header lists critical extensions ('crit'), none of which are supported"));
    }
    URL_SAFE_NO_PAD.decode(signature).map_err(|_| OidcError::Malformed("its signature is not base64url"))?;
    let claims = URL_SAFE_NO_PAD.decode(payload).map_err(|_| OidcError::Malformed("its claims are not base64url"))?;
    let claims = serde_json::from_slice(&claims).map_err(|_| OidcError::Malformed("its claims are not a JSON object"))?;
    Ok(Unverified { alg, kid: header.kid, claims })
}

/// The name of a refused algorithm as a fixed string: the token's own text is
/// never echoed.
fn algorithm_name(alg: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "none",
        "HS256",
        "HS384",
        "HS512",
        "ES512",
        "ES256K",
        "RS1",
        "RSA1_5",
        "RSA-OAEP",
        "RSA-OAEP-256",
        "A128KW",
        "A256KW",
        "dir",
        "ECDH-ES",
    ];
    KNOWN.into_iter().find(|k| *k == alg).unwrap_or("an unknown one")
}

fn alg_name(alg: Algorithm) -> &'static str {
    use Algorithm::*;
    match alg {
        HS256 => "HS256",
        HS384 => "HS384",
        HS512 => "HS512",
        ES256 => "ES256",
        ES384 => "ES384",
        RS256 => "RS256",
        RS384 => "RS384",
        RS512 => "RS512",
        PS256 => "PS256",
        PS384 => "PS384",
        PS512 => "PS512",
        EdDSA => "EdDSA",
    }
}

fn missing(claim: &str) -> OidcError {
    OidcError::MissingClaim { claim: claim.to_owned() }
}

fn invalid(claim: &str, problem: &'static str) -> OidcError {
    OidcError::InvalidClaim { claim: claim.to_owned(), problem }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Issuer {
    fn current(&self) -> Arc<KeySet> {
        let keys = self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&keys)
    }

    /// Loads the keys again, unless that was done (or tried) less than the
    /// minimum interval ago. `wait`: whether to wait for a reload already in
    /// progress (then skipped, as it just happened) rather than go on at once.
    async fn reload(&self, wait: bool, why: &'static str) {
        let mut last = if wait {
            self.last_reload.lock().await
        } else {
            match self.last_reload.try_lock() {
                Ok(last) => last,
                Err(_) => return,
            }
        };
        if last.is_some_and(|at| at.elapsed() < self.min_reload_interval) {
            return;
        }
        *last = Some(Instant::now());
        let (issuer, from) = (&self.config.issuer, &self.config.keys);
        match self.source.load().await {
            Ok(keys) => {
                tracing::info!(%issuer, %from, keys = keys.len(), why, "reloaded OIDC signing keys");
                let set = Arc::new(KeySet { keys, loaded_at: Instant::now() });
                *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = set;
            }
            Err(error) => tracing::warn!(%issuer, %from, %error, why, "could not reload OIDC signing keys; keeping the previous ones"),
        }
    }

    /// The key to verify a token signed with `alg` under `kid`, reloading the
    /// key set when it is old or lacks the key.
    async fn key_for(&self, alg: Algorithm, kid: Option<&str>) -> Result<Arc<Key>, OidcError> {
        let mut set = self.current();
        if set.loaded_at.elapsed() >= self.max_key_age {
            // Whoever comes while a reload is under way uses the old keys.
            self.reload(false, "the keys are old").await;
            set = self.current();
        }
        let issuer = || self.config.issuer.clone();
        let Some(kid) = kid else {
            return match set.keys.as_slice() {
                [key] => fits(key, alg, &self.config.issuer),
                keys => Err(OidcError::AmbiguousKey { issuer: issuer(), count: keys.len() }),
            };
        };
        let find = |set: &KeySet| set.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).cloned().collect::<Vec<_>>();
        let mut candidates = find(&set);
        if candidates.is_empty() {
            self.reload(true, "a token names an unknown key id").await;
            candidates = find(&self.current());
        }
        let Some(first) = candidates.first() else {
            return Err(OidcError::UnknownKey { issuer: issuer() });
        };
        match candidates.iter().find(|k| k.fits(alg)) {
            Some(key) => Ok(Arc::clone(key)),
            None => fits(first, alg, &self.config.issuer),
        }
    }

    /// Checks the signature and the standard claims, with `audience` as the
    /// expected `aud`.
    fn check(&self, token: &str, key: &Key, unverified: &Unverified, audience: &str) -> Result<Map<String, Value>, OidcError> {
        let mut validation = Validation::new(unverified.alg);
        validation.leeway = CLOCK_LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[audience]);
        let claims = &unverified.claims;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation).map_err(|e| match e.into_kind() {
            ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => OidcError::BadSignature { issuer: self.config.issuer.clone() },
            ErrorKind::ExpiredSignature => OidcError::Expired,
            ErrorKind::ImmatureSignature => OidcError::NotYetValid,
            ErrorKind::InvalidAudience => OidcError::WrongAudience { issuer: self.config.issuer.clone(), audience: audience.to_owned() },
            ErrorKind::InvalidIssuer => OidcError::UnknownIssuer,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "exp" if claims.contains_key("exp") => invalid("exp", "is not a number of seconds since 1970"),
                "aud" if claims.contains_key("aud") => invalid("aud", "is neither a string nor an array of strings"),
                "iss" if claims.contains_key("iss") => invalid("iss", "is not a string"),
                _ => OidcError::MissingClaim { claim },
            },
            ErrorKind::InvalidAlgorithm => {
                OidcError::KeyAlgorithmMismatch { issuer: self.config.issuer.clone(), alg: alg_name(unverified.alg), key: key.describe() }
            }
            ErrorKind::InvalidEcdsaKey => OidcError::UnusableKey { issuer: self.config.issuer.clone(), reason: "not a valid EC key" },
            ErrorKind::InvalidRsaKey(_) => OidcError::UnusableKey { issuer: self.config.issuer.clone(), reason: "not a valid RSA key" },
            ErrorKind::InvalidKeyFormat => OidcError::UnusableKey { issuer: self.config.issuer.clone(), reason: "malformed key" },
            _ => OidcError::Malformed("it could not be decoded"),
        })?;
        // jsonwebtoken ignores an `nbf` it cannot read, and never looks at `iat`.
        let seconds = |claim: &str| match data.claims.get(claim) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(|| invalid(claim, "is not a number of seconds since 1970")),
            Some(_) => Err(invalid(claim, "is not a number of seconds since 1970")),
        };
        seconds("nbf")?;
        if seconds("iat")?.is_some_and(|iat| iat > (now_secs() + CLOCK_LEEWAY_SECS) as f64) {
            return Err(OidcError::IssuedInFuture);
        }
        Ok(data.claims)
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<OidcIdentity, OidcError> {
        let principal_claim = self.config.principal_claim.as_str();
        let subject = match claims.get(principal_claim) {
            None => return Err(missing(principal_claim)),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(invalid(principal_claim, "is not a non-empty string, so it cannot name the caller")),
        };
        // An address the issuer says it has not verified could be anyone's.
        if principal_claim == "email" && claims.get("email_verified") == Some(&Value::Bool(false)) {
            return Err(invalid("email_verified", "is false, so the email cannot name the caller"));
        }
        let name_claim = self.config.name_claim.as_deref().unwrap_or(DEFAULT_NAME_CLAIM);
        let display_name = match claims.get(name_claim) {
            Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
            _ => subject.clone(),
        };
        let groups_claim = self.config.groups_claim.as_deref().unwrap_or(DEFAULT_GROUPS_CLAIM);
        let groups = match claims.get(groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(group)) => vec![group.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(groups_claim, "holds something other than strings"))?,
            Some(_) => return Err(invalid(groups_claim, "is neither an array of strings nor a string")),
        };
        Ok(OidcIdentity { issuer: self.config.issuer.clone(), subject, display_name, groups })
    }
}

fn fits(key: &Arc<Key>, alg: Algorithm, issuer: &str) -> Result<Arc<Key>, OidcError> {
    if key.fits(alg) {
        Ok(Arc::clone(key))
    } else {
        Err(OidcError::KeyAlgorithmMismatch { issuer: issuer.to_owned(), alg: alg_name(alg), key: key.describe() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const ISS: &str = "https://idp.example.test";

    struct TestKey {
        kid: &'static str,
        encoding: EncodingKey,
        jwk: Value,
    }

    fn key(kid: &'static str) -> TestKey {
        let pair = rcgen::KeyPair::generate().unwrap();
        let raw = pair.public_key_raw();
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&raw[1..33]), "y": b64(&raw[33..])});
        TestKey { kid, encoding: EncodingKey::from_ec_der(&pair.serialize_der()), jwk }
    }

    fn token(key: &TestKey) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.to_owned());
        let now = now_secs();
        let claims = json!({"iss": ISS, "aud": "ajar", "sub": "bob", "exp": now + 300});
        jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
    }

    fn write(path: &std::path::Path, keys: &[&TestKey]) {
        let doc = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        std::fs::write(path, doc.to_string()).unwrap();
    }

    async fn verifier(path: &std::path::Path) -> OidcVerifier {
        OidcVerifier::new(vec![IssuerConfig::new(ISS, "ajar", KeySource::File(path.to_path_buf()))]).await.unwrap()
    }

    fn issuer(verifier: &mut OidcVerifier) -> &mut Issuer {
        verifier.issuers.get_mut(ISS).unwrap()
    }

    #[tokio::test]
    async fn keys_are_reloaded_once_they_are_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let (a, b) = (key("a"), key("b"));
        write(&path, &[&a]);
        let mut verifier = verifier(&path).await;
        write(&path, &[&b]);
        // Fresh keys are used as cached.
        assert_eq!(verifier.verify(&token(&a)).await.unwrap().subject, "bob");
        // Old keys are replaced before use: key a is gone, and the reload
        // just done leaves no second one for the unknown kid.
        issuer(&mut verifier).max_key_age = Duration::ZERO;
        let err = verifier.verify(&token(&a)).await.unwrap_err();
        assert!(matches!(err, OidcError::UnknownKey { .. }), "{err}");
        assert_eq!(verifier.verify(&token(&b)).await.unwrap().subject, "bob");
    }

    #[tokio::test]
    async fn old_keys_stay_in_use_when_reloading_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let a = key("a");
        write(&path, &[&a]);
        let mut verifier = verifier(&path).await;
        std::fs::write(&path, "{").unwrap();
        let issuer = issuer(&mut verifier);
        issuer.max_key_age = Duration::ZERO;
        issuer.min_reload_interval = Duration::ZERO;
        for _ in 0..3 {
            assert_eq!(verifier.verify(&token(&a)).await.unwrap().subject, "bob");
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(verifier.verify(&token(&a)).await.unwrap().subject, "bob");
    }

    #[tokio::test]
    async fn id_tokens_are_for_the_sign_in_client_and_carry_its_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let a = key("a");
        write(&path, &[&a]);
        let sign_in = SignInConfig {
            client_id: "dash".to_owned(),
            client_secret: None,
            authorization_endpoint: Url::parse("https://idp.example.test/authorize").unwrap(),
            token_endpoint: Url::parse("https://idp.example.test/token").unwrap(),
            redirect_uri: Url::parse("https://ajar.example.test/ui/signin/oidc/callback").unwrap(),
            scopes: vec!["openid".to_owned()],
        };
        let config = IssuerConfig { sign_in: Some(sign_in), ..IssuerConfig::new(ISS, "ajar", KeySource::File(path.clone())) };
        let other = IssuerConfig::new("https://other.example.test", "ajar", KeySource::File(path));
        let verifier = OidcVerifier::new(vec![config, other]).await.unwrap();
        let now = now_secs();
        let sign = |changes: Value| {
            let mut claims = json!({"iss": ISS, "aud": "dash", "sub": "bob", "nonce": "n-1", "exp": now + 300});
            for (k, v) in changes.as_object().unwrap() {
                claims[k] = v.clone();
            }
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("a".to_owned());
            jsonwebtoken::encode(&header, &claims, &a.encoding).unwrap()
        };
        let verified = verifier.verify_id_token(ISS, &sign(json!({})), "n-1").await.unwrap();
        assert_eq!((verified.identity.subject.as_str(), verified.expires_at), ("bob", now + 300));
        let with_azp = sign(json!({"aud": ["dash", "api"], "azp": "dash"}));
        assert!(verifier.verify_id_token(ISS, &with_azp, "n-1").await.is_ok());
        // An API token for this server is not an ID token for the dashboard's client.
        assert!(verifier.verify(&sign(json!({"aud": "ajar"}))).await.is_ok());
        let refused = [
            (sign(json!({"nonce": "n-2"})), "nonce is not the one"),
            (sign(json!({"nonce": null})), "nonce is not the one"),
            (sign(json!({"aud": "ajar"})), "does not include \"dash\""),
            (sign(json!({"aud": ["dash", "api"]})), "lacks the claim \"azp\""),
            (sign(json!({"azp": "someone-else"})), "another client"),
            (sign(json!({"iss": "https://other.example.test"})), "another issuer"),
            (sign(json!({"exp": now - 3600})), "expired"),
        ];
        for (token, expected) in refused {
            let err = verifier.verify_id_token(ISS, &token, "n-1").await.unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let mut claims = json!({"iss": ISS, "aud": "dash", "sub": "bob", "exp": now + 300});
        claims.as_object_mut().unwrap().remove("nonce");
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("a".to_owned());
        let without = jsonwebtoken::encode(&header, &claims, &a.encoding).unwrap();
        let err = verifier.verify_id_token(ISS, &without, "n-1").await.unwrap_err().to_string();
        assert!(err.contains("lacks the claim \"nonce\""), "{err}");
        let err = verifier.verify_id_token("https://other.example.test", &sign(json!({})), "n-1").await.unwrap_err();
        assert!(matches!(err, OidcError::NoSignIn { .. }), "{err}");
    }

    #[test]
    fn refused_algorithms_are_named_only_from_a_fixed_list() {
        assert_eq!(algorithm_name("none"), "none");
        assert_eq!(algorithm_name("HS256"), "HS256");
        assert_eq!(algorithm_name("HS256 <script>"), "an unknown one");
    }
}
