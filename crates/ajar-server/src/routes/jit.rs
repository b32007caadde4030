//! `Microsoft.Security/locations/jitNetworkAccessPolicies`: list ×4, get, put,
//! delete, initiate.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use time::OffsetDateTime;

use ajar_api::ApiError;
use ajar_api::agent::{RevokeOut, revoke_in};
use ajar_api::jit::{
    JitNetworkAccessPoliciesList, JitNetworkAccessPolicy, JitNetworkAccessRequest, initiate_in, policy_in, policy_out, request_out,
};
use ajar_domain::PolicyId;
use ajar_domain::activity::actions;
use ajar_domain::initiate::{Caller as DomainCaller, EndSpec};
use ajar_domain::policy::Policy;
use axum::response::{IntoResponse, Response};

use super::{AppState, ScopeParams, audit, policy_id};
use crate::auth::Caller;
use crate::http::{ArmPath, HttpError, HttpResult, JsonBody, Query, next_link};

/// All four list operations: subscription, location, resource group, both.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath(params): ArmPath<ScopeParams>,
    query: Query,
    headers: HeaderMap,
    uri: Uri,
) -> HttpResult<Json<JitNetworkAccessPoliciesList>> {
    let (scope, page) = state.listing(&caller, actions::JIT_READ, &params, &query).await?;
    let found = state.store.list_policies(&scope, page).await?;
    let now = OffsetDateTime::now_utc();
    Ok(Json(JitNetworkAccessPoliciesList {
        value: found.items.iter().map(|v| policy_out(&v.policy, &v.requests, now)).collect(),
        next_link: next_link(&headers, &uri, found.next),
    }))
}

fn policy_not_found(id: &ajar_domain::PolicyId) -> HttpError {
    HttpError(ApiError::new(
        404,
        "PolicyNotFound",
        format!("JIT policy '{}' was not found in resource group '{}', location '{}'", id.name, id.resource_group, id.location),
    ))
}

pub(super) async fn get_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath((sub, rg, loc, name)): ArmPath<(String, String, String, String)>,
) -> HttpResult<Json<JitNetworkAccessPolicy>> {
    let id = policy_id(&sub, &rg, &loc, &name)?;
    state.authorizer.authorize(&caller, actions::JIT_READ, &id.to_string()).map_err(HttpError)?;
    let view = state.store.get_policy(&id).await?.ok_or_else(|| policy_not_found(&id))?;
    Ok(Json(policy_out(&view.policy, &view.requests, OffsetDateTime::now_utc())))
}

/// What the activity log records about a policy's content.
fn describe_policy(policy: &Policy) -> Vec<(String, String)> {
    policy
        .vms
        .iter()
        .map(|vm| {
            let ports: Vec<String> = vm
                .ports
                .iter()
                .map(|p| {
                    let from: Vec<String> = p.sources.prefixes().iter().map(ToString::to_string).collect();
                    format!("{}/{} from {} max {}", p.number, p.protocol, from.join(" "), p.max_duration)
                })
                .collect();
            (vm.vm.name.to_string(), ports.join(", "))
        })
        .collect()
}

pub(super) async fn put_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath((sub, rg, loc, name)): ArmPath<(String, String, String, String)>,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<Json<JitNetworkAccessPolicy>> {
    let id = policy_id(&sub, &rg, &loc, &name)?;
    let mut audit = audit(&caller, actions::JIT_WRITE, id.to_string(), &id.subscription, Some(&id.resource_group));
    state.authorize(&caller, &id.to_string(), &audit).await?;
    let policy = match body.and_then(|JsonBody(bytes)| policy_in(&id, &bytes).map_err(HttpError)) {
        Ok(p) => p,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    audit.subjects = policy.vms.iter().map(|v| v.vm.key()).collect();
    audit.details = describe_policy(&policy);
    // Machines leaving the policy must hear of it too.
    let mut affected = audit.subjects.clone();
    if let Some(old) = state.store.get_policy(&id).await? {
        affected.extend(old.policy.vms.iter().map(|v| v.vm.key()));
    }
    let (_, view) = state.store.put_policy(policy, state.limits, audit).await?;
    state.changes.notify(&affected);
    // ARM's contract for this PUT is 200 whether it created or replaced.
    Ok(Json(policy_out(&view.policy, &view.requests, OffsetDateTime::now_utc())))
}

pub(super) async fn delete_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath((sub, rg, loc, name)): ArmPath<(String, String, String, String)>,
) -> HttpResult<StatusCode> {
    let id = policy_id(&sub, &rg, &loc, &name)?;
    let mut audit = audit(&caller, actions::JIT_DELETE, id.to_string(), &id.subscription, Some(&id.resource_group));
    state.authorize(&caller, &id.to_string(), &audit).await?;
    if let Some(view) = state.store.get_policy(&id).await? {
        audit.subjects = view.policy.vms.iter().map(|v| v.vm.key()).collect();
    }
    let affected = audit.subjects.clone();
    let existed = state.store.delete_policy(&id, audit).await?;
    state.changes.notify(&affected);
    Ok(if existed { StatusCode::OK } else { StatusCode::NO_CONTENT })
}

/// `POST {policy}/{action}`: Azure's `initiate`, and ajar's `revoke`.
pub(super) async fn action(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath((sub, rg, loc, name, action)): ArmPath<(String, String, String, String, String)>,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<Response> {
    let id = policy_id(&sub, &rg, &loc, &name)?;
    match action.as_str() {
        "initiate" => Ok(initiate(state, caller, id, body).await?.into_response()),
        "revoke" => Ok(revoke(state, caller, id, body).await?.into_response()),
        _ => Err(HttpError(ApiError::new(
            404,
            "NotFound",
            format!("'{action}' is not an action of a JIT policy; they are 'initiate' and (ajar's) 'revoke'"),
        ))),
    }
}

/// Ends live grants now (beyond Azure's API): the ports close at once for new
/// connections.
async fn revoke(state: AppState, caller: Caller, id: PolicyId, body: Result<JsonBody, HttpError>) -> HttpResult<Json<RevokeOut>> {
    let mut audit = audit(&caller, actions::JIT_REVOKE, id.to_string(), &id.subscription, Some(&id.resource_group));
    state.authorize(&caller, &id.to_string(), &audit).await?;
    let targets = match body.and_then(|JsonBody(bytes)| revoke_in(&bytes).map_err(HttpError)) {
        Ok(t) => t,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    let mut revoked = 0;
    for (vm, ports) in targets {
        audit.subjects = vec![vm.key()];
        audit.details = vec![("ports".into(), ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))];
        revoked += state.store.revoke(&id, &vm, ports, audit.clone()).await?;
        state.changes.notify(&[vm.key()]);
    }
    Ok(Json(RevokeOut { revoked }))
}

async fn initiate(
    state: AppState,
    caller: Caller,
    id: PolicyId,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<(StatusCode, Json<JitNetworkAccessRequest>)> {
    let mut audit = audit(&caller, actions::JIT_INITIATE, id.to_string(), &id.subscription, Some(&id.resource_group));
    state.authorize(&caller, &id.to_string(), &audit).await?;
    let draft = match body.and_then(|JsonBody(bytes)| initiate_in(&bytes).map_err(HttpError)) {
        Ok(d) => d,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    audit.subjects = draft.vms.iter().map(|v| v.vm.key()).collect();
    if let Some(j) = &draft.justification {
        audit.details.push(("justification".into(), j.clone()));
    }
    for vm in &draft.vms {
        for port in &vm.ports {
            let from = match &port.sources {
                Some(s) => s.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
                None => format!("{} (caller)", caller.addr),
            };
            let span = match port.end {
                EndSpec::At(t) => format!("until {}", ajar_api::wire_time::format(t)),
                EndSpec::For(d) => format!("for {d}"),
            };
            audit.details.push((format!("{}:{}", vm.vm.name, port.number), format!("from {from} {span}")));
        }
    }
    let who = DomainCaller { principal_id: caller.principal.id.clone(), name: caller.principal.name.clone(), addr: caller.addr };
    let vms = audit.subjects.clone();
    let request = state.store.initiate(&id, draft, who, audit).await?;
    if let Some(end) = request.vms.iter().flat_map(|v| &v.grants).map(|g| g.end).min() {
        state.expiry_wake.grant_ends_at(end);
    }
    state.changes.notify(&vms);
    Ok((StatusCode::ACCEPTED, Json(request_out(&request, OffsetDateTime::now_utc()))))
}
