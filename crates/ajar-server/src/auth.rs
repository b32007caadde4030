//! Who is calling, and whether they may.
//!
//! Authentication turns a bearer token into a principal (tokens are stored only
//! as SHA-256 hashes; they are random 256-bit values, so a fast hash suffices).
//! Authorization is a trait checked per operation with Azure's action strings,
//! so role-based access control plugs in without touching the routes.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use ajar_api::ApiError;
use ajar_domain::activity::{Audit, Outcome, actions};
use ajar_store::{Principal, TokenPurpose};

use crate::http::HttpError;
use crate::routes::AppState;

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
    let addr = peer.ip().to_canonical();
    let token = req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().ok().and_then(|s| s.strip_prefix("Bearer ")).map(str::trim));
    let refusal = match token {
        None => Some(("AuthenticationFailed", "the 'Authorization: Bearer <token>' header is missing", "no token")),
        Some(None) | Some(Some("")) => {
            Some(("InvalidAuthenticationToken", "the Authorization header must be 'Bearer <token>'", "malformed header"))
        }
        Some(Some(token)) => match state.store.principal_for_token(hash_token(token), TokenPurpose::Api).await {
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
    // Every refused attempt is on record; the token itself never is.
    let audit = Audit {
        operation: actions::AUTHENTICATE,
        subscription: None,
        resource_group: None,
        resource_id: req.uri().path().to_owned(),
        caller: "(unauthenticated)".to_owned(),
        caller_addr: Some(addr),
        subjects: Vec::new(),
        details: vec![("method".to_owned(), req.method().to_string()), ("reason".to_owned(), reason.to_owned())],
    };
    if let Err(e) = state.store.record(audit, Outcome::Failed { code: code.to_owned() }).await {
        tracing::error!(error = %e, "could not record a refused authentication");
    }
    unauthenticated(code, message)
}
