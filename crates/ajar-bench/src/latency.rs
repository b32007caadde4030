//! `ajar-bench latency`: end to end through `ajar demo`, how long from an
//! `initiate` until the port accepts connections, and from a grant's end time
//! until it refuses them again: on web1 (its host agent) or through the gateway
//! to db1 (`--vm db1`: the gateway's public address and the grant's mapped port).
//! Root; the demo's throwaway namespaces.
//!
//! The outer process starts `AJAR demo --dir TMP`, waits for "is ready", runs
//! itself again inside the demo's client namespace (`--inside`), then reads
//! the agents' memory and stops the demo with SIGINT, which removes its
//! namespaces.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::{API_VERSION, error_chain, machine, memory_kib, new_histogram, read_bootstrap, record};

/// Bound on `ajar demo` printing "is ready".
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on the demo's exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a port reaching the expected state.
const PORT_TIMEOUT: Duration = Duration::from_secs(5);
/// One connection attempt (a dropped SYN would otherwise wait for a retransmit).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(20);
/// While waiting for the port to open, a new attempt starts this often (attempts overlap).
const OPEN_STAGGER: Duration = Duration::from_millis(2);
/// While waiting for the port to close, a probe starts this often.
const CLOSE_PROBE: Duration = Duration::from_millis(10);
/// Probing for the close starts this long before the grant's end time.
const CLOSE_LEAD: Duration = Duration::from_millis(1500);
const WEB1: &str = "10.99.0.21:22";
/// The demo gateway's public address, where db1's grants are mapped.
const GW1_PUBLIC: &str = "10.99.0.30";

/// The demo machine measured.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoVm {
    /// 22/TCP on web1, enforced by its host agent.
    Web1,
    /// 22/TCP on db1, reached through gateway gw1 on the grant's mapped port.
    Db1,
}

impl DemoVm {
    fn name(self) -> &'static str {
        match self {
            DemoVm::Web1 => "web1",
            DemoVm::Db1 => "db1",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct LatencyArgs {
    /// The ajar binary to start as `PATH demo --dir TMP` (outer run).
    #[arg(long, value_name = "PATH", required_unless_present = "inside")]
    ajar_bin: Option<PathBuf>,
    /// Request → open measurements.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    requests: u32,
    /// End time → closed measurements.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    expiries: u32,
    /// Duration of each grant of the expiry measurement, in seconds.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    grant_seconds: u64,
    /// The machine to measure.
    #[arg(long, value_enum, default_value = "web1")]
    vm: DemoVm,
    /// Internal: already inside the demo's client namespace.
    #[arg(long, hide = true)]
    inside: bool,
    /// Internal: the demo's bootstrap.json.
    #[arg(long, hide = true, value_name = "FILE")]
    bootstrap: Option<PathBuf>,
}

pub fn run(args: LatencyArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    if args.inside {
        let bootstrap = args.bootstrap.clone().ok_or_else(|| anyhow!("--inside needs --bootstrap"))?;
        return runtime.block_on(inside(&args, &bootstrap));
    }
    outer(&args)
}

// ------------------------------------------------------------------ outer

/// The running demo; dropping it stops it (SIGINT, then SIGKILL if it hangs).
struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match self.child.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) if Instant::now() >= deadline => {
                        eprintln!("warning: the demo (pid {}) did not stop within {STOP_TIMEOUT:?} of SIGINT; killing it", self.child.id());
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                        return;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

/// The pid of the process whose argv has `args[0]` as its subcommand and contains `marker`.
fn find_process(subcommand: &str, marker: &str) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let argv: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if argv.get(1).map(String::as_str) == Some(subcommand) && argv.iter().any(|a| a == marker) {
            return Some(pid);
        }
    }
    None
}

fn outer(args: &LatencyArgs) -> Result<()> {
    let bin = args.ajar_bin.as_ref().ok_or_else(|| anyhow!("--ajar-bin is required"))?;
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let started_at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let tmp = tempfile::Builder::new().prefix("ajar-bench-latency-").tempdir().context("creating a temporary directory")?;
    let dir = std::fs::canonicalize(tmp.path()).context("resolving the temporary directory")?;

    eprintln!("starting {} demo --dir {} ...", bin.display(), dir.display());
    let mut child = Command::new(bin)
        .arg("demo")
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} demo", bin.display()))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("the demo's stdout was not piped"))?;
    let mut demo = Demo { child };
    let (tx, rx) = std::sync::mpsc::channel();
    // Drains the demo's stdout until it exits, so the pipe never fills up.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("is ready") {
                let _ = tx.send(());
            }
        }
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => bail!("the demo was not ready within {READY_TIMEOUT:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let status = demo.child.wait().context("waiting for the demo")?;
            bail!("the demo exited ({status}) before it was ready (see its stderr above)");
        }
    }

    let state_path = dir.join("demo.json");
    let state: Value = serde_json::from_slice(&std::fs::read(&state_path).with_context(|| format!("reading {}", state_path.display()))?)
        .with_context(|| format!("parsing {}", state_path.display()))?;
    let client_ns = state
        .pointer("/namespaces/client")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{} names no client namespace", state_path.display()))?
        .to_owned();
    let bootstrap = state.get("bootstrap").and_then(Value::as_str).map(PathBuf::from).unwrap_or_else(|| dir.join("server/bootstrap.json"));

    let m = machine();
    println!("## Latency: request → port open, end time → port closed (end to end, {})\n", args.vm.name());
    println!("- command: `{command_line}`");
    println!("- date: {started_at}");
    println!("- machine: {} CPUs, {}, {:.1} GiB RAM; server, agents and client on the same machine", m.cpus, m.cpu_model, m.mem_gib);
    if let Some(c) = &m.commit {
        println!("- ajar commit: {c}");
    }
    match args.vm {
        DemoVm::Web1 => println!(
            "- setup: `ajar demo` (release build): server, agents (web1, win1, gateway gw1) and client each in a network namespace of their own on \
             one bridge; the client measures web1's 22/TCP (JIT-protected, SYNs dropped when closed)"
        ),
        DemoVm::Db1 => println!(
            "- setup: `ajar demo` (release build): server, agents (web1, win1, gateway gw1) and client each in a network namespace of their own on \
             one bridge, db1 behind gw1 on a private network; the client measures db1's 22/TCP through gw1 ({GW1_PUBLIC}:mappedPort, the \
             port from the initiate's answer; gw1 answers a reset when nothing is mapped)"
        ),
    }
    let target = match args.vm {
        DemoVm::Web1 => WEB1.to_owned(),
        DemoVm::Db1 => format!("{GW1_PUBLIC}:mappedPort"),
    };
    println!(
        "- request → open: `POST …/initiate` (PT1M, source = the caller's address), then TCP connects to {target}, a new one every {} ms \
         ({} ms connect timeout each, overlapping), until one succeeds; the figure is from before the POST to that connect; \
         then `revoke`, wait until connects fail again and until the status shows no live grant and the enforcing agent in sync, so each \
         measurement starts closed, from an idle agent",
        OPEN_STAGGER.as_millis(),
        CONNECT_TIMEOUT.as_millis()
    );
    println!(
        "- end time → closed: `initiate` for PT{}S, read `endTimeUtc` from the answer (same machine clock), wait until open, then from {:.1} s before \
         the end a new connect every {} ms ({} ms timeout) until one fails; the figure is the start of the first failing connect minus the end time \
         (negative: closed early)\n",
        args.grant_seconds,
        CLOSE_LEAD.as_secs_f64(),
        CLOSE_PROBE.as_millis(),
        CONNECT_TIMEOUT.as_millis()
    );

    let me = std::env::current_exe().context("finding this program")?;
    let status = Command::new("ip")
        .args(["netns", "exec", &client_ns])
        .arg(me)
        .args(["latency", "--inside", "--bootstrap"])
        .arg(&bootstrap)
        .args(["--requests", &args.requests.to_string(), "--expiries", &args.expiries.to_string()])
        .args(["--grant-seconds", &args.grant_seconds.to_string(), "--vm", args.vm.name()])
        .stdin(Stdio::null())
        .status()
        .context("running the measurement inside the client namespace")?;
    if !status.success() {
        bail!("the measurement inside the client namespace failed ({status})");
    }

    println!("\nMemory after the run (one live grant on {}, PT5M), from /proc/PID/status:\n", args.vm.name());
    println!("| process | RSS (VmRSS) MiB | peak RSS (VmHWM) MiB |");
    println!("|---|---:|---:|");
    let procs = [
        ("agent web1", "agent", dir.join("agent-web1")),
        ("agent win1", "agent", dir.join("agent-win1")),
        ("gateway agent gw1", "agent", dir.join("agent-gw1")),
        ("server", "serve", dir.join("server")),
    ];
    for (name, sub, marker) in procs {
        let marker = marker.to_string_lossy().into_owned();
        match find_process(sub, &marker).map(memory_kib) {
            Some(Ok((hwm, rss))) => println!("| {name} | {:.1} | {:.1} |", rss as f64 / 1024.0, hwm as f64 / 1024.0),
            Some(Err(e)) => println!("| {name} | ({e:#}) | |"),
            None => println!("| {name} | (process not found) | |"),
        }
    }
    drop(demo);
    Ok(())
}

// ------------------------------------------------------------------ inside

/// One connect attempt, bounded by `CONNECT_TIMEOUT`.
async fn connect_once(addr: SocketAddr) -> bool {
    matches!(tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}

/// Starts overlapping connects every `OPEN_STAGGER` until one succeeds; returns when it did.
async fn wait_open(addr: SocketAddr, limit: Duration) -> Result<Instant> {
    let deadline = Instant::now() + limit;
    let mut set = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(OPEN_STAGGER);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() >= deadline {
                    bail!("{addr} did not open within {limit:?}");
                }
                set.spawn(async move { if connect_once(addr).await { Some(Instant::now()) } else { None } });
            }
            Some(res) = set.join_next() => {
                if let Ok(Some(at)) = res {
                    set.abort_all();
                    return Ok(at);
                }
            }
        }
    }
}

/// Probes every `CLOSE_PROBE` (one at a time) until a connect fails; returns the failing attempt's
/// start (monotonic and wall clock).
async fn wait_closed(addr: SocketAddr, limit: Duration) -> Result<(Instant, SystemTime)> {
    let deadline = Instant::now() + limit;
    let mut tick = tokio::time::interval(CLOSE_PROBE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let (at, wall) = (Instant::now(), SystemTime::now());
        if !connect_once(addr).await {
            return Ok((at, wall));
        }
        if Instant::now() >= deadline {
            bail!("{addr} did not close within {limit:?}");
        }
    }
}

struct Inner {
    client: reqwest::Client,
    policy: String,
    vm: String,
    /// `…/ajar/v1/subscriptions/SUB/jitStatus`.
    status: String,
    machine: DemoVm,
    token: String,
}

impl Inner {
    async fn post(&self, action: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/{action}?{API_VERSION}", self.policy);
        let resp = self
            .client
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| anyhow!("POST {action}: {}", error_chain(&e)))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| anyhow!("POST {action}: reading the answer: {}", error_chain(&e)))?;
        if !status.is_success() {
            bail!("POST {action}: HTTP {status}: {}", String::from_utf8_lossy(&bytes).chars().take(500).collect::<String>());
        }
        if bytes.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(&bytes).with_context(|| format!("POST {action}: parsing the answer"))
        }
    }

    async fn initiate(&self, duration: &str) -> Result<Value> {
        let body = json!({"virtualMachines": [{"id": self.vm, "ports": [{"number": 22, "duration": duration}]}], "justification": "bench latency"});
        self.post("initiate", &body).await
    }

    /// Waits until the machine has no live grant and what enforces it (web1's agent, db1's gateway) has
    /// applied that and said so: the next measurement starts from an idle enforcement point, not one
    /// still busy with the revoke (the kernel may take a while to release deleted map elements).
    async fn wait_idle(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let status: Value = self
                .client
                .get(&self.status)
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| anyhow!("GET jitStatus: {}", error_chain(&e)))?
                .json()
                .await
                .map_err(|e| anyhow!("GET jitStatus: {}", error_chain(&e)))?;
            let machine = status["value"].as_array().and_then(|all| all.iter().find(|m| m["name"] == self.machine.name()));
            let in_sync = machine.is_some_and(|m| {
                let point = match self.machine {
                    DemoVm::Web1 => &m["agent"],
                    DemoVm::Db1 => &m["gateway"]["agent"],
                };
                m["liveGrants"].as_array().is_some_and(Vec::is_empty) && point["inSync"] == true
            });
            if in_sync {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{} was not idle and in sync within {limit:?}", self.machine.name());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn revoke(&self) -> Result<()> {
        self.post("revoke", &json!({"virtualMachines": [{"id": self.vm, "ports": [{"number": 22}]}]})).await.map(drop)
    }
}

fn find_end_time(v: &Value) -> Option<&str> {
    v.pointer("/virtualMachines/0/ports/0/endTimeUtc").and_then(Value::as_str)
}

/// Where a grant is reached: web1's port, or the gateway's address on the mapped port of the answer.
fn target_of(vm: DemoVm, answer: &Value) -> Result<SocketAddr> {
    match vm {
        DemoVm::Web1 => WEB1.parse().context("parsing web1's address"),
        DemoVm::Db1 => {
            let mapped = answer
                .pointer("/virtualMachines/0/ports/0/mappedPort")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| anyhow!("the initiate answer has no mappedPort: {answer}"))?;
            Ok(SocketAddr::new(GW1_PUBLIC.parse().context("parsing gw1's address")?, mapped))
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn inside(args: &LatencyArgs, bootstrap: &Path) -> Result<()> {
    let file = read_bootstrap(bootstrap)?;
    let boot = file.complete()?;
    let ca = std::fs::read(boot.ca).with_context(|| format!("reading the CA {}", boot.ca))?;
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).context("parsing the CA certificate")?)
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .http1_only()
        .no_proxy()
        .build()
        .context("building the HTTPS client")?;
    let api = Inner {
        client,
        policy: format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Security/locations/{}/jitNetworkAccessPolicies/default",
            boot.url, boot.subscription_id, boot.resource_group, boot.location
        ),
        vm: format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
            boot.subscription_id,
            boot.resource_group,
            args.vm.name()
        ),
        status: format!("{}/ajar/v1/subscriptions/{}/jitStatus", boot.url, boot.subscription_id),
        machine: args.vm,
        token: boot.admin_token.to_owned(),
    };
    if args.vm == DemoVm::Web1 {
        // Starts closed (the demo waited for that); make sure.
        wait_closed(WEB1.parse()?, PORT_TIMEOUT).await.context("web1:22 is open before the benchmark")?;
    }
    // One warm-up round trip (TLS handshake, pooled connection), not measured. A gateway keeps a
    // repeated request's mapped port, so its answer names the port every later grant gets too.
    let answer = api.initiate("PT1M").await.context("warm-up initiate")?;
    let addr = target_of(args.vm, &answer)?;
    wait_open(addr, PORT_TIMEOUT).await.context("warm-up")?;
    api.revoke().await.context("warm-up revoke")?;
    wait_closed(addr, PORT_TIMEOUT).await.context("warm-up")?;
    api.wait_idle(PORT_TIMEOUT).await.context("warm-up")?;

    eprintln!("request → open: {} measurements ...", args.requests);
    let mut open_hist = new_histogram()?;
    let mut close_after_revoke = new_histogram()?;
    for i in 0..args.requests {
        let t0 = Instant::now();
        let answer = api.initiate("PT1M").await.with_context(|| format!("initiate {i}"))?;
        let addr = target_of(args.vm, &answer)?;
        let opened = wait_open(addr, PORT_TIMEOUT).await.with_context(|| format!("request {i}"))?;
        record(&mut open_hist, opened.saturating_duration_since(t0));
        let r0 = Instant::now();
        api.revoke().await.with_context(|| format!("revoke {i}"))?;
        let (closed, _) = wait_closed(addr, PORT_TIMEOUT).await.with_context(|| format!("revoke {i}"))?;
        record(&mut close_after_revoke, closed.saturating_duration_since(r0));
        api.wait_idle(PORT_TIMEOUT).await.with_context(|| format!("after revoke {i}"))?;
    }

    eprintln!("end time → closed: {} measurements of PT{}S grants ...", args.expiries, args.grant_seconds);
    let mut late_ms = Vec::new();
    let mut probing_started_closed = 0u32;
    for i in 0..args.expiries {
        let answer = api.initiate(&format!("PT{}S", args.grant_seconds)).await.with_context(|| format!("expiry initiate {i}"))?;
        let end_text = find_end_time(&answer).ok_or_else(|| anyhow!("the initiate answer has no endTimeUtc: {answer}"))?;
        let end = time::OffsetDateTime::parse(end_text, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("parsing endTimeUtc {end_text}"))?;
        let end = SystemTime::from(end);
        let addr = target_of(args.vm, &answer)?;
        wait_open(addr, PORT_TIMEOUT).await.with_context(|| format!("expiry {i}"))?;
        if let Some(wait) = end.checked_sub(CLOSE_LEAD).and_then(|start| start.duration_since(SystemTime::now()).ok()) {
            tokio::time::sleep(wait).await;
        }
        let probing_from = SystemTime::now();
        let (_, closed) = wait_closed(addr, Duration::from_secs(args.grant_seconds) + Duration::from_secs(10))
            .await
            .with_context(|| format!("expiry {i}"))?;
        if closed.duration_since(probing_from).is_ok_and(|d| d < CLOSE_PROBE) {
            probing_started_closed += 1;
        }
        let signed_ms = match closed.duration_since(end) {
            Ok(d) => d.as_secs_f64() * 1000.0,
            Err(e) => -e.duration().as_secs_f64() * 1000.0,
        };
        late_ms.push(signed_ms);
    }
    late_ms.sort_by(f64::total_cmp);

    // Leave one live grant for the memory reading.
    api.initiate("PT5M").await.context("final initiate")?;

    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("| measurement | count | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, h) in [("request → port open", &open_hist), ("revoke → port closed", &close_after_revoke)] {
        println!("| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} |", h.len(), ms(h, 0.5), ms(h, 0.9), ms(h, 0.99), h.max() as f64 / 1000.0);
    }
    if !late_ms.is_empty() {
        println!(
            "| end time → port closed (signed) | {} | {:+.1} | {:+.1} | {:+.1} | {:+.1} |",
            late_ms.len(),
            percentile(&late_ms, 0.5),
            percentile(&late_ms, 0.9),
            percentile(&late_ms, 0.99),
            late_ms[late_ms.len() - 1]
        );
        println!(
            "\nEnd time → closed: min {:+.1} ms; {} of {} closed before probing began ({:.1} s before the end).",
            late_ms[0],
            probing_started_closed,
            late_ms.len(),
            CLOSE_LEAD.as_secs_f64()
        );
    }
    Ok(())
}
