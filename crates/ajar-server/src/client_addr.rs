//! The caller's address, which "My IP" grants and the activity log use: the connection's own, or, only
//! when the connection comes from a proxy the operator listed (`--trusted-proxy`), the address that proxy
//! says it forwarded for. A header from anyone else is ignored: believing it would let any caller choose
//! the source its grant opens.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

fn trusted(addr: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|p| p.contains(&addr))
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip())).map(|ip| ip.to_canonical())
}

/// Walks `X-Forwarded-For` from the right, where each trusted proxy appended the address it received the
/// request from, and stops at the first address that is not a trusted proxy. An unreadable entry stops the
/// walk at the last trusted hop: its address is the most that can be vouched for.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let mut addr = peer.to_canonical();
    if !trusted(addr, proxies) {
        return addr;
    }
    let values: Vec<&str> = headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
    for hop in values.iter().flat_map(|v| v.split(',')).rev() {
        let Some(ip) = parse_hop(hop.trim()) else { return addr };
        addr = ip;
        if !trusted(ip, proxies) {
            return ip;
        }
    }
    addr
}

/// What per-address limits count (connections, failed authentications, started sign-ins): an IPv4
/// address, or the /64 an IPv6 address is in. One host or site usually holds a whole IPv6 /64, so counting
/// single IPv6 addresses would be no limit at all.
pub fn source_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(peer: &str, forwarded: &[&str], proxies: &[&str], expected: &str) {
        let mut headers = HeaderMap::new();
        for f in forwarded {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(f).unwrap());
        }
        let proxies: Vec<IpNet> = proxies.iter().map(|p| p.parse().unwrap()).collect();
        let got = client_addr(peer.parse().unwrap(), &headers, &proxies);
        assert_eq!(got, expected.parse::<IpAddr>().unwrap(), "peer {peer}, X-Forwarded-For {forwarded:?}, proxies {proxies:?}");
    }

    #[test]
    fn forwarded_addresses_count_only_from_listed_proxies() {
        // No proxies configured: the header is ignored.
        check("203.0.113.9", &["198.51.100.1"], &[], "203.0.113.9");
        // From a listed proxy: the address it forwarded for.
        check("10.0.0.5", &["198.51.100.1"], &["10.0.0.0/24"], "198.51.100.1");
        // A client cannot smuggle an address in front: the rightmost untrusted hop wins.
        check("10.0.0.5", &["1.1.1.1, 198.51.100.1"], &["10.0.0.0/24"], "198.51.100.1");
        // Two trusted proxies in a row, headers split over two lines, ports and IPv6 brackets.
        check("10.0.0.5", &["198.51.100.1:5555", "10.0.0.7"], &["10.0.0.0/24"], "198.51.100.1");
        check("10.0.0.5", &["[2001:db8::1]:443"], &["10.0.0.0/24"], "2001:db8::1");
        // Unreadable or missing: stop at the last trusted hop.
        check("10.0.0.5", &["junk"], &["10.0.0.0/24"], "10.0.0.5");
        check("10.0.0.5", &["198.51.100.1, junk, 10.0.0.7"], &["10.0.0.0/24"], "10.0.0.7");
        check("10.0.0.5", &[], &["10.0.0.0/24"], "10.0.0.5");
        // An IPv4-mapped peer is the IPv4 address.
        check("::ffff:10.0.0.5", &["198.51.100.1"], &["10.0.0.0/24"], "198.51.100.1");
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_slash_64s() {
        let key = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
