//! Dashboard sign-in through an OIDC issuer: `GET /ui/signin/oidc/{label}` starts it, and the issuer sends
//! the browser back to `GET /ui/signin/oidc/callback`, which finishes it (the flow and its checks are in
//! [`crate::oidc::signin`]). Every way it can fail is shown on the sign-in page and recorded, and counted,
//! as a refused authentication, as a bad API token is.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::super::AppState;
use super::{HOME, SIGNIN, cookie, html, rendered, set_cookie, signin_page, too_many_failures, with_cookies};
use crate::auth::{oidc_caller, refused_authentication};
use crate::bootstrap::random_secret;
use crate::client_addr::client_addr;
use crate::http::HttpResult;
use crate::oidc::signin::{CALLBACK_PATH, ExchangeError, PENDING_TTL, StateRefused, known_error};
use crate::sessions::{OpenedWith, SESSION_COOKIE, SESSION_TTL};

/// Binds a started sign-in to the browser that started it. `SameSite=Lax`: the issuer's redirect back is a
/// cross-site navigation, on which a Strict cookie is not sent.
const BROWSER_COOKIE: &str = "ajar_oidc";

fn browser_cookie(value: &str, max_age: u64) -> (header::HeaderName, String) {
    (header::SET_COOKIE, format!("{BROWSER_COOKIE}={value}; Path={SIGNIN}; HttpOnly; Secure; SameSite=Lax; Max-Age={max_age}"))
}

/// Whether a cookie value is one this server made (a `random_secret`: 43 base64url characters).
fn well_formed(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Starts a sign-in with the issuer labelled `label`: to its authorization endpoint.
pub(in crate::routes) async fn start(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(label): Path<String>,
) -> HttpResult<Response> {
    let addr = client_addr(peer.ip(), &headers, &state.trusted_proxies);
    let now = Instant::now();
    if let Err(wait) = state.throttle.check(addr, now) {
        return signin_page(&state, Some(&too_many_failures(wait)), StatusCode::TOO_MANY_REQUESTS);
    }
    // One binding per browser, kept while it lasts, so sign-ins started in several tabs can each finish.
    let browser = cookie(&headers, BROWSER_COOKIE).filter(|v| well_formed(v)).unwrap_or_else(random_secret);
    let Some(to) = state.oidc.as_deref().and_then(|oidc| oidc.sign_in.start(&label, &browser, addr, now)) else {
        return signin_page(
            &state,
            Some("No identity provider by that name offers sign-in here; choose one below."),
            StatusCode::NOT_FOUND,
        );
    };
    let Ok(location) = HeaderValue::from_str(to.as_str()) else {
        return signin_page(
            &state,
            Some("The identity provider's sign-in address is unusable; tell your administrator."),
            StatusCode::INTERNAL_SERVER_ERROR,
        );
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(with_cookies(response, vec![browser_cookie(&browser, PENDING_TTL.as_secs())]))
}

/// A failed sign-in: what the person is told, and what the activity log records.
struct Refusal {
    status: StatusCode,
    message: String,
    code: &'static str,
    reason: String,
    label: Option<String>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>, code: &'static str, reason: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into(), code, reason: reason.into(), label: None }
    }

    fn from(mut self, label: &str) -> Refusal {
        self.label = Some(label.to_owned());
        self
    }
}

const START_AGAIN: &str = "please start again";

fn state_refused(refused: StateRefused) -> Refusal {
    let message = match refused {
        StateRefused::Unknown => {
            format!("This sign-in was already finished, or was not started by this server (was it restarted?); {START_AGAIN}.")
        }
        StateRefused::Expired => format!("This sign-in took longer than {} minutes; {START_AGAIN}.", PENDING_TTL.as_secs() / 60),
        StateRefused::OtherBrowser => format!(
            "This sign-in was started in another browser, or this browser did not keep its cookie; {START_AGAIN} here, with cookies allowed for this site."
        ),
    };
    Refusal::new(StatusCode::BAD_REQUEST, message, "AuthenticationFailed", refused.reason())
}

fn exchange_refused(label: &str, error: &ExchangeError) -> Refusal {
    let (status, message) = match error {
        ExchangeError::Refused(code) => (
            StatusCode::UNAUTHORIZED,
            format!("{label} would not complete the sign-in ({code}); {START_AGAIN}. If this keeps happening, tell your administrator."),
        ),
        // The details (addresses, certificates) are for the operator, in the log.
        ExchangeError::Unreachable(_) | ExchangeError::Status(_) | ExchangeError::Malformed(_) => (
            StatusCode::BAD_GATEWAY,
            format!("ajar could not complete the sign-in with {label}; try again later, or tell your administrator."),
        ),
    };
    tracing::warn!(issuer = label, %error, "an OIDC sign-in's code exchange failed");
    Refusal::new(status, message, "AuthenticationFailed", format!("code exchange: {error}")).from(label)
}

async fn refuse(state: &AppState, addr: IpAddr, now: Instant, refusal: Refusal) -> HttpResult<Response> {
    let mut details = vec![("reason".to_owned(), refusal.reason)];
    if let Some(label) = refusal.label {
        details.push(("issuer".to_owned(), label));
    }
    refused_authentication(state, addr, now, CALLBACK_PATH, refusal.code, details).await;
    signin_page(state, Some(&refusal.message), refusal.status)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Where the issuer sends the browser back, with `code` and `state`, or `error`.
pub(in crate::routes) async fn callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> HttpResult<Response> {
    let addr = client_addr(peer.ip(), &headers, &state.trusted_proxies);
    let now = Instant::now();
    if let Err(wait) = state.throttle.check(addr, now) {
        return signin_page(&state, Some(&too_many_failures(wait)), StatusCode::TOO_MANY_REQUESTS);
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let browser = cookie(&headers, BROWSER_COOKIE);
    let oidc = state.oidc.as_deref();
    // Taken even when the issuer reports an error, so the state cannot serve again.
    let taken = match (oidc, param("state")) {
        (Some(oidc), Some(sent)) => Some(oidc.sign_in.take(sent, browser.as_deref(), now)),
        (None, Some(_)) => Some(Err(StateRefused::Unknown)),
        (_, None) => None,
    };
    if let Some(error) = param("error") {
        // Only a known code is shown: the description is the issuer's (or anyone's) free text.
        let code = known_error(error);
        let label = taken.and_then(Result::ok).map(|pending| pending.label);
        let who = label.clone().unwrap_or_else(|| "Your identity provider".to_owned());
        let message = match code {
            "access_denied" => format!(
                "{who} did not sign you in: access was denied ({code}). If that is unexpected, ask your administrator whether your account may use ajar."
            ),
            _ => format!("{who} did not sign you in ({code}); {START_AGAIN}, or tell your administrator if this keeps happening."),
        };
        let mut refusal =
            Refusal::new(StatusCode::UNAUTHORIZED, message, "AuthenticationFailed", format!("the identity provider answered {code}"));
        refusal.label = label;
        return refuse(&state, addr, now, refusal).await;
    }
    let (oidc, pending) = match (oidc, taken) {
        (Some(oidc), Some(Ok(pending))) => (oidc, pending),
        (_, Some(Err(refused))) => return refuse(&state, addr, now, state_refused(refused)).await,
        _ => {
            let message = format!("The sign-in came back without its state, so it cannot be finished; {START_AGAIN}.");
            return refuse(&state, addr, now, Refusal::new(StatusCode::BAD_REQUEST, message, "AuthenticationFailed", "no state")).await;
        }
    };
    let label = pending.label.clone();
    let Some(code) = param("code").filter(|code| !code.is_empty()) else {
        let message = format!("{label} sent the browser back without an authorization code; {START_AGAIN}.");
        let refusal = Refusal::new(StatusCode::BAD_REQUEST, message, "AuthenticationFailed", "no code").from(&label);
        return refuse(&state, addr, now, refusal).await;
    };
    let id_token = match oidc.sign_in.exchange(&pending, code).await {
        Ok(id_token) => id_token,
        Err(error) => return refuse(&state, addr, now, exchange_refused(&label, &error)).await,
    };
    let verified = match oidc.verifier.verify_id_token(&pending.issuer, &id_token, &pending.nonce).await {
        Ok(verified) => verified,
        // The verifier's messages never contain the token.
        Err(error) => {
            let message =
                format!("{label}'s ID token was refused: {error}. {START_AGAIN}; if this keeps happening, tell your administrator.");
            let refusal =
                Refusal::new(StatusCode::UNAUTHORIZED, message, "InvalidAuthenticationToken", format!("ID token refused: {error}"));
            return refuse(&state, addr, now, refusal.from(&label)).await;
        }
    };
    // The session ends with the ID token (the verifier allowed it some clock leeway; this does not).
    let left = Duration::from_secs(verified.expires_at.saturating_sub(unix_now()));
    if left.is_zero() {
        let message = format!("{label}'s ID token had already expired; check that this server's clock is right, and {START_AGAIN}.");
        let refusal = Refusal::new(StatusCode::UNAUTHORIZED, message, "InvalidAuthenticationToken", "ID token expired");
        return refuse(&state, addr, now, refusal.from(&label)).await;
    }
    let caller = oidc_caller(&state, oidc, &verified.identity, addr).await?;
    let opened_with = OpenedWith::Oidc { identity: verified.identity, principal_id: caller.principal.id.clone() };
    let (session, _) = state.sessions.open(opened_with, &caller.principal.id, now, Some(now + left));
    // A 200 page that moves on by itself rather than a redirect: this answer is to a cross-site navigation,
    // so a redirect's next request would go without the Strict session cookie.
    let page = rendered(ajar_web::signed_in_page(&caller.principal.name, HOME))?;
    let cookies = vec![set_cookie(SESSION_COOKIE, &session, "/", left.min(SESSION_TTL).as_secs()), browser_cookie("", 0)];
    Ok(html(StatusCode::OK, page, cookies))
}
