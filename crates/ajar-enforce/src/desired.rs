//! What the host should enforce, as plain data: the JIT-protected ports and the live grants, and on a
//! gateway the public addresses, the served ports of the machines behind it and the live mappings.
//!
//! Pure: no I/O, no clock. A grant or mapping carries the time left until its end, computed by the caller.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// A transport protocol as the control plane states it: `Both` means TCP and UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Both,
}

/// One concrete layer-4 protocol, as the kernel matches it (`meta l4proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    /// The name nft uses for it (`inet_proto`).
    pub fn nft_name(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }

    /// Parses nft's name for it; `None` for any other protocol.
    pub fn from_nft_name(name: &str) -> Option<L4> {
        match name {
            "tcp" => Some(L4::Tcp),
            "udp" => Some(L4::Udp),
            _ => None,
        }
    }
}

impl Proto {
    /// The concrete protocols this one stands for.
    pub fn l4s(self) -> &'static [L4] {
        match self {
            Proto::Tcp => &[L4::Tcp],
            Proto::Udp => &[L4::Udp],
            Proto::Both => &[L4::Tcp, L4::Udp],
        }
    }
}

/// A JIT-protected port: closed (dropped) for every source that has no live grant for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protected {
    pub proto: Proto,
    pub port: u16,
}

/// Where a grant's traffic may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Any address, IPv4 and IPv6 (`*` in Azure's API).
    Any,
    /// One address or prefix. Host bits are ignored (`10.0.0.7/24` means `10.0.0.0/24`).
    Net(IpNet),
}

/// A live grant: `source` may reach `proto`/`port` for `timeout` more.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant {
    /// The access request's id; it goes into the element's comment.
    pub id: String,
    pub source: Source,
    pub proto: Proto,
    pub port: u16,
    /// Time left until the grant's end. The kernel enforces whole seconds, rounded up (see
    /// [`crate::normalize::timeout_secs`]); a grant with no time left is not enforced.
    pub timeout: Duration,
}

/// A JIT-protected port of a machine behind a gateway: never forwarded to, unless a live mapping
/// translated the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServedPort {
    /// The machine's address.
    pub address: IpAddr,
    pub proto: Proto,
    pub port: u16,
}

/// A live mapping on a gateway: `source` connecting to `mapped_port` on a public address (of the target's
/// family) reaches `target`:`port`, for `timeout` more. One per grant port on a gateway-enforced machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// The access request's id; it goes into the element's comment, as for grants.
    pub id: String,
    /// Any, or a prefix; a prefix of the other family than `target` does not apply.
    pub source: Source,
    pub proto: Proto,
    /// The port clients connect to, on every public address of the target's family.
    pub mapped_port: u16,
    /// The machine's address.
    pub target: IpAddr,
    /// The machine's port.
    pub port: u16,
    /// Time left, as for [`Grant::timeout`]: whole seconds rounded up; zero is not enforced.
    pub timeout: Duration,
}

/// Everything the host enforces. Applying it replaces whatever `inet ajar` held before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub protected: Vec<Protected>,
    pub grants: Vec<Grant>,
    /// Gateway mode: the addresses clients connect to. Empty = not a gateway.
    pub public: Vec<IpAddr>,
    /// JIT-protected ports of the machines behind the gateway: never forwarded unless a live mapping
    /// DNAT'd the connection.
    pub served: Vec<ServedPort>,
    /// Live mappings (one per grant port on a gateway-enforced machine).
    pub mappings: Vec<Mapping>,
}

impl DesiredState {
    /// True if the table needs the gateway's objects: any of `public`, `served`, `mappings` is non-empty.
    /// Served ports without a public address still get their drop rules (fail closed); with all three
    /// empty the table is the host's alone.
    pub fn is_gateway(&self) -> bool {
        !self.public.is_empty() || !self.served.is_empty() || !self.mappings.is_empty()
    }
}
