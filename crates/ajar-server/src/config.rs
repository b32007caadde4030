//! The running configuration of `ajar serve`, built from validated flags.

use std::net::SocketAddr;
use std::path::PathBuf;

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
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
