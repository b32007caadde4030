//! The machines ajar knows: the inventory entries behind `Microsoft.Compute/virtualMachines`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::gateway::GatewayName;
use crate::ids::{Location, VmId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OsType {
    Linux,
    Windows,
}

impl OsType {
    pub fn as_str(self) -> &'static str {
        match self {
            OsType::Linux => "Linux",
            OsType::Windows => "Windows",
        }
    }
}

impl fmt::Display for OsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OsType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "linux" => Ok(OsType::Linux),
            "windows" => Ok(OsType::Windows),
            _ => Err(format!("'{s}' is not an OS type; use Linux or Windows")),
        }
    }
}

/// What enforces JIT on a machine. An inventory-only entry has none: it cannot be
/// protected until a host agent serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnforcementPoint {
    None,
    Agent(AgentInfo),
}

/// What a machine's host agent last told the server about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub agent_id: String,
    pub version: String,
    /// Whether nftables works on the machine; why not, when it does not.
    pub nftables: Result<(), String>,
    pub last_seen: OffsetDateTime,
    /// The version (etag) of the desired state the agent last applied.
    pub applied: Option<String>,
}

/// An agent that has not reported for this long is shown as offline.
pub const AGENT_OFFLINE_AFTER: time::Duration = time::Duration::seconds(90);

impl AgentInfo {
    pub fn online(&self, now: OffsetDateTime) -> bool {
        now - self.last_seen < AGENT_OFFLINE_AFTER
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    pub id: VmId,
    pub location: Location,
    pub os: OsType,
    pub private_addresses: Vec<IpAddr>,
    pub enforcement: EnforcementPoint,
    /// The gateway in front of the machine, if any: its JIT ports are then also reached through it.
    pub gateway: Option<GatewayName>,
}
