//! The dashboard under `/ui`, on the API's TLS listener: sign-in with an API token or through an OIDC
//! issuer, a session cookie, CSRF tokens on every form, and pages rendered by `ajar-web`. It shows only
//! what the signed-in principal's roles allow, checked as the API checks them.

mod activity;
mod configure;
mod jit_page;
mod oidc_signin;
mod request;
mod timeline;
mod vm_page;

pub(super) use activity::{activity, activity_csv};
pub(super) use configure::{configure, configure_post, remove as configure_remove};
pub(super) use jit_page::jit;
pub(super) use oidc_signin::{callback as oidc_callback, start as oidc_start};
pub(super) use request::{request, request_form};
pub(super) use timeline::timeline;
pub(super) use vm_page::vm;

use std::net::SocketAddr;
use std::time::Instant;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::auth::{Caller, hash_token, oidc_caller, principal_for_hash, refused_authentication};
use crate::bootstrap::random_secret;
use crate::client_addr::client_addr;
use crate::http::{HttpError, HttpResult, Query};
use crate::sessions::{OpenedWith, SESSION_COOKIE, SESSION_TTL, SIGNIN_COOKIE, Session, same_secret};

const SIGNIN: &str = "/ui/signin";
const HOME: &str = "/ui/jit";
/// How long the sign-in form may stay open.
const SIGNIN_FORM_SECONDS: u64 = 600;

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: u64) -> (header::HeaderName, String) {
    (header::SET_COOKIE, format!("{name}={value}; Path={path}; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}"))
}

/// An HTML answer with the headers every page carries: nothing from elsewhere may load, nothing may
/// frame it, nothing is cached.
pub(super) fn html(status: StatusCode, body: String, cookies: Vec<(header::HeaderName, String)>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_cookies(response, cookies)
}

fn with_cookies(mut response: Response, cookies: Vec<(header::HeaderName, String)>) -> Response {
    for (name, value) in cookies {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(name, v);
        }
    }
    response
}

fn redirect(to: &'static str, cookies: Vec<(header::HeaderName, String)>) -> Response {
    with_cookies((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response(), cookies)
}

pub(super) fn rendered(page: Result<String, ajar_web::RenderError>) -> HttpResult<String> {
    page.map_err(|e| {
        tracing::error!(error = %e, "rendering a dashboard page");
        HttpError(ajar_api::ApiError::internal())
    })
}

/// Every dashboard answer says how long the server took (`Server-Timing: app;dur=ms`): what the page
/// budget is about, measured by `ajar-bench dashboard`, and visible in a browser's developer tools.
pub(super) async fn server_timing(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = Instant::now();
    let mut response = next.run(request).await;
    let value = format!("app;dur={:.2}", started.elapsed().as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::HeaderName::from_static("server-timing"), v);
    }
    response
}

pub(super) async fn root() -> Response {
    redirect(HOME, Vec::new())
}

pub(super) async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], ajar_web::STYLE).into_response()
}

/// The dashboard's script (live countdowns), from the binary like the stylesheet.
pub(super) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        ajar_web::SCRIPT,
    )
        .into_response()
}

/// The sign-in page with a fresh double-submit CSRF token for its form, a button per OIDC issuer that
/// offers sign-in, and `error` if the last attempt failed.
fn signin_page(state: &AppState, error: Option<&str>, status: StatusCode) -> HttpResult<Response> {
    let csrf = random_secret();
    let labels = state.oidc.as_deref().map(|oidc| oidc.sign_in.labels()).unwrap_or_default();
    let page = rendered(ajar_web::signin_page(&csrf, error, &labels))?;
    Ok(html(status, page, vec![set_cookie(SIGNIN_COOKIE, &csrf, SIGNIN, SIGNIN_FORM_SECONDS)]))
}

pub(super) async fn signin_form(State(state): State<AppState>) -> HttpResult<Response> {
    signin_page(&state, None, StatusCode::OK)
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

pub(super) async fn signin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> HttpResult<Response> {
    let addr = client_addr(peer.ip(), &headers, &state.trusted_proxies);
    let now = Instant::now();
    let again = |error: &str, status: StatusCode| signin_page(&state, Some(error), status);
    if !cookie(&headers, SIGNIN_COOKIE).is_some_and(|c| !form.csrf.is_empty() && same_secret(&c, &form.csrf)) {
        return again("The sign-in form had expired or did not come from this page; please sign in again.", StatusCode::FORBIDDEN);
    }
    if let Err(wait) = state.throttle.check(addr, now) {
        return again(&too_many_failures(wait), StatusCode::TOO_MANY_REQUESTS);
    }
    let hash = hash_token(form.token.trim());
    let Some(principal) = principal_for_hash(&state, hash).await? else {
        let details = vec![("reason".to_owned(), "dashboard sign-in with an unknown token".to_owned())];
        refused_authentication(&state, addr, now, SIGNIN, "InvalidAuthenticationToken", details).await;
        return again("That token is unknown, expired or revoked.", StatusCode::UNAUTHORIZED);
    };
    let (session, _) = state.sessions.open(OpenedWith::ApiToken(hash), &principal.id, now, None);
    Ok(redirect(HOME, vec![set_cookie(SESSION_COOKIE, &session, "/", SESSION_TTL.as_secs()), set_cookie(SIGNIN_COOKIE, "", SIGNIN, 0)]))
}

/// What the sign-in page says while the caller's address is blocked for failed sign-ins.
fn too_many_failures(wait: std::time::Duration) -> String {
    format!("Too many failed sign-ins from your address; try again in {} s.", wait.as_secs() + 1)
}

/// The signed-in caller, or where to send the browser instead.
async fn signed_in(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> HttpResult<Result<(Caller, Session), Response>> {
    let to_signin = || Ok(Err(redirect(SIGNIN, vec![set_cookie(SESSION_COOKIE, "", "/", 0)])));
    let Some(id) = cookie(headers, SESSION_COOKIE) else { return to_signin() };
    let Some(session) = state.sessions.get(&id, Instant::now()) else { return to_signin() };
    let addr = client_addr(peer.ip(), headers, &state.trusted_proxies);
    // Who the session is, found again as for a fresh request: a revoked token, or an OIDC identity that is
    // now another principal (its linked principal was deleted, or it was linked since), ends it.
    let caller = match &session.opened_with {
        OpenedWith::ApiToken(hash) => principal_for_hash(state, *hash).await?.map(|principal| {
            let principal_ids = vec![principal.id.clone()];
            Caller { principal, principal_ids, addr }
        }),
        OpenedWith::Oidc { identity, principal_id } => match state.oidc.as_deref() {
            Some(oidc) => Some(oidc_caller(state, oidc, identity, addr).await?).filter(|caller| caller.principal.id == *principal_id),
            None => None,
        },
    };
    match caller {
        Some(caller) => Ok(Ok((caller, session))),
        None => {
            state.sessions.close(&id);
            to_signin()
        }
    }
}

/// A handler argument: the signed-in caller and its session; without one, the browser is sent to sign in.
pub(super) struct SignedIn {
    pub(super) caller: Caller,
    pub(super) session: Session,
}

impl axum::extract::FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Response> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied() else {
            return Err(HttpError(ajar_api::ApiError::internal()).into_response());
        };
        match signed_in(state, &parts.headers, peer).await {
            Ok(Ok((caller, session))) => Ok(SignedIn { caller, session }),
            Ok(Err(to_signin)) => Err(to_signin),
            Err(e) => Err(e.into_response()),
        }
    }
}

pub(super) async fn signout(State(state): State<AppState>, headers: HeaderMap, _: PostedForm) -> HttpResult<Response> {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.sessions.close(&id);
    }
    Ok(redirect(SIGNIN, vec![set_cookie(SESSION_COOKIE, "", "/", 0)]))
}

pub(super) fn message(status: StatusCode, title: &str, text: &str) -> HttpResult<Response> {
    Ok(html(status, rendered(ajar_web::message_page(title, text))?, Vec::new()))
}

/// A posted form's fields, in order; a field may repeat (`vm`, `port`).
pub(super) struct FormFields(Vec<(String, String)>);

/// A GET form (the JIT page's selection) names its machines in the address as a POST does in its body.
impl From<Query> for FormFields {
    fn from(query: Query) -> FormFields {
        FormFields(query.0)
    }
}

impl FormFields {
    pub(super) fn parse(body: &[u8]) -> FormFields {
        FormFields(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, trimmed; empty if there is none.
    pub(super) fn get(&self, name: &str) -> String {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).unwrap_or_default()
    }

    /// Every value of `name`, trimmed, in order.
    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).collect()
    }
}

/// A handler argument for a state-changing form: the signed-in caller, its session and the posted
/// fields, once the form has carried the session's CSRF token. Without a session the browser is sent to
/// sign in; without the token the form is refused (403) before the handler runs.
pub(super) struct PostedForm {
    pub(super) caller: Caller,
    pub(super) session: Session,
    pub(super) fields: FormFields,
}

impl axum::extract::FromRequest<AppState> for PostedForm {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let SignedIn { caller, session } =
            <SignedIn as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, state).await?;
        let body = axum::body::Bytes::from_request(axum::extract::Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields = FormFields::parse(&body);
        if !same_secret(&session.csrf, &fields.get("csrf")) {
            let refused = message(
                StatusCode::FORBIDDEN,
                "Refused",
                "The form did not carry this session's CSRF token; reload the page and try again.",
            );
            return Err(refused.unwrap_or_else(IntoResponse::into_response));
        }
        Ok(PostedForm { caller, session, fields })
    }
}
