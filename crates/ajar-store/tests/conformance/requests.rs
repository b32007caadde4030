//! Requests for access and revokes: group commits mixing accepted and refused ones, supersede,
//! requests across policies and revokes across machines as one transaction, cuts, expiry, and the
//! activity chain over all of it.

use std::sync::Arc;
use std::time::Duration;

use ajar_domain::activity::{ActivityQuery, Outcome, actions as a};
use ajar_domain::initiate::{GrantStatus, StatusReason};
use ajar_domain::inventory::OsType;
use ajar_domain::policy::{Limits, Policy, VmPolicy, default_ports};
use ajar_domain::problem::{Field, Step};
use ajar_domain::{PolicyId, VmId};
use ajar_store::{Store, StoreError};

use crate::{Place, add_machine, add_vm, audit, caller, code, fresh, part, policy_id, refusal, steps};

fn ports() -> Vec<ajar_domain::policy::PortRule> {
    let mut ports = default_ports(OsType::Linux);
    ports.extend(default_ports(OsType::Windows));
    ports
}

/// (port, status, reason) of every grant of a policy's history, oldest request first.
async fn history(store: &dyn Store, id: &PolicyId) -> Vec<(u16, GrantStatus, StatusReason)> {
    let view = store.get_policy(id).await.unwrap().unwrap();
    view.requests.iter().flat_map(|r| &r.vms).flat_map(|v| &v.grants).map(|g| (g.number, g.status, g.reason)).collect()
}

pub async fn refused_operations_in_a_batch_change_nothing_but_are_logged(place: &dyn Place) {
    let store = fresh(place).await;
    let (id, vm) = add_machine(&*store, "rg", "vm1", default_ports(OsType::Linux)).await;
    // 60 at once, so that a backend that commits in groups mixes them: every third asks for an
    // unconfigured port.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (store, id, vm) = (Arc::clone(&store), id.clone(), vm.clone());
            tokio::spawn(async move {
                let port = if i % 3 == 0 { 80 } else { 22 };
                store.initiate(vec![part(&id, &vm, &[port], 600)], caller()).await
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
    let live = view.requests.iter().flat_map(|r| &r.vms[0].grants).filter(|g| g.status == GrantStatus::Initiated).count();
    assert_eq!(live, 1);
    let log = store.activity(ActivityQuery::default()).await.unwrap();
    let initiates: Vec<_> = log.iter().filter(|e| e.operation == a::JIT_INITIATE).collect();
    assert_eq!(initiates.len(), 60);
    assert_eq!(initiates.iter().filter(|e| e.outcome == Outcome::Succeeded).count(), 40);
    assert_eq!(store.verify_activity_chain().await.unwrap(), Ok(log.len() as u64));
}

pub async fn a_newer_request_supersedes_the_live_grant_on_its_port(place: &dyn Place) {
    let store = fresh(place).await;
    let (id, vm) = add_machine(&*store, "rg", "vm1", ports()).await;
    store.initiate(vec![part(&id, &vm, &[22, 3389], 600)], caller()).await.unwrap();
    store.initiate(vec![part(&id, &vm, &[22], 900)], caller()).await.unwrap();
    assert_eq!(
        history(&*store, &id).await,
        [
            (22, GrantStatus::Revoked, StatusReason::NewerRequestInitiated),
            (3389, GrantStatus::Initiated, StatusReason::UserRequested),
            (22, GrantStatus::Initiated, StatusReason::UserRequested),
        ]
    );
    let log = store.activity(ActivityQuery::default()).await.unwrap();
    assert!(log[0].details.contains(&("superseded".to_owned(), "1".to_owned())), "{:?}", log[0].details);
    let desired = store.desired_state(&vm).await.unwrap();
    assert_eq!(desired.grants.len(), 2, "one grant per port");
}

pub async fn a_request_across_policies_is_granted_whole_or_not_at_all(place: &dyn Place) {
    let store = fresh(place).await;
    let (p1, vm1) = add_machine(&*store, "rg1", "vm1", ports()).await;
    let (p2, vm2) = add_machine(&*store, "rg2", "vm2", ports()).await;
    let before = store.activity(ActivityQuery::default()).await.unwrap().len();
    // The second policy's machine asks for a port it does not have: neither is opened.
    let p = refusal(store.initiate(vec![part(&p1, &vm1, &[22], 600), part(&p2, &vm2, &[80], 600)], caller()).await);
    assert_eq!(p.code.as_str(), "InvalidInitiateInput");
    assert_eq!(p.machine.as_deref(), Some(&vm2), "the refusal names the machine refused");
    assert_eq!(
        steps(&p),
        [Step::Field(Field::VirtualMachines), Step::At(0), Step::Field(Field::Ports), Step::At(0), Step::Field(Field::Number)]
    );
    assert!(history(&*store, &p1).await.is_empty() && history(&*store, &p2).await.is_empty());
    assert!(store.desired_state(&vm1).await.unwrap().grants.is_empty());
    let log = store.activity(ActivityQuery::default()).await.unwrap();
    assert_eq!(log.len(), before + 2, "a failed entry for each policy's part");
    assert!(log[..2].iter().all(|e| e.outcome == Outcome::Failed { code: "InvalidInitiateInput".into() }));
    // A machine named in two parts, and a policy that does not exist, refuse the whole request too.
    let p = refusal(store.initiate(vec![part(&p1, &vm1, &[22], 600), part(&p1, &vm1, &[3389], 600)], caller()).await);
    assert!(p.message.contains("named twice"), "{}", p.message);
    let missing = crate::policy_named("rg1", "missing");
    assert_eq!(code(store.initiate(vec![part(&p1, &vm1, &[22], 600), part(&missing, &vm1, &[22], 600)], caller()).await), "PolicyNotFound");
    assert!(history(&*store, &p1).await.is_empty());
    // Both allowed: both granted, a request each.
    let granted = store.initiate(vec![part(&p1, &vm1, &[22], 600), part(&p2, &vm2, &[3389], 600)], caller()).await.unwrap();
    assert_eq!(granted.iter().map(|r| r.policy.clone()).collect::<Vec<_>>(), [p1.clone(), p2.clone()]);
    assert_eq!(history(&*store, &p1).await.len(), 1);
    assert_eq!(store.desired_state(&vm2).await.unwrap().grants.iter().map(|g| g.port).collect::<Vec<_>>(), [3389]);
}

pub async fn a_revoke_of_several_machines_is_whole_or_nothing(place: &dyn Place) {
    let store = fresh(place).await;
    let vm1 = add_vm(&*store, "rg", "vm1").await;
    let vm2 = add_vm(&*store, "rg", "vm2").await;
    let outside = add_vm(&*store, "rg", "vm3").await;
    let id = policy_id("rg");
    let p = Policy {
        id: id.clone(),
        kind: None,
        vms: [&vm1, &vm2].iter().map(|vm| VmPolicy { vm: (*vm).clone(), ports: ports(), public_ip: None }).collect(),
        cut_connections_on_revoke: false,
    };
    store.put_policy(p, None, Limits::default(), audit(a::JIT_WRITE, id.to_string(), Vec::new())).await.unwrap();
    store.initiate(vec![part(&id, &vm1, &[22], 600)], caller()).await.unwrap();
    store.initiate(vec![part(&id, &vm2, &[22], 600)], caller()).await.unwrap();
    let revoke = |targets: Vec<(VmId, Vec<u16>)>| store.revoke(&id, targets, audit(a::JIT_REVOKE, id.to_string(), Vec::new()));
    let live = async |vm: &VmId| store.desired_state(vm).await.unwrap().grants.len();

    let p = refusal(revoke(vec![(vm1.clone(), vec![22]), (outside.clone(), vec![22])]).await);
    assert_eq!(
        (p.machine.as_deref(), steps(&p)),
        (Some(&outside), vec![Step::Field(Field::VirtualMachines), Step::At(1), Step::Field(Field::Id)])
    );
    let p = refusal(revoke(vec![(vm1.clone(), vec![22]), (vm2.clone(), vec![80])]).await);
    assert_eq!(p.machine.as_deref(), Some(&vm2));
    assert_eq!(
        steps(&p),
        [Step::Field(Field::VirtualMachines), Step::At(1), Step::Field(Field::Ports), Step::At(0), Step::Field(Field::Number)]
    );
    assert_eq!((live(&vm1).await, live(&vm2).await), (1, 1), "a refused revoke ends nothing");
    assert_eq!(revoke(vec![(vm1.clone(), vec![22]), (vm2.clone(), vec![22, 3389])]).await.unwrap(), 2);
    assert_eq!((live(&vm1).await, live(&vm2).await), (0, 0));
    assert_eq!(history(&*store, &id).await, [(22, GrantStatus::Revoked, StatusReason::UserRequested); 2]);
    assert_eq!(revoke(vec![(vm1.clone(), vec![22])]).await.unwrap(), 0, "nothing left to end");
}

pub async fn a_revoke_under_a_cutting_policy_hands_the_agent_its_cuts(place: &dyn Place) {
    let store = fresh(place).await;
    let vm = add_vm(&*store, "rg", "vm1").await;
    let id = policy_id("rg");
    for cut in [false, true] {
        let p = Policy {
            id: id.clone(),
            kind: None,
            vms: vec![VmPolicy { vm: vm.clone(), ports: ports(), public_ip: None }],
            cut_connections_on_revoke: cut,
        };
        store.put_policy(p, None, Limits::default(), audit(a::JIT_WRITE, id.to_string(), Vec::new())).await.unwrap();
        let request = store.initiate(vec![part(&id, &vm, &[22], 600)], caller()).await.unwrap();
        store.revoke(&id, vec![(vm.clone(), vec![22])], audit(a::JIT_REVOKE, id.to_string(), Vec::new())).await.unwrap();
        let cuts = store.desired_state(&vm).await.unwrap().cuts;
        let wanted: Vec<String> = if cut { vec![request[0].id.clone()] } else { Vec::new() };
        assert_eq!(cuts.iter().map(|c| c.request_id.clone()).collect::<Vec<_>>(), wanted, "cut connections: {cut}");
        assert!(cuts.iter().all(|c| c.port == 22 && !c.id.is_empty()));
    }
}

pub async fn grants_expire_at_their_end(place: &dyn Place) {
    let store = fresh(place).await;
    let (id, vm) = add_machine(&*store, "rg", "vm1", ports()).await;
    store.initiate(vec![part(&id, &vm, &[22], 1)], caller()).await.unwrap();
    store.initiate(vec![part(&id, &vm, &[3389], 600)], caller()).await.unwrap();
    let soonest = store.next_expiry().await.unwrap().unwrap();
    // Bounded: the grant ends a second after it began.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(time::OffsetDateTime::now_utc() >= soonest);
    // Status follows the clock before the bookkeeping does.
    let status = store.vm_status(&vm).await.unwrap().unwrap();
    assert_eq!(status.live.iter().map(|(_, g)| g.number).collect::<Vec<_>>(), [3389]);
    assert_eq!(store.desired_state(&vm).await.unwrap().grants.len(), 1);
    assert_eq!(store.expire_due().await.unwrap(), 1);
    assert_eq!(store.expire_due().await.unwrap(), 0, "expiring twice changes nothing");
    assert_eq!(
        history(&*store, &id).await,
        [(22, GrantStatus::Revoked, StatusReason::Expired), (3389, GrantStatus::Initiated, StatusReason::UserRequested)]
    );
    assert!(store.next_expiry().await.unwrap().is_some_and(|next| next > soonest));
}

pub async fn the_activity_chain_covers_every_entry(place: &dyn Place) {
    let store = fresh(place).await;
    let (id, vm) = add_machine(&*store, "rg", "vm1", ports()).await;
    store.initiate(vec![part(&id, &vm, &[22], 600)], caller()).await.unwrap();
    assert!(store.initiate(vec![part(&id, &vm, &[80], 600)], caller()).await.is_err());
    store
        .record(audit(a::AUTHENTICATE, "/".into(), Vec::new()), Outcome::Failed { code: "InvalidAuthenticationToken".into() })
        .await
        .unwrap();
    store.revoke(&id, vec![(vm.clone(), vec![22])], audit(a::JIT_REVOKE, id.to_string(), Vec::new())).await.unwrap();
    let entries = store.activity(ActivityQuery::default()).await.unwrap().len() as u64;
    assert_eq!(entries, 6, "machine, policy, initiate, refused initiate, refused sign-in, revoke");
    assert_eq!(store.verify_activity_chain().await.unwrap(), Ok(entries));
    // Still whole after a restart, and what comes after links on.
    drop(store);
    let store = place.open().await;
    store
        .record(audit(a::AUTHENTICATE, "/".into(), Vec::new()), Outcome::Failed { code: "InvalidAuthenticationToken".into() })
        .await
        .unwrap();
    assert_eq!(store.verify_activity_chain().await.unwrap(), Ok(entries + 1));
}
