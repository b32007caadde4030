//! Between the server's desired state, what the agent saves, and what the
//! firewall enforces.

use std::time::Duration;

use std::collections::HashMap;
use std::net::IpAddr;

use ajar_api::agent::{CutOut, DesiredStateOut, GatewayStateOut};
use ajar_enforce::desired::{Mapping, ServedPort};
use ajar_enforce::{Cut, DesiredState, Grant, Protected, Proto, Source};

use crate::state::{Saved, SavedGateway, SavedGrant, SavedMapping};

fn proto(text: &str) -> Option<Proto> {
    match text {
        "TCP" => Some(Proto::Tcp),
        "UDP" => Some(Proto::Udp),
        "*" => Some(Proto::Both),
        _ => None,
    }
}

/// The server's answer, with end times placed on this machine's clock at
/// `now_ms` from the time left (so the two clocks need not agree). A grant that
/// `previous` already holds with the same server end keeps its local end, so
/// the incremental apply leaves its kernel element alone.
pub fn saved_from(out: &DesiredStateOut, now_ms: i128, previous: Option<&Saved>) -> Saved {
    let kept_end = |g: &ajar_api::agent::DesiredGrantOut| {
        let prev = previous?.grants.iter().find(|p| {
            !g.end_time_utc.is_empty()
                && p.server_end == g.end_time_utc
                && p.request_id == g.request_id
                && p.number == g.number
                && p.protocol == g.protocol
        })?;
        Some(prev.end_ms)
    };
    Saved {
        etag: out.etag.clone(),
        protected: out.protected.iter().map(|p| (p.number, p.protocol.clone())).collect(),
        grants: out
            .grants
            .iter()
            .map(|g| SavedGrant {
                request_id: g.request_id.clone(),
                number: g.number,
                protocol: g.protocol.clone(),
                sources: g.allowed_source_address_prefixes.clone(),
                end_ms: kept_end(g).unwrap_or(now_ms + i128::from(g.remaining_ms)),
                server_end: g.end_time_utc.clone(),
            })
            .collect(),
        cuts_done: previous
            .map(|p| p.cuts_done.iter().filter(|id| out.cuts.iter().any(|c| &c.id == *id)).cloned().collect())
            .unwrap_or_default(),
        gateway: out.gateway.as_ref().map(|g| saved_gateway(g, now_ms, previous.and_then(|p| p.gateway.as_ref()))),
    }
}

/// A gateway's part of the answer, its end times placed as [`saved_from`] places a grant's. Looked up by
/// key: a gateway may hold thousands of mappings.
fn saved_gateway(out: &GatewayStateOut, now_ms: i128, previous: Option<&SavedGateway>) -> SavedGateway {
    let kept: HashMap<(&str, u16, u16, &str), i128> = previous
        .iter()
        .flat_map(|p| &p.mappings)
        .map(|p| ((p.request_id.as_str(), p.number, p.mapped_port, p.server_end.as_str()), p.end_ms))
        .collect();
    let addresses: HashMap<&str, &Vec<String>> = out.machines.iter().map(|m| (m.vm_id.as_str(), &m.addresses)).collect();
    SavedGateway {
        public: out.public_addresses.clone(),
        served: out
            .machines
            .iter()
            .flat_map(|m| m.addresses.iter().flat_map(move |a| m.protected.iter().map(move |p| (a.clone(), p.number, p.protocol.clone()))))
            .collect(),
        mappings: out
            .mappings
            .iter()
            .map(|m| SavedMapping {
                request_id: m.request_id.clone(),
                number: m.number,
                protocol: m.protocol.clone(),
                mapped_port: m.mapped_port,
                targets: addresses.get(m.vm_id.as_str()).map(|a| a.to_vec()).unwrap_or_default(),
                sources: m.allowed_source_address_prefixes.clone(),
                end_ms: kept
                    .get(&(m.request_id.as_str(), m.number, m.mapped_port, m.end_time_utc.as_str()))
                    .copied()
                    .unwrap_or(now_ms + i128::from(m.remaining_ms)),
                server_end: m.end_time_utc.clone(),
            })
            .collect(),
    }
}

/// The cuts of `out` not yet carried out, each with the flows it must spare: those of grants still live
/// on the same port in `saved` at `now_ms`.
pub fn pending_cuts(out: &DesiredStateOut, saved: &Saved, now_ms: i128) -> Vec<(CutOut, Cut)> {
    let now = enforce_at(saved, now_ms);
    // On a gateway a cut's port is the mapped port, which no other live grant holds.
    let keep: Vec<(u16, Proto, Source)> = now
        .grants
        .iter()
        .map(|g| (g.port, g.proto, g.source))
        .chain(now.mappings.iter().map(|m| (m.mapped_port, m.proto, m.source)))
        .collect();
    out.cuts
        .iter()
        .filter(|c| !saved.cuts_done.contains(&c.id))
        .filter_map(|c| {
            let cut = Cut {
                proto: proto(&c.protocol)?,
                port: c.number,
                sources: c.allowed_source_address_prefixes.iter().filter_map(|s| source(s)).collect(),
                keep: keep.iter().filter(|(port, ..)| *port == c.number).map(|(_, p, s)| (*p, *s)).collect(),
            };
            Some((c.clone(), cut))
        })
        .collect()
}

fn source(text: &str) -> Option<Source> {
    match text.parse::<ajar_domain::SourcePrefix>() {
        Ok(ajar_domain::SourcePrefix::Net(net)) => Some(Source::Net(net)),
        Ok(ajar_domain::SourcePrefix::Any) => Some(Source::Any),
        Err(e) => {
            tracing::warn!(source = %text, error = %e, "ignoring a source the agent cannot read");
            None
        }
    }
}

/// What to enforce at `now_ms`: grants carry the time they have left; ended
/// ones are dropped. Anything unreadable is left out, which keeps it closed.
pub fn enforce_at(saved: &Saved, now_ms: i128) -> DesiredState {
    enforce(saved, now_ms, None)
}

/// As [`enforce_at`], but grants that ended after `since_ms` still count, with the
/// shortest time left: what the table holds for them until the agent removes them.
pub fn enforce_with_ended(saved: &Saved, now_ms: i128, since_ms: i128) -> DesiredState {
    enforce(saved, now_ms, Some(since_ms))
}

/// The first end after `after_ms` among the grants.
pub fn next_end(saved: &Saved, after_ms: i128) -> Option<i128> {
    let mappings = saved.gateway.iter().flat_map(|g| g.mappings.iter().map(|m| m.end_ms));
    saved.grants.iter().map(|g| g.end_ms).chain(mappings).filter(|end| *end > after_ms).min()
}

fn address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().inspect_err(|e| tracing::warn!(address = %text, error = %e, "ignoring an address the agent cannot read")).ok()
}

/// A mapping per source and per family the machine has an address in: a source of one family goes to
/// the machine's first address of that family; `*` to each.
fn mappings_of(m: &SavedMapping, proto: Proto, timeout: Duration) -> Vec<Mapping> {
    let targets: Vec<IpAddr> = m.targets.iter().filter_map(|a| address(a)).collect();
    let v4 = targets.iter().find(|a| a.is_ipv4()).copied();
    let v6 = targets.iter().find(|a| a.is_ipv6()).copied();
    let mut out = Vec::new();
    for source in m.sources.iter().filter_map(|s| source(s)) {
        let to = match source {
            Source::Any => vec![v4, v6],
            Source::Net(net) if net.addr().is_ipv4() => vec![v4],
            Source::Net(_) => vec![v6],
        };
        for target in to.into_iter().flatten() {
            out.push(Mapping { id: m.request_id.clone(), source, proto, mapped_port: m.mapped_port, target, port: m.number, timeout });
        }
    }
    out
}

fn enforce(saved: &Saved, now_ms: i128, keep_ended_since: Option<i128>) -> DesiredState {
    // Time left at `now_ms`; a grant ended since `keep_ended_since` keeps the shortest.
    let left = |end_ms: i128| {
        let mut left = end_ms - now_ms;
        if left <= 0 && keep_ended_since.is_some_and(|since| end_ms > since) {
            left = 1;
        }
        (left > 0).then(|| Duration::from_millis(u64::try_from(left).unwrap_or(0)))
    };
    let protected = saved.protected.iter().filter_map(|(port, p)| Some(Protected { proto: proto(p)?, port: *port })).collect();
    let mut grants = Vec::new();
    for g in &saved.grants {
        let (Some(proto), Some(timeout)) = (proto(&g.protocol), left(g.end_ms)) else { continue };
        for source in g.sources.iter().filter_map(|s| source(s)) {
            grants.push(Grant { id: g.request_id.clone(), source, proto, port: g.number, timeout });
        }
    }
    let mut state = DesiredState { protected, grants, ..DesiredState::default() };
    if let Some(gateway) = &saved.gateway {
        state.public = gateway.public.iter().filter_map(|a| address(a)).collect();
        state.served = gateway
            .served
            .iter()
            .filter_map(|(a, port, p)| Some(ServedPort { address: address(a)?, proto: proto(p)?, port: *port }))
            .collect();
        for m in &gateway.mappings {
            let (Some(proto), Some(timeout)) = (proto(&m.protocol), left(m.end_ms)) else { continue };
            state.mappings.extend(mappings_of(m, proto, timeout));
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use ajar_api::agent::{DesiredGrantOut, ProtectedPortOut};

    #[test]
    fn ended_grants_are_dropped_and_times_follow_the_local_clock() {
        let out = DesiredStateOut {
            etag: "e".into(),
            vm_id: Some("v".into()),
            protected: vec![ProtectedPortOut { number: 22, protocol: "TCP".into() }],
            grants: vec![
                DesiredGrantOut {
                    request_id: "a".into(),
                    number: 22,
                    protocol: "TCP".into(),
                    allowed_source_address_prefixes: vec!["10.0.0.0/8".into(), "*".into()],
                    end_time_utc: String::new(),
                    remaining_ms: 10_000,
                },
                DesiredGrantOut {
                    request_id: "b".into(),
                    number: 22,
                    protocol: "bogus".into(),
                    allowed_source_address_prefixes: vec!["10.0.0.1".into()],
                    end_time_utc: String::new(),
                    remaining_ms: 10_000,
                },
            ],
            cuts: vec![],
            gateway: None,
        };
        let saved = saved_from(&out, 1_000, None);
        assert_eq!(saved.grants[0].end_ms, 11_000);
        let now = enforce_at(&saved, 4_000);
        assert_eq!(now.protected, vec![Protected { proto: Proto::Tcp, port: 22 }]);
        assert_eq!(now.grants.len(), 2, "two sources of grant a; grant b's protocol is unreadable");
        assert_eq!(now.grants[0].timeout, Duration::from_millis(7_000));
        assert!(enforce_at(&saved, 11_000).grants.is_empty(), "ended grants are not restored");
    }

    fn one_grant(request_id: &str, end: &str, remaining_ms: u64) -> DesiredStateOut {
        DesiredStateOut {
            etag: "e".into(),
            vm_id: Some("v".into()),
            protected: vec![ProtectedPortOut { number: 22, protocol: "TCP".into() }],
            grants: vec![DesiredGrantOut {
                request_id: request_id.into(),
                number: 22,
                protocol: "TCP".into(),
                allowed_source_address_prefixes: vec!["10.0.0.1".into()],
                end_time_utc: end.into(),
                remaining_ms,
            }],
            cuts: vec![],
            gateway: None,
        }
    }

    fn cut(id: &str, sources: &[&str]) -> CutOut {
        CutOut {
            id: id.into(),
            request_id: format!("r-{id}"),
            number: 22,
            protocol: "TCP".into(),
            allowed_source_address_prefixes: sources.iter().map(|s| s.to_string()).collect(),
            revoked_time_utc: "2026-11-22T10:00:00Z".into(),
        }
    }

    #[test]
    fn cuts_are_done_once_and_spare_the_live_grants_of_their_port() {
        let mut out = one_grant("a", "2026-11-22T10:00:00Z", 10_000);
        out.cuts = vec![cut("cut-1", &["10.0.0.0/24"]), cut("cut-2", &["*"])];
        let mut saved = saved_from(&out, 1_000, None);
        let pending = pending_cuts(&out, &saved, 2_000);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].1.sources, vec![Source::Net("10.0.0.0/24".parse().unwrap())]);
        assert_eq!(pending[0].1.keep, vec![(Proto::Tcp, Source::Net("10.0.0.1/32".parse().unwrap()))], "grant a is still live");
        assert!(pending_cuts(&out, &saved, 20_000)[0].1.keep.is_empty(), "grant a has ended");
        saved.cuts_done.push("cut-1".into());
        let next = saved_from(&out, 3_000, Some(&saved));
        assert_eq!(next.cuts_done, vec!["cut-1".to_string()], "carried over while the server lists it");
        assert_eq!(pending_cuts(&out, &next, 3_000).iter().map(|(c, _)| c.id.as_str()).collect::<Vec<_>>(), ["cut-2"]);
        out.cuts.remove(0);
        assert!(saved_from(&out, 4_000, Some(&next)).cuts_done.is_empty(), "forgotten once the server drops it");
    }

    #[test]
    fn an_unchanged_grant_keeps_its_local_end_and_a_changed_one_does_not() {
        let first = saved_from(&one_grant("a", "2026-11-22T10:00:00Z", 10_000), 1_000, None);
        assert_eq!(first.grants[0].end_ms, 11_000);
        // Polled again 2 s later; the time left was measured 30 ms earlier on the server.
        let again = saved_from(&one_grant("a", "2026-11-22T10:00:00Z", 8_030), 3_000, Some(&first));
        assert_eq!(again.grants[0].end_ms, 11_000, "same server end: same local end");
        let now = 5_000;
        assert_eq!(enforce_at(&first, now), enforce_at(&again, now), "no element to change");
        let extended = saved_from(&one_grant("a", "2026-11-22T11:00:00Z", 3_608_030), 3_000, Some(&first));
        assert_eq!(extended.grants[0].end_ms, 3_611_030);
        let other = saved_from(&one_grant("b", "2026-11-22T10:00:00Z", 8_030), 3_000, Some(&first));
        assert_eq!(other.grants[0].end_ms, 11_030, "another request: its own end");
        let unknown = saved_from(&one_grant("a", "", 8_030), 3_000, Some(&first));
        assert_eq!(unknown.grants[0].end_ms, 11_030, "no server end to compare: recomputed");
    }

    #[test]
    fn a_gateway_maps_each_source_to_the_machine_address_of_its_family() {
        use ajar_api::agent::{GatewayStateOut, MappingOut, ServedMachineOut};
        let out = DesiredStateOut {
            etag: "g".into(),
            vm_id: None,
            protected: vec![],
            grants: vec![],
            cuts: vec![],
            gateway: Some(GatewayStateOut {
                public_addresses: vec!["10.9.0.1".into(), "fd00:9::1".into()],
                machines: vec![ServedMachineOut {
                    vm_id: "db1".into(),
                    addresses: vec!["10.9.3.2".into(), "fd00:93::2".into()],
                    protected: vec![ProtectedPortOut { number: 22, protocol: "TCP".into() }],
                }],
                mappings: vec![MappingOut {
                    request_id: "r".into(),
                    vm_id: "db1".into(),
                    number: 22,
                    protocol: "TCP".into(),
                    mapped_port: 50022,
                    allowed_source_address_prefixes: vec!["10.9.1.7".into(), "*".into()],
                    end_time_utc: "2026-12-04T10:00:00Z".into(),
                    remaining_ms: 10_000,
                }],
            }),
        };
        let saved = saved_from(&out, 1_000, None);
        let now = enforce_at(&saved, 2_000);
        assert_eq!(now.public.len(), 2);
        assert_eq!(now.served.len(), 2, "port 22 on both of the machine's addresses");
        let targets: Vec<String> = now.mappings.iter().map(|m| format!("{:?}>{}:{}", m.source, m.target, m.mapped_port)).collect();
        assert_eq!(targets.len(), 3, "the IPv4 source to the IPv4 address, '*' to both: {targets:?}");
        assert!(now.mappings.iter().all(|m| m.port == 22 && m.timeout == Duration::from_millis(9_000)));
        assert_eq!(next_end(&saved, 2_000), Some(11_000), "a mapping's end is watched like a grant's");
        let mut later = out.clone();
        if let Some(g) = later.gateway.as_mut() {
            g.mappings[0].remaining_ms = 8_970;
        }
        assert_eq!(saved_from(&later, 2_000, Some(&saved)).gateway.unwrap().mappings[0].end_ms, 11_000, "same server end: end kept");
        assert!(enforce_at(&saved, 11_000).mappings.is_empty());
    }

    #[test]
    fn ended_grants_are_kept_briefly_only_to_be_removed() {
        let saved = Saved {
            etag: "e".into(),
            protected: vec![(22, "TCP".into())],
            grants: vec![SavedGrant {
                request_id: "a".into(),
                number: 22,
                protocol: "TCP".into(),
                sources: vec!["10.0.0.1".into()],
                end_ms: 5_000,
                server_end: String::new(),
            }],
            cuts_done: vec![],
            gateway: None,
        };
        assert_eq!(next_end(&saved, 4_000), Some(5_000));
        assert_eq!(next_end(&saved, 5_000), None);
        // At 5,100 the grant has ended: gone from what to enforce, still there (1 ms left)
        // in what the table holds if it ended after the last look at 4,000.
        assert!(enforce_at(&saved, 5_100).grants.is_empty());
        let held = enforce_with_ended(&saved, 5_100, 4_000);
        assert_eq!(held.grants.len(), 1);
        assert_eq!(held.grants[0].timeout, Duration::from_millis(1));
        assert!(enforce_with_ended(&saved, 5_100, 5_000).grants.is_empty(), "already removed at the last look");
    }
}
