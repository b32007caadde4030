//! What the store's test files share: a store on a real file in `dir`, after first start, and machines
//! in JIT policies.
// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use ajar_domain::activity::{Audit, actions as a};
use ajar_domain::inventory::{EnforcementPoint, OsType, Vm};
use ajar_domain::policy::{Limits, Policy, PortRule, VmPolicy};
use ajar_domain::{PolicyId, VmId};
use ajar_store::{BootstrapPlan, SqliteStore, Store, Subscription};

pub const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
pub const ADMIN_TOKEN: [u8; 32] = [1; 32];
pub const JOIN_TOKEN: [u8; 32] = [2; 32];

/// `dir/ajar.db`, bootstrapped: subscription [`SUB`], resource group `rg`, location `local`, an admin
/// holding [`ADMIN_TOKEN`] and the join token [`JOIN_TOKEN`].
pub async fn bootstrapped(dir: &Path) -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::open(&dir.join("ajar.db")).unwrap());
    store
        .bootstrap(BootstrapPlan {
            subscription: Subscription { id: SUB.parse().unwrap(), display_name: "t".into() },
            resource_group: "rg".parse().unwrap(),
            location: "local".parse().unwrap(),
            admin_name: "admin".into(),
            admin_token_hash: ADMIN_TOKEN,
            join_token_hash: JOIN_TOKEN,
        })
        .await
        .unwrap();
    store
}

pub fn vm_id(rg: &str, name: &str) -> VmId {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}").parse().unwrap()
}

/// The policy `default` of resource group `rg`, location `local`.
pub fn policy_id(rg: &str) -> PolicyId {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Security/locations/local/jitNetworkAccessPolicies/default")
        .parse()
        .unwrap()
}

fn audit(operation: &'static str, resource: String, subjects: Vec<String>) -> Audit {
    Audit {
        operation,
        subscription: Some(SUB.into()),
        resource_group: None,
        resource_id: resource,
        caller: "tester".into(),
        caller_addr: None,
        subjects,
        details: Vec::new(),
    }
}

/// A Linux machine `name` in resource group `rg`, alone in that group's policy with these ports: two
/// activity entries, the machine's and the policy's.
pub async fn add_machine(store: &SqliteStore, rg: &str, name: &str, ports: Vec<PortRule>) -> (PolicyId, VmId) {
    let vm = vm_id(rg, name);
    let inventory = Vm {
        id: vm.clone(),
        location: "local".parse().unwrap(),
        os: OsType::Linux,
        private_addresses: vec![],
        enforcement: EnforcementPoint::None,
    };
    store.put_vm(inventory, audit(a::VM_WRITE, vm.to_string(), Vec::new())).await.unwrap();
    let id = policy_id(rg);
    let policy = Policy {
        id: id.clone(),
        kind: None,
        vms: vec![VmPolicy { vm: vm.clone(), ports, public_ip: None }],
        cut_connections_on_revoke: false,
    };
    store.put_policy(policy, None, Limits::default(), audit(a::JIT_WRITE, id.to_string(), vec![vm.key()])).await.unwrap();
    (id, vm)
}
