//! A machine's page: its JIT configuration, what is open, and Connect.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use time::OffsetDateTime;

use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::actions;
use ajar_domain::initiate::{EndSpec, InitiateDraft, PortAsk, VmAsk};
use ajar_domain::status::VmJitStatus;
use ajar_domain::{AccessDuration, SourcePrefix, Sources, VmId};

use super::{FormFields, SignedIn, html, message, refuse_without_csrf, rendered};
use crate::auth::Caller;
use crate::http::{HttpError, HttpResult, Query};
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

/// "Open ports": the Connect form, turned into an initiate as the API's.
pub(in crate::routes) async fn request(
    State(state): State<AppState>,
    SignedIn { caller, session }: SignedIn,
    body: axum::body::Bytes,
) -> HttpResult<Response> {
    let fields = FormFields::parse(&body);
    if let Some(refused) = refuse_without_csrf(&session, &fields)? {
        return Ok(refused);
    }
    let Some(vm) = vm_param(Some(&fields.get("id"))) else {
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
    let draft = match draft_from_form(&vm, &fields) {
        Ok(d) => d,
        Err(e) => {
            page.error = Some(e);
            return Ok(html(StatusCode::BAD_REQUEST, rendered(page.render_page())?, Vec::new()));
        }
    };
    match crate::routes::jit::initiate_draft(&state, &caller, &policy, draft).await {
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

fn draft_from_form(vm: &VmId, fields: &FormFields) -> Result<InitiateDraft, String> {
    let field = |name: &str| fields.get(name);
    let ports: Vec<u16> = fields.all("port").iter().filter_map(|v| v.parse().ok()).collect();
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
