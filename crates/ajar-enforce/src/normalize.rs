//! Grants and gateway mappings → non-overlapping set and map elements.
//!
//! The kernel refuses an interval element that overlaps one already in the set (EEXIST), so grants that
//! overlap (a /24 and a host inside it, `*` and anything) cannot be added as they are. For each
//! (protocol, port) this module partitions the address space the grants cover so that every address gets
//! the LONGEST timeout among the grants covering it, merges neighbouring pieces with equal timeouts, and
//! writes each piece as CIDR prefixes. Nothing is widened: an address is covered exactly when some grant
//! covers it. Pure.
//!
//! Mappings are normalised the same way per (protocol, mapped port, family), after one choice: a key can
//! translate to one target only, so when live mappings share a protocol and mapped port but name different
//! targets (the server never sends that), the target of the mapping with the lowest id wins and the others
//! are left out for that key.
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::desired::{Grant, L4, Mapping, Source};

/// nft refuses comments longer than this many bytes.
pub const MAX_COMMENT_BYTES: usize = 128;

/// Timeouts are capped at this (a year and a day): shortening a grant is safe, and it keeps the value far
/// from the kernel's limits.
pub const MAX_TIMEOUT_SECS: u32 = 366 * 24 * 3600;

/// What a set element matches: source prefix . l4proto . destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElementKey {
    pub l4: L4,
    pub port: u16,
    pub net: IpNet,
}

/// One element of `grants4` or `grants6` (by the family of `key.net`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantElement {
    pub key: ElementKey,
    /// Whole seconds, at least 1.
    pub timeout_secs: u32,
    /// The ids of the grants that give this element its timeout, comma-separated, at most
    /// [`MAX_COMMENT_BYTES`].
    pub comment: String,
}

/// One element of the gateway's maps (`dnat4`/`dnat4port` or `dnat6`/`dnat6port`, by the family of
/// `key.net`): `key.net . key.l4 . key.port` (the mapped port) translates to `target`:`target_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingElement {
    pub key: ElementKey,
    pub target: IpAddr,
    pub target_port: u16,
    /// Whole seconds, at least 1.
    pub timeout_secs: u32,
    /// The ids of the mappings that give this element its timeout, as for [`GrantElement::comment`].
    pub comment: String,
}

/// A grant's time left as the kernel enforces it: whole seconds (all nftables' JSON
/// takes), rounded up so a grant never ends early, capped at [`MAX_TIMEOUT_SECS`]. The
/// agent removes a grant at its exact end; the kernel's timeout is the backstop, at
/// most a second later, for when the agent is not running.
pub fn timeout_secs(timeout: Duration) -> u32 {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX).min(MAX_TIMEOUT_SECS)
}

/// Turns grants into non-overlapping elements, sorted by key. Grants with no time left are
/// dropped; `Both` stands for tcp and udp; `Source::Any` for 0.0.0.0/0 and ::/0.
pub fn normalize(grants: &[Grant]) -> Vec<GrantElement> {
    let mut groups: Groups<'_> = BTreeMap::new();
    for grant in grants {
        let secs = timeout_secs(grant.timeout);
        if secs == 0 {
            continue;
        }
        let nets: Vec<IpNet> = match grant.source {
            Source::Any => vec![IpNet::V4(Ipv4Net::default()), IpNet::V6(Ipv6Net::default())],
            Source::Net(net) => vec![net.trunc()],
        };
        for &l4 in grant.proto.l4s() {
            for net in &nets {
                let (family, start, end) = bounds(net);
                groups.entry((l4, grant.port, family)).or_default().push(Span { start, end, secs, id: &grant.id });
            }
        }
    }
    elements(groups)
}

/// Turns mappings into non-overlapping map elements, sorted by key. Mappings with no time left are dropped,
/// and so is a source prefix of the other family than the target's; `Both` stands for tcp and udp;
/// `Source::Any` for 0.0.0.0/0 or ::/0, by the target's family. Per (protocol, mapped port, family) the
/// target of the lowest id wins (see the module documentation).
pub fn normalize_mappings(mappings: &[Mapping]) -> Vec<MappingElement> {
    let applicable = |m: &Mapping| -> Option<IpNet> {
        if timeout_secs(m.timeout) == 0 {
            return None;
        }
        match (m.source, m.target) {
            (Source::Any, IpAddr::V4(_)) => Some(IpNet::V4(Ipv4Net::default())),
            (Source::Any, IpAddr::V6(_)) => Some(IpNet::V6(Ipv6Net::default())),
            (Source::Net(net), target) if net.addr().is_ipv4() == target.is_ipv4() => Some(net.trunc()),
            _ => None,
        }
    };
    let family = |addr: IpAddr| if addr.is_ipv4() { Family::V4 } else { Family::V6 };
    // (l4, mapped port, family) → the winning (id, target, target port): the lowest id, then the lowest target.
    let mut winners: BTreeMap<(L4, u16, Family), (&str, IpAddr, u16)> = BTreeMap::new();
    for m in mappings {
        if applicable(m).is_none() {
            continue;
        }
        for &l4 in m.proto.l4s() {
            let candidate = (m.id.as_str(), m.target, m.port);
            winners.entry((l4, m.mapped_port, family(m.target))).and_modify(|w| *w = (*w).min(candidate)).or_insert(candidate);
        }
    }
    let mut groups: Groups<'_> = BTreeMap::new();
    for m in mappings {
        let Some(net) = applicable(m) else { continue };
        let secs = timeout_secs(m.timeout);
        for &l4 in m.proto.l4s() {
            let group = (l4, m.mapped_port, family(m.target));
            if winners.get(&group).is_some_and(|&(_, target, port)| (target, port) == (m.target, m.port)) {
                let (_, start, end) = bounds(&net);
                groups.entry(group).or_default().push(Span { start, end, secs, id: &m.id });
            }
        }
    }
    elements(groups)
        .into_iter()
        .filter_map(|e| {
            let &(_, target, target_port) = winners.get(&(e.key.l4, e.key.port, family(e.key.net.addr())))?;
            Some(MappingElement { key: e.key, target, target_port, timeout_secs: e.timeout_secs, comment: e.comment })
        })
        .collect()
}

/// Spans of addresses per (protocol, port, family).
type Groups<'a> = BTreeMap<(L4, u16, Family), Vec<Span<'a>>>;

/// Each group partitioned (longest timeout wins) and written as prefixes, sorted by key.
fn elements(groups: Groups<'_>) -> Vec<GrantElement> {
    let mut out = Vec::new();
    for ((l4, port, family), spans) in groups {
        for piece in partition(&spans, family) {
            let comment = comment_for(&piece.ids);
            for net in range_to_prefixes(piece.start, piece.end, family) {
                out.push(GrantElement { key: ElementKey { l4, port, net }, timeout_secs: piece.secs, comment: comment.clone() });
            }
        }
    }
    out.sort_by_key(|e| e.key);
    out
}

/// Cuts `s` to at most [`MAX_COMMENT_BYTES`] bytes on a character boundary (marking the cut with `...`),
/// and replaces control characters.
pub fn truncate_comment(s: &str) -> String {
    let clean: String = s.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    if clean.len() <= MAX_COMMENT_BYTES {
        return clean;
    }
    const MARK: &str = "...";
    let mut cut = MAX_COMMENT_BYTES - MARK.len();
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{MARK}", &clean[..cut])
}

fn comment_for(ids: &BTreeMap<&str, usize>) -> String {
    let joined: Vec<&str> = ids.keys().copied().collect();
    truncate_comment(&joined.join(","))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    fn max(self) -> u128 {
        match self {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        }
    }
}

struct Span<'a> {
    start: u128,
    end: u128,
    secs: u32,
    id: &'a str,
}

struct Piece<'a> {
    start: u128,
    end: u128,
    secs: u32,
    /// The ids (with multiplicity) of the grants with timeout `secs` covering some part of the piece.
    ids: BTreeMap<&'a str, usize>,
}

fn bounds(net: &IpNet) -> (Family, u128, u128) {
    match net {
        IpNet::V4(n) => (Family::V4, u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast()))),
        IpNet::V6(n) => (Family::V6, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Sweep over the span boundaries: between two consecutive boundaries the set of covering spans is
/// constant, and the piece takes the longest timeout among them. Equal neighbours are merged.
fn partition<'a>(spans: &[Span<'a>], family: Family) -> Vec<Piece<'a>> {
    // (position, is_start, span index); ends are recorded at end + 1 (none for a span reaching the top).
    let mut events: Vec<(u128, bool, usize)> = Vec::with_capacity(spans.len() * 2);
    for (i, span) in spans.iter().enumerate() {
        events.push((span.start, true, i));
        if span.end < family.max() {
            events.push((span.end + 1, false, i));
        }
    }
    events.sort_unstable();
    // Active spans: timeout → id → count.
    let mut active: BTreeMap<u32, BTreeMap<&'a str, usize>> = BTreeMap::new();
    let mut pieces: Vec<Piece<'a>> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let pos = events[i].0;
        while i < events.len() && events[i].0 == pos {
            let (_, is_start, idx) = events[i];
            let span = &spans[idx];
            if is_start {
                *active.entry(span.secs).or_default().entry(span.id).or_default() += 1;
            } else if let Some(ids) = active.get_mut(&span.secs) {
                if let Some(count) = ids.get_mut(span.id) {
                    *count -= 1;
                    if *count == 0 {
                        ids.remove(span.id);
                    }
                }
                if ids.is_empty() {
                    active.remove(&span.secs);
                }
            }
            i += 1;
        }
        let end = match events.get(i) {
            Some(next) => next.0 - 1,
            None => family.max(),
        };
        let Some((&secs, ids)) = active.last_key_value() else {
            continue;
        };
        if let Some(last) = pieces.last_mut()
            && last.secs == secs
            && last.end.checked_add(1) == Some(pos)
        {
            last.end = end;
            for (id, n) in ids {
                *last.ids.entry(id).or_default() += n;
            }
            continue;
        }
        pieces.push(Piece { start: pos, end, secs, ids: ids.clone() });
    }
    pieces
}

/// The shortest list of aligned CIDR blocks that exactly covers `start..=end`.
fn range_to_prefixes(start: u128, end: u128, family: Family) -> Vec<IpNet> {
    let bits = family.bits();
    let mut out = Vec::new();
    let mut cur = start;
    loop {
        let mut k = cur.trailing_zeros().min(bits);
        while k > 0 && !block_fits(cur, k, end) {
            k -= 1;
        }
        let prefix_len = (bits - k) as u8;
        out.push(match family {
            Family::V4 => IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(cur as u32), prefix_len)),
            Family::V6 => IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(cur), prefix_len)),
        });
        let last = if k >= 128 { u128::MAX } else { cur + ((1u128 << k) - 1) };
        if last >= end {
            break;
        }
        cur = last + 1;
    }
    out
}

fn block_fits(cur: u128, k: u32, end: u128) -> bool {
    if k >= 128 {
        return cur == 0 && end == u128::MAX;
    }
    cur.checked_add((1u128 << k) - 1).is_some_and(|last| last <= end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Proto;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    fn grant(id: &str, source: &str, proto: Proto, port: u16, secs: u64) -> Grant {
        let source = if source == "*" {
            Source::Any
        } else {
            Source::Net(source.parse().unwrap_or_else(|_| IpNet::from(source.parse::<std::net::IpAddr>().unwrap())))
        };
        Grant { id: id.into(), source, proto, port, timeout: Duration::from_secs(secs) }
    }

    fn show(elems: &[GrantElement]) -> Vec<String> {
        elems.iter().map(|e| format!("{} {} {} {} {}", e.key.net, e.key.l4.nft_name(), e.key.port, e.timeout_secs, e.comment)).collect()
    }

    #[test]
    fn host_inside_cidr_with_longer_timeout_is_cut_out() {
        let out = normalize(&[grant("a", "10.0.0.0/24", Proto::Tcp, 22, 60), grant("b", "10.0.0.7", Proto::Tcp, 22, 600)]);
        assert_eq!(
            show(&out),
            [
                "10.0.0.0/30 tcp 22 60 a",
                "10.0.0.4/31 tcp 22 60 a",
                "10.0.0.6/32 tcp 22 60 a",
                "10.0.0.7/32 tcp 22 600 b",
                "10.0.0.8/29 tcp 22 60 a",
                "10.0.0.16/28 tcp 22 60 a",
                "10.0.0.32/27 tcp 22 60 a",
                "10.0.0.64/26 tcp 22 60 a",
                "10.0.0.128/25 tcp 22 60 a",
            ]
        );
    }

    #[test]
    fn host_inside_cidr_with_shorter_timeout_disappears() {
        let out = normalize(&[grant("a", "10.0.0.0/24", Proto::Tcp, 22, 600), grant("b", "10.0.0.7", Proto::Tcp, 22, 60)]);
        assert_eq!(show(&out), ["10.0.0.0/24 tcp 22 600 a"]);
    }

    #[test]
    fn adjacent_equal_timeouts_merge_and_ids_are_joined() {
        let out = normalize(&[grant("a", "10.0.0.0/25", Proto::Tcp, 22, 60), grant("b", "10.0.0.128/25", Proto::Tcp, 22, 60)]);
        assert_eq!(show(&out), ["10.0.0.0/24 tcp 22 60 a,b"]);
    }

    #[test]
    fn any_both_and_zero_timeouts() {
        let out = normalize(&[grant("x", "*", Proto::Both, 3389, 10), grant("z", "10.1.0.0/16", Proto::Tcp, 22, 0)]);
        assert_eq!(show(&out), ["0.0.0.0/0 tcp 3389 10 x", "::/0 tcp 3389 10 x", "0.0.0.0/0 udp 3389 10 x", "::/0 udp 3389 10 x"]);
        // A sub-second remainder still holds for a (whole) second: grants never end early.
        let g = Grant { timeout: Duration::from_millis(999), ..grant("y", "10.0.0.1", Proto::Tcp, 22, 1) };
        assert_eq!(show(&normalize(&[g])), ["10.0.0.1/32 tcp 22 1 y"]);
    }

    #[test]
    fn any_with_a_longer_host_inside() {
        let out = normalize(&[grant("x", "*", Proto::Tcp, 22, 10), grant("h", "fd00::1", Proto::Tcp, 22, 20)]);
        let v6: Vec<_> = out.iter().filter(|e| e.key.net.addr().is_ipv6()).collect();
        assert_eq!(v6.len(), 129, "::/0 minus one host is 128 prefixes, plus the host");
        assert!(out.iter().any(|e| e.key.net.to_string() == "fd00::1/128" && e.timeout_secs == 20));
        assert!(out.iter().any(|e| e.key.net.to_string() == "0.0.0.0/0" && e.timeout_secs == 10));
    }

    #[test]
    fn host_bits_are_ignored() {
        let out = normalize(&[grant("a", "10.0.0.7/24", Proto::Udp, 53, 5)]);
        assert_eq!(show(&out), ["10.0.0.0/24 udp 53 5 a"]);
    }

    #[test]
    fn comments_are_truncated_on_char_boundaries() {
        let long = "é".repeat(100);
        let c = truncate_comment(&long);
        assert!(c.len() <= MAX_COMMENT_BYTES);
        assert!(c.ends_with("..."));
        assert_eq!(truncate_comment("a\nb"), "a?b");
        let out = normalize(&[grant(&"r".repeat(300), "10.0.0.1", Proto::Tcp, 22, 5)]);
        assert_eq!(out[0].comment.len(), MAX_COMMENT_BYTES);
    }

    #[test]
    fn huge_timeouts_are_capped() {
        assert_eq!(timeout_secs(Duration::from_secs(u64::MAX)), MAX_TIMEOUT_SECS);
        assert_eq!(timeout_secs(Duration::from_millis(2_999)), 3);
        assert_eq!(timeout_secs(Duration::from_millis(2_000)), 2);
        assert_eq!(timeout_secs(Duration::from_millis(1)), 1);
        assert_eq!(timeout_secs(Duration::ZERO), 0);
    }

    fn mapping(id: &str, source: &str, proto: Proto, mapped_port: u16, target: &str, port: u16, secs: u64) -> Mapping {
        let Grant { source, .. } = grant(id, source, proto, port, secs);
        Mapping { id: id.into(), source, proto, mapped_port, target: target.parse().unwrap(), port, timeout: Duration::from_secs(secs) }
    }

    fn show_mappings(elems: &[MappingElement]) -> Vec<String> {
        elems
            .iter()
            .map(|e| {
                let target = SocketAddr::new(e.target, e.target_port);
                format!("{} {} {} -> {target} {} {}", e.key.net, e.key.l4.nft_name(), e.key.port, e.timeout_secs, e.comment)
            })
            .collect()
    }

    #[test]
    fn overlapping_mapping_sources_are_cut_like_grants() {
        let out = normalize_mappings(&[
            mapping("a", "10.0.0.0/30", Proto::Tcp, 50022, "10.1.0.2", 22, 60),
            mapping("b", "10.0.0.1", Proto::Tcp, 50022, "10.1.0.2", 22, 600),
        ]);
        assert_eq!(
            show_mappings(&out),
            [
                "10.0.0.0/32 tcp 50022 -> 10.1.0.2:22 60 a",
                "10.0.0.1/32 tcp 50022 -> 10.1.0.2:22 600 b",
                "10.0.0.2/31 tcp 50022 -> 10.1.0.2:22 60 a",
            ]
        );
    }

    #[test]
    fn mapping_sources_take_the_targets_family() {
        let out = normalize_mappings(&[
            mapping("any4", "*", Proto::Both, 50022, "10.1.0.2", 22, 60),
            mapping("any6", "*", Proto::Tcp, 50023, "fd00:1::2", 22, 60),
            // A source of the other family does not apply; no time left is not enforced.
            mapping("v6-for-v4", "fd00::1", Proto::Tcp, 50024, "10.1.0.2", 22, 60),
            mapping("v4-for-v6", "10.0.0.1", Proto::Tcp, 50025, "fd00:1::2", 22, 60),
            mapping("ended", "10.0.0.1", Proto::Tcp, 50026, "10.1.0.2", 22, 0),
        ]);
        assert_eq!(
            show_mappings(&out),
            [
                "0.0.0.0/0 tcp 50022 -> 10.1.0.2:22 60 any4",
                "::/0 tcp 50023 -> [fd00:1::2]:22 60 any6",
                "0.0.0.0/0 udp 50022 -> 10.1.0.2:22 60 any4",
            ]
        );
    }

    #[test]
    fn one_mapped_port_with_two_targets_keeps_the_lowest_id() {
        let mappings = [
            mapping("r-2", "10.0.0.0/24", Proto::Tcp, 50022, "10.1.0.3", 22, 600),
            mapping("r-1", "10.0.0.7", Proto::Tcp, 50022, "10.1.0.2", 22, 60),
            mapping("r-3", "10.0.0.9", Proto::Tcp, 50022, "10.1.0.2", 22, 60),
        ];
        assert_eq!(
            show_mappings(&normalize_mappings(&mappings)),
            ["10.0.0.7/32 tcp 50022 -> 10.1.0.2:22 60 r-1", "10.0.0.9/32 tcp 50022 -> 10.1.0.2:22 60 r-3"]
        );
        // Another target port is another target; another protocol or family is another key.
        let mappings = [
            mapping("r-1", "10.0.0.7", Proto::Tcp, 50022, "10.1.0.2", 2222, 60),
            mapping("r-2", "10.0.0.8", Proto::Tcp, 50022, "10.1.0.2", 22, 60),
            mapping("r-3", "10.0.0.8", Proto::Udp, 50022, "10.1.0.3", 53, 60),
            mapping("r-4", "fd00::8", Proto::Tcp, 50022, "fd00:1::3", 22, 60),
        ];
        assert_eq!(
            show_mappings(&normalize_mappings(&mappings)),
            [
                "10.0.0.7/32 tcp 50022 -> 10.1.0.2:2222 60 r-1",
                "fd00::8/128 tcp 50022 -> [fd00:1::3]:22 60 r-4",
                "10.0.0.8/32 udp 50022 -> 10.1.0.3:53 60 r-3",
            ]
        );
    }

    // Property tests work in a small corner of the address space (10.0.0.0/24 and fd00::/120) so that
    // every address can be checked.

    fn v4_grant() -> impl Strategy<Value = Grant> {
        (0u32..256, 24u8..=32, prop::sample::select(vec![Proto::Tcp, Proto::Udp, Proto::Both]), 21u16..23, 0u64..5).prop_map(
            |(host, len, proto, port, secs)| Grant {
                id: format!("g{host}-{len}-{secs}"),
                source: Source::Net(IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(0x0a00_0000 | host), len))),
                proto,
                port,
                timeout: Duration::from_secs(secs),
            },
        )
    }

    fn v6_grant() -> impl Strategy<Value = Grant> {
        (0u128..256, 120u8..=128, 0u64..5).prop_map(|(host, len, secs)| Grant {
            id: format!("h{host}-{len}-{secs}"),
            source: Source::Net(IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from((0xfd00u128 << 112) | host), len))),
            proto: Proto::Tcp,
            port: 22,
            timeout: Duration::from_secs(secs),
        })
    }

    fn check(grants: &[Grant], addrs: &[std::net::IpAddr]) {
        let out = normalize(grants);
        for (i, a) in out.iter().enumerate() {
            assert!(a.timeout_secs > 0);
            assert!(a.comment.len() <= MAX_COMMENT_BYTES);
            for b in &out[i + 1..] {
                let overlap =
                    a.key.l4 == b.key.l4 && a.key.port == b.key.port && (a.key.net.contains(&b.key.net) || b.key.net.contains(&a.key.net));
                assert!(!overlap, "{a:?} overlaps {b:?}");
            }
        }
        for &l4 in &[L4::Tcp, L4::Udp] {
            for port in 21u16..23 {
                for addr in addrs {
                    let want = grants
                        .iter()
                        .filter(|g| g.proto.l4s().contains(&l4) && g.port == port)
                        .filter(|g| match g.source {
                            Source::Any => true,
                            Source::Net(n) => n.trunc().contains(addr),
                        })
                        .map(|g| timeout_secs(g.timeout))
                        .max()
                        .filter(|&s| s > 0);
                    let got: Vec<u32> = out
                        .iter()
                        .filter(|e| e.key.l4 == l4 && e.key.port == port && e.key.net.contains(addr))
                        .map(|e| e.timeout_secs)
                        .collect();
                    match want {
                        Some(secs) => assert_eq!(got, vec![secs], "{addr} {l4:?}/{port}"),
                        None => assert!(got.is_empty(), "{addr} {l4:?}/{port} covered by {got:?} but by no grant"),
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn v4_elements_are_disjoint_exact_and_take_the_max(grants in prop::collection::vec(v4_grant(), 0..12)) {
            let mut addrs: Vec<std::net::IpAddr> = (0u32..256).map(|h| Ipv4Addr::from(0x0a00_0000 | h).into()).collect();
            addrs.push(Ipv4Addr::new(9, 255, 255, 255).into());
            addrs.push(Ipv4Addr::new(10, 0, 1, 0).into());
            check(&grants, &addrs);
        }

        #[test]
        fn v6_elements_are_disjoint_exact_and_take_the_max(grants in prop::collection::vec(v6_grant(), 0..12)) {
            let mut addrs: Vec<std::net::IpAddr> = (0u128..256).map(|h| Ipv6Addr::from((0xfd00u128 << 112) | h).into()).collect();
            addrs.push(Ipv6Addr::from((0xfd00u128 << 112) - 1).into());
            addrs.push(Ipv6Addr::from((0xfd00u128 << 112) | 256).into());
            check(&grants, &addrs);
        }

        #[test]
        fn mappings_to_one_target_normalise_as_the_same_grants(grants in prop::collection::vec(v4_grant(), 0..12)) {
            let mappings: Vec<Mapping> = grants
                .iter()
                .map(|g| Mapping {
                    id: g.id.clone(), source: g.source, proto: g.proto, mapped_port: g.port,
                    target: Ipv4Addr::new(10, 1, 0, 2).into(), port: 22, timeout: g.timeout,
                })
                .collect();
            let want: Vec<(ElementKey, u32, String)> = normalize(&grants).into_iter().map(|e| (e.key, e.timeout_secs, e.comment)).collect();
            let got: Vec<(ElementKey, u32, String)> = normalize_mappings(&mappings).into_iter().map(|e| (e.key, e.timeout_secs, e.comment)).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn any_source_mixed_with_nets(grants in prop::collection::vec(v4_grant(), 0..6), any_secs in 0u64..5) {
            let mut grants = grants;
            grants.push(Grant { id: "any".into(), source: Source::Any, proto: Proto::Tcp, port: 22, timeout: Duration::from_secs(any_secs) });
            let addrs: Vec<std::net::IpAddr> = vec![
                Ipv4Addr::new(0, 0, 0, 0).into(), Ipv4Addr::new(10, 0, 0, 0).into(), Ipv4Addr::new(10, 0, 0, 7).into(),
                Ipv4Addr::new(10, 0, 0, 255).into(), Ipv4Addr::new(255, 255, 255, 255).into(), Ipv6Addr::UNSPECIFIED.into(),
                Ipv6Addr::from(u128::MAX).into(),
            ];
            check(&grants, &addrs);
        }
    }
}
