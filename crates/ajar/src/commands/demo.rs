//! `ajar demo`: a lab of network namespaces in which a newcomer can watch a
//! port go from closed to open to closed (needs root).
//!
//! Topology (names unique per run, prefix `ajdemo-<pid>-`): a `hub` namespace
//! holding bridge `br0`, and four namespaces each with a veth `eth0` into it:
//! `ctl` (the server, 10.99.0.1), `client` (where the user's commands run,
//! 10.99.0.10), `web1` (Linux-like, TCP 22, 10.99.0.21) and `win1`
//! (Windows-like, TCP 3389, 10.99.0.22), the two VMs each with an agent. The
//! veths are created inside the namespaces, so the host's own network is never
//! touched and the fixed addresses cannot clash with it or with another demo.
//!
//! Every process is this binary re-executed with `ip netns exec`. The demo
//! writes `DIR/demo.json` so that `ajar demo connect` and `ajar demo run`
//! (separate processes) find the namespaces. On Ctrl-C / SIGTERM, and when the
//! startup fails halfway, [`Lab`]'s `Drop` kills the children and deletes the
//! namespaces; DIR stays (it holds the logs and the server's bootstrap.json),
//! only `demo.json` goes, so stale commands say that no demo is running.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use ajar_api::ajar_v1::VmStatusList;
use ajar_api::bootstrap::BootstrapFile;

use crate::flags::{DemoArgs, DemoCommand, DemoConnectArgs, DemoListenArgs, DemoProbeArgs};
use crate::settings::{ENV_BOOTSTRAP, ENV_CA, ENV_SERVER, ENV_TOKEN};

/// Role, address of its `eth0` (all /24 on the hub's bridge).
const NODES: [(&str, &str); 4] = [("ctl", "10.99.0.1"), ("client", "10.99.0.10"), ("web1", "10.99.0.21"), ("win1", "10.99.0.22")];
/// The VMs: name (also their namespace's role), `--os`, the port their policy's defaults protect.
const VMS: [(&str, &str, u16); 2] = [("web1", "linux", 22), ("win1", "windows", 3389)];
const SERVER_PORT: u16 = 8443;
const STATE_FILE: &str = "demo.json";
/// Marks a directory as the demo's, so a rerun may clear the previous run's server and agent data.
const MARKER_FILE: &str = ".ajar-demo";

/// Bound on the server's start and the agents' enrolment.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Bound on one `ip` or `ajar` call made while starting.
const CALL_LIMIT: Duration = Duration::from_secs(20);
/// Bound on a port reaching its expected state (listener up; closed after `policy enable`).
const PORT_LIMIT: Duration = Duration::from_secs(15);
/// Bound on a child's exit after SIGKILL.
const KILL_LIMIT: Duration = Duration::from_secs(5);

/// What a running demo recorded for `ajar demo connect` / `ajar demo run`.
#[derive(Debug, Serialize, Deserialize)]
struct DemoState {
    pid: u32,
    /// Role (hub, ctl, client, web1, win1) → namespace name.
    namespaces: BTreeMap<String, String>,
    /// Role → address.
    addresses: BTreeMap<String, String>,
    server_url: String,
    bootstrap: PathBuf,
}

impl DemoState {
    fn read(dir: &Path) -> anyhow::Result<DemoState> {
        let path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&path).with_context(|| {
            format!("no demo is running with --dir {} (cannot read {}); start one with `ajar demo`", dir.display(), path.display())
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a demo state file", path.display()))
    }

    fn namespace(&self, role: &str) -> anyhow::Result<&str> {
        self.namespaces.get(role).map(String::as_str).with_context(|| format!("the demo state names no `{role}` namespace"))
    }

    fn address(&self, role: &str) -> anyhow::Result<&str> {
        self.addresses.get(role).map(String::as_str).with_context(|| format!("the demo state names no `{role}` address"))
    }

    /// The client namespace, checked to exist: a state file left by a killed demo must not send
    /// commands into a namespace that is gone (or, worse, was reused).
    fn live_client(&self) -> anyhow::Result<&str> {
        let ns = self.namespace("client")?;
        if !netns_exists(ns) {
            bail!("the demo's namespace {ns} is gone: the demo (pid {}) is not running; start it with `ajar demo`", self.pid);
        }
        Ok(ns)
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    match args.command {
        None | Some(DemoCommand::Start) => start_and_wait(&args.dir).await,
        Some(DemoCommand::Connect(c)) => connect(&args.dir, &c),
        Some(DemoCommand::Run(r)) => run_in_client(&args.dir, &r.args),
        Some(DemoCommand::Listen(l)) => listen(l).await,
        Some(DemoCommand::Probe(p)) => probe(p).await,
    }
}

// ------------------------------------------------------------------ start

async fn start_and_wait(dir: &Path) -> anyhow::Result<()> {
    require_root()?;
    // Registered before anything is created, so a Ctrl-C during the startup cleans up instead of
    // killing this process with the namespaces left behind.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let cancel = Arc::new(AtomicBool::new(false));
    let exe = std::env::current_exe().context("cannot find this program's path")?;

    let dir = prepare_dir(dir)?;
    let mut startup = {
        let (dir, cancel, exe) = (dir.clone(), cancel.clone(), exe.clone());
        tokio::task::spawn_blocking(move || start(&dir, &exe, &cancel))
    };
    let lab = tokio::select! {
        res = &mut startup => res.context("the demo's startup task failed")??,
        _ = sigint.recv() => return interrupted(startup, &cancel).await,
        _ = sigterm.recv() => return interrupted(startup, &cancel).await,
    };

    print_ready(&dir, &lab);
    tokio::select! {
        _ = sigint.recv() => {},
        _ = sigterm.recv() => {},
    }
    println!("\nstopping: killing the demo's processes and deleting its namespaces ...");
    tokio::task::spawn_blocking(move || drop(lab)).await.context("the demo's cleanup task failed")?;
    println!("done; logs and bootstrap.json are kept in {}", dir.display());
    Ok(())
}

/// A signal came during the startup: let it stop at its next check (every wait checks `cancel`);
/// its error drops the half-built lab, which cleans up.
async fn interrupted(startup: tokio::task::JoinHandle<anyhow::Result<Lab>>, cancel: &AtomicBool) -> anyhow::Result<()> {
    cancel.store(true, Ordering::SeqCst);
    match startup.await {
        Ok(Ok(lab)) => tokio::task::spawn_blocking(move || drop(lab)).await.context("the demo's cleanup task failed")?,
        Ok(Err(_)) => {}
        Err(e) => return Err(e).context("the demo's startup task failed"),
    }
    bail!("interrupted during startup; everything the demo created was removed")
}

/// Makes DIR absolute (the state file's paths are used from other directories) and clears a previous
/// run's server and agent data: the agents of a new run could not enrol into an old server that still
/// holds their machines.
fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    if let Ok(state) = DemoState::read(&dir)
        && state.namespace("hub").is_ok_and(netns_exists)
    {
        bail!("a demo (pid {}) is already running with --dir {}; stop it first or pick another --dir", state.pid, dir.display());
    }
    let empty = std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?.next().is_none();
    if !empty && !dir.join(MARKER_FILE).exists() {
        bail!("{} is not empty and not a demo directory; pick another --dir", dir.display());
    }
    for sub in ["server", "agent-web1", "agent-win1", "logs", STATE_FILE] {
        let path = dir.join(sub);
        let res = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove the previous run's {}", path.display())),
        }
    }
    std::fs::write(dir.join(MARKER_FILE), "ajar demo directory\n").context("cannot write the demo marker file")?;
    std::fs::create_dir_all(dir.join("logs")).context("cannot create the logs directory")?;
    Ok(dir)
}

/// Builds the lab. Anything created is recorded in the returned (or, on error, dropped) [`Lab`].
fn start(dir: &Path, exe: &Path, cancel: &AtomicBool) -> anyhow::Result<Lab> {
    let prefix = format!("ajdemo-{}-", std::process::id());
    let mut lab = Lab { namespaces: Vec::new(), children: Vec::new(), state_file: None };
    let ns = |role: &str| format!("{prefix}{role}");
    let addr = |role: &str| NODES.iter().find(|(r, _)| *r == role).map(|(_, a)| *a).unwrap_or("0.0.0.0");
    let logs = dir.join("logs");

    // The network.
    let hub = ns("hub");
    lab.add_netns(&hub)?;
    ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &hub, "link", "set", "br0", "up"])?;
    for (role, address) in NODES {
        let name = ns(role);
        lab.add_netns(&name)?;
        // The hub end is named after the role (names are per namespace, so no clash with the host's).
        ip(&["-n", &hub, "link", "add", role, "type", "veth", "peer", "name", "eth0", "netns", &name])?;
        ip(&["-n", &hub, "link", "set", role, "master", "br0", "up"])?;
        ip(&["-n", &name, "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        ip(&["-n", &name, "link", "set", "eth0", "up"])?;
    }

    // The services the VMs guard.
    for (vm, _, port) in VMS {
        let listen = format!("{}:{port}", addr(vm));
        lab.spawn(&ns(vm), exe, &["demo", "listen", &listen, "--name", vm], &[], &logs.join(format!("listen-{vm}.log")))?;
    }

    // The server.
    let server_dir = dir.join("server");
    let ctl = addr("ctl");
    let listen = format!("{ctl}:{SERVER_PORT}");
    let server_log = logs.join("server.log");
    let server =
        lab.spawn(&ns("ctl"), exe, &["serve", "--data-dir", &path_str(&server_dir)?, "--listen", &listen, "--san", ctl], &[], &server_log)?;
    let bootstrap = server_dir.join(ajar_api::bootstrap::FILE_NAME);
    let join_token = wait_for_server(&mut lab, server, &server_log, &bootstrap, cancel)?;
    let url = format!("https://{ctl}:{SERVER_PORT}");

    // The agents.
    let ca = path_str(&server_dir.join("tls").join("ca.pem"))?;
    for (vm, os, _) in VMS {
        let state_dir = path_str(&dir.join(format!("agent-{vm}")))?;
        let args = ["agent", "--server", &url, "--ca", &ca, "--name", vm, "--os", os, "--state-dir", &state_dir];
        // The join token goes in the environment, where `ps` does not show it.
        lab.spawn(&ns(vm), exe, &args, &[("AJAR_JOIN_TOKEN", &join_token)], &logs.join(format!("agent-{vm}.log")))?;
    }

    let state = DemoState {
        pid: std::process::id(),
        namespaces: std::iter::once("hub").chain(NODES.iter().map(|(r, _)| *r)).map(|r| (r.to_owned(), ns(r))).collect(),
        addresses: NODES.iter().map(|(r, a)| ((*r).to_owned(), (*a).to_owned())).collect(),
        server_url: url,
        bootstrap,
    };
    let client = Client { exe, ns: ns("client"), source: addr("client").to_owned(), bootstrap: &state.bootstrap, logs: &logs };
    wait_for_agents(&client, cancel)?;

    // Ports open before JIT (which also shows the listeners are up), closed after.
    for (vm, _, port) in VMS {
        client.wait_port(addr(vm), port, true, cancel)?;
    }
    let vms: Vec<&str> = VMS.iter().map(|(vm, _, _)| *vm).collect();
    let mut enable = vec!["policy", "enable"];
    enable.extend(&vms);
    enable.push("--defaults");
    client.ajar(&enable)?;
    for (vm, _, port) in VMS {
        client.wait_port(addr(vm), port, false, cancel)?;
    }

    let state_file = dir.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(&state).context("cannot serialize the demo state")?;
    std::fs::write(&state_file, json).with_context(|| format!("cannot write {}", state_file.display()))?;
    lab.state_file = Some(state_file);
    Ok(lab)
}

/// Waits (bounded) until the server says `listening on` and has written bootstrap.json; returns the
/// join token.
fn wait_for_server(lab: &mut Lab, server: usize, log: &Path, bootstrap: &Path, cancel: &AtomicBool) -> anyhow::Result<String> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        check_cancel(cancel)?;
        if let Some(status) = lab.exited(server)? {
            bail!("the server exited ({status}) while starting; see {}", log.display());
        }
        let listening = std::fs::read_to_string(log).is_ok_and(|s| s.contains("listening on "));
        if listening && let Ok(bytes) = std::fs::read(bootstrap) {
            let file = BootstrapFile::parse(&bytes).with_context(|| format!("{} is not a bootstrap file", bootstrap.display()))?;
            return file.join_token.with_context(|| format!("{} has no joinToken", bootstrap.display()));
        }
        if Instant::now() >= deadline {
            bail!("the server did not start within {START_LIMIT:?}; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) until `ajar status` shows every VM with its agent.
fn wait_for_agents(client: &Client, cancel: &AtomicBool) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        check_cancel(cancel)?;
        let enrolled = match client.ajar(&["status", "--output", "json"]) {
            Ok(out) => {
                let list: VmStatusList = serde_json::from_str(&out).context("`ajar status --output json` did not print the status list")?;
                VMS.iter().all(|(vm, _, _)| list.value.iter().any(|s| s.name == *vm && s.agent.is_some()))
            }
            Err(_) => false,
        };
        if enrolled {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the agents did not enrol within {START_LIMIT:?}; see {}", client.logs.display());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn print_ready(dir: &Path, lab: &Lab) {
    // As the user typed it, so the suggested commands run from the same shell.
    let me = std::env::args().next().unwrap_or_else(|| "ajar".to_owned());
    let dir_flag = if dir == Path::new("ajar-demo") || std::fs::canonicalize("ajar-demo").is_ok_and(|d| d == dir) {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    };
    let d = |rest: &str| format!("  {me} demo{dir_flag} {rest}");
    let bootstrap = dir.join("server").join(ajar_api::bootstrap::FILE_NAME);
    println!("The ajar demo is ready (namespaces {}*; Ctrl-C to stop and clean up).", lab.prefix());
    println!();
    println!("  server:     https://10.99.0.1:{SERVER_PORT} (in namespace {}ctl)", lab.prefix());
    println!("  bootstrap:  {} (the admin token is in it)", bootstrap.display());
    println!("  VMs:        web1 10.99.0.21 (Linux, 22/TCP), win1 10.99.0.22 (Windows, 3389/TCP), JIT enabled: ports closed");
    println!("  you:        the client namespace, 10.99.0.10 (`demo run` runs ajar there)");
    println!("  logs:       {}", dir.join("logs").display());
    println!();
    println!("Try, from another shell:");
    for line in [
        d("connect web1 22                       # TIMEOUT"),
        d("run -- request web1 --port 22 --for 2m --justification \"try it\""),
        d("connect web1 22                       # OPEN"),
        d("run -- status"),
        d("run -- revoke web1 --port 22"),
        d("connect web1 22                       # TIMEOUT again"),
        d("run -- activity --vm web1"),
    ] {
        println!("{line}");
    }
}

// ------------------------------------------------------------------ the lab

/// Everything the demo created; dropping it removes it all (children first: a namespace lives on
/// while a process is in it).
struct Lab {
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    state_file: Option<PathBuf>,
}

impl Lab {
    fn prefix(&self) -> &str {
        self.namespaces.first().and_then(|n| n.strip_suffix("hub")).unwrap_or("ajdemo-")
    }

    fn add_netns(&mut self, name: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_owned());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    /// Starts `exe ARGS` inside `ns` with `env` added, stdout and stderr to `log`; returns its index.
    fn spawn(&mut self, ns: &str, exe: &Path, args: &[&str], env: &[(&str, &str)], log: &Path) -> anyhow::Result<usize> {
        let out = log_file(log)?;
        let err = out.try_clone().with_context(|| format!("cannot reopen {}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: Ctrl-C reaches only the demo, which then stops its children in
            // order, rather than each of them racing to exit on its own.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start `{}` in {ns}", args.join(" ")))?;
        self.children.push((format!("{} ({ns})", args.first().copied().unwrap_or("?")), child));
        Ok(self.children.len() - 1)
    }

    fn exited(&mut self, index: usize) -> anyhow::Result<Option<ExitStatus>> {
        let (name, child) = self.children.get_mut(index).context("no such child")?;
        child.try_wait().with_context(|| format!("cannot check on {name}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(path) = &self.state_file {
            let _ = std::fs::remove_file(path);
        }
        // SIGKILL: the demo's data is throwaway (SQLite's write-ahead log survives it anyway), and the
        // agents' nftables tables go with their namespaces.
        for (_, child) in &mut self.children {
            let _ = child.kill();
        }
        for (name, child) in &mut self.children {
            if !wait_bounded(child, KILL_LIMIT) {
                eprintln!("warning: {name} (pid {}) did not exit within {KILL_LIMIT:?} of SIGKILL", child.id());
            }
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "delete", ns]) {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `ip ARGS` (bounded); an error names the command and quotes ip's message.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let (status, _, stderr) = run_bounded(Command::new("ip").args(args), CALL_LIMIT)?;
    if !status.success() {
        bail!("`ip {}` failed: {}", args.join(" "), stderr.trim());
    }
    Ok(())
}

/// Runs a command with its output captured in temporary files (a pipe could fill up and block it),
/// killing it after `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> anyhow::Result<(ExitStatus, String, String)> {
    let out = tempfile_like()?;
    let err = tempfile_like()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.0.try_clone().context("cannot reopen a temporary file")?)
        .stderr(err.0.try_clone().context("cannot reopen a temporary file")?)
        .spawn()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !wait_bounded(&mut child, limit) {
        let _ = child.kill();
        let _ = wait_bounded(&mut child, KILL_LIMIT);
        bail!("{:?} did not finish within {limit:?}", cmd.get_program());
    }
    let status = child.wait().context("cannot collect a finished command")?;
    let read = |f: &(File, PathBuf)| std::fs::read_to_string(&f.1).unwrap_or_default();
    let (stdout, stderr) = (read(&out), read(&err));
    let _ = std::fs::remove_file(&out.1);
    let _ = std::fs::remove_file(&err.1);
    Ok((status, stdout, stderr))
}

/// A fresh file in the system's temporary directory (std has no tempfile).
fn tempfile_like() -> anyhow::Result<(File, PathBuf)> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("ajar-demo-{}-{n}.out", std::process::id()));
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok((file, path))
}

fn log_file(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("cannot open the log {}", path.display()))
}

fn path_str(path: &Path) -> anyhow::Result<String> {
    path.to_str().map(str::to_owned).with_context(|| format!("the path {} is not UTF-8", path.display()))
}

fn check_cancel(cancel: &AtomicBool) -> anyhow::Result<()> {
    if cancel.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// The client namespace as the demo's startup uses it.
struct Client<'a> {
    exe: &'a Path,
    ns: String,
    source: String,
    bootstrap: &'a Path,
    logs: &'a Path,
}

impl Client<'_> {
    /// `ajar ARGS` in the client namespace against the demo's server (bounded); its stdout.
    fn ajar(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = client_command(&self.ns, self.exe, self.bootstrap);
        cmd.args(args);
        let (status, stdout, stderr) = run_bounded(&mut cmd, CALL_LIMIT)?;
        if !status.success() {
            bail!("`ajar {}` failed ({status}): {}", args.join(" "), stderr.trim());
        }
        Ok(stdout)
    }

    /// Probes `addr:port` from the client until it is open (or, with `open` false, dropped), bounded.
    fn wait_port(&self, addr: &str, port: u16, open: bool, cancel: &AtomicBool) -> anyhow::Result<()> {
        let dst = format!("{addr}:{port}");
        let deadline = Instant::now() + PORT_LIMIT;
        loop {
            check_cancel(cancel)?;
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &self.ns]).arg(self.exe).args([
                "demo",
                "probe",
                "--from",
                &self.source,
                "--timeout-ms",
                "700",
                &dst,
            ]);
            let (status, _, _) = run_bounded(&mut cmd, CALL_LIMIT)?;
            // Exit 0 is OPEN, 2 is TIMEOUT (dropped by the VM's table inet ajar).
            if status.code() == Some(if open { 0 } else { 2 }) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let want = if open { "open (is its listener up?)" } else { "closed after `policy enable`" };
                bail!("{dst} was not {want} within {PORT_LIMIT:?}; see {}", self.logs.display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `ip netns exec NS EXE` with only the demo's bootstrap file to go by: settings from the user's
/// environment would point the command at another server.
fn client_command(ns: &str, exe: &Path, bootstrap: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(exe).env(ENV_BOOTSTRAP, bootstrap);
    for var in [ENV_SERVER, ENV_TOKEN, ENV_CA] {
        cmd.env_remove(var);
    }
    cmd
}

// ------------------------------------------------------------------ connect, run

fn connect(dir: &Path, args: &DemoConnectArgs) -> anyhow::Result<()> {
    require_root()?;
    let state = DemoState::read(dir)?;
    if !VMS.iter().any(|(vm, _, _)| *vm == args.vm) {
        bail!("the demo has no VM `{}`; it has {}", args.vm, VMS.map(|(vm, _, _)| vm).join(", "));
    }
    let client = state.live_client()?;
    let dst = format!("{}:{}", state.address(&args.vm)?, args.port);
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let err = Command::new("ip")
        .args(["netns", "exec", client])
        .arg(exe)
        .args(["demo", "probe", "--from", state.address("client")?, &dst])
        .exec();
    Err(err).context("cannot run `ip netns exec`")
}

fn run_in_client(dir: &Path, args: &[String]) -> anyhow::Result<()> {
    require_root()?;
    let state = DemoState::read(dir)?;
    let client = state.live_client()?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let err = client_command(client, &exe, &state.bootstrap).args(args).exec();
    Err(err).context("cannot run `ip netns exec`")
}

// ------------------------------------------------------------------ listen, probe

async fn listen(args: DemoListenArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
    println!("listening on {}", args.addr);
    let greeting: Arc<[u8]> = format!("hello from {}\n", args.name).into_bytes().into();
    loop {
        let (mut stream, peer) = listener.accept().await.context("accept failed")?;
        println!("connection from {peer}");
        let greeting = greeting.clone();
        tokio::spawn(async move {
            let _ = stream.write_all(&greeting).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Prints OPEN / REFUSED / TIMEOUT and exits 0 / 1 / 2 (3 for any other failure).
async fn probe(args: DemoProbeArgs) -> anyhow::Result<()> {
    let socket = if args.dst.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
        .context("cannot create a socket")?;
    if let Some(src) = args.from {
        socket.bind(SocketAddr::new(src, 0)).with_context(|| format!("cannot bind {src}"))?;
    }
    let limit = Duration::from_millis(args.timeout_ms);
    let (word, detail, code) = match tokio::time::timeout(limit, socket.connect(args.dst)).await {
        Ok(Ok(mut stream)) => {
            let mut buf = [0u8; 256];
            let banner = match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
                Ok(Ok(n)) => String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).trim().to_owned(),
                _ => String::new(),
            };
            ("OPEN", if banner.is_empty() { String::new() } else { format!(": {banner}") }, 0)
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => ("REFUSED", String::new(), 1),
        Ok(Err(e)) => ("FAILED", format!(": {e}"), 3),
        Err(_) => ("TIMEOUT", format!(": no answer within {limit:?}"), 2),
    };
    let from = args.from.map(|a: IpAddr| format!(" from {a}")).unwrap_or_default();
    println!("{word}  {}{from}{detail}", args.dst);
    std::process::exit(code)
}

// ------------------------------------------------------------------ helpers

fn require_root() -> anyhow::Result<()> {
    // The effective uid is the second field of "Uid:" in /proc/self/status.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    if !root {
        bail!("ajar demo needs root (it creates network namespaces); run it with sudo");
    }
    Ok(())
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}
