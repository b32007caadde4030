//! `Microsoft.Security/locations/jitNetworkAccessPolicies`: list ×4, get, put,
//! delete, initiate.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use time::OffsetDateTime;

use ajar_api::ApiError;
use ajar_api::agent::{RevokeOut, revoke_in};
use ajar_api::jit::{
    JitNetworkAccessPoliciesList, JitNetworkAccessPolicy, JitNetworkAccessRequest, initiate_in, policy_in, policy_out, precondition_in,
    request_out,
};
use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::{Audit, actions};
use ajar_domain::initiate::{AccessRequest, Caller as DomainCaller, EndSpec, InitiateDraft};
use ajar_domain::plans::{Precondition, check_precondition};
use ajar_domain::policy::Policy;
use ajar_domain::{ErrorCode, PolicyId, VmId};
use ajar_store::{InitiatePart, PolicyView, StoreError};
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
    let list = state.listing(&caller, actions::JIT_READ, &params, &query).await?;
    let found = state.store.list_policies(list).await?;
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
        return Ok(Some(view_out(view, now)));
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
    let mut part = view.clone();
    part.policy.vms.retain(|v| visible.contains(&v.vm.key()));
    part.requests = view
        .requests
        .iter()
        .filter_map(|r| {
            let mut r = r.clone();
            r.vms.retain(|v| visible.contains(&v.vm.key()));
            (!r.vms.is_empty()).then_some(r)
        })
        .collect();
    Ok(Some(view_out(&part, now)))
}

fn policy_not_found(id: &ajar_domain::PolicyId) -> HttpError {
    HttpError(ApiError::new(
        404,
        "PolicyNotFound",
        format!("JIT policy '{}' was not found in resource group '{}', location '{}'", id.name, id.resource_group, id.location),
    ))
}

/// A policy version with its history, as ARM shows it.
pub(crate) fn view_out(view: &PolicyView, now: OffsetDateTime) -> JitNetworkAccessPolicy {
    policy_out(&view.policy, &view.etag, &view.requests, now)
}

/// A policy as answered: its body, and its version in the `ETag` header too.
fn with_etag(policy: JitNetworkAccessPolicy) -> Response {
    let etag = policy.etag.as_deref().and_then(|e| HeaderValue::from_str(e).ok());
    let mut response = Json(policy).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

pub(super) async fn get_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath((sub, rg, loc, name)): ArmPath<(String, String, String, String)>,
) -> HttpResult<Response> {
    let id = policy_id(&sub, &rg, &loc, &name)?;
    // Only a caller who may read the policy learns whether it exists.
    let view = state.store.get_policy(&id).await?;
    let visible = match &view {
        Some(view) => visible_policy(&state, &caller, view, OffsetDateTime::now_utc()).await?,
        None => None,
    };
    if let Some(policy) = visible {
        return Ok(with_etag(policy));
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
    headers: HeaderMap,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<Response> {
    let id = policy_id(&sub, &rg, &loc, &name)?;
    let audit = audit(&caller, actions::JIT_WRITE, id.to_string(), &id.subscription, Some(&id.resource_group));
    // A caller who may not write the policy learns nothing from the body's validation.
    state.authorize(&caller, &AccessScope::from(&id), &audit).await?;
    let parsed = precondition(&headers).and_then(|p| Ok((p, body.and_then(|JsonBody(bytes)| policy_in(&id, &bytes).map_err(HttpError))?)));
    let (expected, policy) = match parsed {
        Ok(p) => p,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    let view = write_policy(&state, &caller, policy, expected).await?;
    // ARM's contract for this PUT is 200 whether it created or replaced.
    Ok(with_etag(view_out(&view, OffsetDateTime::now_utc())))
}

/// The precondition of a conditional write: `If-Match` or `If-None-Match: *`.
fn precondition(headers: &HeaderMap) -> HttpResult<Option<Precondition>> {
    let text = |name: header::HeaderName| -> HttpResult<Option<&str>> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str().map_err(|_| HttpError(ApiError::bad_request("InvalidRequestContent", name.as_str(), "the header is not text")))
            })
            .transpose()
    };
    Ok(precondition_in(text(header::IF_MATCH)?, text(header::IF_NONE_MATCH)?)?)
}

/// Checks the caller may store `policy` over `stored` (JIT write at the policy; configuring JIT on a
/// machine, or removing it, needs write access to the machine, as on Azure); a refusal is a 403 and is
/// logged. Returns the operation's record and the machines whose agents must hear of it.
pub(crate) async fn authorize_policy_write(
    state: &AppState,
    caller: &Caller,
    policy: &Policy,
    stored: Option<&PolicyView>,
) -> HttpResult<(Audit, Vec<String>)> {
    let id = &policy.id;
    let mut audit = audit(caller, actions::JIT_WRITE, id.to_string(), &id.subscription, Some(&id.resource_group));
    audit.subjects = policy.vms.iter().map(|v| v.vm.key()).collect();
    audit.details = describe_policy(policy);
    state.authorize(caller, &AccessScope::from(id), &audit).await?;
    // Machines leaving the policy must hear of it too.
    let mut machines: Vec<VmId> = policy.vms.iter().map(|v| v.vm.clone()).collect();
    if let Some(old) = stored {
        machines.extend(old.policy.vms.iter().map(|v| v.vm.clone()).filter(|vm| !policy.vms.iter().any(|n| n.vm == *vm)));
    }
    for vm in &machines {
        state.authorize_action(caller, actions::VM_WRITE, &AccessScope::from(vm), &audit).await?;
    }
    Ok((audit, machines.iter().map(VmId::key).collect()))
}

/// How often a policy write is tried when the policy changes between the read its authorization is
/// made on and the write.
const WRITE_ATTEMPTS: usize = 3;

/// What a conditional write on `stored` expects: that version, or nothing.
fn as_read(stored: Option<&PolicyView>) -> Precondition {
    match stored {
        Some(v) => Precondition::OneOf(vec![v.etag.clone()]),
        None => Precondition::Absent,
    }
}

/// Refuses, on record, a write whose precondition (`expected`, the client's) the version read does not
/// meet.
async fn check_expected(
    state: &AppState,
    audit: &Audit,
    expected: Option<&Precondition>,
    stored: Option<&PolicyView>,
    id: &PolicyId,
) -> HttpResult<()> {
    let what = format!("JIT policy '{}'", id.name);
    match check_precondition(expected, stored.map(|v| v.etag.as_str()), &what) {
        Ok(()) => Ok(()),
        Err(problem) => Err(state.refuse(audit.clone(), ApiError::from(problem)).await),
    }
}

/// Authorizes, records and stores a whole policy (live grants it no longer allows end in the same
/// transaction), if `expected` holds, and tells the agents: what the API's PUT and the dashboard's
/// configure page both do. The write is conditional on the version its authorization was decided on,
/// so a policy changed in between is read and authorized again rather than overwritten.
pub(crate) async fn write_policy(
    state: &AppState,
    caller: &Caller,
    policy: Policy,
    expected: Option<Precondition>,
) -> HttpResult<PolicyView> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let stored = state.store.get_policy(&policy.id).await?;
        let (audit, affected) = authorize_policy_write(state, caller, &policy, stored.as_ref()).await?;
        check_expected(state, &audit, expected.as_ref(), stored.as_ref(), &policy.id).await?;
        match state.store.put_policy(policy.clone(), Some(as_read(stored.as_ref())), state.limits, audit).await {
            Err(StoreError::Rejected(p)) if p.code == ErrorCode::PreconditionFailed && attempt < WRITE_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
            Ok((_, view)) => {
                state.changes.notify(&affected);
                return Ok(view);
            }
        }
    }
}

pub(super) async fn delete_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath((sub, rg, loc, name)): ArmPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> HttpResult<StatusCode> {
    let id = policy_id(&sub, &rg, &loc, &name)?;
    let expected = match precondition(&headers) {
        Ok(p) => p,
        Err(e) => {
            let audit = audit(&caller, actions::JIT_DELETE, id.to_string(), &id.subscription, Some(&id.resource_group));
            return Err(state.refuse(audit, e).await);
        }
    };
    let existed = remove_policy(&state, &caller, &id, expected).await?;
    Ok(if existed { StatusCode::OK } else { StatusCode::NO_CONTENT })
}

/// Authorizes, records and deletes a policy (its live grants end), if `expected` holds, and tells the
/// agents: what the API's DELETE and the dashboard's "Remove JIT" on a policy's last machine both do.
/// Conditional, as [`write_policy`], on the version its authorization was decided on. Returns whether
/// it existed.
pub(crate) async fn remove_policy(state: &AppState, caller: &Caller, id: &PolicyId, expected: Option<Precondition>) -> HttpResult<bool> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut audit = audit(caller, actions::JIT_DELETE, id.to_string(), &id.subscription, Some(&id.resource_group));
        state.authorize(caller, &AccessScope::from(id), &audit).await?;
        let stored = state.store.get_policy(id).await?;
        if let Some(view) = &stored {
            audit.subjects = view.policy.vms.iter().map(|v| v.vm.key()).collect();
            // Removing JIT from a machine opens its ports to whatever else allows them: it needs write
            // access to each machine, as configuring does.
            for vm in &view.policy.vms {
                state.authorize_action(caller, actions::VM_WRITE, &AccessScope::from(&vm.vm), &audit).await?;
            }
        }
        check_expected(state, &audit, expected.as_ref(), stored.as_ref(), id).await?;
        let affected = audit.subjects.clone();
        match state.store.delete_policy(id, Some(as_read(stored.as_ref())), audit).await {
            Err(StoreError::Rejected(p)) if p.code == ErrorCode::PreconditionFailed && attempt < WRITE_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
            Ok(deleted) => {
                state.changes.notify(&affected);
                return Ok(deleted.is_some());
            }
        }
    }
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

/// Ends live grants now (beyond Azure's API): the ports close at once for new connections. Every
/// machine named must be allowed, and each in the policy, or nothing ends.
async fn revoke(state: AppState, caller: Caller, id: PolicyId, body: Result<JsonBody, HttpError>) -> HttpResult<Json<RevokeOut>> {
    let mut audit = audit(&caller, actions::JIT_REVOKE, id.to_string(), &id.subscription, Some(&id.resource_group));
    let targets = match body.and_then(|JsonBody(bytes)| revoke_in(&bytes).map_err(HttpError)) {
        Ok(t) => t,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    audit.subjects = targets.iter().map(|(vm, _)| vm.key()).collect();
    audit.details = targets
        .iter()
        .map(|(vm, ports)| (vm.name.to_string(), format!("ports {}", ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))))
        .collect();
    for (vm, _) in &targets {
        state.authorize(&caller, &AccessScope::from(vm), &audit).await?;
    }
    let affected = audit.subjects.clone();
    let revoked = state.store.revoke(&id, targets, audit).await?;
    state.changes.notify(&affected);
    Ok(Json(RevokeOut { revoked }))
}

async fn initiate(
    state: AppState,
    caller: Caller,
    id: PolicyId,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<(StatusCode, Json<JitNetworkAccessRequest>)> {
    let draft = match body.and_then(|JsonBody(bytes)| initiate_in(&bytes).map_err(HttpError)) {
        Ok(d) => d,
        Err(e) => {
            let audit = audit(&caller, actions::JIT_INITIATE, id.to_string(), &id.subscription, Some(&id.resource_group));
            return Err(state.refuse(audit, e).await);
        }
    };
    let mut requests = initiate_parts(&state, &caller, vec![(id, draft)]).await?;
    let request = requests.pop().ok_or_else(|| HttpError(ApiError::internal()))?;
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

/// Authorizes, records and stores a request for access, one part per policy, all of it or nothing,
/// and tells the agents and the expiry scheduler: what the API's initiate (one part) and the
/// dashboard's "Open ports" (a part per policy of the machines chosen) both do.
pub(crate) async fn initiate_parts(
    state: &AppState,
    caller: &Caller,
    parts: Vec<(PolicyId, InitiateDraft)>,
) -> HttpResult<Vec<AccessRequest>> {
    let mut authorized = Vec::with_capacity(parts.len());
    for (policy, draft) in parts {
        let audit = authorize_initiate(state, caller, &policy, &draft).await?;
        authorized.push(InitiatePart { policy, draft, audit });
    }
    let vms: Vec<String> = authorized.iter().flat_map(|p| p.audit.subjects.iter().cloned()).collect();
    let requests = state.store.initiate(authorized, domain_caller(caller)).await?;
    if let Some(end) = requests.iter().flat_map(|r| &r.vms).flat_map(|v| &v.grants).map(|g| g.end).min() {
        state.expiry_wake.grant_ends_at(end);
    }
    state.changes.notify(&vms);
    Ok(requests)
}
