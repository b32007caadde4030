//! `ajar demo`: a lab of network namespaces in which a newcomer can watch a
//! port go from closed to open to closed (needs root).
//!
//! Topology (names unique per run, prefix `ajdemo-<pid>-`): a `hub` namespace
//! holding bridge `br0`, and five namespaces each with a veth `eth0` into it:
//! `ctl` (the server, 10.99.0.1), `client` (where the user's commands run,
//! 10.99.0.10), `web1` (Linux-like, TCP 22, 10.99.0.21), `win1`
//! (Windows-like, TCP 3389, 10.99.0.22), the two VMs each with a host agent, and
//! `gw1` (the gateway, public address 10.99.0.30, with a gateway agent). Behind
//! it, on a private network that is one veth pair (gw1's `eth1` 10.98.0.1/24,
//! db1's `eth0`), `db1` (Linux-like, TCP 22, 10.98.0.21, default route via
//! gw1, which forwards). db1 has no host agent: gw1 alone enforces it, mapping
//! `10.99.0.30:mappedPort` to `10.98.0.21:22` for a grant's source. The client
//! has no route to 10.98.0.0/24, and gw1 drops routed traffic to db1's
//! protected port anyway, so db1 is reached only through a grant's mapped
//! port. The veths are created inside the namespaces, so the host's own
//! network is never touched and the fixed addresses cannot clash with it or
//! with another demo.
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

use ajar_api::ajar_v1::{GatewayList, LiveGrantOut, VmStatusList};
use ajar_api::bootstrap::BootstrapFile;

use crate::flags::{DemoArgs, DemoCommand, DemoConnectArgs, DemoListenArgs, DemoProbeArgs};
use crate::settings::{ENV_BOOTSTRAP, ENV_CA, ENV_SERVER, ENV_TOKEN};

/// Role, address of its `eth0` (all /24 on the hub's bridge).
const NODES: [(&str, &str); 5] =
    [("ctl", "10.99.0.1"), ("client", "10.99.0.10"), ("web1", "10.99.0.21"), ("win1", "10.99.0.22"), (GATEWAY, GATEWAY_PUBLIC)];
/// The gateway: its name (also its namespace's role), its address on the hub (where clients connect)
/// and on the private network.
const GATEWAY: &str = "gw1";
const GATEWAY_PUBLIC: &str = "10.99.0.30";
const GATEWAY_PRIVATE: &str = "10.98.0.1";
/// The machine behind the gateway (role, address of its `eth0`), on a private /24 that is one veth pair
/// to the gateway's `eth1`.
const PRIVATE_NODE: (&str, &str) = ("db1", "10.98.0.21");

/// A VM of the demo; its name is also its namespace's role.
struct DemoVm {
    name: &'static str,
    /// `--os`.
    os: &'static str,
    /// The port its policy's defaults protect, where its listener is.
    port: u16,
    /// Behind the gateway: enforced there only, so it runs no host agent.
    behind_gateway: bool,
}

const VMS: [DemoVm; 3] = [
    DemoVm { name: "web1", os: "linux", port: 22, behind_gateway: false },
    DemoVm { name: "win1", os: "windows", port: 3389, behind_gateway: false },
    DemoVm { name: "db1", os: "linux", port: 22, behind_gateway: true },
];
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
    // Every agent's state goes too: a credential from the previous run's server would not enrol.
    let agents = VMS.iter().filter(|vm| !vm.behind_gateway).map(|vm| vm.name).chain([GATEWAY]).map(|name| format!("agent-{name}"));
    for sub in ["server", "logs", STATE_FILE].map(str::to_owned).into_iter().chain(agents) {
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
    let addr = |role: &str| all_nodes().find(|(r, _)| *r == role).map(|(_, a)| a).unwrap_or("0.0.0.0");
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
    // The private network. The machine's default route is the gateway: its replies must go back
    // through the gateway, which translated only the destination of what reached it.
    let (gw, (private_role, private_address)) = (ns(GATEWAY), PRIVATE_NODE);
    let private = ns(private_role);
    lab.add_netns(&private)?;
    ip(&["-n", &gw, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", &private])?;
    ip(&["-n", &gw, "addr", "add", &format!("{GATEWAY_PRIVATE}/24"), "dev", "eth1"])?;
    ip(&["-n", &gw, "link", "set", "eth1", "up"])?;
    ip(&["-n", &private, "addr", "add", &format!("{private_address}/24"), "dev", "eth0"])?;
    ip(&["-n", &private, "link", "set", "eth0", "up"])?;
    ip(&["-n", &private, "route", "add", "default", "via", GATEWAY_PRIVATE])?;
    // The setting belongs to the gateway's namespace and goes with it.
    in_netns(&gw, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;

    // The services the VMs guard.
    for vm in &VMS {
        let listen = format!("{}:{}", addr(vm.name), vm.port);
        let log = logs.join(format!("listen-{}.log", vm.name));
        lab.spawn(&ns(vm.name), exe, &["demo", "listen", &listen, "--name", vm.name], &[], &log)?;
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

    // The agents: one on each VM that is not behind the gateway, and the gateway's.
    let ca = path_str(&server_dir.join("tls").join("ca.pem"))?;
    for vm in VMS.iter().filter(|vm| !vm.behind_gateway) {
        let state_dir = path_str(&dir.join(format!("agent-{}", vm.name)))?;
        let args = ["agent", "--server", &url, "--ca", &ca, "--name", vm.name, "--os", vm.os, "--state-dir", &state_dir];
        // The join token goes in the environment, where `ps` does not show it.
        lab.spawn(&ns(vm.name), exe, &args, &[("AJAR_JOIN_TOKEN", &join_token)], &logs.join(format!("agent-{}.log", vm.name)))?;
    }
    let state_dir = path_str(&dir.join(format!("agent-{GATEWAY}")))?;
    let args = [
        "agent",
        "--server",
        &url,
        "--ca",
        &ca,
        "--gateway",
        "--public-address",
        GATEWAY_PUBLIC,
        "--name",
        GATEWAY,
        "--state-dir",
        &state_dir,
    ];
    lab.spawn(&gw, exe, &args, &[("AJAR_JOIN_TOKEN", &join_token)], &logs.join(format!("agent-{GATEWAY}.log")))?;

    let state = DemoState {
        pid: std::process::id(),
        namespaces: std::iter::once("hub").chain(all_nodes().map(|(r, _)| r)).map(|r| (r.to_owned(), ns(r))).collect(),
        addresses: all_nodes().map(|(r, a)| (r.to_owned(), a.to_owned())).collect(),
        server_url: url,
        bootstrap,
    };
    let client = Client { exe, ns: ns("client"), source: addr("client").to_owned(), bootstrap: &state.bootstrap, logs: &logs };
    wait_for_agents(&client, cancel)?;

    // A machine behind the gateway has no agent to enrol it: it is added with its address and put
    // behind the gateway.
    for vm in VMS.iter().filter(|vm| vm.behind_gateway) {
        client.ajar(&["vm", "add", vm.name, "--os", vm.os, "--address", addr(vm.name)])?;
        client.ajar(&["vm", "set-gateway", vm.name, GATEWAY])?;
    }

    // Ports open before JIT (which also shows the listeners are up), closed after. The client has no
    // route to a machine behind the gateway: the gateway, on its network, checks that one's listener.
    for vm in &VMS {
        let (from_ns, from) = if vm.behind_gateway { (gw.as_str(), GATEWAY_PRIVATE) } else { (client.ns.as_str(), client.source.as_str()) };
        client.wait_port(from_ns, from, addr(vm.name), vm.port, true, cancel)?;
    }
    let mut enable = vec!["policy", "enable"];
    enable.extend(VMS.iter().map(|vm| vm.name));
    enable.push("--defaults");
    client.ajar(&enable)?;
    for vm in VMS.iter().filter(|vm| !vm.behind_gateway) {
        client.wait_port(&client.ns, &client.source, addr(vm.name), vm.port, false, cancel)?;
    }
    wait_for_gateway_in_sync(&client, cancel)?;

    let state_file = dir.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(&state).context("cannot serialize the demo state")?;
    std::fs::write(&state_file, json).with_context(|| format!("cannot write {}", state_file.display()))?;
    lab.state_file = Some(state_file);
    Ok(lab)
}

/// Every node but the hub: role, address.
fn all_nodes() -> impl Iterator<Item = (&'static str, &'static str)> {
    NODES.into_iter().chain(std::iter::once(PRIVATE_NODE))
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

/// Waits (bounded) until `ajar status` shows every VM outside the gateway with its agent, and
/// `ajar gateway list` shows the gateway.
fn wait_for_agents(client: &Client, cancel: &AtomicBool) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        check_cancel(cancel)?;
        let hosts = match client.status() {
            Ok(list) => {
                VMS.iter().filter(|vm| !vm.behind_gateway).all(|vm| list.value.iter().any(|s| s.name == vm.name && s.agent.is_some()))
            }
            Err(_) => false,
        };
        let gateway = hosts
            && match client.ajar(&["gateway", "list", "--output", "json"]) {
                Ok(out) => {
                    let list: GatewayList =
                        serde_json::from_str(&out).context("`ajar gateway list --output json` did not print the gateway list")?;
                    list.value.iter().any(|g| g.name == GATEWAY)
                }
                Err(_) => false,
            };
        if gateway {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the agents did not enrol within {START_LIMIT:?}; see {}", client.logs.display());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits (bounded) until the gateway has applied the state that protects the machines behind it: its
/// agent reported the etag of that state (the status's `inSync`), so routed traffic to their ports is
/// dropped from then on.
fn wait_for_gateway_in_sync(client: &Client, cancel: &AtomicBool) -> anyhow::Result<()> {
    let deadline = Instant::now() + PORT_LIMIT;
    loop {
        check_cancel(cancel)?;
        let in_sync = client.status().is_ok_and(|list| {
            VMS.iter().filter(|vm| vm.behind_gateway).all(|vm| {
                list.value.iter().any(|s| {
                    s.name == vm.name && s.state == "Configured" && s.gateway.as_ref().is_some_and(|g| g.name == GATEWAY && g.agent.in_sync)
                })
            })
        });
        if in_sync {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the gateway {GATEWAY} did not apply JIT within {PORT_LIMIT:?}; see {}", client.logs.display());
        }
        std::thread::sleep(Duration::from_millis(200));
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
    println!("  gateway:    {GATEWAY} {GATEWAY_PUBLIC} (public), forwarding to the private network 10.98.0.0/24");
    println!("  behind it:  db1 10.98.0.21 (Linux, 22/TCP), JIT enabled: no route from the client, reached only through");
    println!("              {GATEWAY_PUBLIC} on the port {GATEWAY} maps for a grant (`demo connect db1 22` finds it in the status)");
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
        String::new(),
        d("connect db1 22                        # UNREACHABLE: no grant, so no mapped port"),
        d("run -- request db1 --port 22 --for 2m # Connect to 10.99.0.30:PORT (through the gateway)"),
        d("connect db1 22                        # OPEN, through 10.99.0.30:PORT"),
        d("run -- vm show db1                    # the gateway, and where to connect"),
        d("run -- revoke db1 --port 22"),
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

/// Runs `ARGS` inside namespace `ns` (bounded); an error names the command and quotes its message.
fn in_netns(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let (status, _, stderr) = run_bounded(Command::new("ip").args(["netns", "exec", ns]).args(args), CALL_LIMIT)
        .with_context(|| format!("cannot run `{}` in {ns}", args.join(" ")))?;
    if !status.success() {
        bail!("`{}` in {ns} failed: {}", args.join(" "), stderr.trim());
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

    /// `ajar status --output json`, parsed.
    fn status(&self) -> anyhow::Result<VmStatusList> {
        let out = self.ajar(&["status", "--output", "json"])?;
        parse_status(&out)
    }

    /// Probes `addr:port` from `from` in namespace `ns` until it is open (or, with `open` false,
    /// dropped), bounded.
    fn wait_port(&self, ns: &str, from: &str, addr: &str, port: u16, open: bool, cancel: &AtomicBool) -> anyhow::Result<()> {
        let dst = format!("{addr}:{port}");
        let deadline = Instant::now() + PORT_LIMIT;
        loop {
            check_cancel(cancel)?;
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(self.exe).args(["demo", "probe", "--from", from, "--timeout-ms", "700", &dst]);
            let (status, _, _) = run_bounded(&mut cmd, CALL_LIMIT)?;
            // Exit 0 is OPEN, 2 is TIMEOUT (dropped by the VM's table inet ajar).
            if status.code() == Some(if open { 0 } else { 2 }) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let want = if open { "open (is its listener up?)" } else { "closed after `policy enable`" };
                bail!("{dst} was not {want} from {from} within {PORT_LIMIT:?}; see {}", self.logs.display());
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
    let Some(vm) = VMS.iter().find(|vm| vm.name == args.vm) else {
        bail!("the demo has no VM `{}`; it has {}", args.vm, VMS.map(|vm| vm.name).join(", "));
    };
    let client = state.live_client()?;
    let source = state.address("client")?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let direct = format!("{}:{}", state.address(vm.name)?, args.port);
    let dst = if vm.behind_gateway {
        // A machine behind the gateway is reached at the gateway's public address, on the port its
        // grant was given; only the server knows that port.
        let mut cmd = client_command(client, &exe, &state.bootstrap);
        cmd.args(["status", "--output", "json"]);
        let (status, stdout, stderr) = run_bounded(&mut cmd, CALL_LIMIT)?;
        if !status.success() {
            bail!("`ajar status` failed ({status}), so the port {GATEWAY} maps to {} is unknown: {}", vm.name, stderr.trim());
        }
        let list = parse_status(&stdout)?;
        let grants = list.value.iter().find(|s| s.name == vm.name).map(|s| s.live_grants.as_slice()).unwrap_or_default();
        match grant_to_connect(grants, args.port, source) {
            Some(to) => {
                println!(
                    "{} is behind the gateway {GATEWAY}: connecting to {to}, the port it maps to {direct} for the live grant",
                    vm.name
                );
                to.to_owned()
            }
            None => {
                println!(
                    "{} is behind the gateway {GATEWAY} and has no live grant on port {}, so {GATEWAY} maps no port to {direct}; trying {direct} itself:",
                    vm.name, args.port
                );
                direct
            }
        }
    } else {
        direct
    };
    // The line above must be out before exec replaces this process.
    std::io::Write::flush(&mut std::io::stdout()).context("cannot write to stdout")?;
    let err = Command::new("ip").args(["netns", "exec", client]).arg(exe).args(["demo", "probe", "--from", source, &dst]).exec();
    Err(err).context("cannot run `ip netns exec`")
}

/// The output of `ajar status --output json`.
fn parse_status(out: &str) -> anyhow::Result<VmStatusList> {
    serde_json::from_str(out).context("`ajar status --output json` did not print the status list")
}

/// Where to connect for a live grant on `port` (`connectTo`, through the gateway): the grant for
/// `source` if there is one (another source's mapping would not let the client in), else any.
fn grant_to_connect<'a>(grants: &'a [LiveGrantOut], port: u16, source: &str) -> Option<&'a str> {
    let on_port = || grants.iter().filter(|g| g.number == port).filter_map(|g| Some((g, g.connect_to.as_deref()?)));
    // A grant is the client's when one of its prefixes holds the client's address.
    let client = source.parse::<ajar_domain::prefix::SourcePrefix>().ok();
    let for_source = |g: &LiveGrantOut| {
        g.allowed_source_address_prefixes
            .iter()
            .filter_map(|p| p.parse::<ajar_domain::prefix::SourcePrefix>().ok())
            .any(|p| client.as_ref().is_some_and(|c| p.contains(c)))
    };
    on_port().find(|(g, _)| for_source(g)).or_else(|| on_port().next()).map(|(_, to)| to)
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

/// Prints OPEN / REFUSED / TIMEOUT / UNREACHABLE and exits 0 / 1 / 2 / 4 (3 for any other failure).
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
        Ok(Err(e)) if matches!(e.kind(), std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable) => {
            ("UNREACHABLE", ": no route from here".to_owned(), 4)
        }
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
