//! JIT policies: which ports of which machines may be opened, for whom, for how long.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use crate::duration::AccessDuration;
use crate::ids::{PolicyId, VmId};
use crate::inventory::{OsType, Vm};
use crate::prefix::{SourcePrefix, Sources};
use crate::problem::{ErrorCode, Field, Problem, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// `*`: TCP and UDP.
    Any,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Any => "*",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "*" => Ok(Protocol::Any),
            _ => Err(format!("'{s}' is not a protocol; use TCP, UDP or *")),
        }
    }
}

/// One protected port of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    pub number: u16,
    pub protocol: Protocol,
    pub sources: Sources,
    pub max_duration: AccessDuration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPolicy {
    pub vm: VmId,
    pub ports: Vec<PortRule>,
    /// The gateway address for firewall (DNAT) mode, when one is linked.
    pub public_ip: Option<String>,
}

impl VmPolicy {
    pub fn port(&self, number: u16) -> Option<&PortRule> {
        self.ports.iter().find(|p| p.number == number)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: PolicyId,
    pub kind: Option<String>,
    pub vms: Vec<VmPolicy>,
    /// ajar's extension: an early revoke also cuts the grant's established
    /// connections. Off by default, as on Azure, where open sessions survive.
    pub cut_connections_on_revoke: bool,
}

impl Policy {
    pub fn vm(&self, id: &VmId) -> Option<&VmPolicy> {
        self.vms.iter().find(|v| v.vm == *id)
    }
}

/// A policy as stored, with the entity tag of that version: a write can be made conditional on it
/// (`If-Match`), so that two editors cannot silently overwrite each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    pub policy: Policy,
    pub etag: String,
}

/// Server settings that bound what a policy may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_max_duration: AccessDuration,
    pub max_max_duration: AccessDuration,
}

impl Default for Limits {
    /// Azure's bounds: PT5M to P1D.
    fn default() -> Self {
        Limits { min_max_duration: AccessDuration::from_seconds(5 * 60), max_max_duration: AccessDuration::from_seconds(86_400) }
    }
}

/// The documented limit on policy name + VM name.
pub const MAX_POLICY_AND_VM_NAME: usize = 56;

/// Machine `i` of a policy's body.
pub fn vm_target(i: usize) -> Target {
    Target::of(Field::Properties).field(Field::VirtualMachines).at(i)
}

/// Port `j` of machine `i` of a policy's body.
pub fn port_target(i: usize, j: usize) -> Target {
    vm_target(i).field(Field::Ports).at(j)
}

/// Checks the rules a policy must meet on its own and against the inventory.
/// `lookup` finds a machine by ID.
pub fn validate_policy<'a>(policy: &Policy, limits: &Limits, lookup: impl Fn(&VmId) -> Option<&'a Vm>) -> Result<(), Problem> {
    let invalid = |target: Target, msg: String| Problem::at(ErrorCode::InvalidPolicy, target, msg);
    if policy.vms.is_empty() {
        return Err(invalid(
            Target::of(Field::Properties).field(Field::VirtualMachines),
            "a policy needs at least one virtual machine".into(),
        ));
    }
    let mut seen_vms = HashSet::new();
    for (i, vm_policy) in policy.vms.iter().enumerate() {
        let vm_id = &vm_policy.vm;
        let id_target = vm_target(i).field(Field::Id);
        if !seen_vms.insert(vm_id.key()) {
            return Err(invalid(id_target, format!("virtual machine '{vm_id}' is listed twice")).about(vm_id));
        }
        let name_len = policy.id.name.as_str().chars().count() + vm_id.name.as_str().chars().count();
        if name_len > MAX_POLICY_AND_VM_NAME {
            return Err(invalid(
                id_target,
                format!(
                    "policy name '{}' and virtual machine name '{}' are {name_len} characters together; at most {MAX_POLICY_AND_VM_NAME} are allowed",
                    policy.id.name, vm_id.name
                ),
            )
            .about(vm_id));
        }
        if vm_id.subscription != policy.id.subscription {
            return Err(invalid(
                id_target,
                format!("virtual machine '{vm_id}' is not in the policy's subscription {}", policy.id.subscription),
            )
            .about(vm_id));
        }
        let Some(vm) = lookup(vm_id) else {
            return Err(Problem::at(
                ErrorCode::VirtualMachineNotFound,
                id_target,
                format!("virtual machine '{vm_id}' is not in the inventory; add it first"),
            )
            .about(vm_id));
        };
        if vm.location != policy.id.location {
            return Err(invalid(
                id_target,
                format!("virtual machine '{vm_id}' is in location '{}', the policy in '{}'", vm.location, policy.id.location),
            )
            .about(vm_id));
        }
        if vm_policy.ports.is_empty() {
            return Err(invalid(vm_target(i).field(Field::Ports), "at least one port is required".into()).about(vm_id));
        }
        let mut seen_ports = HashSet::new();
        for (j, rule) in vm_policy.ports.iter().enumerate() {
            if !seen_ports.insert(rule.number) {
                return Err(invalid(
                    port_target(i, j).field(Field::Number),
                    format!("port {} is configured twice for this virtual machine", rule.number),
                )
                .about(vm_id));
            }
            if rule.max_duration < limits.min_max_duration || rule.max_duration > limits.max_max_duration {
                return Err(invalid(
                    port_target(i, j).field(Field::MaxRequestAccessDuration),
                    format!(
                        "maxRequestAccessDuration {} is outside the allowed range {} to {}",
                        rule.max_duration, limits.min_max_duration, limits.max_max_duration
                    ),
                )
                .about(vm_id));
            }
            if rule.sources.prefixes().is_empty() {
                return Err(invalid(
                    port_target(i, j).field(Field::AllowedSourceAddressPrefixes),
                    "the list of allowed sources is empty".into(),
                )
                .about(vm_id));
            }
        }
    }
    Ok(())
}

/// Azure's "enable with defaults": Linux → 22, Windows → 3389, three hours, any source.
/// ajar opens TCP only: SSH and RDP need nothing else, and fail-closed means
/// opening no more than needed.
pub fn default_ports(os: OsType) -> Vec<PortRule> {
    let number = match os {
        OsType::Linux => 22,
        OsType::Windows => 3389,
    };
    vec![PortRule {
        number,
        protocol: Protocol::Tcp,
        sources: Sources::One(SourcePrefix::Any),
        max_duration: AccessDuration::from_seconds(3 * 3600),
    }]
}

/// The ports the portal recommends when enabling JIT.
pub const RECOMMENDED_PORTS: [(u16, &str); 4] = [(22, "SSH"), (3389, "RDP"), (5985, "WinRM (HTTP)"), (5986, "WinRM (HTTPS)")];

pub fn recommended_rule(number: u16) -> PortRule {
    PortRule {
        number,
        protocol: Protocol::Tcp,
        sources: Sources::One(SourcePrefix::Any),
        max_duration: AccessDuration::from_seconds(3 * 3600),
    }
}
