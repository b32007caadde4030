//! Writing, deleting and enabling JIT policies: what each stores, and which live grants it ends.

use crate::gateway::Gateway;
use crate::ids::{PolicyId, PolicyName, VmId};
use crate::initiate::{StatusReason, grant_still_allowed};
use crate::inventory::Vm;
use crate::plans::{GrantEnd, LiveGrant, Precondition, check_precondition};
use crate::policy::{Limits, Policy, PortRule, StoredPolicy, VmPolicy, default_ports, validate_policy, vm_target};
use crate::problem::{ErrorCode, Field, Problem, Step, Target};

/// What a policy write needs to know: the version asked for, and what is stored now.
#[derive(Debug, Clone)]
pub struct PutPolicy<'a> {
    pub policy: Policy,
    pub precondition: Option<&'a Precondition>,
    /// The version stored now, if any.
    pub stored: Option<&'a StoredPolicy>,
    /// The machines the new version names that are in the inventory.
    pub inventory: &'a [Vm],
    /// The gateways in front of those machines.
    pub gateways: &'a [Gateway],
    /// The policy each machine the new version names is in now.
    pub holders: &'a [(VmId, PolicyId)],
    /// The live grants made under the stored version.
    pub live: &'a [LiveGrant],
    pub limits: &'a Limits,
    /// The entity tag the new version gets.
    pub etag: String,
}

/// A policy version to store, and the live grants it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWritePlan {
    pub stored: StoredPolicy,
    /// No version was stored before.
    pub created: bool,
    pub end: Vec<GrantEnd>,
}

/// A policy write: refused if `If-Match` names another version, if the policy breaks a rule
/// ([`validate_policy`]), or if it names a machine another policy holds (a machine is in at most one
/// policy: two would disagree on its ports). Live grants the new version no longer allows end, so that
/// tightening a policy never leaves a port open wider or longer than it now permits.
pub fn plan_put(input: PutPolicy<'_>) -> Result<PolicyWritePlan, Problem> {
    let PutPolicy { mut policy, precondition, stored, inventory, gateways, holders, live, limits, etag } = input;
    check_precondition(precondition, stored.map(|s| s.etag.as_str()), &format!("JIT policy '{}'", policy.id.name))?;
    validate_policy(&policy, limits, |id| inventory.iter().find(|vm| vm.id == *id))?;
    check_public_ip(&mut policy, inventory, gateways)?;
    for (i, vm_policy) in policy.vms.iter().enumerate() {
        if let Some((_, other)) = holders.iter().find(|(vm, other)| *vm == vm_policy.vm && *other != policy.id) {
            return Err(Problem::at(
                ErrorCode::VirtualMachineInAnotherPolicy,
                vm_target(i).field(Field::Id),
                format!(
                    "virtual machine '{}' is already configured in JIT policy '{other}'; edit or remove that policy first",
                    vm_policy.vm
                ),
            )
            .about(&vm_policy.vm));
        }
    }
    let end = live
        .iter()
        .filter(|g| !grant_still_allowed(&policy, &g.vm, &g.grant, g.start))
        .map(|g| g.end(StatusReason::UserRequested))
        .collect();
    Ok(PolicyWritePlan { stored: StoredPolicy { policy, etag }, created: stored.is_none(), end })
}

/// A machine's `publicIpAddress` is its gateway's, which the store fills in when it reads the policy:
/// a write may leave it out or repeat it (as a client does that read the policy first), but not name
/// another address, which would claim a path to the machine that does not exist. It is not stored.
fn check_public_ip(policy: &mut Policy, inventory: &[Vm], gateways: &[Gateway]) -> Result<(), Problem> {
    for (i, vm_policy) in policy.vms.iter_mut().enumerate() {
        let Some(given) = vm_policy.public_ip.take().filter(|a| !a.trim().is_empty()) else { continue };
        let gateway = inventory
            .iter()
            .find(|vm| vm.id == vm_policy.vm)
            .and_then(|vm| vm.gateway.as_ref())
            .and_then(|name| gateways.iter().find(|g| g.name.key() == name.key()));
        let matches = given.trim().parse::<std::net::IpAddr>().is_ok_and(|a| gateway.is_some_and(|g| g.public.contains(&a.to_canonical())));
        if !matches {
            let why = match gateway {
                None => "the machine is not behind a gateway; leave publicIpAddress out, or put the machine behind one first (ajar vm set-gateway)".to_owned(),
                Some(g) => format!(
                    "the machine is reached through gateway '{}' at {}; leave publicIpAddress out or give that address",
                    g.name,
                    g.public.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
                ),
            };
            return Err(Problem::at(ErrorCode::InvalidPolicy, vm_target(i).field(Field::PublicIpAddress), format!("'{given}': {why}"))
                .about(&vm_policy.vm));
        }
    }
    Ok(())
}

/// Deleting a policy ends all its live grants. `None`: there is no such policy (and nothing to do).
pub fn plan_delete(
    stored: Option<&StoredPolicy>,
    precondition: Option<&Precondition>,
    live: &[LiveGrant],
) -> Result<Option<Vec<GrantEnd>>, Problem> {
    let what = match stored {
        Some(s) => format!("JIT policy '{}'", s.policy.id.name),
        None => "the JIT policy".to_owned(),
    };
    check_precondition(precondition, stored.map(|s| s.etag.as_str()), &what)?;
    Ok(stored.map(|_| live.iter().map(|g| g.end(StatusReason::UserRequested)).collect()))
}

/// The policy an enable puts `vm` in: the one named `name` in the machine's resource group and location.
pub fn enable_target(vm: &Vm, name: &PolicyName) -> PolicyId {
    PolicyId {
        subscription: vm.id.subscription.clone(),
        resource_group: vm.id.resource_group.clone(),
        location: vm.location.clone(),
        name: name.clone(),
    }
}

/// What enabling JIT on machines needs to know.
#[derive(Debug, Clone)]
pub struct Enable<'a> {
    /// The machines to enable, as asked (the body's `virtualMachines`).
    pub vms: &'a [VmId],
    /// Every machine named and every machine of the policies they go into, as far as they are in the
    /// inventory.
    pub inventory: &'a [Vm],
    /// The gateways in front of those machines (a policy read shows their addresses).
    pub gateways: &'a [Gateway],
    /// The policy each of those machines is in now.
    pub holders: &'a [(VmId, PolicyId)],
    /// The policies the machines go into ([`enable_target`]) that exist.
    pub stored: &'a [StoredPolicy],
    /// The live grants of those policies.
    pub live: &'a [LiveGrant],
    pub name: &'a PolicyName,
    /// The ports for every machine (the body's `ports`); `None`: each machine's OS defaults.
    pub ports: Option<&'a [PortRule]>,
    pub limits: &'a Limits,
    /// Entity tags for the policies written, one per machine at least.
    pub etags: Vec<String>,
}

/// Enabling JIT, Azure's way: each machine joins the policy `name` of its resource group and location
/// (created if needed) with `ports` or its OS defaults. All or none: a machine that is not in the
/// inventory or already in a policy refuses the whole request, and the problem names it
/// (`virtualMachines[i]`, or `ports[j]` for a port every machine would get).
pub fn plan_enable(input: Enable<'_>) -> Result<Vec<PolicyWritePlan>, Problem> {
    let Enable { vms, inventory, gateways, holders, stored, live, name, ports, limits, mut etags } = input;
    if vms.is_empty() {
        return Err(Problem::at(ErrorCode::InvalidPolicy, Target::of(Field::VirtualMachines), "name at least one virtual machine"));
    }
    let mut policies: Vec<Policy> = Vec::new();
    for (i, id) in vms.iter().enumerate() {
        let target = Target::of(Field::VirtualMachines).at(i);
        let Some(vm) = inventory.iter().find(|vm| vm.id == *id) else {
            return Err(
                Problem::at(ErrorCode::VirtualMachineNotFound, target, format!("virtual machine '{id}' is not in the inventory")).about(id)
            );
        };
        if let Some((_, other)) = holders.iter().find(|(held, _)| held == id) {
            return Err(Problem::at(
                ErrorCode::VirtualMachineInAnotherPolicy,
                target,
                format!("JIT is already enabled on '{}' by policy '{other}'; edit that policy instead", id.name),
            )
            .about(id));
        }
        let policy_id = enable_target(vm, name);
        let at = match policies.iter().position(|p| p.id == policy_id) {
            Some(at) => at,
            None => {
                policies.push(match stored.iter().find(|s| s.policy.id == policy_id) {
                    Some(s) => s.policy.clone(),
                    None => Policy { id: policy_id, kind: Some("Basic".into()), vms: Vec::new(), cut_connections_on_revoke: false },
                });
                policies.len() - 1
            }
        };
        let rules = ports.map(<[PortRule]>::to_vec).unwrap_or_else(|| default_ports(vm.os));
        policies[at].vms.push(VmPolicy { vm: id.clone(), ports: rules, public_ip: None });
    }
    let mut plans = Vec::with_capacity(policies.len());
    for policy in policies {
        let current = stored.iter().find(|s| s.policy.id == policy.id);
        let grants: Vec<LiveGrant> = live.iter().filter(|g| g.policy == policy.id).cloned().collect();
        let etag = etags.pop().unwrap_or_default();
        let put = PutPolicy { policy, precondition: None, stored: current, inventory, gateways, holders, live: &grants, limits, etag };
        plans.push(plan_put(put).map_err(|p| in_enable_body(p, vms, ports.is_some()))?);
    }
    Ok(plans)
}

/// A problem found in a policy an enable builds, pointed at the enable's body: a port of `ports` when
/// the port came from there, else the machine it concerns.
fn in_enable_body(mut problem: Problem, vms: &[VmId], custom_ports: bool) -> Problem {
    let port = problem.target.as_ref().and_then(|t| match t.steps() {
        [Step::Field(Field::Properties), Step::Field(Field::VirtualMachines), Step::At(_), Step::Field(Field::Ports), rest @ ..] => {
            Some(rest.to_vec())
        }
        _ => None,
    });
    problem.target = match (port, &problem.machine) {
        (Some(rest), _) if custom_ports => Some(rest.iter().fold(Target::of(Field::Ports), |t, step| match step {
            Step::Field(f) => t.field(*f),
            Step::At(n) => t.at(*n),
        })),
        (_, Some(machine)) => vms.iter().position(|vm| *vm == **machine).map(|i| Target::of(Field::VirtualMachines).at(i)),
        _ => None,
    };
    problem
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccessDuration;
    use crate::initiate::{Grant, GrantStatus};
    use crate::inventory::{EnforcementPoint, OsType};
    use crate::policy::Protocol;
    use crate::prefix::{SourcePrefix, Sources};
    use crate::test_ids::{NOW, policy_id as id, vm};

    fn inventory(names: &[&str]) -> Vec<Vm> {
        names
            .iter()
            .map(|n| Vm {
                id: vm(n),
                location: "local".parse().unwrap(),
                os: OsType::Linux,
                private_addresses: vec![],
                enforcement: EnforcementPoint::None,
                gateway: None,
            })
            .collect()
    }

    fn policy(name: &str, vms: &[&str], sources: &str) -> Policy {
        let rule = PortRule {
            number: 22,
            protocol: Protocol::Tcp,
            sources: Sources::One(sources.parse::<SourcePrefix>().unwrap()),
            max_duration: AccessDuration::from_seconds(3600),
        };
        Policy {
            id: id(name),
            kind: None,
            vms: vms.iter().map(|v| VmPolicy { vm: vm(v), ports: vec![rule.clone()], public_ip: None }).collect(),
            cut_connections_on_revoke: false,
        }
    }

    fn live(request: &str, from: &str) -> LiveGrant {
        LiveGrant {
            request_id: request.into(),
            requestor: "bob".into(),
            policy: id("p"),
            start: NOW,
            vm: vm("vm1"),
            grant: Grant {
                number: 22,
                protocol: Protocol::Tcp,
                sources: Sources::One(from.parse().unwrap()),
                end: NOW + time::Duration::minutes(30),
                status: GrantStatus::Initiated,
                reason: crate::initiate::StatusReason::UserRequested,
                mapped_port: None,
            },
        }
    }

    /// The grants a write of `new` over `stored` ends, or the code and target that refuse it.
    fn check(new: Policy, stored: Option<&StoredPolicy>, precondition: Option<Precondition>, expected: Result<&[&str], (&str, &str)>) {
        let inventory = inventory(&["vm1", "vm2"]);
        let holders = [(vm("vm2"), id("other"))];
        let live = [live("r1", "10.1.2.3"), live("r2", "192.168.1.1")];
        let input = PutPolicy {
            policy: new,
            precondition: precondition.as_ref(),
            stored,
            inventory: &inventory,
            gateways: &[],
            holders: &holders,
            live: &live,
            limits: &Limits::default(),
            etag: "new".into(),
        };
        match (plan_put(input), expected) {
            (Ok(plan), Ok(ended)) => {
                assert_eq!(plan.end.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ended);
                assert_eq!((plan.stored.etag.as_str(), plan.created), ("new", stored.is_none()));
            }
            (Err(p), Err((code, target))) => {
                assert_eq!(p.code.as_str(), code, "{p}");
                assert_eq!(p.target.map(|t| t.to_string()).unwrap_or_default(), target);
            }
            (got, want) => panic!("got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn a_public_address_is_the_gateways_or_none() {
        use crate::gateway::{DEFAULT_MAPPED_PORTS, Gateway};
        use crate::inventory::AgentInfo;
        let mut inventory = inventory(&["vm1", "vm2"]);
        inventory[0].gateway = Some("GW".parse().unwrap());
        let agent =
            AgentInfo { agent_id: "a".into(), version: "1".into(), nftables: Ok(()), last_seen: crate::test_ids::NOW, applied: None };
        let gateways = [Gateway {
            name: "gw".parse().unwrap(),
            public: vec!["203.0.113.1".parse().unwrap()],
            mapped_ports: DEFAULT_MAPPED_PORTS,
            agent,
        }];
        let put = |vm_name: &str, address: &str| {
            let mut p = policy("p", &[vm_name], "*");
            p.vms[0].public_ip = Some(address.to_owned());
            let input = PutPolicy {
                policy: p,
                precondition: None,
                stored: None,
                inventory: &inventory,
                gateways: &gateways,
                holders: &[],
                live: &[],
                limits: &Limits::default(),
                etag: "new".into(),
            };
            plan_put(input).map(|plan| plan.stored.policy.vms[0].public_ip.clone()).map_err(|p| p.target.map(|t| t.to_string()))
        };
        assert_eq!(put("vm1", "203.0.113.1"), Ok(None), "the gateway's own address is accepted, and not stored");
        assert_eq!(put("vm1", ""), Ok(None));
        let at = Some("Properties.VirtualMachines[0].PublicIpAddress".to_owned());
        assert_eq!(put("vm1", "198.51.100.7"), Err(at.clone()), "another address claims a path that does not exist");
        assert_eq!(put("vm2", "203.0.113.1"), Err(at), "a machine behind no gateway has no public address");
    }

    #[test]
    fn policy_writes() {
        let stored = StoredPolicy { policy: policy("p", &["vm1"], "*"), etag: "v1".into() };
        let tags = |t: &str| Some(Precondition::OneOf(vec![t.to_owned()]));
        check(policy("p", &["vm1"], "*"), Some(&stored), None, Ok(&[]));
        check(policy("p", &["vm1"], "10.0.0.0/8"), Some(&stored), tags("v1"), Ok(&["r2"]));
        check(policy("p", &["vm1"], "*"), Some(&stored), tags("v0"), Err(("PreconditionFailed", "")));
        check(policy("p", &["vm1"], "*"), None, Some(Precondition::Absent), Ok(&[]));
        check(
            policy("p", &["vm1", "vm2"], "*"),
            Some(&stored),
            None,
            Err(("VirtualMachineInAnotherPolicy", "Properties.VirtualMachines[1].Id")),
        );
        check(policy("p", &["vm1", "vm3"], "*"), Some(&stored), None, Err(("VirtualMachineNotFound", "Properties.VirtualMachines[1].Id")));
        check(policy("p", &[], "*"), Some(&stored), None, Err(("InvalidPolicy", "Properties.VirtualMachines")));
    }
}
