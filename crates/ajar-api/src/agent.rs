//! The agent protocol (`/ajar/v1/agents/enroll`, `/ajar/v1/agent/...`): how a
//! host agent enrols, follows its machine's desired state and reports back.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use ajar_domain::agent::DesiredState;
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollOut {
    pub agent_id: String,
    /// The agent's own credential; shown once.
    pub token: String,
    pub vm_id: String,
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
    pub vm_id: String,
    pub protected: Vec<ProtectedPortOut>,
    pub grants: Vec<DesiredGrantOut>,
    /// Grants revoked early whose established connections must be cut.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuts: Vec<CutOut>,
}

/// Names a desired state: equal content, equal etag (time left is not content).
pub fn etag(state: &DesiredState) -> String {
    let mut h = Sha256::new();
    for (port, proto) in &state.protected {
        h.update(format!("p {port} {proto}\n"));
    }
    for g in &state.grants {
        let sources: Vec<String> = g.sources.prefixes().iter().map(ToString::to_string).collect();
        h.update(format!("g {} {} {} {} {}\n", g.request_id, g.port, g.protocol, sources.join(","), g.end.unix_timestamp_nanos()));
    }
    for c in &state.cuts {
        h.update(format!("c {}\n", c.id));
    }
    let digest = h.finalize();
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

pub fn desired_state_out(state: &DesiredState, now: OffsetDateTime) -> DesiredStateOut {
    DesiredStateOut {
        etag: etag(state),
        vm_id: state.vm.to_string(),
        protected: state.protected.iter().map(|(n, p)| ProtectedPortOut { number: *n, protocol: p.as_str().to_owned() }).collect(),
        grants: state
            .grants
            .iter()
            .map(|g| DesiredGrantOut {
                request_id: g.request_id.clone(),
                number: g.port,
                protocol: g.protocol.as_str().to_owned(),
                allowed_source_address_prefixes: g.sources.prefixes().iter().map(ToString::to_string).collect(),
                end_time_utc: wire_time::format(g.end),
                remaining_ms: u64::try_from((g.end - now).whole_milliseconds()).unwrap_or(0),
            })
            .collect(),
        cuts: state
            .cuts
            .iter()
            .map(|c| CutOut {
                id: c.id.clone(),
                request_id: c.request_id.clone(),
                number: c.port,
                protocol: c.protocol.as_str().to_owned(),
                allowed_source_address_prefixes: c.sources.prefixes().iter().map(ToString::to_string).collect(),
                revoked_time_utc: wire_time::format(c.revoked),
            })
            .collect(),
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

/// An enrolment: the machine to register (its resource group and location
/// default to the server's), the agent's version and whether nftables works.
pub fn enroll_in(
    body: &[u8],
    subscription: &SubscriptionId,
    default_rg: &ResourceGroup,
    default_location: &Location,
) -> Result<(Vm, String, Result<(), String>), ApiError> {
    const CODE: &str = "InvalidRequestContent";
    let input: EnrollIn = crate::parse_body(body)?;
    let bad = |target: &str, e: String| ApiError::bad_request(CODE, target, e);
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
    };
    Ok((vm, input.version, input.nftables.to_result()))
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
