//! First start, machines, lists by scope and state, agents and what they must enforce.

use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::actions as a;
use ajar_domain::ids::Scope;
use ajar_domain::inventory::{EnforcementPoint, OsType, Vm};
use ajar_domain::policy::{Limits, Policy, VmPolicy, default_ports};
use ajar_domain::status::jit_state;
use ajar_store::{AgentReport, BootstrapPlan, JitStateFilter, ListQuery, NewAgent, PageRequest, PutOutcome, Subscription};

use crate::{Place, SUB, add_machine, add_vm, audit, caller, code, fresh, part, policy_named, vm_id};

fn whole_subscription() -> Scope {
    Scope { subscription: SUB.parse().unwrap(), resource_group: None, location: None }
}

fn query(within: Option<Vec<AccessScope>>, size: usize, after: Option<String>) -> ListQuery {
    ListQuery { scope: whole_subscription(), within, page: PageRequest { after, size } }
}

fn rg_scope(rg: &str) -> AccessScope {
    AccessScope::resource_group_scope(&SUB.parse().unwrap(), &rg.parse().unwrap())
}

pub async fn bootstrap_happens_once(place: &dyn Place) {
    let store = place.open().await;
    assert_eq!(store.defaults().await.unwrap(), None);
    drop(store);
    let store = fresh(place).await;
    let defaults = store.defaults().await.unwrap().unwrap();
    assert_eq!((defaults.subscription.as_str(), defaults.resource_group.as_str(), defaults.location.as_str()), (SUB, "rg", "local"));
    let again = BootstrapPlan {
        subscription: Subscription { id: SUB.parse().unwrap(), display_name: "again".into() },
        resource_group: "other".parse().unwrap(),
        location: "local".parse().unwrap(),
        admin_name: "admin2".into(),
        admin_token_hash: [9; 32],
        join_token_hash: [8; 32],
    };
    assert_eq!(code(store.bootstrap(again).await), "Conflict");
    assert_eq!(store.subscriptions().await.unwrap().len(), 1);
    assert!(store.principal_for_token([9; 32], ajar_store::TokenPurpose::Api).await.unwrap().is_none(), "nothing of it was kept");
}

fn linux(id: &ajar_domain::VmId, location: &str) -> Vm {
    Vm {
        id: id.clone(),
        location: location.parse().unwrap(),
        os: OsType::Linux,
        private_addresses: vec![],
        enforcement: EnforcementPoint::None,
        gateway: None,
    }
}

pub async fn machines_are_put_read_moved_and_deleted(place: &dyn Place) {
    let store = fresh(place).await;
    let id = vm_id("rg", "web1");
    let put = |vm: Vm| store.put_vm(vm, audit(a::VM_WRITE, id.to_string(), Vec::new()));
    assert_eq!(put(linux(&id, "local")).await.unwrap(), PutOutcome::Created);
    let mut with_address = linux(&id, "local");
    with_address.private_addresses = vec!["10.0.0.4".parse().unwrap()];
    assert_eq!(put(with_address.clone()).await.unwrap(), PutOutcome::Updated);
    assert_eq!(store.get_vm(&id).await.unwrap(), Some(with_address));
    let elsewhere = "/subscriptions/5b1c4a0e-6a0e-4d8e-9a53-0d3f1f6b1e22/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/x";
    assert_eq!(code(put(linux(&elsewhere.parse().unwrap(), "local")).await), "SubscriptionNotFound");
    // In a policy, it keeps the policy's location and cannot be deleted.
    let policy = Policy {
        id: policy_named("rg", "default"),
        kind: None,
        vms: vec![VmPolicy { vm: id.clone(), ports: default_ports(OsType::Linux), public_ip: None }],
        cut_connections_on_revoke: false,
    };
    store.put_policy(policy.clone(), None, Limits::default(), audit(a::JIT_WRITE, policy.id.to_string(), Vec::new())).await.unwrap();
    match store.put_vm(linux(&id, "westeurope"), audit(a::VM_WRITE, id.to_string(), Vec::new())).await {
        Err(ajar_store::StoreError::Rejected(p)) => {
            assert_eq!(p.code.as_str(), "InvalidVirtualMachine");
            assert_eq!(p.machine.as_deref(), Some(&id));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(code(store.delete_vm(&id, audit(a::VM_DELETE, id.to_string(), Vec::new())).await), "VirtualMachineInUse");
    store.delete_policy(&policy.id, None, audit(a::JIT_DELETE, policy.id.to_string(), Vec::new())).await.unwrap();
    assert!(store.delete_vm(&id, audit(a::VM_DELETE, id.to_string(), Vec::new())).await.unwrap());
    assert!(!store.delete_vm(&id, audit(a::VM_DELETE, id.to_string(), Vec::new())).await.unwrap());
    assert_eq!(store.get_vm(&id).await.unwrap(), None);
}

/// Every page of a list, followed by its continuation keys.
async fn pages<T>(mut read: impl AsyncFnMut(Option<String>) -> ajar_store::Page<T>) -> Vec<Vec<T>> {
    let mut pages = Vec::new();
    let mut after = None;
    for _ in 0..100 {
        let page = read(after).await;
        pages.push(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return pages,
        }
    }
    panic!("the list did not end within 100 pages");
}

pub async fn lists_hold_what_the_caller_may_see_a_full_page_at_a_time(place: &dyn Place) {
    let store = fresh(place).await;
    for i in 0..7 {
        add_vm(&*store, "rg1", &format!("a{i}")).await;
    }
    for i in 0..3 {
        add_vm(&*store, "rg2", &format!("b{i}")).await;
    }
    let names = |vms: &[Vm]| vms.iter().map(|v| v.id.name.to_string()).collect::<Vec<_>>();
    // Everything, three at a time, in key order.
    let all = pages(async |after| store.list_vms(query(None, 3, after)).await.unwrap()).await;
    assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
    // A caller who may see rg2 and one machine of rg1 gets exactly those, in full pages.
    let within = Some(vec![rg_scope("rg2"), AccessScope::from(&vm_id("rg1", "a5"))]);
    let seen = pages(async |after| store.list_vms(query(within.clone(), 3, after)).await.unwrap()).await;
    assert_eq!(seen.iter().map(|p| names(p)).collect::<Vec<_>>(), [vec!["a5", "b0", "b1"], vec!["b2"]]);
    assert!(store.list_vms(query(Some(Vec::new()), 3, None)).await.unwrap().items.is_empty(), "nowhere: nothing");
    // A resource group spelled in another case is the same scope.
    let upper = Some(vec![rg_scope("RG2")]);
    assert_eq!(names(&store.list_vms(query(upper, 10, None)).await.unwrap().items), ["b0", "b1", "b2"]);
    // Statuses follow the same filter.
    let statuses = pages(async |after| store.vm_statuses(query(within.clone(), 2, after), None).await.unwrap()).await;
    assert_eq!(statuses.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);

    // Policies: visible whole inside a scope, or through one of their machines.
    for i in 0..5 {
        let vm = vm_id("rg1", &format!("a{i}"));
        let id = policy_named("rg1", &format!("p{i}"));
        let policy = Policy {
            id: id.clone(),
            kind: None,
            vms: vec![VmPolicy { vm, ports: default_ports(OsType::Linux), public_ip: None }],
            cut_connections_on_revoke: false,
        };
        store.put_policy(policy, None, Limits::default(), audit(a::JIT_WRITE, id.to_string(), Vec::new())).await.unwrap();
    }
    let policy_names = |views: &[ajar_store::PolicyView]| views.iter().map(|v| v.policy.id.name.to_string()).collect::<Vec<_>>();
    let all = pages(async |after| store.list_policies(query(None, 2, after)).await.unwrap()).await;
    assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let within = Some(vec![AccessScope::from(&policy_named("rg1", "p1")), AccessScope::from(&vm_id("rg1", "a3"))]);
    let seen = store.list_policies(query(within, 2, None)).await.unwrap();
    assert_eq!((policy_names(&seen.items), seen.next), (vec!["p1".to_owned(), "p3".to_owned()], None));
}

pub async fn the_state_filter_agrees_with_the_domain(place: &dyn Place) {
    let store = fresh(place).await;
    // No agent; an agent; an agent without nftables; in a policy without an agent; in a policy with one.
    add_vm(&*store, "rg", "bare").await;
    for (name, nftables, hash) in [("served", Ok(()), 10u8), ("broken", Err("nft: not found".to_owned()), 11)] {
        let agent = NewAgent { token_hash: [hash; 32], version: "1".into(), nftables };
        store.enroll_agent(linux(&vm_id("rg", name), "local"), agent, audit(a::AGENT_ENROLL, name.into(), Vec::new())).await.unwrap();
    }
    add_machine(&*store, "rg2", "guarded", default_ports(OsType::Linux)).await;
    let agent = NewAgent { token_hash: [12; 32], version: "1".into(), nftables: Ok(()) };
    store.enroll_agent(linux(&vm_id("rg3", "both"), "local"), agent, audit(a::AGENT_ENROLL, "both".into(), Vec::new())).await.unwrap();
    add_machine(&*store, "rg3", "both", default_ports(OsType::Linux)).await;

    let states = store.jit_states(&whole_subscription(), None).await.unwrap();
    assert_eq!(states.len(), 5);
    for (vm, state) in &states {
        assert_eq!(*state, jit_state(vm, vm.id.name.as_str() == "guarded" || vm.id.name.as_str() == "both"), "{}", vm.id);
    }
    for filter in [JitStateFilter::Configured, JitStateFilter::NotConfigured, JitStateFilter::Unsupported] {
        let listed = store.vm_statuses(query(None, 10, None), Some(filter)).await.unwrap();
        let mut got: Vec<String> = listed.items.iter().map(|s| s.vm.id.name.to_string()).collect();
        let mut want: Vec<String> = states.iter().filter(|(_, s)| filter.matches(*s)).map(|(vm, _)| vm.id.name.to_string()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{filter:?}");
        assert!(listed.items.iter().all(|s| filter.matches(s.state)), "{filter:?}");
    }
}

pub async fn agents_enrol_once_report_and_see_their_desired_state(place: &dyn Place) {
    let store = fresh(place).await;
    let id = vm_id("rg", "web1");
    let agent = || NewAgent { token_hash: [20; 32], version: "1.0".into(), nftables: Ok(()) };
    let agent_id = store.enroll_agent(linux(&id, "local"), agent(), audit(a::AGENT_ENROLL, id.to_string(), Vec::new())).await.unwrap();
    let other = NewAgent { token_hash: [21; 32], ..agent() };
    assert_eq!(code(store.enroll_agent(linux(&id, "local"), other, audit(a::AGENT_ENROLL, id.to_string(), Vec::new())).await), "Conflict");
    assert_eq!(store.agent_for_token([20; 32]).await.unwrap(), Some((agent_id.clone(), ajar_store::AgentOf::Machine(id.clone()))));
    assert_eq!(store.agent_for_token([21; 32]).await.unwrap(), None);
    let report =
        AgentReport { version: "1.1".into(), nftables: Ok(()), addresses: vec!["10.0.0.4".parse().unwrap()], applied: Some("e1".into()) };
    store.agent_report(&agent_id, report.clone()).await.unwrap();
    let vm = store.get_vm(&id).await.unwrap().unwrap();
    assert_eq!(vm.private_addresses, report.addresses);
    assert!(matches!(&vm.enforcement, EnforcementPoint::Agent(info) if info.version == "1.1" && info.applied.as_deref() == Some("e1")));
    assert_eq!(code(store.agent_report("no-such-agent", report).await), "Conflict");

    // Before JIT nothing is protected; with it, the policy's ports and the live grants.
    assert!(store.desired_state(&id).await.unwrap().protected.is_empty());
    let policy = policy_named("rg", "default");
    let p = Policy {
        id: policy.clone(),
        kind: None,
        vms: vec![VmPolicy { vm: id.clone(), ports: default_ports(OsType::Linux), public_ip: None }],
        cut_connections_on_revoke: false,
    };
    store.put_policy(p, None, Limits::default(), audit(a::JIT_WRITE, policy.to_string(), Vec::new())).await.unwrap();
    let request = store.initiate(vec![part(&policy, &id, &[22], 600)], caller()).await.unwrap();
    let desired = store.desired_state(&id).await.unwrap();
    assert_eq!(desired.protected.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [22]);
    assert_eq!(desired.grants.iter().map(|g| (g.port, g.request_id.clone())).collect::<Vec<_>>(), [(22, request[0].id.clone())]);
    // Removing the machine ends its agent's credential.
    store.delete_policy(&policy, None, audit(a::JIT_DELETE, policy.to_string(), Vec::new())).await.unwrap();
    store.delete_vm(&id, audit(a::VM_DELETE, id.to_string(), Vec::new())).await.unwrap();
    assert_eq!(store.agent_for_token([20; 32]).await.unwrap(), None);
}
