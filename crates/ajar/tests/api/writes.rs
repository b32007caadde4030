//! Writes over real HTTPS that must not lose or half-apply anything: policy versions (`ETag`,
//! `If-Match`, `If-None-Match`), revokes of several machines as one, and lists that apply the caller's
//! scopes in the query so that every page is full.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{API, READER, Server, standard_policy, with_policy};

/// A PUT of the standard policy with these extra headers: status, body, and the `ETag` answered.
async fn put(s: &Server, headers: &[(&str, &str)], body: &Value) -> (StatusCode, Value, Option<String>) {
    let path = format!("{}?{API}", s.policy_path("default"));
    let bytes = Some(serde_json::to_vec(body).unwrap());
    let (st, v, h) = s.send_with(Method::PUT, &path, Some(&s.token), bytes, "application/json", headers).await;
    (st, v, h.get("etag").map(|e| e.to_str().unwrap().to_owned()))
}

async fn etag_of(s: &Server) -> String {
    let path = format!("{}?{API}", s.policy_path("default"));
    let (st, v, h) = s.send(Method::GET, &path, Some(&s.token), None, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let header = h.get("etag").unwrap().to_str().unwrap().to_owned();
    assert_eq!(v["etag"].as_str(), Some(header.as_str()), "the body's etag is the header's");
    header
}

#[tokio::test]
async fn policy_writes_are_conditional_on_their_version() {
    let s = with_policy(&[]).await;
    let first = etag_of(&s).await;
    let mut narrower = standard_policy(&s);
    narrower["properties"]["virtualMachines"][0]["ports"][0]["maxRequestAccessDuration"] = json!("PT30M");

    // Without If-Match, Azure's behaviour: the write goes ahead, and the version moves.
    let (st, v, second) = put(&s, &[], &standard_policy(&s)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let second = second.expect("a PUT answers its version");
    assert_ne!(second, first);

    // An edit based on the first version is refused with 412 and changes nothing.
    let before = s.activity("limit=1000").await.len();
    let (st, v, _) = put(&s, &[("If-Match", &first)], &narrower).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{v}");
    assert_eq!(v["error"]["code"], "PreconditionFailed", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(second.trim_matches('"')), "it names the version now: {v}");
    assert_eq!(etag_of(&s).await, second);
    let stored = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    assert_eq!(stored["properties"]["virtualMachines"][0]["ports"][0]["maxRequestAccessDuration"], "PT1H", "nothing changed");
    let log = s.activity("limit=1000").await;
    assert_eq!(log.len(), before + 1, "the refusal is on record");
    assert_eq!((log[0]["result"].as_str(), log[0]["errorCode"].as_str()), (Some("Failed"), Some("PreconditionFailed")), "{}", log[0]);

    // With the current version (quoted as the header gives it, or bare, or in a list), it goes ahead.
    for if_match in [second.clone(), format!("\"other\", {second}")] {
        let current = etag_of(&s).await;
        let if_match = if_match.replace(&second, &current);
        let (st, v, _) = put(&s, &[("If-Match", &if_match)], &narrower).await;
        assert_eq!(st, StatusCode::OK, "If-Match {if_match}: {v}");
    }
    let current = etag_of(&s).await;
    let (st, v, _) = put(&s, &[("If-Match", current.trim_matches('"'))], &narrower).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A GET's body sent back as it is (etag included) is accepted.
    let read = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    let (st, v, _) = put(&s, &[("If-Match", read["etag"].as_str().unwrap())], &read).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(put(&s, &[("If-Match", "*")], &narrower).await.0, StatusCode::OK, "If-Match: * on a policy that exists");
    assert_eq!(put(&s, &[("If-None-Match", "*")], &narrower).await.0, StatusCode::PRECONDITION_FAILED, "create-only on one that exists");
    // A weak tag never matches: writes compare strongly.
    let weak = format!("W/{}", etag_of(&s).await);
    assert_eq!(put(&s, &[("If-Match", &weak)], &narrower).await.0, StatusCode::PRECONDITION_FAILED);
    for (headers, target) in [
        (vec![("If-Match", "\"a\""), ("If-None-Match", "*")], "If-None-Match"),
        (vec![("If-None-Match", "\"a\"")], "If-None-Match"),
        (vec![("If-Match", " , ")], "If-Match"),
    ] {
        let (st, v, _) = put(&s, &headers, &narrower).await;
        assert_eq!((st, v["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some(target)), "{headers:?}: {v}");
    }

    // DELETE is conditional the same way.
    let path = format!("{}?{API}", s.policy_path("default"));
    let (st, v, _) = s.send_with(Method::DELETE, &path, Some(&s.token), None, "", &[("If-Match", &first)]).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{v}");
    let current = etag_of(&s).await;
    let (st, _, _) = s.send_with(Method::DELETE, &path, Some(&s.token), None, "", &[("If-Match", &current)]).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v, _) = put(&s, &[("If-Match", &current)], &narrower).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "a deleted policy matches no version: {v}");
    assert_eq!(put(&s, &[("If-None-Match", "*")], &narrower).await.0, StatusCode::OK, "create-only on nothing");
}

#[tokio::test]
async fn a_revoke_of_several_machines_ends_all_or_nothing_and_names_the_machine_refused() {
    let s = Server::start(&[]).await;
    for (name, address) in [("vm1", "10.0.0.4"), ("vm2", "10.0.0.5"), ("vm3", "10.0.0.6")] {
        s.add_vm(name, "Linux", &s.loc, address).await;
    }
    let port = json!({"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT1H"});
    let body =
        json!({"properties": {"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [port]}, {"id": s.vm_id("vm2"), "ports": [port]}]}});
    assert_eq!(s.put_policy("default", body).await.0, StatusCode::OK);
    let open = json!({"virtualMachines": [
        {"id": s.vm_id("vm1"), "ports": [{"number": 22, "duration": "PT10M", "allowedSourceAddressPrefix": "10.1.1.1"}]},
        {"id": s.vm_id("vm2"), "ports": [{"number": 22, "duration": "PT10M", "allowedSourceAddressPrefix": "10.1.1.1"}]}]});
    assert_eq!(s.initiate("default", open).await.0, StatusCode::ACCEPTED);
    let path = format!("{}/revoke?{API}", s.policy_path("default"));
    let revoke = |vms: Value| s.call(Method::POST, &path, Some(json!({"virtualMachines": vms})));
    let live = || s.stored_statuses().iter().filter(|(status, _)| status == "Initiated").count();

    for (vms, target) in [
        (
            json!([{"id": s.vm_id("vm1"), "ports": [{"number": 22}]}, {"id": s.vm_id("vm3"), "ports": [{"number": 22}]}]),
            "virtualMachines[1].id",
        ),
        (
            json!([{"id": s.vm_id("vm1"), "ports": [{"number": 22}]}, {"id": s.vm_id("vm2"), "ports": [{"number": 2222}]}]),
            "virtualMachines[1].ports[0].number",
        ),
    ] {
        let (st, v) = revoke(vms).await;
        assert_eq!((st, v["error"]["target"].as_str()), (StatusCode::BAD_REQUEST, Some(target)), "{v}");
        assert_eq!(live(), 2, "nothing ended: {v}");
    }
    let (st, v) =
        revoke(json!([{"id": s.vm_id("vm1"), "ports": [{"number": 22}]}, {"id": s.vm_id("vm2"), "ports": [{"number": 22}]}])).await;
    assert_eq!((st, v["revoked"].as_u64()), (StatusCode::OK, Some(2)), "{v}");
    assert_eq!(live(), 0);
    let log = s.activity("operation=Ajar/jitNetworkAccessPolicies/revoke/action").await;
    assert_eq!(log.iter().map(|e| e["result"].as_str().unwrap()).collect::<Vec<_>>(), ["Succeeded", "Failed", "Failed"]);
    assert!(log[1]["details"].to_string().contains("vm2"), "the refused machine is on record: {}", log[1]);
    // The one entry of the revoke is listed under each machine it ended grants on.
    for vm in ["vm1", "vm2"] {
        let listed =
            s.activity(&format!("vm={}&operation=Ajar/jitNetworkAccessPolicies/revoke/action&result=Succeeded", s.vm_id(vm))).await;
        assert_eq!(listed.len(), 1, "{vm}");
    }
}

/// Every page of a list, following `nextLink`, as `token` reads it.
async fn pages(s: &Server, token: &str, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    for _ in 0..50 {
        let Some(path) = next else { return pages };
        let (st, v, _) = s.send(Method::GET, &path, Some(token), None, "").await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        let names =
            v["value"].as_array().unwrap().iter().map(|i| i["name"].as_str().or(i["vm"]["name"].as_str()).unwrap_or("?").to_owned());
        pages.push(names.collect());
        next = v["nextLink"].as_str().map(str::to_owned);
    }
    panic!("{first}: more than 50 pages");
}

#[tokio::test]
async fn a_caller_who_may_see_a_few_machines_gets_them_in_full_pages() {
    let s = Server::start(&["--page-size", "2"]).await;
    for i in 0..12 {
        s.add_vm(&format!("m{i:02}"), "Linux", &s.loc, &format!("10.0.0.{}", 10 + i)).await;
    }
    // Policies p00 … p11, one machine each.
    for i in 0..12 {
        let port = json!({"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT1H"});
        let body = json!({"properties": {"virtualMachines": [{"id": s.vm_id(&format!("m{i:02}")), "ports": [port]}]}});
        assert_eq!(s.put_policy(&format!("p{i:02}"), body).await.0, StatusCode::OK);
    }
    // A Reader of three machines near the end of the key order.
    let (id, token) = s.principal("auditor").await;
    for vm in ["m07", "m09", "m11"] {
        s.assign_role(&id, READER, &s.vm_id(vm)).await;
    }
    let vms = format!("/subscriptions/{}/providers/Microsoft.Compute/virtualMachines?{API}", s.sub);
    assert_eq!(pages(&s, &token, &vms).await, [vec!["m07", "m09"], vec!["m11"]]);
    let policies = format!("/subscriptions/{}/providers/Microsoft.Security/jitNetworkAccessPolicies?{API}", s.sub);
    assert_eq!(pages(&s, &token, &policies).await, [vec!["p07", "p09"], vec!["p11"]], "policies seen through their machines");
    let status = format!("/ajar/v1/subscriptions/{}/jitStatus?state=Configured", s.sub);
    assert_eq!(pages(&s, &token, &status).await.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    // The admin sees all of it, two at a time.
    assert_eq!(pages(&s, &s.token, &vms).await.len(), 6);
}
