//! End to end, for real: the `ajar` binary as server, agent and CLI, with real nftables and real
//! connections, each test in its own network namespaces (so they run in parallel).
//!
//! Topology (fresh per test):
//!   namespace "vm": the guarded host. The server listens on its loopback (which table inet ajar never
//!     touches), the agent runs there too, and so does every CLI call (the test process, in the root
//!     namespace, cannot reach that loopback). Address 10.78.0.1/16 and fd00:78::1/64 on the veth.
//!     Listeners: tcp 10.78.0.1:22, udp 10.78.0.1:22, udp 10.78.0.1:5353, tcp 10.78.0.1:8080, tcp [fd00:78::1]:22
//!     (the fault tests add tcp 10.78.0.1:2222 and :3333).
//!   namespace "cl": the clients. A = 10.78.1.2, C = 10.78.1.3 (both inside 10.78.1.0/24), B = 10.78.2.3,
//!     A6 = fd00:78::2.
//!
//! Needs root, `ip` and `nft`; without them each test prints "skipping: needs …" (and fails when CI=true).
//! Every wait is bounded in time and in count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use ajar_lab::{Lab, Netns, Probe, Proto};
use in_netns::START;

mod in_netns;

ajar_lab::lab_helper!();

const VM4: &str = "10.78.0.1";
const VM6: &str = "fd00:78::1";
const A: &str = "10.78.1.2";
const C: &str = "10.78.1.3";
const B: &str = "10.78.2.3";
const A6: &str = "fd00:78::2";
const CIDR: &str = "10.78.1.0/24";

/// A grant is applied within this after the 202.
const OPEN_WITHIN: Duration = Duration::from_secs(5);
/// New connections are refused within this after a grant's end time.
const CLOSED_AFTER_END: Duration = Duration::from_secs(2);
/// How long one probe that should be dropped waits for an answer (inside a namespace an answer takes
/// microseconds).
const DROP_WAIT: Duration = Duration::from_millis(700);
/// How long one probe that should connect waits.
const OPEN_WAIT: Duration = Duration::from_secs(3);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One test's world: the lab, the server and the agent; the processes are killed on drop (also on
/// panic, when their logs are printed), then the lab removes the namespaces.
struct E2e {
    vm: Netns,
    cl: Netns,
    dir: tempfile::TempDir,
    listen: String,
    server: Option<Child>,
    agent: Option<Child>,
    url: String,
    lab: Lab,
}

impl E2e {
    /// The namespaces, listeners and a running server; `listen` is the server's address inside "vm".
    /// None when the preflight says skip.
    fn new(listen: &str) -> Option<E2e> {
        if !ajar_lab::preflight(&["ip", "nft"]) {
            return None;
        }
        let lab = Lab::new().unwrap();
        let vm = lab.netns("vm").unwrap();
        let cl = lab.netns("cl").unwrap();
        let (v, c) = lab.veth(&vm, &cl).unwrap();
        lab.addr(&vm, &v, "10.78.0.1/16").unwrap();
        lab.addr(&vm, &v, "fd00:78::1/64").unwrap();
        for a in ["10.78.1.2/16", "10.78.1.3/16", "10.78.2.3/16", "fd00:78::2/64"] {
            lab.addr(&cl, &c, a).unwrap();
        }
        for (proto, addr) in [
            (Proto::Tcp, "10.78.0.1:22"),
            (Proto::Udp, "10.78.0.1:22"),
            (Proto::Udp, "10.78.0.1:5353"),
            (Proto::Tcp, "10.78.0.1:8080"),
            (Proto::Tcp, "[fd00:78::1]:22"),
        ] {
            lab.listen(&vm, proto, addr.parse().unwrap()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let mut e = E2e { vm, cl, dir, listen: listen.to_owned(), server: None, agent: None, url: String::new(), lab };
        e.start_server();
        Some(e)
    }

    /// Starts `ajar serve` inside "vm" and waits (bounded) for its `listening on` line.
    fn start_server(&mut self) {
        assert!(self.server.is_none(), "the server is already running");
        let (server, url) = in_netns::serve(&self.vm, self.dir.path(), &self.listen);
        self.server = Some(server);
        self.url = url;
    }

    /// Stops the server with SIGTERM and waits (bounded) for it to exit.
    fn stop_server(&mut self) {
        let mut child = self.server.take().expect("the server is running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        // Promptly, even with the agent's long-poll in flight (the drain timeout is 10 s).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "the server exits cleanly on SIGTERM: {status}");
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not exit within 5 s of SIGTERM\n{}", self.logs());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn restart_server(&mut self) {
        self.stop_server();
        self.start_server();
    }

    /// SIGKILL: the server gets no chance to finish anything.
    fn kill_server(&mut self) {
        let mut child = self.server.take().expect("the server is running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        child.wait().unwrap();
    }

    /// Starts `ajar agent` inside "vm" (enrolling the first time) and waits (bounded) until table inet ajar
    /// exists and the server shows the machine.
    fn start_agent(&mut self) {
        self.spawn_agent();
        let deadline = Instant::now() + START;
        for _ in 0..1000 {
            let (ok, _, _) = self.lab.exec_status(&self.vm, &["nft", "list", "table", "inet", "ajar"], "").unwrap();
            if ok && self.ajar(&["vm", "show", "web1"]).0 == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "the agent did not apply its first table within {START:?}");
            thread::sleep(Duration::from_millis(100));
        }
        panic!("the agent did not apply its first table");
    }

    /// Starts the agent while the server is down, and waits (bounded) until it has restored its saved state;
    /// returns the agent's line saying so.
    fn start_agent_offline(&mut self) -> String {
        let before = self.restores().len();
        self.spawn_agent();
        let deadline = Instant::now() + START;
        loop {
            if let Some(line) = self.restores().get(before) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "the agent did not restore its saved state within {START:?}\n{}", self.logs());
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The agent's log lines (across restarts) saying it restored its saved state.
    fn restores(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
        log.lines().filter(|l| l.contains("restored the saved state")).map(str::to_owned).collect()
    }

    fn spawn_agent(&mut self) {
        assert!(self.agent.is_none(), "the agent is already running");
        self.agent = Some(in_netns::spawn_agent(&self.vm, self.dir.path(), &self.url, &["--name", "web1"]));
    }

    /// Waits (bounded) until the server says web1's agent has applied the machine's current desired state.
    fn wait_in_sync(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let status = self.ajar_json(&["status"]);
            let web1 = status["value"].as_array().and_then(|a| a.iter().find(|v| v["name"] == "web1")).cloned();
            if web1.as_ref().is_some_and(|w| w["agent"]["inSync"] == true) {
                return;
            }
            assert!(Instant::now() < deadline, "the agent was not in sync within {bound:?}: {status}\n{}", self.logs());
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL: the agent gets no chance to clean up.
    fn kill_agent(&mut self) {
        let mut child = self.agent.take().expect("the agent is running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        child.wait().unwrap();
    }

    /// Runs `ajar ARGS` inside "vm" against this server (bounded); returns (exit code, stdout, stderr).
    fn ajar(&self, args: &[&str]) -> (i32, String, String) {
        in_netns::cli(&self.vm, self.dir.path(), args)
    }

    /// `ajar ARGS --output json`, which must succeed; its JSON.
    fn ajar_json(&self, args: &[&str]) -> Value {
        in_netns::cli_json(&self.vm, self.dir.path(), args)
    }

    /// `ajar request web1 --port PORT --from SRC --for DURATION`; returns the grant's end time.
    fn request(&self, port: u16, src: &str, duration: &str) -> OffsetDateTime {
        let port = port.to_string();
        let out = self.ajar_json(&["request", "web1", "--port", &port, "--from", src, "--for", duration]);
        let p = &out["virtualMachines"][0]["ports"][0];
        assert_eq!(p["status"], "Initiated", "{out}");
        OffsetDateTime::parse(p["endTimeUtc"].as_str().unwrap(), &Rfc3339).unwrap()
    }

    /// One connection attempt from `src` (in "cl") to `dst`:`port` (in "vm"), waiting `wait` for an answer.
    fn probe(&self, src: &str, dst: &str, port: u16, proto: Proto, wait: Duration) -> Probe {
        self.lab.probe(&self.cl, proto, ip(src), SocketAddr::new(ip(dst), port), wait).unwrap()
    }

    /// Asserts one probe's result (waiting long enough for an answer when OPEN is expected).
    fn expect(&self, src: &str, dst: &str, port: u16, proto: Proto, want: Probe) {
        let wait = if want == Probe::Open { OPEN_WAIT } else { DROP_WAIT };
        assert_eq!(self.probe(src, dst, port, proto, wait), want, "{proto:?} {src} -> {dst}:{port}\n{}", self.logs());
    }

    /// Probes over TCP from each `src` to VM4:`port` at once, and asserts each result.
    fn expect_all(&self, want: &[(&str, u16, Probe)]) {
        let got: Vec<Probe> = thread::scope(|scope| {
            let probes: Vec<_> = want
                .iter()
                .map(|&(src, port, w)| {
                    let wait = if w == Probe::Open { OPEN_WAIT } else { DROP_WAIT };
                    scope.spawn(move || self.probe(src, VM4, port, Proto::Tcp, wait))
                })
                .collect();
            probes.into_iter().map(|p| p.join().unwrap()).collect()
        });
        for (&(src, port, w), g) in want.iter().zip(got) {
            assert_eq!(g, w, "TCP {src} -> {VM4}:{port}\n{}", self.logs());
        }
    }

    /// Probes until the result is `want`, at most `bound` (and 1000 probes); panics otherwise. Returns
    /// when it was seen.
    fn wait_until(&self, src: &str, dst: &str, port: u16, proto: Proto, want: Probe, bound: Duration) -> Instant {
        let dst_addr = SocketAddr::new(ip(dst), port);
        let (got, at) = self.lab.probe_until(&self.cl, proto, ip(src), dst_addr, want, bound).unwrap();
        assert_eq!(got, want, "{proto:?} {src} -> {dst}:{port} within {bound:?}\n{}", self.logs());
        at
    }

    /// Waits until new connections from `src` are dropped, and asserts that this happened by `end` + 2 s.
    /// Returns how long after `end` the first dropped probe came back (the probe's own wait included).
    fn closed_on_time(&self, src: &str, dst: &str, port: u16, proto: Proto, end: OffsetDateTime) -> time::Duration {
        let left = end - OffsetDateTime::now_utc();
        let bound = Duration::try_from(left).unwrap_or(Duration::ZERO) + CLOSED_AFTER_END;
        self.wait_until(src, dst, port, proto, Probe::Timeout, bound);
        let late = OffsetDateTime::now_utc() - end;
        assert!(late <= time::Duration::try_from(CLOSED_AFTER_END).unwrap(), "closed {late} after the end time, more than 2 s");
        late
    }

    /// Waits (bounded) until the one request on each port has the status wanted ("Revoked/Expired", …).
    fn wait_statuses(&self, src: &str, want: &[(u16, &str)]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got: Vec<Vec<(String, String)>> = want.iter().map(|(port, _)| self.statuses(*port)).collect();
            if got.iter().zip(want).all(|(g, (_, w))| *g == [(src.to_owned(), (*w).to_owned())]) {
                return;
            }
            assert!(Instant::now() < deadline, "statuses {got:?}, wanted {want:?}");
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The statuses ("Initiated", "Revoked/NewerRequestInitiated", …) of every request for `port`, oldest
    /// first, from `ajar policy show`.
    fn statuses(&self, port: u16) -> Vec<(String, String)> {
        let policy = self.ajar_json(&["policy", "show"]);
        let mut out = Vec::new();
        for r in policy["properties"]["requests"].as_array().unwrap() {
            for p in r["virtualMachines"][0]["ports"].as_array().unwrap() {
                if p["number"] == port {
                    let source = p["allowedSourceAddressPrefix"].as_str().unwrap_or("-").to_owned();
                    out.push((source, format!("{}/{}", p["status"].as_str().unwrap(), p["statusReason"].as_str().unwrap())));
                }
            }
        }
        out
    }

    fn logs(&self) -> String {
        in_netns::logs(self.dir.path())
    }
}

impl Drop for E2e {
    fn drop(&mut self) {
        // AJAR_E2E_LOGS=1 shows them for passing tests too.
        if thread::panicking() || std::env::var_os("AJAR_E2E_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
        for child in [self.agent.take(), self.server.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        // Then the lab (a field) deletes the namespaces, and with them table inet ajar.
    }
}

/// A world with the server and the agent running and JIT enabled on web1 with the defaults (22/TCP).
fn enabled(listen: &str) -> Option<E2e> {
    let mut e = E2e::new(listen)?;
    e.start_agent();
    let (code, stdout, stderr) = e.ajar(&["policy", "enable", "web1", "--defaults"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Timeout, OPEN_WITHIN);
    Some(e)
}

#[test]
fn enabling_jit_closes_22_and_leaves_8080_open() {
    let Some(mut e) = E2e::new("127.0.0.1:0") else { return };
    e.start_agent();
    // In-process, through the library the nftables package installs with nft.
    let log = std::fs::read_to_string(e.dir.path().join("agent.log")).unwrap_or_default();
    let through = log.lines().find(|l| l.contains("enforcing with nftables")).unwrap_or_default();
    assert!(through.contains("libnftables"), "the agent does not enforce through libnftables: {through:?}\n{}", e.logs());
    // Enrolled, nothing protected yet: everything is open.
    e.expect(A, VM4, 22, Proto::Tcp, Probe::Open);
    e.expect(A6, VM6, 22, Proto::Tcp, Probe::Open);
    e.expect(A, VM4, 8080, Proto::Tcp, Probe::Open);

    let (code, stdout, stderr) = e.ajar(&["policy", "enable", "web1", "--defaults"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Timeout, OPEN_WITHIN);
    e.expect(B, VM4, 22, Proto::Tcp, Probe::Timeout);
    e.expect(A6, VM6, 22, Proto::Tcp, Probe::Timeout);
    e.expect(A, VM4, 8080, Proto::Tcp, Probe::Open);
    // The machine shows as configured.
    let status = e.ajar_json(&["status"]);
    let text = status.to_string();
    assert!(text.contains("web1") && text.contains("Configured"), "{text}");
}

#[test]
fn a_host_grant_opens_only_its_source_and_protocol() {
    let Some(e) = enabled("127.0.0.1:0") else { return };
    // The policy is TCP only: UDP 22 is not protected, before or during the grant.
    e.expect(A, VM4, 22, Proto::Udp, Probe::Open);
    e.request(22, A, "10m");
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    e.expect(B, VM4, 22, Proto::Tcp, Probe::Timeout);
    e.expect(C, VM4, 22, Proto::Tcp, Probe::Timeout);
    e.expect(A6, VM6, 22, Proto::Tcp, Probe::Timeout);
    e.expect(A, VM4, 22, Proto::Udp, Probe::Open);
    e.expect(B, VM4, 8080, Proto::Tcp, Probe::Open);
}

#[test]
fn a_short_grant_ends_on_time_but_not_its_established_sessions() {
    let Some(e) = enabled("127.0.0.1:0") else { return };
    let end = e.request(22, A, "5s");
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    let dst = SocketAddr::new(ip(VM4), 22);
    let mut session = e.lab.session(&e.cl, ip(A), dst, OPEN_WAIT).unwrap();
    assert!(session.echo().unwrap());
    e.closed_on_time(A, VM4, 22, Proto::Tcp, end);
    assert!(session.echo().unwrap(), "a session opened during the grant outlives it");
    e.expect(B, VM4, 8080, Proto::Tcp, Probe::Open);
    // The server records it as expired (its scheduler), and the agent's table follows without reopening.
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.statuses(22) != [(A.to_owned(), "Revoked/Expired".to_owned())] {
        assert!(Instant::now() < deadline, "not recorded as expired: {:?}", e.statuses(22));
        thread::sleep(Duration::from_millis(200));
    }
    e.expect(A, VM4, 22, Proto::Tcp, Probe::Timeout);
}

#[test]
fn a_killed_agent_leaves_grants_to_the_kernel_and_a_restarted_one_catches_up() {
    let Some(mut e) = enabled("127.0.0.1:0") else { return };
    let end = e.request(22, A, "6s");
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    e.kill_agent();
    // The table stays: A is still in, B still out, and A's grant ends on time without the agent.
    e.expect(A, VM4, 22, Proto::Tcp, Probe::Open);
    e.expect(B, VM4, 22, Proto::Tcp, Probe::Timeout);
    e.closed_on_time(A, VM4, 22, Proto::Tcp, end);
    // A grant made while the agent is down is applied once it is back, and the ended one stays ended.
    e.request(22, B, "10m");
    e.expect(B, VM4, 22, Proto::Tcp, Probe::Timeout);
    e.start_agent();
    e.wait_until(B, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    e.expect(A, VM4, 22, Proto::Tcp, Probe::Timeout);
    e.expect(A, VM4, 8080, Proto::Tcp, Probe::Open);
}

#[test]
fn a_newer_request_supersedes_the_older_and_revoke_closes_at_once() {
    let Some(e) = enabled("127.0.0.1:0") else { return };
    e.request(22, A, "10m");
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    e.request(22, B, "10m");
    e.wait_until(B, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Timeout, Duration::from_secs(2));
    assert_eq!(
        e.statuses(22),
        [(A.to_owned(), "Revoked/NewerRequestInitiated".to_owned()), (B.to_owned(), "Initiated/UserRequested".to_owned())]
    );

    let (code, stdout, stderr) = e.ajar(&["revoke", "web1", "--port", "22"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "revoked 1 grant(s) on web1 ports 22");
    e.wait_until(B, VM4, 22, Proto::Tcp, Probe::Timeout, Duration::from_secs(2));
    assert_eq!(e.statuses(22)[1], (B.to_owned(), "Revoked/UserRequested".to_owned()));
    // Nothing left to revoke.
    assert_eq!(e.ajar_json(&["revoke", "web1", "--port", "22"])["revoked"], 0);
    e.expect(A, VM4, 8080, Proto::Tcp, Probe::Open);
}

#[test]
fn revoke_cuts_established_connections_only_when_the_policy_says_so() {
    let Some(e) = enabled("127.0.0.1:0") else { return };
    let session = |src: &str| {
        let mut s = e.lab.session(&e.cl, ip(src), SocketAddr::new(ip(VM4), 22), OPEN_WAIT).unwrap();
        assert!(s.echo().unwrap());
        s
    };
    // Off, the default (as on Azure): a revoke closes the port but not the open session.
    e.request(22, B, "10m");
    e.wait_until(B, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    let mut b = session(B);
    assert_eq!(e.ajar_json(&["revoke", "web1", "--port", "22"])["revoked"], 1);
    e.wait_until(B, VM4, 22, Proto::Tcp, Probe::Timeout, Duration::from_secs(2));
    assert!(b.echo().unwrap(), "without the setting a revoke leaves established sessions alone");

    // On: the revoked grant's sessions are cut; a session of a grant that was superseded, not revoked, stays.
    let (code, stdout, stderr) = e.ajar(&["policy", "set", "web1", "--port", "22/tcp", "--cut-connections-on-revoke", "true"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Cut on revoke:   yes"), "{stdout}");
    e.request(22, C, "10m");
    e.wait_until(C, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    let mut c = session(C);
    e.request(22, A, "10m");
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    let mut a = session(A);
    assert_eq!(e.ajar_json(&["revoke", "web1", "--port", "22"])["revoked"], 1);
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Timeout, Duration::from_secs(2));
    // The agent cuts right after closing the port. The listener keeps talking (every 250 ms), which
    // would track a cut flow again the other way round if the ruleset let the client's answers in.
    let deadline = Instant::now() + Duration::from_secs(2);
    while a.echo().unwrap() {
        assert!(Instant::now() < deadline, "the revoked grant's session was not cut");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(!a.echo().unwrap(), "a cut session stays cut");
    assert!(c.echo().unwrap(), "a superseded grant's session is not cut");
    assert!(b.echo().unwrap(), "sessions from other sources are not cut");
    e.expect(A, VM4, 22, Proto::Tcp, Probe::Timeout);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = e.ajar_json(&["activity", "--vm", "web1"]).to_string();
        if log.contains("Ajar/agents/connectionsCut/action") {
            assert!(log.contains(r#"{"name":"connectionsCut","value":"1"}"#), "one connection cut: {log}");
            break;
        }
        assert!(Instant::now() < deadline, "no connectionsCut entry in the activity log: {log}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_server_restart_mid_grant_loses_nothing() {
    // A fixed port: the agent was given the URL at its start. It is the namespace's own loopback, so free.
    let Some(mut e) = enabled("127.0.0.1:18443") else { return };
    let end = e.request(22, A, "8s");
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    // Let the agent report and go back to its long-poll, which the stop must not wait for.
    thread::sleep(Duration::from_millis(500));
    e.restart_server();
    e.expect(A, VM4, 22, Proto::Tcp, Probe::Open);
    assert_eq!(e.statuses(22), [(A.to_owned(), "Initiated/UserRequested".to_owned())], "the request survived the restart");
    e.closed_on_time(A, VM4, 22, Proto::Tcp, end);
    // The agent follows the restarted server.
    e.request(22, B, "10m");
    e.wait_until(B, VM4, 22, Proto::Tcp, Probe::Open, Duration::from_secs(15));
    e.expect(A, VM4, 22, Proto::Tcp, Probe::Timeout);
}

#[test]
fn a_table_changed_by_hand_is_repaired_and_logged() {
    let Some(e) = enabled("127.0.0.1:0") else { return };
    e.lab.exec(&e.vm, &["nft", "flush", "table", "inet", "ajar"]).unwrap();
    // The flush opened 22 (the chain is gone); the agent checks every 2 s.
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Timeout, Duration::from_secs(8));
    e.expect(A, VM4, 8080, Proto::Tcp, Probe::Open);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = e.ajar_json(&["activity", "--vm", "web1"]).to_string();
        if log.contains("Ajar/agents/driftRepaired/action") {
            break;
        }
        assert!(Instant::now() < deadline, "no driftRepaired entry in the activity log: {log}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ipv6_udp_and_cidr_grants() {
    let Some(mut e) = E2e::new("127.0.0.1:0") else { return };
    e.start_agent();
    let (code, stdout, stderr) = e.ajar(&["policy", "set", "web1", "--port", "22/tcp", "--port", "5353/udp"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Timeout, OPEN_WITHIN);
    e.wait_until(A, VM4, 5353, Proto::Udp, Probe::Timeout, OPEN_WITHIN);
    e.expect(A6, VM6, 22, Proto::Tcp, Probe::Timeout);

    // IPv6: only that source, only IPv6.
    e.request(22, A6, "10m");
    e.wait_until(A6, VM6, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    e.expect(A, VM4, 22, Proto::Tcp, Probe::Timeout);

    // UDP: the datagram is echoed for A only.
    e.request(5353, A, "10m");
    e.wait_until(A, VM4, 5353, Proto::Udp, Probe::Open, OPEN_WITHIN);
    e.expect(B, VM4, 5353, Proto::Udp, Probe::Timeout);
    e.expect(A6, VM6, 22, Proto::Tcp, Probe::Open);

    // A range: every source inside it, none outside.
    e.request(22, CIDR, "10m");
    e.wait_until(A, VM4, 22, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    e.expect(C, VM4, 22, Proto::Tcp, Probe::Open);
    e.expect(B, VM4, 22, Proto::Tcp, Probe::Timeout);
    // The range superseded the IPv6 grant on the same port (one live request per machine and port).
    e.wait_until(A6, VM6, 22, Proto::Tcp, Probe::Timeout, Duration::from_secs(2));

    // A host inside the range, for longer: accepted, and it supersedes the range (same port).
    e.request(22, A, "20m");
    e.expect(A, VM4, 22, Proto::Tcp, Probe::Open);
    e.wait_until(C, VM4, 22, Proto::Tcp, Probe::Timeout, Duration::from_secs(2));
    e.expect(A, VM4, 22, Proto::Tcp, Probe::Open);
    e.expect(A, VM4, 5353, Proto::Udp, Probe::Open);
}

/// The ports of the fault tests, each with a grant from A; they end in this order.
const SHORT: u16 = 22;
const NEXT: u16 = 2222;
const LONG: u16 = 3333;

/// Asserts that A gets in on the `live` ports only, B on none, and unprotected 8080 stays open.
fn only_live_grants_open(e: &E2e, live: &[u16]) {
    let mut want = vec![(A, 8080, Probe::Open)];
    for port in [SHORT, NEXT, LONG] {
        want.push((A, port, if live.contains(&port) { Probe::Open } else { Probe::Timeout }));
        want.push((B, port, Probe::Timeout));
    }
    e.expect_all(&want);
}

/// Web1 guards SHORT, NEXT and LONG; A holds a grant on each (ending after 6 s, 9 s and 30 s). The agent
/// and the server are SIGKILLed, and the first two grants close on time with neither running (the
/// kernel's element timeouts). Returns the end times and how late the first two closed.
fn grants_outlive_agent_and_server(e: &mut E2e) -> ([OffsetDateTime; 3], [time::Duration; 2]) {
    for port in [NEXT, LONG] {
        e.lab.listen(&e.vm, Proto::Tcp, SocketAddr::new(ip(VM4), port)).unwrap();
    }
    e.start_agent();
    let (code, stdout, stderr) = e.ajar(&["policy", "set", "web1", "--port", "22/tcp", "--port", "2222/tcp", "--port", "3333/tcp"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for port in [SHORT, NEXT, LONG] {
        e.wait_until(A, VM4, port, Proto::Tcp, Probe::Timeout, OPEN_WITHIN);
    }
    let ends = [e.request(SHORT, A, "6s"), e.request(NEXT, A, "9s"), e.request(LONG, A, "30s")];
    for port in [SHORT, NEXT, LONG] {
        e.wait_until(A, VM4, port, Proto::Tcp, Probe::Open, OPEN_WITHIN);
    }
    only_live_grants_open(e, &[SHORT, NEXT, LONG]);
    e.kill_agent();
    e.kill_server();
    assert!(OffsetDateTime::now_utc() < ends[0], "too slow: the first grant ended before both were killed");
    let late = [e.closed_on_time(A, VM4, SHORT, Proto::Tcp, ends[0]), e.closed_on_time(A, VM4, NEXT, Proto::Tcp, ends[1])];
    only_live_grants_open(e, &[LONG]);
    (ends, late)
}

/// Guards against a machine so slow that the long grant would end before the checks that it is still open.
fn has_time_left(end: OffsetDateTime) {
    let left = end - OffsetDateTime::now_utc();
    assert!(left > time::Duration::seconds(3), "too slow: the long grant has only {left} left");
}

#[test]
fn with_agent_and_server_killed_grants_close_on_time_and_both_reconcile_on_restart() {
    // A fixed port: the agent was given the URL at its start. It is the namespace's own loopback, so free.
    let Some(mut e) = E2e::new("127.0.0.1:18443") else { return };
    let (ends, late) = grants_outlive_agent_and_server(&mut e);
    // The server first: it records the grants that ended while it was down as expired; nothing reopens.
    e.start_server();
    e.wait_statuses(A, &[(SHORT, "Revoked/Expired"), (NEXT, "Revoked/Expired"), (LONG, "Initiated/UserRequested")]);
    has_time_left(ends[2]);
    only_live_grants_open(&e, &[LONG]);
    // Then the agent: it restores what it saved, then takes the server's state.
    e.start_agent();
    e.wait_in_sync(Duration::from_secs(15));
    let restores = e.restores();
    assert!(restores.len() == 1 && restores[0].contains("live=1 ended=2"), "{restores:?}");
    has_time_left(ends[2]);
    only_live_grants_open(&e, &[LONG]);
    let late_long = e.closed_on_time(A, VM4, LONG, Proto::Tcp, ends[2]);
    only_live_grants_open(&e, &[]);
    e.wait_statuses(A, &[(SHORT, "Revoked/Expired"), (NEXT, "Revoked/Expired"), (LONG, "Revoked/Expired")]);
    eprintln!(
        "closed after their end: {SHORT} {}, {NEXT} {} (agent and server dead), {LONG} {late_long} (both restarted)",
        late[0], late[1]
    );
}

#[test]
fn an_agent_restarted_while_the_server_is_dead_restores_only_grants_that_have_not_ended() {
    let Some(mut e) = E2e::new("127.0.0.1:18443") else { return };
    let (ends, late) = grants_outlive_agent_and_server(&mut e);
    // Fail closed: from its state directory alone, the agent puts back the live grant and not the ended ones.
    let restored = e.start_agent_offline();
    assert!(restored.contains("live=1 ended=2"), "{restored}");
    has_time_left(ends[2]);
    only_live_grants_open(&e, &[LONG]);
    // The server comes back: the agent follows it, and nothing changes but the records.
    e.start_server();
    e.wait_in_sync(Duration::from_secs(20));
    e.wait_statuses(A, &[(SHORT, "Revoked/Expired"), (NEXT, "Revoked/Expired"), (LONG, "Initiated/UserRequested")]);
    has_time_left(ends[2]);
    only_live_grants_open(&e, &[LONG]);
    let late_long = e.closed_on_time(A, VM4, LONG, Proto::Tcp, ends[2]);
    only_live_grants_open(&e, &[]);
    eprintln!(
        "closed after their end: {SHORT} {}, {NEXT} {} (agent and server dead), {LONG} {late_long} (agent restored offline)",
        late[0], late[1]
    );
}
