//! The `ajar` command line against a real server: each step is the arguments,
//! the exit code, and text the output must contain.

use std::process::Command;

use ajar_api::jit::{JitNetworkAccessPolicy, PolicyIn, unchanged_since};
use ajar_domain::PolicyId;
use serde_json::Value;

use crate::common::Server;

struct Step {
    args: &'static [&'static str],
    code: i32,
    /// Text that stdout (on success) or stderr (on failure) must contain.
    says: &'static [&'static str],
}

const fn step(args: &'static [&'static str], code: i32, says: &'static [&'static str]) -> Step {
    Step { args, code, says }
}

pub(crate) fn ajar(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ajar"))
        .args(args)
        .env_clear()
        .env("AJAR_BOOTSTRAP", s.data_dir().join("bootstrap.json"))
        .output()
        .expect("run ajar");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn commands_do_what_they_say() {
    let s = Server::start(&[]).await;
    let steps = [
        step(&["vm", "add", "web1", "--os", "linux", "--address", "10.0.0.4"], 0, &[]),
        step(&["vm", "add", "win1", "--os", "windows", "--address", "10.0.0.5"], 0, &[]),
        step(&["vm", "add", "bad", "--os", "beos"], 2, &["beos"]),
        step(&["status"], 0, &["web1", "Unsupported"]),
        step(&["policy", "enable", "web1", "--defaults"], 0, &[]),
        step(&["policy", "set", "win1", "--port", "3389/tcp,from=10.0.0.0/8,max=PT1H"], 0, &[]),
        step(&["policy", "show"], 0, &["web1", "22", "win1", "3389", "10.0.0.0/8"]),
        step(&["request", "web1", "--port", "22", "--for", "30m", "--justification", "deploy, now"], 0, &["22"]),
        step(&["request", "web1", "--port", "80"], 1, &["InvalidInitiateInput", "configured: 22"]),
        step(&["request", "web1", "--port", "22", "--for", "5h"], 1, &["InvalidInitiateInput", "at most PT3H"]),
        step(&["request", "win1", "--port", "3389", "--from", "10.1.0.0/16", "--for", "PT10M"], 0, &["3389"]),
        step(&["request", "win1", "--port", "3389", "--from", "192.168.0.1"], 1, &["not inside the sources allowed"]),
        step(&["revoke", "win1", "--port", "3389"], 0, &["revoked 1 grant(s) on win1 ports 3389"]),
        step(&["revoke", "win1", "--port", "3389"], 0, &["revoked 0 grant(s)"]),
        step(&["revoke", "win1"], 2, &["--port"]),
        step(&["revoke", "nosuchvm", "--port", "22"], 1, &["nosuchvm"]),
        step(&["vm", "remove", "web1"], 1, &["VirtualMachineInUse"]),
        step(&["policy", "remove-vm", "win1"], 0, &[]),
        step(&["vm", "remove", "win1"], 0, &[]),
        step(&["activity", "--vm", "web1", "--format", "csv"], 0, &["Time (UTC)", "deploy, now", "InvalidInitiateInput"]),
        step(&["policy", "frobnicate"], 2, &[]),
    ];
    for st in &steps {
        let (code, stdout, stderr) = ajar(&s, st.args);
        assert_eq!(code, st.code, "ajar {:?}\nstdout: {stdout}\nstderr: {stderr}", st.args);
        let shown = if code == 0 { &stdout } else { &stderr };
        for text in st.says {
            assert!(shown.contains(text), "ajar {:?}: {text:?} missing from\n{shown}", st.args);
        }
        if code == 1 {
            assert_eq!(stderr.trim().lines().count(), 1, "one-line error: {stderr}");
        }
    }
    // Scripts get JSON.
    let (code, stdout, _) = ajar(&s, &["status", "--output", "json"]);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&stdout).expect("status --output json is JSON");
    let web1 =
        status.as_array().and_then(|a| a.iter().find(|v| v["name"] == "web1")).cloned().unwrap_or_else(|| status["value"][0].clone());
    assert_eq!(web1["state"], "Configured", "{stdout}");
    assert_eq!(web1["approvedRequestsLast7Days"], 1, "{stdout}");
}

#[tokio::test]
async fn missing_settings_are_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ajar")).args(["vm", "list"]).env_clear().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AJAR_BOOTSTRAP") || stderr.contains("--server"), "{stderr}");
}

fn ajar_as(s: &Server, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ajar"))
        .args(args)
        .env_clear()
        .env("AJAR_BOOTSTRAP", s.data_dir().join("bootstrap.json"))
        .env("AJAR_TOKEN", token)
        .output()
        .expect("run ajar");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The least-privilege setup of the README, step by step, then what the requester may and may not do.
#[tokio::test]
async fn least_privilege_setup_from_the_readme() {
    let s = Server::start(&[]).await;
    let scope = format!("/subscriptions/{}/resourceGroups/{}", s.sub, s.rg);
    let run = |token: Option<&str>, args: &[&str], code: i32, says: &[&str]| {
        let (got, stdout, stderr) = match token {
            Some(t) => ajar_as(&s, t, args),
            None => ajar(&s, args),
        };
        assert_eq!(got, code, "ajar {args:?}\nstdout: {stdout}\nstderr: {stderr}");
        let shown = if code == 0 { &stdout } else { &stderr };
        for text in says {
            assert!(shown.contains(text), "ajar {args:?}: {text:?} missing from\n{shown}");
        }
        stdout
    };
    run(None, &["vm", "add", "web1", "--os", "linux", "--address", "10.0.0.4"], 0, &[]);
    run(None, &["policy", "enable", "web1", "--defaults"], 0, &[]);
    run(None, &["principal", "add", "deploy-bot", "--kind", "service"], 0, &["deploy-bot"]);
    let created = run(
        None,
        &["token", "create", "--principal", "deploy-bot", "--name", "pipeline", "--expires-in", "30", "--output", "json"],
        0,
        &[],
    );
    let created: Value = serde_json::from_str(&created).unwrap();
    let (token, token_id) = (created["token"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());
    run(None, &["role", "create-requester", "--api-only", "--name", "JIT requester (API)", "--scope", &scope], 0, &["JIT requester (API)"]);
    run(None, &["role", "assign", "--principal", "deploy-bot", "--role", "JIT requester (API)", "-g", &s.rg], 0, &[]);
    run(None, &["role", "assignments", "--principal", "deploy-bot"], 0, &["JIT requester (API)"]);

    // What the requester may do, and nothing more.
    let bot = Some(token.as_str());
    run(bot, &["whoami"], 0, &["deploy-bot"]);
    run(bot, &["request", "web1", "--port", "22", "--from", "10.1.2.3", "--for", "10m", "--justification", "deploy"], 0, &["22"]);
    for denied in [
        &["policy", "set", "web1", "--port", "22/tcp"][..],
        &["revoke", "web1", "--port", "22"],
        &["activity"],
        &["role", "assign", "--principal", "deploy-bot", "--role", "Owner", "-g", &s.rg],
        &["vm", "remove", "web1"],
    ] {
        run(bot, denied, 1, &["AuthorizationFailed"]);
    }
    // Custom roles from Azure's role files: create, update, show, delete.
    let file = s.dir.path().join("role.json");
    let role = |actions: &[&str]| serde_json::json!({"Name": "Auditor", "IsCustom": true, "Description": "reads JIT", "Actions": actions, "AssignableScopes": [scope]});
    std::fs::write(&file, role(&["Microsoft.Security/locations/jitNetworkAccessPolicies/read"]).to_string()).unwrap();
    let path = file.to_str().unwrap();
    run(None, &["role", "create", "--file", path], 0, &["Auditor"]);
    run(None, &["role", "create", "--file", path], 1, &[]);
    std::fs::write(&file, role(&["Microsoft.Security/locations/jitNetworkAccessPolicies/read", "Ajar/activityLog/read"]).to_string())
        .unwrap();
    run(None, &["role", "update", "--file", path], 0, &[]);
    run(None, &["role", "show", "Auditor"], 0, &["Ajar/activityLog/read"]);
    std::fs::write(&file, role(&["Microsoft.Security/locations/jitNetworkAccessPolicy/read"]).to_string()).unwrap();
    run(None, &["role", "update", "--file", path], 1, &["jitNetworkAccessPolicy/read"]);
    run(None, &["role", "delete", "Auditor"], 0, &[]);
    run(None, &["role", "show", "Auditor"], 1, &["Auditor"]);

    // Its token is listed without the secret, and once revoked it stops working.
    let listed = run(None, &["token", "list", "--principal", "deploy-bot"], 0, &["pipeline"]);
    assert!(!listed.contains(&token), "{listed}");
    run(None, &["token", "revoke", &token_id], 0, &[]);
    run(bot, &["whoami"], 1, &["InvalidAuthenticationToken"]);
}

/// A policy's version as `policy show --output json` gives it.
fn shown_policy(s: &Server, name: &str) -> JitNetworkAccessPolicy {
    let (code, stdout, stderr) = ajar(s, &["policy", "show", name, "--output", "json"]);
    assert_eq!(code, 0, "policy show {name}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("policy show --output json: {e}\n{stdout}"))
}

/// The CLI edits a policy on condition that it is still the version it read (`If-Match` with its
/// etag, `If-None-Match: *` for a new one), so it cannot write over an edit made in between.
#[tokio::test]
async fn policy_edits_are_conditional_on_the_version_read() {
    let s = Server::start(&[]).await;
    let run = |args: &[&str]| {
        let (code, stdout, stderr) = ajar(&s, args);
        assert_eq!(code, 0, "ajar {args:?}\nstdout: {stdout}\nstderr: {stderr}");
    };
    run(&["vm", "add", "web1", "--os", "linux", "--address", "10.0.0.4"]);
    run(&["vm", "add", "web2", "--os", "linux", "--address", "10.0.0.5"]);
    run(&["policy", "enable", "web1", "--defaults"]);
    let before = shown_policy(&s, "default");
    let first = before.etag.clone().expect("policy show --output json gives the etag");
    assert!(first.starts_with('"') && first.ends_with('"'), "an entity tag as HTTP writes it: {first}");

    run(&["policy", "set", "web1", "--port", "2222/tcp"]);
    let edited = shown_policy(&s, "default");
    assert_ne!(edited.etag.as_deref(), Some(first.as_str()), "an edit makes a new version");
    // A new policy is written only if none has appeared meanwhile.
    run(&["policy", "set", "web2", "--policy", "other", "--port", "22/tcp"]);
    assert_eq!(shown_policy(&s, "other").properties.virtual_machines.len(), 1);

    // A write made from the version before the edit is refused and changes nothing.
    let ca = std::fs::read(s.ca_path()).unwrap();
    let client = ajar_client::Client::new(&s.url, &s.token, &ca).unwrap();
    let id: PolicyId = before.id.parse().unwrap();
    let stale = unchanged_since(Some(&before));
    let refused = [
        client.put_policy(&id, &PolicyIn::from(&before), Some(&stale)).await.unwrap_err(),
        client.put_policy(&id, &PolicyIn::from(&before), Some(&unchanged_since(None))).await.unwrap_err(),
        client.delete_policy(&id, Some(&stale)).await.unwrap_err(),
    ];
    for e in refused {
        assert_eq!((e.status(), e.code()), (Some(412), Some("PreconditionFailed")), "{e}");
    }
    assert_eq!(shown_policy(&s, "default"), edited);

    // From the version as it is now, the last machine out deletes the policy.
    run(&["policy", "remove-vm", "web1"]);
    let (code, _, stderr) = ajar(&s, &["policy", "show", "default"]);
    assert_eq!(code, 1, "{stderr}");
}
