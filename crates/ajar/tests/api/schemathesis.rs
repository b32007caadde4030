//! API fuzzing: schemathesis, a property-based API tester, against the document the server serves at
//! `/openapi.json`, on a real server whose resources it can reach. Every operation of the document gets
//! valid and invalid parameters and bodies; the run passes only with no 5xx, no response outside the
//! document's status codes, content types or schemas, no network error, and no panic in the server's log.
//!
//! What it covers: every operation in the document, with the admin's API token, and the agent
//! operations with the join token and an enrolled agent's credential. What it leaves out: the dashboard
//! (`/ui`: HTML forms with a session cookie and CSRF token, not in the document; the browser tests drive
//! it), and requests without a credential: after five failed authentications the server throttles the
//! address, and every later request of the run would be a 429 that reaches nothing. Authentication has
//! its own tests (`contract.rs`, `access.rs`).
//!
//! Needs schemathesis as `tests/schemathesis/requirements.txt` pins it, in a virtual environment at
//! `target/schemathesis` (`.ci/run` makes it). With `CI=true` a missing one fails the test; elsewhere it
//! prints `skipping: needs …` and passes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::Server;

const REQUIREMENTS: &str = include_str!("../schemathesis/requirements.txt");
/// Test cases of the fuzzing phase per operation; the coverage and stateful phases add their own.
const EXAMPLES_PER_OPERATION: u32 = 25;
/// The run takes about two minutes; this bound only stops a hung one.
const RUN_LIMIT: Duration = Duration::from_secs(900);
const AUTHORIZATION_API: &str = "api-version=2022-04-01";

/// The custom roles and role assignments the run reads and writes; `DOOMED_*` are for its deletions.
const ROLE: &str = "5c0e1b4e-7a1d-4f0e-9b7a-2a9f4e6c1d01";
const DOOMED_ROLE: &str = "5c0e1b4e-7a1d-4f0e-9b7a-2a9f4e6c1d02";
const ASSIGNMENT: &str = "5c0e1b4e-7a1d-4f0e-9b7a-2a9f4e6c1d03";
const DOOMED_ASSIGNMENT: &str = "5c0e1b4e-7a1d-4f0e-9b7a-2a9f4e6c1d04";

/// The version `requirements.txt` pins.
fn pinned_version() -> &'static str {
    REQUIREMENTS.lines().find_map(|l| l.trim().strip_prefix("schemathesis==")).expect("requirements.txt pins schemathesis")
}

/// `target/schemathesis/bin/schemathesis`.
fn schemathesis_bin() -> PathBuf {
    // CARGO_BIN_EXE_ajar is <target>/<profile>/ajar.
    let target = Path::new(env!("CARGO_BIN_EXE_ajar")).parent().and_then(Path::parent).unwrap();
    target.join("schemathesis/bin/schemathesis")
}

/// True if the pinned schemathesis is installed. Otherwise fails with `CI=true`, or prints `skipping: needs …`.
fn preflight() -> bool {
    let bin = schemathesis_bin();
    let version = Command::new(&bin).arg("--version").output().ok().filter(|o| o.status.success());
    let found = version.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let wanted = pinned_version();
    let missing = match found {
        Some(v) if v.ends_with(&format!(" {wanted}")) => vec![],
        other => vec![format!(
            "schemathesis {wanted} at {} (found {}; bash .ci/run installs it)",
            bin.display(),
            other.as_deref().unwrap_or("none")
        )],
    };
    ajar_lab::run_or_skip("the API fuzz test", &missing)
}

/// What the run may name in its paths besides what the server made at its first start.
struct Seeded {
    principal: String,
    token_id: String,
    doomed_principal: String,
    doomed_token_id: String,
    agent_token: String,
}

/// A principal with an API token: its ID and the token's ID.
async fn principal_with_token_id(s: &Server, name: &str) -> (String, String) {
    let (id, _) = s.principal(name).await;
    let (st, v) = s.call(Method::POST, &format!("/ajar/v1/principals/{id}/tokens"), Some(json!({"name": "fuzz"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (id, v["id"].as_str().unwrap().to_owned())
}

async fn put_custom_role(s: &Server, guid: &str, name: &str) {
    let path = format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{guid}?{AUTHORIZATION_API}", s.sub);
    let body = json!({"properties": {"roleName": name, "type": "CustomRole",
        "permissions": [{"actions": ["Microsoft.Security/locations/jitNetworkAccessPolicies/read"]}],
        "assignableScopes": [format!("/subscriptions/{}", s.sub)]}});
    let (st, v) = s.call(Method::PUT, &path, Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

async fn put_assignment(s: &Server, name: &str, principal: &str) {
    let path = format!("{}/providers/Microsoft.Authorization/roleAssignments/{name}?{AUTHORIZATION_API}", s.rg_scope());
    let role = format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{ROLE}", s.sub);
    let (st, v) = s.call(Method::PUT, &path, Some(json!({"properties": {"roleDefinitionId": role, "principalId": principal}}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

fn port_22(s: &Server, vm: &str) -> Value {
    json!({"id": s.vm_id(vm), "ports": [
        {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}]})
}

/// Machines vm1 and vm2 under policy `default` (vm2 with an agent), a live grant on vm1, vm3 under
/// policy `doomed`, an unprotected `vm-doomed`, principals with tokens, custom roles and assignments.
async fn seed(s: &Server) -> Seeded {
    for (vm, address) in [("vm1", "10.0.0.4"), ("vm2", "10.0.0.5"), ("vm3", "10.0.0.6"), ("vm-doomed", "10.0.0.7")] {
        s.add_vm(vm, "Linux", &s.loc, address).await;
    }
    for (policy, vms) in [("default", vec![port_22(s, "vm1"), port_22(s, "vm2")]), ("doomed", vec![port_22(s, "vm3")])] {
        let (st, v) = s.put_policy(policy, json!({"kind": "Basic", "properties": {"virtualMachines": vms}})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v) = s
        .initiate(
            "default",
            json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [
                {"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "10.1.2.3"}]}], "justification": "fuzz"}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, agent) = s.enroll_agent("vm2", true).await;
    assert_eq!(st, StatusCode::CREATED, "{agent}");
    let (principal, token_id) = principal_with_token_id(s, "alice").await;
    let (doomed_principal, doomed_token_id) = principal_with_token_id(s, "bob").await;
    put_custom_role(s, ROLE, "fuzz reader").await;
    put_custom_role(s, DOOMED_ROLE, "doomed reader").await;
    put_assignment(s, ASSIGNMENT, &principal).await;
    put_assignment(s, DOOMED_ASSIGNMENT, &doomed_principal).await;
    Seeded { principal, token_id, doomed_principal, doomed_token_id, agent_token: agent["token"].as_str().unwrap().to_owned() }
}

/// A TOML string.
fn q(s: &str) -> String {
    // A JSON string of printable text is a TOML basic string.
    Value::String(s.to_owned()).to_string()
}

/// The whole run's settings: what it checks, how much it generates, how it authenticates, and the path
/// parameters that name the seeded resources (deletions name their own, so the rest keep theirs).
fn config(s: &Server, seeded: &Seeded, reports: &Path) -> String {
    let mut c = String::new();
    let ca = s.ca_path();
    let _ = writeln!(c, "tls-verify = {}\ncolor = false\n", q(&ca.to_string_lossy()));
    let _ = writeln!(c, "[reports]\ndirectory = {}", q(&reports.to_string_lossy()));
    let _ = writeln!(c, "json.enabled = true\njson.path = {}", q(&reports.join("run.json").to_string_lossy()));
    let _ = writeln!(c, "ndjson.enabled = true\nndjson.path = {}\n", q(&reports.join("run.ndjson").to_string_lossy()));
    c.push_str(
        "[checks]\nenabled = false\nnot_a_server_error.enabled = true\nstatus_code_conformance.enabled = true\n\
         content_type_conformance.enabled = true\nresponse_schema_conformance.enabled = true\n\n",
    );
    let _ = writeln!(c, "[generation]\nmax-examples = {EXAMPLES_PER_OPERATION}\nwith-security-parameters = false\ndatabase = \"none\"\n");
    let _ = writeln!(c, "[auth.openapi.bearer]\napi_key = {}", q(&format!("Bearer {}", s.token)));
    let _ = writeln!(c, "[auth.openapi.joinToken]\napi_key = {}", q(&format!("Bearer {}", s.join_token())));
    let _ = writeln!(c, "[auth.openapi.agentToken]\napi_key = {}\n", q(&format!("Bearer {}", seeded.agent_token)));
    let _ = writeln!(
        c,
        "[parameters]\nsubscriptionId = {}\nresourceGroupName = {}\nascLocation = {}\njitNetworkAccessPolicyName = \"default\"\n\
         vmName = \"vm1\"\nprincipalId = {}\ntokenId = {}\nroleDefinitionId = {}\nroleAssignmentName = {}\n",
        q(&s.sub),
        q(&s.rg),
        q(&s.loc),
        q(&seeded.principal),
        q(&seeded.token_id),
        q(ROLE),
        q(ASSIGNMENT)
    );
    // A successful DELETE answers with no body, hence no Content-Type, which Swagger 2.0 cannot say
    // (its `produces` is per operation, not per response).
    let _ = writeln!(
        c,
        "[[operations]]\ninclude-method = \"DELETE\"\nchecks.content_type_conformance.enabled = false\n\
         parameters.vmName = \"vm-doomed\"\nparameters.jitNetworkAccessPolicyName = \"doomed\"\n\
         parameters.principalId = {}\nparameters.tokenId = {}\nparameters.roleDefinitionId = {}\nparameters.roleAssignmentName = {}\n",
        q(&seeded.doomed_principal),
        q(&seeded.doomed_token_id),
        q(DOOMED_ROLE),
        q(DOOMED_ASSIGNMENT)
    );
    c.push_str("[[operations]]\ninclude-operation-id = \"Agent_Report\"\nchecks.content_type_conformance.enabled = false\n\n");
    // An etag that never matches, so a long poll answers at once instead of waiting out its waitSeconds.
    c.push_str("[[operations]]\ninclude-operation-id = \"Agent_DesiredState\"\nparameters.etag = \"not-the-current-etag\"\n");
    c
}

/// What the run sent and got, from its NDJSON event stream.
#[derive(Default)]
struct Exchanges {
    requests: u64,
    successes: u64,
    server_errors: Vec<String>,
}

fn exchanges(ndjson: &str) -> Exchanges {
    let mut out = Exchanges::default();
    for line in ndjson.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let Some(interactions) = event.pointer("/ScenarioFinished/recorder/interactions").and_then(Value::as_object) else { continue };
        for interaction in interactions.values() {
            out.requests += 1;
            let status = interaction.pointer("/response/status_code").and_then(Value::as_u64);
            if status.is_some_and(|s| (200..300).contains(&s)) {
                out.successes += 1;
            }
            if status.is_some_and(|s| s >= 500) {
                let request = &interaction["request"];
                out.server_errors.push(format!("{} {} -> {}", request["method"], request["uri"], status.unwrap_or_default()));
            }
        }
    }
    out
}

/// The operations the served document describes, but for reading the document itself, which
/// schemathesis leaves out (the test reads it).
fn operations(doc: &Value) -> usize {
    let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
    let all: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().keys().filter(|k| methods.contains(&k.as_str())).count())
        .sum();
    all - 1
}

#[tokio::test]
async fn every_operation_survives_schemathesis() {
    if !preflight() {
        return;
    }
    let s = Server::start(&[]).await;
    let seeded = seed(&s).await;
    let (st, doc, _) = s.send(Method::GET, "/openapi.json", None, None, "").await;
    assert_eq!(st, StatusCode::OK);
    let work = s.dir.path().join("schemathesis");
    std::fs::create_dir_all(&work).unwrap();
    let config_file = work.join("schemathesis.toml");
    std::fs::write(&config_file, config(&s, &seeded, &work)).unwrap();
    let mut cmd = Command::new(schemathesis_bin());
    cmd.arg("--config-file").arg(&config_file).arg("run").arg(format!("{}/openapi.json", s.url)).current_dir(&work);
    let out = tokio::task::spawn_blocking(move || ajar_lab::run_bounded(&mut cmd, None, RUN_LIMIT)).await.unwrap().unwrap();

    let report: Value = serde_json::from_slice(&std::fs::read(work.join("run.json")).unwrap_or_default()).unwrap_or(Value::Null);
    let seen = exchanges(&std::fs::read_to_string(work.join("run.ndjson")).unwrap_or_default());
    let failures = report["failures"].as_array().cloned().unwrap_or_default();
    let count = |types: &[&str]| -> u64 {
        failures.iter().filter(|f| types.contains(&f["type"].as_str().unwrap_or(""))).map(|f| f["count"].as_u64().unwrap_or(0)).sum()
    };
    let schema_violations =
        count(&["JsonSchemaError", "MalformedJson", "UndefinedStatusCode", "MissingContentType", "UndefinedContentType"]);
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    let summary = format!(
        "schemathesis {}: {} of {} operations × up to {EXAMPLES_PER_OPERATION} fuzzed examples, {} test cases, {} requests ({} answered 2xx); \
         {} failing test cases ({} 5xx responses, {} outside the document), {} errors; seed {}",
        pinned_version(),
        report["operations"]["tested"],
        operations(&doc),
        report["test_cases"]["generated"],
        seen.requests,
        seen.successes,
        report["test_cases"]["with_failures"],
        seen.server_errors.len(),
        schema_violations,
        report["test_cases"]["errored"],
        out.stdout.lines().find_map(|l| l.strip_prefix("Seed: ")).unwrap_or("unknown"),
    );
    println!("{summary}");
    let context = format!("{summary}\n--- schemathesis stdout\n{}\n--- stderr\n{}", out.stdout, out.stderr);
    assert!(out.success, "schemathesis failed ({})\n{context}", out.status);
    assert_eq!(report["operations"]["tested"].as_u64(), u64::try_from(operations(&doc)).ok(), "{context}");
    // Not everything refused: the seeded resources were reached.
    assert!(seen.successes > 0, "{context}");
    assert_eq!(report["test_cases"]["with_failures"].as_u64(), Some(0), "{context}");
    assert_eq!(report["test_cases"]["errored"].as_u64(), Some(0), "{context}");
    assert!(seen.server_errors.is_empty(), "5xx: {:#?}\n{context}", seen.server_errors);
    assert_eq!(schema_violations, 0, "{context}");
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
