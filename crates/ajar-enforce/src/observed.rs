//! `inet ajar` as read back from the kernel, and drift detection. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use nftables::schema::{Chain, SetFlag, SetTypeValue};
use nftables::stmt::Statement;
use serde_json::Value;

use crate::desired::{DesiredState, L4};
use crate::error::EnforceError;
use crate::normalize::{ElementKey, MappingElement, normalize, normalize_mappings};
use crate::ruleset::{self, CHAIN, CHAIN_FORWARD, CHAIN_PREROUTING, GATEWAY_FAMILIES, SET_GRANTS4, SET_GRANTS6, SET_PROTECTED};

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
    /// Sets and maps (a map has [`ObservedSet::map`]).
    pub sets: Vec<ObservedSet>,
    /// Kinds of other objects found in the table (counters, flowtables, …); any is drift.
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
    /// A map's value type, as nft's JSON (e.g. `"ipv4_addr"`); `None` for a set.
    pub map: Option<Value>,
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
    /// What a map element maps to, as nft's JSON (e.g. `"10.0.1.2"` or `22`); `None` in a set.
    pub data: Option<Value>,
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

    /// The address of a `public4`/`public6` element, if it has the shape ajar writes.
    pub fn address_key(&self) -> Option<IpAddr> {
        self.val.as_str()?.parse().ok()
    }

    /// The key of a `served4`/`served6` element, if it has the shape ajar writes.
    pub fn served_key(&self) -> Option<(IpAddr, L4, u16)> {
        let [addr, proto, port] = self.val.get("concat")?.as_array()?.as_slice() else {
            return None;
        };
        Some((addr.as_str()?.parse().ok()?, L4::from_nft_name(proto.as_str()?)?, u16::try_from(port.as_u64()?).ok()?))
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
                "set" | "map" => table.sets.push(ObservedSet {
                    name: str_field(body, "name").unwrap_or_default(),
                    set_type: body.get("type").cloned().unwrap_or(Value::Null),
                    map: if kind == "map" { Some(body.get("map").cloned().unwrap_or(Value::Null)) } else { None },
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

/// A set element (`{"elem": …}` or a bare key) or a map element (`[key, data]`).
fn parse_element(v: &Value) -> ObservedElement {
    if let Some([key, data]) = v.as_array().map(Vec::as_slice) {
        return ObservedElement { data: Some(data.clone()), ..parse_element(key) };
    }
    match v.get("elem") {
        Some(e) => ObservedElement {
            val: e.get("val").cloned().unwrap_or(Value::Null),
            timeout: e.get("timeout").and_then(Value::as_u64),
            expires: e.get("expires").and_then(Value::as_u64),
            comment: str_field(e, "comment"),
            data: None,
        },
        None => ObservedElement { val: v.clone(), timeout: None, expires: None, comment: None, data: None },
    }
}

/// True if the kernel's `inet ajar` differs from what applying `desired` makes: table, chains, rules, sets
/// and maps, the protected set, grant elements (missing, unexpected, another comment, or an `expires` off by
/// more than [`EXPIRES_TOLERANCE_SECS`]), and in gateway mode the public and served sets and the mapping
/// elements (the same checks, and the target). `desired` must carry timeouts computed about when `observed`
/// was read.
pub fn drifted(observed: &ObservedTable, desired: &DesiredState) -> bool {
    !drift_reasons(observed, desired).is_empty()
}

/// The differences [`drifted`] looks for, in words (empty: no drift).
pub fn drift_reasons(observed: &ObservedTable, desired: &DesiredState) -> Vec<String> {
    let gateway = desired.is_gateway();
    let mut reasons = Vec::new();
    if !observed.other_objects.is_empty() {
        reasons.push(format!("unexpected objects in table: {:?}", observed.other_objects));
    }

    let mut want_chains = vec![observed_chain(&ruleset::chain())];
    let mut want_rules: Vec<(&str, Vec<Vec<Statement<'static>>>)> = vec![(CHAIN, ruleset::rule_statements())];
    if gateway {
        want_chains.extend(ruleset::gateway_chains().iter().map(observed_chain));
        want_rules.push((CHAIN_PREROUTING, ruleset::prerouting_statements()));
        want_rules.push((CHAIN_FORWARD, ruleset::forward_statements()));
    }
    let mut got_chains = observed.chains.clone();
    got_chains.sort_by(|a, b| a.name.cmp(&b.name));
    want_chains.sort_by(|a, b| a.name.cmp(&b.name));
    if got_chains != want_chains {
        reasons.push(format!("chains are {got_chains:?}, want {want_chains:?}"));
    }

    for (chain, statements) in &want_rules {
        let want: Vec<Value> = statements.iter().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).collect();
        let got: Vec<&Value> = observed.rules.iter().filter(|r| r.chain == *chain).map(|r| &r.expr).collect();
        if got.len() != want.len() || got.iter().zip(&want).any(|(g, w)| *g != w) {
            reasons.push(format!("rules of chain {chain} differ: {} rule(s) in the table, want {}", got.len(), want.len()));
        }
    }
    let want_count: usize = want_rules.iter().map(|(_, r)| r.len()).sum();
    if observed.rules.len() != want_count {
        reasons.push(format!("rules differ: {} rule(s) in the table, want {want_count}", observed.rules.len()));
    }

    let want_sets = wanted_sets(gateway);
    let names: BTreeSet<&str> = observed.sets.iter().map(|s| s.name.as_str()).collect();
    let want_names: BTreeSet<&str> = want_sets.iter().map(|s| s.name.as_str()).collect();
    if names != want_names || observed.sets.len() != want_sets.len() {
        reasons.push(format!("sets are {names:?}, want {want_names:?}"));
    }
    for want in &want_sets {
        let Some(got) = observed.sets.iter().find(|s| s.name == want.name) else { continue };
        if got.set_type != want.set_type || got.flags != want.flags || got.map != want.map {
            reasons.push(format!(
                "set {} has type {} map {:?} flags {:?}, want {} {:?} {:?}",
                got.name, got.set_type, got.map, got.flags, want.set_type, want.map, want.flags
            ));
        }
    }

    let set = |name: &str| observed.sets.iter().find(|s| s.name == name);
    let elements = |name: &str| set(name).map(|s| s.elements.as_slice()).unwrap_or_default();
    if let Some(protected) = set(SET_PROTECTED) {
        let got: Option<BTreeSet<(L4, u16)>> = protected.elements.iter().map(ObservedElement::protected_key).collect();
        let want = ruleset::protected_keys(desired);
        if got.as_ref() != Some(&want) {
            reasons.push(format!("protected set is {got:?}, want {want:?}"));
        }
    }

    let grants = normalize(&desired.grants);
    for (name, v4) in [(SET_GRANTS4, true), (SET_GRANTS6, false)] {
        let want: Vec<WantElement> = grants
            .iter()
            .filter(|e| e.key.net.addr().is_ipv4() == v4)
            .map(|e| WantElement { key: e.key, secs: u64::from(e.timeout_secs), comment: &e.comment, data: None })
            .collect();
        check_elements(&mut reasons, name, v4, elements(name), &want);
    }

    if gateway {
        let public = ruleset::public_keys(desired);
        let served = ruleset::served_keys(desired);
        let mappings = normalize_mappings(&desired.mappings);
        for fam in GATEWAY_FAMILIES {
            if set(fam.public).is_some() {
                let got: Option<BTreeSet<IpAddr>> = elements(fam.public).iter().map(ObservedElement::address_key).collect();
                let want: BTreeSet<IpAddr> = public.iter().filter(|a| a.is_ipv4() == fam.v4).copied().collect();
                if got.as_ref() != Some(&want) {
                    reasons.push(format!("set {} is {got:?}, want {want:?}", fam.public));
                }
            }
            if set(fam.served).is_some() {
                let got: Option<BTreeSet<(IpAddr, L4, u16)>> = elements(fam.served).iter().map(ObservedElement::served_key).collect();
                let want: BTreeSet<(IpAddr, L4, u16)> = served.iter().filter(|(a, _, _)| a.is_ipv4() == fam.v4).copied().collect();
                if got.as_ref() != Some(&want) {
                    reasons.push(format!("set {} is {got:?}, want {want:?}", fam.served));
                }
            }
            let mine: Vec<&MappingElement> = mappings.iter().filter(|e| e.key.net.addr().is_ipv4() == fam.v4).collect();
            let target_addr: fn(&MappingElement) -> Value = |e| Value::String(e.target.to_string());
            let target_port: fn(&MappingElement) -> Value = |e| Value::from(e.target_port);
            for (name, data) in [(fam.dnat, target_addr), (fam.dnat_port, target_port)] {
                let want: Vec<WantElement<'_>> = mine
                    .iter()
                    .map(|e| WantElement { key: e.key, secs: u64::from(e.timeout_secs), comment: &e.comment, data: Some(data(e)) })
                    .collect();
                check_elements(&mut reasons, name, fam.v4, elements(name), &want);
            }
        }
    }
    reasons
}

/// A set or map as [`drift_reasons`] expects it.
struct WantSet {
    name: String,
    set_type: Value,
    map: Option<Value>,
    flags: BTreeSet<String>,
}

fn wanted_sets(gateway: bool) -> Vec<WantSet> {
    let flags = |f: &Option<std::collections::HashSet<SetFlag>>| -> BTreeSet<String> {
        f.iter().flatten().filter_map(|f| serde_json::to_value(f).ok()?.as_str().map(String::from)).collect()
    };
    // Serializing these plain types cannot fail; `Null` if it ever did (then it is drift).
    let json = |v: &SetTypeValue<'_>| serde_json::to_value(v).unwrap_or(Value::Null);
    let mut want: Vec<WantSet> = ruleset::sets()
        .iter()
        .map(|s| WantSet { name: s.name.to_string(), set_type: json(&s.set_type), map: None, flags: flags(&s.flags) })
        .collect();
    if gateway {
        want.extend(ruleset::gateway_sets().iter().map(|s| WantSet {
            name: s.name.to_string(),
            set_type: json(&s.set_type),
            map: None,
            flags: flags(&s.flags),
        }));
        want.extend(ruleset::gateway_maps().iter().map(|m| WantSet {
            name: m.name.to_string(),
            set_type: json(&m.set_type),
            map: Some(json(&m.map)),
            flags: flags(&m.flags),
        }));
    }
    want
}

fn observed_chain(chain: &Chain<'_>) -> ObservedChain {
    let name_of = |v: Option<Value>| v.and_then(|v| v.as_str().map(String::from));
    ObservedChain {
        name: chain.name.to_string(),
        chain_type: name_of(chain._type.and_then(|t| serde_json::to_value(t).ok())),
        hook: name_of(chain.hook.and_then(|h| serde_json::to_value(h).ok())),
        prio: chain.prio.map(i64::from),
        policy: name_of(chain.policy.and_then(|p| serde_json::to_value(p).ok())),
    }
}

/// An element as [`drift_reasons`] expects it: key, seconds left, comment, and for a map what it maps to.
struct WantElement<'a> {
    key: ElementKey,
    secs: u64,
    comment: &'a str,
    data: Option<Value>,
}

/// Compares the elements of set or map `name` (of IPv4 keys if `v4`) with `want`: missing (unless about to
/// expire), unexpected (unless about to expire), expiry, comment and mapped value.
fn check_elements(reasons: &mut Vec<String>, name: &str, v4: bool, observed: &[ObservedElement], want: &[WantElement<'_>]) {
    let mut got: BTreeMap<ElementKey, &ObservedElement> = BTreeMap::new();
    for e in observed {
        match e.grant_key() {
            Some(key) if key.net.addr().is_ipv4() == v4 => {
                got.insert(key, e);
            }
            _ => reasons.push(format!("set {name} holds an element ajar does not write: {}", e.val)),
        }
    }
    for w in want {
        match got.get(&w.key) {
            None if w.secs > EXPIRY_GRACE_SECS => reasons.push(format!("element {:?} of {name} is missing", w.key)),
            None => {}
            Some(e) => {
                if let Some(expires) = e.expires.or(e.timeout)
                    && expires.abs_diff(w.secs) > EXPIRES_TOLERANCE_SECS
                {
                    reasons.push(format!("element {:?} of {name} expires in {expires} s, want {} s", w.key, w.secs));
                }
                if e.comment.as_deref() != Some(w.comment) {
                    reasons.push(format!("element {:?} of {name} has comment {:?}, want {:?}", w.key, e.comment, w.comment));
                }
                if let Some(data) = &w.data
                    && !same_data(e.data.as_ref(), data)
                {
                    reasons.push(format!("element {:?} of {name} maps to {:?}, want {data}", w.key, e.data));
                }
            }
        }
    }
    let want_keys: BTreeSet<ElementKey> = want.iter().map(|w| w.key).collect();
    for (key, e) in &got {
        let about_to_expire = e.expires.is_some_and(|x| x <= EXPIRY_GRACE_SECS);
        if !want_keys.contains(key) && !about_to_expire {
            reasons.push(format!("element {key:?} of {name} is not desired"));
        }
    }
}

/// Mapped values compare as addresses when they are addresses (nft may spell one differently).
fn same_data(got: Option<&Value>, want: &Value) -> bool {
    let addr = |v: &Value| v.as_str().and_then(|s| s.parse::<IpAddr>().ok());
    match (got, addr(want)) {
        (Some(g), Some(w)) => addr(g) == Some(w),
        (Some(g), None) => g == want,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Grant, Mapping, Protected, Proto, ServedPort, Source};
    use crate::ruleset::{MAP_DNAT4, MAP_DNAT4_PORT, SET_PUBLIC4, SET_SERVED4, build, to_json};
    use std::time::Duration;

    /// Turns the batch we send into what `nft -j list` would show (same shapes, plus `expires`), so the
    /// pure drift logic can be tested without a kernel.
    fn listed(desired: &DesiredState) -> ObservedTable {
        let v: Value = serde_json::from_str(&to_json(build(desired))).unwrap();
        let mut objects = vec![];
        let mut sets: BTreeMap<String, (String, Value)> = BTreeMap::new();
        for cmd in v["nftables"].as_array().unwrap().iter().skip(3) {
            let (kind, body) = cmd["add"].as_object().unwrap().iter().next().unwrap();
            match kind.as_str() {
                "set" | "map" => {
                    sets.insert(body["name"].as_str().unwrap().into(), (kind.clone(), body.clone()));
                }
                "element" => {
                    let (_, s) = sets.get_mut(body["name"].as_str().unwrap()).unwrap();
                    let mut elems = body["elem"].as_array().unwrap().clone();
                    for e in &mut elems {
                        // A map element is [key, data]; the key carries the timeout.
                        let key = if e.is_array() { &mut e[0] } else { e };
                        if let Some(inner) = key.get_mut("elem") {
                            inner["expires"] = inner["timeout"].clone();
                        }
                    }
                    s["elem"] = Value::Array(elems);
                }
                _ => objects.push(serde_json::json!({ kind.clone(): body })),
            }
        }
        for (kind, s) in sets.into_values() {
            objects.push(serde_json::json!({ kind: s }));
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
            ..DesiredState::default()
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

    fn gateway() -> DesiredState {
        DesiredState {
            public: vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            served: vec![ServedPort { address: "10.0.1.2".parse().unwrap(), proto: Proto::Tcp, port: 22 }],
            mappings: vec![
                Mapping {
                    id: "m1".into(),
                    source: Source::Net("10.0.0.0/24".parse().unwrap()),
                    proto: Proto::Tcp,
                    mapped_port: 50022,
                    target: "10.0.1.2".parse().unwrap(),
                    port: 22,
                    timeout: Duration::from_secs(60),
                },
                Mapping {
                    id: "m2".into(),
                    source: Source::Any,
                    proto: Proto::Tcp,
                    mapped_port: 50022,
                    target: "fd00:1::2".parse().unwrap(),
                    port: 22,
                    timeout: Duration::from_secs(60),
                },
            ],
            ..desired()
        }
    }

    fn elements_of<'a>(t: &'a mut ObservedTable, name: &str) -> &'a mut Vec<ObservedElement> {
        &mut t.sets.iter_mut().find(|s| s.name == name).unwrap().elements
    }

    #[test]
    fn an_identical_gateway_is_not_drift() {
        let d = gateway();
        let t = listed(&d);
        assert_eq!(drift_reasons(&t, &d), Vec::<String>::new());
        let dnat4 = t.sets.iter().find(|s| s.name == MAP_DNAT4).unwrap();
        assert_eq!(dnat4.map, Some(Value::from("ipv4_addr")));
        assert_eq!(dnat4.elements[0].data, Some(Value::from("10.0.1.2")));
        assert_eq!(dnat4.elements[0].comment.as_deref(), Some("m1"));
    }

    #[test]
    fn a_missing_or_extra_mapping_element_is_drift() {
        let d = gateway();
        let mut t = listed(&d);
        elements_of(&mut t, MAP_DNAT4).clear();
        let reasons = drift_reasons(&t, &d);
        assert!(reasons.iter().any(|r| r.contains("of dnat4 is missing")), "{reasons:?}");

        let mut t = listed(&d);
        elements_of(&mut t, MAP_DNAT4_PORT).clear();
        assert!(drifted(&t, &d), "the port map is checked too");

        let mut fewer = d.clone();
        fewer.mappings.remove(0);
        let reasons = drift_reasons(&listed(&d), &fewer);
        assert!(reasons.iter().any(|r| r.contains("of dnat4 is not desired")), "{reasons:?}");
    }

    #[test]
    fn another_target_or_port_is_drift() {
        let d = gateway();
        let mut t = listed(&d);
        elements_of(&mut t, MAP_DNAT4)[0].data = Some(Value::from("10.0.1.3"));
        assert!(drift_reasons(&t, &d).iter().any(|r| r.contains("maps to")));
        let mut t = listed(&d);
        elements_of(&mut t, MAP_DNAT4_PORT)[0].data = Some(Value::from(2222));
        assert!(drifted(&t, &d));
        // The same address spelled otherwise is no drift.
        let mut t = listed(&d);
        elements_of(&mut t, crate::ruleset::MAP_DNAT6)[0].data = Some(Value::from("fd00:1:0:0::2"));
        assert!(!drifted(&t, &d));
    }

    #[test]
    fn changed_public_or_served_sets_are_drift() {
        let d = gateway();
        let mut t = listed(&d);
        elements_of(&mut t, SET_PUBLIC4).clear();
        assert!(drift_reasons(&t, &d).iter().any(|r| r.contains("public4")));
        let mut t = listed(&d);
        elements_of(&mut t, SET_SERVED4).push(ObservedElement {
            val: serde_json::json!({"concat": ["10.0.1.9", "tcp", 22]}),
            timeout: None,
            expires: None,
            comment: None,
            data: None,
        });
        assert!(drift_reasons(&t, &d).iter().any(|r| r.contains("served4")));
    }

    #[test]
    fn a_missing_gateway_chain_or_rule_is_drift() {
        let d = gateway();
        let mut t = listed(&d);
        t.chains.retain(|c| c.name != CHAIN_PREROUTING);
        t.rules.retain(|r| r.chain != CHAIN_PREROUTING);
        assert!(drifted(&t, &d));
        let mut t = listed(&d);
        let last_forward = t.rules.iter().rposition(|r| r.chain == CHAIN_FORWARD).unwrap();
        t.rules.remove(last_forward);
        assert!(drift_reasons(&t, &d).iter().any(|r| r.contains("chain forward")));
    }

    #[test]
    fn host_and_gateway_tables_are_drift_for_each_other() {
        let host = desired();
        let gateway = gateway();
        assert!(drifted(&listed(&gateway), &host));
        assert!(drifted(&listed(&host), &gateway));
    }
}
