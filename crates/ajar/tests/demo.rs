//! `ajar demo` for real: start it, watch web1's port 22 go from closed to open, and db1's, behind the
//! gateway gw1, be reached only through the port a grant maps on gw1 until it is revoked; stop it with
//! SIGINT and check that its namespaces are gone. Needs root, `ip`, `nft` and `sysctl`; without them the
//! test prints "skipping: needs …" (and fails when CI=true). Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Bound on the demo's start (server, two host agents and the gateway's enrolled, JIT enabled).
const START: Duration = Duration::from_secs(90);
/// Bound on its cleanup after SIGINT.
const STOP: Duration = Duration::from_secs(30);
/// Bound on a port reaching the state a request or a revoke gives it.
const CHANGE: Duration = Duration::from_secs(10);
/// gw1's public address, on the hub.
const GATEWAY_PUBLIC: &str = "10.99.0.30";

/// The running demo; on drop (also on panic) it is stopped with SIGINT, then killed if it lingers.
struct Demo {
    child: Child,
}

impl Demo {
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let deadline = Instant::now() + STOP;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `ajar demo --dir DIR ARGS` (bounded); (exit code, stdout).
fn demo_cmd(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ajar"));
    cmd.args(["demo", "--dir"]).arg(dir).args(args);
    let out = ajar_lab::run_bounded(&mut cmd, None, Duration::from_secs(30)).unwrap_or_else(|e| panic!("ajar demo {args:?}: {e}"));
    (out.code.unwrap_or(-1), format!("{}{}", out.stdout, out.stderr))
}

/// Runs `demo ARGS` until it exits `code` (bounded by [`CHANGE`]); its output then.
fn demo_until(dir: &Path, args: &[&str], code: i32, what: &str) -> String {
    let deadline = Instant::now() + CHANGE;
    loop {
        let (got, out) = demo_cmd(dir, args);
        if got == code {
            return out;
        }
        assert!(Instant::now() < deadline, "{what} within {CHANGE:?}: `demo {args:?}` exited {got}: {out}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// One connection attempt from the client's address inside the demo's client namespace, to any
/// address (`demo connect` knows only the VMs' ports); (exit code, output) as `demo probe` gives them.
fn probe_from_client(prefix: &str, dst: &str) -> (i32, String) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &format!("{prefix}client"), env!("CARGO_BIN_EXE_ajar")]);
    cmd.args(["demo", "probe", "--from", "10.99.0.10", "--timeout-ms", "700", dst]);
    let out = ajar_lab::run_bounded(&mut cmd, None, Duration::from_secs(30)).unwrap_or_else(|e| panic!("probe {dst}: {e}"));
    (out.code.unwrap_or(-1), format!("{}{}", out.stdout, out.stderr))
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = ajar_lab::run_bounded(Command::new("ip").args(args), None, Duration::from_secs(30)).unwrap();
    assert_eq!(out.code, Some(0), "ip {args:?}: {}", out.stderr);
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect()
}

#[test]
fn demo_opens_and_cleans_up() {
    if !ajar_lab::preflight(&["ip", "nft", "sysctl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ajar"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let prefix = format!("ajdemo-{}-", child.id());
    let mut demo = Demo { child };
    let ready = ajar_lab::await_line(stdout, START, |line| line.contains("is ready").then_some(()));
    assert!(ready.is_some(), "the demo did not say it is ready within {START:?}");
    assert_eq!(namespaces_with(&prefix).len(), 7, "hub, ctl, client, web1, win1, gw1, db1");

    let (code, out) = demo_cmd(dir.path(), &["connect", "web1", "22"]);
    assert_eq!(code, 2, "closed before the request: {out}");
    assert!(out.starts_with("TIMEOUT"), "{out}");

    let (code, out) = demo_cmd(dir.path(), &["run", "--", "request", "web1", "--port", "22", "--for", "1m"]);
    assert_eq!(code, 0, "{out}");
    let out = demo_until(dir.path(), &["connect", "web1", "22"], 0, "web1:22 opens after the request");
    assert!(out.contains("OPEN") && out.contains("hello from web1"), "{out}");

    // db1 before a request: no grant, so no mapped port, and the client has no route to it.
    let (code, out) = demo_cmd(dir.path(), &["connect", "db1", "22"]);
    assert_eq!(code, 4, "db1 is unreachable before the request: {out}");
    assert!(out.contains("no live grant on port 22"), "{out}");
    assert!(out.contains("UNREACHABLE  10.98.0.21:22"), "{out}");
    // Given a route through the gateway, the client is still not let in: gw1 drops routed traffic to
    // db1's protected port. The route goes again before the request (and with the namespace anyway).
    let client = format!("{prefix}client");
    ip(&["-n", &client, "route", "add", "10.98.0.0/24", "via", GATEWAY_PUBLIC]);
    let (code, out) = demo_cmd(dir.path(), &["connect", "db1", "22"]);
    assert_eq!(code, 2, "routed through gw1, db1:22 is dropped: {out}");
    assert!(out.contains("TIMEOUT  10.98.0.21:22"), "{out}");
    ip(&["-n", &client, "route", "del", "10.98.0.0/24", "via", GATEWAY_PUBLIC]);

    // The request says where to connect: gw1's public address, on the grant's mapped port.
    let (code, out) = demo_cmd(dir.path(), &["run", "--", "request", "db1", "--port", "22", "--for", "1m"]);
    assert_eq!(code, 0, "{out}");
    let connect_to = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Connect to ")?.strip_suffix(" (through the gateway: firewall)"))
        .unwrap_or_else(|| panic!("the request names no gateway port: {out}"))
        .to_owned();
    let mapped = connect_to.strip_prefix(&format!("{GATEWAY_PUBLIC}:")).unwrap_or_else(|| panic!("not on gw1's public address: {out}"));
    assert!(mapped.parse::<u16>().is_ok_and(|p| (50000..=59999).contains(&p)), "{out}");
    let out = demo_until(dir.path(), &["connect", "db1", "22"], 0, "db1:22 opens through gw1 after the request");
    assert!(out.contains(&format!("OPEN  {connect_to} from 10.99.0.10: hello from db1")), "{out}");
    // The status tells that gw1 has applied the grant (once its agent has reported it), and `vm show`
    // where to connect.
    let deadline = Instant::now() + CHANGE;
    loop {
        let (code, out) = demo_cmd(dir.path(), &["run", "--", "status"]);
        assert_eq!(code, 0, "{out}");
        let db1 = out.lines().find(|l| l.starts_with("db1 ")).unwrap_or_else(|| panic!("no db1 in the status: {out}"));
        if db1.contains("22/TCP from 10.99.0.10") && db1.contains(", applied)") {
            break;
        }
        assert!(Instant::now() < deadline, "the status did not show db1's grant applied within {CHANGE:?}: {out}");
        thread::sleep(Duration::from_millis(200));
    }
    let (code, out) = demo_cmd(dir.path(), &["run", "--", "vm", "show", "db1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("gw1") && out.contains(&connect_to), "{out}");

    // After the revoke the mapped port is closed (nothing translates it; gw1 itself refuses) and
    // `demo connect` has no grant to go through again.
    let (code, out) = demo_cmd(dir.path(), &["run", "--", "revoke", "db1", "--port", "22"]);
    assert_eq!(code, 0, "{out}");
    let deadline = Instant::now() + CHANGE;
    loop {
        let (code, out) = probe_from_client(&prefix, &connect_to);
        if code == 1 {
            assert!(out.starts_with("REFUSED"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "{connect_to} did not close within {CHANGE:?} of the revoke: {out}");
        thread::sleep(Duration::from_millis(200));
    }
    let (code, out) = demo_cmd(dir.path(), &["connect", "db1", "22"]);
    assert_eq!(code, 4, "db1 is unreachable after the revoke: {out}");

    let status = demo.stop().expect("the demo exits within its bound after SIGINT");
    assert!(status.success(), "the demo exits cleanly on SIGINT: {status}");
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new(), "the demo's namespaces are gone");
    assert!(!dir.path().join("demo.json").exists(), "the state file is gone");
    let (code, out) = demo_cmd(dir.path(), &["connect", "web1", "22"]);
    assert_eq!(code, 1, "no demo running: {out}");
}
