//! `Microsoft.Compute/virtualMachines`, reduced to what JIT needs: name,
//! location, OS type (where Azure keeps it, `storageProfile.osDisk.osType`) and
//! private addresses.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use ajar_domain::inventory::{EnforcementPoint, OsType, Vm};
use ajar_domain::{Location, VmId};

use crate::ApiError;

pub const RESOURCE_TYPE: &str = "Microsoft.Compute/virtualMachines";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachine {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub location: String,
    pub properties: VirtualMachineProperties,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    pub storage_profile: StorageProfile,
    pub network_profile: NetworkProfile,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provisioning_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfile {
    pub os_disk: OsDisk,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    pub os_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkProfile {
    #[serde(rename = "privateIPAddresses", default)]
    pub private_ip_addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineList {
    pub value: Vec<VirtualMachine>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_link: Option<String>,
}

pub fn vm_out(vm: &Vm) -> VirtualMachine {
    VirtualMachine {
        id: vm.id.to_string(),
        name: vm.id.name.to_string(),
        resource_type: RESOURCE_TYPE.to_owned(),
        location: vm.location.to_string(),
        properties: VirtualMachineProperties {
            storage_profile: StorageProfile { os_disk: OsDisk { os_type: vm.os.as_str().to_owned() } },
            network_profile: NetworkProfile { private_ip_addresses: vm.private_addresses.iter().map(ToString::to_string).collect() },
            provisioning_state: Some("Succeeded".to_owned()),
        },
    }
}

/// A PUT body, as the server reads it and the client sends it: `location` and
/// `properties.storageProfile.osDisk.osType` are required; other fields an Azure VM carries are
/// accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineIn {
    pub location: String,
    pub properties: VirtualMachinePropertiesIn,
}

/// Unlike [`VirtualMachineProperties`], the addresses are optional and `provisioningState`, of
/// whatever type, is ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePropertiesIn {
    pub storage_profile: StorageProfile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<NetworkProfile>,
}

impl VirtualMachineIn {
    /// A machine in `location` with OS type `os_type` (`Linux`, `Windows`) and these private addresses.
    pub fn new(location: &Location, os_type: &str, private_addresses: Vec<String>) -> Self {
        VirtualMachineIn {
            location: location.to_string(),
            properties: VirtualMachinePropertiesIn {
                storage_profile: StorageProfile { os_disk: OsDisk { os_type: os_type.to_owned() } },
                network_profile: Some(NetworkProfile { private_ip_addresses: private_addresses }),
            },
        }
    }
}

pub fn vm_in(id: &VmId, body: &[u8]) -> Result<Vm, ApiError> {
    const CODE: &str = "InvalidVirtualMachine";
    let input: VirtualMachineIn = crate::parse_body(body)?;
    let location: Location = input.location.parse().map_err(|e| ApiError::bad_request(CODE, "location", format!("{e}")))?;
    let os: OsType = input
        .properties
        .storage_profile
        .os_disk
        .os_type
        .parse()
        .map_err(|e: String| ApiError::bad_request(CODE, "properties.storageProfile.osDisk.osType", e))?;
    let addresses = input.properties.network_profile.map(|n| n.private_ip_addresses).unwrap_or_default();
    let mut private_addresses = Vec::with_capacity(addresses.len());
    for (i, a) in addresses.iter().enumerate() {
        let addr: IpAddr = a.parse().map_err(|_| {
            ApiError::bad_request(
                CODE,
                &format!("properties.networkProfile.privateIPAddresses[{i}]"),
                format!("'{a}' is not an IPv4 or IPv6 address"),
            )
        })?;
        private_addresses.push(addr.to_canonical());
    }
    Ok(Vm { id: id.clone(), location, os, private_addresses, enforcement: EnforcementPoint::None, gateway: None })
}
