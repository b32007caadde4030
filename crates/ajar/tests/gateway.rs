//! Gateway (firewall/DNAT) mode end to end: the `ajar` binary as server, gateway agent and CLI, real
//! nftables, real TCP through a gateway namespace.
//!
//! Topology (fresh per test):
//!   "gw": the gateway. The server listens on its loopback; the gateway agent and every CLI call run
//!     there too. Public side 10.79.0.1/24 (towards "cl"), private side 10.79.3.1/24 (towards "db"),
//!     forwarding on.
//!   "db": the machine behind the gateway, 10.79.3.2/24, default route via the gateway (replies go back
//!     through it: the gateway translates the destination only, so the machine sees the real client).
//!     Listeners: tcp 10.79.3.2:22 and tcp 10.79.3.2:8080.
//!   "cl": clients A = 10.79.0.2 and B = 10.79.0.3, with a route to the private network via the
//!     gateway (to show that routing alone reaches no protected port).
//!
//! Needs root, `ip` and `nft`; without them each test prints "skipping: needs …" (and fails when CI=true).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use ajar_lab::{Lab, Netns, Probe, Proto};

ajar_lab::lab_helper!();

const PUBLIC: &str = "10.79.0.1";
const DB: &str = "10.79.3.2";
const A: &str = "10.79.0.2";
const B: &str = "10.79.0.3";
const START: Duration = Duration::from_secs(30);
const CLI_LIMIT: Duration = Duration::from_secs(30);
const OPEN_WITHIN: Duration = Duration::from_secs(5);
const CLOSED_AFTER_END: Duration = Duration::from_secs(2);
const DROP_WAIT: Duration = Duration::from_millis(700);
const OPEN_WAIT: Duration = Duration::from_secs(3);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct World {
    gw: Netns,
    cl: Netns,
    dir: tempfile::TempDir,
    server: Option<Child>,
    agent: Option<Child>,
    url: String,
    lab: Lab,
}

fn log_file(path: PathBuf) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap()
}

impl World {
    /// Namespaces, listeners, the server and the gateway agent, and db1 behind the gateway with JIT
    /// enabled on its defaults (22/TCP). None when the preflight says skip.
    fn new() -> Option<World> {
        if !ajar_lab::preflight(&["ip", "nft"]) {
            return None;
        }
        let lab = Lab::new().unwrap();
        let gw = lab.netns("gw").unwrap();
        let db = lab.netns("db").unwrap();
        let cl = lab.netns("cl").unwrap();
        let (g_pub, c) = lab.veth(&gw, &cl).unwrap();
        let (g_priv, d) = lab.veth(&gw, &db).unwrap();
        lab.addr(&gw, &g_pub, "10.79.0.1/24").unwrap();
        lab.addr(&gw, &g_priv, "10.79.3.1/24").unwrap();
        lab.forwarding(&gw).unwrap();
        lab.addr(&db, &d, "10.79.3.2/24").unwrap();
        lab.default_route(&db, ip("10.79.3.1")).unwrap();
        for a in ["10.79.0.2/24", "10.79.0.3/24"] {
            lab.addr(&cl, &c, a).unwrap();
        }
        lab.route_via(&cl, "10.79.3.0/24", ip(PUBLIC)).unwrap();
        for port in [22, 8080] {
            lab.listen(&db, Proto::Tcp, SocketAddr::new(ip(DB), port)).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let mut w = World { gw, cl, dir, server: None, agent: None, url: String::new(), lab };
        w.start_server();
        w.start_agent();
        for args in [
            &["vm", "add", "db1", "--os", "linux", "--address", DB][..],
            &["vm", "set-gateway", "db1", "gw1"],
            &["policy", "enable", "db1", "--defaults"],
        ] {
            let (code, stdout, stderr) = w.ajar(args);
            assert_eq!(code, 0, "ajar {args:?}: {stdout}{stderr}");
        }
        Some(w)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("server")
    }

    fn bootstrap(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.data_dir().join("bootstrap.json")).unwrap()).unwrap()
    }

    fn in_gw(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.gw.name(), env!("CARGO_BIN_EXE_ajar")]);
        cmd
    }

    fn start_server(&mut self) {
        let mut child = self
            .in_gw()
            .args(["serve", "--data-dir"])
            .arg(self.data_dir())
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(self.dir.path().join("server.log")))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.server = Some(child);
        let url = ajar_lab::await_line(stdout, START, |line| line.strip_prefix("listening on ").map(|u| u.trim().to_owned()));
        self.url = url.unwrap_or_else(|| panic!("the server did not say `listening on` within {START:?}"));
    }

    /// Starts the gateway agent (enrolling the first time) and waits (bounded) until its table exists and
    /// the server lists the gateway.
    fn start_agent(&mut self) {
        let b = self.bootstrap();
        let child = self
            .in_gw()
            .args(["agent", "--gateway", "--public-address", PUBLIC, "--server", &self.url, "--ca", b["ca"].as_str().unwrap()])
            .args(["--join-token", b["joinToken"].as_str().unwrap(), "--name", "gw1", "--state-dir"])
            .arg(self.dir.path().join("agent"))
            .stdin(Stdio::null())
            .stdout(log_file(self.dir.path().join("agent.log")))
            .stderr(log_file(self.dir.path().join("agent.log")))
            .spawn()
            .unwrap();
        self.agent = Some(child);
        let deadline = Instant::now() + START;
        loop {
            let (ok, _, _) = self.lab.exec_status(&self.gw, &["nft", "list", "table", "inet", "ajar"], "").unwrap();
            if ok && self.ajar_json(&["gateway", "list"])["value"].as_array().is_some_and(|g| g.len() == 1) {
                return;
            }
            assert!(Instant::now() < deadline, "the gateway agent did not apply its first table within {START:?}\n{}", self.logs());
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill_agent(&mut self) {
        let mut child = self.agent.take().expect("the agent is running");
        let _ = child.kill();
        child.wait().unwrap();
    }

    fn ajar(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = self.in_gw();
        cmd.args(args).env("AJAR_BOOTSTRAP", self.data_dir().join("bootstrap.json"));
        let out = ajar_lab::run_bounded(&mut cmd, None, CLI_LIMIT).unwrap_or_else(|e| panic!("ajar {args:?}: {e}"));
        (out.code.unwrap_or(-1), out.stdout, out.stderr)
    }

    fn ajar_json(&self, args: &[&str]) -> Value {
        let all: Vec<&str> = args.iter().copied().chain(["--output", "json"]).collect();
        let (code, stdout, stderr) = self.ajar(&all);
        assert_eq!(code, 0, "ajar {all:?}\nstdout: {stdout}\nstderr: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("ajar {all:?}: not JSON ({e}): {stdout}"))
    }

    /// `ajar request db1 --port 22 --from SRC --for DURATION`: the mapped port and the end time.
    fn request(&self, src: &str, duration: &str) -> (u16, OffsetDateTime) {
        let out = self.ajar_json(&["request", "db1", "--port", "22", "--from", src, "--for", duration]);
        let p = &out["virtualMachines"][0]["ports"][0];
        assert_eq!(p["status"], "Initiated", "{out}");
        let mapped = p["mappedPort"].as_u64().unwrap_or_else(|| panic!("no mappedPort in {out}"));
        (u16::try_from(mapped).unwrap(), OffsetDateTime::parse(p["endTimeUtc"].as_str().unwrap(), &Rfc3339).unwrap())
    }

    fn expect(&self, src: &str, dst: &str, port: u16, want: Probe) {
        let wait = if want == Probe::Open { OPEN_WAIT } else { DROP_WAIT };
        let got = self.lab.probe(&self.cl, Proto::Tcp, ip(src), SocketAddr::new(ip(dst), port), wait).unwrap();
        assert_eq!(got, want, "TCP {src} -> {dst}:{port}\n{}", self.logs());
    }

    fn wait_until(&self, src: &str, dst: &str, port: u16, want: Probe, bound: Duration) {
        let (got, _) = self.lab.probe_until(&self.cl, Proto::Tcp, ip(src), SocketAddr::new(ip(dst), port), want, bound).unwrap();
        assert_eq!(got, want, "TCP {src} -> {dst}:{port} within {bound:?}\n{}", self.logs());
    }

    /// Waits until new connections to the mapped port are no longer forwarded (the gateway answers
    /// itself that nothing listens there), and asserts it happened by `end` + 2 s.
    fn closed_on_time(&self, src: &str, port: u16, end: OffsetDateTime) {
        let left = Duration::try_from(end - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO);
        self.wait_until(src, PUBLIC, port, Probe::Refused, left + CLOSED_AFTER_END);
        let late = OffsetDateTime::now_utc() - end;
        assert!(late <= time::Duration::try_from(CLOSED_AFTER_END).unwrap(), "closed {late} after the end time, more than 2 s");
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["server.log", "agent.log"] {
            let mut s = String::new();
            if let Ok(mut f) = File::open(self.dir.path().join(name)) {
                let _ = f.read_to_string(&mut s);
            }
            text.push_str(&format!("--- {name} (last lines)\n"));
            for l in s.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev() {
                text.push_str(l);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for child in [self.agent.take(), self.server.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_grant_maps_the_gateway_port_for_its_source_only_and_revoke_closes_it() {
    let Some(w) = World::new() else { return };
    // Before any grant nothing reaches the protected port, not even routed through the gateway (once
    // the gateway has applied the policy); an unprotected port is forwarded as before.
    w.wait_until(A, DB, 22, Probe::Timeout, OPEN_WITHIN);
    w.expect(A, DB, 8080, Probe::Open);
    let (mapped, _) = w.request(A, "10m");
    assert!((50000..=59999).contains(&mapped), "{mapped}");
    w.wait_until(A, PUBLIC, mapped, Probe::Open, OPEN_WITHIN);
    // Another source is not translated: the gateway itself answers that nothing listens there.
    w.expect(B, PUBLIC, mapped, Probe::Refused);
    w.expect(A, DB, 22, Probe::Timeout);
    // The status names the path and where to connect.
    let status = w.ajar_json(&["status"]);
    let db1 = &status["value"][0];
    assert_eq!(db1["connection"]["path"], "firewall", "{status}");
    assert_eq!(db1["connection"]["address"], PUBLIC, "{status}");
    assert_eq!(db1["liveGrants"][0]["connectTo"], format!("{PUBLIC}:{mapped}"), "{status}");
    let (_, shown, _) = w.ajar(&["vm", "show", "db1"]);
    assert!(shown.contains("firewall") && shown.contains(&format!("{PUBLIC}:{mapped}")), "{shown}");

    let (code, stdout, stderr) = w.ajar(&["revoke", "db1", "--port", "22"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    w.wait_until(A, PUBLIC, mapped, Probe::Refused, OPEN_WITHIN);
    w.expect(A, DB, 22, Probe::Timeout);
}

#[test]
fn a_gateway_mapping_ends_on_time_without_its_agent_and_established_sessions_survive() {
    let Some(mut w) = World::new() else { return };
    let (mapped, end) = w.request(A, "6s");
    w.wait_until(A, PUBLIC, mapped, Probe::Open, OPEN_WITHIN);
    let mut session = w.lab.session(&w.cl, ip(A), SocketAddr::new(ip(PUBLIC), mapped), OPEN_WAIT).unwrap();
    assert!(session.echo().unwrap());
    w.kill_agent();
    w.closed_on_time(A, mapped, end);
    assert!(session.echo().unwrap(), "a session opened during the grant outlives it");
}
