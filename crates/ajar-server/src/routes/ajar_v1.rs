//! ajar's own API: JIT status per machine, enabling JIT, recommended ports and
//! the activity log.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};

use ajar_api::ApiError;
use ajar_api::activity::{ActivityList, ChainVerification, activity_out, chain_verification_out, to_csv};
use ajar_api::ajar_v1::{
    EnableOut, EnableRequest, RecommendedPorts, VmStatusList, enable_in, recommended_ports as recommended, status_out,
};
use ajar_domain::VmId;
use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::{ActivityEntry, ActivityQuery, Audit, ResultKind, actions};
use ajar_store::{JitStateFilter, PolicyView};
use time::OffsetDateTime;

use super::{AppState, ScopeParams, caller_audit};
use crate::auth::Caller;
use crate::http::{ArmPath, HttpError, HttpResult, JsonBody, Query, next_link};

/// Most activity entries one answer carries unless `limit` says otherwise.
const DEFAULT_ACTIVITY_LIMIT: usize = 1000;

pub(super) async fn jit_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath(sub): ArmPath<String>,
    query: Query,
    headers: HeaderMap,
    uri: Uri,
) -> HttpResult<Json<VmStatusList>> {
    let params = ScopeParams { sub, rg: query.get("resourceGroup").map(str::to_owned), loc: query.get("location").map(str::to_owned) };
    let list = state.listing(&caller, actions::JIT_READ, &params, &query).await?;
    let wanted = match query.get("state").map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("configured") => Some(JitStateFilter::Configured),
        Some("notconfigured") => Some(JitStateFilter::NotConfigured),
        Some("unsupported") => Some(JitStateFilter::Unsupported),
        Some(w) => {
            return Err(HttpError(ApiError::bad_request(
                "InvalidRequestContent",
                "state",
                format!("state '{w}' is not one of Configured, NotConfigured, Unsupported"),
            )));
        }
    };
    let found = state.store.vm_statuses(list, wanted).await?;
    let now = OffsetDateTime::now_utc();
    let mut value = Vec::with_capacity(found.items.len());
    for s in &found.items {
        // The query selected what the caller may read; this only makes sure.
        if state.may(&caller, actions::JIT_READ, &AccessScope::from(&s.vm.id)).await? {
            value.push(status_out(s, now));
        }
    }
    Ok(Json(VmStatusList { value, next_link: next_link(&headers, &uri, found.next) }))
}

pub(super) async fn recommended_ports() -> Json<RecommendedPorts> {
    Json(recommended())
}

pub(super) async fn enable(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<Json<EnableOut>> {
    let request = match body.and_then(|JsonBody(bytes)| enable_in(&bytes).map_err(HttpError)) {
        Ok(r) => r,
        Err(e) => return Err(state.refuse(enable_audit(&caller, &[]), e).await),
    };
    let views = enable_vms(&state, &caller, request).await?;
    let now = OffsetDateTime::now_utc();
    Ok(Json(EnableOut { value: views.iter().map(|v| super::jit::view_out(v, now)).collect() }))
}

/// The activity record of enabling JIT on `vms`.
fn enable_audit(caller: &Caller, vms: &[VmId]) -> Audit {
    let mut audit = Audit {
        subjects: vms.iter().map(VmId::key).collect(),
        ..caller_audit(caller, actions::JIT_WRITE, "/ajar/v1/jit/enable".to_owned())
    };
    if let Some(first) = vms.first() {
        audit.subscription = Some(first.subscription.to_string());
        audit.resource_group = Some(first.resource_group.to_string());
        audit.resource_id = first.to_string();
        audit.details.push(("virtualMachines".into(), vms.iter().map(|v| v.name.to_string()).collect::<Vec<_>>().join(" ")));
    }
    audit
}

/// Checks the caller may enable JIT on every one of `vms` (JIT write and VM write at each machine); the
/// first refusal is a 403 and is logged. Returns the operation's activity record.
pub(crate) async fn authorize_enable(state: &AppState, caller: &Caller, vms: &[VmId]) -> HttpResult<Audit> {
    let audit = enable_audit(caller, vms);
    for vm in vms {
        state.authorize(caller, &AccessScope::from(vm), &audit).await?;
        let vm_write = Audit { operation: actions::VM_WRITE, ..audit.clone() };
        state.authorize(caller, &AccessScope::from(vm), &vm_write).await?;
    }
    Ok(audit)
}

/// Authorizes, records and enables JIT on machines (all or none), each in the named policy of its
/// resource group and location, and tells their agents: what the API's enable and the dashboard's
/// configure page both do.
pub(crate) async fn enable_vms(state: &AppState, caller: &Caller, request: EnableRequest) -> HttpResult<Vec<PolicyView>> {
    let audit = authorize_enable(state, caller, &request.vms).await?;
    let affected = audit.subjects.clone();
    let views = state.store.enable(request.vms, request.policy_name, request.ports, state.limits, audit).await?;
    state.changes.notify(&affected);
    Ok(views)
}

fn time_param(query: &Query, name: &str) -> HttpResult<Option<OffsetDateTime>> {
    query
        .get(name)
        .map(|t| ajar_api::wire_time::parse(t).map_err(|e| HttpError(ApiError::bad_request("InvalidRequestContent", name, e))))
        .transpose()
}

/// Which activity entries the caller may read, for [`ActivityQuery::within`]: with
/// `Ajar/activityLog/read` at the root, all (`None`); otherwise those about resources inside the scopes
/// it holds the permission at. A caller holding it nowhere is refused, and the refusal is on record.
pub(crate) async fn activity_within(state: &AppState, caller: &Caller) -> HttpResult<Option<Vec<AccessScope>>> {
    let within = state.readable_within(caller, actions::ACTIVITY_READ).await?;
    if within.as_ref().is_some_and(Vec::is_empty) {
        return Err(state.refuse_read(caller, actions::ACTIVITY_READ, &AccessScope::root()).await);
    }
    Ok(within)
}

/// "Download as CSV": the entries as the CSV export, to be saved as a file.
pub(crate) fn activity_csv(entries: &[ActivityEntry]) -> HttpResult<Response> {
    let bytes = to_csv(entries).map_err(|e| {
        tracing::error!(error = %e, "writing the activity CSV");
        HttpError(ApiError::internal())
    })?;
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8"), (header::CONTENT_DISPOSITION, "attachment; filename=\"ajar-activity.csv\"")],
        bytes,
    )
        .into_response())
}

pub(super) async fn activity(State(state): State<AppState>, Extension(caller): Extension<Caller>, query: Query) -> HttpResult<Response> {
    let within = activity_within(&state, &caller).await?;
    let resource_key = match query.get("vm") {
        Some(vm) => Some(vm.parse::<VmId>().map_err(|e| HttpError(ApiError::bad_request("InvalidResourceId", "vm", e.to_string())))?.key()),
        None => None,
    };
    let limit =
        match query.get("limit") {
            Some(l) => l.parse::<usize>().ok().filter(|l| *l > 0).ok_or_else(|| {
                HttpError(ApiError::bad_request("InvalidRequestContent", "limit", "limit must be a positive whole number"))
            })?,
            None => DEFAULT_ACTIVITY_LIMIT,
        };
    let result = match query.get("result") {
        Some(r) => Some(ResultKind::parse(r).ok_or_else(|| {
            HttpError(ApiError::bad_request("InvalidRequestContent", "result", format!("result '{r}' is not Succeeded or Failed")))
        })?),
        None => None,
    };
    let format = query.get("format").unwrap_or("json");
    if !["json", "csv"].contains(&format) {
        return Err(HttpError(ApiError::bad_request("InvalidRequestContent", "format", format!("format '{format}' is not json or csv"))));
    }
    let q = ActivityQuery {
        resource_key,
        caller: query.get("caller").map(str::to_owned),
        operation: query.get("operation").map(str::to_owned),
        result,
        since: time_param(&query, "since")?,
        until: time_param(&query, "until")?,
        limit: Some(limit),
        within,
        ..ActivityQuery::default()
    };
    let entries = state.store.activity(q).await?;
    match format {
        "csv" => activity_csv(&entries),
        _ => Ok(Json(ActivityList { value: entries.iter().map(activity_out).collect() }).into_response()),
    }
}

/// Recomputes the activity log's hash chain. The whole log is at stake, so it needs
/// `Ajar/activityLog/read` at the root.
pub(super) async fn verify_activity(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<ChainVerification>> {
    state.authorize_read(&caller, actions::ACTIVITY_READ, &AccessScope::root()).await?;
    let verdict = state.store.verify_activity_chain().await?;
    if let Err(seq) = verdict {
        tracing::error!(first_bad_entry = seq, "the activity log's hash chain does not verify");
    }
    Ok(Json(chain_verification_out(verdict)))
}
