//! The whole `inet ajar` table as one nftables batch. Pure.
//!
//! ```text
//! table inet ajar {
//!   set grants4   { type ipv4_addr . inet_proto . inet_service; flags interval,timeout; }
//!   set grants6   { type ipv6_addr . inet_proto . inet_service; flags interval,timeout; }
//!   set protected { type inet_proto . inet_service; }
//!   chain input {
//!     type filter hook input priority filter - 10; policy accept;
//!     ct direction reply meta l4proto . th dport @protected drop
//!     ct state established,related accept
//!     iif "lo" accept
//!     ip saddr . meta l4proto . th dport @grants4 accept
//!     ip6 saddr . meta l4proto . th dport @grants6 accept
//!     meta l4proto . th dport @protected drop
//!   }
//!
//!   # Gateway mode only (public, served or mappings non-empty); the same again with 6 for IPv6:
//!   set public4   { type ipv4_addr; }
//!   set served4   { type ipv4_addr . inet_proto . inet_service; }
//!   map dnat4     { type ipv4_addr . inet_proto . inet_service : ipv4_addr;    flags interval,timeout; }
//!   map dnat4port { type ipv4_addr . inet_proto . inet_service : inet_service; flags interval,timeout; }
//!   chain prerouting {
//!     type nat hook prerouting priority dstnat; policy accept;
//!     ip daddr @public4 meta l4proto { tcp, udp }
//!       dnat ip to ip saddr . meta l4proto . th dport map @dnat4 : ip saddr . meta l4proto . th dport map @dnat4port
//!   }
//!   chain forward {
//!     type filter hook forward priority filter - 10; policy accept;
//!     ip saddr . meta l4proto . th sport @served4 ct direction original drop
//!     ip daddr . meta l4proto . th dport @served4 ct status dnat ct original ip daddr @public4 accept
//!     ip daddr . meta l4proto . th dport @served4 drop
//!   }
//! }
//! ```
//!
//! The first rule keeps a cut connection cut. After `conntrack -D` removed a flow (see [`crate::conntrack`]),
//! the next packet the local service sends creates a new entry in the *reverse* direction (the kernel picks
//! up TCP mid-stream), which would make the client's packets "established" again. A packet to a protected
//! port in the reply direction means a flow the machine itself started from that port; a JIT-protected
//! service never does that, so such packets are dropped.
//!
//! The policy is accept: the table only ever drops traffic to a protected port from a source without a live
//! grant, so ICMP/ICMPv6 (neighbour discovery) and every unprotected port are untouched.
//!
//! Priority `filter - 10` (-10): the chain runs before the usual `filter`-priority chains of iptables-nft,
//! ufw, docker and firewalld. Our `drop` is final whatever the order, but running first means a protected
//! port is closed before another table's rules (logging, counters, NAT helpers) see the packet, and it does
//! not depend on hook order among equal priorities. Our `accept` is not final across tables (a later table
//! may still drop) — nothing in ajar can change that.
//!
//! # Gateway mode
//!
//! A gateway forwards to private machines behind it. Each live mapping is an element of `dnat4` and of
//! `dnat4port` (same key, same timeout, same comment): a new connection from the mapping's sources to
//! `public:mapped_port` is translated to `target:port` in `prerouting`; the kernel's element timeout ends it,
//! as for grants. Established connections keep their translation (conntrack holds it) past the element's end.
//! Packets no element translates are left alone: they reach the gateway itself (and its `input` chain).
//!
//! `forward` closes the served ports (the machines' JIT-protected ports): they are forwarded to only in a
//! connection that one of OUR public addresses translated (`ct status dnat` and the connection's original
//! destination in `public4`), so neither routing to the machine directly through the gateway nor another
//! table's DNAT from any other address reaches them (ajar owns the translation of its public addresses to
//! served ports: another table translating those same addresses would not be told apart). Its first rule is the host chain's first rule seen from the other side: after
//! a cut, the machine's next packet from the served port would be tracked as a new flow the machine started
//! (without translation); the client could not answer it (its packets to the machine are dropped), but the
//! machine's data would still reach the client, so it is dropped too and a cut flow passes in neither
//! direction.
//!
//! There is no masquerade: the machine sees the client's real address (so its own host agent, if it has one,
//! enforces the same grant), and the machines must route their replies through the gateway (their default
//! route, or a route to the clients' networks, via the gateway); a reply that bypasses it is not translated
//! back and the client drops it. The gateway must forward (`net.ipv4.ip_forward`,
//! `net.ipv6.conf.all.forwarding`).
//!
//! Two maps rather than one `: ipv4_addr . inet_service` map because nft 1.0.6 crashes (SIGSEGV) on a JSON
//! `dnat` statement whose map yields an address and a port together; `dnat to <addr map> : <port map>` is
//! the same translation in a form every nft since 0.9 reads, text or JSON. Both lookups use one key and
//! both elements are added in one transaction with the same timeout; if either misses (one expired a moment
//! before the other), the rule does not translate at all, so nothing is ever forwarded to half a target.
//! `meta l4proto { tcp, udp }` is there because nft refuses a port translation without a transport match.
//!
//! Applying is ONE batch: `add table` (so the next command cannot fail on a missing table), `delete table`,
//! then the full table re-created. nft runs a batch as one kernel transaction, so no partial state is ever
//! visible, and a rejected batch leaves the previous table as it was.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{CT, CTDir, Elem, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem};
use nftables::schema::{Chain, Element, Map, NfListObject, Nftables, Rule, Set, SetFlag, SetType, SetTypeValue, Table};
use nftables::stmt::{Match, NAT, NATFamily, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::desired::{DesiredState, L4};
use crate::normalize::{ElementKey, GrantElement, MappingElement, normalize, normalize_mappings};

/// The only table ajar ever names: `inet ajar`.
pub const TABLE: &str = "ajar";
pub const FAMILY: NfFamily = NfFamily::INet;
pub const CHAIN: &str = "input";
pub const SET_GRANTS4: &str = "grants4";
pub const SET_GRANTS6: &str = "grants6";
pub const SET_PROTECTED: &str = "protected";
/// `filter - 10`; see the module documentation.
pub const CHAIN_PRIORITY: i32 = -10;
pub const CHAIN_PREROUTING: &str = "prerouting";
pub const CHAIN_FORWARD: &str = "forward";
/// `dstnat`.
pub const PREROUTING_PRIORITY: i32 = -100;
/// `filter - 10`, as the input chain.
pub const FORWARD_PRIORITY: i32 = -10;
pub const SET_PUBLIC4: &str = "public4";
pub const SET_PUBLIC6: &str = "public6";
pub const SET_SERVED4: &str = "served4";
pub const SET_SERVED6: &str = "served6";
/// Mapping key → the target's address.
pub const MAP_DNAT4: &str = "dnat4";
pub const MAP_DNAT6: &str = "dnat6";
/// Mapping key → the target's port.
pub const MAP_DNAT4_PORT: &str = "dnat4port";
pub const MAP_DNAT6_PORT: &str = "dnat6port";

/// The gateway's objects of one address family, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayFamily {
    pub v4: bool,
    pub public: &'static str,
    pub served: &'static str,
    pub dnat: &'static str,
    pub dnat_port: &'static str,
}

/// IPv4's objects, then IPv6's.
pub const GATEWAY_FAMILIES: [GatewayFamily; 2] = [
    GatewayFamily { v4: true, public: SET_PUBLIC4, served: SET_SERVED4, dnat: MAP_DNAT4, dnat_port: MAP_DNAT4_PORT },
    GatewayFamily { v4: false, public: SET_PUBLIC6, served: SET_SERVED6, dnat: MAP_DNAT6, dnat_port: MAP_DNAT6_PORT },
];

impl GatewayFamily {
    fn ip(self) -> &'static str {
        if self.v4 { "ip" } else { "ip6" }
    }

    fn addr_type(self) -> SetType {
        if self.v4 { SetType::Ipv4Addr } else { SetType::Ipv6Addr }
    }
}

/// The batch that makes `inet ajar` exactly `desired`, atomically. Without gateway objects (see
/// [`DesiredState::is_gateway`]) it is the host table alone.
pub fn build(desired: &DesiredState) -> Batch<'static> {
    let gateway = desired.is_gateway();
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.add(NfListObject::Table(table()));
    for set in sets() {
        batch.add(NfListObject::Set(Box::new(set)));
    }
    if gateway {
        for set in gateway_sets() {
            batch.add(NfListObject::Set(Box::new(set)));
        }
        for map in gateway_maps() {
            batch.add(NfListObject::Map(Box::new(map)));
        }
    }
    batch.add(NfListObject::Chain(chain()));
    for expr in rule_statements() {
        batch.add(NfListObject::Rule(rule(CHAIN, expr)));
    }
    if gateway {
        for chain in gateway_chains() {
            batch.add(NfListObject::Chain(chain));
        }
        for (chain, exprs) in [(CHAIN_PREROUTING, prerouting_statements()), (CHAIN_FORWARD, forward_statements())] {
            for expr in exprs {
                batch.add(NfListObject::Rule(rule(chain, expr)));
            }
        }
    }

    let elements = normalize(&desired.grants);
    let (v4, v6): (Vec<&GrantElement>, Vec<&GrantElement>) = elements.iter().partition(|e| e.key.net.addr().is_ipv4());
    for (name, elems) in [(SET_GRANTS4, v4), (SET_GRANTS6, v6)] {
        if !elems.is_empty() {
            batch.add(NfListObject::Element(element(name, elems.into_iter().map(grant_elem).collect())));
        }
    }
    let protected = protected_keys(desired);
    if !protected.is_empty() {
        let elems =
            protected.into_iter().map(|(l4, port)| concat(vec![Expression::String(l4.nft_name().into()), port_expr(port)])).collect();
        batch.add(NfListObject::Element(element(SET_PROTECTED, elems)));
    }
    if gateway {
        let public = public_keys(desired);
        let served = served_keys(desired);
        let mappings = normalize_mappings(&desired.mappings);
        for fam in GATEWAY_FAMILIES {
            let addrs: Vec<Expression<'static>> =
                public.iter().filter(|a| a.is_ipv4() == fam.v4).map(|a| Expression::String(a.to_string().into())).collect();
            if !addrs.is_empty() {
                batch.add(NfListObject::Element(element(fam.public, addrs)));
            }
            let ports: Vec<Expression<'static>> =
                served.iter().filter(|(a, _, _)| a.is_ipv4() == fam.v4).map(|&(addr, l4, port)| served_elem(addr, l4, port)).collect();
            if !ports.is_empty() {
                batch.add(NfListObject::Element(element(fam.served, ports)));
            }
            let mine: Vec<&MappingElement> = mappings.iter().filter(|e| e.key.net.addr().is_ipv4() == fam.v4).collect();
            if !mine.is_empty() {
                batch.add(NfListObject::Element(element(fam.dnat, mine.iter().map(|e| mapping_addr_elem(e)).collect())));
                batch.add(NfListObject::Element(element(fam.dnat_port, mine.iter().map(|e| mapping_port_elem(e)).collect())));
            }
        }
    }
    batch
}

/// The batch that deletes `inet ajar` if it exists (and is a no-op otherwise).
pub fn build_remove() -> Batch<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch
}

/// The JSON document nft reads (`nft -j -f -`).
pub fn to_json(batch: Batch<'_>) -> String {
    let doc: Nftables<'_> = batch.to_nftables();
    // Serializing these plain structs cannot fail; fall back to an empty document that nft rejects.
    serde_json::to_string(&doc).unwrap_or_default()
}

/// The (protocol, port) pairs of the `protected` set, deduplicated and sorted.
pub fn protected_keys(desired: &DesiredState) -> BTreeSet<(L4, u16)> {
    desired.protected.iter().flat_map(|p| p.proto.l4s().iter().map(move |&l4| (l4, p.port))).collect()
}

/// The gateway's public addresses, deduplicated and sorted.
pub fn public_keys(desired: &DesiredState) -> BTreeSet<IpAddr> {
    desired.public.iter().copied().collect()
}

/// The (address, protocol, port) triples of `served4` and `served6`, deduplicated and sorted.
pub fn served_keys(desired: &DesiredState) -> BTreeSet<(IpAddr, L4, u16)> {
    desired.served.iter().flat_map(|s| s.proto.l4s().iter().map(move |&l4| (s.address, l4, s.port))).collect()
}

/// The chain's statements, rule by rule, in order.
pub fn rule_statements() -> Vec<Vec<Statement<'static>>> {
    let accept = || Statement::Accept(None);
    let protected = || lookup(vec![meta(MetaKey::L4proto), payload("th", "dport")], SET_PROTECTED);
    vec![
        vec![
            Statement::Match(Match { left: ct("direction"), right: Expression::String("reply".into()), op: Operator::EQ }),
            protected(),
            Statement::Drop(None),
        ],
        vec![
            Statement::Match(Match {
                left: ct("state"),
                right: Expression::List(vec![Expression::String("established".into()), Expression::String("related".into())]),
                op: Operator::IN,
            }),
            accept(),
        ],
        vec![Statement::Match(Match { left: meta(MetaKey::Iif), right: Expression::String("lo".into()), op: Operator::EQ }), accept()],
        vec![lookup(vec![payload("ip", "saddr"), meta(MetaKey::L4proto), payload("th", "dport")], SET_GRANTS4), accept()],
        vec![lookup(vec![payload("ip6", "saddr"), meta(MetaKey::L4proto), payload("th", "dport")], SET_GRANTS6), accept()],
        vec![protected(), Statement::Drop(None)],
    ]
}

/// The `prerouting` chain's statements (gateway mode), rule by rule, in order.
pub fn prerouting_statements() -> Vec<Vec<Statement<'static>>> {
    GATEWAY_FAMILIES
        .iter()
        .map(|fam| {
            let key = || concat(vec![payload(fam.ip(), "saddr"), meta(MetaKey::L4proto), payload("th", "dport")]);
            let map = |name: &str| {
                Expression::Named(NamedExpression::Map(Box::new(nftables::expr::Map {
                    key: key(),
                    data: Expression::String(format!("@{name}").into()),
                })))
            };
            vec![
                in_set(payload(fam.ip(), "daddr"), fam.public),
                Statement::Match(Match {
                    left: meta(MetaKey::L4proto),
                    right: Expression::Named(NamedExpression::Set(vec![
                        SetItem::Element(Expression::String("tcp".into())),
                        SetItem::Element(Expression::String("udp".into())),
                    ])),
                    op: Operator::EQ,
                }),
                Statement::DNAT(Some(NAT {
                    addr: Some(map(fam.dnat)),
                    family: Some(if fam.v4 { NATFamily::IP } else { NATFamily::IP6 }),
                    port: Some(map(fam.dnat_port)),
                    flags: None,
                })),
            ]
        })
        .collect()
}

/// The `forward` chain's statements (gateway mode), rule by rule, in order.
pub fn forward_statements() -> Vec<Vec<Statement<'static>>> {
    let mut rules = Vec::new();
    for fam in GATEWAY_FAMILIES {
        let served_from = || lookup(vec![payload(fam.ip(), "saddr"), meta(MetaKey::L4proto), payload("th", "sport")], fam.served);
        let served_to = || lookup(vec![payload(fam.ip(), "daddr"), meta(MetaKey::L4proto), payload("th", "dport")], fam.served);
        let original_daddr = Expression::Named(NamedExpression::CT(CT {
            key: format!("{} daddr", fam.ip()).into(),
            family: None,
            dir: Some(CTDir::Original),
        }));
        // A flow the machine starts from a served port: a cut flow picked up again from its side.
        rules.push(vec![
            served_from(),
            Statement::Match(Match { left: ct("direction"), right: Expression::String("original".into()), op: Operator::EQ }),
            Statement::Drop(None),
        ]);
        // Translated from one of our public addresses. nft lists a flag test as `in`; written the same, so
        // that drift detection compares equal.
        rules.push(vec![
            served_to(),
            Statement::Match(Match { left: ct("status"), right: Expression::String("dnat".into()), op: Operator::IN }),
            in_set(original_daddr, fam.public),
            Statement::Accept(None),
        ]);
        rules.push(vec![served_to(), Statement::Drop(None)]);
    }
    rules
}

/// The gateway's sets (`public4`, `served4`, then IPv6's), as created.
pub fn gateway_sets() -> Vec<Set<'static>> {
    GATEWAY_FAMILIES
        .iter()
        .flat_map(|fam| {
            [
                Set {
                    family: FAMILY,
                    table: TABLE.into(),
                    name: fam.public.into(),
                    set_type: SetTypeValue::Single(fam.addr_type()),
                    ..Set::default()
                },
                Set {
                    family: FAMILY,
                    table: TABLE.into(),
                    name: fam.served.into(),
                    set_type: SetTypeValue::Concatenated(Cow::Owned(vec![fam.addr_type(), SetType::InetProto, SetType::InetService])),
                    ..Set::default()
                },
            ]
        })
        .collect()
}

/// The gateway's maps (`dnat4`, `dnat4port`, then IPv6's), as created.
pub fn gateway_maps() -> Vec<Map<'static>> {
    GATEWAY_FAMILIES
        .iter()
        .flat_map(|fam| {
            let map = |name: &'static str, value: SetType| Map {
                family: FAMILY,
                table: TABLE.into(),
                name: name.into(),
                set_type: SetTypeValue::Concatenated(Cow::Owned(vec![fam.addr_type(), SetType::InetProto, SetType::InetService])),
                map: SetTypeValue::Single(value),
                flags: Some(HashSet::from([SetFlag::Interval, SetFlag::Timeout])),
                ..Map::default()
            };
            [map(fam.dnat, fam.addr_type()), map(fam.dnat_port, SetType::InetService)]
        })
        .collect()
}

/// The gateway's base chains, `prerouting` and `forward`, as created.
pub fn gateway_chains() -> Vec<Chain<'static>> {
    vec![
        Chain {
            family: FAMILY,
            table: TABLE.into(),
            name: CHAIN_PREROUTING.into(),
            _type: Some(NfChainType::NAT),
            hook: Some(NfHook::Prerouting),
            prio: Some(PREROUTING_PRIORITY),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        },
        Chain {
            family: FAMILY,
            table: TABLE.into(),
            name: CHAIN_FORWARD.into(),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Forward),
            prio: Some(FORWARD_PRIORITY),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        },
    ]
}

/// The sets' names with their key types and flags, as created.
pub fn sets() -> Vec<Set<'static>> {
    let grants = |name: &'static str, addr: SetType| Set {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        set_type: SetTypeValue::Concatenated(Cow::Owned(vec![addr, SetType::InetProto, SetType::InetService])),
        flags: Some(HashSet::from([SetFlag::Interval, SetFlag::Timeout])),
        ..Set::default()
    };
    vec![
        grants(SET_GRANTS4, SetType::Ipv4Addr),
        grants(SET_GRANTS6, SetType::Ipv6Addr),
        Set {
            family: FAMILY,
            table: TABLE.into(),
            name: SET_PROTECTED.into(),
            set_type: SetTypeValue::Concatenated(Cow::Owned(vec![SetType::InetProto, SetType::InetService])),
            ..Set::default()
        },
    ]
}

/// The base chain, as created.
pub fn chain() -> Chain<'static> {
    Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: CHAIN.into(),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Input),
        prio: Some(CHAIN_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn rule(chain: &'static str, expr: Vec<Statement<'static>>) -> Rule<'static> {
    Rule { family: FAMILY, table: TABLE.into(), chain: chain.into(), expr: expr.into(), ..Rule::default() }
}

fn table() -> Table<'static> {
    Table { family: FAMILY, name: TABLE.into(), handle: None }
}

pub(crate) fn element(set: &'static str, elem: Vec<Expression<'static>>) -> Element<'static> {
    Element { family: FAMILY, table: TABLE.into(), name: set.into(), elem: elem.into() }
}

pub(crate) fn grant_elem(e: &GrantElement) -> Expression<'static> {
    keyed(&e.key, e.timeout_secs, &e.comment)
}

fn served_elem(addr: IpAddr, l4: L4, port: u16) -> Expression<'static> {
    concat(vec![Expression::String(addr.to_string().into()), Expression::String(l4.nft_name().into()), port_expr(port)])
}

fn keyed(key: &ElementKey, timeout_secs: u32, comment: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Elem(Elem {
        val: Box::new(element_key(key)),
        timeout: Some(timeout_secs),
        expires: None,
        comment: Some(comment.to_owned().into()),
        counter: None,
    }))
}

/// A `dnat4`/`dnat6` element: key (with timeout and comment) : the target's address.
pub(crate) fn mapping_addr_elem(e: &MappingElement) -> Expression<'static> {
    Expression::List(vec![keyed(&e.key, e.timeout_secs, &e.comment), Expression::String(e.target.to_string().into())])
}

/// A `dnat4port`/`dnat6port` element: key (with timeout and comment) : the target's port.
pub(crate) fn mapping_port_elem(e: &MappingElement) -> Expression<'static> {
    Expression::List(vec![keyed(&e.key, e.timeout_secs, &e.comment), port_expr(e.target_port)])
}

/// A grant element's key alone (`source . proto . port`), as `delete element` names it.
pub(crate) fn element_key(key: &ElementKey) -> Expression<'static> {
    concat(vec![addr_expr(&key.net), Expression::String(key.l4.nft_name().into()), port_expr(key.port)])
}

fn addr_expr(net: &IpNet) -> Expression<'static> {
    if net.prefix_len() == net.max_prefix_len() {
        Expression::String(net.addr().to_string().into())
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(net.network().to_string().into())),
            len: u32::from(net.prefix_len()),
        }))
    }
}

fn port_expr(port: u16) -> Expression<'static> {
    Expression::Number(u32::from(port))
}

fn concat(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(items))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT { key: key.into(), family: None, dir: None }))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField { protocol: protocol.into(), field: field.into() })))
}

fn lookup(keys: Vec<Expression<'static>>, set: &str) -> Statement<'static> {
    in_set(concat(keys), set)
}

fn in_set(left: Expression<'static>, set: &str) -> Statement<'static> {
    Statement::Match(Match { left, right: Expression::String(format!("@{set}").into()), op: Operator::EQ })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Grant, Mapping, Protected, Proto, ServedPort, Source};
    use serde_json::{Value, json};
    use std::time::Duration;

    fn doc(desired: &DesiredState) -> Value {
        serde_json::from_str(&to_json(build(desired))).unwrap()
    }

    #[test]
    fn batch_replaces_the_whole_table_and_names_only_inet_ajar() {
        let desired = DesiredState {
            protected: vec![Protected { proto: Proto::Both, port: 22 }, Protected { proto: Proto::Tcp, port: 22 }],
            grants: vec![
                Grant {
                    id: "r1".into(),
                    source: Source::Net("10.0.0.0/24".parse().unwrap()),
                    proto: Proto::Tcp,
                    port: 22,
                    timeout: Duration::from_secs(60),
                },
                Grant {
                    id: "r2".into(),
                    source: Source::Net("fd00::7/128".parse().unwrap()),
                    proto: Proto::Udp,
                    port: 22,
                    timeout: Duration::from_secs(90),
                },
            ],
            ..DesiredState::default()
        };
        let v = doc(&desired);
        let cmds = v["nftables"].as_array().unwrap();
        assert_eq!(cmds[0], json!({"add": {"table": {"family": "inet", "name": "ajar"}}}));
        assert_eq!(cmds[1], json!({"delete": {"table": {"family": "inet", "name": "ajar"}}}));
        assert_eq!(cmds[2], json!({"add": {"table": {"family": "inet", "name": "ajar"}}}));
        for cmd in cmds {
            let (_verb, obj) = cmd.as_object().unwrap().iter().next().unwrap();
            let (_kind, body) = obj.as_object().unwrap().iter().next().unwrap();
            assert_eq!(body["family"], "inet");
            let table = body.get("table").unwrap_or(&body["name"]);
            assert_eq!(table, "ajar", "{cmd}");
        }
        let chain = cmds.iter().find_map(|c| c["add"].get("chain")).unwrap();
        assert_eq!(chain["prio"], -10);
        assert_eq!(chain["policy"], "accept");
        assert_eq!(chain["hook"], "input");
        let rules: Vec<&Value> = cmds.iter().filter_map(|c| c["add"].get("rule")).collect();
        assert_eq!(rules.len(), 6);
        assert_eq!(rules[0]["expr"][0], json!({"match": {"op": "==", "left": {"ct": {"key": "direction"}}, "right": "reply"}}));
        assert_eq!(rules[0]["expr"][2], json!({"drop": null}));
        assert_eq!(rules[5]["expr"][1], json!({"drop": null}));
        let elements: Vec<&Value> = cmds.iter().filter_map(|c| c["add"].get("element")).collect();
        assert_eq!(elements.len(), 3);
        assert_eq!(elements[0]["elem"][0]["elem"]["val"], json!({"concat": [{"prefix": {"addr": "10.0.0.0", "len": 24}}, "tcp", 22]}));
        assert_eq!(elements[0]["elem"][0]["elem"]["timeout"], 60);
        assert_eq!(elements[0]["elem"][0]["elem"]["comment"], "r1");
        assert_eq!(elements[1]["name"], "grants6");
        assert_eq!(elements[1]["elem"][0]["elem"]["val"], json!({"concat": ["fd00::7", "udp", 22]}));
        assert_eq!(elements[2]["name"], "protected");
        assert_eq!(elements[2]["elem"], json!([{"concat": ["tcp", 22]}, {"concat": ["udp", 22]}]));
    }

    #[test]
    fn empty_state_has_no_element_commands() {
        let v = doc(&DesiredState::default());
        assert!(v["nftables"].as_array().unwrap().iter().all(|c| c["add"].get("element").is_none()));
    }

    /// Each command as "verb kind name" (a rule by its chain), e.g. "add set grants4".
    fn outline(v: &Value) -> Vec<String> {
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let (verb, obj) = c.as_object().unwrap().iter().next().unwrap();
                let (kind, body) = obj.as_object().unwrap().iter().next().unwrap();
                let name = if kind == "rule" { &body["chain"] } else { &body["name"] };
                format!("{verb} {kind} {}", name.as_str().unwrap())
            })
            .collect()
    }

    fn added<'a>(v: &'a Value, kind: &str, name: &str) -> Vec<&'a Value> {
        let commands = v["nftables"].as_array().unwrap().iter();
        commands.filter_map(|c| c["add"].get(kind)).filter(|b| b["name"] == name || (kind == "rule" && b["chain"] == name)).collect()
    }

    fn repeat(line: &str, n: usize) -> Vec<String> {
        vec![line.to_owned(); n]
    }

    #[test]
    fn host_mode_has_no_gateway_objects() {
        let desired = DesiredState {
            protected: vec![Protected { proto: Proto::Tcp, port: 22 }],
            grants: vec![Grant { id: "r1".into(), source: Source::Any, proto: Proto::Tcp, port: 22, timeout: Duration::from_secs(60) }],
            ..DesiredState::default()
        };
        assert!(!desired.is_gateway());
        let mut want: Vec<String> =
            ["add table ajar", "delete table ajar", "add table ajar", "add set grants4", "add set grants6"].map(String::from).to_vec();
        want.extend(["add set protected".into(), "add chain input".into()]);
        want.extend(repeat("add rule input", 6));
        want.extend(["add element grants4".into(), "add element grants6".into(), "add element protected".into()]);
        assert_eq!(outline(&doc(&desired)), want);
    }

    fn gateway_state() -> DesiredState {
        DesiredState {
            public: vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            served: vec![
                ServedPort { address: "10.0.1.2".parse().unwrap(), proto: Proto::Both, port: 22 },
                ServedPort { address: "fd00:1::2".parse().unwrap(), proto: Proto::Tcp, port: 22 },
            ],
            mappings: vec![
                Mapping {
                    id: "r1".into(),
                    source: Source::Net("10.0.0.7/32".parse().unwrap()),
                    proto: Proto::Tcp,
                    mapped_port: 50022,
                    target: "10.0.1.2".parse().unwrap(),
                    port: 22,
                    timeout: Duration::from_secs(60),
                },
                Mapping {
                    id: "r2".into(),
                    source: Source::Any,
                    proto: Proto::Tcp,
                    mapped_port: 50023,
                    target: "fd00:1::2".parse().unwrap(),
                    port: 22,
                    timeout: Duration::from_secs(90),
                },
            ],
            ..DesiredState::default()
        }
    }

    #[test]
    fn gateway_mode_adds_its_sets_maps_chains_rules_and_elements() {
        let v = doc(&gateway_state());
        let mut want: Vec<String> = [
            "add table ajar",
            "delete table ajar",
            "add table ajar",
            "add set grants4",
            "add set grants6",
            "add set protected",
            "add set public4",
            "add set served4",
            "add set public6",
            "add set served6",
            "add map dnat4",
            "add map dnat4port",
            "add map dnat6",
            "add map dnat6port",
            "add chain input",
        ]
        .map(String::from)
        .to_vec();
        want.extend(repeat("add rule input", 6));
        want.extend(["add chain prerouting".into(), "add chain forward".into()]);
        want.extend(repeat("add rule prerouting", 2));
        want.extend(repeat("add rule forward", 6));
        for name in ["public4", "served4", "dnat4", "dnat4port", "public6", "served6", "dnat6", "dnat6port"] {
            want.push(format!("add element {name}"));
        }
        assert_eq!(outline(&v), want);

        let mut dnat4 = added(&v, "map", "dnat4")[0].clone();
        let mut flags: Vec<String> = serde_json::from_value(dnat4["flags"].take()).unwrap();
        flags.sort();
        assert_eq!(flags, ["interval", "timeout"]);
        assert_eq!(
            dnat4,
            json!({"family": "inet", "table": "ajar", "name": "dnat4", "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "ipv4_addr", "flags": null})
        );
        assert_eq!(added(&v, "map", "dnat6port")[0]["map"], "inet_service");
        assert_eq!(added(&v, "set", "public6")[0]["type"], "ipv6_addr");
        assert_eq!(added(&v, "set", "served4")[0]["type"], json!(["ipv4_addr", "inet_proto", "inet_service"]));
        assert_eq!(
            added(&v, "chain", "prerouting")[0],
            &json!({"family": "inet", "table": "ajar", "name": "prerouting", "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"})
        );
        assert_eq!(
            added(&v, "chain", "forward")[0],
            &json!({"family": "inet", "table": "ajar", "name": "forward", "type": "filter", "hook": "forward", "prio": -10, "policy": "accept"})
        );

        let key = |ip: &str| json!({"concat": [{"payload": {"protocol": ip, "field": "saddr"}}, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]});
        let prerouting = added(&v, "rule", "prerouting");
        assert_eq!(
            prerouting[0]["expr"],
            json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@public4"}},
                {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["tcp", "udp"]}}},
                {"dnat": {"family": "ip", "addr": {"map": {"key": key("ip"), "data": "@dnat4"}}, "port": {"map": {"key": key("ip"), "data": "@dnat4port"}}}}
            ])
        );
        assert_eq!(prerouting[1]["expr"][2]["dnat"]["port"]["map"], json!({"key": key("ip6"), "data": "@dnat6port"}));

        let served = |ip: &str, dir: &str, port: &str| json!({"match": {"op": "==", "left": {"concat": [{"payload": {"protocol": ip, "field": dir}}, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": port}}]}, "right": if ip == "ip" { "@served4" } else { "@served6" }}});
        let forward: Vec<&Value> = added(&v, "rule", "forward").iter().map(|r| &r["expr"]).collect();
        assert_eq!(
            forward[..3],
            [
                &json!([served("ip", "saddr", "sport"), {"match": {"op": "==", "left": {"ct": {"key": "direction"}}, "right": "original"}}, {"drop": null}]),
                &json!([
                    served("ip", "daddr", "dport"),
                    {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
                    {"match": {"op": "==", "left": {"ct": {"key": "ip daddr", "dir": "original"}}, "right": "@public4"}},
                    {"accept": null}
                ]),
                &json!([served("ip", "daddr", "dport"), {"drop": null}]),
            ]
        );
        assert_eq!(
            forward[4][2],
            json!({"match": {"op": "==", "left": {"ct": {"key": "ip6 daddr", "dir": "original"}}, "right": "@public6"}})
        );

        let elem = |name: &str| added(&v, "element", name)[0]["elem"].clone();
        assert_eq!(elem("public4"), json!(["10.0.0.1"]));
        assert_eq!(elem("public6"), json!(["fd00::1"]));
        assert_eq!(elem("served4"), json!([{"concat": ["10.0.1.2", "tcp", 22]}, {"concat": ["10.0.1.2", "udp", 22]}]));
        assert_eq!(elem("served6"), json!([{"concat": ["fd00:1::2", "tcp", 22]}]));
        let key4 = json!({"elem": {"val": {"concat": ["10.0.0.7", "tcp", 50022]}, "timeout": 60, "expires": null, "comment": "r1", "counter": null}});
        assert_eq!(elem("dnat4"), json!([[key4, "10.0.1.2"]]));
        assert_eq!(elem("dnat4port"), json!([[key4, 22]]));
        let key6 = json!({"elem": {"val": {"concat": [{"prefix": {"addr": "::", "len": 0}}, "tcp", 50023]}, "timeout": 90, "expires": null, "comment": "r2", "counter": null}});
        assert_eq!(elem("dnat6"), json!([[key6, "fd00:1::2"]]));
        assert_eq!(elem("dnat6port"), json!([[key6, 22]]));
    }

    #[test]
    fn served_ports_without_a_public_address_still_get_their_drop_rules() {
        let desired = DesiredState { served: gateway_state().served, ..DesiredState::default() };
        let v = doc(&desired);
        assert_eq!(added(&v, "rule", "forward").len(), 6);
        assert!(added(&v, "element", "public4").is_empty() && added(&v, "element", "dnat4").is_empty());
    }

    #[test]
    fn remove_is_add_then_delete() {
        let v: Value = serde_json::from_str(&to_json(build_remove())).unwrap();
        assert_eq!(
            v,
            json!({"nftables": [{"add": {"table": {"family": "inet", "name": "ajar"}}}, {"delete": {"table": {"family": "inet", "name": "ajar"}}}]})
        );
    }
}
