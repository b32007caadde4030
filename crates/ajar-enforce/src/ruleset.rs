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
//! Applying is ONE batch: `add table` (so the next command cannot fail on a missing table), `delete table`,
//! then the full table re-created. nft runs a batch as one kernel transaction, so no partial state is ever
//! visible, and a rejected batch leaves the previous table as it was.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{CT, Elem, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, Element, NfListObject, Nftables, Rule, Set, SetFlag, SetType, SetTypeValue, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::desired::{DesiredState, L4};
use crate::normalize::{ElementKey, GrantElement, normalize};

/// The only table ajar ever names: `inet ajar`.
pub const TABLE: &str = "ajar";
pub const FAMILY: NfFamily = NfFamily::INet;
pub const CHAIN: &str = "input";
pub const SET_GRANTS4: &str = "grants4";
pub const SET_GRANTS6: &str = "grants6";
pub const SET_PROTECTED: &str = "protected";
/// `filter - 10`; see the module documentation.
pub const CHAIN_PRIORITY: i32 = -10;

/// The batch that makes `inet ajar` exactly `desired`, atomically.
pub fn build(desired: &DesiredState) -> Batch<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.add(NfListObject::Table(table()));
    for set in sets() {
        batch.add(NfListObject::Set(Box::new(set)));
    }
    batch.add(NfListObject::Chain(chain()));
    for expr in rule_statements() {
        batch.add(NfListObject::Rule(Rule {
            family: FAMILY,
            table: TABLE.into(),
            chain: CHAIN.into(),
            expr: expr.into(),
            ..Rule::default()
        }));
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

fn table() -> Table<'static> {
    Table { family: FAMILY, name: TABLE.into(), handle: None }
}

pub(crate) fn element(set: &'static str, elem: Vec<Expression<'static>>) -> Element<'static> {
    Element { family: FAMILY, table: TABLE.into(), name: set.into(), elem: elem.into() }
}

pub(crate) fn grant_elem(e: &GrantElement) -> Expression<'static> {
    Expression::Named(NamedExpression::Elem(Elem {
        val: Box::new(element_key(&e.key)),
        timeout: Some(e.timeout_secs),
        expires: None,
        comment: Some(e.comment.clone().into()),
        counter: None,
    }))
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
    Statement::Match(Match { left: concat(keys), right: Expression::String(format!("@{set}").into()), op: Operator::EQ })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Grant, Protected, Proto, Source};
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

    #[test]
    fn remove_is_add_then_delete() {
        let v: Value = serde_json::from_str(&to_json(build_remove())).unwrap();
        assert_eq!(
            v,
            json!({"nftables": [{"add": {"table": {"family": "inet", "name": "ajar"}}}, {"delete": {"table": {"family": "inet", "name": "ajar"}}}]})
        );
    }
}
