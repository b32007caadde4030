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

/// The machine's JIT status if it exists and the caller may read it, and whether the caller may open its
/// ports; else the page that says there is no such machine (whether it exists or not).
pub(super) async fn visible_status(state: &AppState, caller: &Caller, vm: &VmId) -> HttpResult<Result<(VmJitStatus, bool), Response>> {
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

pub(super) fn vm_param(raw: Option<&str>) -> Option<VmId> {
    raw.and_then(|id| id.parse::<VmId>().ok())
}

pub(in crate::routes) async fn vm(
    State(state): State<AppState>,
    SignedIn { caller, session }: SignedIn,
    query: Query,
) -> HttpResult<Response> {
    let Some(vm) = vm_param(query.get("id")) else {
        return message(StatusCode::BAD_REQUEST, "Not a machine", "The address names no virtual machine.");
    };
    match visible_status(&state, &caller, &vm).await? {
        Ok((status, can_request)) => {
            let mut page = vm_page(&caller, &session.csrf, &status, can_request);
            let (rights, _) = super::configure::rights(&state, &caller, &status).await?;
            (page.can_configure, page.can_remove) = (rights.configure, rights.remove);
            Ok(html(StatusCode::OK, rendered(page.render_page())?, Vec::new()))
        }
        Err(response) => Ok(response),
    }
}
