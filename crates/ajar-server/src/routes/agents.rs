//! The agent protocol: enrolment with the join token, then, with the agent's
//! own credential, its machine's desired state (long-poll) and its reports.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use time::OffsetDateTime;

use ajar_api::ApiError;
use ajar_api::agent::{
    DesiredStateOut, EnrollOut, Enrolment, MAX_WAIT_SECONDS, desired_state_out, enroll_in, gateway_state_out, report_in,
};
use ajar_domain::activity::{Audit, Outcome, actions};
use ajar_store::{AgentOf, AgentReport, NewAgent, NewGateway, TokenPurpose};

use super::AppState;
use crate::auth::{AgentCaller, hash_token};
use crate::bootstrap::new_token;
use crate::http::{HttpError, HttpResult, JsonBody, Query};

fn enrol_audit(addr: std::net::IpAddr) -> Audit {
    Audit {
        operation: actions::AGENT_ENROLL,
        subscription: None,
        resource_group: None,
        resource_id: "/ajar/v1/agents/enroll".to_owned(),
        caller: "(join token)".to_owned(),
        caller_addr: Some(addr),
        subjects: Vec::new(),
        details: Vec::new(),
    }
}

pub(super) async fn enroll(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<(StatusCode, Json<EnrollOut>)> {
    let mut audit = enrol_audit(peer.ip().to_canonical());
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|s| s.strip_prefix("Bearer ")).map(str::trim);
    let principal = match token {
        Some(t) if !t.is_empty() => state.store.principal_for_token(hash_token(t), TokenPurpose::Join).await?,
        _ => None,
    };
    let Some(principal) = principal else {
        return Err(state.refuse(audit, ApiError::new(401, "InvalidAuthenticationToken", "enrolment needs the server's join token")).await);
    };
    audit.caller = principal.name;
    let defaults = state.store.defaults().await?.ok_or_else(|| HttpError(ApiError::internal()))?;
    let (enrolment, version, nftables) = match body
        .and_then(|JsonBody(b)| enroll_in(&b, &defaults.subscription, &defaults.resource_group, &defaults.location).map_err(HttpError))
    {
        Ok(parsed) => parsed,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    let vm = match enrolment {
        Enrolment::Machine(vm) => *vm,
        Enrolment::Gateway { name, public, mapped_ports } => {
            audit.resource_id = name.id();
            audit.subjects = vec![name.id_key()];
            audit.details = vec![
                ("gateway".into(), name.to_string()),
                ("version".into(), version.clone()),
                ("nftables".into(), nftables.clone().err().unwrap_or_else(|| "usable".into())),
                ("publicAddresses".into(), public.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")),
                ("mappedPorts".into(), mapped_ports.to_string()),
            ];
            let agent_token = new_token("ajaragent");
            let agent = NewAgent { token_hash: hash_token(&agent_token), version, nftables };
            let gateway = NewGateway { name: name.clone(), public, mapped_ports };
            // Refused if the name is enrolled already, so it is stored as spelled here.
            let agent_id = state.store.enroll_gateway(gateway, agent, audit).await?;
            return Ok((
                StatusCode::CREATED,
                Json(EnrollOut { agent_id, token: agent_token, vm_id: None, gateway: Some(name.to_string()) }),
            ));
        }
    };
    audit.subscription = Some(vm.id.subscription.to_string());
    audit.resource_group = Some(vm.id.resource_group.to_string());
    audit.resource_id = vm.id.to_string();
    audit.subjects = vec![vm.id.key()];
    audit.details = vec![
        ("version".into(), version.clone()),
        ("nftables".into(), nftables.clone().err().unwrap_or_else(|| "usable".into())),
        ("addresses".into(), vm.private_addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")),
    ];
    let agent_token = new_token("ajaragent");
    let id = vm.id.clone();
    let agent_id = state.store.enroll_agent(vm, NewAgent { token_hash: hash_token(&agent_token), version, nftables }, audit).await?;
    // The machine as stored: one in the inventory already keeps the spelling it was created with.
    let vm_id = state.store.get_vm(&id).await?.map_or(id, |stored| stored.id).to_string();
    Ok((StatusCode::CREATED, Json(EnrollOut { agent_id, token: agent_token, vm_id: Some(vm_id), gateway: None })))
}

/// The machine's desired state. With `etag` (the version the agent has) and
/// `waitSeconds`, answers only when it differs, or when the wait is over.
pub(super) async fn desired_state(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentCaller>,
    query: Query,
) -> HttpResult<Json<DesiredStateOut>> {
    let wait = match query.get("waitSeconds") {
        Some(w) => w
            .parse::<u64>()
            .map_err(|_| HttpError(ApiError::bad_request("InvalidRequestContent", "waitSeconds", "waitSeconds must be a whole number")))?
            .min(MAX_WAIT_SECONDS),
        None => 0,
    };
    let known = query.get("etag").map(str::to_owned);
    // Subscribe before reading, so a change between the two is not missed.
    let mut changes = match &agent.of {
        AgentOf::Machine(vm) => state.changes.subscribe(&vm.key()),
        AgentOf::Gateway(name) => {
            // Machines put behind the gateway later wake it through their assignment's notification.
            let served = state.store.get_gateway(name).await?.map(|g| g.machines).unwrap_or_default();
            state.changes.subscribe_gateway(&name.id_key(), served.iter().map(|vm| vm.key()).collect())
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        changes.borrow_and_update();
        let now = OffsetDateTime::now_utc();
        let out = match &agent.of {
            AgentOf::Machine(vm) => desired_state_out(&state.store.desired_state(vm).await?, now),
            AgentOf::Gateway(name) => gateway_state_out(&state.store.gateway_desired_state(name).await?, now),
        };
        if known.as_deref() != Some(out.etag.as_str()) {
            return Ok(Json(out));
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Ok(Json(out)) },
            _ = tokio::time::sleep_until(deadline) => return Ok(Json(out)),
        }
    }
}

pub(super) async fn report(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentCaller>,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<StatusCode> {
    let JsonBody(bytes) = body?;
    let (input, addresses) = report_in(&bytes)?;
    let report = AgentReport { version: input.version, nftables: input.nftables.to_result(), addresses, applied: input.applied_etag };
    state.store.agent_report(&agent.agent_id, report).await?;
    let (subscription, resource_group, resource_id, subject) = match &agent.of {
        AgentOf::Machine(vm) => (Some(vm.subscription.to_string()), Some(vm.resource_group.to_string()), vm.to_string(), vm.key()),
        AgentOf::Gateway(name) => (None, None, name.id(), name.id_key()),
    };
    let audit = |operation: &'static str, details: Vec<(String, String)>| Audit {
        operation,
        subscription: subscription.clone(),
        resource_group: resource_group.clone(),
        resource_id: resource_id.clone(),
        caller: format!("agent {}", agent.agent_id),
        caller_addr: Some(agent.addr),
        subjects: vec![subject.clone()],
        details,
    };
    if let Some(drift) = input.drift_repaired {
        state.store.record(audit(actions::AGENT_DRIFT_REPAIRED, vec![("drift".into(), drift)]), Outcome::Succeeded).await?;
    }
    for cut in input.cuts_done {
        let mut details = vec![
            ("requestId".into(), cut.request_id),
            ("port".into(), cut.number.to_string()),
            ("connectionsCut".into(), cut.connections.to_string()),
        ];
        let outcome = match cut.error {
            None => Outcome::Succeeded,
            Some(error) => {
                tracing::warn!(agent = %agent.agent_id, %error, "an agent could not cut connections");
                details.push(("error".into(), error));
                Outcome::Failed { code: "ConnectionCutFailed".into() }
            }
        };
        state.store.record(audit(actions::AGENT_CONNECTIONS_CUT, details), outcome).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
