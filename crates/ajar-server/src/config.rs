//! The running configuration of `ajar serve`, built from validated flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ajar_domain::policy::Limits;
use ajar_domain::{Location, ResourceGroup, SubscriptionId};

#[derive(Debug, Clone)]
pub enum TlsSource {
    /// A local CA and server certificate in `DATA_DIR/tls/`, made on first start.
    SelfSigned { extra_sans: Vec<String> },
    /// Certificate chain and key files given by the operator.
    Given { cert: PathBuf, key: PathBuf },
}

/// What first start creates when the data directory is new. Ignored later.
#[derive(Debug, Clone)]
pub struct FirstStart {
    /// `None`: a new random GUID.
    pub subscription: Option<SubscriptionId>,
    pub resource_group: ResourceGroup,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: TlsSource,
    pub first_start: FirstStart,
    pub limits: Limits,
    /// Items per page of every list.
    pub page_size: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is believed; nobody else's is.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// OIDC issuers whose bearer JWTs are accepted besides ajar's own tokens.
    pub oidc: Vec<crate::oidc::config_file::NamedIssuer>,
    /// What each client may hold of the listener.
    pub connections: ConnectionLimits,
}

/// What one client may hold of the listener, so that slow or idle clients cannot exhaust it.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections open at once; at the limit, new ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Connections open at once from one source (an IPv4 address or IPv6 /64); beyond it, a new
    /// connection from that source is closed at once.
    pub max_per_source: usize,
    /// Sources the per-source limit does not apply to: the trusted proxies, which carry everyone's
    /// connections.
    pub unlimited_sources: Vec<ipnet::IpNet>,
    /// From accepting a connection to the end of its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// How long a connection may wait for its client while no request is being handled: for a complete
    /// request head after the handshake and after each response (the keep-alive bound), or to take a
    /// response it is being sent.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_source: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            unlimited_sources: Vec::new(),
            tls_handshake_timeout: Duration::from_secs(DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS),
            header_read_timeout: Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECS),
        }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
