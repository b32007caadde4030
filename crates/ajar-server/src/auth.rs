//! Who is calling, and whether they may.
//!
//! Authentication turns a bearer token into a principal (tokens are stored only
//! as SHA-256 hashes; they are random 256-bit values, so a fast hash suffices).
//! Authorization is a trait checked per operation with Azure's action strings,
//! so role-based access control plugs in without touching the routes.

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
use ajar_domain::activity::{Audit, Outcome, actions};
use ajar_store::{Principal, TokenPurpose};

use crate::client_addr::client_addr;
use crate::http::HttpError;
use crate::routes::AppState;
use crate::throttle::AfterFailure;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub addr: IpAddr,
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Decides whether a caller may perform `action` on the resource at `scope`.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, caller: &Caller, action: &str, scope: &str) -> Result<(), ApiError>;
}

/// Until role-based access control arrives, every authenticated API principal
/// may do everything (there is only the bootstrap admin).
pub struct AnyAuthenticatedPrincipal;

impl Authorizer for AnyAuthenticatedPrincipal {
    fn authorize(&self, _: &Caller, _: &str, _: &str) -> Result<(), ApiError> {
        Ok(())
    }
}

/// How long a token's principal is remembered without asking the store again:
/// a token ended in the store stops working within this time. (Revoking tokens
/// through the API, when it comes, must also clear the cache.)
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept before the cache starts over, so random tokens cannot grow it.
const TOKEN_CACHE_MAX: usize = 10_000;

/// Valid tokens seen recently, by hash: spares the store a read per request.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &[u8; 32]) -> Option<Principal> {
        let entries = self.entries.lock().ok()?;
        entries.get(hash).filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL).map(|(p, _)| p.clone())
    }

    fn put(&self, hash: [u8; 32], principal: Principal) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= TOKEN_CACHE_MAX {
                entries.clear();
            }
            entries.insert(hash, (principal, Instant::now()));
        }
    }
}

async fn principal_for(state: &AppState, token: &str) -> Result<Option<Principal>, ajar_store::StoreError> {
    let hash = hash_token(token);
    if let Some(p) = state.tokens.get(&hash) {
        return Ok(Some(p));
    }
    let found = state.store.principal_for_token(hash, TokenPurpose::Api).await?;
    if let Some(p) = &found {
        state.tokens.put(hash, p.clone());
    }
    Ok(found)
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
        None => Some(("AuthenticationFailed", "the 'Authorization: Bearer <token>' header is missing", "no token")),
        Some(None) | Some(Some("")) => {
            Some(("InvalidAuthenticationToken", "the Authorization header must be 'Bearer <token>'", "malformed header"))
        }
        Some(Some(token)) => match principal_for(&state, token).await {
            Ok(Some(principal)) => {
                req.extensions_mut().insert(Caller { principal, addr });
                None
            }
            Ok(None) => Some(("InvalidAuthenticationToken", "the token is unknown, expired or revoked", "unknown token")),
            Err(e) => return HttpError::from(e).into_response(),
        },
    };
    let Some((code, message, reason)) = refusal else {
        return next.run(req).await;
    };
    // Every refused attempt is on record (the token itself never is), up to the one that blocks its
    // address; attempts while blocked are refused unread.
    let mut details = vec![("method".to_owned(), req.method().to_string()), ("reason".to_owned(), reason.to_owned())];
    if let AfterFailure::Blocked(block) = state.throttle.failed(addr, now) {
        tracing::warn!(%addr, seconds = block.as_secs(), "repeated authentication failures; address blocked");
        details.push(("blockedForSeconds".to_owned(), block.as_secs().to_string()));
    }
    let audit = Audit {
        operation: actions::AUTHENTICATE,
        subscription: None,
        resource_group: None,
        resource_id: req.uri().path().to_owned(),
        caller: "(unauthenticated)".to_owned(),
        caller_addr: Some(addr),
        subjects: Vec::new(),
        details,
    };
    if let Err(e) = state.store.record(audit, Outcome::Failed { code: code.to_owned() }).await {
        tracing::error!(error = %e, "could not record a refused authentication");
    }
    unauthenticated(code, message)
}

/// The authenticated agent of a request to `/ajar/v1/agent/...`.
#[derive(Debug, Clone)]
pub struct AgentCaller {
    pub agent_id: String,
    pub vm: ajar_domain::VmId,
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
        Some((agent_id, vm)) => {
            req.extensions_mut().insert(AgentCaller { agent_id, vm, addr });
            next.run(req).await
        }
        None => {
            if let AfterFailure::Blocked(block) = state.throttle.failed(addr, now) {
                tracing::warn!(%addr, seconds = block.as_secs(), "repeated agent authentication failures; address blocked");
            }
            unauthenticated("InvalidAuthenticationToken", "the agent token is missing, unknown or no longer enrolled")
        }
    }
}
