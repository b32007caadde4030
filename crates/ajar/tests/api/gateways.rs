//! Gateway (firewall/DNAT) mode over real HTTPS: a gateway enrols with the join token, machines are put
//! behind it, each grant on such a machine carries the mapped port Azure's SDK reads (`mappedPort`), the
//! policy's `publicIpAddress` is the gateway's, and the gateway's credential reaches only the machines it
//! serves. Bad input is refused whole, with a target; as elsewhere, a missing thing named in a body is a
//! 400, one named in the path a 404.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{API, Server, with_policy};

const PUBLIC: &str = "10.9.0.1";
const PUBLIC6: &str = "fd00:9::1";

async fn desired(s: &Server, token: &str) -> Value {
    let (st, v, _) = s.send(Method::GET, "/ajar/v1/agent/desiredState", Some(token), None, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn initiate_body(s: &Server, vm: &str, port: u16, from: &str) -> Value {
    json!({"virtualMachines": [{"id": s.vm_id(vm), "ports": [{"number": port, "duration": "PT10M", "allowedSourceAddressPrefix": from}]}]})
}

fn error_of(v: &Value) -> (Option<&str>, Option<&str>) {
    (v["error"]["code"].as_str(), v["error"]["target"].as_str())
}

async fn status_of(s: &Server, vm: &str) -> Value {
    let status = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub)).await;
    status["value"].as_array().unwrap().iter().find(|m| m["name"] == vm).cloned().unwrap_or_else(|| panic!("no {vm} in {status}"))
}

#[tokio::test]
async fn a_gateway_serves_only_its_machines_and_each_grant_gets_a_mapped_port() {
    let s = with_policy(&[]).await;
    s.add_vm("vm3", "Linux", &s.loc, "10.0.0.6").await;
    let (st, enrolled) = s.enroll_gateway("gw1", &[PUBLIC, PUBLIC6], Some("50000-50001")).await;
    assert_eq!(st, StatusCode::CREATED, "{enrolled}");
    assert_eq!((enrolled["gateway"].as_str(), enrolled.get("vmId")), (Some("gw1"), None), "{enrolled}");
    let token = enrolled["token"].as_str().unwrap().to_owned();
    // Enrolled once: a leaked join token cannot take the gateway over.
    let (st, v) = s.enroll_gateway("gw1", &[PUBLIC], None).await;
    assert_eq!((st.as_u16(), error_of(&v).0), (409, Some("Conflict")), "{v}");
    // The gateway's credential is not an API credential.
    for path in [format!("/subscriptions?{API}"), format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub), "/ajar/v1/gateways".to_owned()] {
        let (st, _, _) = s.send(Method::GET, &path, Some(&token), None, "").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Serving nothing yet, it reads nothing: no machine, no mapping, no machine's own desired state.
    let empty = desired(&s, &token).await;
    assert_eq!((&empty["gateway"]["machines"], &empty["gateway"]["mappings"], empty.get("vmId")), (&json!([]), &json!([]), None));
    assert_eq!(empty["gateway"]["publicAddresses"], json!([PUBLIC, PUBLIC6]));

    let (st, v) = s.set_gateway("vm1", Some("gw1")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"virtualMachineId": s.vm_id("vm1"), "gateway": "gw1", "previous": null}));
    let served = desired(&s, &token).await;
    assert_eq!(served["gateway"]["machines"][0]["vmId"], s.vm_id("vm1"), "{served}");
    assert_eq!(served["gateway"]["machines"][0]["addresses"], json!(["10.0.0.4"]));
    assert_eq!(
        served["gateway"]["machines"][0]["protected"],
        json!([{"number": 22, "protocol": "TCP"}, {"number": 3389, "protocol": "*"}])
    );
    let text = served.to_string();
    for other in ["vm2", "vm3"] {
        assert!(!text.contains(&s.vm_id(other)), "the gateway reads nothing of {other}, which it does not serve: {text}");
    }

    // The policy reads the gateway's address back as publicIpAddress; a write may repeat it, not change it.
    let policy = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    assert_eq!(policy["properties"]["virtualMachines"][0]["publicIpAddress"], PUBLIC, "{policy}");
    let mut body = json!({"kind": "Basic", "properties": {"virtualMachines": policy["properties"]["virtualMachines"].clone()}});
    let (st, v) = s.put_policy("default", body.clone()).await;
    assert_eq!(st, StatusCode::OK, "the policy as read is written back unchanged: {v}");
    body["properties"]["virtualMachines"][0]["publicIpAddress"] = json!("10.9.9.9");
    let (st, v) = s.put_policy("default", body).await;
    assert_eq!((st.as_u16(), error_of(&v)), (400, (Some("InvalidPolicy"), Some("properties.virtualMachines[0].publicIpAddress"))), "{v}");

    // A grant: the mapped port in the 202 and in requests[], where to connect in the status, the mapping in
    // the gateway's desired state.
    let (st, request) = s.initiate("default", initiate_body(&s, "vm1", 22, "10.1.2.3")).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{request}");
    let mapped = request["virtualMachines"][0]["ports"][0]["mappedPort"].as_u64().unwrap_or_else(|| panic!("{request}"));
    assert!((50000..=50001).contains(&mapped), "{mapped}");
    let policy = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    assert_eq!(policy["properties"]["requests"][0]["virtualMachines"][0]["ports"][0]["mappedPort"], mapped, "{policy}");
    let vm1 = status_of(&s, "vm1").await;
    assert_eq!((vm1["connection"]["path"].as_str(), vm1["connection"]["address"].as_str()), (Some("firewall"), Some(PUBLIC)), "{vm1}");
    assert_eq!(vm1["liveGrants"][0]["connectTo"], format!("{PUBLIC}:{mapped}"), "{vm1}");
    assert_eq!(vm1["liveGrants"][0]["applied"], false, "the gateway's agent has not reported applying it");
    assert_eq!((vm1["enforcement"].as_str(), vm1["gateway"]["name"].as_str()), (Some("gateway"), Some("gw1")), "{vm1}");
    assert_eq!(status_of(&s, "vm3").await["connection"]["path"], "direct");
    let mapping = &desired(&s, &token).await["gateway"]["mappings"][0];
    assert_eq!(
        (mapping["vmId"].as_str(), mapping["number"].as_u64(), mapping["mappedPort"].as_u64(), &mapping["allowedSourceAddressPrefixes"]),
        (Some(s.vm_id("vm1").as_str()), Some(22), Some(mapped), &json!(["10.1.2.3"])),
        "{mapping}"
    );
    // An IPv6 client is told the gateway's IPv6 address.
    let (st, v) = s.initiate("default", initiate_body(&s, "vm1", 3389, "fd00:1::7")).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let v6 = v["virtualMachines"][0]["ports"][0]["mappedPort"].as_u64().unwrap();
    assert_ne!(v6, mapped, "two live grants on one gateway never share a mapped port");
    let vm1 = status_of(&s, "vm1").await;
    let connect: Vec<&str> = vm1["liveGrants"].as_array().unwrap().iter().filter_map(|g| g["connectTo"].as_str()).collect();
    assert!(connect.contains(&format!("[{PUBLIC6}]:{v6}").as_str()), "{vm1}");
    // A repeated request keeps its port; the range (two ports) is full for a third.
    let (st, again) = s.initiate("default", initiate_body(&s, "vm1", 22, "10.1.2.3")).await;
    assert_eq!((st, again["virtualMachines"][0]["ports"][0]["mappedPort"].as_u64()), (StatusCode::ACCEPTED, Some(mapped)), "{again}");
    let (st, v) = s.set_gateway("vm3", Some("gw1")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.call(Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": [s.vm_id("vm3")]}))).await;
    assert_eq!(st, StatusCode::OK, "enabling next to a machine behind a gateway: {v}");
    let (st, v) = s.initiate("default", initiate_body(&s, "vm3", 22, "10.1.2.3")).await;
    assert_eq!(st.as_u16(), 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("50000-50001"), "names the full range: {v}");
    assert_eq!(error_of(&v).1, Some("virtualMachines[0].ports[0].number"), "points at the port refused: {v}");

    // While grants through it are live a machine keeps its gateway, and a gateway that serves machines stays.
    let (st, v) = s.set_gateway("vm1", None).await;
    assert_eq!((st.as_u16(), error_of(&v).0), (409, Some("Conflict")), "{v}");
    let (st, v) = s.call(Method::DELETE, "/ajar/v1/gateways/gw1", None).await;
    assert_eq!((st.as_u16(), error_of(&v).0), (409, Some("Conflict")), "{v}");
    let list = s.get("/ajar/v1/gateways").await;
    assert_eq!(list["value"][0]["virtualMachines"], json!([s.vm_id("vm1"), s.vm_id("vm3")]), "{list}");
    assert_eq!(
        (list["value"][0]["mappedPorts"].as_str(), &list["value"][0]["publicAddresses"]),
        (Some("50000-50001"), &json!([PUBLIC, PUBLIC6]))
    );
    assert_eq!(s.get("/ajar/v1/gateways/GW1").await["name"], "gw1", "names are matched without case");

    // Once revoked, the machine may leave, and the gateway reads nothing of it any more.
    let revoke = json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [{"number": 22}, {"number": 3389}]}]});
    let (st, v) = s.call(Method::POST, &format!("{}/revoke?{API}", s.policy_path("default")), Some(revoke)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.set_gateway("vm1", None).await;
    assert_eq!((st, &v["previous"]), (StatusCode::OK, &json!("gw1")), "{v}");
    let after = desired(&s, &token).await.to_string();
    assert!(!after.contains(&s.vm_id("vm1")), "{after}");
    assert_eq!(status_of(&s, "vm1").await["connection"]["path"], "direct");
    let log = s.activity("limit=100").await;
    let operations: Vec<&str> = log.iter().filter_map(|e| e["operation"].as_str()).collect();
    assert!(operations.iter().any(|o| o.contains("virtualMachines/write")), "the assignments are on record: {operations:?}");
}

#[tokio::test]
async fn bad_gateway_input_is_refused_whole_with_a_target() {
    let s = with_policy(&[]).await;
    s.add_vm("v6only", "Linux", &s.loc, "fd00:3::2").await;
    let (st, v) = s.enroll_gateway("gw1", &[PUBLIC], None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let enrol = |name: &str, gateway: Value| json!({"name": name, "osType": "Linux", "version": "0.1.0", "nftables": {"usable": true}, "gateway": gateway});
    for (body, target) in [
        (enrol("gw2", json!({"publicAddresses": []})), "gateway.publicAddresses"),
        (enrol("gw2", json!({"publicAddresses": ["gateway.example"]})), "gateway.publicAddresses"),
        (enrol("gw2", json!({"publicAddresses": ["10.9.0.2", "10.9.0.3"]})), "gateway.publicAddresses"),
        (enrol("gw2", json!({"publicAddresses": ["0.0.0.0"]})), "gateway.publicAddresses"),
        (enrol("gw2", json!({"publicAddresses": ["10.9.0.2"], "mappedPorts": "60000-50000"})), "gateway.mappedPorts"),
        (enrol("gw2", json!({"publicAddresses": ["10.9.0.2"], "mappedPorts": "0-10"})), "gateway.mappedPorts"),
        (enrol("gw 2", json!({"publicAddresses": ["10.9.0.2"]})), "name"),
    ] {
        let (st, v) = s.enroll(&body).await;
        assert_eq!((st.as_u16(), error_of(&v)), (400, (Some("InvalidRequestContent"), Some(target))), "{body}: {v}");
    }
    let vm1 = s.vm_id("vm1");
    for (body, status, code) in [
        (json!({"virtualMachineId": vm1}), 400, "InvalidRequestContent"),
        (json!({"virtualMachineId": vm1, "gateway": "gw 1"}), 400, "InvalidRequestContent"),
        (json!({"virtualMachineId": vm1, "gateway": "ghost"}), 400, "GatewayNotFound"),
        (json!({"virtualMachineId": vm1, "gateway": "gw1", "extra": 1}), 400, "InvalidRequestContent"),
        (json!({"virtualMachineId": "vm1", "gateway": "gw1"}), 400, "InvalidResourceId"),
        (json!({"virtualMachineId": s.vm_id("ghost"), "gateway": "gw1"}), 400, "VirtualMachineNotFound"),
        (json!({"virtualMachineId": s.vm_id("v6only"), "gateway": "gw1"}), 400, "InvalidVirtualMachine"),
    ] {
        let (st, v) = s.call(Method::POST, "/ajar/v1/gatewayAssignment", Some(body.clone())).await;
        assert_eq!((st.as_u16(), error_of(&v).0), (status, Some(code)), "{body}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap_or_default().is_empty(), "{v}");
    }
    let (st, v) = s.call(Method::GET, "/ajar/v1/gateways/ghost", None).await;
    assert_eq!((st.as_u16(), error_of(&v).0), (404, Some("GatewayNotFound")), "{v}");
    let (st, v) = s.call(Method::GET, "/ajar/v1/gateways/gw%201", None).await;
    assert_eq!((st.as_u16(), error_of(&v)), (400, (Some("InvalidRequestContent"), Some("name"))), "{v}");
    let (st, _) = s.call(Method::DELETE, "/ajar/v1/gateways/ghost", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // Nothing of it happened: one gateway, serving nothing, and every machine reached directly.
    let list = s.get("/ajar/v1/gateways").await;
    assert_eq!((list["value"].as_array().map(Vec::len), &list["value"][0]["virtualMachines"]), (Some(1), &json!([])), "{list}");
    for vm in ["vm1", "v6only"] {
        assert_eq!(status_of(&s, vm).await["connection"]["path"], "direct");
    }
    // A removed gateway's credential is dead.
    let (st, enrolled) = s.enroll_gateway("gw3", &[PUBLIC6], None).await;
    assert_eq!(st, StatusCode::CREATED, "{enrolled}");
    let token = enrolled["token"].as_str().unwrap();
    let (st, _) = s.call(Method::DELETE, "/ajar/v1/gateways/gw3", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = s.send(Method::GET, "/ajar/v1/agent/desiredState", Some(token), None, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
