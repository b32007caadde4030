//! Dashboard sign-in through an OIDC issuer: the authorization-code flow with PKCE (RFC 7636, S256).
//!
//! Starting a sign-in makes a state, a nonce and a code verifier (256 random bits each) and keeps them
//! here, keyed by the state's hash, for [`PENDING_TTL`], with the hash of a value only the starting
//! browser holds (in a cookie). Anyone may start one, so at most [`MAX_PENDING`] are kept at a time, and
//! at most [`MAX_PENDING_PER_SOURCE`] per source address: past either, the oldest (of that source) is
//! dropped, in time logarithmic in the table's size. The browser is sent to the issuer's
//! authorization endpoint with the state, the nonce and the verifier's S256 challenge. The callback takes
//! the state back once, and only from that browser; the code is then exchanged at the token endpoint with
//! the verifier (so a code intercepted on the way is useless without it), and the ID token that comes back
//! must carry the nonce (checked by [`super::OidcVerifier::verify_id_token`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use url::Url;

use super::config_file::NamedIssuer;
use super::jwks::{read_bounded, transport_message};
use super::{OidcError, OidcVerifier};
use crate::bootstrap::random_secret;
use crate::client_addr::source_key;

/// How long a started sign-in may take to come back.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// Started sign-ins kept at once (a few hundred bytes each); beyond that, the oldest is dropped.
pub const MAX_PENDING: usize = 10_000;
/// Started sign-ins kept per source (an IPv4 address or IPv6 /64); its next start drops its own oldest,
/// so one source starting sign-ins over and over cannot push out everyone else's. Generous, since the
/// people behind one NAT address share it.
pub const MAX_PENDING_PER_SOURCE: usize = 64;
/// The code exchange (connect, TLS, request and answer) must finish within this.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// A larger answer from the token endpoint is refused: real ones (an ID token, an access token, maybe a
/// refresh token) weigh a few KiB.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 256 * 1024;
/// The path the issuer sends the browser back to; a configured redirect URI must end with it.
pub const CALLBACK_PATH: &str = "/ui/signin/oidc/callback";

/// How the dashboard signs in through one issuer (the `signIn` block of the OIDC configuration).
#[derive(Clone, PartialEq, Eq)]
pub struct SignInConfig {
    pub client_id: String,
    /// `None`: a public client, which proves itself with PKCE alone.
    pub client_secret: Option<String>,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    /// Where the issuer sends the browser back: this server's [`CALLBACK_PATH`], as the browser reaches it.
    /// Configured, never taken from a request's Host header.
    pub redirect_uri: Url,
    pub scopes: Vec<String>,
}

impl fmt::Debug for SignInConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "(set)"))
            .field("authorization_endpoint", &self.authorization_endpoint.as_str())
            .field("token_endpoint", &self.token_endpoint.as_str())
            .field("redirect_uri", &self.redirect_uri.as_str())
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A sign-in between its start and its callback.
pub struct Pending {
    /// The label of the issuer it was started with.
    pub label: String,
    /// That issuer (its `iss`).
    pub issuer: String,
    pub nonce: String,
    code_verifier: String,
    /// SHA-256 of the browser's binding cookie.
    browser: [u8; 32],
    expires: Instant,
    /// Who started it ([`source_key`]), and its place in [`PendingTable::order`].
    source: IpAddr,
    place: Place,
}

/// When a started sign-in expires, and a sequence number that sets apart those starting at once.
type Place = (Instant, u64);

/// The sign-ins under way, by state, by age and by source.
#[derive(Default)]
struct PendingTable {
    by_state: HashMap<[u8; 32], Pending>,
    /// Oldest first (all live for the same time).
    order: BTreeMap<Place, [u8; 32]>,
    /// Each source's sign-ins (at most [`MAX_PENDING_PER_SOURCE`]).
    by_source: HashMap<IpAddr, Vec<Place>>,
    next: u64,
}

impl PendingTable {
    fn remove(&mut self, key: &[u8; 32]) -> Option<Pending> {
        let pending = self.by_state.remove(key)?;
        self.order.remove(&pending.place);
        if let Some(places) = self.by_source.get_mut(&pending.source) {
            places.retain(|p| *p != pending.place);
            if places.is_empty() {
                self.by_source.remove(&pending.source);
            }
        }
        Some(pending)
    }

    fn remove_at(&mut self, place: &Place) {
        if let Some(key) = self.order.get(place).copied() {
            self.remove(&key);
        }
    }

    fn insert(&mut self, key: [u8; 32], mut pending: Pending, capacity: usize, now: Instant) {
        while let Some((&place, _)) = self.order.first_key_value().filter(|((expires, _), _)| *expires <= now) {
            self.remove_at(&place);
        }
        if let Some(oldest) = self.by_source.get(&pending.source).filter(|p| p.len() >= MAX_PENDING_PER_SOURCE).and_then(|p| p.iter().min())
        {
            let oldest = *oldest;
            self.remove_at(&oldest);
        }
        if self.by_state.len() >= capacity
            && let Some((&oldest, _)) = self.order.first_key_value()
        {
            self.remove_at(&oldest);
        }
        pending.place = (pending.expires, self.next);
        self.next = self.next.wrapping_add(1);
        self.order.insert(pending.place, key);
        self.by_source.entry(pending.source).or_default().push(pending.place);
        self.by_state.insert(key, pending);
    }
}

/// Why a callback's state was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRefused {
    /// Never issued, already used, or dropped to make room.
    Unknown,
    Expired,
    /// Issued to another browser, or the binding cookie did not come back.
    OtherBrowser,
}

impl StateRefused {
    /// For the activity log.
    pub fn reason(self) -> &'static str {
        match self {
            StateRefused::Unknown => "unknown or already used state",
            StateRefused::Expired => "expired state",
            StateRefused::OtherBrowser => "state not bound to this browser",
        }
    }
}

/// Why the code exchange failed. Messages hold nothing the issuer sent but fixed error codes.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("its token endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("its token endpoint refused the code ({0})")]
    Refused(&'static str),
    #[error("its token endpoint answered HTTP {0}")]
    Status(u16),
    #[error("its token endpoint's answer {0}")]
    Malformed(String),
}

/// The sign-ins this server offers, and those under way.
pub struct SignIn {
    issuers: Vec<SignInIssuer>,
    pending: Mutex<PendingTable>,
    capacity: usize,
}

struct SignInIssuer {
    label: String,
    issuer: String,
    config: SignInConfig,
    http: reqwest::Client,
}

fn hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// The S256 code challenge of a code verifier (RFC 7636, 4.2).
pub fn code_challenge(code_verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()))
}

/// An error code from an issuer (RFC 6749 4.1.2.1 and 5.2, OpenID Connect Core 3.1.2.6), as a fixed
/// string: the issuer's own text is never shown or logged as is.
pub fn known_error(code: &str) -> &'static str {
    const KNOWN: [&str; 16] = [
        "access_denied",
        "invalid_request",
        "unauthorized_client",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "interaction_required",
        "login_required",
        "account_selection_required",
        "consent_required",
        "invalid_request_uri",
        "invalid_request_object",
        "invalid_grant",
        "invalid_client",
        "unsupported_grant_type",
    ];
    KNOWN.into_iter().find(|k| *k == code).unwrap_or("an unlisted error")
}

impl SignIn {
    /// The sign-ins of these issuers (those with a `signIn` block), each through the issuer's HTTP client
    /// in `verifier` (which was given the same issuers).
    pub fn new(issuers: &[NamedIssuer], verifier: &OidcVerifier) -> Result<SignIn, OidcError> {
        let mut out = Vec::new();
        for named in issuers {
            let Some(config) = &named.config.sign_in else { continue };
            let http = verifier.http_client(&named.config.issuer).ok_or_else(|| OidcError::Config {
                issuer: named.config.issuer.clone(),
                reason: "it is not among the verifier's issuers".to_owned(),
            })?;
            out.push(SignInIssuer { label: named.label.clone(), issuer: named.config.issuer.clone(), config: config.clone(), http });
        }
        Ok(SignIn { issuers: out, pending: Mutex::default(), capacity: MAX_PENDING })
    }

    /// The labels of the issuers one may sign in with, in the configuration's order.
    pub fn labels(&self) -> Vec<String> {
        self.issuers.iter().map(|i| i.label.clone()).collect()
    }

    fn issuer(&self, label: &str) -> Option<&SignInIssuer> {
        self.issuers.iter().find(|i| i.label == label)
    }

    /// Starts a sign-in with the issuer labelled `label`, bound to the browser holding `browser`, for a
    /// caller at `addr`: the authorization URL to send it to, or `None` if no such issuer offers sign-in.
    pub fn start(&self, label: &str, browser: &str, addr: IpAddr, now: Instant) -> Option<Url> {
        let issuer = self.issuer(label)?;
        let (state, nonce, code_verifier) = (random_secret(), random_secret(), random_secret());
        let mut url = issuer.config.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &issuer.config.client_id)
            .append_pair("redirect_uri", issuer.config.redirect_uri.as_str())
            .append_pair("scope", &issuer.config.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &code_challenge(&code_verifier))
            .append_pair("code_challenge_method", "S256");
        let pending = Pending {
            label: issuer.label.clone(),
            issuer: issuer.issuer.clone(),
            nonce,
            code_verifier,
            browser: hash(browser),
            expires: now + PENDING_TTL,
            source: source_key(addr),
            place: (now, 0),
        };
        let mut table = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        table.insert(hash(&state), pending, self.capacity, now);
        Some(url)
    }

    /// Takes the sign-in started with `state`, if it is live and `browser` (the binding cookie) is the
    /// one it was started in. A state is taken once; one presented by another browser stays for its own.
    pub fn take(&self, state: &str, browser: Option<&str>, now: Instant) -> Result<Pending, StateRefused> {
        let mut table = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = hash(state);
        let Some(pending) = table.by_state.get(&key) else { return Err(StateRefused::Unknown) };
        if pending.expires <= now {
            table.remove(&key);
            return Err(StateRefused::Expired);
        }
        // Hashes of secrets neither side chose: comparing them says nothing about the cookie.
        if browser.map(hash) != Some(pending.browser) {
            return Err(StateRefused::OtherBrowser);
        }
        table.remove(&key).ok_or(StateRefused::Unknown)
    }

    /// Exchanges the authorization `code` of `pending` for its ID token at the issuer's token endpoint.
    pub async fn exchange(&self, pending: &Pending, code: &str) -> Result<String, ExchangeError> {
        let issuer = self.issuer(&pending.label).ok_or(ExchangeError::Malformed("is missing: the issuer is gone".to_owned()))?;
        let config = &issuer.config;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", config.redirect_uri.as_str()),
            ("client_id", &config.client_id),
            ("code_verifier", &pending.code_verifier),
        ];
        if let Some(secret) = &config.client_secret {
            form.push(("client_secret", secret));
        }
        let request = issuer.http.post(config.token_endpoint.clone()).header(reqwest::header::ACCEPT, "application/json").form(&form);
        let answer = async {
            let mut response = request.send().await.map_err(|e| ExchangeError::Unreachable(transport_message(&e)))?;
            let status = response.status();
            let body = read_bounded(&mut response, MAX_TOKEN_RESPONSE_BYTES).await.map_err(ExchangeError::Malformed)?;
            Ok::<_, ExchangeError>((status, body))
        };
        let (status, body) = match tokio::time::timeout(TOKEN_TIMEOUT, answer).await {
            Ok(answer) => answer?,
            Err(_) => return Err(ExchangeError::Unreachable(format!("no complete answer within {} s", TOKEN_TIMEOUT.as_secs()))),
        };
        let json: Option<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(&body).ok();
        let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).and_then(serde_json::Value::as_str).map(str::to_owned);
        if !status.is_success() {
            return Err(match field("error") {
                Some(error) => ExchangeError::Refused(known_error(&error)),
                None => ExchangeError::Status(status.as_u16()),
            });
        }
        match (&json, field("id_token")) {
            (None, _) => Err(ExchangeError::Malformed("is not a JSON object".to_owned())),
            (Some(_), None) => Err(ExchangeError::Malformed("holds no ID token (is \"openid\" among the scopes?)".to_owned())),
            (Some(_), Some(id_token)) => Ok(id_token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sign_in() -> SignIn {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        // A point need not be on the curve to be loaded; nothing is verified here.
        let x = URL_SAFE_NO_PAD.encode([1; 32]);
        let y = URL_SAFE_NO_PAD.encode([2; 32]);
        std::fs::write(&jwks, format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}]}}"#)).unwrap();
        let json = r#"{"issuers":[{"name":"corp","issuer":"https://idp.example.test","audience":"ajar","jwksFile":"JWKS",
            "signIn":{"clientId":"dash","authorizationEndpoint":"https://idp.example.test/authorize?tenant=t",
                      "tokenEndpoint":"https://idp.example.test/token","redirectUri":"https://ajar.example.test/ui/signin/oidc/callback"}}]}"#;
        let issuers = super::super::config_file::parse(json.replace("JWKS", jwks.to_str().unwrap()).as_bytes()).unwrap();
        let verifier = OidcVerifier::new(issuers.iter().map(|n| n.config.clone()).collect()).await.unwrap();
        SignIn::new(&issuers, &verifier).unwrap()
    }

    fn query(url: &Url) -> HashMap<String, String> {
        url.query_pairs().into_owned().collect()
    }

    #[tokio::test]
    async fn a_start_asks_for_a_code_with_a_pkce_challenge() {
        let sign_in = sign_in().await;
        assert_eq!(sign_in.labels(), ["corp"]);
        let now = Instant::now();
        assert!(sign_in.start("other", "browser", HERE, now).is_none());
        let url = sign_in.start("corp", "browser", HERE, now).unwrap();
        assert_eq!(url.path(), "/authorize");
        let q = query(&url);
        for (name, value) in [
            ("tenant", "t"),
            ("response_type", "code"),
            ("client_id", "dash"),
            ("redirect_uri", "https://ajar.example.test/ui/signin/oidc/callback"),
            ("scope", "openid profile email"),
            ("code_challenge_method", "S256"),
        ] {
            assert_eq!(q.get(name).map(String::as_str), Some(value), "{name} in {url}");
        }
        let pending = sign_in.take(&q["state"], Some("browser"), now).unwrap();
        assert_eq!((pending.label.as_str(), pending.issuer.as_str()), ("corp", "https://idp.example.test"));
        assert_eq!(q["nonce"], pending.nonce);
        assert_eq!(q["code_challenge"], code_challenge(&pending.code_verifier));
        assert!(pending.code_verifier.len() >= 43, "RFC 7636 wants 43 to 128 characters");
        assert_ne!(q["state"], q["nonce"]);
    }

    #[tokio::test]
    async fn a_state_is_taken_once_by_its_browser_before_it_expires() {
        let sign_in = sign_in().await;
        let now = Instant::now();
        let state = |url: Url| query(&url)["state"].clone();
        let first = state(sign_in.start("corp", "browser", HERE, now).unwrap());
        assert_eq!(sign_in.take(&first, None, now).err(), Some(StateRefused::OtherBrowser));
        assert_eq!(sign_in.take(&first, Some("another"), now).err(), Some(StateRefused::OtherBrowser));
        assert!(sign_in.take(&first, Some("browser"), now).is_ok(), "another browser's attempt does not use it up");
        assert_eq!(sign_in.take(&first, Some("browser"), now).err(), Some(StateRefused::Unknown), "single use");
        assert_eq!(sign_in.take("made-up", Some("browser"), now).err(), Some(StateRefused::Unknown));
        let late = state(sign_in.start("corp", "browser", HERE, now).unwrap());
        assert_eq!(sign_in.take(&late, Some("browser"), now + PENDING_TTL).err(), Some(StateRefused::Expired));
        assert_eq!(sign_in.take(&late, Some("browser"), now).err(), Some(StateRefused::Unknown), "an expired state is gone");
    }

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn source(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    fn held(sign_in: &SignIn) -> (usize, usize, usize) {
        let table = sign_in.pending.lock().unwrap();
        (table.by_state.len(), table.order.len(), table.by_source.values().map(Vec::len).sum())
    }

    #[tokio::test]
    async fn started_sign_ins_are_bounded() {
        let sign_in = sign_in().await;
        let now = Instant::now();
        let oldest = query(&sign_in.start("corp", "b", source(0), now).unwrap())["state"].clone();
        for i in 1..=(2 * MAX_PENDING as u32) {
            sign_in.start("corp", "b", source(i), now + Duration::from_millis(u64::from(i))).unwrap();
        }
        assert_eq!(held(&sign_in), (MAX_PENDING, MAX_PENDING, MAX_PENDING));
        assert_eq!(sign_in.take(&oldest, Some("b"), now).err(), Some(StateRefused::Unknown), "the oldest made room");
        // Expired ones go as new ones come.
        sign_in.start("corp", "b", source(0), now + PENDING_TTL + Duration::from_secs(60)).unwrap();
        assert_eq!(held(&sign_in), (1, 1, 1));
    }

    #[tokio::test]
    async fn one_source_cannot_push_out_the_others() {
        let sign_in = sign_in().await;
        let now = Instant::now();
        let state = |url: Url| query(&url)["state"].clone();
        let theirs = state(sign_in.start("corp", "b", source(1), now).unwrap());
        let first = state(sign_in.start("corp", "b", source(2), now).unwrap());
        let mut last = String::new();
        for i in 0..(MAX_PENDING as u64 * 2) {
            last = state(sign_in.start("corp", "b", source(2), now + Duration::from_millis(i)).unwrap());
        }
        assert_eq!(held(&sign_in), (MAX_PENDING_PER_SOURCE + 1, MAX_PENDING_PER_SOURCE + 1, MAX_PENDING_PER_SOURCE + 1));
        assert!(sign_in.take(&theirs, Some("b"), now).is_ok(), "another source's sign-in stays");
        assert_eq!(sign_in.take(&first, Some("b"), now).err(), Some(StateRefused::Unknown), "its own oldest went");
        assert!(sign_in.take(&last, Some("b"), now).is_ok());
        assert_eq!(held(&sign_in), (MAX_PENDING_PER_SOURCE - 1, MAX_PENDING_PER_SOURCE - 1, MAX_PENDING_PER_SOURCE - 1));
    }

    #[test]
    fn issuer_error_codes_are_shown_only_from_a_fixed_list() {
        assert_eq!(known_error("access_denied"), "access_denied");
        assert_eq!(known_error("invalid_grant"), "invalid_grant");
        assert_eq!(known_error("<b>call us</b>"), "an unlisted error");
    }

    #[tokio::test]
    async fn the_client_secret_stays_out_of_debug_output() {
        let mut config = sign_in().await.issuers[0].config.clone();
        config.client_secret = Some("s3cret-value".to_owned());
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-value") && shown.contains("(set)"), "{shown}");
    }
}
