//! Gateway mode against real nftables, conntrack and TCP, each test in its own network namespaces.
//!
//! Topology (fresh per test): clients — gateway — two machines, the gateway routing between them (IPv4 and
//! IPv6 forwarding on), the machines' default routes via the gateway, no masquerade.
//!   cl: A = 10.78.0.2, B = 10.78.0.3 (/24), A6 = fd00:78::2, B6 = fd00:78::3 (/64); routes to the machines'
//!       networks via the gateway, so a client can also try to reach a machine directly
//!   gw: public 10.78.0.1/24 and fd00:78::1/64 (towards cl); 10.78.1.1/24 and fd00:78:1::1/64 (towards m1);
//!       10.78.2.1/24 (towards m2); `inet ajar` is applied here, and it protects its own tcp/22
//!   m1: 10.78.1.2/24, fd00:78:1::2/64; listeners tcp 22 (v4 and v6, served) and 8080 (not served)
//!   m2: 10.78.2.2/24; listener tcp 2222 (served) only, so a connection that reaches the wrong machine is
//!       refused
//!
//! Needs root; without it the tests print "skipping: needs root" (and fail when CI=true).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ajar_enforce::{
    Applied, Conntrack, Cut, DesiredState, Firewall, Mapping, NftFirewall, Protected, Proto, ServedPort, Source, drift_reasons, drifted,
};
use ajar_lab::{Lab, Netns, Probe, Proto as P};

ajar_lab::lab_helper!();

/// The kernel's clock tick at its coarsest (HZ=100): element timeouts are kept in ticks.
const TICK: Duration = Duration::from_millis(10);
const OPEN_WAIT: Duration = Duration::from_secs(3);
const DROP_WAIT: Duration = Duration::from_millis(600);

const A: &str = "10.78.0.2";
const B: &str = "10.78.0.3";
const A6: &str = "fd00:78::2";
const B6: &str = "fd00:78::3";
const PUBLIC: &str = "10.78.0.1";
const PUBLIC6: &str = "fd00:78::1";
const M1: &str = "10.78.1.2";
const M1_6: &str = "fd00:78:1::2";
const M2: &str = "10.78.2.2";

/// Where clients connect on the gateway.
const GW_M1_SSH: &str = "10.78.0.1:50022";
const GW_M2_APP: &str = "10.78.0.1:50023";
const GW6_M1_SSH: &str = "[fd00:78::1]:50022";
/// The machines' own ports, reached directly by routing through the gateway.
const M1_SSH: &str = "10.78.1.2:22";
const M1_SSH6: &str = "[fd00:78:1::2]:22";
const M1_WEB: &str = "10.78.1.2:8080";
const M2_APP: &str = "10.78.2.2:2222";
const GW_SSH: &str = "10.78.0.1:22";

struct World {
    lab: Lab,
    cl: Netns,
    gw: Netns,
    fw: NftFirewall,
    conntrack: Conntrack,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn world() -> Option<World> {
    if !ajar_lab::preflight(&["ip", "nft", "conntrack", "sysctl"]) {
        return None;
    }
    let lab = Lab::new().unwrap();
    let cl = lab.netns("cl").unwrap();
    let gw = lab.netns("gw").unwrap();
    let m1 = lab.netns("m1").unwrap();
    let m2 = lab.netns("m2").unwrap();
    let (g_cl, c) = lab.veth(&gw, &cl).unwrap();
    let (g_m1, m1_if) = lab.veth(&gw, &m1).unwrap();
    let (g_m2, m2_if) = lab.veth(&gw, &m2).unwrap();
    lab.forwarding(&gw).unwrap();
    for (dev, a) in
        [(&g_cl, "10.78.0.1/24"), (&g_cl, "fd00:78::1/64"), (&g_m1, "10.78.1.1/24"), (&g_m1, "fd00:78:1::1/64"), (&g_m2, "10.78.2.1/24")]
    {
        lab.addr(&gw, dev, a).unwrap();
    }
    for a in ["10.78.0.2/24", "10.78.0.3/24", "fd00:78::2/64", "fd00:78::3/64"] {
        lab.addr(&cl, &c, a).unwrap();
    }
    lab.route_via(&cl, "10.78.1.0/24", ip(PUBLIC)).unwrap();
    lab.route_via(&cl, "10.78.2.0/24", ip(PUBLIC)).unwrap();
    lab.route_via(&cl, "fd00:78:1::/64", ip(PUBLIC6)).unwrap();
    lab.addr(&m1, &m1_if, "10.78.1.2/24").unwrap();
    lab.addr(&m1, &m1_if, "fd00:78:1::2/64").unwrap();
    lab.default_route(&m1, ip("10.78.1.1")).unwrap();
    lab.default_route(&m1, ip("fd00:78:1::1")).unwrap();
    lab.addr(&m2, &m2_if, "10.78.2.2/24").unwrap();
    lab.default_route(&m2, ip("10.78.2.1")).unwrap();
    for addr in [M1_SSH, M1_SSH6, M1_WEB] {
        lab.listen(&m1, P::Tcp, sa(addr)).unwrap();
    }
    lab.listen(&m2, P::Tcp, sa(M2_APP)).unwrap();
    lab.listen(&gw, P::Tcp, sa(GW_SSH)).unwrap();
    let prefix = |tool: &str| {
        let mut p = gw.exec_args();
        p.push(tool.into());
        p
    };
    let fw = NftFirewall::with_command("ip", prefix("nft"));
    let conntrack = Conntrack::with_command("ip", prefix("conntrack"));
    Some(World { lab, cl, gw, fw, conntrack })
}

impl World {
    fn probe(&self, src: &str, dst: &str, wait: Duration) -> Probe {
        self.lab.probe(&self.cl, P::Tcp, ip(src), sa(dst), wait).unwrap()
    }

    /// Asserts a TCP connect's result: OPEN and REFUSED waiting long, TIMEOUT waiting briefly.
    fn expect(&self, src: &str, dst: &str, want: Probe) {
        let wait = if want == Probe::Timeout { DROP_WAIT } else { OPEN_WAIT };
        assert_eq!(self.probe(src, dst, wait), want, "tcp {src} -> {dst}");
    }

    fn nft(&self, args: &[&str]) -> String {
        self.lab.exec(&self.gw, &[&["nft"], args].concat()).unwrap()
    }

    fn no_drift(&self, desired: &DesiredState) {
        assert_eq!(drift_reasons(&self.fw.read_own().unwrap().unwrap(), desired), Vec::<String>::new());
    }
}

fn net(s: &str) -> Source {
    Source::Net(s.parse().unwrap())
}

fn mapping(id: &str, source: Source, mapped_port: u16, target: &str, port: u16, secs: u64) -> Mapping {
    Mapping { id: id.into(), source, proto: Proto::Tcp, mapped_port, target: ip(target), port, timeout: Duration::from_secs(secs) }
}

/// The gateway's state: its own tcp/22 protected, both public addresses, the machines' served ports.
fn gateway(mappings: Vec<Mapping>) -> DesiredState {
    let served = |address: &str, port| ServedPort { address: ip(address), proto: Proto::Tcp, port };
    DesiredState {
        protected: vec![Protected { proto: Proto::Tcp, port: 22 }],
        grants: vec![],
        public: vec![ip(PUBLIC), ip(PUBLIC6)],
        served: vec![served(M1, 22), served(M1_6, 22), served(M2, 2222)],
        mappings,
    }
}

#[test]
fn without_a_mapping_nothing_reaches_the_served_ports() {
    let Some(w) = world() else { return };
    // The lab works: before any table, the machines are reachable by routing through the gateway.
    w.expect(A, M1_SSH, Probe::Open);
    w.expect(A6, M1_SSH6, Probe::Open);
    w.expect(A, M2_APP, Probe::Open);

    let desired = gateway(vec![]);
    w.fw.apply(&desired).unwrap();
    w.no_drift(&desired);
    // Nothing translates the public port, and nothing listens on the gateway there: its own RST.
    w.expect(A, GW_M1_SSH, Probe::Refused);
    w.expect(A6, GW6_M1_SSH, Probe::Refused);
    // Served ports stay closed to direct routing; an unserved port of the machine is routed as before.
    w.expect(A, M1_SSH, Probe::Timeout);
    w.expect(A6, M1_SSH6, Probe::Timeout);
    w.expect(A, M2_APP, Probe::Timeout);
    w.expect(A, M1_WEB, Probe::Open);
    // The gateway's own protected port is closed by the host chain, as on any host.
    w.expect(A, GW_SSH, Probe::Timeout);

    // Another table's translation to a served port, from an address that is not public, is dropped too;
    // the same translation to an unserved port passes (so it did translate).
    let other = "table ip other {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 10.78.1.1 tcp dport 60022 dnat to 10.78.1.2:22
    ip daddr 10.78.1.1 tcp dport 60080 dnat to 10.78.1.2:8080
  }
}
";
    w.lab.exec_stdin(&w.gw, &["nft", "-f", "-"], other).unwrap();
    w.expect(A, "10.78.1.1:60022", Probe::Timeout);
    w.expect(A, "10.78.1.1:60080", Probe::Open);
}

#[test]
fn a_mapping_opens_its_public_port_for_its_sources_only() {
    let Some(w) = world() else { return };
    let desired = gateway(vec![mapping("r-a", net("10.78.0.2/32"), 50022, M1, 22, 300)]);
    w.fw.apply(&desired).unwrap();
    w.no_drift(&desired);
    w.expect(A, GW_M1_SSH, Probe::Open);
    w.expect(B, GW_M1_SSH, Probe::Refused);
    w.expect(A, GW_M2_APP, Probe::Refused);
    // The mapping opens the translated path only, not the machine's port to direct routing.
    w.expect(A, M1_SSH, Probe::Timeout);
    w.expect(B, M1_SSH, Probe::Timeout);

    // No masquerade: the machine answers the client's own address.
    let mut session = w.lab.session(&w.cl, ip(A), sa(GW_M1_SSH), OPEN_WAIT).unwrap();
    assert!(session.echo().unwrap());
    let flows = w.lab.exec(&w.gw, &["conntrack", "-L", "-p", "tcp", "--orig-port-dst", "50022"]).unwrap();
    let want = format!("src={A} dst={PUBLIC} sport=");
    let reply = format!("src={M1} dst={A} sport=22 ");
    assert!(flows.lines().any(|l| l.contains(&want) && l.contains(&reply) && l.contains("ESTABLISHED")), "{flows}");
}

#[test]
fn two_mappings_reach_two_machines_and_change_incrementally() {
    let Some(w) = world() else { return };
    let only_a = gateway(vec![mapping("r-a", net("10.78.0.2/32"), 50022, M1, 22, 300)]);
    w.fw.apply(&only_a).unwrap();
    let both = gateway(vec![only_a.mappings[0].clone(), mapping("r-any", Source::Any, 50023, M2, 2222, 300)]);
    assert_eq!(w.fw.apply_change(&only_a, &both).unwrap(), Applied::Incremental { deleted: 0, added: 1 });
    w.no_drift(&both);
    // m1 listens on 22 only, m2 on 2222 only: an open connection went to the right machine.
    w.expect(A, GW_M1_SSH, Probe::Open);
    w.expect(A, GW_M2_APP, Probe::Open);
    w.expect(B, GW_M2_APP, Probe::Open);
    w.expect(B, GW_M1_SSH, Probe::Refused);
    // `*` towards an IPv4 machine is IPv4's `*`: nothing is mapped on the IPv6 public address.
    w.expect(A6, "[fd00:78::1]:50023", Probe::Refused);

    // Another public address set is a full apply; the mappings hold on the addresses that stay.
    let mut fewer = both.clone();
    fewer.public.retain(|a| a.is_ipv4());
    assert!(matches!(w.fw.apply_change(&both, &fewer).unwrap(), Applied::Full { .. }));
    w.no_drift(&fewer);
    w.expect(A, GW_M1_SSH, Probe::Open);
    w.expect(B, GW_M2_APP, Probe::Open);
}

#[test]
fn expiry_closes_new_connections_but_not_established_ones() {
    let Some(w) = world() else { return };
    let desired = gateway(vec![mapping("r-exp", net("10.78.0.2/32"), 50022, M1, 22, 3)]);
    let applying = Instant::now();
    w.fw.apply(&desired).unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    let mut session = w.lab.session(&w.cl, ip(A), sa(GW_M1_SSH), OPEN_WAIT).unwrap();
    assert!(session.echo().unwrap());

    let (got, at) = w.lab.probe_until(&w.cl, P::Tcp, ip(A), sa(GW_M1_SSH), Probe::Refused, Duration::from_secs(6)).unwrap();
    assert_eq!(got, Probe::Refused, "new connections still translated 3 s after the mapping's end");
    assert!(at <= end + Duration::from_secs(2), "closed only {:?} after the end", at - end);
    // The kernel counts from its commit, between `applying` and `end`, in ticks of at most 10 ms.
    assert!(at + TICK >= applying + Duration::from_secs(3), "the mapping ended {:?} early", applying + Duration::from_secs(3) - at);
    assert!(session.echo().unwrap(), "the established connection must survive the mapping's end");
    w.expect(A, M1_SSH, Probe::Timeout);
}

/// A table watching the gateway's forward hook after ajar's chain (priority 10 > -10): it counts the
/// machine's packets from its served port that conntrack sees as a flow the MACHINE started, i.e. a cut
/// flow picked up again from the machine's side. ajar's forward chain must drop every one before this.
const WATCH: &str = "table inet watch {
  chain forward {
    type filter hook forward priority 10; policy accept;
    ip saddr 10.78.1.2 tcp sport 22 ct direction original counter
    ip6 saddr fd00:78:1::2 tcp sport 22 ct direction original counter
  }
}
";

fn watched_packets(w: &World) -> u64 {
    let json = w.nft(&["-j", "list", "table", "inet", "watch"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .flat_map(|r| r["expr"].as_array().unwrap().iter())
        .filter_map(|e| e.get("counter")?.get("packets")?.as_u64())
        .sum()
}

/// Revoke (the mapping removed by an element change), then cut: new connections are refused at once, the
/// established one lives until the cut, and after the cut nothing of it passes the gateway either way.
fn revoke_and_cut(w: &World, src: &str, public_dst: &str, revoked: Mapping) {
    let without = gateway(vec![]);
    let with = gateway(vec![revoked.clone()]);
    w.fw.apply(&without).unwrap();
    assert_eq!(w.fw.apply_change(&without, &with).unwrap(), Applied::Incremental { deleted: 0, added: 1 });
    let mut session = w.lab.session(&w.cl, ip(src), sa(public_dst), OPEN_WAIT).unwrap();
    assert!(session.echo().unwrap());

    assert_eq!(w.fw.apply_change(&with, &without).unwrap(), Applied::Incremental { deleted: 1, added: 0 });
    w.no_drift(&without);
    w.expect(src, public_dst, Probe::Refused);
    assert!(session.echo().unwrap(), "a revoke alone leaves established connections, as on a host");

    let cut = Cut { proto: revoked.proto, port: revoked.mapped_port, sources: vec![revoked.source], keep: vec![] };
    assert_eq!(w.conntrack.cut(&cut).unwrap(), 1);
    // The machine keeps sending (its listener ticks every 250 ms, and TCP retransmits): give it time to try.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(watched_packets(w), 0, "packets of the cut flow passed the gateway from the machine's side");
    assert!(!session.echo().unwrap(), "the cut connection must not carry data");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!session.echo().unwrap(), "the cut connection must stay cut");
    assert_eq!(watched_packets(w), 0);
    w.expect(src, public_dst, Probe::Refused);
}

#[test]
fn revoke_closes_new_connections_and_a_cut_kills_the_established_one() {
    let Some(w) = world() else { return };
    w.lab.exec_stdin(&w.gw, &["nft", "-f", "-"], WATCH).unwrap();
    revoke_and_cut(&w, A, GW_M1_SSH, mapping("r-a", net("10.78.0.2/32"), 50022, M1, 22, 300));
}

#[test]
fn ipv6_mappings_work_the_same() {
    let Some(w) = world() else { return };
    let desired = gateway(vec![
        mapping("r-6", net("fd00:78::2/128"), 50022, M1_6, 22, 300),
        // An IPv4 source for an IPv6 machine does not apply: no element, nothing opened.
        mapping("r-4for6", net("10.78.0.3/32"), 50022, M1_6, 22, 300),
    ]);
    w.fw.apply(&desired).unwrap();
    w.no_drift(&desired);
    w.expect(A6, GW6_M1_SSH, Probe::Open);
    w.expect(B6, GW6_M1_SSH, Probe::Refused);
    w.expect(B, GW_M1_SSH, Probe::Refused);
    w.expect(A6, M1_SSH6, Probe::Timeout);

    w.lab.exec_stdin(&w.gw, &["nft", "-f", "-"], WATCH).unwrap();
    revoke_and_cut(&w, A6, GW6_M1_SSH, mapping("r-6", net("fd00:78::2/128"), 50022, M1_6, 22, 300));
}

#[test]
fn drift_of_the_gateway_is_detected_and_repaired() {
    let Some(w) = world() else { return };
    let desired = gateway(vec![mapping("r-a", net("10.78.0.2/32"), 50022, M1, 22, 300)]);
    w.fw.apply(&desired).unwrap();
    w.no_drift(&desired);

    // Someone deletes the mapping's address element: A is locked out until the next apply.
    w.nft(&["delete", "element", "inet", "ajar", "dnat4", "{ 10.78.0.2 . tcp . 50022 }"]);
    w.expect(A, GW_M1_SSH, Probe::Refused);
    let reasons = drift_reasons(&w.fw.read_own().unwrap().unwrap(), &desired);
    assert!(reasons.iter().any(|r| r.contains("dnat4 is missing")), "{reasons:?}");
    w.fw.apply(&desired).unwrap();
    w.no_drift(&desired);
    w.expect(A, GW_M1_SSH, Probe::Open);

    // Someone adds a mapping by hand: drift.
    w.nft(&["add", "element", "inet", "ajar", "dnat4", "{ 10.78.0.3 . tcp . 50022 timeout 1h : 10.78.1.2 }"]);
    w.nft(&["add", "element", "inet", "ajar", "dnat4port", "{ 10.78.0.3 . tcp . 50022 timeout 1h : 22 }"]);
    let reasons = drift_reasons(&w.fw.read_own().unwrap().unwrap(), &desired);
    assert!(reasons.iter().any(|r| r.contains("not desired")), "{reasons:?}");
    w.fw.apply(&desired).unwrap();
    w.expect(B, GW_M1_SSH, Probe::Refused);

    // Someone flushes the forward chain: the served ports are open to direct routing.
    w.nft(&["flush", "chain", "inet", "ajar", "forward"]);
    w.expect(B, M1_SSH, Probe::Open);
    let reasons = drift_reasons(&w.fw.read_own().unwrap().unwrap(), &desired);
    assert!(reasons.iter().any(|r| r.contains("chain forward")), "{reasons:?}");
    // Someone deletes the prerouting chain: nothing is translated.
    w.nft(&["delete", "chain", "inet", "ajar", "prerouting"]);
    assert!(drifted(&w.fw.read_own().unwrap().unwrap(), &desired));
    w.fw.apply(&desired).unwrap();
    w.no_drift(&desired);
    w.expect(B, M1_SSH, Probe::Timeout);
    w.expect(A, GW_M1_SSH, Probe::Open);

    // The kernel's public and served sets are compared with the desired ones.
    let observed = w.fw.read_own().unwrap().unwrap();
    let mut other = desired.clone();
    other.served.pop();
    assert!(drift_reasons(&observed, &other).iter().any(|r| r.contains("served4")));
    let mut other = desired.clone();
    other.public.push(ip("10.78.0.9"));
    assert!(drift_reasons(&observed, &other).iter().any(|r| r.contains("public4")));
    // A host-mode state does not accept a gateway's table, nor the other way round.
    assert!(drifted(&observed, &DesiredState { protected: desired.protected.clone(), ..DesiredState::default() }));
    w.fw.apply(&DesiredState { protected: desired.protected.clone(), ..DesiredState::default() }).unwrap();
    assert!(drifted(&w.fw.read_own().unwrap().unwrap(), &desired));
}
