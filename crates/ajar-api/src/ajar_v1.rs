//! ajar's own API (`/ajar/v1/...`): JIT status per machine, enabling JIT with
//! defaults, and the recommended ports. ARM paths stay for ARM resources only.

use serde::{Deserialize, Serialize};

use ajar_domain::inventory::{EnforcementPoint, OsType};
use ajar_domain::policy::{PortRule, RECOMMENDED_PORTS, default_ports, recommended_rule};
use ajar_domain::status::{JitState, VmJitStatus};
use ajar_domain::{PolicyName, VmId};
use time::OffsetDateTime;

use crate::jit::{JitNetworkAccessPolicy, JitNetworkAccessPortRule, PortRuleIn, port_rule_in, port_rule_out};
use crate::{ApiError, wire_time};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmStatusOut {
    pub id: String,
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub os_type: String,
    /// `Configured`, `NotConfigured` or `Unsupported`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unsupported_reason: Option<ReasonOut>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_id: Option<String>,
    /// What a user needs to connect: the address and the JIT ports.
    pub connection: ConnectionOut,
    pub approved_requests_last_7_days: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_access_time_utc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_user: Option<String>,
    pub live_grants: Vec<LiveGrantOut>,
    /// What enforces JIT on the machine: `none` until a host agent serves it.
    pub enforcement: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<AgentOut>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentOut {
    pub version: String,
    pub online: bool,
    pub last_seen_utc: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nftables_unusable: Option<String>,
    /// Whether the agent has applied the machine's current desired state.
    pub in_sync: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonOut {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionOut {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub address: Option<String>,
    pub ports: Vec<JitNetworkAccessPortRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveGrantOut {
    pub number: u16,
    pub protocol: String,
    pub allowed_source_address_prefixes: Vec<String>,
    pub end_time_utc: String,
    pub requestor: String,
    /// Whether the machine's agent has applied it.
    pub applied: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmStatusList {
    pub value: Vec<VmStatusOut>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_link: Option<String>,
}

pub fn status_out(s: &VmJitStatus, now: OffsetDateTime) -> VmStatusOut {
    let agent = match &s.vm.enforcement {
        EnforcementPoint::None => None,
        EnforcementPoint::Agent(a) => Some(AgentOut {
            version: a.version.clone(),
            online: a.online(now),
            last_seen_utc: wire_time::format(a.last_seen),
            nftables_unusable: a.nftables.clone().err(),
            in_sync: a.applied.as_deref() == Some(crate::agent::etag(&s.desired).as_str()),
        }),
    };
    let in_sync = agent.as_ref().is_some_and(|a| a.in_sync);
    VmStatusOut {
        id: s.vm.id.to_string(),
        name: s.vm.id.name.to_string(),
        resource_group: s.vm.id.resource_group.to_string(),
        location: s.vm.location.to_string(),
        os_type: s.vm.os.as_str().to_owned(),
        state: s.state.as_str().to_owned(),
        unsupported_reason: match s.state {
            JitState::Unsupported(r) => Some(ReasonOut { code: r.as_str().to_owned(), message: r.description().to_owned() }),
            _ => None,
        },
        policy_id: s.policy.as_ref().map(ToString::to_string),
        connection: ConnectionOut {
            address: s.vm.private_addresses.first().map(ToString::to_string),
            ports: s.ports.iter().map(port_rule_out).collect(),
        },
        approved_requests_last_7_days: s.requests_last_7_days(),
        last_access_time_utc: s.last_access.map(wire_time::format),
        last_user: s.last_user.clone(),
        live_grants: s
            .live
            .iter()
            .map(|(requestor, g)| LiveGrantOut {
                number: g.number,
                protocol: g.protocol.as_str().to_owned(),
                allowed_source_address_prefixes: g.sources.prefixes().iter().map(ToString::to_string).collect(),
                end_time_utc: wire_time::format(g.end),
                requestor: requestor.clone(),
                applied: in_sync,
            })
            .collect(),
        enforcement: if agent.is_some() { "agent" } else { "none" }.to_owned(),
        agent,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendedPortOut {
    pub service: String,
    #[serde(flatten)]
    pub rule: JitNetworkAccessPortRule,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendedPorts {
    /// What "enable with defaults" configures, per OS.
    pub defaults: Defaults,
    /// The set offered when enabling JIT.
    pub recommended: Vec<RecommendedPortOut>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Defaults {
    #[serde(rename = "Linux")]
    pub linux: Vec<JitNetworkAccessPortRule>,
    #[serde(rename = "Windows")]
    pub windows: Vec<JitNetworkAccessPortRule>,
}

pub fn recommended_ports() -> RecommendedPorts {
    let rules = |os| default_ports(os).iter().map(port_rule_out).collect();
    RecommendedPorts {
        defaults: Defaults { linux: rules(OsType::Linux), windows: rules(OsType::Windows) },
        recommended: RECOMMENDED_PORTS
            .iter()
            .map(|(n, service)| RecommendedPortOut { service: (*service).to_owned(), rule: port_rule_out(&recommended_rule(*n)) })
            .collect(),
    }
}

/// `POST /ajar/v1/jit/enable`: turn JIT on for machines, with the OS defaults
/// or with the ports given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnableIn {
    pub virtual_machines: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortRuleIn>>,
}

pub struct EnableRequest {
    pub vms: Vec<VmId>,
    pub policy_name: PolicyName,
    pub ports: Option<Vec<PortRule>>,
}

pub fn enable_in(body: &[u8]) -> Result<EnableRequest, ApiError> {
    const CODE: &str = "InvalidPolicy";
    let input: EnableIn = crate::parse_body(body)?;
    let vms = input
        .virtual_machines
        .iter()
        .enumerate()
        .map(|(i, id)| id.parse::<VmId>().map_err(|e| ApiError::bad_request(CODE, &format!("virtualMachines[{i}]"), format!("{e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let policy_name =
        input.policy_name.as_deref().unwrap_or("default").parse().map_err(|e| ApiError::bad_request(CODE, "policyName", format!("{e}")))?;
    let ports = input
        .ports
        .map(|ports| ports.iter().enumerate().map(|(j, p)| port_rule_in(p, &format!("ports[{j}]"))).collect::<Result<Vec<_>, _>>())
        .transpose()?;
    Ok(EnableRequest { vms, policy_name, ports })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnableOut {
    pub value: Vec<JitNetworkAccessPolicy>,
}
