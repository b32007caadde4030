//! Requests for access and early revokes: which grants they create and which live grants they end.

use std::collections::{BTreeSet, HashSet};

use time::OffsetDateTime;

use crate::gateway::{GatewayName, LiveMapping, PortRange, allocate};
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

/// A gateway that serves machines of a request: its range and the ports its live grants hold.
#[derive(Debug, Clone)]
pub struct GatewayPorts {
    pub gateway: GatewayName,
    pub range: PortRange,
    /// The machines of the request it serves.
    pub machines: Vec<VmId>,
    pub live: Vec<LiveMapping>,
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
/// what the port is open for. `live`: the live grants on the ports asked for. A grant on a machine
/// behind a gateway (`gateways`) gets a mapped port no other live grant on that gateway holds (a
/// superseded grant's is free again), the same one as last time where it can.
pub fn plan_initiates(
    parts: &[InitiatePart<'_>],
    caller: &Caller,
    now: OffsetDateTime,
    live: &[LiveGrant],
    gateways: &[GatewayPorts],
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
        .collect::<Vec<GrantEnd>>();
    for gateway in gateways {
        let mut taken: BTreeSet<u16> = gateway
            .live
            .iter()
            .filter(|m| !supersede.iter().any(|e| e.request_id == m.request_id && e.vm == m.vm && e.port == m.number))
            .map(|m| m.mapped_port)
            .collect();
        for (i, vm) in requests.iter_mut().flat_map(|r| r.vms.iter_mut().enumerate()).filter(|(_, vm)| gateway.machines.contains(&vm.vm)) {
            for (j, grant) in vm.grants.iter_mut().enumerate() {
                let Some(port) = allocate(gateway.range, &taken, &vm.vm, grant.number) else {
                    return Err(Problem::at(
                        ErrorCode::Conflict,
                        port_target(i, j).field(Field::Number),
                        format!(
                            "gateway '{}' has no free port left in its range {} ({} live grants hold them all); try again when one ends",
                            gateway.gateway,
                            gateway.range,
                            taken.len()
                        ),
                    )
                    .about(&vm.vm));
                };
                taken.insert(port);
                grant.mapped_port = Some(port);
            }
        }
    }
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
    /// The gateway port of the grant, whose connections the gateway cuts.
    pub mapped_port: Option<u16>,
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
                mapped_port: g.grant.mapped_port,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(RevokePlan { end: ended.iter().map(|g| g.end(StatusReason::UserRequested)).collect(), cuts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccessDuration;
    use crate::ids::PolicyId;
    use crate::initiate::{EndSpec, GrantStatus, PortAsk, VmAsk};
    use crate::policy::{PortRule, VmPolicy};
    use crate::prefix::SourcePrefix;
    use crate::test_ids::{NOW, SUB, vm};

    fn policy(name: &str, vms: &[&str], cut: bool) -> Policy {
        let rule = |number| PortRule {
            number,
            protocol: Protocol::Tcp,
            sources: Sources::One(SourcePrefix::Any),
            max_duration: AccessDuration::from_seconds(3600),
        };
        Policy {
            id: format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Security/locations/local/jitNetworkAccessPolicies/{name}"
            )
            .parse::<PolicyId>()
            .unwrap(),
            kind: None,
            vms: vms.iter().map(|v| VmPolicy { vm: vm(v), ports: vec![rule(22), rule(3389)], public_ip: None }).collect(),
            cut_connections_on_revoke: cut,
        }
    }

    fn draft(asks: &[(&str, &[u16])]) -> InitiateDraft {
        let port = |number| PortAsk { number, end: EndSpec::For(AccessDuration::from_seconds(600)), sources: None };
        InitiateDraft {
            vms: asks.iter().map(|(v, ports)| VmAsk { vm: vm(v), ports: ports.iter().map(|&n| port(n)).collect() }).collect(),
            justification: None,
        }
    }

    fn live(policy: &Policy, request: &str, on: &str, port: u16) -> LiveGrant {
        LiveGrant {
            request_id: request.into(),
            requestor: "bob".into(),
            policy: policy.id.clone(),
            start: NOW - time::Duration::minutes(5),
            vm: vm(on),
            grant: crate::initiate::Grant {
                number: port,
                protocol: Protocol::Tcp,
                sources: Sources::One(SourcePrefix::Any),
                end: NOW + time::Duration::minutes(5),
                status: GrantStatus::Initiated,
                reason: StatusReason::UserRequested,
                mapped_port: None,
            },
        }
    }

    fn caller() -> Caller {
        Caller { principal_id: "p".into(), name: "alice".into(), addr: "10.0.0.1".parse().unwrap() }
    }

    /// The request IDs and ports each case's plan ends, or the refused machine and target.
    fn check(parts: &[(&Policy, InitiateDraft)], live: &[LiveGrant], expected: Result<&[(&str, u16)], (&str, &str)>) {
        let parts: Vec<InitiatePart<'_>> =
            parts.iter().enumerate().map(|(i, (p, d))| InitiatePart { policy: p, draft: d, request_id: format!("new{i}") }).collect();
        match (plan_initiates(&parts, &caller(), NOW, live, &[]), expected) {
            (Ok(plan), Ok(ended)) => {
                let got: Vec<(&str, u16)> = plan.supersede.iter().map(|e| (e.request_id.as_str(), e.port)).collect();
                assert_eq!(got, ended);
                assert!(plan.supersede.iter().all(|e| e.reason == StatusReason::NewerRequestInitiated));
                assert_eq!(plan.requests.len(), parts.len());
            }
            (Err(p), Err((machine, target))) => {
                assert_eq!(p.machine.as_deref(), Some(&vm(machine)), "{p}");
                assert_eq!(p.target.as_ref().map(ToString::to_string).as_deref(), Some(target), "{p}");
            }
            (got, want) => panic!("got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn initiates_supersede_and_refuse_whole() {
        let (a, b) = (policy("a", &["vm1", "vm2"], false), policy("b", &["vm3"], false));
        let old = [live(&a, "r1", "vm1", 22), live(&a, "r2", "vm1", 3389), live(&b, "r3", "vm3", 22)];
        check(&[(&a, draft(&[("vm1", &[22])]))], &old, Ok(&[("r1", 22)]));
        check(&[(&a, draft(&[("vm1", &[22, 3389])])), (&b, draft(&[("vm3", &[22])]))], &old, Ok(&[("r1", 22), ("r2", 3389), ("r3", 22)]));
        check(&[(&a, draft(&[("vm2", &[22])]))], &old, Ok(&[]));
        // The second part refuses all; the machine refused is named, the target is within its part.
        check(&[(&a, draft(&[("vm1", &[22])])), (&b, draft(&[("vm3", &[80])]))], &old, Err(("vm3", "VirtualMachines[0].Ports[0].Number")));
        check(&[(&a, draft(&[("vm1", &[22])])), (&b, draft(&[("vm1", &[22])]))], &old, Err(("vm1", "VirtualMachines[0].Id")));
        check(&[(&a, draft(&[("vm1", &[22]), ("vm2", &[23])]))], &old, Err(("vm2", "VirtualMachines[1].Ports[0].Number")));
    }

    #[test]
    fn grants_behind_a_gateway_get_their_own_mapped_port() {
        use crate::gateway::{LiveMapping, PortRange};
        let a = policy("a", &["vm1", "vm2"], false);
        let gateway = |range: PortRange, live: Vec<LiveMapping>| GatewayPorts {
            gateway: "gw".parse().unwrap(),
            range,
            machines: vec![vm("vm1"), vm("vm2")],
            live,
        };
        let mapped = |plan: &InitiatePlan| -> Vec<(String, u16, Option<u16>)> {
            plan.requests[0].vms.iter().flat_map(|v| v.grants.iter().map(|g| (v.vm.name.to_string(), g.number, g.mapped_port))).collect()
        };
        let plan_for = |d: &InitiateDraft, live: &[LiveGrant], gw: &GatewayPorts| {
            plan_initiates(
                &[InitiatePart { policy: &a, draft: d, request_id: "new".into() }],
                &caller(),
                NOW,
                live,
                std::slice::from_ref(gw),
            )
        };
        let range = PortRange::new(50000, 50999).unwrap();
        let first = plan_for(&draft(&[("vm1", &[22, 3389]), ("vm2", &[22])]), &[], &gateway(range, vec![])).unwrap();
        let ports: Vec<u16> = mapped(&first).iter().map(|(_, _, p)| p.unwrap()).collect();
        assert!(ports.iter().all(|p| range.contains(*p)) && ports.iter().collect::<HashSet<_>>().len() == 3, "{ports:?}");
        // Asking again for vm1:22 supersedes its grant and gets the same port; vm2:22 still holds its own.
        let mut old = live(&a, "r1", "vm1", 22);
        old.grant.mapped_port = Some(ports[0]);
        let held = vec![
            LiveMapping { request_id: "r1".into(), vm: vm("vm1"), number: 22, mapped_port: ports[0] },
            LiveMapping { request_id: "r2".into(), vm: vm("vm2"), number: 22, mapped_port: ports[2] },
        ];
        let again = plan_for(&draft(&[("vm1", &[22])]), &[old], &gateway(range, held.clone())).unwrap();
        assert_eq!(mapped(&again), [("vm1".to_owned(), 22, Some(ports[0]))]);
        // A range whose every port is held refuses the request, naming the port.
        let full = PortRange::new(ports[2], ports[2]).unwrap();
        let refused = plan_for(&draft(&[("vm1", &[3389])]), &[], &gateway(full, held)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Conflict);
        assert_eq!(refused.target.map(|t| t.to_string()).as_deref(), Some("VirtualMachines[0].Ports[0].Number"));
        // A machine no gateway serves gets no mapped port.
        let host = plan_initiates(
            &[InitiatePart { policy: &a, draft: &draft(&[("vm1", &[22])]), request_id: "h".into() }],
            &caller(),
            NOW,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(mapped(&host), [("vm1".to_owned(), 22, None)]);
    }

    #[test]
    fn revokes_end_only_what_they_name() {
        let (a, b) = (policy("a", &["vm1", "vm2"], true), policy("b", &["vm3"], false));
        let old = [live(&a, "r1", "vm1", 22), live(&a, "r2", "vm2", 22), live(&b, "r3", "vm3", 22), live(&a, "r4", "vm1", 3389)];
        let plan = plan_revoke(&a, &[(vm("vm1"), vec![22]), (vm("vm2"), vec![22, 3389])], &old).unwrap();
        assert_eq!(plan.end.iter().map(|e| (e.request_id.as_str(), e.port)).collect::<Vec<_>>(), [("r1", 22), ("r2", 22)]);
        assert_eq!(plan.cuts.iter().map(|c| c.request_id.as_str()).collect::<Vec<_>>(), ["r1", "r2"], "the policy cuts connections");
        assert!(plan_revoke(&b, &[(vm("vm3"), vec![22])], &old).unwrap().cuts.is_empty());
        for (targets, machine, target) in [
            (vec![(vm("vm1"), vec![22]), (vm("vm3"), vec![22])], "vm3", "VirtualMachines[1].Id"),
            (vec![(vm("vm1"), vec![22]), (vm("vm1"), vec![3389])], "vm1", "VirtualMachines[1].Id"),
            (vec![(vm("vm2"), vec![80])], "vm2", "VirtualMachines[0].Ports[0].Number"),
            (vec![(vm("vm2"), vec![22, 22])], "vm2", "VirtualMachines[0].Ports[1].Number"),
            (vec![(vm("vm2"), vec![])], "vm2", "VirtualMachines[0].Ports"),
        ] {
            let p = plan_revoke(&a, &targets, &old).unwrap_err();
            assert_eq!((p.machine.as_deref(), p.target.map(|t| t.to_string())), (Some(&vm(machine)), Some(target.to_owned())));
        }
    }
}
