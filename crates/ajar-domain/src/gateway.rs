//! Gateways: enforcement points in front of machines (Azure's "firewall" path). A gateway host forwards
//! to the private machines it serves; for each live grant on one of them it maps
//! `publicAddress:mappedPort` to `machineAddress:port`, for the grant's sources only.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::ids::{VmId, arm_key};
use crate::inventory::AgentInfo;
use crate::prefix::SourcePrefix;

/// The ports a gateway maps from, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

/// The range a gateway maps from unless its enrolment says otherwise: above the registered ports and
/// below Linux's default ephemeral range (32768–60999 overlaps; 50000 up is what firewalls use for DNAT).
pub const DEFAULT_MAPPED_PORTS: PortRange = PortRange { first: 50000, last: 59999 };

impl PortRange {
    pub fn new(first: u16, last: u16) -> Result<PortRange, String> {
        if first == 0 || first > last {
            return Err(format!("'{first}-{last}' is not a port range; give FIRST-LAST with 1 <= FIRST <= LAST <= 65535"));
        }
        Ok(PortRange { first, last })
    }

    pub fn first(self) -> u16 {
        self.first
    }

    pub fn last(self) -> u16 {
        self.last
    }

    /// How many ports the range holds.
    pub fn size(self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<PortRange, String> {
        let bad = || format!("'{s}' is not a port range; give FIRST-LAST, e.g. 50000-59999");
        let (first, last) = s.split_once('-').ok_or_else(bad)?;
        let port = |p: &str| p.trim().parse::<u16>().map_err(|_| bad());
        PortRange::new(port(first)?, port(last)?)
    }
}

/// A gateway's name: 1–64 letters, digits, `-`, `_` or `.`, starting with a letter or digit. Compared
/// ignoring case, like every name in ARM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatewayName(String);

impl GatewayName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        arm_key(&self.0)
    }

    /// The gateway's resource ID in ajar's API: `/ajar/v1/gateways/{name}`.
    pub fn id(&self) -> String {
        format!("/ajar/v1/gateways/{}", self.0)
    }

    /// [`GatewayName::id`] as a key: what activity entries about the gateway are listed under, and the
    /// channel that wakes its agent (machine keys are ARM IDs, `/subscriptions/…`, so the two never meet).
    pub fn id_key(&self) -> String {
        arm_key(&self.id())
    }
}

impl fmt::Display for GatewayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for GatewayName {
    type Err = String;
    fn from_str(s: &str) -> Result<GatewayName, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(GatewayName(s.to_owned()))
        } else {
            Err(format!("'{s}' is not a gateway name: 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"))
        }
    }
}

/// An enrolled gateway: where clients connect, the ports it maps from, and its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub name: GatewayName,
    /// The addresses clients connect to: at most one per address family.
    pub public: Vec<IpAddr>,
    pub mapped_ports: PortRange,
    pub agent: AgentInfo,
}

impl Gateway {
    /// The address a requester is told to connect to: the IPv4 one if there is one (what Azure's
    /// `publicIpAddress` holds), else the IPv6 one.
    pub fn connection_address(&self) -> Option<IpAddr> {
        connection_address(&self.public)
    }

    /// Where a requester connects for a grant from `sources` mapped to `mapped_port`: [`connect_to`] at
    /// [`address_for`] those sources; `None` only for a gateway without a public address.
    pub fn connect_to(&self, sources: &[SourcePrefix], mapped_port: u16) -> Option<String> {
        address_for(&self.public, sources).map(|a| connect_to(a, mapped_port))
    }
}

/// `address:port` as a client takes it: `203.0.113.1:50022`, IPv6 in brackets (`[2001:db8::1]:50022`),
/// which a bare `address:port` could not tell from the address's own colons.
pub fn connect_to(address: IpAddr, port: u16) -> String {
    SocketAddr::new(address, port).to_string()
}

/// Of a gateway's public addresses, the one a requester is told: IPv4 first.
pub fn connection_address(public: &[IpAddr]) -> Option<IpAddr> {
    public.iter().find(|a| a.is_ipv4()).or_else(|| public.first()).copied()
}

/// Of a gateway's public addresses, the one a grant for `sources` is reached at: the address of the
/// sources' family when they are all of one (an IPv6 client cannot use the IPv4 address), else as
/// [`connection_address`].
pub fn address_for(public: &[IpAddr], sources: &[SourcePrefix]) -> Option<IpAddr> {
    let family = |p: &SourcePrefix| match p {
        SourcePrefix::Any => None,
        SourcePrefix::Net(n) => Some(n.addr().is_ipv6()),
    };
    let first = sources.first().and_then(family);
    match first {
        Some(v6) if sources.iter().all(|p| family(p) == Some(v6)) => public.iter().find(|a| a.is_ipv6() == v6).copied(),
        _ => None,
    }
    .or_else(|| connection_address(public))
}

/// Checks a gateway's public addresses: one or two, at most one per family, none that a client could
/// not connect to (unspecified, multicast).
pub fn check_public_addresses(addresses: &[IpAddr]) -> Result<(), String> {
    if addresses.is_empty() {
        return Err("a gateway needs a public address (--public-address ADDR[,ADDR6])".into());
    }
    if addresses.iter().filter(|a| a.is_ipv4()).count() > 1 || addresses.iter().filter(|a| a.is_ipv6()).count() > 1 {
        return Err("give at most one IPv4 and one IPv6 public address".into());
    }
    if let Some(a) = addresses.iter().find(|a| a.is_unspecified() || a.is_multicast()) {
        return Err(format!("'{a}' cannot be a public address: clients cannot connect to it"));
    }
    Ok(())
}

/// A mapped port held by a live grant on a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMapping {
    pub request_id: String,
    pub vm: VmId,
    pub number: u16,
    pub mapped_port: u16,
}

/// Where the allocation of a machine port starts: the same machine and port start at the same place
/// each time, so a repeated request gets the same mapped port unless another grant holds it.
fn preferred(range: PortRange, vm: &VmId, number: u16) -> u16 {
    // FNV-1a: small, stable across builds and platforms (the std hasher is neither).
    let mut hash: u32 = 0x811c_9dc5;
    for byte in vm.key().bytes().chain(number.to_be_bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    // The offset is below `range.size()`, which fits the range.
    range.first + u16::try_from(hash % range.size()).unwrap_or(0)
}

/// The mapped port for `number` on `vm`: the first free port of `range` from its preferred place on,
/// wrapping around; `None` when every port of the range is taken.
pub fn allocate(range: PortRange, taken: &BTreeSet<u16>, vm: &VmId, number: u16) -> Option<u16> {
    let start = preferred(range, vm, number);
    (start..=range.last).chain(range.first..start).find(|p| !taken.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ids::vm;

    #[test]
    fn port_ranges_parse_or_say_why_not() {
        assert_eq!("50000-50009".parse::<PortRange>().map(|r| (r.first(), r.last(), r.size())), Ok((50000, 50009, 10)));
        for bad in ["", "50000", "0-10", "10-9", "a-b", "1-65536"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!("gw-1.dc_2".parse::<GatewayName>().is_ok());
        for bad in ["", "-gw", "gw 1", "gw/1", &"g".repeat(65)] {
            assert!(bad.parse::<GatewayName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allocation_is_stable_unique_and_wraps() {
        let range = PortRange::new(50000, 50003).unwrap();
        let mut taken = BTreeSet::new();
        let first = allocate(range, &taken, &vm("db1"), 22).unwrap();
        assert_eq!(allocate(range, &taken, &vm("DB1"), 22), Some(first), "the same machine and port start at the same place");
        let mut all = Vec::new();
        for _ in 0..4 {
            let p = allocate(range, &taken, &vm("db1"), 22).unwrap();
            assert!(range.contains(p) && taken.insert(p));
            all.push(p);
        }
        assert_eq!(all[0], first);
        assert_eq!(allocate(range, &taken, &vm("db1"), 22), None, "a full range allocates nothing");
    }

    #[test]
    fn a_grant_is_reached_at_the_address_of_its_sources_family() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net = |s: &str| s.parse::<SourcePrefix>().unwrap();
        let both = [ip("2001:db8::1"), ip("203.0.113.1")];
        let check = |public: &[IpAddr], sources: &[SourcePrefix], expected: Option<&str>| {
            assert_eq!(address_for(public, sources), expected.map(ip), "{public:?} for {sources:?}");
        };
        check(&both, &[net("2001:db8:5::7")], Some("2001:db8::1"));
        check(&both, &[net("198.51.100.7"), net("198.51.100.0/24")], Some("203.0.113.1"));
        check(&both, &[net("198.51.100.7"), net("2001:db8:5::7")], Some("203.0.113.1"));
        check(&both, &[SourcePrefix::Any], Some("203.0.113.1"));
        check(&both, &[], Some("203.0.113.1"));
        check(&[ip("203.0.113.1")], &[net("2001:db8:5::7")], Some("203.0.113.1"));
        check(&[], &[net("2001:db8:5::7")], None);
    }

    #[test]
    fn connect_to_brackets_ipv6_and_follows_the_sources_family() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(connect_to(ip("203.0.113.1"), 50022), "203.0.113.1:50022");
        assert_eq!(connect_to(ip("2001:db8::1"), 50022), "[2001:db8::1]:50022");
        let mut gw = Gateway {
            name: "gw1".parse().unwrap(),
            public: vec![ip("2001:db8::1"), ip("203.0.113.1")],
            mapped_ports: DEFAULT_MAPPED_PORTS,
            agent: crate::inventory::AgentInfo {
                agent_id: "a".into(),
                version: "1".into(),
                nftables: Ok(()),
                last_seen: crate::test_ids::NOW,
                applied: None,
            },
        };
        let v6: SourcePrefix = "2001:db8:7::7".parse().unwrap();
        assert_eq!(gw.connect_to(&[SourcePrefix::Any], 50000).as_deref(), Some("203.0.113.1:50000"));
        assert_eq!(gw.connect_to(std::slice::from_ref(&v6), 50000).as_deref(), Some("[2001:db8::1]:50000"));
        gw.public.retain(IpAddr::is_ipv6);
        assert_eq!(gw.connect_to(&[SourcePrefix::Any], 50000).as_deref(), Some("[2001:db8::1]:50000"));
    }

    #[test]
    fn public_addresses_are_checked() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(check_public_addresses(&[ip("203.0.113.1"), ip("2001:db8::1")]).is_ok());
        assert!(check_public_addresses(&[]).is_err());
        assert!(check_public_addresses(&[ip("203.0.113.1"), ip("203.0.113.2")]).is_err());
        assert!(check_public_addresses(&[ip("0.0.0.0")]).is_err());
    }
}
