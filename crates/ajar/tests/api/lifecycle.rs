//! Requests over time: superseding, expiry (also across restarts), durability,
//! JIT status, enabling with defaults, and the activity log's CSV.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{API, with_policy};

fn rdp_request(s: &crate::common::Server, duration: &str, justification: &str) -> Value {
    json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [{"number": 3389, "duration": duration}]}], "justification": justification})
}

fn port_statuses(policy: &Value) -> Vec<(String, String)> {
    policy["properties"]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["virtualMachines"][0]["ports"].as_array().unwrap().clone())
        .map(|p| (p["status"].as_str().unwrap().to_owned(), p["statusReason"].as_str().unwrap().to_owned()))
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

/// Polls `f` every 100 ms until it is true, for at most `limit`.
async fn within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn newer_request_supersedes_older_one() {
    let s = with_policy(&[]).await;
    let path = format!("{}?{API}", s.policy_path("default"));
    assert_eq!(s.initiate("default", rdp_request(&s, "PT1H", "first")).await.0, StatusCode::ACCEPTED);
    assert_eq!(s.initiate("default", rdp_request(&s, "PT2H", "second")).await.0, StatusCode::ACCEPTED);
    let policy = s.get(&path).await;
    assert_eq!(port_statuses(&policy), [pair("Revoked", "NewerRequestInitiated"), pair("Initiated", "UserRequested")]);
    let requests = policy["properties"]["requests"].as_array().unwrap();
    assert_eq!((requests[0]["justification"].as_str(), requests[1]["justification"].as_str()), (Some("first"), Some("second")));
    // Tightening the policy revokes the live grant it no longer allows.
    let mut narrower = crate::common::standard_policy(&s);
    narrower["properties"]["virtualMachines"][0]["ports"][1]["maxRequestAccessDuration"] = json!("PT1H");
    assert_eq!(s.put_policy("default", narrower).await.0, StatusCode::OK);
    let policy = s.get(&path).await;
    assert_eq!(port_statuses(&policy), [pair("Revoked", "NewerRequestInitiated"), pair("Revoked", "UserRequested")]);
}

#[tokio::test]
async fn status_flips_to_expired_at_end_time_without_readers_and_across_restarts() {
    let mut s = with_policy(&[]).await;
    // Nobody reads between the request and its end: the store itself must flip it.
    assert_eq!(s.initiate("default", rdp_request(&s, "PT2S", "short")).await.0, StatusCode::ACCEPTED);
    assert_eq!(s.stored_statuses(), [pair("Initiated", "UserRequested")]);
    let flipped = within(Duration::from_secs(2) + Duration::from_secs(4), || s.stored_statuses() == [pair("Revoked", "Expired")]).await;
    assert!(flipped, "the stored status did not become Revoked/Expired: {:?}", s.stored_statuses());
    // A grant that ends while the server is down is expired when it comes back.
    assert_eq!(s.initiate("default", rdp_request(&s, "PT2S", "across a restart")).await.0, StatusCode::ACCEPTED);
    s.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.stored_statuses()[1], pair("Initiated", "UserRequested"), "still live in the store while the server is down");
    s.relaunch();
    let caught_up =
        within(Duration::from_secs(5), || s.stored_statuses() == [pair("Revoked", "Expired"), pair("Revoked", "Expired")]).await;
    assert!(caught_up, "{:?}", s.stored_statuses());
    let policy = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    assert_eq!(port_statuses(&policy), [pair("Revoked", "Expired"), pair("Revoked", "Expired")]);
}

#[tokio::test]
async fn acknowledged_data_survives_restarts_and_kill_9() {
    let mut s = with_policy(&[]).await;
    let (st, request) = s.initiate("default", rdp_request(&s, "PT1H", "before the crash")).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{request}");
    // SIGKILL right after the 202: what was acknowledged is on disk.
    s.kill9();
    s.relaunch();
    let path = format!("{}?{API}", s.policy_path("default"));
    let policy = s.get(&path).await;
    assert_eq!(policy["properties"]["requests"][0], request, "the request is kept exactly");
    assert_eq!(port_statuses(&policy), [pair("Initiated", "UserRequested")]);
    // A graceful restart keeps everything too, and the same credentials still work.
    let token = s.token.clone();
    s.restart();
    assert_eq!(s.token, token, "later starts reuse the bootstrap tokens");
    assert_eq!(s.get(&path).await, policy);
    let vms = s.get(&format!("/subscriptions/{}/providers/Microsoft.Compute/virtualMachines?{API}", s.sub)).await;
    assert_eq!(vms["value"].as_array().unwrap().len(), 2);
    let log = s.activity("limit=100").await;
    assert!(
        log.iter().any(
            |e| e["operation"] == "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action" && e["result"] == "Succeeded"
        )
    );
}

#[tokio::test]
async fn bootstrap_file_is_private_and_complete() {
    use std::os::unix::fs::PermissionsExt;
    let s = with_policy(&[]).await;
    let path = s.data_dir().join("bootstrap.json");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let boot: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for key in ["url", "ca", "subscriptionId", "resourceGroup", "location", "adminToken", "joinToken"] {
        assert!(boot[key].as_str().is_some_and(|v| !v.is_empty()), "{key}");
    }
    assert_eq!((boot["resourceGroup"].as_str(), boot["location"].as_str()), (Some("default"), Some("local")));
    // The join token only enrols agents: it is not an API credential.
    let (st, _, _) = s.send(Method::GET, "/ajar/v1/activity", boot["joinToken"].as_str(), None, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Recent writes sit in the write-ahead log, so look there too.
    let admin = boot["adminToken"].as_str().unwrap();
    for file in ["ajar.db", "ajar.db-wal", "ajar.db-shm"] {
        let bytes = std::fs::read(s.data_dir().join(file)).unwrap_or_default();
        assert!(!bytes.windows(admin.len()).any(|w| w == admin.as_bytes()), "tokens are stored hashed ({file})");
    }
}

#[tokio::test]
async fn jit_status_and_enable_with_defaults() {
    let s = with_policy(&[]).await;
    assert_eq!(s.initiate("default", rdp_request(&s, "PT1H", "status check")).await.0, StatusCode::ACCEPTED);
    let status = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub)).await;
    let by_name = |v: &Value, name: &str| v["value"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned().unwrap();
    let vm1 = by_name(&status, "vm1");
    assert_eq!(vm1["state"], "Configured");
    assert_eq!(vm1["approvedRequestsLast7Days"], 1);
    assert_eq!(vm1["lastUser"], "admin");
    assert!(vm1["lastAccessTimeUtc"].is_string());
    assert_eq!(vm1["connection"]["address"], "10.0.0.4");
    assert_eq!(vm1["connection"]["ports"].as_array().unwrap().len(), 2);
    assert_eq!(vm1["liveGrants"][0]["number"], 3389);
    assert_eq!(by_name(&status, "vm2")["state"], "Unsupported");
    let configured = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus?state=Configured", s.sub)).await;
    assert_eq!(configured["value"].as_array().unwrap().len(), 1);

    let recommended = s.get("/ajar/v1/recommendedPorts").await;
    let numbers: Vec<u64> = recommended["recommended"].as_array().unwrap().iter().map(|p| p["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [22, 3389, 5985, 5986]);
    assert_eq!(recommended["defaults"]["Linux"][0]["number"], 22);
    assert_eq!(recommended["defaults"]["Windows"][0]["number"], 3389);

    // Enable with defaults: Windows → 3389, three hours, any source, in the RG's "default" policy.
    let (st, v) = s.call(Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": [s.vm_id("vm2")]}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let policy = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    let vms = policy["properties"]["virtualMachines"].as_array().unwrap();
    assert_eq!(vms.len(), 2, "added beside vm1, not replacing it");
    assert_eq!(
        vms[1]["ports"],
        json!([{"number": 3389, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}])
    );
    // Enabling again is refused, and changes nothing.
    let (st, v) = s.call(Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": [s.vm_id("vm2")]}))).await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (400, Some("VirtualMachineInAnotherPolicy")), "{v}");
    assert_eq!(s.get(&format!("{}?{API}", s.policy_path("default"))).await, policy);
}

#[tokio::test]
async fn activity_log_queries_and_csv() {
    let s = with_policy(&[]).await;
    let justification = "=HYPERLINK(\"http://x\"), \"quoted\"\nsecond line";
    assert_eq!(s.initiate("default", rdp_request(&s, "PT1H", justification)).await.0, StatusCode::ACCEPTED);
    let refused = json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [{"number": 80, "duration": "PT1H"}]}]});
    assert_eq!(s.initiate("default", refused).await.0, StatusCode::BAD_REQUEST);

    let vm1 = urlencode(&s.vm_id("vm1"));
    let entries = s.activity(&format!("vm={vm1}")).await;
    let ops: Vec<(&str, &str)> = entries.iter().map(|e| (e["operation"].as_str().unwrap(), e["result"].as_str().unwrap())).collect();
    assert_eq!(
        ops,
        [
            ("Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action", "Failed"),
            ("Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action", "Succeeded"),
            ("Microsoft.Security/locations/jitNetworkAccessPolicies/write", "Succeeded"),
            ("Microsoft.Compute/virtualMachines/write", "Succeeded"),
        ],
        "newest first, everything about vm1"
    );
    assert_eq!(entries[0]["errorCode"], "InvalidInitiateInput");
    assert_eq!(entries[1]["callerAddress"], "127.0.0.1");
    assert!(entries[1]["details"].as_array().unwrap().iter().any(|d| d["name"] == "justification" && d["value"] == justification));
    assert_eq!(s.activity(&format!("vm={}", urlencode(&s.vm_id("vm2")))).await.len(), 1, "vm2 was only added");
    assert_eq!(s.activity("caller=nobody").await.len(), 0);
    assert_eq!(s.activity("since=2999-01-01T00:00:00Z").await.len(), 0);
    assert_eq!(s.activity("until=2000-01-01T00:00:00Z").await.len(), 0);
    assert_eq!(s.activity("limit=2").await.len(), 2);
    let (st, v) = s.call(Method::GET, "/ajar/v1/activity?since=yesterday", None).await;
    assert_eq!((st.as_u16(), v["error"]["target"].as_str()), (400, Some("since")), "{v}");

    let (st, csv, headers) = s.send(Method::GET, &format!("/ajar/v1/activity?vm={vm1}&format=csv"), Some(&s.token), None, "").await;
    assert_eq!(st, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.as_str().unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header[0], "Time (UTC)");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), entries.len(), "one row per entry, whatever the justification holds");
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let j = header.iter().position(|h| h == "Justification").unwrap();
    assert_eq!(&rows[1][j], format!("'{justification}"), "a formula is neutralised, the text kept whole");
}

fn urlencode(s: &str) -> String {
    url_escape(s)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
