//! ajar-enforce against real nftables and real connections, each test in its own network namespaces.
//!
//! Topology (fresh per test): namespace "vm" (the guarded host, where `inet ajar` is applied) and namespace
//! "cl" (clients), joined by a veth pair.
//!   vm: 10.77.0.1/24, fd00:77::1/64, route to 10.77.1.0/24 via the link
//!   cl: A = 10.77.0.2, B = 10.77.0.3 (/24), C = 10.77.1.7, D = 10.77.1.9 (/32, routed), A6 = fd00:77::2, B6 = fd00:77::3
//! Listeners in vm: tcp and udp 10.77.0.1:22, tcp [fd00:77::1]:22, tcp 10.77.0.1:8080.
//!
//! Needs root; without it the tests print "skipping: needs root" (and fail when CI=true).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ajar_enforce::{Applied, DesiredState, Firewall, Grant, NftFirewall, Protected, Proto, Source, drift_reasons, drifted, ruleset};
use ajar_lab::{Lab, Netns, Probe, Proto as P};

ajar_lab::lab_helper!();

/// The kernel's clock tick at its coarsest (HZ=100): element timeouts are kept in ticks.
const TICK: Duration = Duration::from_millis(10);
const OPEN_WAIT: Duration = Duration::from_secs(3);
const DROP_WAIT: Duration = Duration::from_millis(600);

struct World {
    lab: Lab,
    vm: Netns,
    cl: Netns,
    fw: NftFirewall,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const A: &str = "10.77.0.2";
const B: &str = "10.77.0.3";
const C: &str = "10.77.1.7";
const D: &str = "10.77.1.9";
const A6: &str = "fd00:77::2";
const B6: &str = "fd00:77::3";
const SSH: &str = "10.77.0.1:22";
const SSH6: &str = "[fd00:77::1]:22";
const WEB: &str = "10.77.0.1:8080";

fn world() -> Option<World> {
    if !ajar_lab::preflight(&["ip", "nft"]) {
        return None;
    }
    let lab = Lab::new().unwrap();
    let vm = lab.netns("vm").unwrap();
    let cl = lab.netns("cl").unwrap();
    let (v, c) = lab.veth(&vm, &cl).unwrap();
    lab.addr(&vm, &v, "10.77.0.1/24").unwrap();
    lab.addr(&vm, &v, "fd00:77::1/64").unwrap();
    lab.route(&vm, "10.77.1.0/24", &v).unwrap();
    for a in ["10.77.0.2/24", "10.77.0.3/24", "10.77.1.7/32", "10.77.1.9/32", "fd00:77::2/64", "fd00:77::3/64"] {
        lab.addr(&cl, &c, a).unwrap();
    }
    lab.listen(&vm, P::Tcp, sa(SSH)).unwrap();
    lab.listen(&vm, P::Udp, sa(SSH)).unwrap();
    lab.listen(&vm, P::Tcp, sa(SSH6)).unwrap();
    lab.listen(&vm, P::Tcp, sa(WEB)).unwrap();
    let mut prefix = vm.exec_args();
    prefix.push("nft".into());
    let fw = NftFirewall::with_command("ip", prefix);
    Some(World { lab, vm, cl, fw })
}

impl World {
    fn probe(&self, proto: P, src: &str, dst: &str, wait: Duration) -> Probe {
        self.lab.probe(&self.cl, proto, ip(src), sa(dst), wait).unwrap()
    }

    /// Asserts OPEN (waiting long) or TIMEOUT (waiting briefly).
    fn expect(&self, proto: P, src: &str, dst: &str, want: Probe) {
        let wait = if want == Probe::Open { OPEN_WAIT } else { DROP_WAIT };
        assert_eq!(self.probe(proto, src, dst, wait), want, "{proto:?} {src} -> {dst}");
    }

    fn nft(&self, args: &[&str]) -> String {
        self.lab.exec(&self.vm, &[&["nft"], args].concat()).unwrap()
    }
}

fn protect_22() -> Vec<Protected> {
    vec![Protected { proto: Proto::Both, port: 22 }]
}

fn grant(id: &str, net: &str, proto: Proto, secs: u64) -> Grant {
    Grant { id: id.into(), source: Source::Net(net.parse().unwrap()), proto, port: 22, timeout: Duration::from_secs(secs) }
}

#[test]
fn protecting_22_drops_it_and_leaves_other_ports_alone() {
    let Some(w) = world() else { return };
    // The lab works: everything is open before any table exists.
    w.expect(P::Tcp, A, SSH, Probe::Open);
    w.expect(P::Tcp, A6, SSH6, Probe::Open);
    assert!(w.fw.read_own().unwrap().is_none(), "no table yet");
    w.fw.usable().unwrap();

    w.fw.apply(&DesiredState { protected: protect_22(), grants: vec![], ..Default::default() }).unwrap();
    w.expect(P::Tcp, A, SSH, Probe::Timeout);
    w.expect(P::Tcp, A6, SSH6, Probe::Timeout);
    w.expect(P::Udp, A, SSH, Probe::Timeout);
    w.expect(P::Tcp, A, WEB, Probe::Open);
    // An unprotected port with nothing listening still answers with a RST.
    assert_eq!(w.probe(P::Tcp, A, "10.77.0.1:9999", OPEN_WAIT), Probe::Refused);
}

#[test]
fn a_grant_opens_only_its_source_and_protocol() {
    let Some(w) = world() else { return };
    let long_id = format!("req-{}", "x".repeat(300));
    let desired =
        DesiredState { protected: protect_22(), grants: vec![grant(&long_id, "10.77.0.2/32", Proto::Tcp, 300)], ..Default::default() };
    w.fw.apply(&desired).unwrap();
    w.expect(P::Tcp, A, SSH, Probe::Open);
    w.expect(P::Tcp, B, SSH, Probe::Timeout);
    w.expect(P::Udp, A, SSH, Probe::Timeout);
    w.expect(P::Tcp, A6, SSH6, Probe::Timeout);

    let observed = w.fw.read_own().unwrap().unwrap();
    assert_eq!(drift_reasons(&observed, &desired), Vec::<String>::new());
    let grants4 = observed.sets.iter().find(|s| s.name == ruleset::SET_GRANTS4).unwrap();
    let comment = grants4.elements[0].comment.clone().unwrap();
    assert!(comment.starts_with("req-xxx") && comment.len() <= 128, "{comment}");
}

#[test]
fn expiry_closes_new_connections_but_not_established_ones() {
    let Some(w) = world() else { return };
    let desired =
        DesiredState { protected: protect_22(), grants: vec![grant("r-exp", "10.77.0.2/32", Proto::Tcp, 2)], ..Default::default() };
    let applying = Instant::now();
    w.fw.apply(&desired).unwrap();
    let end = Instant::now() + Duration::from_secs(2);
    w.expect(P::Tcp, A, SSH, Probe::Open);
    let mut session = w.lab.session(&w.cl, ip(A), sa(SSH), OPEN_WAIT).unwrap();
    assert!(session.echo().unwrap());

    let (got, at) = w.lab.probe_until(&w.cl, P::Tcp, ip(A), sa(SSH), Probe::Timeout, Duration::from_secs(5)).unwrap();
    assert_eq!(got, Probe::Timeout, "new connections still open 3 s after the grant's end");
    assert!(at <= end + Duration::from_secs(2), "closed only {:?} after the end", at - end);
    // The kernel counts from its commit, between `applying` and `end`, in ticks of at most 10 ms.
    assert!(at + TICK >= applying + Duration::from_secs(2), "the grant ended {:?} early", applying + Duration::from_secs(2) - at);
    assert!(session.echo().unwrap(), "the established connection must survive the grant's end");
}

#[test]
fn ipv6_and_udp_grants() {
    let Some(w) = world() else { return };
    let desired = DesiredState {
        protected: protect_22(),
        grants: vec![grant("r-v6", "fd00:77::2/128", Proto::Tcp, 300), grant("r-udp", "10.77.0.2/32", Proto::Udp, 300)],
        ..Default::default()
    };
    w.fw.apply(&desired).unwrap();
    w.expect(P::Tcp, A6, SSH6, Probe::Open);
    w.expect(P::Tcp, B6, SSH6, Probe::Timeout);
    w.expect(P::Udp, A, SSH, Probe::Open);
    w.expect(P::Udp, B, SSH, Probe::Timeout);
    w.expect(P::Tcp, A, SSH, Probe::Timeout);
    assert!(!drifted(&w.fw.read_own().unwrap().unwrap(), &desired));
}

#[test]
fn cidr_grant_with_a_longer_host_grant_inside() {
    let Some(w) = world() else { return };
    let desired = DesiredState {
        protected: protect_22(),
        grants: vec![grant("r-net", "10.77.1.0/24", Proto::Tcp, 2), grant("r-host", "10.77.1.7/32", Proto::Tcp, 60)],
        ..Default::default()
    };
    w.fw.apply(&desired).unwrap();
    let end = Instant::now() + Duration::from_secs(2);
    w.expect(P::Tcp, C, SSH, Probe::Open);
    w.expect(P::Tcp, D, SSH, Probe::Open);
    w.expect(P::Tcp, A, SSH, Probe::Timeout);
    let observed = w.fw.read_own().unwrap().unwrap();
    assert_eq!(drift_reasons(&observed, &desired), Vec::<String>::new());

    let (got, at) = w.lab.probe_until(&w.cl, P::Tcp, ip(D), sa(SSH), Probe::Timeout, Duration::from_secs(5)).unwrap();
    assert_eq!(got, Probe::Timeout, "the /24 part did not end");
    assert!(at <= end + Duration::from_secs(2), "closed only {:?} after the end", at - end);
    w.expect(P::Tcp, C, SSH, Probe::Open);
}

#[test]
fn incremental_changes_open_and_close_the_right_sources_without_overlaps() {
    let Some(w) = world() else { return };
    let state = |grants: Vec<Grant>| DesiredState { protected: protect_22(), grants, ..Default::default() };
    // Each step: the change must apply (an overlap would be refused with EEXIST), take the path expected,
    // and leave exactly the desired table (drift_reasons compares elements, timeouts and comments).
    let step = |from: &DesiredState, to: &DesiredState, incremental: bool| {
        let applied = w.fw.apply_change(from, to).unwrap();
        assert_eq!(matches!(applied, Applied::Incremental { .. }), incremental, "{applied:?}");
        assert_eq!(drift_reasons(&w.fw.read_own().unwrap().unwrap(), to), Vec::<String>::new());
    };
    let s0 = state(vec![]);
    w.fw.apply(&s0).unwrap();
    w.expect(P::Tcp, A, SSH, Probe::Timeout);

    let s1 = state(vec![grant("r-a", "10.77.0.2/32", Proto::Tcp, 300)]);
    step(&s0, &s1, true);
    w.expect(P::Tcp, A, SSH, Probe::Open);
    w.expect(P::Tcp, B, SSH, Probe::Timeout);

    // A /24 and a longer host grant inside it: the /24 is cut into pieces around the host.
    let mut s2 = s1.clone();
    s2.grants.extend([grant("r-net", "10.77.1.0/24", Proto::Tcp, 120), grant("r-c", "10.77.1.7/32", Proto::Tcp, 600)]);
    step(&s1, &s2, true);
    w.expect(P::Tcp, C, SSH, Probe::Open);
    w.expect(P::Tcp, D, SSH, Probe::Open);

    // The host grant goes: its piece and the /24's pieces become one /24 element again.
    let s3 = state(vec![s2.grants[0].clone(), s2.grants[1].clone()]);
    step(&s2, &s3, true);
    w.expect(P::Tcp, C, SSH, Probe::Open);
    w.expect(P::Tcp, D, SSH, Probe::Open);
    assert_eq!(Applied::Unchanged, w.fw.apply_change(&s3, &s3).unwrap());

    // A superseded (new end), an IPv6 grant added, the /24 removed.
    let s4 = state(vec![grant("r-a2", "10.77.0.2/32", Proto::Tcp, 900), grant("r-a6", "fd00:77::2/128", Proto::Tcp, 300)]);
    step(&s3, &s4, true);
    w.expect(P::Tcp, A, SSH, Probe::Open);
    w.expect(P::Tcp, A6, SSH6, Probe::Open);
    w.expect(P::Tcp, C, SSH, Probe::Timeout);
    w.expect(P::Tcp, D, SSH, Probe::Timeout);

    // The element to delete is already gone (as if the kernel had expired it): the incremental batch fails
    // with ENOENT, changes nothing, and the full apply takes over.
    w.nft(&["delete", "element", "inet", "ajar", "grants4", "{ 10.77.0.2 . tcp . 22 }"]);
    let s5 = state(vec![grant("r-b", "10.77.0.3/32", Proto::Tcp, 300), s4.grants[1].clone()]);
    step(&s4, &s5, false);
    w.expect(P::Tcp, B, SSH, Probe::Open);
    w.expect(P::Tcp, A, SSH, Probe::Timeout);

    // Another protected set: a full apply.
    let mut s6 = s5.clone();
    s6.protected.push(Protected { proto: Proto::Tcp, port: 8080 });
    step(&s5, &s6, false);
    w.expect(P::Tcp, A, WEB, Probe::Timeout);
    w.expect(P::Tcp, B, SSH, Probe::Open);

    // The table is missing: the incremental batch fails and the full apply re-creates it.
    w.fw.remove().unwrap();
    let s7 = state(vec![grant("r-d", "10.77.1.9/32", Proto::Tcp, 300)]);
    step(&s5, &s7, false);
    w.expect(P::Tcp, D, SSH, Probe::Open);
    w.expect(P::Tcp, B, SSH, Probe::Timeout);
}

#[test]
fn apply_replaces_atomically_and_a_rejected_batch_changes_nothing() {
    let Some(w) = world() else { return };
    let with_a =
        DesiredState { protected: protect_22(), grants: vec![grant("r-a", "10.77.0.2/32", Proto::Tcp, 300)], ..Default::default() };
    w.fw.apply(&with_a).unwrap();
    w.expect(P::Tcp, A, SSH, Probe::Open);

    let with_b =
        DesiredState { protected: protect_22(), grants: vec![grant("r-b", "10.77.0.3/32", Proto::Tcp, 300)], ..Default::default() };
    w.fw.apply(&with_b).unwrap();
    w.expect(P::Tcp, A, SSH, Probe::Timeout);
    w.expect(P::Tcp, B, SSH, Probe::Open);
    let before = w.fw.read_own().unwrap().unwrap();

    // The batch that would install a grant for all of 10.77.0.0/24, plus a host element inside that /24:
    // the kernel answers EEXIST, and the whole transaction — including the delete and re-create of the
    // table — is rolled back.
    let wide =
        DesiredState { protected: protect_22(), grants: vec![grant("r-wide", "10.77.0.0/24", Proto::Tcp, 300)], ..Default::default() };
    let mut doc: serde_json::Value = serde_json::from_str(&ruleset::to_json(ruleset::build(&wide))).unwrap();
    doc["nftables"].as_array_mut().unwrap().push(serde_json::json!({"add": {"element": {
        "family": "inet", "table": "ajar", "name": "grants4",
        "elem": [{"elem": {"val": {"concat": ["10.77.0.2", "tcp", 22]}, "timeout": 60}}]
    }}}));
    let err = w.fw.apply_json("applying a batch that must fail", &doc.to_string()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("applying a batch that must fail") && msg.contains("File exists"), "{msg}");

    w.expect(P::Tcp, A, SSH, Probe::Timeout);
    w.expect(P::Tcp, B, SSH, Probe::Open);
    let after = w.fw.read_own().unwrap().unwrap();
    assert!(!drifted(&after, &with_b));
    assert_eq!(after.rules, before.rules);
    assert_eq!(after.sets.len(), before.sets.len());
}

#[test]
fn drift_is_detected_and_repaired() {
    let Some(w) = world() else { return };
    let desired =
        DesiredState { protected: protect_22(), grants: vec![grant("r-a", "10.77.0.2/32", Proto::Tcp, 300)], ..Default::default() };
    w.fw.apply(&desired).unwrap();
    assert_eq!(drift_reasons(&w.fw.read_own().unwrap().unwrap(), &desired), Vec::<String>::new());

    // Someone flushes the table: no rules, so port 22 is open to everyone.
    w.nft(&["flush", "table", "inet", "ajar"]);
    w.expect(P::Tcp, B, SSH, Probe::Open);
    assert!(drifted(&w.fw.read_own().unwrap().unwrap(), &desired));
    w.fw.apply(&desired).unwrap();
    assert!(!drifted(&w.fw.read_own().unwrap().unwrap(), &desired));
    w.expect(P::Tcp, B, SSH, Probe::Timeout);
    w.expect(P::Tcp, A, SSH, Probe::Open);

    // Someone deletes the grant's element: A is locked out until the next apply.
    w.nft(&["delete", "element", "inet", "ajar", "grants4", "{ 10.77.0.2 . tcp . 22 }"]);
    w.expect(P::Tcp, A, SSH, Probe::Timeout);
    let reasons = drift_reasons(&w.fw.read_own().unwrap().unwrap(), &desired);
    assert!(reasons.iter().any(|r| r.contains("missing")), "{reasons:?}");
    w.fw.apply(&desired).unwrap();
    w.expect(P::Tcp, A, SSH, Probe::Open);

    // Someone adds an element by hand: drift too.
    w.nft(&["add", "element", "inet", "ajar", "grants4", "{ 10.77.0.3 . tcp . 22 timeout 1h }"]);
    assert!(drifted(&w.fw.read_own().unwrap().unwrap(), &desired));
}

#[test]
fn remove_deletes_our_table_and_nothing_else() {
    let Some(w) = world() else { return };
    w.lab
        .exec_stdin(
            &w.vm,
            &["nft", "-f", "-"],
            "table inet other {\n chain input { type filter hook input priority 10; policy accept; }\n}\n",
        )
        .unwrap();
    w.fw.apply(&DesiredState { protected: protect_22(), grants: vec![], ..Default::default() }).unwrap();
    w.expect(P::Tcp, A, SSH, Probe::Timeout);

    w.fw.remove().unwrap();
    assert!(w.fw.read_own().unwrap().is_none());
    w.expect(P::Tcp, A, SSH, Probe::Open);
    let other = w.nft(&["list", "table", "inet", "other"]);
    assert!(other.contains("chain input"), "{other}");
    w.fw.remove().unwrap(); // idempotent
    assert!(w.nft(&["list", "tables"]).contains("table inet other"));
}

#[test]
fn unusable_nft_is_reported() {
    if !ajar_lab::preflight(&["ip", "nft"]) {
        return;
    }
    let fw = NftFirewall::with_command("/nonexistent/nft", Vec::<String>::new());
    let err = fw.usable().unwrap_err();
    assert!(err.contains("could not run"), "{err}");
    // The agent's own: the library the nftables package installs, in-process.
    let fw = NftFirewall::new();
    assert_eq!(fw.describe(), "libnftables");
    fw.usable().unwrap();
}
