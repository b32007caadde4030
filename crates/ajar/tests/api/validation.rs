//! Every validation rule, as data: a change to a valid request, and the error
//! it must get. Each refusal must change nothing and be in the activity log.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{API, Server, set, standard_policy, with_policy};

/// One refused input: how to spoil the valid body, and the answer expected.
struct Case {
    what: &'static str,
    pointer: &'static str,
    value: Value,
    status: u16,
    code: &'static str,
    target: Option<&'static str>,
    message: &'static str,
}

fn case(
    what: &'static str,
    pointer: &'static str,
    value: Value,
    code: &'static str,
    target: Option<&'static str>,
    message: &'static str,
) -> Case {
    Case { what, pointer, value, status: 400, code, target, message }
}

fn check_refused(case: &Case, response: (StatusCode, Value)) {
    let (status, body) = response;
    assert_eq!(status.as_u16(), case.status, "{}: {body}", case.what);
    assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.what);
    assert_eq!(body["error"]["target"].as_str(), case.target, "{}: {body}", case.what);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(case.message), "{}: message {message:?} lacks {:?}", case.what, case.message);
}

#[tokio::test]
async fn policy_rules() {
    let s = with_policy(&[]).await;
    s.add_vm("faraway", "Linux", "elsewhere", "10.9.0.1").await;
    s.add_vm(&"x".repeat(50), "Linux", &s.loc, "10.9.0.2").await;
    s.add_vm("taken", "Linux", &s.loc, "10.9.0.3").await;
    let (st, v) = s.put_policy("other", json!({"properties": {"virtualMachines": [{"id": s.vm_id("taken"), "ports": [{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT1H"}]}]}})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let before = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    let other_sub = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";
    let cases = [
        case(
            "port out of range",
            "/properties/virtualMachines/0/ports/0/number",
            json!(70000),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].number"),
            "outside 0 to 65535",
        ),
        case(
            "negative port",
            "/properties/virtualMachines/0/ports/0/number",
            json!(-1),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].number"),
            "outside 0 to 65535",
        ),
        case(
            "port as a string",
            "/properties/virtualMachines/0/ports/0/number",
            json!("22"),
            "InvalidRequestContent",
            Some("properties.virtualMachines[0].ports[0].number"),
            "invalid type",
        ),
        case(
            "unknown protocol",
            "/properties/virtualMachines/0/ports/0/protocol",
            json!("ICMP"),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].protocol"),
            "use TCP, UDP or *",
        ),
        case(
            "empty protocol",
            "/properties/virtualMachines/0/ports/0/protocol",
            json!(""),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].protocol"),
            "use TCP, UDP or *",
        ),
        case(
            "duration below PT5M",
            "/properties/virtualMachines/0/ports/0/maxRequestAccessDuration",
            json!("PT4M"),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].maxRequestAccessDuration"),
            "outside the allowed range PT5M to P1D",
        ),
        case(
            "duration above P1D",
            "/properties/virtualMachines/0/ports/0/maxRequestAccessDuration",
            json!("P1DT1S"),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].maxRequestAccessDuration"),
            "outside the allowed range",
        ),
        case(
            "duration not ISO 8601",
            "/properties/virtualMachines/0/ports/0/maxRequestAccessDuration",
            json!("3 hours"),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].maxRequestAccessDuration"),
            "not an ISO 8601 duration",
        ),
        case(
            "duration in months",
            "/properties/virtualMachines/0/ports/0/maxRequestAccessDuration",
            json!("P1M"),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].maxRequestAccessDuration"),
            "years and months",
        ),
        case(
            "both source fields",
            "/properties/virtualMachines/0/ports/0/allowedSourceAddressPrefixes",
            json!(["10.0.0.0/8"]),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].allowedSourceAddressPrefixes"),
            "not both",
        ),
        case(
            "no source field",
            "/properties/virtualMachines/0/ports/0/allowedSourceAddressPrefix",
            Value::Null,
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].allowedSourceAddressPrefix"),
            "say which sources",
        ),
        case(
            "CIDR with host bits",
            "/properties/virtualMachines/0/ports/0/allowedSourceAddressPrefix",
            json!("10.0.0.1/8"),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].allowedSourceAddressPrefix"),
            "did you mean 10.0.0.0/8",
        ),
        case(
            "not an address",
            "/properties/virtualMachines/0/ports/0/allowedSourceAddressPrefix",
            json!("Internet"),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[0].allowedSourceAddressPrefix"),
            "service tags",
        ),
        case(
            "list as the single field",
            "/properties/virtualMachines/0/ports/0/allowedSourceAddressPrefix",
            json!(["*"]),
            "InvalidRequestContent",
            Some("properties.virtualMachines[0].ports[0].allowedSourceAddressPrefix"),
            "invalid type",
        ),
        case(
            "VM id malformed",
            "/properties/virtualMachines/0/id",
            json!("/subscriptions/x/vm1"),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].id"),
            "expected 'resourceGroups'",
        ),
        case(
            "VM not in inventory",
            "/properties/virtualMachines/0/id",
            json!("/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/ghost"),
            "VirtualMachineNotFound",
            Some("properties.virtualMachines[0].id"),
            "not in the inventory",
        ),
        case(
            "VM in another location",
            "/properties/virtualMachines/0/id",
            json!("/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/faraway"),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].id"),
            "is in location 'elsewhere'",
        ),
        case(
            "VM in another subscription",
            "/properties/virtualMachines/0/id",
            json!(other_sub),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].id"),
            "not in the policy's subscription",
        ),
        case(
            "policy + VM name over 56",
            "/properties/virtualMachines/0/id",
            json!(format!("/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/{}", "x".repeat(50))),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].id"),
            "at most 56",
        ),
        case(
            "VM in another policy",
            "/properties/virtualMachines/0/id",
            json!("/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/taken"),
            "VirtualMachineInAnotherPolicy",
            Some("properties.virtualMachines[0].id"),
            "already configured in JIT policy",
        ),
        case(
            "same port twice",
            "/properties/virtualMachines/0/ports/1/number",
            json!(22),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports[1].number"),
            "configured twice",
        ),
        case(
            "no ports",
            "/properties/virtualMachines/0/ports",
            json!([]),
            "InvalidPolicy",
            Some("properties.virtualMachines[0].ports"),
            "at least one port",
        ),
        case(
            "no VMs",
            "/properties/virtualMachines",
            json!([]),
            "InvalidPolicy",
            Some("properties.virtualMachines"),
            "at least one virtual machine",
        ),
        case(
            "unknown field",
            "/properties/virtualMachines/0/ports/0/maxRequestAccessDurations",
            json!("PT1H"),
            "InvalidRequestContent",
            Some("properties.virtualMachines[0].ports[0].maxRequestAccessDurations"),
            "unknown field",
        ),
        case(
            "missing required field",
            "/properties/virtualMachines/0/ports/0/protocol",
            Value::Null,
            "InvalidRequestContent",
            Some("properties.virtualMachines[0].ports[0]"),
            "missing field `protocol`",
        ),
        case("location differs from URL", "/location", json!("mars"), "InvalidPolicy", Some("location"), "the URL says"),
        case("name differs from URL", "/name", json!("other"), "InvalidPolicy", Some("name"), "the URL names"),
    ];
    for c in &cases {
        let mut body = standard_policy(&s);
        let value = match &c.value {
            Value::String(t) => json!(t.replace("SUB", &s.sub).replace("RG", &s.rg)),
            other => other.clone(),
        };
        set(&mut body, c.pointer, value);
        check_refused(c, s.put_policy("default", body).await);
    }
    // A second VM entry for the same machine.
    let mut twice = standard_policy(&s);
    let vm = twice["properties"]["virtualMachines"][0].clone();
    twice["properties"]["virtualMachines"].as_array_mut().unwrap().push(vm);
    let dup = case("same VM twice", "", Value::Null, "InvalidPolicy", Some("properties.virtualMachines[1].id"), "listed twice");
    check_refused(&dup, s.put_policy("default", twice).await);
    // Raw bodies: not JSON at all, and not an object.
    for (bytes, what) in [(&b"{\"properties\": "[..], "truncated JSON"), (&b"[1,2]"[..], "an array")] {
        let (status, v, _) = s
            .send(Method::PUT, &format!("{}?{API}", s.policy_path("default")), Some(&s.token), Some(bytes.to_vec()), "application/json")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert_eq!(v["error"]["code"], "InvalidRequestContent", "{what}: {v}");
    }
    // Nothing changed, and every refusal is on record.
    assert_eq!(s.get(&format!("{}?{API}", s.policy_path("default"))).await, before);
    let failed: Vec<Value> = s.activity("limit=1000").await.into_iter().filter(|e| e["result"] == "Failed").collect();
    assert_eq!(failed.len(), cases.len() + 3, "each refusal is logged once");
    assert!(
        failed.iter().all(|e| e["operation"] == "Microsoft.Security/locations/jitNetworkAccessPolicies/write" && e["caller"] == "admin")
    );
}

fn initiate_body(s: &Server, port: Value) -> Value {
    json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [port]}], "justification": "maintenance"})
}

#[tokio::test]
async fn initiate_rules() {
    let s = with_policy(&[]).await;
    let past = "2020-01-01T00:00:00Z";
    let far = (time::OffsetDateTime::now_utc() + time::Duration::hours(2)).format(&time::format_description::well_known::Rfc3339).unwrap();
    let t = "virtualMachines[0].ports[0]";
    let cases: Vec<(Value, u16, &str, Option<String>, &str)> = vec![
        (json!({"number": 80, "duration": "PT1H"}), 400, "InvalidInitiateInput", Some(format!("{t}.number")), "configured: 22, 3389"),
        (
            json!({"number": 22, "duration": "PT2H", "allowedSourceAddressPrefix": "10.1.1.1"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.duration")),
            "at most PT1H",
        ),
        (
            json!({"number": 22, "endTimeUtc": far, "allowedSourceAddressPrefix": "10.1.1.1"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.endTimeUtc")),
            "at most PT1H",
        ),
        (
            json!({"number": 22, "endTimeUtc": past, "allowedSourceAddressPrefix": "10.1.1.1"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.endTimeUtc")),
            "in the future",
        ),
        (
            json!({"number": 22, "endTimeUtc": "tomorrow", "allowedSourceAddressPrefix": "10.1.1.1"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.endTimeUtc")),
            "RFC 3339",
        ),
        (
            json!({"number": 22, "endTimeUtc": far, "duration": "PT1H"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.endTimeUtc")),
            "Only one of fields 'EndTimeUtc' and 'Duration'",
        ),
        (json!({"number": 22}), 400, "InvalidInitiateInput", Some(format!("{t}.endTimeUtc")), "Only one of fields"),
        (json!({"number": 22, "duration": "1h"}), 400, "InvalidInitiateInput", Some(format!("{t}.duration")), "ISO 8601"),
        (
            json!({"number": 22, "duration": "PT0S", "allowedSourceAddressPrefix": "10.1.1.1"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.duration")),
            "longer than zero",
        ),
        (
            json!({"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "192.168.1.1"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.allowedSourceAddressPrefix")),
            "not inside the sources allowed",
        ),
        (
            json!({"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "*"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.allowedSourceAddressPrefix")),
            "not inside",
        ),
        (
            json!({"number": 22, "duration": "PT1H", "allowedSourceAddressPrefixes": ["10.1.0.0/16", "11.0.0.0/8"]}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.allowedSourceAddressPrefix")),
            "11.0.0.0/8",
        ),
        // No source: the caller's own address (127.0.0.1), which 10.0.0.0/8 does not allow.
        (
            json!({"number": 22, "duration": "PT1H"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.allowedSourceAddressPrefix")),
            "127.0.0.1",
        ),
        (
            json!({"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "10.0.0.0/7"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.allowedSourceAddressPrefix")),
            "not inside",
        ),
        (
            json!({"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "10.0.0.0/33"}),
            400,
            "InvalidInitiateInput",
            Some(format!("{t}.allowedSourceAddressPrefix")),
            "from 0 to 32",
        ),
        (json!({"number": 70000, "duration": "PT1H"}), 400, "InvalidInitiateInput", Some(format!("{t}.number")), "outside 0 to 65535"),
        (json!({"number": 22, "duration": "PT1H", "bogus": 1}), 400, "InvalidInitiateInput", Some(format!("{t}.bogus")), "unknown field"),
    ];
    for (port, status, code, target, message) in &cases {
        let (st, v) = s.initiate("default", initiate_body(&s, port.clone())).await;
        assert_eq!(st.as_u16(), *status, "{port}: {v}");
        assert_eq!(v["error"]["code"], *code, "{port}: {v}");
        assert_eq!(v["error"]["target"].as_str(), target.as_deref(), "{port}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(message), "{port}: {v}");
    }
    // A VM not in the policy; a policy that does not exist; the wrong action name.
    let (st, v) =
        s.initiate("default", json!({"virtualMachines": [{"id": s.vm_id("vm2"), "ports": [{"number": 3389, "duration": "PT1H"}]}]})).await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (400, Some("InvalidInitiateInput")), "{v}");
    let (st, v) = s.initiate("nope", initiate_body(&s, json!({"number": 3389, "duration": "PT1H"}))).await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (404, Some("PolicyNotFound")), "{v}");
    let (st, v) = s.call(Method::POST, &format!("{}/frobnicate?{API}", s.policy_path("default")), Some(json!({}))).await;
    assert_eq!(st.as_u16(), 404, "{v}");
    // Several VMs, one of them wrong: refused whole, nothing opened.
    let both = json!({"virtualMachines": [
        {"id": s.vm_id("vm1"), "ports": [{"number": 3389, "duration": "PT1H"}]},
        {"id": s.vm_id("vm1"), "ports": [{"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "10.1.1.1"}]}]});
    let (st, v) = s.initiate("default", both).await;
    assert_eq!((st.as_u16(), v["error"]["target"].as_str()), (400, Some("virtualMachines[1].id")), "{v}");
    let policy = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    assert_eq!(policy["properties"]["requests"], json!([]), "refused requests open nothing");
    // What is allowed: a sub-range of the allowed CIDR, a host in it, and "My IP" where any source is allowed.
    for port in [
        json!({"number": 22, "duration": "PT30M", "allowedSourceAddressPrefix": "10.1.0.0/16"}),
        json!({"number": 22, "duration": "PT30M", "allowedSourceAddressPrefixes": ["10.2.3.4", "10.3.0.0/24"]}),
        json!({"number": 3389, "duration": "PT3H"}),
    ] {
        let (st, v) = s.initiate("default", initiate_body(&s, port.clone())).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{port}: {v}");
    }
    let policy = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    let requests = policy["properties"]["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2]["virtualMachines"][0]["ports"][0]["allowedSourceAddressPrefix"], "127.0.0.1", "My IP is the caller's address");
    let failed = s.activity("limit=1000").await.into_iter().filter(|e| e["result"] == "Failed").count();
    // The cases, the VM outside the policy, the missing policy and the multi-VM
    // request; an unknown action is an unknown URL, not an attempt.
    assert_eq!(failed, cases.len() + 3, "every refused initiate is logged");
}

#[tokio::test]
async fn vm_rules() {
    let s = Server::start(&[]).await;
    let path = format!("{}?{API}", s.vm_id("vm1"));
    let cases = [
        (
            json!({"properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}}}),
            "InvalidRequestContent",
            None,
            "missing field `location`",
        ),
        (
            json!({"location": "local", "properties": {"storageProfile": {"osDisk": {"osType": "BeOS"}}}}),
            "InvalidVirtualMachine",
            Some("properties.storageProfile.osDisk.osType"),
            "Linux or Windows",
        ),
        (
            json!({"location": "lo cal", "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}}}),
            "InvalidVirtualMachine",
            Some("location"),
            "not allowed",
        ),
        (
            json!({"location": "local", "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}, "networkProfile": {"privateIPAddresses": ["10.0.0.300"]}}}),
            "InvalidVirtualMachine",
            Some("properties.networkProfile.privateIPAddresses[0]"),
            "not an IPv4 or IPv6",
        ),
    ];
    for (body, code, target, message) in cases {
        let (st, v) = s.call(Method::PUT, &path, Some(body.clone())).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert_eq!(v["error"]["target"].as_str(), target, "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(message), "{body}: {v}");
    }
    let bad_names = [
        (format!("/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v?{API}"), "subscriptionId"),
        (
            format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}?{API}", s.sub, "r%20g", "v"),
            "resourceGroupName",
        ),
        (
            format!("/subscriptions/{}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{}?{API}", s.sub, "a".repeat(65)),
            "vmName",
        ),
    ];
    for (path, target) in bad_names {
        let (st, v) = s.call(Method::GET, &path, None).await;
        assert_eq!(
            (st.as_u16(), v["error"]["code"].as_str(), v["error"]["target"].as_str()),
            (400, Some("InvalidResourceId"), Some(target)),
            "{path}: {v}"
        );
    }
    let unknown_sub = format!(
        "/subscriptions/00000000-0000-0000-0000-000000000009/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v?{API}"
    );
    let (st, v) = s
        .call(
            Method::PUT,
            &unknown_sub,
            Some(json!({"location": "local", "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}}})),
        )
        .await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (404, Some("SubscriptionNotFound")), "{v}");
    let (st, v) = s.call(Method::GET, &format!("/subscriptions/{}/providers/Microsoft.Compute/virtualMachines?{API}", s.sub), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["value"], json!([]), "refused PUTs created nothing");
}
