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
