//! `/ajar/v1/gateways` and `/ajar/v1/gatewayAssignment`: the gateways in front of machines.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use time::OffsetDateTime;

use ajar_api::ApiError;
use ajar_api::ajar_v1::{GatewayAssignmentOut, GatewayList, GatewayOut, gateway_assignment_in, gateway_out};
use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::actions;
use ajar_domain::gateway::GatewayName;
use ajar_store::GatewayView;

use super::{AppState, caller_audit};
use crate::auth::Caller;
use crate::http::{HttpError, HttpResult, JsonBody};

fn name_in(name: &str) -> HttpResult<GatewayName> {
    name.parse().map_err(|e: String| HttpError(ApiError::bad_request("InvalidRequestContent", "name", e)))
}

/// A gateway's entry, with whether its agent has applied its current desired state.
async fn entry(state: &AppState, view: &GatewayView) -> HttpResult<GatewayOut> {
    let desired = state.store.gateway_desired_state(&view.gateway.name).await?;
    let in_sync = view.gateway.agent.applied.as_deref() == Some(desired.etag().as_str());
    Ok(gateway_out(&view.gateway, Some(&view.machines), OffsetDateTime::now_utc(), in_sync))
}

pub(super) async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> HttpResult<Json<GatewayList>> {
    state.authorize_read(&caller, actions::AGENTS_READ, &AccessScope::root()).await?;
    let mut value = Vec::new();
    for view in state.store.gateways().await? {
        value.push(entry(&state, &view).await?);
    }
    Ok(Json(GatewayList { value }))
}

pub(super) async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> HttpResult<Json<GatewayOut>> {
    state.authorize_read(&caller, actions::AGENTS_READ, &AccessScope::root()).await?;
    let name = name_in(&name)?;
    let view = state
        .store
        .get_gateway(&name)
        .await?
        .ok_or_else(|| HttpError(ApiError::new(404, "GatewayNotFound", format!("no gateway named '{name}' is enrolled"))))?;
    Ok(Json(entry(&state, &view).await?))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> HttpResult<StatusCode> {
    let mut audit = caller_audit(&caller, actions::GATEWAYS_DELETE, format!("/ajar/v1/gateways/{name}"));
    state.authorize_action(&caller, actions::GATEWAYS_DELETE, &AccessScope::root(), &audit).await?;
    let name = match name_in(&name) {
        Ok(n) => n,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    audit.subjects = vec![name.id_key()];
    let existed = state.store.delete_gateway(&name, audit).await?;
    // A waiting agent of the gateway answers now, and its next request is refused.
    state.changes.notify([&name.id_key()]);
    Ok(if existed { StatusCode::OK } else { StatusCode::NO_CONTENT })
}

/// Puts a machine behind a gateway, or takes it out: a write of the machine (`virtualMachines/write`
/// at its scope). The machine's agent and both gateways are told.
pub(super) async fn assign(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<Json<GatewayAssignmentOut>> {
    let mut audit = caller_audit(&caller, actions::VM_WRITE, "/ajar/v1/gatewayAssignment".to_owned());
    let (vm, gateway) = match body.and_then(|JsonBody(bytes)| gateway_assignment_in(&bytes).map_err(HttpError)) {
        Ok(parsed) => parsed,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    audit.subscription = Some(vm.subscription.to_string());
    audit.resource_group = Some(vm.resource_group.to_string());
    audit.resource_id = vm.to_string();
    audit.subjects = vec![vm.key()];
    state.authorize(&caller, &AccessScope::from(&vm), &audit).await?;
    let (stored, previous) = state.store.set_vm_gateway(&vm, gateway, audit).await?;
    let mut woken = vec![vm.key()];
    woken.extend(stored.gateway.iter().chain(previous.iter()).map(GatewayName::id_key));
    state.changes.notify(&woken);
    Ok(Json(GatewayAssignmentOut {
        virtual_machine_id: stored.id.to_string(),
        gateway: stored.gateway.map(|g| g.to_string()),
        previous: previous.map(|g| g.to_string()),
    }))
}
