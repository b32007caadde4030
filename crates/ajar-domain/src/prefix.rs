//! Source address prefixes: `*`, one address, or a CIDR, IPv4 or IPv6.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// One allowed or requested source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourcePrefix {
    /// `*`: every IPv4 and IPv6 address.
    Any,
    /// A network; a single address is a /32 or /128.
    Net(IpNet),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a source address prefix: {why}")]
pub struct PrefixError {
    pub input: String,
    pub why: String,
}

impl SourcePrefix {
    /// A single address, with IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a
    /// dual-stack socket reports IPv4 peers) turned into plain IPv4.
    pub fn host(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        SourcePrefix::Net(IpNet::from(addr))
    }

    /// True when every address of `other` is also in `self`.
    pub fn contains(&self, other: &SourcePrefix) -> bool {
        match (self, other) {
            (SourcePrefix::Any, _) => true,
            (SourcePrefix::Net(_), SourcePrefix::Any) => false,
            (SourcePrefix::Net(a), SourcePrefix::Net(b)) => a.contains(b),
        }
    }
}

impl FromStr for SourcePrefix {
    type Err = PrefixError;

    fn from_str(input: &str) -> Result<Self, PrefixError> {
        let err = |why: String| PrefixError { input: input.to_owned(), why };
        let s = input.trim();
        if s == "*" {
            return Ok(SourcePrefix::Any);
        }
        if s.is_empty() {
            return Err(err("it is empty; use '*', an address such as 192.0.2.7, or a CIDR such as 192.0.2.0/24".into()));
        }
        if let Some((addr, len)) = s.split_once('/') {
            let addr: IpAddr = addr.parse().map_err(|_| err(format!("'{addr}' is not an IPv4 or IPv6 address")))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len: u8 =
                len.parse().ok().filter(|l| *l <= max).ok_or_else(|| err(format!("the prefix length must be a number from 0 to {max}")))?;
            let net = IpNet::new(addr, len).map_err(|e| err(e.to_string()))?;
            if net.network() != addr {
                return Err(err(format!("it has host bits set; did you mean {}?", net.trunc())));
            }
            return Ok(SourcePrefix::Net(net));
        }
        let addr: IpAddr = s.parse().map_err(|_| {
            err("use '*', an IPv4 or IPv6 address, or a CIDR such as 10.0.0.0/24 (service tags such as 'Internet' are not supported)"
                .into())
        })?;
        Ok(SourcePrefix::host(addr))
    }
}

impl fmt::Display for SourcePrefix {
    /// `*`, a bare address for a single host, or `addr/len`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourcePrefix::Any => f.write_str("*"),
            SourcePrefix::Net(net) if net.prefix_len() == net.max_prefix_len() => write!(f, "{}", net.addr()),
            SourcePrefix::Net(net) => write!(f, "{net}"),
        }
    }
}

/// The sources of a port rule or a grant, in the form they were written: one
/// prefix (`allowedSourceAddressPrefix`) or a list (`allowedSourceAddressPrefixes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources {
    One(SourcePrefix),
    List(Vec<SourcePrefix>),
}

impl Sources {
    pub fn prefixes(&self) -> &[SourcePrefix] {
        match self {
            Sources::One(p) => std::slice::from_ref(p),
            Sources::List(list) => list,
        }
    }

    /// True when every requested prefix lies inside one of these.
    pub fn allows(&self, requested: &Sources) -> bool {
        requested.prefixes().iter().all(|r| self.allows_prefix(r))
    }

    pub fn allows_prefix(&self, requested: &SourcePrefix) -> bool {
        self.prefixes().iter().any(|a| a.contains(requested))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        match (input.parse::<SourcePrefix>(), expected) {
            (Ok(p), Ok(shown)) => assert_eq!(p.to_string(), shown, "{input}"),
            (Err(e), Err(why)) => assert!(e.to_string().contains(why), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn parses() {
        check("*", Ok("*"));
        check("192.127.0.2", Ok("192.127.0.2"));
        check("192.168.0.0/16", Ok("192.168.0.0/16"));
        check("10.0.0.1/32", Ok("10.0.0.1"));
        check("0.0.0.0/0", Ok("0.0.0.0/0"));
        check("2001:db8::/32", Ok("2001:db8::/32"));
        check("2001:DB8::1", Ok("2001:db8::1"));
        check("::ffff:192.0.2.7", Ok("192.0.2.7"));
        check(" 10.1.2.3 ", Ok("10.1.2.3"));
    }

    #[test]
    fn refuses() {
        check("", Err("empty"));
        check("Internet", Err("service tags"));
        check("10.0.0.1/24", Err("did you mean 10.0.0.0/24"));
        check("10.0.0.0/33", Err("from 0 to 32"));
        check("2001:db8::/129", Err("from 0 to 128"));
        check("10.0.0/8", Err("not an IPv4 or IPv6"));
        check("10.0.0.0/x", Err("from 0 to 32"));
        check("300.1.1.1", Err("service tags"));
    }

    #[test]
    fn containment() {
        let p = |s: &str| s.parse::<SourcePrefix>().unwrap();
        assert!(p("*").contains(&p("10.0.0.1")));
        assert!(p("*").contains(&p("*")));
        assert!(!p("10.0.0.0/8").contains(&p("*")));
        assert!(p("10.0.0.0/8").contains(&p("10.1.0.0/16")));
        assert!(p("10.0.0.0/8").contains(&p("10.1.2.3")));
        assert!(!p("10.1.0.0/16").contains(&p("10.0.0.0/8")));
        assert!(!p("10.0.0.0/8").contains(&p("::ffff:10.0.0.0/104")));
        assert!(!p("10.0.0.0/8").contains(&p("2001:db8::1")));
        let allowed = Sources::List(vec![p("10.0.0.0/8"), p("192.168.1.0/24")]);
        assert!(allowed.allows(&Sources::List(vec![p("10.9.0.0/16"), p("192.168.1.5")])));
        assert!(!allowed.allows(&Sources::One(p("192.168.2.5"))));
    }

    proptest! {
        #[test]
        fn display_round_trips(a in any::<u32>(), len in 0u8..=32) {
            let net = IpNet::new(IpAddr::from(std::net::Ipv4Addr::from(a)), len).unwrap().trunc();
            let p = SourcePrefix::Net(net);
            prop_assert_eq!(p.to_string().parse::<SourcePrefix>().unwrap(), p);
        }

        #[test]
        fn v6_round_trips(a in any::<u128>(), len in 0u8..=128) {
            let net = IpNet::new(IpAddr::from(std::net::Ipv6Addr::from(a)), len).unwrap().trunc();
            // IPv4-mapped hosts canonicalise to IPv4 by design; skip them.
            prop_assume!(!(len == 128 && std::net::Ipv6Addr::from(a).to_ipv4_mapped().is_some()));
            let p = SourcePrefix::Net(net);
            prop_assert_eq!(p.to_string().parse::<SourcePrefix>().unwrap(), p);
        }

        #[test]
        fn never_panics(s in "\\PC{0,48}") {
            let _ = s.parse::<SourcePrefix>();
        }

        #[test]
        fn subnets_are_contained(a in any::<u32>(), outer in 0u8..=32, extra in 0u8..=32) {
            let inner_len = outer.saturating_add(extra).min(32);
            let addr = IpAddr::from(std::net::Ipv4Addr::from(a));
            let o = SourcePrefix::Net(IpNet::new(addr, outer).unwrap().trunc());
            let i = SourcePrefix::Net(IpNet::new(addr, inner_len).unwrap().trunc());
            prop_assert!(o.contains(&i));
        }
    }
}
