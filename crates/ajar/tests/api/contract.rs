//! The wire contract: Azure's own examples, every operation's status codes,
//! paging, authentication, and the transport-level errors.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{API, Server};

const EXAMPLE_SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";

fn example(name: &str) -> Value {
    let path = format!("{}/../ajar-api/tests/azure-examples/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// The set of JSON paths (object keys, arrays collapsed) in a value.
/// Every field path of a JSON value, without a policy's `etag` (ajar's version of it, an ARM field
/// Azure's JIT policies do not carry).
fn shape(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, at: String, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m.iter().filter(|(k, _)| !(k.as_str() == "etag" && m.contains_key("properties"))) {
                    let p = format!("{at}/{k}");
                    out.insert(p.clone());
                    walk(v, p, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, format!("{at}[]"), out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, String::new(), &mut out);
    out
}

async fn example_server() -> Server {
    let s = Server::start(&["--subscription-id", EXAMPLE_SUB, "--resource-group", "myRg1", "--location", "westeurope"]).await;
    s.add_vm("vm1", "Windows", "westeurope", "10.0.0.4").await;
    s
}

#[tokio::test]
async fn azure_examples_are_accepted_and_answered_in_kind() {
    let s = example_server().await;
    // Create: the example body (read-only fields and a forged request history included) → 200 with the example's fields.
    let create = example("CreateJitNetworkAccessPolicy_example.json");
    let p = &create["parameters"];
    let path = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Security/locations/{}/jitNetworkAccessPolicies/{}?{API}",
        p["subscriptionId"].as_str().unwrap(),
        p["resourceGroupName"].as_str().unwrap(),
        p["ascLocation"].as_str().unwrap(),
        p["jitNetworkAccessPolicyName"].as_str().unwrap()
    );
    let (st, created) = s.call(Method::PUT, &path, Some(p["body"].clone())).await;
    assert_eq!(st, StatusCode::OK, "{created}");
    let expected = &create["responses"]["200"]["body"];
    for field in ["id", "name", "type", "location", "kind"] {
        assert_eq!(created[field], expected[field], "{field}");
    }
    assert_eq!(created["properties"]["virtualMachines"], expected["properties"]["virtualMachines"]);
    assert_eq!(created["properties"]["provisioningState"], "Succeeded");
    assert_eq!(created["properties"]["requests"], json!([]), "request history is the server's, not the client's");

    // The older example without read-only fields is accepted too.
    let alt = example("alt-CreateJitNetworkAccessPolicy_example.json");
    let (st, v) = s.call(Method::PUT, &path, Some(alt["parameters"]["body"].clone())).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Initiate with `duration` (the service's form) → 202 with the example's fields.
    let initiate = example("InitiateJitNetworkAccessPolicy_example.json");
    let initiate_path = path.replace(&format!("?{API}"), &format!("/initiate?{API}"));
    let (st, request) = s.call(Method::POST, &initiate_path, Some(initiate["parameters"]["body"].clone())).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{request}");
    let expected = &initiate["responses"]["202"]["body"];
    assert_eq!(shape(&request), shape(expected));
    let port = &request["virtualMachines"][0]["ports"][0];
    assert_eq!((port["status"].as_str(), port["statusReason"].as_str()), (Some("Initiated"), Some("UserRequested")));
    assert_eq!(request["requestor"], "admin");
    assert_eq!(request["justification"], expected["justification"]);
    let start =
        time::OffsetDateTime::parse(request["startTimeUtc"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    let end = time::OffsetDateTime::parse(port["endTimeUtc"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(end - start, time::Duration::hours(1), "duration PT1H");

    // Initiate with `endTimeUtc` (the spec's form), moved into the future.
    let mut alt = example("alt-InitiateJitNetworkAccessPolicy_example.json")["parameters"]["body"].clone();
    let end = time::OffsetDateTime::now_utc() + time::Duration::minutes(30);
    alt["virtualMachines"][0]["ports"][0]["endTimeUtc"] = json!(end.format(&time::format_description::well_known::Rfc3339).unwrap());
    let (st, v) = s.call(Method::POST, &initiate_path, Some(alt)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");

    // Get and the four lists carry the example's fields, now with request history.
    let get = example("GetJitNetworkAccessPolicy_example.json");
    let got = s.get(&path).await;
    assert_eq!(shape(&got), shape(&get["responses"]["200"]["body"]));
    assert!(got["etag"].as_str().is_some_and(|e| e.len() > 2 && e.starts_with('"') && e.ends_with('"')), "{got}");
    for (file, list_path) in [
        (
            "GetJitNetworkAccessPoliciesSubscription_example.json",
            format!("/subscriptions/{EXAMPLE_SUB}/providers/Microsoft.Security/jitNetworkAccessPolicies?{API}"),
        ),
        (
            "GetJitNetworkAccessPoliciesSubscriptionLocation_example.json",
            format!("/subscriptions/{EXAMPLE_SUB}/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies?{API}"),
        ),
        (
            "GetJitNetworkAccessPoliciesResourceGroup_example.json",
            format!("/subscriptions/{EXAMPLE_SUB}/resourceGroups/myRg1/providers/Microsoft.Security/jitNetworkAccessPolicies?{API}"),
        ),
        (
            "GetJitNetworkAccessPoliciesResourceGroupLocation_example.json",
            format!(
                "/subscriptions/{EXAMPLE_SUB}/resourceGroups/myRg1/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies?{API}"
            ),
        ),
    ] {
        let listed = s.get(&list_path).await;
        assert_eq!(shape(&listed), shape(&example(file)["responses"]["200"]["body"]), "{file}");
        assert_eq!(listed["value"][0]["id"], got["id"], "{file}");
    }
    // Delete: 200, then 204 once it is gone; get is then 404 PolicyNotFound.
    for expected in [StatusCode::OK, StatusCode::NO_CONTENT] {
        let (st, v) = s.call(Method::DELETE, &path, None).await;
        assert_eq!(st, expected, "{v}");
        assert_eq!(v, Value::Null, "no body");
    }
    let (st, v) = s.call(Method::GET, &path, None).await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (404, Some("PolicyNotFound")), "{v}");
}

#[tokio::test]
async fn lists_are_scoped_and_paged() {
    let s = Server::start(&["--page-size", "2"]).await;
    let names = ["a1", "a2", "a3", "a4", "a5"];
    for (i, name) in names.iter().enumerate() {
        let loc = if i % 2 == 0 { s.loc.clone() } else { "east".to_owned() };
        s.add_vm(name, "Linux", &loc, "10.0.0.9").await;
        let path = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies/p{name}?{API}",
            s.sub, s.rg
        );
        let body = json!({"properties": {"virtualMachines": [{"id": s.vm_id(name), "ports": [{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT1H"}]}]}});
        let (st, v) = s.call(Method::PUT, &path, Some(body)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    async fn walk(s: &Server, first: String) -> (Vec<String>, usize) {
        let (mut next, mut names, mut pages) = (Some(first), Vec::new(), 0);
        while let Some(url) = next {
            pages += 1;
            assert!(pages <= 10, "paging does not end");
            let page = s.get(&url).await;
            assert!(page["value"].as_array().unwrap().len() <= 2);
            names.extend(page["value"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()));
            next = page["nextLink"].as_str().map(str::to_owned);
        }
        (names, pages)
    }
    let jit = "providers/Microsoft.Security";
    let (all, pages) = walk(&s, format!("/subscriptions/{}/{jit}/jitNetworkAccessPolicies?{API}", s.sub)).await;
    assert_eq!((all.len(), pages), (5, 3), "{all:?}");
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 5, "no duplicates across pages");
    let (east, _) = walk(&s, format!("/subscriptions/{}/{jit}/locations/east/jitNetworkAccessPolicies?{API}", s.sub)).await;
    assert_eq!(east, ["pa2", "pa4"]);
    let (in_rg, _) = walk(&s, format!("/subscriptions/{}/resourceGroups/{}/{jit}/jitNetworkAccessPolicies?{API}", s.sub, s.rg)).await;
    assert_eq!(in_rg.len(), 5);
    let (rg_loc, _) =
        walk(&s, format!("/subscriptions/{}/resourceGroups/{}/{jit}/locations/{}/jitNetworkAccessPolicies?{API}", s.sub, s.rg, s.loc))
            .await;
    assert_eq!(rg_loc, ["pa1", "pa3", "pa5"]);
    let (other_rg, _) = walk(&s, format!("/subscriptions/{}/resourceGroups/elsewhere/{jit}/jitNetworkAccessPolicies?{API}", s.sub)).await;
    assert!(other_rg.is_empty());
    // The VM inventory pages the same way.
    let mut next = Some(format!("/subscriptions/{}/providers/Microsoft.Compute/virtualMachines?{API}", s.sub));
    let mut vms = Vec::new();
    while let Some(url) = next.take() {
        let page = s.get(&url).await;
        vms.extend(page["value"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_owned()));
        next = page["nextLink"].as_str().map(str::to_owned);
        assert!(vms.len() <= 5);
    }
    assert_eq!(vms, names);
    let (st, v) = s.call(Method::GET, &format!("/subscriptions/{}/{jit}/jitNetworkAccessPolicies?{API}&$skipToken=%%%", s.sub), None).await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (400, Some("InvalidSkipToken")), "{v}");
    let (st, v) = s
        .call(Method::GET, &format!("/subscriptions/00000000-0000-0000-0000-000000000000/{jit}/jitNetworkAccessPolicies?{API}"), None)
        .await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (404, Some("SubscriptionNotFound")), "{v}");
}

#[tokio::test]
async fn vm_inventory_operations() {
    let s = Server::start(&[]).await;
    let path = format!("{}?{API}", s.vm_id("web1"));
    let body = json!({"location": s.loc, "properties": {"storageProfile": {"osDisk": {"osType": "linux"}}, "networkProfile": {"privateIPAddresses": ["10.0.0.4", "fd00::4"]}}});
    let (st, created) = s.call(Method::PUT, &path, Some(body.clone())).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert_eq!(created["properties"]["storageProfile"]["osDisk"]["osType"], "Linux");
    assert_eq!(created["type"], "Microsoft.Compute/virtualMachines");
    let (st, _) = s.call(Method::PUT, &path, Some(body)).await;
    assert_eq!(st, StatusCode::OK, "a second PUT updates");
    let got = s.get(&path).await;
    assert_eq!(got["properties"]["networkProfile"]["privateIPAddresses"], json!(["10.0.0.4", "fd00::4"]));
    assert_eq!(got["id"], s.vm_id("web1"));
    // Case does not matter in ARM paths or names.
    let shouty = path.replace("resourceGroups", "RESOURCEGROUPS").replace("virtualMachines", "virtualmachines").replace("web1", "WEB1");
    assert_eq!(s.get(&shouty).await["id"], got["id"]);
    let rg_list =
        s.get(&format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines?{API}", s.sub, s.rg)).await;
    assert_eq!(rg_list["value"].as_array().unwrap().len(), 1);
    let subs = s.get(&format!("/subscriptions?{API}")).await;
    assert_eq!(subs["value"][0]["subscriptionId"], s.sub.as_str());
    // Inventory-only machines are Unsupported: nothing enforces JIT on them yet.
    let status = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub)).await;
    assert_eq!(status["value"][0]["state"], "Unsupported");
    assert_eq!(status["value"][0]["unsupportedReason"]["code"], "NoEnforcementPoint");
    // A machine in a policy cannot be deleted; once out of it, it can, once.
    let policy = format!("{}?{API}", s.policy_path("default"));
    let (st, v) = s
        .call(Method::PUT, &policy, Some(json!({"properties": {"virtualMachines": [{"id": s.vm_id("web1"), "ports": [{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT1H"}]}]}})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.call(Method::DELETE, &path, None).await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (409, Some("VirtualMachineInUse")), "{v}");
    assert_eq!(s.call(Method::DELETE, &policy, None).await.0, StatusCode::OK);
    assert_eq!(s.call(Method::DELETE, &path, None).await.0, StatusCode::OK);
    assert_eq!(s.call(Method::DELETE, &path, None).await.0, StatusCode::NO_CONTENT);
    let (st, v) = s.call(Method::GET, &path, None).await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (404, Some("ResourceNotFound")), "{v}");
}

#[tokio::test]
async fn transport_errors_are_arm_errors() {
    let s = Server::start(&["--max-body-bytes", "4096"]).await;
    let policy = s.policy_path("default");
    let jit_list = format!("/subscriptions/{}/providers/Microsoft.Security/jitNetworkAccessPolicies", s.sub);
    let token = s.token.clone();
    // (method, path, token, body, content type, status, code)
    type Exchange<'a> = (Method, String, Option<&'a str>, Option<Vec<u8>>, &'a str, u16, &'a str);
    let cases: Vec<Exchange> = vec![
        (Method::GET, format!("{jit_list}?{API}"), None, None, "", 401, "AuthenticationFailed"),
        (Method::GET, format!("{jit_list}?{API}"), Some("ajar_not-a-real-token"), None, "", 401, "InvalidAuthenticationToken"),
        (Method::GET, "/ajar/v1/activity".to_owned(), None, None, "", 401, "AuthenticationFailed"),
        (Method::GET, jit_list.clone(), Some(&token), None, "", 400, "MissingApiVersionParameter"),
        (Method::GET, format!("{jit_list}?api-version=2015-06-01-preview"), Some(&token), None, "", 400, "InvalidApiVersionParameter"),
        (Method::GET, "/no/such/thing".to_owned(), Some(&token), None, "", 404, "NotFound"),
        (Method::PATCH, format!("{policy}?{API}"), Some(&token), None, "", 405, "MethodNotAllowed"),
        (Method::PUT, format!("{policy}?{API}"), Some(&token), Some(b"{}".to_vec()), "text/plain", 415, "UnsupportedMediaType"),
        (Method::PUT, format!("{policy}?{API}"), Some(&token), Some(vec![b' '; 8192]), "application/json", 413, "RequestEntityTooLarge"),
        (
            Method::POST,
            format!("{policy}/initiate?{API}"),
            Some(&token),
            Some(b"not json".to_vec()),
            "application/json",
            400,
            "InvalidInitiateInput",
        ),
    ];
    for (method, path, token, body, ctype, status, code) in cases {
        let (st, v, headers) = s.send(method.clone(), &path, token, body, ctype).await;
        assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (status, Some(code)), "{method} {path}: {v}");
        assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"), "{method} {path}");
        if status == 401 {
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
    }
    // Health and the API description need no token.
    let (st, v, _) = s.send(Method::GET, "/healthz", None, None, "").await;
    assert_eq!((st, v), (StatusCode::OK, Value::String("ok".into())));
    // Refused authentications are on record, without the token.
    let refused: Vec<Value> = s.activity("limit=100").await.into_iter().filter(|e| e["operation"] == "Ajar/authenticate").collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused.iter().all(|e| e["result"] == "Failed" && e["callerAddress"] == "127.0.0.1"));
    assert!(!serde_json::to_string(&refused).unwrap().contains("not-a-real-token"), "tokens never reach the log");
}

/// Writes `head` and then all of `body` before reading anything, as many HTTP clients do, over a TLS
/// connection of its own to `s`, and returns the answer's status line; an error if the connection
/// broke while the client was still sending or before the answer arrived.
fn send_whole_then_read(s: &Server, head: &str, body: &[u8]) -> std::io::Result<String> {
    use rustls_pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(s.ca_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = s.url.strip_prefix("https://").unwrap();
    let name = rustls_pki_types::ServerName::try_from(addr.rsplit_once(':').unwrap().0.to_owned()).unwrap();
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(std::time::Duration::from_secs(10)))?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(head.as_bytes())?;
    for chunk in body.chunks(16 * 1024) {
        tls.write_all(chunk)?;
    }
    tls.flush()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Up to the status line; the rest does not matter.
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match tls.read(&mut buf)? {
            0 => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before answering")),
            n => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// A refusal decided before the body is needed (no api-version, a method the path lacks, no such path,
/// not JSON) still reaches a client that sends its whole body first: the server reads the body before
/// answering, so it never closes the connection with the body in flight, which the client would see
/// as a reset instead of the answer.
#[tokio::test]
async fn early_refusals_reach_a_client_still_sending() {
    let s = Server::start(&[]).await;
    let policy = s.policy_path("default");
    let body = format!("{{\"properties\": \"{}\"}}", "x".repeat(256 * 1024)).into_bytes();
    let cases = [
        ("PUT", policy.clone(), "application/json", "400"),
        ("DELETE", format!("{policy}/revoke?{API}"), "application/json", "405"),
        ("POST", "/no/such/thing".to_owned(), "application/json", "404"),
        ("PUT", format!("{policy}?{API}"), "text/plain", "415"),
    ];
    let s = std::sync::Arc::new(s);
    for (method, path, ctype, status) in cases {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            s.url.strip_prefix("https://").unwrap(),
            s.token,
            body.len()
        );
        for _ in 0..10 {
            let (server, head, body) = (std::sync::Arc::clone(&s), head.clone(), body.clone());
            let answer = tokio::task::spawn_blocking(move || send_whole_then_read(&server, &head, &body)).await.unwrap();
            let line = answer.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert!(line.starts_with(&format!("HTTP/1.1 {status} ")), "{method} {path}: {line}");
        }
    }
}

/// A body the document calls optional (the requester role's) may be left out, Content-Type and all.
#[tokio::test]
async fn an_optional_body_may_be_left_out() {
    let s = Server::start(&[]).await;
    let (st, v, _) = s.send(Method::POST, "/ajar/v1/roles/requester", Some(&s.token), None, "").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["properties"]["roleName"], "JIT Network Access Requester (custom)");
    // A body that is there is JSON.
    let (st, v, _) = s.send(Method::POST, "/ajar/v1/roles/requester", Some(&s.token), Some(b"name=x".to_vec()), "text/plain").await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (415, Some("UnsupportedMediaType")), "{v}");
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let s = Server::start(&[]).await;
    let (st, doc, _) = s.send(Method::GET, "/openapi.json", None, None, "").await;
    assert_eq!(st, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    let served = [
        ("get", "/subscriptions"),
        ("get", "/subscriptions/{subscriptionId}/providers/Microsoft.Security/jitNetworkAccessPolicies"),
        ("get", "/subscriptions/{subscriptionId}/providers/Microsoft.Security/locations/{ascLocation}/jitNetworkAccessPolicies"),
        ("get", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/jitNetworkAccessPolicies"),
        (
            "get",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/jitNetworkAccessPolicies",
        ),
        (
            "get",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/jitNetworkAccessPolicies/{jitNetworkAccessPolicyName}",
        ),
        (
            "put",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/jitNetworkAccessPolicies/{jitNetworkAccessPolicyName}",
        ),
        (
            "delete",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/jitNetworkAccessPolicies/{jitNetworkAccessPolicyName}",
        ),
        (
            "post",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/jitNetworkAccessPolicies/{jitNetworkAccessPolicyName}/{jitNetworkAccessPolicyInitiateType}",
        ),
        ("get", "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/virtualMachines"),
        ("get", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/virtualMachines"),
        ("get", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/virtualMachines/{vmName}"),
        ("put", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/virtualMachines/{vmName}"),
        (
            "delete",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/virtualMachines/{vmName}",
        ),
        ("get", "/ajar/v1/subscriptions/{subscriptionId}/jitStatus"),
        ("get", "/ajar/v1/recommendedPorts"),
        ("post", "/ajar/v1/jit/enable"),
        ("get", "/ajar/v1/activity"),
        ("get", "/ajar/v1/activity/verify"),
        ("get", "/ajar/v1/gateways"),
        ("get", "/ajar/v1/gateways/{gatewayName}"),
        ("delete", "/ajar/v1/gateways/{gatewayName}"),
        ("post", "/ajar/v1/gatewayAssignment"),
        (
            "post",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/jitNetworkAccessPolicies/{jitNetworkAccessPolicyName}/revoke",
        ),
        ("post", "/ajar/v1/agents/enroll"),
        ("get", "/ajar/v1/agent/desiredState"),
        ("post", "/ajar/v1/agent/report"),
        ("get", "/healthz"),
        ("get", "/openapi.json"),
    ];
    let mut served: Vec<(&str, String)> = served.iter().map(|(m, p)| (*m, p.to_string())).collect();
    served.extend(
        [
            ("get", "/ajar/v1/me"),
            ("get", "/ajar/v1/principals"),
            ("post", "/ajar/v1/principals"),
            ("get", "/ajar/v1/principals/{principalId}"),
            ("delete", "/ajar/v1/principals/{principalId}"),
            ("get", "/ajar/v1/principals/{principalId}/tokens"),
            ("post", "/ajar/v1/principals/{principalId}/tokens"),
            ("delete", "/ajar/v1/tokens/{tokenId}"),
            ("post", "/ajar/v1/roles/requester"),
        ]
        .map(|(m, p)| (m, p.to_owned())),
    );
    let rg = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}";
    let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/{{vmName}}");
    for scope in ["", "/subscriptions/{subscriptionId}", rg, &vm] {
        for (kind, item) in [("roleDefinitions", "{roleDefinitionId}"), ("roleAssignments", "{roleAssignmentName}")] {
            let list = format!("{scope}/providers/Microsoft.Authorization/{kind}");
            served.push(("get", list.clone()));
            for method in ["get", "put", "delete"] {
                served.push((method, format!("{list}/{item}")));
            }
        }
    }
    for (method, path) in &served {
        assert!(paths.get(path.as_str()).and_then(|p| p.get(*method)).is_some(), "{method} {path} is not described");
    }
    assert_eq!(
        paths.len(),
        served.iter().map(|(_, p)| p.as_str()).collect::<BTreeSet<_>>().len(),
        "the document describes only what is served"
    );
}
