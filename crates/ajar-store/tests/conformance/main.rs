//! The store conformance suite: every operation of [`Store`], every refusal, supersede, expiry, paging,
//! the activity hash chain and identity, written once against the trait and run against every backend
//! (`conformance_suite!` at the end). A backend passes when all of it passes on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateways;
mod history;
mod identity;
mod inventory;
mod policies;
mod requests;
mod sqlite_file;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use ajar_domain::activity::{Audit, actions as a};
use ajar_domain::initiate::{Caller, EndSpec, InitiateDraft, PortAsk, VmAsk};
use ajar_domain::inventory::{EnforcementPoint, OsType, Vm};
use ajar_domain::policy::{Limits, Policy, PortRule, VmPolicy};
use ajar_domain::problem::Step;
use ajar_domain::{AccessDuration, PolicyId, Problem, VmId};
use ajar_store::{BootstrapPlan, InitiatePart, SqliteStore, Store, StoreError, StoreResult, Subscription};

pub const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
pub const ADMIN_TOKEN: [u8; 32] = [1; 32];
pub const JOIN_TOKEN: [u8; 32] = [2; 32];

/// Where one test's store keeps its data.
#[async_trait]
pub trait Place: Send + Sync {
    /// A store on this place's database: empty the first time, holding what was stored before after.
    /// The test drops the previous store first.
    async fn open(&self) -> Arc<dyn Store>;
}

/// A SQLite file in a temporary directory.
pub struct SqlitePlace {
    dir: tempfile::TempDir,
}

impl Default for SqlitePlace {
    fn default() -> SqlitePlace {
        SqlitePlace { dir: tempfile::tempdir().unwrap() }
    }
}

impl SqlitePlace {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("ajar.db")
    }
}

#[async_trait]
impl Place for SqlitePlace {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.path()).unwrap())
    }
}

/// A store after first start: subscription [`SUB`], resource group `rg`, location `local`, an admin
/// holding [`ADMIN_TOKEN`] and the join token [`JOIN_TOKEN`].
pub async fn fresh(place: &dyn Place) -> Arc<dyn Store> {
    let store = place.open().await;
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

/// The policy `name` of resource group `rg`, location `local`.
pub fn policy_named(rg: &str, name: &str) -> PolicyId {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Security/locations/local/jitNetworkAccessPolicies/{name}")
        .parse()
        .unwrap()
}

/// The policy `default` of resource group `rg`, location `local`.
pub fn policy_id(rg: &str) -> PolicyId {
    policy_named(rg, "default")
}

pub fn audit(operation: &'static str, resource: String, subjects: Vec<String>) -> Audit {
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

pub fn caller() -> Caller {
    Caller { principal_id: "p".into(), name: "alice".into(), addr: "10.0.0.1".parse().unwrap() }
}

/// The refusal's code, or a panic naming what came instead.
pub fn code<T: std::fmt::Debug>(r: StoreResult<T>) -> &'static str {
    refusal(r).code.as_str()
}

/// The refusal, or a panic naming what came instead.
pub fn refusal<T: std::fmt::Debug>(r: StoreResult<T>) -> Problem {
    match r {
        Err(StoreError::Rejected(p)) => p,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The path of the field a refusal names.
pub fn steps(p: &Problem) -> Vec<Step> {
    p.target.as_ref().map(|t| t.steps().to_vec()).unwrap_or_default()
}

/// A Linux machine `name` in resource group `rg` (location `local`), not in any policy.
pub async fn add_vm(store: &dyn Store, rg: &str, name: &str) -> VmId {
    let vm = vm_id(rg, name);
    let inventory = Vm {
        id: vm.clone(),
        location: "local".parse().unwrap(),
        os: OsType::Linux,
        private_addresses: vec![],
        enforcement: EnforcementPoint::None,
        gateway: None,
    };
    store.put_vm(inventory, audit(a::VM_WRITE, vm.to_string(), Vec::new())).await.unwrap();
    vm
}

/// A Linux machine `name` in resource group `rg`, alone in that group's policy with these ports: two
/// activity entries, the machine's and the policy's.
pub async fn add_machine(store: &dyn Store, rg: &str, name: &str, ports: Vec<PortRule>) -> (PolicyId, VmId) {
    let vm = add_vm(store, rg, name).await;
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

/// One policy's part of a request: `ports` of `vm` for `seconds`, from the caller's address.
pub fn part(policy: &PolicyId, vm: &VmId, ports: &[u16], seconds: i64) -> InitiatePart {
    let draft = InitiateDraft {
        vms: vec![VmAsk {
            vm: vm.clone(),
            ports: ports
                .iter()
                .map(|&number| PortAsk { number, end: EndSpec::For(AccessDuration::from_seconds(seconds)), sources: None })
                .collect(),
        }],
        justification: None,
    };
    InitiatePart { policy: policy.clone(), draft, audit: audit(a::JIT_INITIATE, policy.to_string(), vec![vm.key()]) }
}

/// Declares every check of the suite as a test of the backend whose `Place` the expression makes.
macro_rules! conformance_suite {
    ($place:expr) => {
        conformance_suite!(@checks $place;
            gateways::a_gateway_enrols_once_and_serves_the_machines_put_behind_it,
            gateways::grants_behind_a_gateway_get_distinct_mapped_ports_and_reach_only_its_desired_state,
            history::the_activity_log_is_filtered_and_paged_in_the_query,
            history::grants_over_a_window_with_when_they_ended,
            history::approved_requests_are_counted_per_day_and_sum_to_the_week,
            identity::bootstrap_makes_the_admin_owner_at_the_root,
            identity::principals_are_created_listed_found_and_deleted,
            identity::tokens_are_created_listed_revoked_and_expire,
            identity::custom_role_definitions_are_put_listed_and_deleted,
            identity::role_assignments_are_created_listed_and_deleted,
            identity::deleting_a_principal_ends_its_tokens_and_assignments,
            identity::the_last_owner_at_the_root_cannot_be_removed,
            identity::every_write_is_logged_and_moves_the_access_version,
            identity::a_restart_does_not_reuse_access_versions,
            inventory::bootstrap_happens_once,
            inventory::machines_are_put_read_moved_and_deleted,
            inventory::lists_hold_what_the_caller_may_see_a_full_page_at_a_time,
            inventory::the_state_filter_agrees_with_the_domain,
            inventory::agents_enrol_once_report_and_see_their_desired_state,
            policies::a_policy_write_is_versioned_and_conditional,
            policies::a_refused_policy_write_names_its_field_and_changes_nothing,
            policies::a_machine_is_in_one_policy_at_most,
            policies::tightening_a_policy_revokes_what_it_no_longer_allows,
            policies::deleting_a_policy_ends_its_grants,
            policies::enabling_is_all_or_none,
            requests::refused_operations_in_a_batch_change_nothing_but_are_logged,
            requests::a_newer_request_supersedes_the_live_grant_on_its_port,
            requests::a_request_across_policies_is_granted_whole_or_not_at_all,
            requests::a_revoke_of_several_machines_is_whole_or_nothing,
            requests::a_revoke_under_a_cutting_policy_hands_the_agent_its_cuts,
            requests::grants_expire_at_their_end,
            requests::the_activity_chain_covers_every_entry,
        );
    };
    (@checks $place:expr; $($module:ident :: $check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let place = $place;
                crate::$module::$check(&place).await;
            }
        )*
    };
}

mod sqlite {
    conformance_suite!(crate::SqlitePlace::default());
}
