//! Grants → non-overlapping set elements.
//!
//! The kernel refuses an interval element that overlaps one already in the set (EEXIST), so grants that
//! overlap (a /24 and a host inside it, `*` and anything) cannot be added as they are. For each
//! (protocol, port) this module partitions the address space the grants cover so that every address gets
//! the LONGEST timeout among the grants covering it, merges neighbouring pieces with equal timeouts, and
//! writes each piece as CIDR prefixes. Nothing is widened: an address is covered exactly when some grant
//! covers it. Pure.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::desired::{Grant, L4, Source};

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
    let mut groups: BTreeMap<(L4, u16, Family), Vec<Span<'_>>> = BTreeMap::new();
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
