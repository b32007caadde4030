//! `ajar demo` for real: start it, watch web1's port 22 go from closed to open, stop it with SIGINT and
//! check that its namespaces are gone. Needs root, `ip` and `nft`; without them the test prints
//! "skipping: needs …" (and fails when CI=true). Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Bound on the demo's start (server, two agents enrolled, JIT enabled).
const START: Duration = Duration::from_secs(90);
/// Bound on its cleanup after SIGINT.
const STOP: Duration = Duration::from_secs(30);

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

fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect()
}

#[test]
fn demo_opens_and_cleans_up() {
    if !ajar_lab::preflight(&["ip", "nft"]) {
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
    assert_eq!(namespaces_with(&prefix).len(), 5, "hub, ctl, client, web1, win1");

    let (code, out) = demo_cmd(dir.path(), &["connect", "web1", "22"]);
    assert_eq!(code, 2, "closed before the request: {out}");
    assert!(out.starts_with("TIMEOUT"), "{out}");

    let (code, out) = demo_cmd(dir.path(), &["run", "--", "request", "web1", "--port", "22", "--for", "1m"]);
    assert_eq!(code, 0, "{out}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, out) = demo_cmd(dir.path(), &["connect", "web1", "22"]);
        if code == 0 {
            assert!(out.contains("OPEN") && out.contains("hello from web1"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "web1:22 did not open within 10 s of the request: {out}");
        thread::sleep(Duration::from_millis(200));
    }

    let status = demo.stop().expect("the demo exits within its bound after SIGINT");
    assert!(status.success(), "the demo exits cleanly on SIGINT: {status}");
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new(), "the demo's namespaces are gone");
    assert!(!dir.path().join("demo.json").exists(), "the state file is gone");
    let (code, out) = demo_cmd(dir.path(), &["connect", "web1", "22"]);
    assert_eq!(code, 1, "no demo running: {out}");
}
