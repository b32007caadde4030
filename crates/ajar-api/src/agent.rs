//! The agent protocol (`/ajar/v1/agents/enroll`, `/ajar/v1/agent/...`): how a
//! host agent enrols, follows its machine's desired state and reports back.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use ajar_domain::agent::{DesiredState, GatewayDesiredState};
use ajar_domain::gateway::{DEFAULT_MAPPED_PORTS, GatewayName, PortRange, check_public_addresses};
use ajar_domain::inventory::{EnforcementPoint, OsType, Vm};
use ajar_domain::{Location, ResourceGroup, SubscriptionId, VmId};

use crate::{ApiError, wire_time};

/// Longest a desired-state request waits for a change.
pub const MAX_WAIT_SECONDS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NftablesStatus {
    pub usable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl NftablesStatus {
    pub fn to_result(&self) -> Result<(), String> {
        if self.usable { Ok(()) } else { Err(self.reason.clone().unwrap_or_else(|| "nftables is unusable".to_owned())) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollIn {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub os_type: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    pub version: String,
    pub nftables: NftablesStatus,
    /// Present when the agent enrols a gateway named `name` rather than a machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayEnrollIn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayEnrollIn {
    pub public_addresses: Vec<String>,
    /// `FIRST-LAST`; 50000-59999 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped_ports: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollOut {
    pub agent_id: String,
    /// The agent's own credential; shown once.
    pub token: String,
    /// The machine enrolled, or (for a gateway) none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportIn {
    pub version: String,
    pub nftables: NftablesStatus,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_etag: Option<String>,
    /// What the agent found changed by hand in its table and repaired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_repaired: Option<String>,
    /// Cuts carried out since the last report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuts_done: Vec<CutDone>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CutDone {
    pub id: String,
    pub request_id: String,
    pub number: u16,
    /// Established connections removed.
    pub connections: u64,
    /// Set when the cut could not be carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CutOut {
    pub id: String,
    pub request_id: String,
    pub number: u16,
    pub protocol: String,
    pub allowed_source_address_prefixes: Vec<String>,
    pub revoked_time_utc: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedPortOut {
    pub number: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredGrantOut {
    pub request_id: String,
    pub number: u16,
    pub protocol: String,
    pub allowed_source_address_prefixes: Vec<String>,
    pub end_time_utc: String,
    /// Time left when the server answered, so agents need not trust their clock.
    pub remaining_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredStateOut {
    pub etag: String,
    /// The machine a host agent enforces; none for a gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    pub protected: Vec<ProtectedPortOut>,
    pub grants: Vec<DesiredGrantOut>,
    /// Grants revoked early whose established connections must be cut (on a gateway, `number` is the
    /// mapped port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuts: Vec<CutOut>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayStateOut>,
}

/// What a gateway enforces: the machines behind it and the live mappings to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStateOut {
    pub public_addresses: Vec<String>,
    pub machines: Vec<ServedMachineOut>,
    pub mappings: Vec<MappingOut>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServedMachineOut {
    pub vm_id: String,
    pub addresses: Vec<String>,
    pub protected: Vec<ProtectedPortOut>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingOut {
    pub request_id: String,
    pub vm_id: String,
    pub number: u16,
    pub protocol: String,
    pub mapped_port: u16,
    pub allowed_source_address_prefixes: Vec<String>,
    pub end_time_utc: String,
    /// Time left when the server answered.
    pub remaining_ms: u64,
}

pub fn desired_state_out(state: &DesiredState, now: OffsetDateTime) -> DesiredStateOut {
    DesiredStateOut {
        etag: state.etag(),
        vm_id: Some(state.vm.to_string()),
        protected: state.protected.iter().map(|(n, p)| ProtectedPortOut { number: *n, protocol: p.as_str().to_owned() }).collect(),
        grants: state
            .grants
            .iter()
            .map(|g| DesiredGrantOut {
                request_id: g.request_id.clone(),
                number: g.port,
                protocol: g.protocol.as_str().to_owned(),
                allowed_source_address_prefixes: prefixes(&g.sources),
                end_time_utc: wire_time::format(g.end),
                remaining_ms: remaining_ms(g.end, now),
            })
            .collect(),
        cuts: state.cuts.iter().map(cut_out).collect(),
        gateway: None,
    }
}

fn remaining_ms(end: OffsetDateTime, now: OffsetDateTime) -> u64 {
    u64::try_from((end - now).whole_milliseconds()).unwrap_or(0)
}

fn prefixes(sources: &ajar_domain::Sources) -> Vec<String> {
    sources.prefixes().iter().map(ToString::to_string).collect()
}

fn cut_out(c: &ajar_domain::agent::ConnectionCut) -> CutOut {
    CutOut {
        id: c.id.clone(),
        request_id: c.request_id.clone(),
        number: c.port,
        protocol: c.protocol.as_str().to_owned(),
        allowed_source_address_prefixes: prefixes(&c.sources),
        revoked_time_utc: wire_time::format(c.revoked),
    }
}

pub fn gateway_state_out(state: &GatewayDesiredState, now: OffsetDateTime) -> DesiredStateOut {
    let protected = |ports: &[(u16, ajar_domain::policy::Protocol)]| {
        ports.iter().map(|(n, p)| ProtectedPortOut { number: *n, protocol: p.as_str().to_owned() }).collect()
    };
    DesiredStateOut {
        etag: state.etag(),
        vm_id: None,
        protected: Vec::new(),
        grants: Vec::new(),
        cuts: state.cuts.iter().map(cut_out).collect(),
        gateway: Some(GatewayStateOut {
            public_addresses: state.public.iter().map(ToString::to_string).collect(),
            machines: state
                .machines
                .iter()
                .map(|m| ServedMachineOut {
                    vm_id: m.vm.to_string(),
                    addresses: m.addresses.iter().map(ToString::to_string).collect(),
                    protected: protected(&m.protected),
                })
                .collect(),
            mappings: state
                .mappings
                .iter()
                .map(|g| MappingOut {
                    request_id: g.request_id.clone(),
                    vm_id: g.vm.to_string(),
                    number: g.port,
                    protocol: g.protocol.as_str().to_owned(),
                    mapped_port: g.mapped_port,
                    allowed_source_address_prefixes: prefixes(&g.sources),
                    end_time_utc: wire_time::format(g.end),
                    remaining_ms: remaining_ms(g.end, now),
                })
                .collect(),
        }),
    }
}

fn addresses_in(list: &[String]) -> Result<Vec<IpAddr>, ApiError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            a.parse::<IpAddr>().map(|ip| ip.to_canonical()).map_err(|_| {
                ApiError::bad_request("InvalidRequestContent", &format!("addresses[{i}]"), format!("'{a}' is not an IP address"))
            })
        })
        .collect()
}

/// What an agent enrols: a machine, or a gateway in front of machines.
#[derive(Debug, Clone, PartialEq)]
pub enum Enrolment {
    Machine(Box<Vm>),
    Gateway { name: GatewayName, public: Vec<IpAddr>, mapped_ports: PortRange },
}

/// An enrolment: the machine to register (its resource group and location
/// default to the server's) or the gateway, the agent's version and whether nftables works.
pub fn enroll_in(
    body: &[u8],
    subscription: &SubscriptionId,
    default_rg: &ResourceGroup,
    default_location: &Location,
) -> Result<(Enrolment, String, Result<(), String>), ApiError> {
    const CODE: &str = "InvalidRequestContent";
    let input: EnrollIn = crate::parse_body(body)?;
    let bad = |target: &str, e: String| ApiError::bad_request(CODE, target, e);
    if let Some(gateway) = &input.gateway {
        let name = input.name.parse().map_err(|e| bad("name", e))?;
        let public = addresses_in(&gateway.public_addresses)
            .map_err(|_| bad("gateway.publicAddresses", "every public address must be an IP address".to_owned()))?;
        check_public_addresses(&public).map_err(|e| bad("gateway.publicAddresses", e))?;
        let mapped_ports = match &gateway.mapped_ports {
            Some(range) => range.parse().map_err(|e| bad("gateway.mappedPorts", e))?,
            None => DEFAULT_MAPPED_PORTS,
        };
        return Ok((Enrolment::Gateway { name, public, mapped_ports }, input.version, input.nftables.to_result()));
    }
    let resource_group = match &input.resource_group {
        Some(rg) => rg.parse().map_err(|e| bad("resourceGroup", format!("{e}")))?,
        None => default_rg.clone(),
    };
    let location = match &input.location {
        Some(l) => l.parse().map_err(|e| bad("location", format!("{e}")))?,
        None => default_location.clone(),
    };
    let name = input.name.parse().map_err(|e| bad("name", format!("{e}")))?;
    let os: OsType = input.os_type.parse().map_err(|e: String| bad("osType", e))?;
    let vm = Vm {
        id: VmId { subscription: subscription.clone(), resource_group, name },
        location,
        os,
        private_addresses: addresses_in(&input.addresses)?,
        enforcement: EnforcementPoint::None,
        gateway: None,
    };
    Ok((Enrolment::Machine(Box::new(vm)), input.version, input.nftables.to_result()))
}

/// A report: version, nftables, addresses, what was applied, drift repaired.
pub fn report_in(body: &[u8]) -> Result<(ReportIn, Vec<IpAddr>), ApiError> {
    let input: ReportIn = crate::parse_body(body)?;
    let addresses = addresses_in(&input.addresses)?;
    Ok((input, addresses))
}

/// `POST …/jitNetworkAccessPolicies/{name}/revoke` (ajar's, beyond Azure's API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeIn {
    pub virtual_machines: Vec<RevokeVmIn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeVmIn {
    pub id: String,
    pub ports: Vec<RevokePortIn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokePortIn {
    pub number: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevokeOut {
    /// How many live grants ended.
    pub revoked: u64,
}

pub fn revoke_in(body: &[u8]) -> Result<Vec<(VmId, Vec<u16>)>, ApiError> {
    let input: RevokeIn = crate::parse_body(body)?;
    if input.virtual_machines.is_empty() {
        return Err(ApiError::bad_request("InvalidRequestContent", "virtualMachines", "name at least one virtual machine"));
    }
    input
        .virtual_machines
        .iter()
        .enumerate()
        .map(|(i, vm)| {
            let id = vm
                .id
                .parse::<VmId>()
                .map_err(|e| ApiError::bad_request("InvalidResourceId", &format!("virtualMachines[{i}].id"), format!("{e}")))?;
            if vm.ports.is_empty() {
                return Err(ApiError::bad_request(
                    "InvalidRequestContent",
                    &format!("virtualMachines[{i}].ports"),
                    "name at least one port",
                ));
            }
            Ok((id, vm.ports.iter().map(|p| p.number).collect()))
        })
        .collect()
}
