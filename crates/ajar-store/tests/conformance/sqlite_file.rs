//! What only the SQLite backend has: its file (its mode, its schema and the upgrades from every
//! earlier version) and the activity chain checked against edits made to the file behind the store's
//! back. Everything every backend must do is the conformance suite's (`tests/conformance`).

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use ajar_domain::access::builtin::OWNER_ID;
use ajar_domain::activity::{ActivityQuery, Audit, actions as a};
use ajar_domain::history::SpanState;
use ajar_domain::initiate::{Caller, EndSpec, InitiateDraft, PortAsk, VmAsk};
use ajar_domain::inventory::OsType;
use ajar_domain::policy::default_ports;
use ajar_domain::{AccessDuration, PolicyId, VmId};
use ajar_store::{AssignmentFilter, InitiatePart, SqliteStore, Store, StoreError, TokenPurpose};

use crate::{ADMIN_TOKEN, JOIN_TOKEN, SUB, add_machine, fresh, policy_id, vm_id};

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

async fn store_with_policy(place: &crate::SqlitePlace) -> (Arc<dyn Store>, PolicyId, VmId) {
    let store = fresh(place).await;
    let (id, vm) = add_machine(&*store, "rg", "vm1", default_ports(OsType::Linux)).await;
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

#[tokio::test]
async fn the_activity_chain_detects_edits_and_deletions() {
    let place = crate::SqlitePlace::default();
    let (store, id, vm) = store_with_policy(&place).await;
    let caller = Caller { principal_id: "p".into(), name: "tester".into(), addr: "10.0.0.1".parse().unwrap() };
    for _ in 0..3 {
        let part = InitiatePart { policy: id.clone(), draft: ask(&vm, 22), audit: audit("jit/initiate/action", id.to_string()) };
        store.initiate(vec![part], caller.clone()).await.unwrap();
    }
    assert_eq!(store.verify_activity_chain().await.unwrap(), Ok(5));
    let db = rusqlite::Connection::open(place.path()).unwrap();
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
    let place = crate::SqlitePlace::default();
    let _store = store_with_policy(&place).await;
    for file in ["ajar.db", "ajar.db-wal"] {
        let mode = std::fs::metadata(place.path().with_file_name(file)).unwrap().permissions().mode() & 0o777;
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

#[tokio::test]
async fn upgrading_a_version_3_database_makes_api_principals_owners() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ajar.db");
    ajar_store::create_database_at_version(&path, 3).unwrap();
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 3);
        db.execute_batch(&format!(
            "INSERT INTO settings VALUES ('subscription', '{SUB}'), ('resource_group', 'rg'), ('location', 'local');
             INSERT INTO subscriptions VALUES ('{SUB}', 't', 1);
             INSERT INTO principals VALUES ('p-admin', 'admin', 'user', 1), ('p-join', 'agent-enrolment', 'service', 1),
                 ('p-none', 'no tokens', 'user', 1);
             INSERT INTO tokens (hash, principal_id, purpose, created_ns) VALUES
                 (x'{}', 'p-admin', 'api', 1), (x'{}', 'p-join', 'join', 1);",
            "01".repeat(32),
            "02".repeat(32)
        ))
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let assignments = store.list_role_assignments(AssignmentFilter::default()).await.unwrap();
    assert_eq!(assignments.len(), 1, "{assignments:?}");
    assert_eq!((assignments[0].principal_id.as_str(), assignments[0].role_id.as_str()), ("p-admin", OWNER_ID));
    assert!(assignments[0].scope.is_root());
    assert!(ajar_domain::access::role::is_guid(&assignments[0].id), "{}", assignments[0].id);
    // Existing tokens got IDs and names, and still work.
    let tokens = store.list_tokens(None).await.unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t.id.len() == 36 && t.id.starts_with("tok_")), "{tokens:?}");
    assert_eq!(store.principal_for_token(ADMIN_TOKEN, TokenPurpose::Api).await.unwrap().unwrap().id, "p-admin");
    assert!(store.principal_for_token(JOIN_TOKEN, TokenPurpose::Join).await.unwrap().is_some());
    // The guard holds on the upgraded database too.
    let refused = store.delete_principal("p-admin", audit(a::PRINCIPALS_DELETE, "/".into())).await;
    assert!(matches!(refused, Err(StoreError::Rejected(p)) if p.code.as_str() == "LastOwner"));
    let principals = store.list_principals().await.unwrap();
    let names: Vec<_> = principals.iter().map(|p| (p.principal.name.as_str(), p.live_tokens)).collect();
    assert_eq!(names, [("admin", 1), ("agent-enrolment", 1), ("no tokens", 0)]);
}

#[tokio::test]
async fn upgrading_a_version_4_database_keeps_when_superseded_grants_ended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ajar.db");
    ajar_store::create_database_at_version(&path, 4).unwrap();
    let vm = vm_id("rg", "vm1");
    let now = OffsetDateTime::now_utc();
    let ns = |t: OffsetDateTime| t.unix_timestamp_nanos() as i64;
    let (first, second) = (now - Duration::hours(30), now - Duration::hours(29));
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(&format!(
            "INSERT INTO access_requests (seq, id, policy_uid, policy_id, requestor, principal_id, start_ns) VALUES
                 (1, 'r1', 'u', 'p', 'alice', 'a', {}), (2, 'r2', 'u', 'p', 'bob', 'b', {});
             INSERT INTO grants (request_seq, vm_key, vm_id, vm_ord, port_ord, number, protocol, sources, sources_is_list, end_ns, status, reason) VALUES
                 (1, '{key}', '{vm}', 0, 0, 22, 'TCP', '*', 0, {}, 'Revoked', 'NewerRequestInitiated'),
                 (2, '{key}', '{vm}', 0, 0, 22, 'TCP', '*', 0, {}, 'Revoked', 'Expired');",
            ns(first),
            ns(second),
            ns(first + Duration::hours(3)),
            ns(second + Duration::hours(24)),
            key = vm.key(),
            vm = vm,
        ))
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    // The window starts after both began: the 24-hour grant reaches into it only because the longest
    // grant on record bounds how far back the query looks.
    let history = store.grants_between(now - Duration::hours(6), now, None, 10).await.unwrap();
    assert_eq!(history.spans.iter().map(|s| s.requestor.as_str()).collect::<Vec<_>>(), ["bob"]);
    let earlier = store.grants_between(now - Duration::hours(31), now, None, 10).await.unwrap();
    let alice = earlier.spans.iter().find(|s| s.requestor == "alice").unwrap();
    assert_eq!((alice.state_at(now), alice.closed()), (SpanState::Superseded, second));
}

#[tokio::test]
async fn upgrading_a_version_5_database_gives_each_policy_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ajar.db");
    ajar_store::create_database_at_version(&path, 5).unwrap();
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(&format!(
            "INSERT INTO subscriptions VALUES ('{SUB}', 't', 1);
             INSERT INTO policies (key, uid, id, subscription, rg_key, loc_key, kind, created_ns, updated_ns) VALUES
                 ('a', 'ua', '{}', '{SUB}', 'rg', 'local', NULL, 1, 1), ('b', 'ub', '{}', '{SUB}', 'rg', 'local', NULL, 1, 1);",
            policy_id("rg"),
            policy_id("rg2"),
        ))
        .unwrap();
    }
    drop(SqliteStore::open(&path).unwrap());
    let db = rusqlite::Connection::open(&path).unwrap();
    let etags: Vec<String> =
        db.prepare("SELECT etag FROM policies ORDER BY key").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(etags.len(), 2);
    assert!(etags.iter().all(|e| e.len() == 32) && etags[0] != etags[1], "{etags:?}");
}

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
    let vm: VmId = vm_id("ΑΣ", "WebΣ");
    let policy: PolicyId = policy_id("ΑΣ");
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
    let spelled = vm_id("ασ", "webσ");
    let status = store.vm_status(&spelled).await.unwrap().expect("the machine, by another spelling");
    assert_eq!(status.vm.id.to_string(), vm.to_string(), "it keeps its spelling");
    assert_eq!(status.policy.as_ref(), Some(&policy));
    assert_eq!(status.live.len(), 1, "its live grant");
    assert_eq!(store.desired_state(&spelled).await.unwrap().grants.len(), 1);
    assert!(store.get_policy(&policy_id("ασ")).await.unwrap().is_some());
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
        gateway: None,
    };
    assert_eq!(store.put_vm(again, audit(a::VM_WRITE, spelled.to_string())).await.unwrap(), ajar_store::PutOutcome::Updated);
    assert_eq!(store.get_vm(&vm).await.unwrap().unwrap().id.to_string(), vm.to_string());
}
