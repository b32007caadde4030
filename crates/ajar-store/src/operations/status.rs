//! What the JIT page and the agents read: a machine's JIT status and its desired state.

use time::OffsetDateTime;

use ajar_domain::VmId;
use ajar_domain::access::Scope as AccessScope;
use ajar_domain::agent::{self, CUT_WINDOW, DesiredState};
use ajar_domain::ids::Scope;
use ajar_domain::inventory::Vm;
use ajar_domain::policy::Policy;
use ajar_domain::status::{GatewayStatus, JitState, VmJitStatus, jit_state, recent_days, recent_window_start};

use crate::backend::{Read, VmQuery};
use crate::{Page, StoreResult};

/// The policy the machine is in, if any.
fn policy_holding(r: &mut dyn Read, vm: &VmId) -> StoreResult<Option<Policy>> {
    let Some((_, id)) = r.holders(std::slice::from_ref(vm))?.pop() else { return Ok(None) };
    Ok(r.policy(&id)?.map(|s| s.policy))
}

/// The statuses of these machines (those in the inventory), in order.
pub(crate) fn of_ids(r: &mut dyn Read, ids: &[VmId], now: OffsetDateTime) -> StoreResult<Vec<VmJitStatus>> {
    let mut gateways = Vec::new();
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(vm) = r.vm(id)? {
            found.push(of(r, vm, now, &mut gateways)?);
        }
    }
    Ok(found)
}

pub(crate) fn statuses(r: &mut dyn Read, query: &VmQuery, now: OffsetDateTime) -> StoreResult<Page<VmJitStatus>> {
    let vms = r.list_vms(query)?;
    let mut gateways = Vec::new();
    let items = vms.items.into_iter().map(|vm| of(r, vm, now, &mut gateways)).collect::<StoreResult<Vec<_>>>()?;
    Ok(Page { items, next: vms.next })
}

/// The status of a machine's gateway, through `known` (the gateways of the statuses read so far), so
/// that a page of machines behind one gateway computes its desired state once.
fn gateway_status(r: &mut dyn Read, vm: &Vm, now: OffsetDateTime, known: &mut Vec<GatewayStatus>) -> StoreResult<Option<GatewayStatus>> {
    let Some(name) = &vm.gateway else { return Ok(None) };
    if let Some(status) = known.iter().find(|g| g.gateway.name.key() == name.key()) {
        return Ok(Some(status.clone()));
    }
    let Some(gateway) = r.gateway(name)? else { return Ok(None) };
    let desired_etag = super::gateways::desired_state_of(r, &gateway, now)?.etag();
    let status = GatewayStatus { gateway, desired_etag };
    known.push(status.clone());
    Ok(Some(status))
}

pub(crate) fn jit_states(r: &mut dyn Read, scope: &Scope, within: Option<&[AccessScope]>) -> StoreResult<Vec<(Vm, JitState)>> {
    Ok(r.vms_with_policy_flag(scope, within)?
        .into_iter()
        .map(|(vm, configured)| {
            let state = jit_state(&vm, configured);
            (vm, state)
        })
        .collect())
}

fn of(r: &mut dyn Read, vm: Vm, now: OffsetDateTime, gateways: &mut Vec<GatewayStatus>) -> StoreResult<VmJitStatus> {
    let policy = policy_holding(r, &vm.id)?;
    let ports = policy.as_ref().and_then(|p| p.vm(&vm.id)).map(|v| v.ports.clone()).unwrap_or_default();
    let counts = r.requests_per_day(&vm.id, recent_window_start(now))?;
    let mut requests_by_day = recent_days(now);
    for (day, count) in requests_by_day.iter_mut().zip(counts) {
        day.1 = count;
    }
    let last = r.last_access(&vm.id)?;
    // One read of the live grants serves both what is shown (who asked) and what the agent must
    // enforce (which request).
    let (by_request, live): (Vec<_>, Vec<_>) =
        r.live_grants_on(&vm.id, None, now)?.into_iter().map(|g| ((g.request_id, g.grant.clone()), (g.requestor, g.grant))).unzip();
    let cuts = r.cuts_since(&vm.id, now - CUT_WINDOW)?;
    let state = jit_state(&vm, policy.is_some());
    let desired = agent::desired_state(&vm.id, policy.as_ref(), &by_request, cuts, now);
    let gateway = gateway_status(r, &vm, now, gateways)?;
    Ok(VmJitStatus {
        desired,
        state,
        gateway,
        policy: policy.map(|p| p.id),
        ports,
        requests_by_day,
        last_access: last.as_ref().map(|(t, _)| *t),
        last_user: last.map(|(_, user)| user),
        live,
        vm,
    })
}

pub(crate) fn desired_state(r: &mut dyn Read, vm: &VmId, now: OffsetDateTime) -> StoreResult<DesiredState> {
    let policy = policy_holding(r, vm)?;
    let grants: Vec<_> = r.live_grants_on(vm, None, now)?.into_iter().map(|g| (g.request_id, g.grant)).collect();
    let cuts = r.cuts_since(vm, now - CUT_WINDOW)?;
    Ok(agent::desired_state(vm, policy.as_ref(), &grants, cuts, now))
}
