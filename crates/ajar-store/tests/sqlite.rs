//! The SQLite store on a real file: group commits that mix accepted and refused
//! operations, and the activity log's hash chain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ajar_domain::activity::{ActivityQuery, Audit, Outcome};
use ajar_domain::initiate::{Caller, EndSpec, InitiateDraft, PortAsk, VmAsk};
use ajar_domain::inventory::OsType;
use ajar_domain::policy::default_ports;
use ajar_domain::{AccessDuration, PolicyId, VmId};
use ajar_store::{InitiatePart, SqliteStore, Store, StoreError};

mod common;
use common::SUB;

fn audit(op: &'static str, resource: String) -> Audit {
    Audit {
        operation: op,
        subscription: Some(SUB.into()),
        resource_group: Some("rg".into()),
        resource_id: resource,
        caller: "tester".into(),
        caller_addr: None,
        subjects: Vec::new(),
        details: Vec::new(),
    }
}

async fn store_with_policy(dir: &std::path::Path) -> (Arc<SqliteStore>, PolicyId, VmId) {
    let store = common::bootstrapped(dir).await;
    let (id, vm) = common::add_machine(&store, "rg", "vm1", default_ports(OsType::Linux)).await;
    (store, id, vm)
}

fn ask(vm: &VmId, port: u16) -> InitiateDraft {
    InitiateDraft {
        vms: vec![VmAsk {
            vm: vm.clone(),
            ports: vec![PortAsk { number: port, end: EndSpec::For(AccessDuration::from_seconds(600)), sources: None }],
        }],
        justification: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_operations_in_a_batch_change_nothing_but_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id, vm) = store_with_policy(dir.path()).await;
    let caller = Caller { principal_id: "p".into(), name: "tester".into(), addr: "10.0.0.1".parse().unwrap() };
    // 60 at once, so they share commits: every third asks for an unconfigured port.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (store, id, vm, caller) = (Arc::clone(&store), id.clone(), vm.clone(), caller.clone());
            tokio::spawn(async move {
                let port = if i % 3 == 0 { 80 } else { 22 };
                store
                    .initiate(
                        vec![InitiatePart {
                            policy: id.clone(),
                            draft: ask(&vm, port),
                            audit: audit("jit/initiate/action", id.to_string()),
                        }],
                        caller,
                    )
                    .await
            })
        })
        .collect();
    let mut accepted = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(StoreError::Rejected(p)) => assert_eq!((i % 3, p.code.as_str()), (0, "InvalidInitiateInput")),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(accepted, 40);
    let view = store.get_policy(&id).await.unwrap().unwrap();
    assert_eq!(view.requests.len(), 40, "refused requests left nothing behind");
    // Exactly one grant is live: each newer request superseded the one before.
    let live =
        view.requests.iter().flat_map(|r| &r.vms[0].grants).filter(|g| g.status == ajar_domain::initiate::GrantStatus::Initiated).count();
    assert_eq!(live, 1);
    let log = store.activity(ActivityQuery::default()).await.unwrap();
    let initiates: Vec<_> = log.iter().filter(|e| e.operation == "jit/initiate/action").collect();
    assert_eq!(initiates.len(), 60);
    assert_eq!(initiates.iter().filter(|e| e.outcome == Outcome::Succeeded).count(), 40);
    assert_eq!(store.verify_activity_chain().await.unwrap(), Ok(log.len() as u64));
}

#[tokio::test]
async fn the_activity_chain_detects_edits_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id, vm) = store_with_policy(dir.path()).await;
    let caller = Caller { principal_id: "p".into(), name: "tester".into(), addr: "10.0.0.1".parse().unwrap() };
    for _ in 0..3 {
        let part = InitiatePart { policy: id.clone(), draft: ask(&vm, 22), audit: audit("jit/initiate/action", id.to_string()) };
        store.initiate(vec![part], caller.clone()).await.unwrap();
    }
    assert_eq!(store.verify_activity_chain().await.unwrap(), Ok(5));
    let db = rusqlite::Connection::open(dir.path().join("ajar.db")).unwrap();
    db.execute("UPDATE activity SET caller = 'someone else' WHERE seq = 3", []).unwrap();
    assert_eq!(store.verify_activity_chain().await.unwrap(), Err(3), "an edited entry is found");
    db.execute("UPDATE activity SET caller = 'tester' WHERE seq = 3", []).unwrap();
    assert_eq!(store.verify_activity_chain().await.unwrap(), Ok(5));
    db.execute("DELETE FROM activity WHERE seq = 2", []).unwrap();
    assert_eq!(store.verify_activity_chain().await.unwrap(), Err(3), "the entry after a deleted one no longer links");
}

#[tokio::test]
async fn the_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let _store = store_with_policy(dir.path()).await;
    for file in ["ajar.db", "ajar.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ajar.db");
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 999).unwrap();
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(err.to_string().contains("newer than this ajar knows"), "{err}");
}

/// A version 6 database kept keys lower-cased whole, which keeps a final sigma (`ς`) apart from `σ`
/// though ARM spells both `Σ`. The upgrade folds every key again: the machine, its policy, its live
/// grant, its activity and a role assignment at its group are found by any spelling, and cannot be
/// made a second time under another.
#[tokio::test]
async fn upgrading_a_version_6_database_folds_its_keys() {
    use ajar_domain::access::builtin::READER_ID;
    use ajar_domain::access::{RoleAssignment, Scope as AccessScope};
    use ajar_domain::activity::actions as a;
    use ajar_domain::inventory::{EnforcementPoint, Vm};
    use ajar_store::AssignmentFilter;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ajar.db");
    ajar_store::create_database_at_version(&path, 6).unwrap();
    let vm: VmId = common::vm_id("ΑΣ", "WebΣ");
    let policy: PolicyId = common::policy_id("ΑΣ");
    let group = format!("/subscriptions/{SUB}/resourceGroups/ΑΣ");
    let old_key = |id: &str| id.to_lowercase();
    assert_ne!(old_key(&vm.to_string()), vm.key(), "the old key of this machine is not its key now");
    let now = time::OffsetDateTime::now_utc();
    let ns = |t: time::OffsetDateTime| t.unix_timestamp_nanos() as i64;
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(&format!(
            "INSERT INTO subscriptions (id, display_name, created_ns) VALUES ('{SUB}', 't', 0);
             INSERT INTO vms (key, id, subscription, rg_key, location, os, addresses, created_ns, updated_ns)
                 VALUES ('{vm_key}', '{vm}', '{SUB}', '{rg_key}', 'local', 'Linux', '', 0, 0);
             INSERT INTO policies (key, uid, id, subscription, rg_key, loc_key, kind, created_ns, updated_ns, etag)
                 VALUES ('{policy_key}', 'u1', '{policy}', '{SUB}', '{rg_key}', 'local', NULL, 0, 0, 'e1');
             INSERT INTO policy_vms (vm_key, policy_key, vm_id, ord) VALUES ('{vm_key}', '{policy_key}', '{vm}', 0);
             INSERT INTO policy_ports (vm_key, ord, number, protocol, sources, sources_is_list, max_duration_ns)
                 VALUES ('{vm_key}', 0, 22, 'TCP', '*', 0, 3600000000000);
             INSERT INTO access_requests (seq, id, policy_uid, policy_id, requestor, principal_id, start_ns)
                 VALUES (1, 'r1', 'u1', '{policy}', 'alice', 'a', {start});
             INSERT INTO grants (request_seq, vm_key, vm_id, vm_ord, port_ord, number, protocol, sources, sources_is_list, end_ns, status, reason)
                 VALUES (1, '{vm_key}', '{vm}', 0, 0, 22, 'TCP', '*', 0, {end}, 'Initiated', 'UserRequested');
             INSERT INTO activity (seq, time_ns, resource_id, operation, caller, result, details, chain)
                 VALUES (1, {start}, '{policy}', '{initiate}', 'alice', 'Succeeded', '[]', zeroblob(32));
             INSERT INTO activity_subjects (key, seq) VALUES ('{vm_key}', 1);
             INSERT INTO role_assignments (id, principal_id, role_id, scope, scope_key, created_ns)
                 VALUES ('0e5f2e6a-3f52-4b38-9c43-5f1d3bb6b0e1', 'group:ops', '{READER_ID}', '{group}', '{group_key}', 0);",
            vm_key = old_key(&vm.to_string()),
            rg_key = old_key("ΑΣ"),
            policy_key = old_key(&policy.to_string()),
            group_key = old_key(&group),
            start = ns(now),
            end = ns(now + time::Duration::hours(1)),
            initiate = a::JIT_INITIATE,
        ))
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    // Spelled with σ where the old key has ς.
    let spelled = common::vm_id("ασ", "webσ");
    let status = store.vm_status(&spelled).await.unwrap().expect("the machine, by another spelling");
    assert_eq!(status.vm.id.to_string(), vm.to_string(), "it keeps its spelling");
    assert_eq!(status.policy.as_ref(), Some(&policy));
    assert_eq!(status.live.len(), 1, "its live grant");
    assert_eq!(store.desired_state(&spelled).await.unwrap().grants.len(), 1);
    assert!(store.get_policy(&common::policy_id("ασ")).await.unwrap().is_some());
    let entries = store.activity(ActivityQuery { resource_key: Some(spelled.key()), ..ActivityQuery::default() }).await.unwrap();
    assert_eq!(entries.len(), 1, "its activity");
    let at_group: AccessScope = format!("/subscriptions/{SUB}/resourceGroups/ασ").parse().unwrap();
    let held = store.list_role_assignments(AssignmentFilter { principal_id: None, scope: Some(at_group.clone()) }).await.unwrap();
    assert_eq!(held.len(), 1, "the assignment at its group");
    let again = RoleAssignment {
        id: "1e5f2e6a-3f52-4b38-9c43-5f1d3bb6b0e1".into(),
        principal_id: "group:ops".into(),
        role_id: READER_ID.into(),
        scope: at_group,
    };
    let refused = store.create_role_assignment(again, audit(a::ROLE_ASSIGNMENTS_WRITE, group.clone())).await;
    assert!(matches!(&refused, Err(StoreError::Rejected(p)) if p.code == ajar_domain::ErrorCode::RoleAssignmentExists), "{refused:?}");
    // A second machine under the new spelling is the first one.
    let again = Vm {
        id: spelled.clone(),
        location: "local".parse().unwrap(),
        os: OsType::Linux,
        private_addresses: vec![],
        enforcement: EnforcementPoint::None,
    };
    assert_eq!(store.put_vm(again, audit(a::VM_WRITE, spelled.to_string())).await.unwrap(), ajar_store::PutOutcome::Updated);
    assert_eq!(store.get_vm(&vm).await.unwrap().unwrap().id.to_string(), vm.to_string());
}
