//! Gateways: enrolment, the machines behind them, mapped ports, and their desired state.

use ajar_domain::activity::actions as a;
use ajar_domain::gateway::{GatewayName, PortRange};
use ajar_domain::inventory::{EnforcementPoint, OsType, Vm};
use ajar_domain::plans::Precondition;
use ajar_domain::policy::{Limits, Policy, VmPolicy, default_ports};
use ajar_domain::status::JitState;
use ajar_store::{AgentOf, AgentReport, NewAgent, NewGateway, Store};

use crate::{Place, audit, caller, code, fresh, part, policy_id, vm_id};

fn gw() -> GatewayName {
    "GW1".parse().unwrap()
}

async fn enrol(store: &dyn Store, first: u16, last: u16) -> String {
    let gateway = NewGateway {
        name: gw(),
        public: vec!["203.0.113.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
        mapped_ports: PortRange::new(first, last).unwrap(),
    };
    let agent = NewAgent { token_hash: [40; 32], version: "1.0".into(), nftables: Ok(()) };
    store.enroll_gateway(gateway, agent, audit(a::AGENT_ENROLL, "/ajar/v1/gateways/GW1".into(), Vec::new())).await.unwrap()
}

/// A machine with an address, behind no gateway, in its group's policy when `in_policy`.
async fn machine(store: &dyn Store, rg: &str, name: &str, in_policy: bool) -> ajar_domain::VmId {
    let id = vm_id(rg, name);
    let vm = Vm {
        id: id.clone(),
        location: "local".parse().unwrap(),
        os: OsType::Linux,
        private_addresses: vec!["10.0.3.2".parse().unwrap()],
        enforcement: EnforcementPoint::None,
        gateway: None,
    };
    store.put_vm(vm, audit(a::VM_WRITE, id.to_string(), Vec::new())).await.unwrap();
    if in_policy {
        let policy = Policy {
            id: policy_id(rg),
            kind: None,
            vms: vec![VmPolicy { vm: id.clone(), ports: default_ports(OsType::Linux), public_ip: None }],
            cut_connections_on_revoke: true,
        };
        store.put_policy(policy, None, Limits::default(), audit(a::JIT_WRITE, policy_id(rg).to_string(), Vec::new())).await.unwrap();
    }
    id
}

fn assign_audit(vm: &ajar_domain::VmId) -> ajar_domain::activity::Audit {
    audit(a::VM_WRITE, vm.to_string(), vec![vm.key()])
}

pub async fn a_gateway_enrols_once_and_serves_the_machines_put_behind_it(place: &dyn Place) {
    let store = fresh(place).await;
    let agent_id = enrol(store.as_ref(), 50000, 50009).await;
    let again = NewGateway {
        name: "gw1".parse().unwrap(),
        public: vec!["203.0.113.9".parse().unwrap()],
        mapped_ports: PortRange::new(1, 2).unwrap(),
    };
    let other = NewAgent { token_hash: [41; 32], version: "1.0".into(), nftables: Ok(()) };
    assert_eq!(
        code(store.enroll_gateway(again, other, audit(a::AGENT_ENROLL, "gw".into(), Vec::new())).await),
        "Conflict",
        "names ignore case"
    );
    assert_eq!(store.agent_for_token([40; 32]).await.unwrap(), Some((agent_id.clone(), AgentOf::Gateway(gw()))));

    let bare = vm_id("rg", "bare");
    store
        .put_vm(
            Vm {
                id: bare.clone(),
                location: "local".parse().unwrap(),
                os: OsType::Linux,
                private_addresses: vec![],
                enforcement: EnforcementPoint::None,
                gateway: None,
            },
            audit(a::VM_WRITE, bare.to_string(), Vec::new()),
        )
        .await
        .unwrap();
    assert_eq!(code(store.set_vm_gateway(&bare, Some(gw()), assign_audit(&bare)).await), "InvalidVirtualMachine", "nothing to forward to");
    assert_eq!(code(store.set_vm_gateway(&bare, Some("nope".parse().unwrap()), assign_audit(&bare)).await), "GatewayNotFound");

    let db = machine(store.as_ref(), "rg", "db1", false).await;
    assert_eq!(store.vm_status(&db).await.unwrap().unwrap().state.as_str(), "Unsupported", "no agent, no gateway");
    let (moved, previous) = store.set_vm_gateway(&db, Some("gw1".parse().unwrap()), assign_audit(&db)).await.unwrap();
    assert_eq!((moved.gateway.as_ref().map(GatewayName::as_str), previous), (Some("GW1"), None), "the gateway keeps its first spelling");
    let status = store.vm_status(&db).await.unwrap().unwrap();
    assert_eq!(status.state, JitState::NotConfigured, "a gateway can enforce JIT on it");
    assert_eq!(status.vm.gateway, moved.gateway);
    let gateway = status.gateway.expect("the status shows the gateway");
    assert_eq!(gateway.gateway.mapped_ports.to_string(), "50000-50009");
    // The gateway is in sync once its agent reports the etag of what it must enforce now.
    assert!(!gateway.in_sync(), "its agent has applied nothing yet");
    let applied = store.gateway_desired_state(&gw()).await.unwrap().etag();
    assert_eq!(gateway.desired_etag, applied);
    let report = AgentReport { version: "1.0".into(), nftables: Ok(()), addresses: vec![], applied: Some(applied) };
    store.agent_report(&agent_id, report).await.unwrap();
    assert!(store.vm_status(&db).await.unwrap().unwrap().gateway.is_some_and(|g| g.in_sync()));
    assert_eq!(
        store.get_vm(&db).await.unwrap().unwrap().private_addresses,
        moved.private_addresses,
        "a gateway's report is not the machine's"
    );
    let views = store.gateways().await.unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].machines, vec![db.clone()]);
    assert_eq!(
        code(store.delete_gateway(&gw(), audit(a::GATEWAYS_DELETE, "gw".into(), Vec::new())).await),
        "Conflict",
        "it serves a machine"
    );
}

pub async fn grants_behind_a_gateway_get_distinct_mapped_ports_and_reach_only_its_desired_state(place: &dyn Place) {
    let store = fresh(place).await;
    enrol(store.as_ref(), 50000, 50001).await;
    let (db1, db2, db3) = (
        machine(store.as_ref(), "a", "db1", true).await,
        machine(store.as_ref(), "b", "db2", true).await,
        machine(store.as_ref(), "c", "db3", true).await,
    );
    for vm in [&db1, &db2, &db3] {
        store.set_vm_gateway(vm, Some(gw()), assign_audit(vm)).await.unwrap();
    }
    let policy = store.get_policy(&policy_id("a")).await.unwrap().unwrap();
    assert_eq!(policy.policy.vms[0].public_ip.as_deref(), Some("203.0.113.1"), "a policy shows the gateway's address");
    // A policy read back with that address is written back unchanged, by a PUT or when JIT is enabled on
    // another machine of the policy.
    let etag = Some(Precondition::OneOf(vec![policy.etag.clone()]));
    store.put_policy(policy.policy.clone(), etag, Limits::default(), audit(a::JIT_WRITE, "a".into(), Vec::new())).await.unwrap();
    let neighbour = machine(store.as_ref(), "a", "web1", false).await;
    let enabled = store
        .enable(vec![neighbour.clone()], "default".parse().unwrap(), None, Limits::default(), audit(a::JIT_WRITE, "a".into(), Vec::new()))
        .await
        .unwrap();
    let ips: Vec<Option<String>> = enabled[0].policy.vms.iter().map(|v| v.public_ip.clone()).collect();
    assert_eq!(ips, [Some("203.0.113.1".to_owned()), None], "only the machine behind the gateway has its address");
    // A machine behind no gateway: its grant is mapped nowhere and no gateway sees it.
    let host = machine(store.as_ref(), "d", "host1", true).await;
    let direct = store.initiate(vec![part(&policy_id("d"), &host, &[22], 600)], caller()).await.unwrap();
    assert_eq!(direct[0].vms[0].grants[0].mapped_port, None);

    let first = store.initiate(vec![part(&policy_id("a"), &db1, &[22], 600)], caller()).await.unwrap();
    let second = store.initiate(vec![part(&policy_id("b"), &db2, &[22], 600)], caller()).await.unwrap();
    let p1 = first[0].vms[0].grants[0].mapped_port.unwrap();
    let p2 = second[0].vms[0].grants[0].mapped_port.unwrap();
    assert!(p1 != p2 && [p1, p2].iter().all(|p| (50000..=50001).contains(p)), "{p1} {p2}");
    // A repeated request supersedes its grant and keeps its port; a third machine finds the range full.
    let again = store.initiate(vec![part(&policy_id("a"), &db1, &[22], 600)], caller()).await.unwrap();
    assert_eq!(again[0].vms[0].grants[0].mapped_port, Some(p1));
    assert_eq!(code(store.initiate(vec![part(&policy_id("c"), &db3, &[22], 600)], caller()).await), "Conflict");

    let desired = store.gateway_desired_state(&gw()).await.unwrap();
    let mut mapped: Vec<(String, u16, u16)> = desired.mappings.iter().map(|m| (m.vm.name.to_string(), m.port, m.mapped_port)).collect();
    mapped.sort();
    assert_eq!(mapped, [("db1".to_owned(), 22, p1), ("db2".to_owned(), 22, p2)]);
    let mut behind: Vec<String> = desired.machines.iter().map(|m| m.vm.name.to_string()).collect();
    behind.sort();
    assert_eq!(behind, ["db1", "db2", "db3"], "neither host1 nor web1 is behind the gateway");
    assert!(desired.machines.iter().all(|m| m.protected.iter().any(|(n, _)| *n == 22)));

    // Moving a machine away while its grant is live is refused; a revoke hands the gateway its cut.
    assert_eq!(code(store.set_vm_gateway(&db1, None, assign_audit(&db1)).await), "Conflict");
    store.revoke(&policy_id("a"), vec![(db1.clone(), vec![22])], audit(a::JIT_REVOKE, "a".into(), Vec::new())).await.unwrap();
    let desired = store.gateway_desired_state(&gw()).await.unwrap();
    assert_eq!(desired.mappings.len(), 1);
    assert_eq!(desired.cuts.iter().map(|c| c.port).collect::<Vec<_>>(), [p1], "the gateway cuts flows to the mapped port");
    assert_eq!(store.set_vm_gateway(&db1, None, assign_audit(&db1)).await.unwrap().1, Some(gw()));
    assert_eq!(store.get_policy(&policy_id("a")).await.unwrap().unwrap().policy.vms[0].public_ip, None);
}
