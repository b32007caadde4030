//! What an enforcement point must enforce: a host agent, the protected ports of its machine's JIT
//! policy and the live grants on them; a gateway, the same for every machine it serves, as mappings.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::gateway::Gateway;
use crate::inventory::Vm;

use crate::ids::VmId;
use crate::initiate::Grant;
use crate::policy::{Policy, Protocol};
use crate::prefix::Sources;

/// One live grant as the agent needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGrant {
    pub request_id: String,
    pub port: u16,
    pub protocol: Protocol,
    pub sources: Sources,
    pub end: OffsetDateTime,
}

/// A grant revoked early under a policy that cuts connections on revoke: the
/// agent removes the established connections it let in, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionCut {
    /// Unique per revoked grant, so the agent can tell which cuts it has done.
    pub id: String,
    pub request_id: String,
    pub port: u16,
    pub protocol: Protocol,
    pub sources: Sources,
    pub revoked: OffsetDateTime,
    /// The gateway port the grant was mapped to, when a gateway served it.
    pub mapped_port: Option<u16>,
}

/// How long a cut stays in the desired state: an agent that was offline for
/// longer has missed it (its grant's connections are then no longer cut).
pub const CUT_WINDOW: time::Duration = time::Duration::minutes(15);

/// A machine's whole desired state. Empty `protected` means JIT is off there:
/// the agent keeps no rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredState {
    pub vm: VmId,
    pub protected: Vec<(u16, Protocol)>,
    pub grants: Vec<DesiredGrant>,
    /// Cuts revoked within [`CUT_WINDOW`], oldest first.
    pub cuts: Vec<ConnectionCut>,
}

/// The desired state of `vm` under `policy` (if any) with these grants, keeping
/// only grants that are live at `now` on a port the policy still protects, and
/// the cuts of the last [`CUT_WINDOW`].
pub fn desired_state(
    vm: &VmId,
    policy: Option<&Policy>,
    grants: &[(String, Grant)],
    cuts: Vec<ConnectionCut>,
    now: OffsetDateTime,
) -> DesiredState {
    let rules = policy.and_then(|p| p.vm(vm)).map(|v| v.ports.as_slice()).unwrap_or_default();
    let mut protected: Vec<(u16, Protocol)> = rules.iter().map(|r| (r.number, r.protocol)).collect();
    protected.sort_by_key(|(n, p)| (*n, p.as_str()));
    let mut live: Vec<DesiredGrant> = grants
        .iter()
        .filter(|(_, g)| g.is_live(now) && rules.iter().any(|r| r.number == g.number))
        .map(|(id, g)| DesiredGrant {
            request_id: id.clone(),
            port: g.number,
            protocol: g.protocol,
            sources: g.sources.clone(),
            end: g.end,
        })
        .collect();
    live.sort_by(|a, b| (a.port, &a.request_id).cmp(&(b.port, &b.request_id)));
    let mut cuts: Vec<ConnectionCut> = cuts.into_iter().filter(|c| c.revoked > now - CUT_WINDOW).collect();
    cuts.sort_by(|a, b| (a.revoked, &a.id).cmp(&(b.revoked, &b.id)));
    DesiredState { vm: vm.clone(), protected, grants: live, cuts }
}

/// A machine behind a gateway, as the gateway needs it: where to forward, and which of its ports
/// nothing may reach through the gateway without a live mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedMachine {
    pub vm: VmId,
    pub addresses: Vec<IpAddr>,
    pub protected: Vec<(u16, Protocol)>,
}

/// One live grant on a gateway: `mapped_port` on the gateway's public addresses leads to `port` on
/// the machine, for `sources` only, until `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMapping {
    pub request_id: String,
    pub vm: VmId,
    pub port: u16,
    pub protocol: Protocol,
    pub sources: Sources,
    pub mapped_port: u16,
    pub end: OffsetDateTime,
}

/// A gateway's whole desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayDesiredState {
    pub public: Vec<IpAddr>,
    pub machines: Vec<ServedMachine>,
    pub mappings: Vec<DesiredMapping>,
    /// Cuts of mapped grants revoked within [`CUT_WINDOW`], oldest first; `port` is the mapped port.
    pub cuts: Vec<ConnectionCut>,
}

/// The desired state of `gateway`, serving `served` (each with its policy, if any), given the grants
/// on them (`(request id, machine, grant)`) and their cuts. Only grants that are live at `now`, on a
/// port their machine's policy still protects, and mapped, become mappings.
pub fn gateway_desired_state(
    gateway: &Gateway,
    served: &[(Vm, Option<Policy>)],
    grants: &[(String, VmId, Grant)],
    cuts: Vec<ConnectionCut>,
    now: OffsetDateTime,
) -> GatewayDesiredState {
    let mut machines = Vec::with_capacity(served.len());
    let mut mappings = Vec::new();
    for (vm, policy) in served {
        let state = desired_state(&vm.id, policy.as_ref(), &[], Vec::new(), now);
        machines.push(ServedMachine { vm: vm.id.clone(), addresses: vm.private_addresses.clone(), protected: state.protected.clone() });
        let mine: Vec<(String, Grant)> =
            grants.iter().filter(|(_, on, _)| *on == vm.id).map(|(id, _, g)| (id.clone(), g.clone())).collect();
        let live = desired_state(&vm.id, policy.as_ref(), &mine, Vec::new(), now).grants;
        for g in live {
            let Some(mapped_port) = mine.iter().find(|(id, x)| *id == g.request_id && x.number == g.port).and_then(|(_, x)| x.mapped_port)
            else {
                continue;
            };
            mappings.push(DesiredMapping {
                request_id: g.request_id,
                vm: vm.id.clone(),
                port: g.port,
                protocol: g.protocol,
                sources: g.sources,
                mapped_port,
                end: g.end,
            });
        }
    }
    machines.sort_by_key(|m| m.vm.key());
    mappings.sort_by_key(|m| m.mapped_port);
    let mut cuts: Vec<ConnectionCut> = cuts
        .into_iter()
        .filter(|c| c.revoked > now - CUT_WINDOW)
        .filter_map(|c| c.mapped_port.map(|port| ConnectionCut { port, ..c }))
        .collect();
    cuts.sort_by(|a, b| (a.revoked, &a.id).cmp(&(b.revoked, &b.id)));
    GatewayDesiredState { public: gateway.public.clone(), machines, mappings, cuts }
}
