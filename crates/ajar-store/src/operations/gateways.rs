//! Gateways: enrolment, the machines behind them, and their desired state.

use std::collections::HashSet;

use time::OffsetDateTime;

use ajar_domain::agent::{CUT_WINDOW, GatewayDesiredState, gateway_desired_state};
use ajar_domain::gateway::{Gateway, GatewayName, LiveMapping, check_public_addresses};
use ajar_domain::inventory::{AgentInfo, Vm};
use ajar_domain::plans::LiveGrant;
use ajar_domain::plans::access_request::GatewayPorts;
use ajar_domain::plans::gateway_assignment::plan_set_gateway;
use ajar_domain::policy::Policy;
use ajar_domain::{ErrorCode, Problem, VmId};

use super::Details;
use crate::backend::{Read, Tx};
use crate::{GatewayView, NewAgent, NewGateway, StoreResult};

fn not_found(name: &GatewayName) -> Problem {
    Problem::new(ErrorCode::GatewayNotFound, None, format!("no gateway named '{name}' is enrolled (ajar gateway list shows them)"))
}

fn mapping(g: &LiveGrant) -> Option<LiveMapping> {
    g.grant.mapped_port.map(|mapped_port| LiveMapping {
        request_id: g.request_id.clone(),
        vm: g.vm.clone(),
        number: g.grant.number,
        mapped_port,
    })
}

/// Records a gateway and its agent. A name enrolled already is refused, so that a leaked join token
/// cannot take a gateway over.
pub(crate) fn enroll(tx: &mut dyn Tx, new: &NewGateway, agent: &NewAgent, now: OffsetDateTime) -> StoreResult<String> {
    check_public_addresses(&new.public).map_err(|e| Problem::new(ErrorCode::InvalidGateway, None, e))?;
    if let Some(existing) = tx.gateway(&new.name)? {
        return Err(Problem::new(
            ErrorCode::Conflict,
            None,
            format!("gateway '{}' is enrolled already; remove it (ajar gateway remove) before enrolling it again", existing.name),
        )
        .into());
    }
    let id = uuid::Uuid::new_v4().to_string();
    let gateway = Gateway {
        name: new.name.clone(),
        public: new.public.clone(),
        mapped_ports: new.mapped_ports,
        agent: AgentInfo {
            agent_id: id.clone(),
            version: agent.version.clone(),
            nftables: agent.nftables.clone(),
            last_seen: now,
            applied: None,
        },
    };
    tx.insert_gateway(&gateway, agent, now)?;
    Ok(id)
}

pub(crate) fn view(r: &mut dyn Read, gateway: Gateway) -> StoreResult<GatewayView> {
    let machines = r.served_by(&gateway.name)?.into_iter().map(|vm| vm.id).collect();
    Ok(GatewayView { gateway, machines })
}

/// Removes a gateway; refused while a machine is behind it (its grants would lose their path).
pub(crate) fn delete(tx: &mut dyn Tx, name: &GatewayName) -> StoreResult<(bool, Details)> {
    let served = tx.served_by(name)?;
    if let Some(first) = served.first() {
        return Err(Problem::new(
            ErrorCode::Conflict,
            None,
            format!(
                "gateway '{name}' still serves {} machine(s), e.g. '{}'; take them out first (ajar vm set-gateway VM --none)",
                served.len(),
                first.id
            ),
        )
        .into());
    }
    Ok((tx.delete_gateway(name)?, Vec::new()))
}

/// Puts a machine behind a gateway or takes it out. Returns the machine as it now is, and the gateway
/// it was behind.
pub(crate) fn set_vm_gateway(
    tx: &mut dyn Tx,
    vm_id: &VmId,
    to: Option<&GatewayName>,
    now: OffsetDateTime,
) -> StoreResult<((Vm, Option<GatewayName>), Details)> {
    let mut vm = tx.vm(vm_id)?.ok_or_else(|| {
        Problem::new(ErrorCode::VirtualMachineNotFound, None, format!("virtual machine '{vm_id}' is not in the inventory")).about(vm_id)
    })?;
    let gateway = match to {
        Some(name) => Some(tx.gateway(name)?.ok_or_else(|| not_found(name))?),
        None => None,
    };
    let live: Vec<LiveMapping> = tx.live_grants_on(vm_id, None, now)?.iter().filter_map(mapping).collect();
    if plan_set_gateway(&vm, gateway.as_ref(), &live)? {
        tx.set_vm_gateway(vm_id, gateway.as_ref().map(|g| &g.name))?;
    }
    let name = |g: Option<&GatewayName>| g.map_or_else(|| "(none)".to_owned(), ToString::to_string);
    let previous = std::mem::replace(&mut vm.gateway, gateway.map(|g| g.name));
    let details = vec![("gateway".to_owned(), name(vm.gateway.as_ref())), ("previous".to_owned(), name(previous.as_ref()))];
    Ok(((vm, previous), details))
}

/// What an initiate needs about the gateways in front of the machines it names: their ranges and the
/// ports their live grants hold.
pub(crate) fn ports_for(tx: &mut dyn Tx, machines: &[VmId], now: OffsetDateTime) -> StoreResult<Vec<GatewayPorts>> {
    let mut gateways: Vec<GatewayPorts> = Vec::new();
    for id in machines {
        let Some(name) = tx.vm(id)?.and_then(|vm| vm.gateway) else { continue };
        if let Some(known) = gateways.iter_mut().find(|g| g.gateway.key() == name.key()) {
            known.machines.push(id.clone());
            continue;
        }
        let gateway = tx.gateway(&name)?.ok_or_else(|| not_found(&name))?;
        let live = tx.live_grants_behind(&name, now)?.iter().filter_map(mapping).collect();
        gateways.push(GatewayPorts { gateway: name, range: gateway.mapped_ports, machines: vec![id.clone()], live });
    }
    Ok(gateways)
}

pub(crate) fn desired_state(r: &mut dyn Read, name: &GatewayName, now: OffsetDateTime) -> StoreResult<GatewayDesiredState> {
    let gateway = r.gateway(name)?.ok_or_else(|| not_found(name))?;
    desired_state_of(r, &gateway, now)
}

/// What `gateway` must enforce now. Each policy holding machines behind it is read once.
pub(crate) fn desired_state_of(r: &mut dyn Read, gateway: &Gateway, now: OffsetDateTime) -> StoreResult<GatewayDesiredState> {
    let served = r.served_by(&gateway.name)?;
    let ids: Vec<VmId> = served.iter().map(|vm| vm.id.clone()).collect();
    let mut policies: Vec<Policy> = Vec::new();
    let mut read: HashSet<String> = HashSet::new();
    for (_, id) in r.holders(&ids)? {
        if read.insert(id.key())
            && let Some(stored) = r.policy(&id)?
        {
            policies.push(stored.policy);
        }
    }
    let grants = r.live_grants_behind(&gateway.name, now)?.into_iter().map(|g| (g.request_id, g.vm, g.grant)).collect();
    let cuts = r.cuts_behind(&gateway.name, now - CUT_WINDOW)?;
    Ok(gateway_desired_state(gateway, &served, &policies, grants, cuts, now))
}
