//! The queries behind the dashboard's activity log, timeline and 7-day chart: the activity log's
//! filters (operation, result, paging, scopes) done in the query, grants over a window of time with
//! their revocation times, approved requests per day.
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use ajar_domain::access::Scope;
use ajar_domain::activity::{ActivityEntry, ActivityQuery, Audit, Outcome, ResultKind, actions as a};
use ajar_domain::history::{GrantHistory, SpanState};
use ajar_domain::initiate::{Caller, EndSpec, InitiateDraft, PortAsk, VmAsk};
use ajar_domain::inventory::OsType;
use ajar_domain::policy::default_ports;
use ajar_domain::status::RECENT_DAYS;
use ajar_domain::{AccessDuration, PolicyId, VmId};
use ajar_store::{InitiatePart, Store};

use crate::{Place, SUB, fresh};

fn audit(operation: &'static str, resource: &str, subjects: Vec<String>) -> Audit {
    Audit {
        operation,
        subscription: Some(SUB.into()),
        resource_group: None,
        resource_id: resource.to_owned(),
        caller: "tester".into(),
        caller_addr: None,
        subjects,
        details: Vec::new(),
    }
}

fn scope(s: &str) -> Scope {
    s.parse().unwrap()
}

fn caller() -> Caller {
    Caller { principal_id: "p".into(), name: "alice".into(), addr: "10.0.0.1".parse().unwrap() }
}

/// A machine in resource group `rg`, in a policy of that group with the Linux and Windows defaults (22,
/// 3389; 3 hours).
async fn add_machine(store: &dyn Store, rg: &str, name: &str) -> (PolicyId, VmId) {
    let mut ports = default_ports(OsType::Linux);
    ports.extend(default_ports(OsType::Windows));
    crate::add_machine(store, rg, name, ports).await
}

async fn open(store: &dyn Store, policy: &PolicyId, vm: &VmId, port: u16, seconds: i64) -> Result<(), ajar_store::StoreError> {
    let draft = InitiateDraft {
        vms: vec![VmAsk {
            vm: vm.clone(),
            ports: vec![PortAsk { number: port, end: EndSpec::For(AccessDuration::from_seconds(seconds)), sources: None }],
        }],
        justification: Some("maintenance".into()),
    };
    let audit = audit(a::JIT_INITIATE, &policy.to_string(), vec![vm.key()]);
    store.initiate(vec![InitiatePart { policy: policy.clone(), draft, audit }], caller()).await.map(|_| ())
}

fn ops(entries: &[ActivityEntry]) -> Vec<(&str, &str)> {
    entries.iter().map(|e| (e.operation.as_str(), e.outcome.as_str())).collect()
}

pub async fn the_activity_log_is_filtered_and_paged_in_the_query(place: &dyn Place) {
    let store = fresh(place).await;
    let (policy, vm1) = add_machine(&*store, "rg", "vm1").await;
    let (_, vm2) = add_machine(&*store, "Ünïcode", "vm2").await;
    open(&*store, &policy, &vm1, 22, 600).await.unwrap();
    assert!(open(&*store, &policy, &vm1, 80, 600).await.is_err(), "port 80 is not in the policy");
    store.record(audit(a::ACTIVITY_READ, "/", Vec::new()), Outcome::Failed { code: "AuthorizationFailed".into() }).await.unwrap();
    let all = store.activity(ActivityQuery::default()).await.unwrap();
    assert_eq!(all.len(), 7, "{:?}", ops(&all));

    let q = |f: fn(&mut ActivityQuery)| {
        let mut q = ActivityQuery::default();
        f(&mut q);
        let store = Arc::clone(&store);
        async move { store.activity(q).await.unwrap() }
    };
    let initiates = q(|q| q.operation = Some(a::JIT_INITIATE.into())).await;
    assert_eq!(ops(&initiates), [(a::JIT_INITIATE, "Failed"), (a::JIT_INITIATE, "Succeeded")], "newest first");
    let failed = q(|q| q.result = Some(ResultKind::Failed)).await;
    assert_eq!(ops(&failed), [(a::ACTIVITY_READ, "Failed"), (a::JIT_INITIATE, "Failed")]);
    let succeeded = q(|q| q.result = Some(ResultKind::Succeeded)).await;
    assert_eq!(succeeded.len() + failed.len(), all.len());
    assert!(q(|q| q.operation = Some("Microsoft.Security/locations/jitNetworkAccessPolicies/initiate".into())).await.is_empty(), "exact");

    // Pages of two, each starting before the last entry of the one before, make up the whole log.
    let mut paged: Vec<i64> = Vec::new();
    let mut before = None;
    for _ in 0..10 {
        let page = store.activity(ActivityQuery { before, limit: Some(2), ..ActivityQuery::default() }).await.unwrap();
        paged.extend(page.iter().map(|e| e.seq));
        match page.last() {
            Some(last) if page.len() == 2 => before = Some(last.seq),
            _ => break,
        }
    }
    assert_eq!(paged, all.iter().map(|e| e.seq).collect::<Vec<_>>());
    // A stretch between two entries, neither included.
    let stretch =
        store.activity(ActivityQuery { before: Some(all[1].seq), after: Some(all[4].seq), ..ActivityQuery::default() }).await.unwrap();
    assert_eq!(stretch, all[2..4]);

    // Scopes: the entries about resources inside them, whatever the case of the names.
    let within = |scopes: Vec<Scope>| store.activity(ActivityQuery { within: Some(scopes), ..ActivityQuery::default() });
    let in_rg = within(vec![scope(&format!("/subscriptions/{SUB}/resourceGroups/RG"))]).await.unwrap();
    assert_eq!(
        ops(&in_rg),
        [(a::JIT_INITIATE, "Failed"), (a::JIT_INITIATE, "Succeeded"), (a::JIT_WRITE, "Succeeded"), (a::VM_WRITE, "Succeeded")]
    );
    let unicode = within(vec![scope(&format!("/subscriptions/{SUB}/resourceGroups/üNÏCODE"))]).await.unwrap();
    assert_eq!(ops(&unicode), [(a::JIT_WRITE, "Succeeded"), (a::VM_WRITE, "Succeeded")], "names compare as the domain's keys do");
    let one_vm = within(vec![Scope::from(&vm1)]).await.unwrap();
    assert_eq!(ops(&one_vm), [(a::VM_WRITE, "Succeeded")], "a machine's scope holds entries about the machine itself");
    let not_a_prefix = within(vec![scope(&format!("/subscriptions/{SUB}/resourceGroups/r"))]).await.unwrap();
    assert!(not_a_prefix.is_empty(), "whole segments only");
    assert!(within(Vec::new()).await.unwrap().is_empty(), "no scope, nothing");
    assert_eq!(within(vec![Scope::root()]).await.unwrap().len(), all.len());
    let both = within(vec![
        scope(&format!("/subscriptions/{SUB}/resourceGroups/rg")),
        scope(&format!("/subscriptions/{SUB}/resourceGroups/ünïcode")),
    ])
    .await
    .unwrap();
    assert_eq!(both.len(), 6, "all but the refusal at the root");

    // Filters combine: a machine's failed initiates, inside its group.
    let combined = store
        .activity(ActivityQuery {
            resource_key: Some(vm1.key()),
            result: Some(ResultKind::Failed),
            within: Some(vec![scope(&format!("/subscriptions/{SUB}/resourceGroups/rg"))]),
            ..ActivityQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ops(&combined), [(a::JIT_INITIATE, "Failed")]);
    assert_eq!(store.activity(ActivityQuery { resource_key: Some(vm2.key()), ..ActivityQuery::default() }).await.unwrap().len(), 2);
}

fn lanes(history: &GrantHistory) -> Vec<(String, u16)> {
    history.spans.iter().map(|s| (s.vm.name.to_string(), s.grant.number)).collect()
}

pub async fn grants_over_a_window_with_when_they_ended(place: &dyn Place) {
    let store = fresh(place).await;
    let (policy, vm1) = add_machine(&*store, "rg", "vm1").await;
    let (other_policy, vm2) = add_machine(&*store, "rg2", "vm2").await;
    let before = OffsetDateTime::now_utc();
    open(&*store, &policy, &vm1, 22, 600).await.unwrap();
    open(&*store, &policy, &vm1, 22, 3600).await.unwrap();
    open(&*store, &policy, &vm1, 3389, 1200).await.unwrap();
    open(&*store, &other_policy, &vm2, 22, 3 * 3600).await.unwrap();
    assert_eq!(
        store.revoke(&policy, vec![(vm1.clone(), vec![3389])], audit(a::JIT_REVOKE, &policy.to_string(), vec![vm1.key()])).await.unwrap(),
        1
    );
    let after = OffsetDateTime::now_utc();

    let all = store.grants_between(before - Duration::hours(1), after + Duration::hours(1), None, 100).await.unwrap();
    assert!(!all.cut);
    assert_eq!(lanes(&all), [("vm2".into(), 22), ("vm1".into(), 3389), ("vm1".into(), 22), ("vm1".into(), 22)], "newest start first");
    let [vm2_22, vm1_3389, newer_22, older_22] = &all.spans[..] else { panic!("{all:?}") };
    assert_eq!(vm2_22.state_at(after), SpanState::Live);
    assert_eq!((vm2_22.requestor.as_str(), vm2_22.justification.as_deref()), ("alice", Some("maintenance")));
    assert_eq!(vm1_3389.state_at(after), SpanState::Revoked);
    let revoked = vm1_3389.revoked.expect("the revocation time is kept");
    assert!(vm1_3389.start <= revoked && revoked <= after && vm1_3389.closed() == revoked, "{vm1_3389:?}");
    assert_eq!(older_22.state_at(after), SpanState::Superseded);
    assert_eq!(older_22.closed(), newer_22.start, "a superseded grant ends when the newer one starts");
    assert_eq!(newer_22.state_at(after), SpanState::Live);

    // A window after the revocation and the supersession, before the live ones end: only those open in it.
    let later = store.grants_between(after + Duration::minutes(1), after + Duration::minutes(2), None, 100).await.unwrap();
    assert_eq!(lanes(&later), [("vm2".into(), 22), ("vm1".into(), 22)]);
    let past_the_end = store.grants_between(after + Duration::hours(2), after + Duration::hours(4), None, 100).await.unwrap();
    assert_eq!(lanes(&past_the_end), [("vm2".into(), 22)], "the one of three hours is still open; the one of one hour is not");
    assert!(store.grants_between(before - Duration::hours(2), before - Duration::hours(1), None, 100).await.unwrap().spans.is_empty());

    // Bounded: the newest, and word that there were more.
    let cut = store.grants_between(before - Duration::hours(1), after + Duration::hours(1), None, 2).await.unwrap();
    assert!(cut.cut);
    assert_eq!(lanes(&cut), [("vm2".into(), 22), ("vm1".into(), 3389)]);
    // Only machines inside the scopes asked for.
    let window = (before - Duration::hours(1), after + Duration::hours(1));
    let rg2 = store
        .grants_between(window.0, window.1, Some(vec![scope(&format!("/subscriptions/{SUB}/resourceGroups/RG2"))]), 100)
        .await
        .unwrap();
    assert_eq!(lanes(&rg2), [("vm2".into(), 22)]);
    let one = store.grants_between(window.0, window.1, Some(vec![Scope::from(&vm1)]), 100).await.unwrap();
    assert_eq!(one.spans.len(), 3);
    assert!(store.grants_between(window.0, window.1, Some(Vec::new()), 100).await.unwrap().spans.is_empty());
}

pub async fn approved_requests_are_counted_per_day_and_sum_to_the_week(place: &dyn Place) {
    let store = fresh(place).await;
    let (policy, vm1) = add_machine(&*store, "rg", "vm1").await;
    let fresh = store.vm_status(&vm1).await.unwrap().unwrap();
    assert_eq!(fresh.requests_by_day.map(|(_, n)| n), [0; RECENT_DAYS]);
    open(&*store, &policy, &vm1, 22, 600).await.unwrap();
    open(&*store, &policy, &vm1, 3389, 600).await.unwrap();
    assert!(open(&*store, &policy, &vm1, 80, 600).await.is_err(), "a refused request is not approved");
    let status = store.vm_status(&vm1).await.unwrap().unwrap();
    let today = OffsetDateTime::now_utc().date();
    assert_eq!(status.requests_by_day[RECENT_DAYS - 1], (today, 2));
    assert_eq!(status.requests_last_7_days(), 2);
    assert_eq!(status.requests_by_day[0].0, today - Duration::days(RECENT_DAYS as i64 - 1));
}
