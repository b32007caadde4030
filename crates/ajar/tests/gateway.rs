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
const DB: &str = "10.79.3.2";
const A: &str = "10.79.0.2";
const B: &str = "10.79.0.3";
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

impl World {
    /// Namespaces, listeners, the server and the gateway agent, and db1 behind the gateway with JIT
    /// enabled on its defaults (22/TCP). None when the preflight says skip.
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
        let (server, url) = in_netns::serve(&gw, dir.path(), "127.0.0.1:0");
        let mut w = World { gw, cl, dir, server: Some(server), agent: None, url, lab };
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

    /// Starts the gateway agent (enrolling the first time) and waits (bounded) until its table exists and
    /// the server lists the gateway.
    fn start_agent(&mut self) {
        let args = ["--gateway", "--public-address", PUBLIC, "--name", "gw1"];
        self.agent = Some(in_netns::spawn_agent(&self.gw, self.dir.path(), &self.url, &args));
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
        in_netns::cli(&self.gw, self.dir.path(), args)
    }

    fn ajar_json(&self, args: &[&str]) -> Value {
        in_netns::cli_json(&self.gw, self.dir.path(), args)
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
    let (mapped, _) = w.request(A, "10m");
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
        if status["value"][0]["liveGrants"][0]["applied"] == true {
            break status;
        }
        assert!(Instant::now() < deadline, "the grant was not shown applied within {OPEN_WITHIN:?}: {status}\n{}", w.logs());
        thread::sleep(Duration::from_millis(200));
    };
    let db1 = &status["value"][0];
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
    let (mapped, end) = w.request(A, "6s");
    w.wait_until(A, PUBLIC, mapped, Probe::Open, OPEN_WITHIN);
    let mut session = w.lab.session(&w.cl, ip(A), SocketAddr::new(ip(PUBLIC), mapped), OPEN_WAIT).unwrap();
    assert!(session.echo().unwrap());
    w.kill_agent();
    w.closed_on_time(A, mapped, end);
    assert!(session.echo().unwrap(), "a session opened during the grant outlives it");
}
