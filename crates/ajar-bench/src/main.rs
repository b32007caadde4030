//! `ajar-bench`: measures ajar and prints the figures for BENCHMARKS.md.
//! This is a measuring tool, not a test: it asserts nothing beyond "the server
//! answered as documented", and exits non-zero only when it could not measure.
//!
//! # Control plane
//!
//! Starts `ajar serve` as a separate process on 127.0.0.1 with a fresh data
//! directory, seeds `--policies` VMs and JIT policies (one VM each), then runs
//! `--clients` concurrent HTTPS clients issuing `initiate` requests for
//! `--seconds` (after `--warmup` seconds that are not measured), then policy
//! GETs for `--get-seconds`, and prints a Markdown section (and optionally
//! JSON) with throughput, latency percentiles and the server's peak RSS.
//!
//! ```text
//! cargo build --release -p ajar -p ajar-bench
//! target/release/ajar-bench control-plane --server-bin target/release/ajar
//! # smaller: --policies 200 --seconds 5 --warmup 1 --get-seconds 3 --clients 8
//! # figures as JSON too: --json bench.json
//! ```
//!
//! The client runs on the same machine as the server, so both share the CPUs;
//! the figures are for the pair, as BENCHMARKS.md says. Nothing but
//! 127.0.0.1 is ever contacted.
//!
//! With `--rbac`, 1,000 custom roles and 10,000 role assignments are stored
//! through the API first, and the load runs as a principal that holds only the
//! JIT requester role at the policies' resource group (see `rbac.rs`).
//!
//! # Authorization
//!
//! `ajar-bench authz` times the access decision in process: index rebuild and
//! `check` with 10,000 assignments; see `authz.rs`.
//!
//! # Dashboard
//!
//! `ajar-bench dashboard --server-bin target/release/ajar` times each dashboard page with 5,000
//! machines, from the server's own `Server-Timing`; see `dashboard.rs`.
//!
//! # Latency (root)
//!
//! `ajar-bench latency --ajar-bin target/release/ajar` starts `ajar demo` and,
//! from its client namespace, times initiate → port open and a grant's end
//! time → port closed end to end; see `latency.rs`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};

mod authz;
mod dashboard;
mod enforce;
mod latency;
mod rbac;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use ajar_api::bootstrap::{self, BootstrapFile};

const API_VERSION: &str = "api-version=2020-01-01";
/// How long `ajar serve` may take to print its "listening on" line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Any single request taking longer than this counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests in flight while seeding.
const SEED_CONCURRENCY: usize = 16;
/// Upper bound of the latency histograms, in µs (one hour).
const HIST_MAX_US: u64 = 3_600_000_000;
/// A hard cap on the requests one load task sends, besides its deadline.
const MAX_REQUESTS_PER_TASK: u64 = 100_000_000;

#[derive(Parser)]
#[command(name = "ajar-bench", about = "Measures ajar (a benchmark, not a test) and prints Markdown.")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Control-plane throughput and latency: initiate and GET against a local `ajar serve`.
    ControlPlane(ControlPlaneArgs),
    /// Time to apply N live grants on one machine with nftables (root; throwaway namespace).
    Enforce(enforce::EnforceArgs),
    /// End to end through `ajar demo`: initiate → port open, end time → port closed (root).
    Latency(latency::LatencyArgs),
    /// The authorization decision in process: index rebuild and check with many roles and assignments.
    Authz(authz::AuthzArgs),
    /// The dashboard's server time per page with thousands of machines.
    Dashboard(dashboard::DashboardArgs),
}

#[derive(Args, Debug, Clone)]
struct ControlPlaneArgs {
    /// The ajar binary to start as `PATH serve --data-dir DIR --listen 127.0.0.1:0`.
    #[arg(long, value_name = "PATH")]
    server_bin: PathBuf,
    /// Concurrent client tasks (sharing one connection pool).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    clients: u32,
    /// Measured seconds of initiate load (after the warm-up).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Seconds of initiate load before measuring starts.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup: u64,
    /// Policies to seed (each with its own VM).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    policies: u64,
    /// Measured seconds of GET load.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    get_seconds: u64,
    /// Seconds of GET load before measuring starts.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=600))]
    get_warmup: u64,
    /// Let the client negotiate HTTP/2 (one multiplexed connection) instead of HTTP/1.1 keep-alive.
    #[arg(long)]
    http2: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Store custom roles and role assignments through the API before the load, and run the load as a
    /// principal holding only the JIT requester role at the policies' resource group (not as the admin).
    #[arg(long)]
    rbac: bool,
    /// With --rbac: custom roles to store.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rbac_roles: u32,
    /// With --rbac: role assignments to store.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rbac_assignments: u32,
    /// With --rbac: principals the assignments name.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rbac_principals: u32,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Bench::ControlPlane(args) => runtime.block_on(control_plane(args)),
        Bench::Enforce(args) => enforce::run(args),
        Bench::Latency(args) => latency::run(args, &runtime),
        Bench::Authz(args) => authz::run(args),
        Bench::Dashboard(args) => runtime.block_on(dashboard::run(args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the whole context chain on one line.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------ server process

/// The server child process; dropping it kills the server.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(bin: &Path, data_dir: &Path) -> Result<Server> {
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("the server's stdout was not piped"))?;
        // From here on the guard kills the child on every exit path.
        let mut server = Server { child, url: String::new() };
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads stdout until the server closes it (it dies with the server), so
        // the pipe never fills up.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        server.url = match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                bail!("{} serve printed no \"listening on\" line within {} s", bin.display(), START_TIMEOUT.as_secs())
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = server.child.wait().context("waiting for the server")?;
                bail!("{} serve exited ({status}) before printing its \"listening on\" line (see its stderr above)", bin.display())
            }
        };
        if !server.url.starts_with("https://127.0.0.1:") {
            bail!("the server listens on {}, not on https://127.0.0.1:PORT; refusing to contact it", server.url);
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the server has exited.
    fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait().context("checking on the server")? {
            Some(status) => bail!("the server exited during the benchmark ({status})"),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every task's result, in the order they finish; the first failure stops the others.
pub(crate) async fn join_all<T: 'static>(mut set: JoinSet<Result<T>>, what: &str) -> Result<Vec<T>> {
    let mut all = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(t)) => all.push(t),
            Ok(Err(e)) => {
                set.abort_all();
                return Err(e);
            }
            Err(e) => {
                set.abort_all();
                return Err(anyhow!("{what} failed: {e}"));
            }
        }
    }
    Ok(all)
}

/// VmHWM and VmRSS of a process, in KiB.
pub(crate) fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no {name} in {path}"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

// ------------------------------------------------------------------ API

/// `bootstrap.json` of a server the bench started; [`BootstrapFile::complete`] says whether it holds
/// every key, as `ajar serve` writes it.
fn read_bootstrap(path: &Path) -> Result<BootstrapFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    BootstrapFile::parse(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// What the load tasks share: the client and the resource names.
struct Api {
    client: reqwest::Client,
    url: String,
    sub: String,
    rg: String,
    loc: String,
    token: String,
}

impl Api {
    fn vm_id(&self, i: u64) -> String {
        format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/vm{i}", self.sub, self.rg)
    }

    fn vm_url(&self, i: u64) -> String {
        format!("{}{}?{API_VERSION}", self.url, self.vm_id(i))
    }

    fn policy_path(&self, i: u64) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Security/locations/{}/jitNetworkAccessPolicies/p{i}",
            self.url, self.sub, self.rg, self.loc
        )
    }

    fn put_vm(&self, i: u64) -> reqwest::RequestBuilder {
        let body = json!({
            "location": self.loc,
            "properties": {
                "storageProfile": {"osDisk": {"osType": "Linux"}},
                "networkProfile": {"privateIPAddresses": ["10.0.0.4"]},
            },
        });
        self.client.put(self.vm_url(i)).bearer_auth(&self.token).json(&body)
    }

    fn put_policy(&self, i: u64) -> reqwest::RequestBuilder {
        let body = json!({
            "kind": "Basic",
            "properties": {"virtualMachines": [{
                "id": self.vm_id(i),
                "ports": [
                    {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"},
                    {"number": 3389, "protocol": "*", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"},
                ],
            }]},
        });
        self.client.put(format!("{}?{API_VERSION}", self.policy_path(i))).bearer_auth(&self.token).json(&body)
    }

    fn initiate(&self, i: u64) -> reqwest::RequestBuilder {
        let body = json!({
            "virtualMachines": [{
                "id": self.vm_id(i),
                "ports": [{"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "10.1.2.3"}],
            }],
            "justification": "bench",
        });
        self.client.post(format!("{}/initiate?{API_VERSION}", self.policy_path(i))).bearer_auth(&self.token).json(&body)
    }

    fn get_policy(&self, i: u64) -> reqwest::RequestBuilder {
        self.client.get(format!("{}?{API_VERSION}", self.policy_path(i))).bearer_auth(&self.token)
    }
}

/// How one request ended.
enum Outcome {
    Expected,
    /// Another status; the text says which, with the start of the body.
    Status(String),
    Transport(String),
}

/// Sends a request, reads the whole body (so the connection is reused) and
/// compares the status with `expected`.
async fn send(req: reqwest::RequestBuilder, what: &str, expected: impl Fn(StatusCode) -> bool) -> Outcome {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Transport(format!("{what}: {}", error_chain(&e))),
    };
    let status = resp.status();
    match resp.bytes().await {
        Ok(body) if expected(status) => {
            let _ = body;
            Outcome::Expected
        }
        Ok(body) => {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(500).collect();
            Outcome::Status(format!("{what}: HTTP {status}: {text}"))
        }
        Err(e) => Outcome::Transport(format!("{what}: reading the body after HTTP {status}: {}", error_chain(&e))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).context("creating a histogram")
}

fn record(hist: &mut Histogram<u64>, elapsed: Duration) {
    let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(us.max(1));
}

// ------------------------------------------------------------------ phases

/// The figures of one operation.
struct Phase {
    name: String,
    /// Requests answered as expected within the measured window.
    requests: u64,
    /// The measured window (from its start to the last measured answer).
    window: Duration,
    hist: Histogram<u64>,
    /// Unexpected statuses / transport errors within the measured window.
    status_errors: u64,
    transport_errors: u64,
    /// Errors during the warm-up, not counted above.
    warmup_errors: u64,
    first_error: Option<String>,
    /// Every request sent, warm-up and errors included.
    sent: u64,
}

impl Phase {
    fn throughput(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 { self.requests as f64 / secs } else { 0.0 }
    }

    fn errors(&self) -> u64 {
        self.status_errors + self.transport_errors
    }

    fn ms(&self, quantile: f64) -> f64 {
        if self.hist.is_empty() { 0.0 } else { self.hist.value_at_quantile(quantile) as f64 / 1000.0 }
    }

    fn max_ms(&self) -> f64 {
        if self.hist.is_empty() { 0.0 } else { self.hist.max() as f64 / 1000.0 }
    }

    fn to_json(&self) -> Value {
        json!({
            "operation": self.name,
            "requests": self.requests,
            "windowSeconds": self.window.as_secs_f64(),
            "throughputPerSecond": self.throughput(),
            "p50Ms": self.ms(0.50),
            "p90Ms": self.ms(0.90),
            "p99Ms": self.ms(0.99),
            "p999Ms": self.ms(0.999),
            "maxMs": self.max_ms(),
            "meanMs": if self.hist.is_empty() { 0.0 } else { self.hist.mean() / 1000.0 },
            "statusErrors": self.status_errors,
            "transportErrors": self.transport_errors,
            "warmupErrors": self.warmup_errors,
            "firstError": self.first_error,
            "sent": self.sent,
        })
    }
}

/// Creates `n` VMs and `n` policies, `SEED_CONCURRENCY` requests in flight;
/// stops at the first answer that is not 2xx.
async fn seed(api: &Arc<Api>, n: u64) -> Result<Phase> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers = SEED_CONCURRENCY.min(usize::try_from(n).unwrap_or(usize::MAX));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let api = Arc::clone(api);
        let next = Arc::clone(&next);
        set.spawn(async move {
            let mut hist = new_histogram()?;
            // Bounded by n: each iteration takes a fresh index.
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                if i >= n {
                    return Ok::<_, anyhow::Error>(hist);
                }
                for (what, req) in [(format!("PUT vm{i}"), api.put_vm(i)), (format!("PUT policy p{i}"), api.put_policy(i))] {
                    let t = Instant::now();
                    match send(req, &what, |s| s.is_success()).await {
                        Outcome::Expected => record(&mut hist, t.elapsed()),
                        Outcome::Status(e) | Outcome::Transport(e) => bail!("seeding failed: {e}"),
                    }
                }
            }
        });
    }
    let mut hist = new_histogram()?;
    for part in join_all(set, "a seeding task").await? {
        hist.add(&part).context("merging histograms")?;
    }
    let hist_len = hist.len();
    Ok(Phase {
        name: "seed: PUT VM + PUT policy".to_owned(),
        requests: hist.len(),
        window: start.elapsed(),
        hist,
        status_errors: 0,
        transport_errors: 0,
        warmup_errors: 0,
        first_error: None,
        sent: hist_len,
    })
}

#[derive(Clone, Copy)]
enum Op {
    Initiate,
    Get,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Initiate => "POST initiate",
            Op::Get => "GET policy",
        }
    }

    fn request(self, api: &Api, i: u64) -> reqwest::RequestBuilder {
        match self {
            Op::Initiate => api.initiate(i),
            Op::Get => api.get_policy(i),
        }
    }

    fn expected(self) -> StatusCode {
        match self {
            Op::Initiate => StatusCode::ACCEPTED,
            Op::Get => StatusCode::OK,
        }
    }
}

struct TaskResult {
    hist: Histogram<u64>,
    status_errors: u64,
    transport_errors: u64,
    warmup_errors: u64,
    first_error: Option<(Instant, String)>,
    last_done: Instant,
    sent: u64,
}

/// `clients` tasks sending `op` on random policies for `warmup + measure`;
/// only requests started after the warm-up are counted.
async fn load(api: &Arc<Api>, op: Op, clients: u32, n: u64, warmup: Duration, measure: Duration) -> Result<Phase> {
    let start = Instant::now();
    let measure_start = start + warmup;
    let end = measure_start + measure;
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let api = Arc::clone(api);
        set.spawn(async move {
            let mut rng = StdRng::from_entropy();
            let mut r = TaskResult {
                hist: new_histogram()?,
                status_errors: 0,
                transport_errors: 0,
                warmup_errors: 0,
                first_error: None,
                last_done: measure_start,
                sent: 0,
            };
            let expected = op.expected();
            for _ in 0..MAX_REQUESTS_PER_TASK {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let i = rng.gen_range(0..n);
                r.sent += 1;
                let outcome = send(op.request(&api, i), &format!("{} p{i}", op.name()), |s| s == expected).await;
                let done = Instant::now();
                let measured = t >= measure_start;
                if measured {
                    r.last_done = done;
                }
                let error = match outcome {
                    Outcome::Expected => {
                        if measured {
                            record(&mut r.hist, done - t);
                        }
                        continue;
                    }
                    Outcome::Status(e) => {
                        if measured {
                            r.status_errors += 1;
                        }
                        e
                    }
                    Outcome::Transport(e) => {
                        if measured {
                            r.transport_errors += 1;
                        }
                        e
                    }
                };
                if !measured {
                    r.warmup_errors += 1;
                }
                if r.first_error.is_none() {
                    r.first_error = Some((t, error));
                }
            }
            Ok::<_, anyhow::Error>(r)
        });
    }
    let mut phase = Phase {
        name: op.name().to_owned(),
        requests: 0,
        window: measure,
        hist: new_histogram()?,
        status_errors: 0,
        transport_errors: 0,
        warmup_errors: 0,
        first_error: None,
        sent: 0,
    };
    let mut first: Option<(Instant, String)> = None;
    let mut last_done = end;
    for r in join_all(set, "a load task").await? {
        phase.hist.add(&r.hist).context("merging histograms")?;
        phase.status_errors += r.status_errors;
        phase.transport_errors += r.transport_errors;
        phase.warmup_errors += r.warmup_errors;
        phase.sent += r.sent;
        last_done = last_done.max(r.last_done);
        first = match (first, r.first_error) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
    }
    phase.requests = phase.hist.len();
    phase.window = last_done.saturating_duration_since(measure_start);
    phase.first_error = first.map(|(_, e)| e);
    Ok(phase)
}

// ------------------------------------------------------------------ machine

struct Machine {
    cpus: usize,
    cpu_model: String,
    mem_gib: f64,
    commit: Option<String>,
}

fn machine() -> Machine {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty());
    Machine { cpus, cpu_model, mem_gib, commit }
}

// ------------------------------------------------------------------ control plane

async fn control_plane(args: ControlPlaneArgs) -> Result<()> {
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let started_at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let n = args.policies;
    let dir = tempfile::Builder::new().prefix("ajar-bench-").tempdir().context("creating a temporary directory")?;
    let data_dir = dir.path().join("data");

    eprintln!("starting {} serve ...", args.server_bin.display());
    let mut server = Server::start(&args.server_bin, &data_dir)?;
    let file = read_bootstrap(&data_dir.join(bootstrap::FILE_NAME))?;
    let boot = file.complete()?;
    if boot.url != server.url {
        eprintln!("note: bootstrap.json says {} but the server printed {}; using the latter", boot.url, server.url);
    }
    let ca = std::fs::read(boot.ca).with_context(|| format!("reading the CA {}", boot.ca))?;
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).context("parsing the CA certificate")?)
        .pool_max_idle_per_host(args.clients as usize)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .no_proxy();
    if !args.http2 {
        builder = builder.http1_only();
    }
    let client = builder.build().context("building the HTTPS client")?;
    let api = Arc::new(Api {
        client,
        url: server.url.clone(),
        sub: boot.subscription_id.to_owned(),
        rg: boot.resource_group.to_owned(),
        loc: boot.location.to_owned(),
        token: boot.admin_token.to_owned(),
    });

    eprintln!("seeding {n} VMs and {n} policies ({SEED_CONCURRENCY} in flight) ...");
    let seeded = seed(&api, n).await?;
    eprintln!("seeded in {:.2} s ({:.0} PUT/s)", seeded.window.as_secs_f64(), seeded.throughput());
    server.check_alive()?;

    let rbac = if args.rbac {
        let opts = rbac::RbacOptions { roles: args.rbac_roles, assignments: args.rbac_assignments, principals: args.rbac_principals };
        let seeded = rbac::seed(&api, opts, n, 1).await?;
        server.check_alive()?;
        Some(seeded)
    } else {
        None
    };
    // The load runs as the requester when RBAC data was seeded, otherwise as the admin.
    let api = match &rbac {
        Some(r) => Arc::new(Api {
            client: api.client.clone(),
            url: api.url.clone(),
            sub: api.sub.clone(),
            rg: api.rg.clone(),
            loc: api.loc.clone(),
            token: r.requester_token.clone(),
        }),
        None => api,
    };

    eprintln!("initiate load: {} clients, {} s warm-up + {} s measured ...", args.clients, args.warmup, args.seconds);
    let initiate = load(&api, Op::Initiate, args.clients, n, Duration::from_secs(args.warmup), Duration::from_secs(args.seconds)).await?;
    server.check_alive()?;

    eprintln!("GET load: {} clients, {} s warm-up + {} s measured ...", args.clients, args.get_warmup, args.get_seconds);
    let get = load(&api, Op::Get, args.clients, n, Duration::from_secs(args.get_warmup), Duration::from_secs(args.get_seconds)).await?;
    server.check_alive()?;

    let (hwm_kib, rss_kib) = memory_kib(server.pid())?;
    drop(server);

    let m = machine();
    let phases = [&seeded, &initiate, &get];
    let protocol = if args.http2 { "HTTP/2 (if negotiated)" } else { "HTTP/1.1 keep-alive" };

    let mut out = String::new();
    out.push_str("## Control plane\n\n");
    out.push_str(&format!("- command: `{command_line}`\n"));
    out.push_str(&format!("- date: {started_at}\n"));
    out.push_str(&format!(
        "- machine: {} CPUs, {}, {:.1} GiB RAM; client and server on the same machine\n",
        m.cpus, m.cpu_model, m.mem_gib
    ));
    if let Some(c) = &m.commit {
        out.push_str(&format!("- ajar commit: {c}\n"));
    }
    out.push_str(&format!("- policies stored: {n} (one VM each, 2 ports)\n"));
    out.push_str(&format!(
        "- seeding: {} PUTs in {:.2} s ({:.0} PUT/s, {SEED_CONCURRENCY} in flight)\n",
        seeded.requests,
        seeded.window.as_secs_f64(),
        seeded.throughput()
    ));
    match &rbac {
        Some(r) => out.push_str(&format!(
            "- RBAC: seeded {} custom roles and {} role assignments ({} at resource groups, {} at VMs, up to {} per principal) over {} principals through the API in {:.1} s + {:.1} s + {:.1} s (principals, roles, assignments: {:.0}/s); the load runs as a principal holding only the JIT Network Access Requester role at the policies' resource group\n",
            r.opts.roles,
            r.opts.assignments,
            r.at_group,
            r.at_vm,
            r.max_per_principal,
            r.opts.principals,
            r.principals_time.as_secs_f64(),
            r.roles_time.as_secs_f64(),
            r.assignments_time.as_secs_f64(),
            f64::from(r.opts.assignments) / r.assignments_time.as_secs_f64().max(1e-9)
        )),
        None => out.push_str("- RBAC: no roles or assignments seeded; the load runs as the bootstrap admin (Owner at `/`)\n"),
    }
    out.push_str(&format!("- clients: {} concurrent, one shared connection pool, TLS, {protocol}\n", args.clients));
    out.push_str(&format!(
        "- initiate: {} s warm-up (not measured) + {} s measured; GET: {} s warm-up + {} s measured; random policy each request\n",
        args.warmup, args.seconds, args.get_warmup, args.get_seconds
    ));
    out.push_str(&format!(
        "- GET answers list each policy's access requests: {:.1} initiates per policy (warm-up included) preceded the GET phase\n",
        initiate.sent as f64 / n as f64
    ));
    out.push_str(&format!(
        "- server memory at the end: peak RSS (VmHWM) {:.1} MiB, RSS (VmRSS) {:.1} MiB\n\n",
        hwm_kib as f64 / 1024.0,
        rss_kib as f64 / 1024.0
    ));
    out.push_str("| operation | requests | throughput (/s) | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for p in phases {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
            p.name,
            p.requests,
            p.throughput(),
            p.ms(0.50),
            p.ms(0.90),
            p.ms(0.99),
            p.ms(0.999),
            p.max_ms(),
            p.errors()
        ));
    }
    let mut notes = String::new();
    for p in phases {
        if p.errors() > 0 || p.warmup_errors > 0 {
            notes.push_str(&format!(
                "- {}: {} unexpected statuses, {} transport errors, {} errors during warm-up; first: {}\n",
                p.name,
                p.status_errors,
                p.transport_errors,
                p.warmup_errors,
                p.first_error.as_deref().unwrap_or("-")
            ));
        }
    }
    if !notes.is_empty() {
        out.push_str("\nErrors:\n\n");
        out.push_str(&notes);
    }
    print!("{out}");

    if let Some(path) = &args.json {
        let report = json!({
            "benchmark": "control-plane",
            "command": command_line,
            "date": started_at,
            "machine": {"cpus": m.cpus, "cpuModel": m.cpu_model, "memoryGiB": m.mem_gib},
            "commit": m.commit,
            "policies": n,
            "clients": args.clients,
            "protocol": protocol,
            "warmupSeconds": args.warmup,
            "seconds": args.seconds,
            "getWarmupSeconds": args.get_warmup,
            "getSeconds": args.get_seconds,
            "serverMemory": {"vmHwmMiB": hwm_kib as f64 / 1024.0, "vmRssMiB": rss_kib as f64 / 1024.0},
            "rbac": rbac.as_ref().map(rbac::RbacSeeded::to_json),
            "operations": phases.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
