//! The agent protocol over real HTTPS: enrolment, a credential that reaches
//! only its own machine, desired state that follows grants at once, reports,
//! and early revoke.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{API, Server};

async fn desired(s: &Server, token: &str, query: &str) -> Value {
    let (st, v, _) = s.send(Method::GET, &format!("/ajar/v1/agent/desiredState?{query}"), Some(token), None, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn agents_enrol_follow_their_desired_state_and_report() {
    let s = Server::start(&[]).await;
    // Only the join token enrols; the admin token does not.
    let body = serde_json::to_vec(&json!({"name": "web1", "osType": "Linux", "version": "0.1.0", "nftables": {"usable": true}})).unwrap();
    let (st, v, _) = s.send(Method::POST, "/ajar/v1/agents/enroll", Some(&s.token), Some(body), "application/json").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, enrolled) = s.enroll_agent("web1", true).await;
    assert_eq!(st, StatusCode::CREATED, "{enrolled}");
    assert_eq!(enrolled["vmId"], s.vm_id("web1"));
    let token = enrolled["token"].as_str().unwrap().to_owned();
    // A second enrolment for the same machine is refused: a leaked join token cannot take it over.
    let (st, v) = s.enroll_agent("web1", true).await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (409, Some("Conflict")), "{v}");
    // The agent's credential is not an API credential.
    let (st, _, _) = s.send(Method::GET, &format!("/subscriptions?{API}"), Some(&token), None, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Served by an agent and not in a policy: Not configured.
    let status = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub)).await;
    assert_eq!(status["value"][0]["state"], "NotConfigured");
    assert_eq!(status["value"][0]["enforcement"], "agent");
    assert_eq!(status["value"][0]["agent"]["online"], true);

    let empty = desired(&s, &token, "").await;
    assert_eq!((empty["protected"].clone(), empty["grants"].clone()), (json!([]), json!([])));
    let (st, v) = s.call(Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": [s.vm_id("web1")]}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let protected = desired(&s, &token, "").await;
    assert_eq!(protected["protected"], json!([{"number": 22, "protocol": "TCP"}]));
    assert_ne!(protected["etag"], empty["etag"]);

    // A waiting agent hears of a grant as soon as it is stored, not at the end of its wait.
    let etag = protected["etag"].as_str().unwrap().to_owned();
    let waiter = {
        let (url, token) = (format!("/ajar/v1/agent/desiredState?etag={etag}&waitSeconds=25"), token.clone());
        let s2 = s.client_clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let v = s2.get_json(&url, &token).await;
            (started.elapsed(), v)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({"virtualMachines": [{"id": s.vm_id("web1"), "ports": [{"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "10.1.2.3"}]}]});
    let (st, request) = s.initiate("default", body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{request}");
    let (waited, granted) = waiter.await.unwrap();
    assert!(waited < Duration::from_secs(10), "the wait ended with the grant, not its timeout ({waited:?})");
    let grant = &granted["grants"][0];
    assert_eq!((grant["number"].as_u64(), grant["allowedSourceAddressPrefixes"].clone()), (Some(22), json!(["10.1.2.3"])));
    assert!(grant["remainingMs"].as_u64().unwrap() > 3_500_000);
    // With an unchanged etag and no wait, the same state comes back at once.
    assert_eq!(desired(&s, &token, &format!("etag={}", granted["etag"].as_str().unwrap())).await["etag"], granted["etag"]);

    // The report: applied state, and a repaired drift, which is logged.
    let report = json!({"version": "0.1.0", "nftables": {"usable": true}, "addresses": ["10.0.0.4"], "appliedEtag": granted["etag"], "driftRepaired": "table inet ajar was flushed"});
    let (st, v, _) =
        s.send(Method::POST, "/ajar/v1/agent/report", Some(&token), Some(serde_json::to_vec(&report).unwrap()), "application/json").await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let status = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub)).await;
    assert_eq!(status["value"][0]["agent"]["inSync"], true);
    assert_eq!(status["value"][0]["liveGrants"][0]["applied"], true, "the server shows the grant applied on the machine");
    let drift =
        s.activity("limit=20").await.into_iter().find(|e| e["operation"] == "Ajar/agents/driftRepaired/action").expect("drift logged");
    assert_eq!(drift["resourceId"], s.vm_id("web1"));

    // Early revoke ends the grant now; the agent's state no longer has it.
    let revoke = json!({"virtualMachines": [{"id": s.vm_id("web1"), "ports": [{"number": 22}]}]});
    let (st, v) = s.call(Method::POST, &format!("{}/revoke?{API}", s.policy_path("default")), Some(revoke)).await;
    assert_eq!((st, v["revoked"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    assert_eq!(desired(&s, &token, "").await["grants"], json!([]));
    let policy = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    let port = &policy["properties"]["requests"][0]["virtualMachines"][0]["ports"][0];
    assert_eq!((port["status"].as_str(), port["statusReason"].as_str()), (Some("Revoked"), Some("UserRequested")));
    let status = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub)).await;
    assert_eq!(status["value"][0]["agent"]["inSync"], false, "what was applied is no longer what is wanted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_agent_does_not_hold_up_shutdown() {
    let mut s = Server::start(&[]).await;
    let (st, enrolled) = s.enroll_agent("web1", true).await;
    assert_eq!(st, StatusCode::CREATED, "{enrolled}");
    let token = enrolled["token"].as_str().unwrap().to_owned();
    let etag = desired(&s, &token, "").await["etag"].as_str().unwrap().to_owned();
    let waiter = {
        let (url, token) = (format!("/ajar/v1/agent/desiredState?etag={etag}&waitSeconds=25"), token.clone());
        let s2 = s.client_clone();
        tokio::spawn(async move { s2.get_json(&url, &token).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGTERM: the long-poll answers at once (with the state as it is), so the
    // server stops promptly instead of waiting out its drain timeout.
    let started = Instant::now();
    tokio::task::block_in_place(|| s.stop());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the server took {took:?} to stop with an agent waiting");
    assert_eq!(waiter.await.unwrap()["etag"], etag.as_str());
}

#[tokio::test]
async fn a_machine_without_nftables_is_unsupported() {
    let s = Server::start(&[]).await;
    let (st, v) = s.enroll_agent("box", false).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let status = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub)).await;
    assert_eq!(status["value"][0]["state"], "Unsupported");
    assert_eq!(status["value"][0]["unsupportedReason"]["code"], "NftablesUnusable");
    assert_eq!(status["value"][0]["agent"]["nftablesUnusable"], "nft: Operation not permitted");
    // Bad enrolments are refused and logged.
    let join = s.join_token();
    let bad = serde_json::to_vec(&json!({"name": "x y", "osType": "Linux", "version": "1", "nftables": {"usable": true}})).unwrap();
    let (st, v, _) = s.send(Method::POST, "/ajar/v1/agents/enroll", Some(&join), Some(bad), "application/json").await;
    assert_eq!((st.as_u16(), v["error"]["target"].as_str()), (400, Some("name")), "{v}");
    let (st, _, _) = s.send(Method::GET, "/ajar/v1/agent/desiredState", Some("ajaragent_forged"), None, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn removing_a_machine_removes_its_agent() {
    let s = Server::start(&[]).await;
    let (st, first) = s.enroll_agent("web1", true).await;
    assert_eq!(st, StatusCode::CREATED, "{first}");
    let token = first["token"].as_str().unwrap().to_owned();
    assert_eq!(s.call(Method::DELETE, &format!("{}?{API}", s.vm_id("web1")), None).await.0, StatusCode::OK);
    let (st, _, _) = s.send(Method::GET, "/ajar/v1/agent/desiredState", Some(&token), None, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the old credential no longer works");
    let (st, again) = s.enroll_agent("web1", true).await;
    assert_eq!(st, StatusCode::CREATED, "the machine can be enrolled again: {again}");
}
