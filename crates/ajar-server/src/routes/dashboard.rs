//! The dashboard under `/ui`, on the API's TLS listener: sign-in with an API token, a session cookie, CSRF
//! tokens on every form, and pages rendered by `ajar-web`. It shows only what the signed-in principal's
//! roles allow, checked as the API checks them.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::actions;
use ajar_domain::ids::Scope;
use ajar_domain::initiate::{EndSpec, InitiateDraft, PortAsk, VmAsk};
use ajar_domain::status::VmJitStatus;
use ajar_domain::{AccessDuration, SourcePrefix, Sources, VmId};
use ajar_store::PageRequest;
use ajar_web::{Filter, Tab};

use super::AppState;
use crate::auth::{Caller, hash_token, principal_for_hash, refused_authentication};
use crate::bootstrap::random_secret;
use crate::client_addr::client_addr;
use crate::http::{HttpError, HttpResult, Query};
use crate::sessions::{SESSION_COOKIE, SESSION_TTL, SIGNIN_COOKIE, Session, same_secret};

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
fn html(status: StatusCode, body: String, cookies: Vec<(header::HeaderName, String)>) -> Response {
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
    for (name, value) in cookies {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.append(name, v);
        }
    }
    response
}

fn redirect(to: &'static str, cookies: Vec<(header::HeaderName, String)>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    for (name, value) in cookies {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(name, v);
        }
    }
    response
}

fn rendered(page: Result<String, ajar_web::RenderError>) -> HttpResult<String> {
    page.map_err(|e| {
        tracing::error!(error = %e, "rendering a dashboard page");
        HttpError(ajar_api::ApiError::internal())
    })
}

pub(super) async fn root() -> Response {
    redirect(HOME, Vec::new())
}

pub(super) async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], ajar_web::STYLE).into_response()
}

/// The sign-in form, with a fresh double-submit CSRF token.
pub(super) async fn signin_form() -> HttpResult<Response> {
    let csrf = random_secret();
    let page = rendered(ajar_web::signin_page(&csrf, None))?;
    Ok(html(StatusCode::OK, page, vec![set_cookie(SIGNIN_COOKIE, &csrf, SIGNIN, SIGNIN_FORM_SECONDS)]))
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
    let again = |error: &str, status: StatusCode| -> HttpResult<Response> {
        let csrf = random_secret();
        let page = rendered(ajar_web::signin_page(&csrf, Some(error.to_owned())))?;
        Ok(html(status, page, vec![set_cookie(SIGNIN_COOKIE, &csrf, SIGNIN, SIGNIN_FORM_SECONDS)]))
    };
    if !cookie(&headers, SIGNIN_COOKIE).is_some_and(|c| !form.csrf.is_empty() && same_secret(&c, &form.csrf)) {
        return again("The sign-in form had expired or did not come from this page; please sign in again.", StatusCode::FORBIDDEN);
    }
    if let Err(wait) = state.throttle.check(addr, now) {
        return again(
            &format!("Too many failed sign-ins from your address; try again in {} s.", wait.as_secs() + 1),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let hash = hash_token(form.token.trim());
    if principal_for_hash(&state, hash).await?.is_none() {
        let details = vec![("reason".to_owned(), "dashboard sign-in with an unknown token".to_owned())];
        refused_authentication(&state, addr, now, SIGNIN, "InvalidAuthenticationToken", details).await;
        return again("That token is unknown, expired or revoked.", StatusCode::UNAUTHORIZED);
    }
    let (session, _) = state.sessions.open(hash, now);
    Ok(redirect(HOME, vec![set_cookie(SESSION_COOKIE, &session, "/", SESSION_TTL.as_secs()), set_cookie(SIGNIN_COOKIE, "", SIGNIN, 0)]))
}

/// The signed-in caller, or where to send the browser instead.
async fn signed_in(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> HttpResult<Result<(Caller, Session), Response>> {
    let to_signin = || Ok(Err(redirect(SIGNIN, vec![set_cookie(SESSION_COOKIE, "", "/", 0)])));
    let Some(id) = cookie(headers, SESSION_COOKIE) else { return to_signin() };
    let Some(session) = state.sessions.get(&id, Instant::now()) else { return to_signin() };
    // The token it was opened with must still be good: revoking it ends the session.
    let Some(principal) = principal_for_hash(state, session.token_hash).await? else {
        state.sessions.close(&id);
        return to_signin();
    };
    let addr = client_addr(peer.ip(), headers, &state.trusted_proxies);
    let principal_ids = vec![principal.id.clone()];
    Ok(Ok((Caller { principal, principal_ids, addr }, session)))
}

/// A handler argument: the signed-in caller and its session; without one, the browser is sent to sign in.
pub(super) struct SignedIn {
    caller: Caller,
    session: Session,
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

#[derive(Debug, serde::Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn signout(
    State(state): State<AppState>,
    SignedIn { session, .. }: SignedIn,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> HttpResult<Response> {
    if !same_secret(&session.csrf, &form.csrf) {
        return Err(HttpError(ajar_api::ApiError::new(403, "InvalidCsrfToken", "the form did not carry this session's CSRF token")));
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.sessions.close(&id);
    }
    Ok(redirect(SIGNIN, vec![set_cookie(SESSION_COOKIE, "", "/", 0)]))
}

/// "Just-in-time VM access": every machine the caller may read JIT at, on three tabs.
pub(super) async fn jit(State(state): State<AppState>, SignedIn { caller, session }: SignedIn, query: Query) -> HttpResult<Response> {
    let tab = query.get("tab").and_then(Tab::parse).unwrap_or(Tab::Configured);
    let filter = Filter {
        subscription: query.get("subscription").unwrap_or_default().to_owned(),
        resource_group: query.get("resourceGroup").unwrap_or_default().to_owned(),
        location: query.get("location").unwrap_or_default().to_owned(),
        name: query.get("name").unwrap_or_default().to_owned(),
    };
    let index = state.access.index().await?;
    let ids = caller.ids();
    let mut subscriptions = Vec::new();
    let mut statuses = Vec::new();
    for sub in state.store.subscriptions().await? {
        if !index.may_any_below(&ids, actions::JIT_READ, &AccessScope::subscription_scope(&sub.id)) {
            continue;
        }
        subscriptions.push(sub.id.to_string());
        let scope = Scope { subscription: sub.id.clone(), resource_group: None, location: None };
        let mut after = None;
        loop {
            let page = state.store.vm_statuses(&scope, PageRequest { after, size: 500 }).await?;
            statuses
                .extend(page.items.into_iter().filter(|s| index.check(&ids, actions::JIT_READ, &AccessScope::from(&s.vm.id)).is_allowed()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    let page = rendered(ajar_web::jit_page(
        &caller.principal.name,
        &session.csrf,
        tab,
        &filter,
        subscriptions,
        &statuses,
        OffsetDateTime::now_utc(),
    ))?;
    Ok(html(StatusCode::OK, page, Vec::new()))
}

fn message(status: StatusCode, title: &str, text: &str) -> HttpResult<Response> {
    Ok(html(status, rendered(ajar_web::message_page(title, text))?, Vec::new()))
}

/// The machine's JIT status if it exists and the caller may read it, and whether the caller may open its
/// ports; else the page that says there is no such machine (whether it exists or not).
async fn visible_status(state: &AppState, caller: &Caller, vm: &VmId) -> HttpResult<Result<(VmJitStatus, bool), Response>> {
    let scope = AccessScope::from(vm);
    match state.store.vm_status(vm).await? {
        Some(status) if state.may(caller, actions::JIT_READ, &scope).await? => {
            let can_request = !status.ports.is_empty() && state.may(caller, actions::JIT_INITIATE, &scope).await?;
            Ok(Ok((status, can_request)))
        }
        _ => Ok(Err(message(StatusCode::NOT_FOUND, "Not found", "There is no such machine that you may see.")?)),
    }
}

fn vm_page(caller: &Caller, csrf: &str, status: &VmJitStatus, can_request: bool) -> ajar_web::VmPage {
    ajar_web::VmPage::from_status(status, &caller.principal.name, csrf, &caller.addr.to_string(), can_request, OffsetDateTime::now_utc())
}

fn vm_param(raw: Option<&str>) -> Option<VmId> {
    raw.and_then(|id| id.parse::<VmId>().ok())
}

pub(super) async fn vm(State(state): State<AppState>, SignedIn { caller, session }: SignedIn, query: Query) -> HttpResult<Response> {
    let Some(vm) = vm_param(query.get("id")) else {
        return message(StatusCode::BAD_REQUEST, "Not a machine", "The address names no virtual machine.");
    };
    match visible_status(&state, &caller, &vm).await? {
        Ok((status, can_request)) => {
            Ok(html(StatusCode::OK, rendered(vm_page(&caller, &session.csrf, &status, can_request).render_page())?, Vec::new()))
        }
        Err(response) => Ok(response),
    }
}

/// "Open ports": the Connect form, turned into an initiate as the API's.
pub(super) async fn request(
    State(state): State<AppState>,
    SignedIn { caller, session }: SignedIn,
    body: axum::body::Bytes,
) -> HttpResult<Response> {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).unwrap_or_default();
    if !same_secret(&session.csrf, &field("csrf")) {
        return message(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form did not carry this session's CSRF token; reload the page and try again.",
        );
    }
    let Some(vm) = vm_param(Some(&field("id"))) else {
        return message(StatusCode::BAD_REQUEST, "Not a machine", "The form names no virtual machine.");
    };
    let (status, can_request) = match visible_status(&state, &caller, &vm).await? {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    let mut page = vm_page(&caller, &session.csrf, &status, can_request);
    let Some(policy) = status.policy else {
        page.error = Some("JIT is not configured on this machine.".to_owned());
        return Ok(html(StatusCode::BAD_REQUEST, rendered(page.render_page())?, Vec::new()));
    };
    let draft = match draft_from_form(&vm, &fields, &field) {
        Ok(d) => d,
        Err(e) => {
            page.error = Some(e);
            return Ok(html(StatusCode::BAD_REQUEST, rendered(page.render_page())?, Vec::new()));
        }
    };
    match super::jit::initiate_draft(&state, &caller, &policy, draft).await {
        Ok(request) => {
            let address = page.address.clone();
            page.opened = request
                .vms
                .iter()
                .flat_map(|v| &v.grants)
                .map(|g| {
                    let from: Vec<String> = g.sources.prefixes().iter().map(ToString::to_string).collect();
                    format!(
                        "Port {}/{} is open from {} until {} UTC. Connect: {}",
                        g.number,
                        g.protocol,
                        from.join(", "),
                        ajar_api::wire_time::format(g.end),
                        ajar_web::connect_hint(&address, g.number)
                    )
                })
                .collect();
            // Show the grants now live.
            if let Some(fresh) = state.store.vm_status(&vm).await? {
                page.live = vm_page(&caller, &session.csrf, &fresh, can_request).live;
            }
            Ok(html(StatusCode::OK, rendered(page.render_page())?, Vec::new()))
        }
        Err(HttpError(e)) => {
            let at = e.body.target.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
            page.error = Some(format!("{}{at}: {}", e.body.code, e.body.message));
            Ok(html(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST), rendered(page.render_page())?, Vec::new()))
        }
    }
}

fn draft_from_form(vm: &VmId, fields: &[(String, String)], field: &dyn Fn(&str) -> String) -> Result<InitiateDraft, String> {
    let ports: Vec<u16> = fields.iter().filter(|(k, _)| k == "port").filter_map(|(_, v)| v.parse().ok()).collect();
    if ports.is_empty() {
        return Err("Choose at least one port.".to_owned());
    }
    let duration: AccessDuration = field("duration").parse().map_err(|e| format!("Time range: {e}"))?;
    let sources = match field("source").as_str() {
        "range" => {
            let prefix: SourcePrefix = field("range").parse().map_err(|e| format!("IP range: {e}"))?;
            Some(Sources::One(prefix))
        }
        _ => None,
    };
    let justification = Some(field("justification")).filter(|j| !j.is_empty());
    let ports = ports.into_iter().map(|number| PortAsk { number, end: EndSpec::For(duration), sources: sources.clone() }).collect();
    Ok(InitiateDraft { vms: vec![VmAsk { vm: vm.clone(), ports }], justification })
}
