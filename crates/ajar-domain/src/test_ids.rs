//! What the domain's tests share: one subscription, one moment, and IDs in it.
#![allow(clippy::unwrap_used)]

use time::OffsetDateTime;
use time::macros::datetime;

use crate::ids::{PolicyId, VmId};

pub const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
pub const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

/// Machine `name` of resource group `rg`.
pub fn vm(name: &str) -> VmId {
    format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}").parse().unwrap()
}

/// Policy `name` of resource group `rg`, location `local`.
pub fn policy_id(name: &str) -> PolicyId {
    format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Security/locations/local/jitNetworkAccessPolicies/{name}")
        .parse()
        .unwrap()
}
