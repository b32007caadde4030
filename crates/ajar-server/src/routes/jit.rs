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
use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::{Audit, actions};
use ajar_domain::initiate::{AccessRequest, Caller as DomainCaller, EndSpec, InitiateDraft, plan_initiate};
use ajar_domain::policy::Policy;
use ajar_domain::{PolicyId, VmId};
use ajar_store::PolicyView;
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
    let mut value = Vec::with_capacity(found.items.len());
    for view in &found.items {
        if let Some(policy) = visible_policy(&state, &caller, view, now).await? {
            value.push(policy);
        }
    }
    Ok(Json(JitNetworkAccessPoliciesList { value, next_link: next_link(&headers, &uri, found.next) }))
}

/// The policy as the caller may see it: whole with JIT read at the policy; otherwise only the machines
/// (and their requests) it may read JIT at, as a requester assigned to single machines; `None` if none.
async fn visible_policy(
    state: &AppState,
    caller: &Caller,
    view: &PolicyView,
    now: OffsetDateTime,
) -> HttpResult<Option<JitNetworkAccessPolicy>> {
    if state.may(caller, actions::JIT_READ, &AccessScope::from(&view.policy.id)).await? {
        return Ok(Some(policy_out(&view.policy, &view.requests, now)));
    }
    let mut visible = Vec::new();
    for vm in &view.policy.vms {
        if state.may(caller, actions::JIT_READ, &AccessScope::from(&vm.vm)).await? {
            visible.push(vm.vm.key());
        }
    }
    if visible.is_empty() {
        return Ok(None);
    }
    let mut policy = view.policy.clone();
    policy.vms.retain(|v| visible.contains(&v.vm.key()));
    let requests: Vec<AccessRequest> = view
        .requests
        .iter()
        .filter_map(|r| {
            let mut r = r.clone();
            r.vms.retain(|v| visible.contains(&v.vm.key()));
            (!r.vms.is_empty()).then_some(r)
        })
        .collect();
    Ok(Some(policy_out(&policy, &requests, now)))
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
    // Only a caller who may read the policy learns whether it exists.
    let view = state.store.get_policy(&id).await?;
    let visible = match &view {
        Some(view) => visible_policy(&state, &caller, view, OffsetDateTime::now_utc()).await?,
        None => None,
    };
    if let Some(policy) = visible {
        return Ok(Json(policy));
    }
    // A policy the caller may read at its own scope is visible; so past this check it does not exist.
    state.authorize_read(&caller, actions::JIT_READ, &AccessScope::from(&id)).await?;
    Err(policy_not_found(&id))
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
    let audit = audit(&caller, actions::JIT_WRITE, id.to_string(), &id.subscription, Some(&id.resource_group));
    // A caller who may not write the policy learns nothing from the body's validation.
    state.authorize(&caller, &AccessScope::from(&id), &audit).await?;
    let policy = match body.and_then(|JsonBody(bytes)| policy_in(&id, &bytes).map_err(HttpError)) {
        Ok(p) => p,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    let view = write_policy(&state, &caller, policy).await?;
    // ARM's contract for this PUT is 200 whether it created or replaced.
    Ok(Json(policy_out(&view.policy, &view.requests, OffsetDateTime::now_utc())))
}

/// A policy write that passed authorization: its activity record, and the machines whose agents must hear
/// of it.
pub(crate) struct AuthorizedPolicyWrite {
    audit: ajar_domain::activity::Audit,
    affected: Vec<String>,
}

/// Checks the caller may store `policy` as it is (JIT write at the policy; configuring JIT on a machine,
/// or removing it, needs write access to the machine, as on Azure); a refusal is a 403 and is logged.
pub(crate) async fn authorize_policy_write(state: &AppState, caller: &Caller, policy: &Policy) -> HttpResult<AuthorizedPolicyWrite> {
    let id = &policy.id;
    let mut audit = audit(caller, actions::JIT_WRITE, id.to_string(), &id.subscription, Some(&id.resource_group));
    audit.subjects = policy.vms.iter().map(|v| v.vm.key()).collect();
    audit.details = describe_policy(policy);
    state.authorize(caller, &AccessScope::from(id), &audit).await?;
    // Machines leaving the policy must hear of it too.
    let mut machines: Vec<VmId> = policy.vms.iter().map(|v| v.vm.clone()).collect();
    if let Some(old) = state.store.get_policy(id).await? {
        machines.extend(old.policy.vms.iter().map(|v| v.vm.clone()).filter(|vm| !policy.vms.iter().any(|n| n.vm == *vm)));
    }
    for vm in &machines {
        state.authorize_action(caller, actions::VM_WRITE, &AccessScope::from(vm), &audit).await?;
    }
    Ok(AuthorizedPolicyWrite { audit, affected: machines.iter().map(VmId::key).collect() })
}

/// Authorizes, records and stores a whole policy (live grants it no longer allows end in the same
/// transaction), and tells the agents: what the API's PUT and the dashboard's configure page both do.
pub(crate) async fn write_policy(state: &AppState, caller: &Caller, policy: Policy) -> HttpResult<PolicyView> {
    let AuthorizedPolicyWrite { audit, affected } = authorize_policy_write(state, caller, &policy).await?;
    let (_, view) = state.store.put_policy(policy, state.limits, audit).await?;
    state.changes.notify(&affected);
    Ok(view)
}

pub(super) async fn delete_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath((sub, rg, loc, name)): ArmPath<(String, String, String, String)>,
) -> HttpResult<StatusCode> {
    let id = policy_id(&sub, &rg, &loc, &name)?;
    let existed = remove_policy(&state, &caller, &id).await?;
    Ok(if existed { StatusCode::OK } else { StatusCode::NO_CONTENT })
}

/// Authorizes, records and deletes a policy (its live grants end), and tells the agents: what the API's
/// DELETE and the dashboard's "Remove JIT" on a policy's last machine both do. Returns whether it existed.
pub(crate) async fn remove_policy(state: &AppState, caller: &Caller, id: &PolicyId) -> HttpResult<bool> {
    let mut audit = audit(caller, actions::JIT_DELETE, id.to_string(), &id.subscription, Some(&id.resource_group));
    state.authorize(caller, &AccessScope::from(id), &audit).await?;
    if let Some(view) = state.store.get_policy(id).await? {
        audit.subjects = view.policy.vms.iter().map(|v| v.vm.key()).collect();
        // Removing JIT from a machine opens its ports to whatever else allows them: it needs write access
        // to each machine, as configuring does.
        for vm in &view.policy.vms {
            state.authorize_action(caller, actions::VM_WRITE, &AccessScope::from(&vm.vm), &audit).await?;
        }
    }
    let affected = audit.subjects.clone();
    let existed = state.store.delete_policy(id, audit).await?;
    state.changes.notify(&affected);
    Ok(existed)
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
    let targets = match body.and_then(|JsonBody(bytes)| revoke_in(&bytes).map_err(HttpError)) {
        Ok(t) => t,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    // Every machine named must be allowed before any grant ends.
    audit.subjects = targets.iter().map(|(vm, _)| vm.key()).collect();
    for (vm, _) in &targets {
        state.authorize(&caller, &AccessScope::from(vm), &audit).await?;
    }
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
    let audit = audit(&caller, actions::JIT_INITIATE, id.to_string(), &id.subscription, Some(&id.resource_group));
    let draft = match body.and_then(|JsonBody(bytes)| initiate_in(&bytes).map_err(HttpError)) {
        Ok(d) => d,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    let request = initiate_draft(&state, &caller, &id, draft).await?;
    Ok((StatusCode::ACCEPTED, Json(request_out(&request, OffsetDateTime::now_utc()))))
}

/// The activity record of an initiate on policy `id`, once the caller is allowed on every machine it
/// names: one refusal refuses the whole request, and is logged.
async fn authorize_initiate(state: &AppState, caller: &Caller, id: &PolicyId, draft: &InitiateDraft) -> HttpResult<Audit> {
    let mut audit = audit(caller, actions::JIT_INITIATE, id.to_string(), &id.subscription, Some(&id.resource_group));
    audit.subjects = draft.vms.iter().map(|v| v.vm.key()).collect();
    for vm in &draft.vms {
        state.authorize(caller, &AccessScope::from(&vm.vm), &audit).await?;
    }
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
    Ok(audit)
}

fn domain_caller(caller: &Caller) -> DomainCaller {
    DomainCaller { principal_id: caller.principal.id.clone(), name: caller.principal.name.clone(), addr: caller.addr }
}

/// Whether an initiate would be granted now, storing nothing: the authorization and the domain's rules
/// against the stored policy, as [`initiate_draft`] applies them, each refusal logged as the API's. A
/// request spanning several policies is checked on every one before any is initiated, so that one bad
/// machine opens nothing anywhere.
pub(crate) async fn check_initiate(state: &AppState, caller: &Caller, id: &PolicyId, draft: &InitiateDraft) -> HttpResult<()> {
    let audit = authorize_initiate(state, caller, id, draft).await?;
    let Some(view) = state.store.get_policy(id).await? else {
        return Err(state.refuse(audit, policy_not_found(id)).await);
    };
    match plan_initiate(&view.policy, draft, &domain_caller(caller), OffsetDateTime::now_utc(), String::new()) {
        Ok(_) => Ok(()),
        Err(problem) => {
            let audit = match &problem.target {
                Some(target) => audit.detail("target", target.clone()),
                None => audit,
            };
            Err(state.refuse(audit, ApiError::from(problem)).await)
        }
    }
}

/// Authorizes, records and stores an initiate, and tells the agents and the expiry scheduler: what the
/// API's initiate and the dashboard's "Open ports" both do.
pub(crate) async fn initiate_draft(state: &AppState, caller: &Caller, id: &PolicyId, draft: InitiateDraft) -> HttpResult<AccessRequest> {
    let audit = authorize_initiate(state, caller, id, &draft).await?;
    let vms = audit.subjects.clone();
    let request = state.store.initiate(id, draft, domain_caller(caller), audit).await?;
    if let Some(end) = request.vms.iter().flat_map(|v| &v.grants).map(|g| g.end).min() {
        state.expiry_wake.grant_ends_at(end);
    }
    state.changes.notify(&vms);
    Ok(request)
}
