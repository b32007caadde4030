//! Access requests: turning "open these ports for me" into grants, and a grant's
//! lifecycle (live, then revoked because it expired, was superseded or was ended).

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use time::OffsetDateTime;

use crate::duration::AccessDuration;
use crate::ids::{PolicyId, VmId};
use crate::policy::{Policy, Protocol};
use crate::prefix::{SourcePrefix, Sources};
use crate::problem::{ErrorCode, Field, Problem, Target};

/// Longest justification kept, in characters.
pub const MAX_JUSTIFICATION: usize = 2000;

/// How the end of a grant was asked for: a point in time or a length from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndSpec {
    At(OffsetDateTime),
    For(AccessDuration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortAsk {
    pub number: u16,
    pub end: EndSpec,
    /// `None`: the caller's own address ("My IP").
    pub sources: Option<Sources>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmAsk {
    pub vm: VmId,
    pub ports: Vec<PortAsk>,
}

/// An initiate request as the caller sent it, not yet checked against the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiateDraft {
    pub vms: Vec<VmAsk>,
    pub justification: Option<String>,
}

/// Who is asking, as established by authentication and the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal_id: String,
    pub name: String,
    pub addr: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantStatus {
    Initiated,
    Revoked,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Initiated => "Initiated",
            GrantStatus::Revoked => "Revoked",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusReason {
    Expired,
    UserRequested,
    NewerRequestInitiated,
}

impl StatusReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusReason::Expired => "Expired",
            StatusReason::UserRequested => "UserRequested",
            StatusReason::NewerRequestInitiated => "NewerRequestInitiated",
        }
    }
}

impl fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for StatusReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One opened port of one machine within a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub number: u16,
    pub protocol: Protocol,
    pub sources: Sources,
    pub end: OffsetDateTime,
    pub status: GrantStatus,
    pub reason: StatusReason,
    /// The gateway port mapped to `number` in firewall (DNAT) mode.
    pub mapped_port: Option<u16>,
}

impl Grant {
    /// The status as of `now`: a live grant whose end time has passed is expired
    /// even before the bookkeeping has recorded it.
    pub fn status_at(&self, now: OffsetDateTime) -> (GrantStatus, StatusReason) {
        if self.status == GrantStatus::Initiated && self.end <= now {
            (GrantStatus::Revoked, StatusReason::Expired)
        } else {
            (self.status, self.reason)
        }
    }

    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.status_at(now).0 == GrantStatus::Initiated
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestVm {
    pub vm: VmId,
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub id: String,
    pub policy: PolicyId,
    pub requestor: String,
    pub start: OffsetDateTime,
    pub justification: Option<String>,
    pub vms: Vec<RequestVm>,
}

/// Machine `i` of an initiate's (or a revoke's) body.
pub fn vm_target(i: usize) -> Target {
    Target::of(Field::VirtualMachines).at(i)
}

/// Port `j` of machine `i` of an initiate's (or a revoke's) body.
pub fn port_target(i: usize, j: usize) -> Target {
    vm_target(i).field(Field::Ports).at(j)
}

fn invalid(target: Target, message: String) -> Problem {
    Problem::at(ErrorCode::InvalidInitiateInput, target, message)
}

/// Checks an initiate request against its policy and, if every port of every
/// machine may be opened as asked, returns the request with its live grants.
/// Anything wrong refuses the whole request: nothing is opened in part.
pub fn plan_initiate(
    policy: &Policy,
    draft: &InitiateDraft,
    caller: &Caller,
    now: OffsetDateTime,
    request_id: String,
) -> Result<AccessRequest, Problem> {
    if draft.vms.is_empty() {
        return Err(invalid(Target::of(Field::VirtualMachines), "name at least one virtual machine".into()));
    }
    if let Some(j) = &draft.justification
        && j.chars().count() > MAX_JUSTIFICATION
    {
        return Err(invalid(Target::of(Field::Justification), format!("the justification is longer than {MAX_JUSTIFICATION} characters")));
    }
    let my_ip = Sources::One(SourcePrefix::host(caller.addr));
    let mut seen_vms = HashSet::new();
    let mut vms = Vec::with_capacity(draft.vms.len());
    for (i, ask) in draft.vms.iter().enumerate() {
        let refuse = |target: Target, message: String| invalid(target, message).about(&ask.vm);
        if !seen_vms.insert(ask.vm.key()) {
            return Err(refuse(vm_target(i).field(Field::Id), format!("virtual machine '{}' is listed twice", ask.vm)));
        }
        let Some(vm_policy) = policy.vm(&ask.vm) else {
            return Err(refuse(
                vm_target(i).field(Field::Id),
                format!("virtual machine '{}' is not configured in JIT policy '{}'", ask.vm, policy.id.name),
            ));
        };
        if ask.ports.is_empty() {
            return Err(refuse(vm_target(i).field(Field::Ports), "name at least one port".into()));
        }
        let mut seen_ports = HashSet::new();
        let mut grants = Vec::with_capacity(ask.ports.len());
        for (j, port) in ask.ports.iter().enumerate() {
            let at = port_target(i, j);
            if !seen_ports.insert(port.number) {
                return Err(refuse(at.field(Field::Number), format!("port {} is requested twice", port.number)));
            }
            let Some(rule) = vm_policy.port(port.number) else {
                let configured: Vec<String> = vm_policy.ports.iter().map(|p| p.number.to_string()).collect();
                return Err(refuse(
                    at.field(Field::Number),
                    format!("port {} is not configured for JIT on '{}'; configured: {}", port.number, ask.vm.name, configured.join(", ")),
                ));
            };
            let max = rule.max_duration.as_duration();
            let end = match port.end {
                EndSpec::At(end) => {
                    if end <= now {
                        return Err(refuse(at.field(Field::EndTimeUtc), "endTimeUtc must be in the future".into()));
                    }
                    if end - now > max {
                        return Err(refuse(
                            at.field(Field::EndTimeUtc),
                            format!(
                                "port {} may be opened for at most {} (maxRequestAccessDuration); endTimeUtc is later than that",
                                port.number, rule.max_duration
                            ),
                        ));
                    }
                    end
                }
                EndSpec::For(d) => {
                    if d.as_duration() <= time::Duration::ZERO {
                        return Err(refuse(at.field(Field::Duration), "duration must be longer than zero".into()));
                    }
                    if d.as_duration() > max {
                        return Err(refuse(
                            at.field(Field::Duration),
                            format!(
                                "port {} may be opened for at most {} (maxRequestAccessDuration); {} was asked",
                                port.number, rule.max_duration, d
                            ),
                        ));
                    }
                    now + d.as_duration()
                }
            };
            let sources = port.sources.clone().unwrap_or_else(|| my_ip.clone());
            if let Some(outside) = sources.prefixes().iter().find(|p| !rule.sources.allows_prefix(p)) {
                let allowed: Vec<String> = rule.sources.prefixes().iter().map(ToString::to_string).collect();
                let field = if port.sources.is_some() { "allowedSourceAddressPrefix" } else { "allowedSourceAddressPrefix (your address)" };
                return Err(refuse(
                    at.field(Field::AllowedSourceAddressPrefix),
                    format!(
                        "source {outside} ({field}) is not inside the sources allowed for port {}: {}",
                        port.number,
                        allowed.join(", ")
                    ),
                ));
            }
            grants.push(Grant {
                number: port.number,
                protocol: rule.protocol,
                sources,
                end,
                status: GrantStatus::Initiated,
                reason: StatusReason::UserRequested,
                mapped_port: None,
            });
        }
        vms.push(RequestVm { vm: ask.vm.clone(), grants });
    }
    Ok(AccessRequest {
        id: request_id,
        policy: policy.id.clone(),
        requestor: caller.name.clone(),
        start: now,
        justification: draft.justification.clone(),
        vms,
    })
}

/// Whether a live grant, made under an earlier version of a policy, is still
/// within what the new version allows. Grants that are not are revoked, so that
/// tightening a policy never leaves a port open wider or longer than it now permits.
pub fn grant_still_allowed(policy: &Policy, vm: &VmId, grant: &Grant, start: OffsetDateTime) -> bool {
    let Some(rule) = policy.vm(vm).and_then(|v| v.port(grant.number)) else {
        return false;
    };
    rule.protocol == grant.protocol && rule.sources.allows(&grant.sources) && grant.end - start <= rule.max_duration.as_duration()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PortRule, VmPolicy};
    use crate::test_ids::{NOW, SUB, vm};

    fn sources(list: &[&str]) -> Sources {
        Sources::List(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    fn policy() -> Policy {
        Policy {
            cut_connections_on_revoke: false,
            id: format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Security/locations/local/jitNetworkAccessPolicies/default"
            )
            .parse()
            .unwrap(),
            kind: Some("Basic".into()),
            vms: vec![VmPolicy {
                vm: vm("vm1"),
                ports: vec![
                    PortRule {
                        number: 22,
                        protocol: Protocol::Tcp,
                        sources: sources(&["10.0.0.0/8"]),
                        max_duration: AccessDuration::from_seconds(3600),
                    },
                    PortRule {
                        number: 3389,
                        protocol: Protocol::Any,
                        sources: sources(&["*"]),
                        max_duration: AccessDuration::from_seconds(3 * 3600),
                    },
                ],
                public_ip: None,
            }],
        }
    }

    fn caller() -> Caller {
        Caller { principal_id: "p1".into(), name: "alice".into(), addr: "10.1.2.3".parse().unwrap() }
    }

    fn ask(number: u16, end: EndSpec, src: Option<&[&str]>) -> InitiateDraft {
        InitiateDraft {
            vms: vec![VmAsk { vm: vm("vm1"), ports: vec![PortAsk { number, end, sources: src.map(sources) }] }],
            justification: None,
        }
    }

    /// One case: the draft, and either the granted (end, sources) or the error target and a fragment of its message.
    fn check(draft: InitiateDraft, expected: Result<(OffsetDateTime, &str), (&str, &str)>) {
        match (plan_initiate(&policy(), &draft, &caller(), NOW, "r1".into()), expected) {
            (Ok(req), Ok((end, src))) => {
                let g = &req.vms[0].grants[0];
                assert_eq!(g.end, end);
                let shown: Vec<String> = g.sources.prefixes().iter().map(ToString::to_string).collect();
                assert_eq!(shown.join(","), src);
                assert_eq!((g.status, g.reason), (GrantStatus::Initiated, StatusReason::UserRequested));
                assert_eq!(req.requestor, "alice");
            }
            (Err(p), Err((target, msg))) => {
                assert_eq!(p.code, ErrorCode::InvalidInitiateInput);
                assert_eq!(p.target.as_ref().map(ToString::to_string).as_deref(), Some(target));
                assert!(p.message.contains(msg), "{}", p.message);
            }
            (got, want) => panic!("got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn initiate_rules() {
        let h = |n: i64| time::Duration::hours(n);
        let m = |n: i64| time::Duration::minutes(n);
        let d = |s: &str| EndSpec::For(s.parse().unwrap());
        // My IP when no source is given; a host or subnet inside the allowed CIDR.
        check(ask(22, d("PT1H"), None), Ok((NOW + h(1), "10.1.2.3")));
        check(ask(22, d("PT30M"), Some(&["10.9.0.0/16"])), Ok((NOW + m(30), "10.9.0.0/16")));
        check(ask(22, EndSpec::At(NOW + m(59)), Some(&["10.0.0.0/8"])), Ok((NOW + m(59), "10.0.0.0/8")));
        check(ask(3389, d("PT3H"), Some(&["*"])), Ok((NOW + h(3), "*")));
        // Refusals.
        check(ask(22, d("PT2H"), None), Err(("VirtualMachines[0].Ports[0].Duration", "at most PT1H")));
        check(ask(22, EndSpec::At(NOW + h(2)), None), Err(("VirtualMachines[0].Ports[0].EndTimeUtc", "at most PT1H")));
        check(ask(22, EndSpec::At(NOW - m(1)), None), Err(("VirtualMachines[0].Ports[0].EndTimeUtc", "in the future")));
        check(ask(22, d("PT0S"), None), Err(("VirtualMachines[0].Ports[0].Duration", "longer than zero")));
        check(ask(80, d("PT1H"), None), Err(("VirtualMachines[0].Ports[0].Number", "configured: 22, 3389")));
        check(ask(22, d("PT1H"), Some(&["192.168.0.1"])), Err(("VirtualMachines[0].Ports[0].AllowedSourceAddressPrefix", "not inside")));
        check(ask(22, d("PT1H"), Some(&["*"])), Err(("VirtualMachines[0].Ports[0].AllowedSourceAddressPrefix", "not inside")));
        check(ask(22, d("PT1H"), Some(&["10.0.0.0/7"])), Err(("VirtualMachines[0].Ports[0].AllowedSourceAddressPrefix", "not inside")));
    }

    #[test]
    fn refuses_unknown_vm_and_duplicates() {
        let mut draft = ask(22, EndSpec::For(AccessDuration::from_seconds(60)), None);
        draft.vms[0].vm = vm("other");
        check(draft, Err(("VirtualMachines[0].Id", "not configured in JIT policy")));
        let mut draft = ask(22, EndSpec::For(AccessDuration::from_seconds(60)), None);
        let port = draft.vms[0].ports[0].clone();
        draft.vms[0].ports.push(port);
        check(draft, Err(("VirtualMachines[0].Ports[1].Number", "requested twice")));
    }

    #[test]
    fn status_flips_at_end_time() {
        let req =
            plan_initiate(&policy(), &ask(22, EndSpec::For(AccessDuration::from_seconds(60)), None), &caller(), NOW, "r".into()).unwrap();
        let g = &req.vms[0].grants[0];
        assert!(g.is_live(NOW + time::Duration::seconds(59)));
        assert_eq!(g.status_at(NOW + time::Duration::seconds(60)), (GrantStatus::Revoked, StatusReason::Expired));
    }

    #[test]
    fn tightened_policy_revokes() {
        let req = plan_initiate(
            &policy(),
            &ask(22, EndSpec::For(AccessDuration::from_seconds(3000)), Some(&["10.9.0.0/16"])),
            &caller(),
            NOW,
            "r".into(),
        )
        .unwrap();
        let g = &req.vms[0].grants[0];
        assert!(grant_still_allowed(&policy(), &vm("vm1"), g, NOW));
        let mut narrower = policy();
        narrower.vms[0].ports[0].sources = sources(&["10.8.0.0/16"]);
        assert!(!grant_still_allowed(&narrower, &vm("vm1"), g, NOW));
        let mut shorter = policy();
        shorter.vms[0].ports[0].max_duration = AccessDuration::from_seconds(600);
        assert!(!grant_still_allowed(&shorter, &vm("vm1"), g, NOW));
        let mut removed = policy();
        removed.vms[0].ports.remove(0);
        assert!(!grant_still_allowed(&removed, &vm("vm1"), g, NOW));
    }
}
