//! `inet ajar` as read back from the kernel, and drift detection. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use crate::desired::{DesiredState, L4};
use crate::error::EnforceError;
use crate::normalize::{ElementKey, normalize};
use crate::ruleset::{self, CHAIN, SET_GRANTS4, SET_GRANTS6, SET_PROTECTED};

/// A desired element with fewer seconds left than this may already have expired in the kernel: its absence
/// is not drift. Likewise a kernel element about to expire that is no longer desired.
pub const EXPIRY_GRACE_SECS: u64 = 2;

/// How far an element's remaining `expires` may be from the desired timeout (clock skew between computing
/// the desired state and listing, and nft's whole-second rounding).
pub const EXPIRES_TOLERANCE_SECS: u64 = 3;

/// What `nft -j list table inet ajar` showed: enough to detect drift.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedTable {
    pub chains: Vec<ObservedChain>,
    pub rules: Vec<ObservedRule>,
    pub sets: Vec<ObservedSet>,
    /// Kinds of other objects found in the table (maps, counters, …); any is drift.
    pub other_objects: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedChain {
    pub name: String,
    pub chain_type: Option<String>,
    pub hook: Option<String>,
    pub prio: Option<i64>,
    pub policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRule {
    pub chain: String,
    /// The rule's statements, as nft's JSON.
    pub expr: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedSet {
    pub name: String,
    pub set_type: Value,
    pub flags: BTreeSet<String>,
    pub elements: Vec<ObservedElement>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedElement {
    /// The element's key as nft's JSON (e.g. `{"concat": [{"prefix": …}, "tcp", 22]}`).
    pub val: Value,
    pub timeout: Option<u64>,
    pub expires: Option<u64>,
    pub comment: Option<String>,
}

impl ObservedElement {
    /// The key of a `grants4`/`grants6` element, if it has the shape ajar writes.
    pub fn grant_key(&self) -> Option<ElementKey> {
        let [addr, proto, port] = self.val.get("concat")?.as_array()?.as_slice() else {
            return None;
        };
        let net = match addr {
            Value::String(s) => IpNet::from(s.parse::<IpAddr>().ok()?),
            Value::Object(o) => {
                let p = o.get("prefix")?;
                let a: IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
                IpNet::new(a, u8::try_from(p.get("len")?.as_u64()?).ok()?).ok()?
            }
            _ => return None,
        };
        Some(ElementKey { l4: L4::from_nft_name(proto.as_str()?)?, port: u16::try_from(port.as_u64()?).ok()?, net })
    }

    /// The key of a `protected` element, if it has the shape ajar writes.
    pub fn protected_key(&self) -> Option<(L4, u16)> {
        let [proto, port] = self.val.get("concat")?.as_array()?.as_slice() else {
            return None;
        };
        Some((L4::from_nft_name(proto.as_str()?)?, u16::try_from(port.as_u64()?).ok()?))
    }
}

impl ObservedTable {
    /// Parses the output of `nft -j list table inet ajar`.
    pub fn parse(json: &str) -> Result<ObservedTable, EnforceError> {
        let bad = |detail: String| EnforceError::Output { action: "reading table inet ajar".into(), detail };
        let doc: Value = serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let objects = doc.get("nftables").and_then(Value::as_array).ok_or_else(|| bad("no \"nftables\" array".into()))?;
        let mut table = ObservedTable::default();
        for object in objects {
            let Some((kind, body)) = object.as_object().and_then(|o| o.iter().next()) else {
                return Err(bad(format!("not an object: {object}")));
            };
            match kind.as_str() {
                "metainfo" | "table" => {}
                "chain" => table.chains.push(ObservedChain {
                    name: str_field(body, "name").unwrap_or_default(),
                    chain_type: str_field(body, "type"),
                    hook: str_field(body, "hook"),
                    prio: body.get("prio").and_then(Value::as_i64),
                    policy: str_field(body, "policy"),
                }),
                "rule" => table.rules.push(ObservedRule {
                    chain: str_field(body, "chain").unwrap_or_default(),
                    expr: body.get("expr").cloned().unwrap_or(Value::Null),
                }),
                "set" => table.sets.push(ObservedSet {
                    name: str_field(body, "name").unwrap_or_default(),
                    set_type: body.get("type").cloned().unwrap_or(Value::Null),
                    flags: match body.get("flags") {
                        Some(Value::Array(a)) => a.iter().filter_map(|f| f.as_str().map(String::from)).collect(),
                        Some(Value::String(s)) => BTreeSet::from([s.clone()]),
                        _ => BTreeSet::new(),
                    },
                    elements: body.get("elem").and_then(Value::as_array).map(|a| a.iter().map(parse_element).collect()).unwrap_or_default(),
                }),
                other => table.other_objects.push(other.to_string()),
            }
        }
        Ok(table)
    }
}

fn str_field(body: &Value, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).map(String::from)
}

fn parse_element(v: &Value) -> ObservedElement {
    match v.get("elem") {
        Some(e) => ObservedElement {
            val: e.get("val").cloned().unwrap_or(Value::Null),
            timeout: e.get("timeout").and_then(Value::as_u64),
            expires: e.get("expires").and_then(Value::as_u64),
            comment: str_field(e, "comment"),
        },
        None => ObservedElement { val: v.clone(), timeout: None, expires: None, comment: None },
    }
}

/// True if the kernel's `inet ajar` differs from what applying `desired` makes: table, chain, rules, sets,
/// the protected set, or grant elements (missing, unexpected, another comment, or an `expires` off by more
/// than [`EXPIRES_TOLERANCE_SECS`]). `desired` must carry timeouts computed about when `observed` was read.
pub fn drifted(observed: &ObservedTable, desired: &DesiredState) -> bool {
    !drift_reasons(observed, desired).is_empty()
}

/// The differences [`drifted`] looks for, in words (empty: no drift).
pub fn drift_reasons(observed: &ObservedTable, desired: &DesiredState) -> Vec<String> {
    let mut reasons = Vec::new();
    if !observed.other_objects.is_empty() {
        reasons.push(format!("unexpected objects in table: {:?}", observed.other_objects));
    }

    let want_chain = ruleset::chain();
    let want_chain = ObservedChain {
        name: CHAIN.into(),
        chain_type: Some("filter".into()),
        hook: Some("input".into()),
        prio: want_chain.prio.map(i64::from),
        policy: Some("accept".into()),
    };
    if observed.chains != [want_chain.clone()] {
        reasons.push(format!("chains are {:?}, want only {want_chain:?}", observed.chains));
    }

    let want_rules: Vec<Value> = ruleset::rule_statements().iter().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).collect();
    let got_rules: Vec<&Value> = observed.rules.iter().filter(|r| r.chain == CHAIN).map(|r| &r.expr).collect();
    if observed.rules.len() != got_rules.len()
        || got_rules.len() != want_rules.len()
        || got_rules.iter().zip(&want_rules).any(|(g, w)| *g != w)
    {
        reasons.push(format!("rules differ: {} rule(s) in the table, want {}", observed.rules.len(), want_rules.len()));
    }

    let want_sets = ruleset::sets();
    let names: BTreeSet<&str> = observed.sets.iter().map(|s| s.name.as_str()).collect();
    let want_names: BTreeSet<&str> = want_sets.iter().map(|s| s.name.as_ref()).collect();
    if names != want_names || observed.sets.len() != want_sets.len() {
        reasons.push(format!("sets are {names:?}, want {want_names:?}"));
    }
    for want in &want_sets {
        let Some(got) = observed.sets.iter().find(|s| s.name == want.name) else { continue };
        let want_type = serde_json::to_value(&want.set_type).unwrap_or(Value::Null);
        let want_flags: BTreeSet<String> =
            want.flags.iter().flatten().filter_map(|f| serde_json::to_value(f).ok()?.as_str().map(String::from)).collect();
        if got.set_type != want_type || got.flags != want_flags {
            reasons.push(format!("set {} has type {} flags {:?}, want {want_type} {want_flags:?}", got.name, got.set_type, got.flags));
        }
    }

    let set = |name: &str| observed.sets.iter().find(|s| s.name == name);
    if let Some(protected) = set(SET_PROTECTED) {
        let got: Option<BTreeSet<(L4, u16)>> = protected.elements.iter().map(ObservedElement::protected_key).collect();
        let want = ruleset::protected_keys(desired);
        if got.as_ref() != Some(&want) {
            reasons.push(format!("protected set is {got:?}, want {want:?}"));
        }
    }

    let mut got: BTreeMap<ElementKey, &ObservedElement> = BTreeMap::new();
    for (name, v4) in [(SET_GRANTS4, true), (SET_GRANTS6, false)] {
        for e in set(name).map(|s| s.elements.as_slice()).unwrap_or_default() {
            match e.grant_key() {
                Some(key) if key.net.addr().is_ipv4() == v4 => {
                    got.insert(key, e);
                }
                _ => reasons.push(format!("set {name} holds an element ajar does not write: {}", e.val)),
            }
        }
    }
    let want = normalize(&desired.grants);
    let want_keys: BTreeSet<ElementKey> = want.iter().map(|e| e.key).collect();
    for w in &want {
        let secs = u64::from(w.timeout_secs);
        match got.get(&w.key) {
            None if secs > EXPIRY_GRACE_SECS => reasons.push(format!("element {:?} is missing", w.key)),
            None => {}
            Some(e) => {
                if let Some(expires) = e.expires.or(e.timeout)
                    && expires.abs_diff(secs) > EXPIRES_TOLERANCE_SECS
                {
                    reasons.push(format!("element {:?} expires in {expires} s, want {secs} s", w.key));
                }
                if e.comment.as_deref() != Some(w.comment.as_str()) {
                    reasons.push(format!("element {:?} has comment {:?}, want {:?}", w.key, e.comment, w.comment));
                }
            }
        }
    }
    for (key, e) in &got {
        let about_to_expire = e.expires.is_some_and(|x| x <= EXPIRY_GRACE_SECS);
        if !want_keys.contains(key) && !about_to_expire {
            reasons.push(format!("element {key:?} is not desired"));
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Grant, Protected, Proto, Source};
    use crate::ruleset::{build, to_json};
    use std::time::Duration;

    /// Turns the batch we send into what `nft -j list` would show (same shapes, plus `expires`), so the
    /// pure drift logic can be tested without a kernel.
    fn listed(desired: &DesiredState) -> ObservedTable {
        let v: Value = serde_json::from_str(&to_json(build(desired))).unwrap();
        let mut objects = vec![];
        let mut sets: BTreeMap<String, Value> = BTreeMap::new();
        for cmd in v["nftables"].as_array().unwrap().iter().skip(3) {
            let (kind, body) = cmd["add"].as_object().unwrap().iter().next().unwrap();
            match kind.as_str() {
                "set" => {
                    sets.insert(body["name"].as_str().unwrap().into(), body.clone());
                }
                "element" => {
                    let s = sets.get_mut(body["name"].as_str().unwrap()).unwrap();
                    let mut elems = body["elem"].as_array().unwrap().clone();
                    for e in &mut elems {
                        if let Some(inner) = e.get_mut("elem") {
                            inner["expires"] = inner["timeout"].clone();
                        }
                    }
                    s["elem"] = Value::Array(elems);
                }
                _ => objects.push(serde_json::json!({ kind.clone(): body })),
            }
        }
        for s in sets.into_values() {
            objects.push(serde_json::json!({ "set": s }));
        }
        ObservedTable::parse(&serde_json::json!({ "nftables": objects }).to_string()).unwrap()
    }

    fn desired() -> DesiredState {
        DesiredState {
            protected: vec![Protected { proto: Proto::Both, port: 22 }],
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
                    source: Source::Net("10.0.0.7/32".parse().unwrap()),
                    proto: Proto::Tcp,
                    port: 22,
                    timeout: Duration::from_secs(600),
                },
            ],
        }
    }

    #[test]
    fn identical_is_not_drift() {
        let d = desired();
        assert_eq!(drift_reasons(&listed(&d), &d), Vec::<String>::new());
    }

    #[test]
    fn missing_element_rule_or_protected_port_is_drift() {
        let d = desired();
        let mut t = listed(&d);
        t.sets.iter_mut().find(|s| s.name == SET_GRANTS4).unwrap().elements.pop();
        assert!(drifted(&t, &d));

        let mut t = listed(&d);
        t.rules.pop();
        assert!(drifted(&t, &d));

        let mut t = listed(&d);
        t.chains[0].policy = Some("drop".into());
        assert!(drifted(&t, &d));

        let mut other = d.clone();
        other.protected.push(Protected { proto: Proto::Tcp, port: 3389 });
        assert!(drifted(&listed(&d), &other));
    }

    #[test]
    fn unexpected_or_extended_element_is_drift() {
        let d = desired();
        let mut fewer = d.clone();
        fewer.grants.pop();
        assert!(drifted(&listed(&d), &fewer), "an element no grant asks for");
        let mut longer = d.clone();
        longer.grants[1].timeout = Duration::from_secs(6000);
        assert!(drifted(&listed(&d), &longer));
    }

    #[test]
    fn small_expiry_differences_are_not_drift() {
        let d = desired();
        let mut t = listed(&d);
        for s in &mut t.sets {
            for e in &mut s.elements {
                e.expires = e.expires.map(|x| x - 2);
            }
        }
        assert!(!drifted(&t, &d));
        // A grant with 1 s left may already be gone from the kernel.
        let mut soon = d.clone();
        soon.grants.push(Grant {
            id: "r3".into(),
            source: Source::Net("10.9.0.1/32".parse().unwrap()),
            proto: Proto::Udp,
            port: 53,
            timeout: Duration::from_secs(1),
        });
        assert!(!drifted(&listed(&d), &soon));
    }

    #[test]
    fn empty_table_is_drift() {
        assert!(drifted(&ObservedTable::default(), &DesiredState::default()));
    }
}
