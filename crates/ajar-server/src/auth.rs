//! Who is calling.
//!
//! A bearer token is either one of ajar's API tokens or, when OIDC issuers are configured, a JWT from one
//! of them. API tokens are random 256-bit values stored only as SHA-256 hashes and looked up by that
//! hash: the caller cannot steer the digest, so the lookup's timing says nothing about stored tokens.
//! What a caller may do is decided per operation by [`crate::access`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use ajar_api::ApiError;
use ajar_domain::access::principal::{oidc_group_id, oidc_user_id};
use ajar_domain::activity::{Audit, Outcome, actions};
use ajar_store::{Principal, PrincipalKind, TokenPurpose};

use crate::client_addr::client_addr;
use crate::http::HttpError;
use crate::oidc::{OidcIdentity, OidcVerifier};
use crate::routes::AppState;
use crate::throttle::AfterFailure;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// Whom role assignments may name for this caller: its own principal ID, and for an OIDC caller its
    /// groups (`group:{issuer label}/{group}`).
    pub principal_ids: Vec<String>,
    pub addr: IpAddr,
}

impl Caller {
    pub fn ids(&self) -> Vec<&str> {
        self.principal_ids.iter().map(String::as_str).collect()
    }
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The OIDC issuers this server trusts, and the label of each (for principal IDs).
pub struct OidcAuth {
    pub verifier: OidcVerifier,
    /// Issuer → label.
    pub labels: HashMap<String, String>,
    /// The dashboard's sign-in through those issuers that offer it.
    pub sign_in: crate::oidc::signin::SignIn,
}

/// How long a token's principal (or an OIDC identity's linked principal) is remembered without asking the
/// store again. Any write to principals, tokens or roles (a revoked token or a new OIDC link among them)
/// moves the store's access version, which empties the cache at once; the time bound covers only tokens
/// that expire meanwhile.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept before the cache starts over, so random tokens cannot grow it.
const TOKEN_CACHE_MAX: usize = 10_000;

/// Lookups seen recently, by key, with what they found and when.
type Seen = HashMap<[u8; 32], (Option<Principal>, Instant)>;

/// Store lookups of the caller's principal seen recently, for one access version: spares the store a read
/// per request. Keyed by an API token's hash (only valid tokens are kept, so random tokens cannot fill it)
/// or by [`oidc_key`] (also "no linked principal", since only verified identities get here).
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<(u64, Seen)>,
}

impl TokenCache {
    fn get(&self, key: &[u8; 32], version: u64) -> Option<Option<Principal>> {
        let entries = self.entries.lock().ok()?;
        if entries.0 != version {
            return None;
        }
        entries.1.get(key).filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL).map(|(p, _)| p.clone())
    }

    fn put(&self, key: [u8; 32], found: Option<Principal>, version: u64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.0 != version || entries.1.len() >= TOKEN_CACHE_MAX {
                *entries = (version, HashMap::new());
            }
            entries.1.insert(key, (found, Instant::now()));
        }
    }
}

/// The cache key of an OIDC identity: apart from every token hash (a hash of other bytes), and the
/// issuer's length keeps issuer and subject from running into each other.
fn oidc_key(issuer: &str, subject: &str) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(b"oidc\0");
    digest.update((issuer.len() as u64).to_be_bytes());
    digest.update(issuer.as_bytes());
    digest.update(subject.as_bytes());
    digest.finalize().into()
}

async fn principal_for(state: &AppState, token: &str) -> Result<Option<Principal>, ajar_store::StoreError> {
    principal_for_hash(state, hash_token(token)).await
}

/// The principal of a live API token, by the token's hash (through the cache).
pub(crate) async fn principal_for_hash(state: &AppState, hash: [u8; 32]) -> Result<Option<Principal>, ajar_store::StoreError> {
    // Read before the lookup: a write that lands in between leaves a stale version, never a stale entry.
    let version = state.store.access_version();
    if let Some(Some(p)) = state.tokens.get(&hash, version) {
        return Ok(Some(p));
    }
    let found = state.store.principal_for_token(hash, TokenPurpose::Api).await?;
    if found.is_some() {
        state.tokens.put(hash, found.clone(), version);
    }
    Ok(found)
}

/// The principal linked to an OIDC identity, if any (through the cache, as for API tokens: linking is a
/// write that moves the access version).
async fn principal_for_oidc(state: &AppState, issuer: &str, subject: &str) -> Result<Option<Principal>, ajar_store::StoreError> {
    let key = oidc_key(issuer, subject);
    let version = state.store.access_version();
    if let Some(found) = state.tokens.get(&key, version) {
        return Ok(found);
    }
    let found = state.store.principal_for_oidc(issuer, subject).await?;
    state.tokens.put(key, found.clone(), version);
    Ok(found)
}

/// The caller an OIDC identity is: the principal linked to it, or one named after it; plus its groups.
/// The one mapping for API bearer tokens and dashboard sign-ins alike.
pub(crate) async fn oidc_caller(
    state: &AppState,
    oidc: &OidcAuth,
    identity: &OidcIdentity,
    addr: IpAddr,
) -> Result<Caller, ajar_store::StoreError> {
    let label = oidc.labels.get(&identity.issuer).cloned().unwrap_or_else(|| crate::oidc::config_file::DEFAULT_LABEL.to_owned());
    let principal = match principal_for_oidc(state, &identity.issuer, &identity.subject).await? {
        Some(p) => p,
        None => Principal { id: oidc_user_id(&label, &identity.subject), name: identity.display_name.clone(), kind: PrincipalKind::User },
    };
    let mut principal_ids = vec![principal.id.clone()];
    principal_ids.extend(identity.groups.iter().map(|g| oidc_group_id(&label, g)));
    Ok(Caller { principal, principal_ids, addr })
}

fn too_many_failures(retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let message = format!("too many failed authentications from this address; try again in {seconds} s");
    let mut response = HttpError(ApiError::new(429, "TooManyRequests", &message)).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn unauthenticated(code: &str, message: &str) -> Response {
    let mut response = HttpError(ApiError::new(401, code, message)).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Middleware: refuses requests without a valid API token (401, logged), and
/// hands the rest a [`Caller`].
pub async fn authenticate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let addr = client_addr(peer.ip(), req.headers(), &state.trusted_proxies);
    let now = Instant::now();
    if let Err(retry_after) = state.throttle.check(addr, now) {
        return too_many_failures(retry_after);
    }
    let token = req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().ok().and_then(|s| s.strip_prefix("Bearer ")).map(str::trim));
    let refusal = match token {
        None => Some(("AuthenticationFailed", "the 'Authorization: Bearer <token>' header is missing".to_owned(), "no token")),
        Some(None) | Some(Some("")) => {
            Some(("InvalidAuthenticationToken", "the Authorization header must be 'Bearer <token>'".to_owned(), "malformed header"))
        }
        Some(Some(token)) => match state.oidc.as_deref().filter(|_| OidcVerifier::looks_like_jwt(token)) {
            Some(oidc) => match oidc.verifier.verify(token).await {
                Ok(identity) => match oidc_caller(&state, oidc, &identity, addr).await {
                    Ok(caller) => {
                        req.extensions_mut().insert(caller);
                        None
                    }
                    Err(e) => return HttpError::from(e).into_response(),
                },
                // The verifier's messages never contain the token.
                Err(e) => Some(("InvalidAuthenticationToken", format!("the OIDC token was refused: {e}"), "OIDC token refused")),
            },
            None => match principal_for(&state, token).await {
                Ok(Some(principal)) => {
                    let principal_ids = vec![principal.id.clone()];
                    req.extensions_mut().insert(Caller { principal, principal_ids, addr });
                    None
                }
                Ok(None) => Some(("InvalidAuthenticationToken", "the token is unknown, expired or revoked".to_owned(), "unknown token")),
                Err(e) => return HttpError::from(e).into_response(),
            },
        },
    };
    let Some((code, message, reason)) = refusal else {
        return next.run(req).await;
    };
    refused_authentication(
        &state,
        addr,
        now,
        req.uri().path(),
        code,
        vec![("method".to_owned(), req.method().to_string()), ("reason".to_owned(), reason.to_owned())],
    )
    .await;
    unauthenticated(code, &message)
}

/// A refused authentication (API, agent or dashboard sign-in): counted against its address, and on
/// record without the token. Attempts while the address is blocked are refused unread, before this.
pub(crate) async fn refused_authentication(
    state: &AppState,
    addr: IpAddr,
    now: Instant,
    resource: &str,
    code: &str,
    mut details: Vec<(String, String)>,
) {
    if let AfterFailure::Blocked(block) = state.throttle.failed(addr, now) {
        tracing::warn!(%addr, seconds = block.as_secs(), "repeated authentication failures; address blocked");
        details.push(("blockedForSeconds".to_owned(), block.as_secs().to_string()));
    }
    let audit = Audit {
        operation: actions::AUTHENTICATE,
        subscription: None,
        resource_group: None,
        resource_id: resource.to_owned(),
        caller: "(unauthenticated)".to_owned(),
        caller_addr: Some(addr),
        subjects: Vec::new(),
        details,
    };
    if let Err(e) = state.store.record(audit, Outcome::Failed { code: code.to_owned() }).await {
        tracing::error!(error = %e, "could not record a refused authentication");
    }
}

/// The authenticated agent of a request to `/ajar/v1/agent/...`.
#[derive(Debug, Clone)]
pub struct AgentCaller {
    pub agent_id: String,
    /// The machine, or the gateway, the agent enforces: all its credential reaches.
    pub of: ajar_store::AgentOf,
    pub addr: IpAddr,
}

/// Middleware for the agent routes: an agent's own credential, which reaches
/// only its own machine's state.
pub async fn authenticate_agent(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let addr = client_addr(peer.ip(), req.headers(), &state.trusted_proxies);
    let now = Instant::now();
    if let Err(retry_after) = state.throttle.check(addr, now) {
        return too_many_failures(retry_after);
    }
    let token =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|s| s.strip_prefix("Bearer ")).map(str::trim);
    let found = match token.filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => match state.store.agent_for_token(hash_token(token)).await {
            Ok(found) => found,
            Err(e) => return HttpError::from(e).into_response(),
        },
    };
    match found {
        Some((agent_id, of)) => {
            req.extensions_mut().insert(AgentCaller { agent_id, of, addr });
            next.run(req).await
        }
        None => {
            const CODE: &str = "InvalidAuthenticationToken";
            refused_authentication(
                &state,
                addr,
                now,
                req.uri().path(),
                CODE,
                vec![("reason".to_owned(), "agent token refused".to_owned())],
            )
            .await;
            unauthenticated(CODE, "the agent token is missing, unknown or no longer enrolled")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(id: &str) -> Principal {
        Principal { id: id.to_owned(), name: id.to_owned(), kind: PrincipalKind::User }
    }

    #[test]
    fn the_cache_holds_one_access_version_and_remembers_absent_links() {
        let cache = TokenCache::default();
        let (token, alice) = (hash_token("t"), oidc_key("https://idp.example.test", "alice"));
        cache.put(token, Some(principal("p1")), 7);
        cache.put(alice, None, 7);
        assert_eq!(cache.get(&token, 7).flatten().map(|p| p.id), Some("p1".to_owned()));
        assert_eq!(cache.get(&alice, 7).map(|p| p.is_none()), Some(true), "no linked principal is remembered too");
        assert!(cache.get(&token, 8).is_none() && cache.get(&alice, 8).is_none(), "another version misses");
        cache.put(alice, Some(principal("p2")), 8);
        assert!(cache.get(&token, 8).is_none(), "a write emptied the rest");
    }

    #[test]
    fn oidc_keys_keep_issuer_and_subject_apart() {
        assert_ne!(oidc_key("https://a", "bc"), oidc_key("https://ab", "c"));
        assert_ne!(oidc_key("https://a", "b"), hash_token("https://ab"));
    }
}
