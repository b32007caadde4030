//! "A 202 means durable", tested with crashes: a load of initiates and policy writes over HTTPS while
//! the server is SIGKILLed and restarted on the same data directory; afterwards every acknowledged
//! write is in the store, in its policy's `requests[]` and in the activity log, and the log's hash
//! chain verifies. Also the check of that chain itself, through the API and the CLI.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::ajar;
use crate::common::{API, READER, Server, with_policy};

const INITIATE: &str = "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action";
const POLICY_WRITE: &str = "Microsoft.Security/locations/jitNetworkAccessPolicies/write";

#[tokio::test]
async fn the_activity_chain_verifies_and_an_edited_entry_is_caught() {
    let mut s = with_policy(&[]).await;
    for justification in ["one", "two"] {
        let body = json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [{"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "10.1.2.3"}]}], "justification": justification});
        assert_eq!(s.initiate("default", body).await.0, StatusCode::ACCEPTED);
    }
    // The check covers the whole log: reading the log of one subscription is not enough.
    let (_, auditor) = s.principal_with_role("sub-auditor", READER, &format!("/subscriptions/{}", s.sub)).await;
    let (st, v, _) = s.send(Method::GET, "/ajar/v1/activity/verify", Some(&auditor), None, "").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "AuthorizationFailed");
    assert!(v["error"]["message"].as_str().unwrap().contains("Ajar/activityLog/read"), "{v}");
    let (root_id, root_auditor) = s.principal("root-auditor").await;
    s.assign_role(&root_id, READER, "").await;

    let entries = s.activity("limit=100000").await.len();
    let (st, v, _) = s.send(Method::GET, "/ajar/v1/activity/verify", Some(&root_auditor), None, "").await;
    assert_eq!((st, v), (StatusCode::OK, json!({"verified": true, "entries": entries})));
    let (code, stdout, stderr) = ajar(&s, &["activity", "verify"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, format!("verified: all {entries} entries of the activity log are as written\n"));

    // Someone with the database file rewrites who did something.
    s.stop();
    let db = rusqlite::Connection::open(s.data_dir().join("ajar.db")).unwrap();
    assert_eq!(db.execute("UPDATE activity SET caller = 'someone else' WHERE seq = 3", []).unwrap(), 1);
    drop(db);
    s.relaunch();
    let v = s.get("/ajar/v1/activity/verify").await;
    assert_eq!(v, json!({"verified": false, "firstBadEntry": 3}));
    let (code, stdout, stderr) = ajar(&s, &["activity", "verify"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("the activity log's hash chain is broken at entry 3"), "{stderr}");
    let (code, stdout, _) = ajar(&s, &["activity", "verify", "-o", "json"]);
    assert_eq!(code, 1);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), v);
}

/// Tasks initiating requests, each on policies of its own, used in turn.
const INITIATORS: usize = 6;
/// Policies per initiating task (one machine each).
const INITIATE_POLICIES: usize = 16;
/// Requests sent per policy, answered or not (an unanswered one may have been stored): below the 100 most
/// recent that `requests[]` shows, so every acknowledged one must be there.
const ATTEMPTS_PER_POLICY: usize = 90;
/// Tasks rewriting policies, each its own, one write after another.
const WRITERS: usize = 3;
/// Policies per writing task.
const WRITE_POLICIES: usize = 2;
/// Load before each SIGKILL: varied, so that the kills land at different points of the batches.
const KILL_AFTER_MS: [u64; 5] = [700, 1900, 350, 1300, 2500];
/// Bound on the whole load's end once it is told to stop.
const DRAIN: Duration = Duration::from_secs(30);

/// How the load reaches the server, across restarts (the URL changes with each start).
#[derive(Clone)]
struct Target {
    /// `None` while the server is down.
    url: Arc<RwLock<Option<String>>>,
    client: reqwest::Client,
    token: String,
    stop: Arc<AtomicBool>,
}

enum Answer {
    /// The status the operation promises, with its whole body.
    Acknowledged(Value),
    /// Not sent: the server is down.
    Down,
    /// No answer, or only part of one: not acknowledged, and perhaps stored.
    None,
    /// An answer refusing the operation.
    Refused(StatusCode, Value),
}

impl Target {
    async fn send(&self, method: Method, path: &str, body: &Value, success: StatusCode) -> Answer {
        let Some(url) = self.url.read().unwrap().clone() else {
            // Wait for the restart rather than spin.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Answer::Down;
        };
        let sent = self.client.request(method, format!("{url}{path}")).bearer_auth(&self.token).json(body).send().await;
        let answer = match sent {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(bytes) if status == success => match serde_json::from_slice(&bytes) {
                        Ok(v) => Answer::Acknowledged(v),
                        Err(_) => Answer::None,
                    },
                    Ok(bytes) => Answer::Refused(status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)),
                    Err(_) => Answer::None,
                }
            }
            Err(_) => Answer::None,
        };
        if matches!(answer, Answer::None) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answer
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// What one task saw.
#[derive(Default)]
struct Tally {
    /// Initiates: (policy index, justification, the 202's body).
    initiated: Vec<(usize, String, Value)>,
    /// Policy writes: per policy, every write sent in order, as (its number, whether it was acknowledged).
    writes: Vec<Vec<(u32, bool)>>,
    /// Sent and not answered, as (policy index, justification) for initiates.
    unanswered: Vec<(usize, String)>,
    /// Not sent while the server was down.
    down: usize,
    refused: Vec<String>,
}

fn initiate_body(vm_id: &str, source: &str, justification: &str) -> Value {
    json!({"virtualMachines": [{"id": vm_id, "ports": [{"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": source}]}], "justification": justification})
}

fn policy_body(vm_id: &str, source: &str) -> Value {
    json!({"kind": "Basic", "properties": {"virtualMachines": [{"id": vm_id, "ports": [
        {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": source, "maxRequestAccessDuration": "PT1H"}
    ]}]}})
}

/// The source a writer's write number `n` sets: it tells the writes apart.
fn write_source(task: usize, n: u32) -> String {
    format!("10.{}.{}.{}", task + 1, n / 256, n % 256)
}

async fn initiator(target: Target, task: usize, policies: Vec<(String, String)>) -> Tally {
    let mut tally = Tally::default();
    for (k, (path, vm_id)) in policies.iter().enumerate() {
        let mut sent = 0;
        while sent < ATTEMPTS_PER_POLICY {
            if target.stopped() {
                return tally;
            }
            let justification = format!("load i{task} p{k} #{sent}");
            let body = initiate_body(vm_id, &format!("10.{task}.{k}.1"), &justification);
            match target.send(Method::POST, &format!("{path}/initiate?{API}"), &body, StatusCode::ACCEPTED).await {
                Answer::Acknowledged(v) => tally.initiated.push((k, justification, v)),
                Answer::Down => {
                    tally.down += 1;
                    continue;
                }
                Answer::None => tally.unanswered.push((k, justification)),
                Answer::Refused(st, v) => tally.refused.push(format!("initiate {justification}: {st} {v}")),
            }
            sent += 1;
        }
    }
    tally
}

async fn writer(target: Target, task: usize, policies: Vec<(String, String)>) -> Tally {
    let mut tally = Tally { writes: vec![Vec::new(); policies.len()], ..Tally::default() };
    // Write 0 is the seed, acknowledged before the load.
    for (k, writes) in tally.writes.iter_mut().enumerate() {
        writes.push((u32::try_from(k).unwrap(), true));
    }
    let first = u32::try_from(policies.len()).unwrap();
    for n in first..u32::from(u16::MAX) {
        if target.stopped() {
            break;
        }
        let k = n as usize % policies.len();
        let (path, vm_id) = &policies[k];
        let acknowledged =
            match target.send(Method::PUT, &format!("{path}?{API}"), &policy_body(vm_id, &write_source(task, n)), StatusCode::OK).await {
                Answer::Acknowledged(_) => true,
                Answer::Down => {
                    tally.down += 1;
                    continue;
                }
                Answer::None => {
                    tally.unanswered.push((k, n.to_string()));
                    false
                }
                Answer::Refused(st, v) => {
                    tally.refused.push(format!("write {n}: {st} {v}"));
                    false
                }
            };
        tally.writes[k].push((n, acknowledged));
    }
    tally
}

/// A request as `requests[]` shows it, without the statuses (a newer request supersedes an older one).
fn without_status(request: &Value) -> Value {
    let mut r = request.clone();
    for vm in r["virtualMachines"].as_array_mut().unwrap() {
        for port in vm["ports"].as_array_mut().unwrap() {
            let port = port.as_object_mut().unwrap();
            port.remove("status");
            port.remove("statusReason");
        }
    }
    r
}

fn detail<'a>(entry: &'a Value, name: &str) -> Option<&'a str> {
    entry["details"].as_array()?.iter().find(|d| d["name"] == name)?["value"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_under_load() {
    let began = Instant::now();
    let mut s = Server::start(&[]).await;
    let mut initiate_policies = vec![Vec::new(); INITIATORS];
    let mut write_policies = vec![Vec::new(); WRITERS];
    for (t, policies) in initiate_policies.iter_mut().enumerate() {
        for k in 0..INITIATE_POLICIES {
            let name = format!("i{t}p{k}");
            s.add_vm(&name, "Linux", &s.loc, &format!("10.200.{t}.{k}")).await;
            let (st, v) = s.put_policy(&name, policy_body(&s.vm_id(&name), "10.0.0.0/8")).await;
            assert_eq!(st, StatusCode::OK, "{v}");
            policies.push((s.policy_path(&name), s.vm_id(&name)));
        }
    }
    for (t, policies) in write_policies.iter_mut().enumerate() {
        for k in 0..WRITE_POLICIES {
            let name = format!("w{t}p{k}");
            s.add_vm(&name, "Linux", &s.loc, &format!("10.201.{t}.{k}")).await;
            let (st, v) = s.put_policy(&name, policy_body(&s.vm_id(&name), &write_source(t, u32::try_from(k).unwrap()))).await;
            assert_eq!(st, StatusCode::OK, "{v}");
            policies.push((s.policy_path(&name), s.vm_id(&name)));
        }
    }

    let ca = std::fs::read(s.ca_path()).unwrap();
    let target = Target {
        url: Arc::new(RwLock::new(Some(s.url.clone()))),
        client: reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        token: s.token.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let load_began = Instant::now();
    let initiators: Vec<_> =
        initiate_policies.iter().enumerate().map(|(t, p)| tokio::spawn(initiator(target.clone(), t, p.clone()))).collect();
    let writers: Vec<_> = write_policies.iter().enumerate().map(|(t, p)| tokio::spawn(writer(target.clone(), t, p.clone()))).collect();

    let crash = |s: &mut Server| {
        *target.url.write().unwrap() = None;
        tokio::task::block_in_place(|| {
            s.kill9();
            s.relaunch();
        });
        *target.url.write().unwrap() = Some(s.url.clone());
    };
    for ms in KILL_AFTER_MS {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        crash(&mut s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    target.stop.store(true, Ordering::Relaxed);
    let drained = tokio::time::timeout(DRAIN, async {
        let mut initiated = Vec::new();
        for task in initiators {
            initiated.push(task.await.unwrap());
        }
        let mut written = Vec::new();
        for task in writers {
            written.push(task.await.unwrap());
        }
        (initiated, written)
    })
    .await;
    let (initiated, written) = drained.unwrap_or_else(|_| panic!("the load did not stop within {DRAIN:?}"));
    let load_time = load_began.elapsed();
    // Once more right after the last answers: nothing acknowledged may wait for a checkpoint or a clean stop.
    crash(&mut s);
    let kills = KILL_AFTER_MS.len() + 1;
    // A task that used up its policies stopped early (a fast machine); the others ran until told to stop.
    let ran_out = initiated.iter().filter(|t| t.initiated.len() + t.unanswered.len() == INITIATE_POLICIES * ATTEMPTS_PER_POLICY).count();

    let refused: Vec<&String> = initiated.iter().chain(&written).flat_map(|t| &t.refused).collect();
    assert!(refused.is_empty(), "the server refused load it should have taken: {refused:?}");
    let unanswered: usize = initiated.iter().chain(&written).map(|t| t.unanswered.len()).sum();
    let down: usize = initiated.iter().chain(&written).map(|t| t.down).sum();

    // Initiates: in their policy's requests[], as the 202 showed them, and in the activity log.
    let log = s.activity(&format!("operation={INITIATE}&result=Succeeded&limit=1000000")).await;
    let logged: HashMap<&str, &str> = log.iter().filter_map(|e| Some((detail(e, "justification")?, detail(e, "requestId")?))).collect();
    let mut acknowledged = 0;
    let mut found = 0;
    let mut lost = Vec::new();
    let mut request_ids = HashSet::new();
    // Unanswered initiates that were stored all the same: kills that fell between the commit and the answer.
    let mut stored_unanswered = 0;
    for (t, tally) in initiated.iter().enumerate() {
        for (k, (path, _)) in initiate_policies[t].iter().enumerate() {
            let policy = s.get(&format!("{path}?{API}")).await;
            let requests = policy["properties"]["requests"].as_array().unwrap();
            assert!(requests.len() < 100, "{path}: requests[] is full, so it may hide requests");
            let shown: HashMap<&str, &Value> = requests.iter().map(|r| (r["justification"].as_str().unwrap(), r)).collect();
            stored_unanswered += tally.unanswered.iter().filter(|(p, j)| *p == k && shown.contains_key(j.as_str())).count();
            for (_, justification, answer) in tally.initiated.iter().filter(|(p, _, _)| *p == k) {
                acknowledged += 1;
                match (shown.get(justification.as_str()), logged.get(justification.as_str())) {
                    (Some(r), Some(id)) => {
                        assert_eq!(without_status(r), without_status(answer), "{justification}: stored otherwise than acknowledged");
                        assert!(request_ids.insert(*id), "{justification}: request ID {id} logged twice");
                        found += 1;
                    }
                    (r, id) => lost.push(format!("{justification} (in requests[]: {}, in the log: {})", r.is_some(), id.is_some())),
                }
            }
        }
    }

    // Policy writes: each policy holds its last acknowledged write, or a later one that got no answer;
    // every acknowledged write is in the activity log.
    let log = s.activity(&format!("operation={POLICY_WRITE}&result=Succeeded&limit=1000000")).await;
    let mut logged_writes: HashSet<(String, String)> = HashSet::new();
    for e in &log {
        for d in e["details"].as_array().unwrap() {
            if let Some(from) = d["value"].as_str().and_then(|v| v.split(" from ").nth(1)).and_then(|v| v.split(' ').next()) {
                logged_writes.insert((e["resourceId"].as_str().unwrap().to_ascii_lowercase(), from.to_owned()));
            }
        }
    }
    let mut writes_acknowledged = 0;
    let mut consistent = 0;
    for (t, tally) in written.iter().enumerate() {
        for (k, (path, _)) in write_policies[t].iter().enumerate() {
            let writes = &tally.writes[k];
            let policy = s.get(&format!("{path}?{API}")).await;
            let source = policy["properties"]["virtualMachines"][0]["ports"][0]["allowedSourceAddressPrefix"].as_str().unwrap().to_owned();
            let last_acknowledged = writes.iter().rposition(|(_, ack)| *ack).unwrap();
            if writes[last_acknowledged..].iter().any(|(n, _)| write_source(t, *n) == source) {
                consistent += 1;
            } else {
                lost.push(format!(
                    "{path}: holds {source}, not its last acknowledged write {:?} or a later one",
                    writes[last_acknowledged]
                ));
            }
            for (n, _) in writes.iter().skip(1).filter(|(_, ack)| *ack) {
                writes_acknowledged += 1;
                if !logged_writes.contains(&(path.to_ascii_lowercase(), write_source(t, *n))) {
                    lost.push(format!("{path}: acknowledged write {n} is not in the activity log"));
                }
            }
        }
    }

    let chain = s.get("/ajar/v1/activity/verify").await;
    eprintln!(
        "crash under load: {kills} SIGKILLs over {load_time:.1?} of load ({ran_out} of {INITIATORS} initiating tasks ran \
         out of policies first); initiates acknowledged {acknowledged}, found {found}; \
         policy writes acknowledged {writes_acknowledged}, and {consistent} of {} policies hold their last \
         acknowledged write (or a later unanswered one); sent but unanswered {unanswered} \
         ({stored_unanswered} of those initiates stored), held back while down {down}; lost {}; chain {chain}; whole test {:.1?}",
        WRITERS * WRITE_POLICIES,
        lost.len(),
        began.elapsed()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:#?}");
    assert_eq!(found, acknowledged);
    assert!(acknowledged > 0 && writes_acknowledged > 0, "the load did nothing");
    assert_eq!(chain["verified"], true, "{chain}");
}
