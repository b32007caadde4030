//! What a host agent must enforce on its machine: the protected ports of its
//! JIT policy and the live grants on them.

use time::OffsetDateTime;

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
