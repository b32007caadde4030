//! What an enforcement point must enforce: a host agent, the protected ports of its machine's JIT
//! policy and the live grants on them; a gateway, the same for every machine it serves, as mappings.

use std::collections::HashMap;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::gateway::Gateway;
use crate::ids::VmId;
use crate::initiate::Grant;
use crate::inventory::Vm;
use crate::policy::{Policy, PortRule, Protocol};
use crate::prefix::Sources;

/// One live grant as the agent needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGrant {
    pub request_id: String,
    pub port: u16,
    pub protocol: Protocol,
    pub sources: Sources,
    pub end: OffsetDateTime,
    /// The gateway port the grant is mapped to, when the machine is behind a gateway.
    pub mapped_port: Option<u16>,
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
    state_under(vm, rules, grants, cuts, now)
}

/// [`desired_state`], given the machine's port rules.
fn state_under(vm: &VmId, rules: &[PortRule], grants: &[(String, Grant)], cuts: Vec<ConnectionCut>, now: OffsetDateTime) -> DesiredState {
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
            mapped_port: g.mapped_port,
        })
        .collect();
    live.sort_by(|a, b| (a.port, &a.request_id).cmp(&(b.port, &b.request_id)));
    DesiredState { vm: vm.clone(), protected, grants: live, cuts: recent(cuts, now) }
}

/// The cuts of the last [`CUT_WINDOW`], oldest first.
fn recent(mut cuts: Vec<ConnectionCut>, now: OffsetDateTime) -> Vec<ConnectionCut> {
    cuts.retain(|c| c.revoked > now - CUT_WINDOW);
    cuts.sort_by(|a, b| (a.revoked, &a.id).cmp(&(b.revoked, &b.id)));
    cuts
}

/// Names a desired state by its content: the first 12 bytes of a SHA-256, in hex.
fn name(lines: impl IntoIterator<Item = String>) -> String {
    let mut h = Sha256::new();
    for line in lines {
        h.update(line);
        h.update("\n");
    }
    h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

fn sources_text(sources: &Sources) -> String {
    sources.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

impl DesiredState {
    /// Equal content, equal etag (the time left is not content): what an agent reports it applied.
    pub fn etag(&self) -> String {
        let protected = self.protected.iter().map(|(port, proto)| format!("p {port} {proto}"));
        let grants = self
            .grants
            .iter()
            .map(|g| format!("g {} {} {} {} {}", g.request_id, g.port, g.protocol, sources_text(&g.sources), g.end.unix_timestamp_nanos()));
        name(protected.chain(grants).chain(self.cuts.iter().map(|c| format!("c {}", c.id))))
    }
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

impl GatewayDesiredState {
    /// As [`DesiredState::etag`], for a gateway.
    pub fn etag(&self) -> String {
        let public = self.public.iter().map(|a| format!("a {a}"));
        let machines = self.machines.iter().flat_map(|m| {
            let addresses: Vec<String> = m.addresses.iter().map(ToString::to_string).collect();
            std::iter::once(format!("m {} {}", m.vm.key(), addresses.join(",")))
                .chain(m.protected.iter().map(|(port, proto)| format!("p {port} {proto}")))
        });
        let mappings = self.mappings.iter().map(|g| {
            let end = g.end.unix_timestamp_nanos();
            format!("g {} {} {} {} {} {} {end}", g.request_id, g.vm.key(), g.port, g.protocol, g.mapped_port, sources_text(&g.sources))
        });
        name(public.chain(machines).chain(mappings).chain(self.cuts.iter().map(|c| format!("c {}", c.id))))
    }
}

/// The desired state of `gateway`, serving `served` under `policies` (those that hold any of them),
/// given the grants on them (`(request id, machine, grant)`) and their cuts: each machine's own
/// desired state (as [`desired_state`]: live grants on ports its policy still protects), of which the
/// mapped grants become mappings, and the cuts of mapped grants with the mapped port as theirs.
pub fn gateway_desired_state(
    gateway: &Gateway,
    served: &[Vm],
    policies: &[Policy],
    grants: Vec<(String, VmId, Grant)>,
    cuts: Vec<ConnectionCut>,
    now: OffsetDateTime,
) -> GatewayDesiredState {
    // By machine key, so that thousands of machines in one policy are not each searched for.
    let rules: HashMap<String, &[PortRule]> =
        policies.iter().flat_map(|p| p.vms.iter().map(|v| (v.vm.key(), v.ports.as_slice()))).collect();
    let mut by_machine: HashMap<String, Vec<(String, Grant)>> = HashMap::new();
    for (request_id, vm, grant) in grants {
        by_machine.entry(vm.key()).or_default().push((request_id, grant));
    }
    let mut machines = Vec::with_capacity(served.len());
    let mut mappings = Vec::new();
    for vm in served {
        let key = vm.id.key();
        let grants = by_machine.remove(&key).unwrap_or_default();
        let state = state_under(&vm.id, rules.get(&key).copied().unwrap_or_default(), &grants, Vec::new(), now);
        mappings.extend(state.grants.into_iter().filter_map(|g| {
            Some(DesiredMapping {
                mapped_port: g.mapped_port?,
                request_id: g.request_id,
                vm: vm.id.clone(),
                port: g.port,
                protocol: g.protocol,
                sources: g.sources,
                end: g.end,
            })
        }));
        machines.push(ServedMachine { vm: vm.id.clone(), addresses: vm.private_addresses.clone(), protected: state.protected });
    }
    machines.sort_by_key(|m| m.vm.key());
    mappings.sort_by_key(|m| m.mapped_port);
    let cuts = cuts.into_iter().filter_map(|c| c.mapped_port.map(|port| ConnectionCut { port, ..c })).collect();
    GatewayDesiredState { public: gateway.public.clone(), machines, mappings, cuts: recent(cuts, now) }
}
