//! A machine's page: its JIT configuration, what is open, and Connect (a request form for this machine,
//! sent to `/ui/request` like any other).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use time::OffsetDateTime;

use ajar_domain::VmId;
use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::actions;
use ajar_domain::status::VmJitStatus;

use super::{SignedIn, html, message, rendered};
use crate::auth::Caller;
use crate::http::{HttpResult, Query};
use crate::routes::AppState;

/// The machine's JIT status, if it exists and the caller may read JIT at it; one the caller may not read
/// is not told apart from one that does not exist.
pub(super) async fn visible(state: &AppState, caller: &Caller, vm: &VmId) -> HttpResult<Option<VmJitStatus>> {
    match state.store.vm_status(vm).await? {
        Some(status) if state.may(caller, actions::JIT_READ, &AccessScope::from(vm)).await? => Ok(Some(status)),
        _ => Ok(None),
    }
}

/// [`visible`], or else the page that says there is no such machine (whether it exists or not).
pub(super) async fn visible_or_not_found(state: &AppState, caller: &Caller, vm: &VmId) -> HttpResult<Result<VmJitStatus, Response>> {
    match visible(state, caller, vm).await? {
        Some(status) => Ok(Ok(status)),
        None => Ok(Err(message(StatusCode::NOT_FOUND, "Not found", "There is no such machine that you may see.")?)),
    }
}

fn vm_page(caller: &Caller, csrf: &str, status: &VmJitStatus, can_request: bool) -> ajar_web::VmPage {
    ajar_web::VmPage::from_status(status, &caller.principal.name, csrf, &caller.addr.to_string(), can_request, OffsetDateTime::now_utc())
}

pub(super) fn vm_param(raw: &str) -> Option<VmId> {
    raw.parse().ok()
}

pub(in crate::routes) async fn vm(
    State(state): State<AppState>,
    SignedIn { caller, session }: SignedIn,
    query: Query,
) -> HttpResult<Response> {
    let Some(vm) = query.get("id").and_then(vm_param) else {
        return message(StatusCode::BAD_REQUEST, "Not a machine", "The address names no virtual machine.");
    };
    let status = match visible_or_not_found(&state, &caller, &vm).await? {
        Ok(status) => status,
        Err(not_found) => return Ok(not_found),
    };
    let can_request = !status.ports.is_empty() && state.may(&caller, actions::JIT_INITIATE, &AccessScope::from(&vm)).await?;
    let mut page = vm_page(&caller, &session.csrf, &status, can_request);
    let (rights, _) = super::configure::rights(&state, &caller, &status).await?;
    (page.can_configure, page.can_remove) = (rights.configure, rights.remove);
    Ok(html(StatusCode::OK, rendered(page.render_page())?, Vec::new()))
}
