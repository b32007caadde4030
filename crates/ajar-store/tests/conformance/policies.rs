//! Policy writes: versions and preconditions, refusals with their targets, one policy per machine,
//! tightening, deleting and enabling.

use ajar_domain::activity::{ActivityQuery, Outcome, actions as a};
use ajar_domain::initiate::{GrantStatus, StatusReason};
use ajar_domain::inventory::OsType;
use ajar_domain::plans::Precondition;
use ajar_domain::policy::{Limits, Policy, PortRule, Protocol, VmPolicy, default_ports};
use ajar_domain::problem::{Field, Step};
use ajar_domain::{AccessDuration, PolicyId, SourcePrefix, Sources, VmId};
use ajar_store::{PutOutcome, Store, StoreResult};

use crate::{Place, add_vm, audit, caller, code, fresh, part, policy_id, refusal, steps, vm_id};

fn policy(id: &PolicyId, vms: &[&VmId]) -> Policy {
    let mut ports = default_ports(OsType::Linux);
    ports.extend(default_ports(OsType::Windows));
    Policy {
        id: id.clone(),
        kind: Some("Basic".into()),
        vms: vms.iter().map(|vm| VmPolicy { vm: (*vm).clone(), ports: ports.clone(), public_ip: None }).collect(),
        cut_connections_on_revoke: false,
    }
}

async fn put(store: &dyn Store, p: Policy, precondition: Option<Precondition>) -> StoreResult<(PutOutcome, ajar_store::PolicyView)> {
    let id = p.id.to_string();
    store.put_policy(p, precondition, Limits::default(), audit(a::JIT_WRITE, id, Vec::new())).await
}

const PROPERTIES: Step = Step::Field(Field::Properties);
const VMS: Step = Step::Field(Field::VirtualMachines);
const ID: Step = Step::Field(Field::Id);
const PORTS: Step = Step::Field(Field::Ports);

pub async fn a_policy_write_is_versioned_and_conditional(place: &dyn Place) {
    let store = fresh(place).await;
    let vm = add_vm(&*store, "rg", "vm1").await;
    let id = policy_id("rg");
    assert_eq!(code(put(&*store, policy(&id, &[&vm]), Some(Precondition::Exists)).await), "PreconditionFailed", "If-Match: * on nothing");
    let (outcome, first) = put(&*store, policy(&id, &[&vm]), Some(Precondition::Absent)).await.unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(store.get_policy(&id).await.unwrap().unwrap().etag, first.etag);
    assert_eq!(
        code(put(&*store, policy(&id, &[&vm]), Some(Precondition::Absent)).await),
        "PreconditionFailed",
        "If-None-Match: * on a policy"
    );
    let (outcome, second) = put(&*store, policy(&id, &[&vm]), None).await.unwrap();
    assert_eq!(outcome, PutOutcome::Updated);
    assert_ne!(second.etag, first.etag, "every version has its own tag");

    // An editor who read the first version cannot overwrite the second.
    let mut stale = policy(&id, &[&vm]);
    stale.vms[0].ports.truncate(1);
    let before = store.activity(ActivityQuery::default()).await.unwrap().len();
    let p = refusal(put(&*store, stale.clone(), Some(Precondition::OneOf(vec![first.etag.clone()]))).await);
    assert_eq!(p.code.as_str(), "PreconditionFailed");
    assert!(p.message.contains(&second.etag), "{}", p.message);
    let now = store.get_policy(&id).await.unwrap().unwrap();
    assert_eq!((now.etag.as_str(), now.policy.vms[0].ports.len()), (second.etag.as_str(), 2), "nothing changed");
    let log = store.activity(ActivityQuery::default()).await.unwrap();
    assert_eq!(log.len(), before + 1);
    assert_eq!(log[0].outcome, Outcome::Failed { code: "PreconditionFailed".into() });
    let (_, third) = put(&*store, stale, Some(Precondition::OneOf(vec!["other".into(), second.etag.clone()]))).await.unwrap();
    assert_eq!(third.policy.vms[0].ports.len(), 1);
    // Deleting is conditional the same way.
    let delete = |p: Option<Precondition>| store.delete_policy(&id, p, audit(a::JIT_DELETE, id.to_string(), Vec::new()));
    assert_eq!(code(delete(Some(Precondition::OneOf(vec![second.etag.clone()]))).await), "PreconditionFailed");
    assert!(store.get_policy(&id).await.unwrap().is_some());
    assert!(delete(Some(Precondition::OneOf(vec![third.etag.clone()]))).await.unwrap().is_some());
    assert!(delete(None).await.unwrap().is_none(), "a second delete finds nothing");
}

pub async fn a_refused_policy_write_names_its_field_and_changes_nothing(place: &dyn Place) {
    let store = fresh(place).await;
    let vm1 = add_vm(&*store, "rg", "vm1").await;
    let absent = vm_id("rg", "absent");
    let id = policy_id("rg");
    let p = refusal(put(&*store, policy(&id, &[&vm1, &absent]), None).await);
    assert_eq!(p.code.as_str(), "VirtualMachineNotFound");
    assert_eq!(steps(&p), [PROPERTIES, VMS, Step::At(1), ID]);
    assert_eq!(p.machine.as_deref(), Some(&absent));
    let mut too_long = policy(&id, &[&vm1]);
    too_long.vms[0].ports[1].max_duration = AccessDuration::from_seconds(2 * 86_400);
    let p = refusal(put(&*store, too_long, None).await);
    assert_eq!(p.code.as_str(), "InvalidPolicy");
    assert_eq!(steps(&p), [PROPERTIES, VMS, Step::At(0), PORTS, Step::At(1), Step::Field(Field::MaxRequestAccessDuration)]);
    assert!(store.get_policy(&id).await.unwrap().is_none(), "nothing was stored");
    let elsewhere: PolicyId = "/subscriptions/5b1c4a0e-6a0e-4d8e-9a53-0d3f1f6b1e22/resourceGroups/rg/providers/Microsoft.Security/locations/local/jitNetworkAccessPolicies/default".parse()
    .unwrap();
    assert_eq!(code(put(&*store, policy(&elsewhere, &[&vm1]), None).await), "SubscriptionNotFound");
    let log = store.activity(ActivityQuery::default()).await.unwrap();
    assert!(log.iter().take(3).all(|e| e.outcome != Outcome::Succeeded), "each refusal is on record");
    assert!(log[2].details.iter().any(|(k, v)| k == "refusedMachine" && *v == absent.to_string()), "{:?}", log[2].details);
}

pub async fn a_machine_is_in_one_policy_at_most(place: &dyn Place) {
    let store = fresh(place).await;
    let vm = add_vm(&*store, "rg", "vm1").await;
    put(&*store, policy(&policy_id("rg"), &[&vm]), None).await.unwrap();
    let other = crate::policy_named("rg", "other");
    for spelling in [vm.clone(), vm_id("RG", "VM1")] {
        let p = refusal(put(&*store, policy(&other, &[&spelling]), None).await);
        assert_eq!(p.code.as_str(), "VirtualMachineInAnotherPolicy", "{spelling}");
        assert_eq!(steps(&p), [PROPERTIES, VMS, Step::At(0), ID]);
        assert!(p.machine.as_deref().is_some_and(|m| *m == vm));
    }
    // Listed twice in one policy, in any case.
    let twice: VmId = vm_id("rg", "VM1");
    let p = refusal(put(&*store, policy(&policy_id("rg"), &[&vm, &twice]), None).await);
    assert_eq!((p.code.as_str(), steps(&p)), ("InvalidPolicy", vec![PROPERTIES, VMS, Step::At(1), ID]));
}

pub async fn tightening_a_policy_revokes_what_it_no_longer_allows(place: &dyn Place) {
    let store = fresh(place).await;
    let vm = add_vm(&*store, "rg", "vm1").await;
    let id = policy_id("rg");
    put(&*store, policy(&id, &[&vm]), None).await.unwrap();
    store.initiate(vec![part(&id, &vm, &[22, 3389], 3600)], caller()).await.unwrap();
    // 22 may now be asked for only from 192.168.0.0/16: the grant from the caller's 10.0.0.1 ends.
    let mut tighter = policy(&id, &[&vm]);
    tighter.vms[0].ports[0] = PortRule {
        number: 22,
        protocol: Protocol::Tcp,
        sources: Sources::One("192.168.0.0/16".parse::<SourcePrefix>().unwrap()),
        max_duration: AccessDuration::from_seconds(3 * 3600),
    };
    let (_, view) = put(&*store, tighter, None).await.unwrap();
    let grants: Vec<_> = view.requests[0].vms[0].grants.iter().map(|g| (g.number, g.status, g.reason)).collect();
    assert_eq!(
        grants,
        [(22, GrantStatus::Revoked, StatusReason::UserRequested), (3389, GrantStatus::Initiated, StatusReason::UserRequested)]
    );
    let log = store.activity(ActivityQuery::default()).await.unwrap();
    assert!(log[0].details.contains(&("revokedGrants".to_owned(), "1".to_owned())), "{:?}", log[0].details);
    let desired = store.desired_state(&vm).await.unwrap();
    assert_eq!(desired.grants.iter().map(|g| g.port).collect::<Vec<_>>(), [3389]);
}

pub async fn deleting_a_policy_ends_its_grants(place: &dyn Place) {
    let store = fresh(place).await;
    let vm = add_vm(&*store, "rg", "vm1").await;
    let id = policy_id("rg");
    put(&*store, policy(&id, &[&vm]), None).await.unwrap();
    store.initiate(vec![part(&id, &vm, &[22], 3600)], caller()).await.unwrap();
    let deleted = store.delete_policy(&id, None, audit(a::JIT_DELETE, id.to_string(), Vec::new())).await.unwrap();
    assert_eq!(deleted.map(|p| p.vms.len()), Some(1));
    let status = store.vm_status(&vm).await.unwrap().unwrap();
    assert!(status.live.is_empty() && status.policy.is_none());
    assert!(store.desired_state(&vm).await.unwrap().grants.is_empty());
    // The same name again starts with no history.
    let (_, again) = put(&*store, policy(&id, &[&vm]), None).await.unwrap();
    assert!(again.requests.is_empty());
}

pub async fn enabling_is_all_or_none(place: &dyn Place) {
    let store = fresh(place).await;
    let vm1 = add_vm(&*store, "rg", "vm1").await;
    let vm2 = add_vm(&*store, "rg2", "vm2").await;
    let absent = vm_id("rg", "absent");
    let enable = |vms: Vec<VmId>, ports: Option<Vec<PortRule>>| {
        store.enable(
            vms,
            "default".parse().unwrap(),
            ports,
            Limits::default(),
            audit(a::JIT_WRITE, "/ajar/v1/jit/enable".into(), Vec::new()),
        )
    };
    let p = refusal(enable(vec![vm1.clone(), absent.clone()], None).await);
    assert_eq!((p.code.as_str(), steps(&p)), ("VirtualMachineNotFound", vec![VMS, Step::At(1)]));
    assert!(store.get_policy(&policy_id("rg")).await.unwrap().is_none(), "nothing was written");
    let mut bad = default_ports(OsType::Linux);
    bad[0].max_duration = AccessDuration::from_seconds(60);
    let p = refusal(enable(vec![vm1.clone(), vm2.clone()], Some(bad)).await);
    assert_eq!(steps(&p), [PORTS, Step::At(0), Step::Field(Field::MaxRequestAccessDuration)], "the body's own port");
    let views = enable(vec![vm1.clone(), vm2.clone()], None).await.unwrap();
    let mut written: Vec<(String, Vec<u16>)> =
        views.iter().map(|v| (v.policy.id.resource_group.to_string(), v.policy.vms[0].ports.iter().map(|r| r.number).collect())).collect();
    written.sort();
    assert_eq!(written, [("rg".to_owned(), vec![22]), ("rg2".to_owned(), vec![22])], "each in its group's policy, with the defaults");
    let vm3 = add_vm(&*store, "rg", "vm3").await;
    let p = refusal(enable(vec![vm3.clone(), vm1.clone()], None).await);
    assert_eq!((p.code.as_str(), steps(&p)), ("VirtualMachineInAnotherPolicy", vec![VMS, Step::At(1)]));
    assert!(store.get_policy(&policy_id("rg")).await.unwrap().unwrap().policy.vm(&vm3).is_none());
    // A machine joins the policy its group already has.
    let views = enable(vec![vm3.clone()], None).await.unwrap();
    assert_eq!(views[0].policy.vms.len(), 2);
}
