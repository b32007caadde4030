//! Gateway (firewall/DNAT) mode end to end: the `ajar` binary as server, gateway agent and CLI, real
//! nftables, real TCP through a gateway namespace.
//!
//! Topology (fresh per test, dual stack):
//!   "gw": the gateway. The server listens on its loopback; the gateway agent and every CLI call run
//!     there too. Public side 10.79.0.1/24 and fd00:79::1/64 (towards "cl"), private side 10.79.3.1/24 and
//!     fd00:79:3::1/64 (towards "db"), forwarding on.
//!   "db": the machines behind the gateway, default routes via it (replies go back through it: the
//!     gateway translates the destination only, so a machine sees the real client). db1 is 10.79.3.2 and
//!     fd00:79:3::2, listening on tcp 22 (protected) and 8080 (not); db2 is 10.79.3.3, listening on tcp
//!     2222 only (protected), so a mapping to the wrong machine would find nothing.
//!   "cl": clients A = 10.79.0.2, B = 10.79.0.3, A6 = fd00:79::2, B6 = fd00:79::3, with routes to the
//!     private network via the gateway (to show that routing alone reaches no protected port).
//!
//! Needs root, `ip` and `nft`; without them each test prints "skipping: needs …" (and fails when CI=true).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use ajar_lab::{Lab, Netns, Probe, Proto};
use in_netns::START;

mod in_netns;

ajar_lab::lab_helper!();

const PUBLIC: &str = "10.79.0.1";
const PUBLIC6: &str = "fd00:79::1";
const DB: &str = "10.79.3.2";
const DB6: &str = "fd00:79:3::2";
const DB2: &str = "10.79.3.3";
const A: &str = "10.79.0.2";
const B: &str = "10.79.0.3";
const A6: &str = "fd00:79::2";
const B6: &str = "fd00:79::3";
/// The server's address on the gateway's loopback: fixed, so that the agent finds a restarted server (each
/// test has a namespace of its own).
const LISTEN: &str = "127.0.0.1:8443";
const OPEN_WITHIN: Duration = Duration::from_secs(5);
const CLOSED_AFTER_END: Duration = Duration::from_secs(2);
const DROP_WAIT: Duration = Duration::from_millis(700);
const OPEN_WAIT: Duration = Duration::from_secs(3);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn socket(address: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(address), port)
}

/// The mapped port and end time of a request's one port, from `ajar request … --output json`.
fn mapped_port(out: &Value) -> (u16, OffsetDateTime) {
    let p = &out["virtualMachines"][0]["ports"][0];
    assert_eq!(p["status"], "Initiated", "{out}");
    let mapped = p["mappedPort"].as_u64().unwrap_or_else(|| panic!("no mappedPort in {out}"));
    (u16::try_from(mapped).unwrap(), OffsetDateTime::parse(p["endTimeUtc"].as_str().unwrap(), &Rfc3339).unwrap())
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

impl World {
    /// Namespaces, listeners, the server and the gateway agent, and db1 (22/TCP, its defaults) and db2
    /// (2222/TCP) behind the gateway with JIT enabled. None when the preflight says skip.
    fn new() -> Option<World> {
        if !ajar_lab::preflight(&["ip", "nft", "sysctl"]) {
            return None;
        }
        let lab = Lab::new().unwrap();
        let gw = lab.netns("gw").unwrap();
        let db = lab.netns("db").unwrap();
        let cl = lab.netns("cl").unwrap();
        let (g_pub, c) = lab.veth(&gw, &cl).unwrap();
        let (g_priv, d) = lab.veth(&gw, &db).unwrap();
        for (dev, a) in [(&g_pub, "10.79.0.1/24"), (&g_pub, "fd00:79::1/64"), (&g_priv, "10.79.3.1/24"), (&g_priv, "fd00:79:3::1/64")] {
            lab.addr(&gw, dev, a).unwrap();
        }
        lab.forwarding(&gw).unwrap();
        for a in ["10.79.3.2/24", "fd00:79:3::2/64", "10.79.3.3/24"] {
            lab.addr(&db, &d, a).unwrap();
        }
        lab.default_route(&db, ip("10.79.3.1")).unwrap();
        lab.default_route(&db, ip("fd00:79:3::1")).unwrap();
        for a in ["10.79.0.2/24", "10.79.0.3/24", "fd00:79::2/64", "fd00:79::3/64"] {
            lab.addr(&cl, &c, a).unwrap();
        }
        lab.route_via(&cl, "10.79.3.0/24", ip(PUBLIC)).unwrap();
        lab.route_via(&cl, "fd00:79:3::/64", ip(PUBLIC6)).unwrap();
        for (addr, port) in [(DB, 22), (DB, 8080), (DB6, 22), (DB2, 2222)] {
            lab.listen(&db, Proto::Tcp, SocketAddr::new(ip(addr), port)).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let (server, url) = in_netns::serve(&gw, dir.path(), LISTEN);
        let mut w = World { gw, cl, dir, server: Some(server), agent: None, url, lab };
        w.start_agent();
        for args in [
            &["vm", "add", "db1", "--os", "linux", "--address", DB, "--address", DB6][..],
            &["vm", "add", "db2", "--os", "linux", "--address", DB2],
            &["vm", "set-gateway", "db1", "gw1"],
            &["vm", "set-gateway", "db2", "gw1"],
            &["policy", "enable", "db1", "--defaults"],
            &["policy", "enable", "db2", "--port", "2222"],
        ] {
            let (code, stdout, stderr) = w.ajar(args);
            assert_eq!(code, 0, "ajar {args:?}: {stdout}{stderr}");
        }
        Some(w)
    }

    /// Starts the gateway agent (enrolling the first time) and waits (bounded) until its table exists and
    /// the server lists the gateway.
    fn start_agent(&mut self) {
        self.spawn_agent();
        let deadline = Instant::now() + START;
        loop {
            if self.has_table() && self.ajar_json(&["gateway", "list"])["value"].as_array().is_some_and(|g| g.len() == 1) {
                return;
            }
            assert!(Instant::now() < deadline, "the gateway agent did not apply its first table within {START:?}\n{}", self.logs());
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn_agent(&mut self) {
        assert!(self.agent.is_none(), "the agent is already running");
        let args = ["--gateway", "--public-address", &format!("{PUBLIC},{PUBLIC6}"), "--name", "gw1"];
        self.agent = Some(in_netns::spawn_agent(&self.gw, self.dir.path(), &self.url, &args));
    }

    /// Starts the agent while the server is down, and waits (bounded) until it has restored its saved state;
    /// returns the agent's line saying so.
    fn start_agent_offline(&mut self) -> String {
        let log_path = self.dir.path().join("agent.log");
        let restores = || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            log.lines().filter(|l| l.contains("restored the saved state")).map(str::to_owned).collect::<Vec<_>>()
        };
        let before = restores().len();
        self.spawn_agent();
        let deadline = Instant::now() + START;
        loop {
            if let Some(line) = restores().get(before) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "the agent did not restore its saved state within {START:?}\n{}", self.logs());
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn has_table(&self) -> bool {
        self.lab.exec_status(&self.gw, &["nft", "list", "table", "inet", "ajar"], "").unwrap().0
    }

    fn kill_server(&mut self) {
        let mut child = self.server.take().expect("the server is running");
        let _ = child.kill();
        child.wait().unwrap();
    }

    /// Starts the server again on its data directory and address.
    fn start_server(&mut self) {
        assert!(self.server.is_none(), "the server is already running");
        let (server, url) = in_netns::serve(&self.gw, self.dir.path(), LISTEN);
        self.server = Some(server);
        self.url = url;
    }

    /// Waits (bounded) until the server says the gateway's agent has applied its current desired state.
    fn wait_in_sync(&self) {
        let deadline = Instant::now() + START;
        loop {
            let gateway = self.ajar_json(&["gateway", "list"]);
            if gateway["value"][0]["agent"]["inSync"] == true {
                return;
            }
            assert!(Instant::now() < deadline, "the gateway was not in sync within {START:?}: {gateway}\n{}", self.logs());
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn kill_agent(&mut self) {
        let mut child = self.agent.take().expect("the agent is running");
        let _ = child.kill();
        child.wait().unwrap();
    }

    fn ajar(&self, args: &[&str]) -> (i32, String, String) {
        in_netns::cli(&self.gw, self.dir.path(), args)
    }

    fn ajar_json(&self, args: &[&str]) -> Value {
        in_netns::cli_json(&self.gw, self.dir.path(), args)
    }

    /// `ajar request VM --port PORT --from SRC --for DURATION`: the mapped port and the end time.
    fn request(&self, vm: &str, port: u16, src: &str, duration: &str) -> (u16, OffsetDateTime) {
        let out = self.ajar_json(&["request", vm, "--port", &port.to_string(), "--from", src, "--for", duration]);
        mapped_port(&out)
    }

    fn expect(&self, src: &str, dst: &str, port: u16, want: Probe) {
        let wait = if want == Probe::Open { OPEN_WAIT } else { DROP_WAIT };
        let got = self.lab.probe(&self.cl, Proto::Tcp, ip(src), socket(dst, port), wait).unwrap();
        assert_eq!(got, want, "TCP {src} -> {dst}:{port}\n{}", self.logs());
    }

    fn wait_until(&self, src: &str, dst: &str, port: u16, want: Probe, bound: Duration) {
        let (got, _) = self.lab.probe_until(&self.cl, Proto::Tcp, ip(src), socket(dst, port), want, bound).unwrap();
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
        in_netns::logs(self.dir.path())
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
    let (mapped, _) = w.request("db1", 22, A, "10m");
    assert!((50000..=59999).contains(&mapped), "{mapped}");
    w.wait_until(A, PUBLIC, mapped, Probe::Open, OPEN_WITHIN);
    // Another source is not translated: the gateway itself answers that nothing listens there.
    w.expect(B, PUBLIC, mapped, Probe::Refused);
    w.expect(A, DB, 22, Probe::Timeout);
    // The status says where to connect, and that the gateway has applied the grant (its agent reported
    // the etag of what it must enforce now).
    let deadline = Instant::now() + OPEN_WITHIN;
    let status = loop {
        let status = w.ajar_json(&["status"]);
        let db1 = status["value"].as_array().unwrap().iter().find(|m| m["name"] == "db1").cloned().unwrap();
        if db1["liveGrants"][0]["applied"] == true {
            break db1;
        }
        assert!(Instant::now() < deadline, "the grant was not shown applied within {OPEN_WITHIN:?}: {status}\n{}", w.logs());
        thread::sleep(Duration::from_millis(200));
    };
    let db1 = &status;
    assert_eq!(db1["enforcement"], "gateway", "{status}");
    assert_eq!(db1["gateway"]["agent"]["inSync"], true, "{status}");
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
    let (mapped, end) = w.request("db1", 22, A, "6s");
    w.wait_until(A, PUBLIC, mapped, Probe::Open, OPEN_WITHIN);
    let mut session = w.lab.session(&w.cl, ip(A), socket(PUBLIC, mapped), OPEN_WAIT).unwrap();
    assert!(session.echo().unwrap());
    w.kill_agent();
    w.closed_on_time(A, mapped, end);
    assert!(session.echo().unwrap(), "a session opened during the grant outlives it");
}

#[test]
fn two_machines_behind_one_gateway_get_different_mapped_ports_at_once() {
    let Some(w) = World::new() else { return };
    w.wait_until(A, DB2, 2222, Probe::Timeout, OPEN_WITHIN);
    // Both requests at the same time: the server allocates in each initiate's transaction.
    let (one, two) = thread::scope(|s| {
        let one = s.spawn(|| w.request("db1", 22, A, "10m"));
        let two = s.spawn(|| w.request("db2", 2222, A, "10m"));
        (one.join().unwrap(), two.join().unwrap())
    });
    let (db1_port, db2_port) = (one.0, two.0);
    assert_ne!(db1_port, db2_port, "two live grants on one gateway share no mapped port");
    // Each mapped port reaches its own machine (db2 listens on 2222 only, db1 on 22: a crossed mapping
    // would be refused), for A only.
    w.wait_until(A, PUBLIC, db1_port, Probe::Open, OPEN_WITHIN);
    w.wait_until(A, PUBLIC, db2_port, Probe::Open, OPEN_WITHIN);
    for port in [db1_port, db2_port] {
        w.expect(B, PUBLIC, port, Probe::Refused);
    }
    w.expect(A, DB2, 2222, Probe::Timeout);
    // Asked again, a grant keeps its port while the other stays live.
    let (again, _) = w.request("db2", 2222, A, "10m");
    assert_eq!(again, db2_port, "a repeated request gets the same mapped port");
    let status = w.ajar_json(&["status"]);
    let connect_to: Vec<&Value> = status["value"].as_array().unwrap().iter().map(|m| &m["liveGrants"][0]["connectTo"]).collect();
    assert!(connect_to.contains(&&Value::from(format!("{PUBLIC}:{db1_port}"))), "{status}");
    assert!(connect_to.contains(&&Value::from(format!("{PUBLIC}:{db2_port}"))), "{status}");
}

#[test]
fn ipv6_through_the_gateway() {
    let Some(w) = World::new() else { return };
    w.wait_until(A6, DB6, 22, Probe::Timeout, OPEN_WITHIN);
    let (mapped, _) = w.request("db1", 22, A6, "10m");
    w.wait_until(A6, PUBLIC6, mapped, Probe::Open, OPEN_WITHIN);
    w.expect(B6, PUBLIC6, mapped, Probe::Refused);
    w.expect(A6, DB6, 22, Probe::Timeout);
    // The grant is for A6 alone: its IPv4 twin and the IPv4 public address get nothing.
    w.expect(A, PUBLIC, mapped, Probe::Refused);
    let (_, out, _) = w.ajar(&["vm", "show", "db1"]);
    assert!(out.contains(&format!("[{PUBLIC6}]:{mapped}")), "the IPv6 address to connect to, in brackets: {out}");
}

#[test]
fn a_gateway_restarted_without_the_server_restores_only_the_mappings_that_have_not_ended() {
    let Some(mut w) = World::new() else { return };
    let (short, short_end) = w.request("db1", 22, A, "6s");
    let (long, _) = w.request("db2", 2222, A, "10m");
    w.wait_until(A, PUBLIC, short, Probe::Open, OPEN_WITHIN);
    w.wait_until(A, PUBLIC, long, Probe::Open, OPEN_WITHIN);
    w.kill_server();
    w.kill_agent();
    // With neither running the kernel ends the short mapping on time.
    w.closed_on_time(A, short, short_end);
    // Fail closed: from its state directory alone the agent puts back the live mapping, not the ended one.
    let restored = w.start_agent_offline();
    assert!(restored.contains("live=1 ended=1"), "{restored}");
    w.expect(A, PUBLIC, long, Probe::Open);
    w.expect(A, PUBLIC, short, Probe::Refused);
    w.expect(A, DB, 22, Probe::Timeout);
    w.expect(A, DB2, 2222, Probe::Timeout);
    // The server comes back: the agent follows it and nothing reopens.
    w.start_server();
    w.wait_in_sync();
    w.expect(A, PUBLIC, long, Probe::Open);
    w.expect(A, PUBLIC, short, Probe::Refused);
}

#[test]
fn drift_on_the_gateway_is_repaired_and_uninstall_removes_only_its_table() {
    let Some(mut w) = World::new() else { return };
    let (mapped, _) = w.request("db1", 22, A, "10m");
    w.wait_until(A, PUBLIC, mapped, Probe::Open, OPEN_WITHIN);
    w.wait_in_sync();
    // A flush by hand empties the table: routed traffic would reach the machine. The agent checks every
    // 2 s, puts the table back whole and says so in the activity log.
    w.lab.exec(&w.gw, &["nft", "flush", "table", "inet", "ajar"]).unwrap();
    w.wait_until(A, DB, 22, Probe::Timeout, OPEN_WITHIN);
    w.wait_until(A, PUBLIC, mapped, Probe::Open, OPEN_WITHIN);
    w.expect(B, PUBLIC, mapped, Probe::Refused);
    let deadline = Instant::now() + OPEN_WITHIN;
    loop {
        let log = w.ajar_json(&["activity", "--limit", "50"]).to_string();
        if log.contains("Ajar/agents/driftRepaired/action") && log.contains("gw1") {
            break;
        }
        assert!(Instant::now() < deadline, "no driftRepaired entry for the gateway in the activity log: {log}");
        thread::sleep(Duration::from_millis(200));
    }
    // Uninstall: the agent stopped, `ajar agent --uninstall` removes table inet ajar and nothing else.
    w.kill_agent();
    w.lab.exec(&w.gw, &["nft", "add", "table", "inet", "someone_elses"]).unwrap();
    let (code, stdout, stderr) = w.ajar(&["agent", "--uninstall"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!w.has_table(), "table inet ajar is gone");
    let (kept, _, _) = w.lab.exec_status(&w.gw, &["nft", "list", "table", "inet", "someone_elses"], "").unwrap();
    assert!(kept, "another table survives the uninstall");
    // Nothing of ajar is left on the gateway: no mapping.
    w.expect(A, PUBLIC, mapped, Probe::Refused);
}
