//! Requests for access and early revokes: which grants they create and which live grants they end.

use std::collections::HashSet;

use time::OffsetDateTime;

use crate::ids::VmId;
use crate::initiate::{AccessRequest, Caller, InitiateDraft, StatusReason, plan_initiate, port_target, vm_target};
use crate::plans::{GrantEnd, LiveGrant};
use crate::policy::{Policy, Protocol};
use crate::prefix::Sources;
use crate::problem::{ErrorCode, Field, Problem, Target};

/// One policy's part of a request for access (Azure's initiate is per policy; the dashboard's request
/// for several machines may span policies).
#[derive(Debug, Clone)]
pub struct InitiatePart<'a> {
    pub policy: &'a Policy,
    pub draft: &'a InitiateDraft,
    /// The ID the part's request gets.
    pub request_id: String,
}

/// The requests to store, one per part, and the live grants they supersede.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiatePlan {
    pub requests: Vec<AccessRequest>,
    pub supersede: Vec<GrantEnd>,
}

/// A request for access across one or more policies: every port of every machine of every part must
/// be allowed ([`plan_initiate`]), or nothing is granted anywhere, and the problem names the machine
/// refused. Each grant supersedes the live grants on the same machine and port: the newest request is
/// what the port is open for. `live`: the live grants on the ports asked for.
pub fn plan_initiates(
    parts: &[InitiatePart<'_>],
    caller: &Caller,
    now: OffsetDateTime,
    live: &[LiveGrant],
) -> Result<InitiatePlan, Problem> {
    let mut named: HashSet<String> = HashSet::new();
    let mut requests = Vec::with_capacity(parts.len());
    for part in parts {
        let request = plan_initiate(part.policy, part.draft, caller, now, part.request_id.clone())?;
        // Within a part plan_initiate refuses a machine named twice; across parts, this does.
        if let Some((i, ask)) = part.draft.vms.iter().enumerate().find(|(_, ask)| !named.insert(ask.vm.key())) {
            return Err(Problem::at(
                ErrorCode::InvalidInitiateInput,
                vm_target(i).field(Field::Id),
                format!("virtual machine '{}' is named twice in the request", ask.vm),
            )
            .about(&ask.vm));
        }
        requests.push(request);
    }
    let supersede = live
        .iter()
        .filter(|old| {
            requests.iter().flat_map(|r| &r.vms).any(|vm| vm.vm == old.vm && vm.grants.iter().any(|g| g.number == old.grant.number))
        })
        .map(|old| old.end(StatusReason::NewerRequestInitiated))
        .collect();
    Ok(InitiatePlan { requests, supersede })
}

/// A grant revoked early under a policy that cuts connections on revoke: the established connections
/// of these sources to this port are to be cut by the machine's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutPlan {
    pub vm: VmId,
    pub request_id: String,
    pub port: u16,
    pub protocol: Protocol,
    pub sources: Sources,
}

/// The live grants a revoke ends, and the connections it cuts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokePlan {
    pub end: Vec<GrantEnd>,
    pub cuts: Vec<CutPlan>,
}

/// Ending live grants early, on the named ports of the named machines of `policy`: all of them or, if
/// a machine is not in the policy or a port is not configured on it, none, and the problem names it.
/// `live`: the live grants on those machines.
pub fn plan_revoke(policy: &Policy, targets: &[(VmId, Vec<u16>)], live: &[LiveGrant]) -> Result<RevokePlan, Problem> {
    let invalid = |target: Target, message: String, vm: &VmId| Problem::at(ErrorCode::InvalidInitiateInput, target, message).about(vm);
    if targets.is_empty() {
        return Err(Problem::at(ErrorCode::InvalidInitiateInput, Target::of(Field::VirtualMachines), "name at least one virtual machine"));
    }
    let mut seen = HashSet::new();
    for (i, (vm, ports)) in targets.iter().enumerate() {
        if !seen.insert(vm.key()) {
            return Err(invalid(vm_target(i).field(Field::Id), format!("virtual machine '{vm}' is listed twice"), vm));
        }
        let Some(rules) = policy.vm(vm) else {
            return Err(invalid(
                vm_target(i).field(Field::Id),
                format!("virtual machine '{vm}' is not configured in JIT policy '{}'", policy.id.name),
                vm,
            ));
        };
        if ports.is_empty() {
            return Err(invalid(vm_target(i).field(Field::Ports), "name at least one port".into(), vm));
        }
        let mut seen_ports = HashSet::new();
        for (j, port) in ports.iter().enumerate() {
            let at = port_target(i, j).field(Field::Number);
            if !seen_ports.insert(*port) {
                return Err(invalid(at, format!("port {port} is listed twice"), vm));
            }
            if rules.port(*port).is_none() {
                let configured: Vec<String> = rules.ports.iter().map(|p| p.number.to_string()).collect();
                return Err(invalid(
                    at,
                    format!("port {port} is not configured for JIT on '{}'; configured: {}", vm.name, configured.join(", ")),
                    vm,
                ));
            }
        }
    }
    let ended: Vec<&LiveGrant> = live
        .iter()
        .filter(|g| g.policy == policy.id && targets.iter().any(|(vm, ports)| *vm == g.vm && ports.contains(&g.grant.number)))
        .collect();
    let cuts = if policy.cut_connections_on_revoke {
        ended
            .iter()
            .map(|g| CutPlan {
                vm: g.vm.clone(),
                request_id: g.request_id.clone(),
                port: g.grant.number,
                protocol: g.grant.protocol,
                sources: g.grant.sources.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(RevokePlan { end: ended.iter().map(|g| g.end(StatusReason::UserRequested)).collect(), cuts })
}
