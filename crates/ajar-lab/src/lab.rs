//! Namespaces, links, addresses, listeners and probes; all undone on drop.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use crate::helper::{HELPER_ENV, HELPER_TEST, MARK};
use crate::run::{Output, run_bounded};

/// Prefix of every namespace a lab creates: `ajar-lab-<pid>-<n>-<name>`.
const NETNS_PREFIX: &str = "ajar-lab-";
/// Bound on any `ip` command.
const IP_LIMIT: Duration = Duration::from_secs(20);
/// Bound on a helper's start (process start-up, bind).
const START_LIMIT: Duration = Duration::from_secs(20);

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// A lab failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {detail}")]
pub struct LabError {
    pub context: String,
    pub detail: String,
}

impl LabError {
    pub(crate) fn new(context: impl Into<String>, detail: impl fmt::Display) -> Self {
        LabError { context: context.into(), detail: detail.to_string() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// What a connection attempt saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// TCP connected; UDP datagram echoed back.
    Open,
    /// Reached the host, nothing listening (RST / ICMP port unreachable).
    Refused,
    /// No answer: dropped.
    Timeout,
}

/// A namespace created by a [`Lab`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `["netns", "exec", NAME]`: arguments to `ip` that run a command in this namespace.
    pub fn exec_args(&self) -> Vec<String> {
        vec!["netns".into(), "exec".into(), self.name.clone()]
    }
}

/// True if the tests may run: root, and each tool in `tools` found on `PATH`. Otherwise, with `CI=true`
/// it panics with the reason (never a silent skip in CI); elsewhere it prints `skipping: needs …` and
/// returns false.
pub fn preflight(tools: &[&str]) -> bool {
    let mut missing: Vec<String> = Vec::new();
    if !is_root() {
        missing.push("root".into());
    }
    for tool in tools {
        if !on_path(tool) {
            missing.push(format!("`{tool}` on PATH"));
        }
    }
    run_or_skip("network-namespace tests", &missing)
}

/// True if nothing is `missing`. Otherwise, with `CI=true` it panics with the list (never a silent skip
/// in CI); elsewhere it prints `skipping: needs …` and returns false.
pub fn run_or_skip(tests: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let needs = missing.join(", ");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{tests} need {needs} (CI=true: refusing to skip)");
    }
    eprintln!("skipping: needs {needs}");
    false
}

fn is_root() -> bool {
    // The effective uid is the second field of "Uid:" in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

fn on_path(tool: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).any(|dir| dir.join(tool).is_file())
}

/// Throwaway namespaces and the processes in them. Dropping it kills the processes and deletes the
/// namespaces.
pub struct Lab {
    id: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    namespaces: Vec<String>,
    /// Listeners, each with the stdin pipe whose closing tells it to exit.
    children: Vec<(Child, Option<ChildStdin>)>,
}

impl Lab {
    /// A new, empty lab with a unique id (`ajar-lab-<pid>-<n>`). The first lab of a process also deletes
    /// lab namespaces left behind by processes that no longer exist.
    pub fn new() -> Result<Lab, LabError> {
        SWEEP.call_once(sweep_stale);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Ok(Lab { id: format!("{NETNS_PREFIX}{}-{n}", std::process::id()), inner: Mutex::new(Inner::default()) })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates namespace `<lab id>-<short>` with `lo` up.
    pub fn netns(&self, short: &str) -> Result<Netns, LabError> {
        if short.is_empty() || !short.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(LabError::new("creating a namespace", format!("bad short name {short:?}")));
        }
        let name = format!("{}-{short}", self.id);
        ip(&["netns", "add", &name])?;
        self.inner().namespaces.push(name.clone());
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn own(&self, ns: &Netns) -> Result<(), LabError> {
        if self.inner().namespaces.contains(&ns.name) {
            Ok(())
        } else {
            Err(LabError::new("using a namespace", format!("{} was not created by lab {}", ns.name, self.id)))
        }
    }

    /// A veth pair created directly inside `a` and `b` (the host's namespace never sees it), both ends up.
    /// Returns the interface names (in `a`, in `b`), unique per process and at most 15 characters.
    pub fn veth(&self, a: &Netns, b: &Netns) -> Result<(String, String), LabError> {
        self.own(a)?;
        self.own(b)?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("aj{:x}v{:x}", std::process::id(), n);
        let base: String = base.chars().take(14).collect();
        let (ia, ib) = (format!("{base}a"), format!("{base}b"));
        ip(&["link", "add", &ia, "netns", &a.name, "type", "veth", "peer", "name", &ib, "netns", &b.name])?;
        ip(&["-n", &a.name, "link", "set", &ia, "up"])?;
        ip(&["-n", &b.name, "link", "set", &ib, "up"])?;
        Ok((ia, ib))
    }

    /// Adds `cidr` (e.g. `10.77.0.1/24`, `fd00:77::1/64`) to `dev` in `ns`. Only 10.0.0.0/8 and fd00::/8
    /// are accepted; IPv6 addresses are added with `nodad`, so they are usable at once.
    pub fn addr(&self, ns: &Netns, dev: &str, cidr: &str) -> Result<(), LabError> {
        self.own(ns)?;
        let addr: IpAddr = cidr
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| LabError::new("adding an address", format!("bad address {cidr:?}")))?;
        if !lab_range(&addr) {
            return Err(LabError::new("adding an address", format!("{addr} is outside 10.0.0.0/8 and fd00::/8")));
        }
        let mut args = vec!["-n", &ns.name, "addr", "add", cidr, "dev", dev];
        if addr.is_ipv6() {
            args.push("nodad");
        }
        ip(&args)
    }

    /// Adds a route to `dest` (lab ranges only) through `dev` in `ns`.
    pub fn route(&self, ns: &Netns, dest: &str, dev: &str) -> Result<(), LabError> {
        self.own(ns)?;
        let ok = dest.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()).is_some_and(|a| lab_range(&a));
        if !ok {
            return Err(LabError::new("adding a route", format!("{dest} is not inside 10.0.0.0/8 or fd00::/8")));
        }
        ip(&["-n", &ns.name, "route", "add", dest, "dev", dev])
    }

    /// Adds a route to `dest` through the router `via` in `ns` (both inside the lab ranges; `via` on one of
    /// the namespace's links).
    pub fn route_via(&self, ns: &Netns, dest: &str, via: IpAddr) -> Result<(), LabError> {
        self.own(ns)?;
        let ok =
            dest.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()).is_some_and(|a| lab_range(&a) && a.is_ipv4() == via.is_ipv4());
        if !ok || !lab_range(&via) {
            return Err(LabError::new("adding a route", format!("{dest} via {via}: not both inside 10.0.0.0/8 or fd00::/8")));
        }
        ip(&["-n", &ns.name, "route", "add", dest, "via", &via.to_string()])
    }

    /// Makes the router `via` (a lab address on one of the namespace's links) the default route of its
    /// family in `ns`. The route exists only inside the namespace.
    pub fn default_route(&self, ns: &Netns, via: IpAddr) -> Result<(), LabError> {
        self.own(ns)?;
        if !lab_range(&via) {
            return Err(LabError::new("adding a default route", format!("{via} is outside 10.0.0.0/8 and fd00::/8")));
        }
        let family = if via.is_ipv4() { "-4" } else { "-6" };
        ip(&["-n", &ns.name, family, "route", "add", "default", "via", &via.to_string()])
    }

    /// Turns on IPv4 and IPv6 forwarding in `ns`, so it routes between its links (needs `sysctl`; the
    /// setting belongs to the namespace and goes with it).
    pub fn forwarding(&self, ns: &Netns) -> Result<(), LabError> {
        self.exec(ns, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]).map(|_| ())
    }

    /// Runs `args` inside `ns` (`ip netns exec NS args…`), bounded in time. Fails unless it exits 0;
    /// returns its stdout.
    pub fn exec(&self, ns: &Netns, args: &[&str]) -> Result<String, LabError> {
        self.exec_stdin(ns, args, "")
    }

    /// [`Lab::exec`] with `input` on stdin.
    pub fn exec_stdin(&self, ns: &Netns, args: &[&str], input: &str) -> Result<String, LabError> {
        let out = self.try_exec(ns, args, input)?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(LabError::new(format!("running {args:?} in {}", ns.name), format!("{}: {}", out.status, out.stderr.trim())))
        }
    }

    /// Runs `args` inside `ns` with `input` on stdin; returns (exited 0, stdout, stderr) whatever the exit.
    pub fn exec_status(&self, ns: &Netns, args: &[&str], input: &str) -> Result<(bool, String, String), LabError> {
        let out = self.try_exec(ns, args, input)?;
        Ok((out.success, out.stdout, out.stderr))
    }

    fn try_exec(&self, ns: &Netns, args: &[&str], input: &str) -> Result<Output, LabError> {
        self.own(ns)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name]).args(args).env("LC_ALL", "C");
        run_bounded(&mut cmd, Some(input.as_bytes()), IP_LIMIT)
    }

    fn helper(&self, ns: &Netns, spec: &str) -> Result<Command, LabError> {
        self.own(ns)?;
        let exe = std::env::current_exe().map_err(|e| LabError::new("finding the test binary", e))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name])
            .arg(exe)
            .args([HELPER_TEST, "--ignored", "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        Ok(cmd)
    }

    /// Starts an echo server for `proto` on `addr` inside `ns` and waits (bounded) until it is bound. It runs
    /// until the lab is dropped.
    pub fn listen(&self, ns: &Netns, proto: Proto, addr: SocketAddr) -> Result<(), LabError> {
        let context = format!("starting a {} listener on {addr} in {}", proto.name(), ns.name);
        let mut child = self
            .helper(ns, &format!("listen {} {} {}", proto.name(), addr.ip(), addr.port()))?
            .spawn()
            .map_err(|e| LabError::new(&context, e))?;
        let stdin = child.stdin.take();
        let rx = marked_lines(&mut child);
        // Registered before waiting, so it is killed even if the wait fails.
        self.inner().children.push((child, stdin));
        match next_line(&rx, START_LIMIT) {
            Some(l) if l == "READY" => Ok(()),
            Some(other) => Err(LabError::new(context, other)),
            None => Err(LabError::new(context, no_answer())),
        }
    }

    /// One connection attempt from `src` (an address in `ns`) to `dst`, waiting at most `timeout`.
    pub fn probe(&self, ns: &Netns, proto: Proto, src: IpAddr, dst: SocketAddr, timeout: Duration) -> Result<Probe, LabError> {
        let context = format!("probing {} {src} -> {dst} in {}", proto.name(), ns.name);
        let spec = format!("probe {} {src} {} {} {}", proto.name(), dst.ip(), dst.port(), timeout.as_millis());
        let mut child = self.helper(ns, &spec)?.spawn().map_err(|e| LabError::new(&context, e))?;
        let rx = marked_lines(&mut child);
        let line = next_line(&rx, timeout + START_LIMIT);
        let _ = child.kill();
        let _ = child.wait();
        match line.as_deref() {
            Some("RESULT OPEN") => Ok(Probe::Open),
            Some("RESULT REFUSED") => Ok(Probe::Refused),
            Some("RESULT TIMEOUT") => Ok(Probe::Timeout),
            Some(other) => Err(LabError::new(context, other)),
            None => Err(LabError::new(context, no_answer())),
        }
    }

    /// Probes about every 100 ms until the result is `want` or `within` has passed (bounded in count and
    /// time); returns the last result and when it was seen. Each probe waits 300 ms for an answer when
    /// `want` is [`Probe::Timeout`] (inside a namespace an answer takes microseconds), else 2 s.
    pub fn probe_until(
        &self,
        ns: &Netns,
        proto: Proto,
        src: IpAddr,
        dst: SocketAddr,
        want: Probe,
        within: Duration,
    ) -> Result<(Probe, Instant), LabError> {
        let timeout = if want == Probe::Timeout { Duration::from_millis(300) } else { Duration::from_secs(2) };
        let deadline = Instant::now() + within;
        let max_tries = 1000;
        let mut last = Probe::Timeout;
        for _ in 0..max_tries {
            last = self.probe(ns, proto, src, dst, timeout)?;
            let now = Instant::now();
            if last == want || now >= deadline {
                return Ok((last, now));
            }
            thread::sleep(Duration::from_millis(100).min(deadline - now));
        }
        Ok((last, Instant::now()))
    }

    /// A TCP connection from `src` in `ns` to `dst` (an echo listener), kept open for [`Session::echo`].
    /// `Err` unless it connects within `timeout`.
    pub fn session(&self, ns: &Netns, src: IpAddr, dst: SocketAddr, timeout: Duration) -> Result<Session, LabError> {
        let context = format!("opening a tcp session {src} -> {dst} in {}", ns.name);
        let spec = format!("session tcp {src} {} {} {}", dst.ip(), dst.port(), timeout.as_millis());
        let mut child = self.helper(ns, &spec)?.spawn().map_err(|e| LabError::new(&context, e))?;
        let stdin = child.stdin.take();
        let rx = marked_lines(&mut child);
        let mut session = Session { child, stdin, rx, timeout };
        match next_line(&session.rx, timeout + START_LIMIT) {
            Some(l) if l == "CONNECTED" => Ok(session),
            Some(other) => {
                session.stop();
                Err(LabError::new(context, other))
            }
            None => {
                session.stop();
                Err(LabError::new(context, no_answer()))
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let inner = std::mem::take(&mut *self.inner());
        for (mut child, stdin) in inner.children {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in inner.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", name]) {
                eprintln!("ajar-lab: could not delete namespace {name}: {e}");
            }
        }
    }
}

/// An open TCP connection made by a helper inside a namespace; killed on drop.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<String>,
    timeout: Duration,
}

impl Session {
    /// One round trip over the connection: true if the data came back within the session's timeout.
    pub fn echo(&mut self) -> Result<bool, LabError> {
        let pipe = self.stdin.as_mut().ok_or_else(|| LabError::new("session echo", "session is closed"))?;
        pipe.write_all(b"echo\n").and_then(|()| pipe.flush()).map_err(|e| LabError::new("session echo", e))?;
        match next_line(&self.rx, self.timeout + START_LIMIT) {
            Some(l) if l == "ECHO OK" => Ok(true),
            Some(l) if l.starts_with("ECHO FAIL") => Ok(false),
            Some(other) => Err(LabError::new("session echo", other)),
            None => Err(LabError::new("session echo", no_answer())),
        }
    }

    fn stop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

fn no_answer() -> String {
    format!("no answer from the helper (is `ajar_lab::lab_helper!();` at the root of this test crate?); {MARK} lines expected")
}

/// The helper's marked stdout lines (without the mark), read on a thread.
fn marked_lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The test harness may print "test ajar_lab_helper ... " on the same line, before ours.
                if let Some(at) = line.find(MARK)
                    && tx.send(line[at + MARK.len()..].trim().to_string()).is_err()
                {
                    break;
                }
            }
        });
    }
    rx
}

fn next_line(rx: &Receiver<String>, limit: Duration) -> Option<String> {
    rx.recv_timeout(limit).ok()
}

fn lab_range(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.octets()[0] == 10,
        IpAddr::V6(a) => a.octets()[0] == 0xfd,
    }
}

fn ip(args: &[&str]) -> Result<(), LabError> {
    let out = run_bounded(Command::new("ip").args(args).env("LC_ALL", "C"), None, IP_LIMIT)?;
    if out.success {
        Ok(())
    } else {
        Err(LabError::new(format!("ip {}", args.join(" ")), format!("{}: {}", out.status, out.stderr.trim())))
    }
}

/// Deletes `ajar-lab-<pid>-…` namespaces whose process is gone (left by a test run that was killed).
fn sweep_stale() {
    let Ok(out) = run_bounded(Command::new("ip").args(["netns", "list"]), None, IP_LIMIT) else { return };
    for line in out.stdout.lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix(NETNS_PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.chars().all(|c| c.is_ascii_digit()) && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
