//! JIT policies: reading them with their history, and writing, deleting and enabling them as the
//! domain's plans say.

use time::OffsetDateTime;

use ajar_domain::gateway::Gateway;
use ajar_domain::ids::PolicyName;
use ajar_domain::inventory::Vm;
use ajar_domain::plans::policy_write::{Enable, PolicyWritePlan, PutPolicy, enable_target, plan_delete, plan_enable, plan_put};
use ajar_domain::plans::{LiveGrant, Precondition};
use ajar_domain::policy::{Limits, Policy, PortRule, StoredPolicy};
use ajar_domain::{PolicyId, VmId};

use super::Details;
use super::inventory::require_subscription;
use crate::backend::{PolicyQuery, Read, Tx};
use crate::{ListQuery, Page, PolicyView, PutOutcome, REQUEST_HISTORY, StoreError, StoreResult};

pub(crate) fn new_etag() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn view(r: &mut dyn Read, id: &PolicyId) -> StoreResult<Option<PolicyView>> {
    let Some(stored) = r.policy(id)? else { return Ok(None) };
    let requests = r.requests(id, REQUEST_HISTORY)?;
    Ok(Some(PolicyView { policy: stored.policy, etag: stored.etag, requests }))
}

pub(crate) fn list(r: &mut dyn Read, query: ListQuery) -> StoreResult<Page<PolicyView>> {
    let ids = r.list_policies(&PolicyQuery { scope: query.scope, within: query.within, page: query.page })?;
    let mut items = Vec::with_capacity(ids.items.len());
    for id in &ids.items {
        items.extend(view(r, id)?);
    }
    Ok(Page { items, next: ids.next })
}

/// The machines in the inventory among `ids`.
fn inventory_of(r: &mut dyn Read, ids: impl IntoIterator<Item = VmId>) -> StoreResult<Vec<Vm>> {
    let mut found = Vec::new();
    for id in ids {
        found.extend(r.vm(&id)?);
    }
    Ok(found)
}

/// The gateways in front of these machines, each once.
fn gateways_of(r: &mut dyn Read, machines: &[Vm]) -> StoreResult<Vec<Gateway>> {
    let mut gateways: Vec<Gateway> = Vec::new();
    for name in machines.iter().filter_map(|vm| vm.gateway.as_ref()) {
        if !gateways.iter().any(|g| g.name.key() == name.key())
            && let Some(gateway) = r.gateway(name)?
        {
            gateways.push(gateway);
        }
    }
    Ok(gateways)
}

/// Stores a plan's policy version and ends the grants it ends.
fn apply(tx: &mut dyn Tx, plan: &PolicyWritePlan, now: OffsetDateTime) -> StoreResult<()> {
    tx.write_policy(&plan.stored, now)?;
    tx.end_grants(&plan.end, now)
}

fn revoked_details(revoked: usize) -> Details {
    if revoked == 0 { Vec::new() } else { vec![("revokedGrants".to_owned(), revoked.to_string())] }
}

pub(crate) fn put(
    tx: &mut dyn Tx,
    policy: Policy,
    precondition: Option<&Precondition>,
    limits: &Limits,
    now: OffsetDateTime,
) -> StoreResult<((PutOutcome, PolicyView), Details)> {
    require_subscription(tx, &policy.id.subscription)?;
    let id = policy.id.clone();
    let named: Vec<VmId> = policy.vms.iter().map(|v| v.vm.clone()).collect();
    let stored = tx.policy(&id)?;
    let live = if stored.is_some() { tx.live_grants_of_policy(&id, now)? } else { Vec::new() };
    let inventory = inventory_of(tx, named.iter().cloned())?;
    let holders = tx.holders(&named)?;
    let gateways = gateways_of(tx, &inventory)?;
    let plan = plan_put(PutPolicy {
        policy,
        precondition,
        stored: stored.as_ref(),
        inventory: &inventory,
        gateways: &gateways,
        holders: &holders,
        live: &live,
        limits,
        etag: new_etag(),
    })?;
    apply(tx, &plan, now)?;
    let outcome = if plan.created { PutOutcome::Created } else { PutOutcome::Updated };
    let view = view(tx, &id)?.ok_or_else(|| StoreError::Backend("the policy vanished after writing it".into()))?;
    Ok(((outcome, view), revoked_details(plan.end.len())))
}

pub(crate) fn delete(
    tx: &mut dyn Tx,
    id: &PolicyId,
    precondition: Option<&Precondition>,
    now: OffsetDateTime,
) -> StoreResult<(Option<Policy>, Details)> {
    let stored = tx.policy(id)?;
    let live = if stored.is_some() { tx.live_grants_of_policy(id, now)? } else { Vec::new() };
    let Some(end) = plan_delete(stored.as_ref(), precondition, &live)? else { return Ok((None, Vec::new())) };
    tx.end_grants(&end, now)?;
    tx.delete_policy(id)?;
    Ok((stored.map(|s| s.policy), revoked_details(end.len())))
}

pub(crate) fn enable(
    tx: &mut dyn Tx,
    vms: &[VmId],
    name: &PolicyName,
    ports: Option<&[PortRule]>,
    limits: &Limits,
    now: OffsetDateTime,
) -> StoreResult<(Vec<PolicyView>, Details)> {
    let named = inventory_of(tx, vms.iter().cloned())?;
    let targets: Vec<PolicyId> = named.iter().map(|vm| enable_target(vm, name)).collect();
    let mut stored: Vec<StoredPolicy> = Vec::new();
    let mut live: Vec<LiveGrant> = Vec::new();
    for id in &targets {
        if stored.iter().any(|s| s.policy.id == *id) {
            continue;
        }
        if let Some(policy) = tx.policy(id)? {
            live.extend(tx.live_grants_of_policy(id, now)?);
            stored.push(policy);
        }
    }
    // The machines already in those policies are checked again with them.
    let members: Vec<VmId> = stored.iter().flat_map(|s| s.policy.vms.iter().map(|v| v.vm.clone())).collect();
    let mut inventory = named;
    inventory.extend(inventory_of(tx, members.iter().cloned())?);
    let all: Vec<VmId> = vms.iter().cloned().chain(members).collect();
    let holders = tx.holders(&all)?;
    let etags = vms.iter().map(|_| new_etag()).collect();
    let gateways = gateways_of(tx, &inventory)?;
    let plans = plan_enable(Enable {
        vms,
        inventory: &inventory,
        gateways: &gateways,
        holders: &holders,
        stored: &stored,
        live: &live,
        name,
        ports,
        limits,
        etags,
    })?;
    let mut views = Vec::with_capacity(plans.len());
    for plan in &plans {
        apply(tx, plan, now)?;
        views.extend(view(tx, &plan.stored.policy.id)?);
    }
    let names: Vec<String> = views.iter().map(|v| v.policy.id.to_string()).collect();
    Ok((views, vec![("policies".to_owned(), names.join(" "))]))
}
