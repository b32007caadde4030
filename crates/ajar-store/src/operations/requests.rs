//! Requests for access and early revokes, as the domain's plans say.

use time::OffsetDateTime;

use ajar_domain::agent::CUT_WINDOW;
use ajar_domain::initiate::{AccessRequest, Caller};
use ajar_domain::plans::access_request::{InitiatePart as PlanPart, plan_initiates, plan_revoke};
use ajar_domain::policy::StoredPolicy;
use ajar_domain::{ErrorCode, PolicyId, Problem, VmId};

use super::Details;
use crate::backend::Tx;
use crate::{InitiatePart, StoreResult};

fn policy_not_found() -> Problem {
    Problem::new(ErrorCode::PolicyNotFound, None, "no JIT policy with this name exists in this resource group and location")
}

/// Stores a request across one or more policies, or nothing. Each part's entry records its request
/// ID, the end of each grant, and how many older grants it superseded.
pub(crate) fn initiate(
    tx: &mut dyn Tx,
    parts: &[InitiatePart],
    caller: &Caller,
    now: OffsetDateTime,
) -> StoreResult<(Vec<AccessRequest>, Vec<Details>)> {
    let mut policies: Vec<StoredPolicy> = Vec::with_capacity(parts.len());
    let mut live = Vec::new();
    for part in parts {
        policies.push(tx.policy(&part.policy)?.ok_or_else(policy_not_found)?);
        for ask in &part.draft.vms {
            let ports: Vec<u16> = ask.ports.iter().map(|p| p.number).collect();
            live.extend(tx.live_grants_on(&ask.vm, Some(&ports), now)?);
        }
    }
    // Time-ordered IDs (v7) append to the unique index instead of landing on a random page.
    let plan_parts: Vec<PlanPart<'_>> = parts
        .iter()
        .zip(&policies)
        .map(|(part, stored)| PlanPart { policy: &stored.policy, draft: &part.draft, request_id: uuid::Uuid::now_v7().to_string() })
        .collect();
    let machines: Vec<VmId> = parts.iter().flat_map(|p| p.draft.vms.iter().map(|ask| ask.vm.clone())).collect();
    let gateways = super::gateways::ports_for(tx, &machines, now)?;
    let plan = plan_initiates(&plan_parts, caller, now, &live, &gateways)?;
    tx.end_grants(&plan.supersede, now)?;
    let mut details = Vec::with_capacity(plan.requests.len());
    for request in &plan.requests {
        tx.insert_request(request, caller)?;
        let mut d = vec![("requestId".to_owned(), request.id.clone())];
        for vm in &request.vms {
            for g in &vm.grants {
                let until = format!("until {}", format_time(g.end));
                d.push((
                    format!("{}:{}", vm.vm.name, g.number),
                    match g.mapped_port {
                        Some(mapped) => format!("{until} through gateway port {mapped}"),
                        None => until,
                    },
                ));
            }
        }
        let superseded = plan.supersede.iter().filter(|s| request.vms.iter().any(|vm| vm.vm == s.vm)).count();
        if superseded > 0 {
            d.push(("superseded".to_owned(), superseded.to_string()));
        }
        details.push(d);
    }
    Ok((plan.requests, details))
}

/// RFC 3339, as the activity log has always written end times.
fn format_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn revoke(tx: &mut dyn Tx, policy: &PolicyId, targets: &[(VmId, Vec<u16>)], now: OffsetDateTime) -> StoreResult<(u64, Details)> {
    let stored = tx.policy(policy)?.ok_or_else(policy_not_found)?;
    let mut live = Vec::new();
    for (vm, ports) in targets {
        live.extend(tx.live_grants_on(vm, Some(ports), now)?);
    }
    let plan = plan_revoke(&stored.policy, targets, &live)?;
    tx.insert_cuts(&plan.cuts, now, now - CUT_WINDOW)?;
    tx.end_grants(&plan.end, now)?;
    let revoked = plan.end.len() as u64;
    Ok((revoked, vec![("revokedGrants".to_owned(), revoked.to_string())]))
}
