//! The VM inventory as ARM resources (`Microsoft.Compute/virtualMachines`), and
//! `GET /subscriptions`.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

use ajar_api::ApiError;
use ajar_api::compute::{VirtualMachine, VirtualMachineList, vm_in, vm_out};
use ajar_api::subscriptions::{SubscriptionList, subscription_out};
use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::actions;

use super::{AppState, ScopeParams, audit, created_or_ok, vm_id};
use crate::auth::Caller;
use crate::http::{ArmPath, HttpError, HttpResult, JsonBody, Query, next_link};

pub(super) async fn list_subscriptions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<SubscriptionList>> {
    // A subscription is listed to whoever may read it, or read machines or JIT policies somewhere in it.
    let mut value = Vec::new();
    for s in state.store.subscriptions().await? {
        let scope = AccessScope::subscription_scope(&s.id);
        let mut visible = state.may(&caller, actions::SUBSCRIPTIONS_READ, &scope).await?;
        for action in [actions::VM_READ, actions::JIT_READ] {
            visible = visible || state.may_below(&caller, action, &scope).await?;
        }
        if visible {
            value.push(subscription_out(s.id.as_str(), &s.display_name));
        }
    }
    Ok(Json(SubscriptionList { value }))
}

/// Both list operations: subscription, resource group.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath(params): ArmPath<ScopeParams>,
    query: Query,
    headers: HeaderMap,
    uri: Uri,
) -> HttpResult<Json<VirtualMachineList>> {
    let list = state.listing(&caller, actions::VM_READ, &params, &query).await?;
    let found = state.store.list_vms(list).await?;
    let mut value = Vec::with_capacity(found.items.len());
    for vm in &found.items {
        if state.may(&caller, actions::VM_READ, &AccessScope::from(&vm.id)).await? {
            value.push(vm_out(vm));
        }
    }
    Ok(Json(VirtualMachineList { value, next_link: next_link(&headers, &uri, found.next) }))
}

pub(super) async fn get_vm(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath((sub, rg, name)): ArmPath<(String, String, String)>,
) -> HttpResult<Json<VirtualMachine>> {
    let id = vm_id(&sub, &rg, &name)?;
    state.authorize_read(&caller, actions::VM_READ, &AccessScope::from(&id)).await?;
    let vm = state.store.get_vm(&id).await?.ok_or_else(|| {
        HttpError(ApiError::new(404, "ResourceNotFound", format!("virtual machine '{}' is not in the inventory", id.name)))
    })?;
    Ok(Json(vm_out(&vm)))
}

pub(super) async fn put_vm(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath((sub, rg, name)): ArmPath<(String, String, String)>,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<(StatusCode, Json<VirtualMachine>)> {
    let id = vm_id(&sub, &rg, &name)?;
    let mut audit = audit(&caller, actions::VM_WRITE, id.to_string(), &id.subscription, Some(&id.resource_group));
    state.authorize(&caller, &AccessScope::from(&id), &audit).await?;
    let vm = match body.and_then(|JsonBody(bytes)| vm_in(&id, &bytes).map_err(HttpError)) {
        Ok(vm) => vm,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    audit.details = vec![
        ("osType".into(), vm.os.to_string()),
        ("location".into(), vm.location.to_string()),
        ("addresses".into(), vm.private_addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")),
    ];
    let outcome = state.store.put_vm(vm.clone(), audit).await?;
    // Answered as stored: a machine named in another case than it was created with keeps its spelling.
    let stored = state.store.get_vm(&id).await?.unwrap_or(vm);
    Ok((created_or_ok(outcome), Json(vm_out(&stored))))
}

pub(super) async fn delete_vm(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath((sub, rg, name)): ArmPath<(String, String, String)>,
) -> HttpResult<StatusCode> {
    let id = vm_id(&sub, &rg, &name)?;
    let audit = audit(&caller, actions::VM_DELETE, id.to_string(), &id.subscription, Some(&id.resource_group));
    state.authorize(&caller, &AccessScope::from(&id), &audit).await?;
    let existed = state.store.delete_vm(&id, audit).await?;
    Ok(if existed { StatusCode::OK } else { StatusCode::NO_CONTENT })
}
