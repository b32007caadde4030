//! ajar's own API (`/ajar/v1/...`): JIT status per machine, enabling JIT with
//! defaults, and the recommended ports. ARM paths stay for ARM resources only.

use serde::{Deserialize, Serialize};

use ajar_domain::gateway::{Gateway, GatewayName};
use ajar_domain::initiate::Grant;
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
    /// What enforces JIT on the machine: `agent` (its host agent), `gateway`, `agent+gateway`, or
    /// `none` until one serves it.
    pub enforcement: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<AgentOut>,
    /// The gateway in front of the machine.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gateway: Option<GatewayOut>,
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
    /// Where to connect: the gateway's public address for a machine behind one, else the machine's.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub address: Option<String>,
    /// `firewall` when the machine is reached through a gateway (Azure's term), else `direct`.
    pub path: String,
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
    /// Whether every point enforcing it (the machine's agent, its gateway) has applied it.
    pub applied: bool,
    /// The gateway port to connect to, for a machine behind a gateway.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mapped_port: Option<u16>,
    /// `address:port` to connect to through the gateway.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub connect_to: Option<String>,
}

/// A gateway as `/ajar/v1/gateways` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayOut {
    pub name: String,
    pub public_addresses: Vec<String>,
    /// `FIRST-LAST`.
    pub mapped_ports: String,
    pub agent: AgentOut,
    /// The machines behind it (left out where a machine's status shows its gateway).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub virtual_machines: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayList {
    pub value: Vec<GatewayOut>,
}

/// `POST /ajar/v1/gatewayAssignment`: put a machine behind a gateway, or (`gateway: null`) take it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayAssignmentIn {
    pub virtual_machine_id: String,
    /// Must be present: a body that forgets it must not take a machine out of gateway mode.
    #[serde(deserialize_with = "Option::deserialize")]
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAssignmentOut {
    pub virtual_machine_id: String,
    pub gateway: Option<String>,
    pub previous: Option<String>,
}

pub fn gateway_assignment_in(body: &[u8]) -> Result<(VmId, Option<GatewayName>), ApiError> {
    let input: GatewayAssignmentIn = crate::parse_body(body)?;
    let vm = input
        .virtual_machine_id
        .parse::<VmId>()
        .map_err(|e| ApiError::bad_request("InvalidResourceId", "virtualMachineId", format!("{e}")))?;
    let gateway = input
        .gateway
        .as_deref()
        .map(str::parse::<GatewayName>)
        .transpose()
        .map_err(|e| ApiError::bad_request("InvalidRequestContent", "gateway", e))?;
    Ok((vm, gateway))
}

fn agent_out(a: &ajar_domain::inventory::AgentInfo, now: OffsetDateTime, in_sync: bool) -> AgentOut {
    AgentOut {
        version: a.version.clone(),
        online: a.online(now),
        last_seen_utc: wire_time::format(a.last_seen),
        nftables_unusable: a.nftables.clone().err(),
        in_sync,
    }
}

/// A gateway's entry; `in_sync`: whether its agent has applied the gateway's current desired state.
pub fn gateway_out(gateway: &Gateway, machines: Option<&[VmId]>, now: OffsetDateTime, in_sync: bool) -> GatewayOut {
    GatewayOut {
        name: gateway.name.to_string(),
        public_addresses: gateway.public.iter().map(ToString::to_string).collect(),
        mapped_ports: gateway.mapped_ports.to_string(),
        agent: agent_out(&gateway.agent, now, in_sync),
        virtual_machines: machines.map(|m| m.iter().map(ToString::to_string).collect()),
    }
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
        EnforcementPoint::Agent(a) => Some(agent_out(a, now, a.applied.as_deref() == Some(s.desired.etag().as_str()))),
    };
    let gateway = s.gateway.as_ref().map(|g| gateway_out(&g.gateway, None, now, g.in_sync()));
    // A grant is applied once every point that enforces it has applied it.
    let in_sync = (agent.is_some() || gateway.is_some())
        && agent.as_ref().is_none_or(|a| a.in_sync)
        && gateway.as_ref().is_none_or(|g| g.agent.in_sync);
    let public = s.gateway.as_ref().and_then(|g| g.gateway.connection_address());
    let connect_to = |g: &Grant| s.gateway.as_ref()?.gateway.connect_to(g.sources.prefixes(), g.mapped_port?);
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
            address: public.or_else(|| s.vm.private_addresses.first().copied()).map(|a| a.to_string()),
            path: if s.gateway.is_some() { "firewall" } else { "direct" }.to_owned(),
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
                mapped_port: g.mapped_port,
                connect_to: connect_to(g),
            })
            .collect(),
        enforcement: match (agent.is_some(), s.gateway.is_some()) {
            (true, true) => "agent+gateway",
            (true, false) => "agent",
            (false, true) => "gateway",
            (false, false) => "none",
        }
        .to_owned(),
        agent,
        gateway,
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
