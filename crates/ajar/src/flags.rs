//! The command line, as clap structs. Parsing here only validates: every value
//! that can be checked without the server is checked by its value parser, so
//! a typo is a usage error (exit 2) that names the flag.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use ajar_api::authorization::{AuthorizationKind, authorization_path, parse_role_definition_ref};
use ajar_api::principals::{MAX_EXPIRES_IN_DAYS, MAX_ISSUER, MAX_NAME, MAX_SUBJECT};
use ajar_domain::access::Scope;
use ajar_domain::{AccessDuration, Location, ResourceGroup, SubscriptionId, VmId, VmName};
use ajar_server::config::{
    DEFAULT_HEADER_READ_TIMEOUT_SECS, DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_PAGE_SIZE, DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS,
};

use crate::output::OutputFormat;
use crate::spec::{PortSpec, SourceArg, TimeArg};

#[derive(Debug, Parser)]
#[command(
    name = "ajar",
    version,
    about = "Just-in-time access to management ports, speaking Azure's jitNetworkAccessPolicies API",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the ajar server (the control plane).
    Serve(ServeArgs),
    /// Manage the virtual machine inventory.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Manage gateways: enforcement points in front of machines (firewall/DNAT mode).
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Manage JIT policies: which ports of which machines may be opened.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Ask for access: open ports of a machine for a while.
    Request(RequestArgs),
    /// End access early: close the live grants on ports of a machine.
    Revoke(RevokeArgs),
    /// Show the JIT status of every machine.
    Status(StatusArgs),
    /// Show the activity log.
    Activity(ActivityArgs),
    /// Print the server's OpenAPI document.
    Openapi(OpenapiArgs),
    /// Show who you are: the principal your token belongs to.
    Whoami(WhoamiArgs),
    /// Manage principals: the users and services that may call the API.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Manage API tokens: create (the secret is shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage roles and role assignments: who may do what, where.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Run the host agent: enforce this machine's JIT policy with nftables (needs root).
    Agent(AgentArgs),
    /// Build a lab of network namespaces (server, two VMs, a client) to watch JIT at work (needs root).
    Demo(DemoArgs),
}

// ------------------------------------------------------------------ demo

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its state file, the server's data and the logs.
    #[arg(long, value_name = "DIR", default_value = "ajar-demo", global = true)]
    pub dir: PathBuf,
    /// What to do (default: start the demo and run until Ctrl-C).
    #[command(subcommand)]
    pub command: Option<DemoCommand>,
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Start the demo and run until Ctrl-C (the default).
    Start,
    /// Try to connect from the demo's client namespace to a VM's port (db1's through the gateway, on the
    /// port its live grant maps): OPEN, REFUSED, TIMEOUT or UNREACHABLE.
    Connect(DemoConnectArgs),
    /// Run `ajar ARGS...` inside the demo's client namespace, against the demo's server.
    Run(DemoRunArgs),
    /// (internal) A TCP listener that greets and closes each connection.
    #[command(hide = true)]
    Listen(DemoListenArgs),
    /// (internal) One TCP connection attempt; prints OPEN / REFUSED / TIMEOUT / UNREACHABLE, exits
    /// 0 / 1 / 2 / 4.
    #[command(hide = true)]
    Probe(DemoProbeArgs),
}

#[derive(Debug, Args)]
pub struct DemoConnectArgs {
    /// The VM: web1, win1 or db1 (behind the gateway gw1).
    pub vm: String,
    /// The TCP port.
    #[arg(value_parser = crate::spec::port_number)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct DemoRunArgs {
    /// The ajar command line, e.g. `-- request web1 --port 22 --for 2m`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoListenArgs {
    pub addr: SocketAddr,
    /// The name in the greeting.
    #[arg(long, default_value = "ajar-demo")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct DemoProbeArgs {
    pub dst: SocketAddr,
    /// Source address to bind.
    #[arg(long, value_name = "IP")]
    pub from: Option<IpAddr>,
    /// How long to wait for the connection.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub timeout_ms: u64,
}

// ------------------------------------------------------------------ agent

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The server's URL (https://…).
    #[arg(long, value_name = "URL", required_unless_present = "uninstall")]
    pub server: Option<String>,
    /// The CA certificate the server's certificate must chain to (the server's tls/ca.pem).
    #[arg(long, value_name = "FILE", required_unless_present = "uninstall")]
    pub ca: Option<PathBuf>,
    /// The server's join token; needed only to enrol, the first time.
    #[arg(long, value_name = "TOKEN", env = "AJAR_JOIN_TOKEN")]
    pub join_token: Option<String>,
    /// This machine's name in the inventory (with --gateway: the gateway's name).
    #[arg(long, value_name = "NAME", required_unless_present = "uninstall")]
    pub name: Option<String>,
    /// Enrol a gateway in front of machines (mapping a port on its public address to each grant)
    /// instead of this machine.
    #[arg(long, requires = "public_address")]
    pub gateway: bool,
    /// The gateway's public addresses, where requesters connect: at most one IPv4 and one IPv6.
    #[arg(long, value_name = "ADDR[,ADDR6]", value_delimiter = ',', requires = "gateway")]
    pub public_address: Vec<IpAddr>,
    /// The ports the gateway maps from (FIRST-LAST; 50000-59999 unless given).
    #[arg(long, value_name = "FIRST-LAST", requires = "gateway")]
    pub mapped_ports: Option<String>,
    #[arg(long, value_name = "RG")]
    pub resource_group: Option<String>,
    #[arg(long, value_name = "LOC")]
    pub location: Option<String>,
    #[arg(long, value_enum, default_value = "linux")]
    pub os: OsArg,
    /// Where the agent keeps its credential and last applied state.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/ajar-agent")]
    pub state_dir: PathBuf,
    /// Remove table inet ajar (and nothing else), then exit.
    #[arg(long)]
    pub uninstall: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

// ------------------------------------------------------------------ serve

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the server keeps its database, TLS files and bootstrap.json.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Certificate chain (PEM) to serve instead of the self-signed one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra name or address for the self-signed certificate (repeatable).
    #[arg(long = "san", value_name = "NAME", conflicts_with = "tls_cert")]
    pub sans: Vec<String>,
    /// Subscription ID to create on first start (default: a new random GUID).
    #[arg(long, value_name = "GUID")]
    pub subscription_id: Option<SubscriptionId>,
    /// Resource group to create on first start.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub resource_group: ResourceGroup,
    /// Location to create on first start.
    #[arg(long, value_name = "NAME", default_value = "local")]
    pub location: Location,
    /// Items per page of every list.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PAGE_SIZE, value_parser = positive_usize)]
    pub page_size: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_BODY_BYTES, value_parser = positive_usize)]
    pub max_body_bytes: usize,
    /// Smallest maxRequestAccessDuration a policy may set (ISO 8601).
    #[arg(long, value_name = "ISO8601", default_value = "PT5M")]
    pub min_max_request_duration: AccessDuration,
    /// Largest maxRequestAccessDuration a policy may set (ISO 8601).
    #[arg(long, value_name = "ISO8601", default_value = "P1D")]
    pub max_max_request_duration: AccessDuration,
    /// A reverse proxy (address or CIDR) whose X-Forwarded-For gives the caller's address, for "My IP"
    /// and the activity log (repeatable). Without it the connection's address is used and the header ignored.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = proxy_net)]
    pub trusted_proxies: Vec<IpNet>,
    /// Connections open at once; at the limit, new ones wait until one closes.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = connection_count)]
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64); more are closed at once. Trusted proxies
    /// are exempt. Machines whose agents reach the server through one NAT address share it.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, value_parser = connection_count)]
    pub max_connections_per_address: usize,
    /// Seconds a client has to complete its TLS handshake.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS, value_parser = timeout_seconds)]
    pub tls_handshake_timeout: u64,
    /// Seconds a connection waits for its client while no request is being handled: for a complete
    /// request head (also between requests, so idle keep-alive connections close after it), or to take
    /// the response it is sent.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_SECS, value_parser = timeout_seconds)]
    pub header_read_timeout: u64,
    /// Accept bearer JWTs from the OIDC issuers this JSON file lists (issuer, audience, jwksUri or
    /// jwksFile, claims), and dashboard sign-in through those with a signIn block; see README.
    #[arg(long, value_name = "FILE")]
    pub oidc_config: Option<PathBuf>,
    /// Log line format on stderr (filter with RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// An address or a CIDR; host bits are refused, as for policy sources.
fn proxy_net(s: &str) -> Result<IpNet, String> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| format!("'{s}' is not an address or a CIDR"))?,
    };
    if net.addr() != net.network() {
        return Err(format!("'{s}' has host bits set; did you mean {}?", net.trunc()));
    }
    Ok(net)
}

/// A limit on connections: at least 1, and no more than a process could hold open.
fn connection_count(s: &str) -> Result<usize, String> {
    match positive_usize(s)? {
        n if n > MAX_CONNECTIONS => Err(format!("{n} is more than {MAX_CONNECTIONS}, more connections than one process can hold")),
        n => Ok(n),
    }
}

/// The most `--max-connections` accepts (each connection is an open file; Linux's own ceiling is about a
/// million per process by default).
const MAX_CONNECTIONS: usize = 1 << 20;

/// Whole seconds from 1 to an hour: a timeout of 0 would cut every client, a longer one protects nothing.
fn timeout_seconds(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n @ 1..=3600) => Ok(n),
        Ok(_) => Err("it must be from 1 to 3600 seconds".to_owned()),
        Err(_) => Err(format!("'{s}' is not a whole number of seconds")),
    }
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("it must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

// ------------------------------------------------------------------ client commands

/// How to reach the server and which defaults to use. Each setting comes from
/// its flag, else its environment variable, else the bootstrap file.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Connection")]
pub struct Conn {
    /// Server URL (https://...). Env: AJAR_SERVER.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token. Env: AJAR_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for the server. Env: AJAR_CA.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The server's bootstrap.json, for anything not given otherwise. Env: AJAR_BOOTSTRAP.
    #[arg(long, value_name = "FILE")]
    pub bootstrap: Option<PathBuf>,
    /// Subscription for short names (default: from the bootstrap file).
    #[arg(long, value_name = "GUID")]
    pub subscription: Option<SubscriptionId>,
    /// Resource group for short names (default: from the bootstrap file).
    #[arg(long, short = 'g', value_name = "RG")]
    pub resource_group: Option<ResourceGroup>,
    /// Location (default: from the bootstrap file).
    #[arg(long, short = 'l', value_name = "LOC")]
    pub location: Option<Location>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OsArg {
    Linux,
    Windows,
}

impl OsArg {
    pub fn as_wire(self) -> &'static str {
        match self {
            OsArg::Linux => "Linux",
            OsArg::Windows => "Windows",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Add (or update) a machine in the inventory.
    Add(VmAddArgs),
    /// List machines with their JIT status.
    List(VmListArgs),
    /// Show one machine.
    Show(VmNameArgs),
    /// Remove a machine from the inventory.
    Remove(VmNameArgs),
    /// Put a machine behind a gateway (its JIT ports are then reached through it), or take it out.
    SetGateway(VmSetGatewayArgs),
}

#[derive(Debug, Args)]
pub struct VmSetGatewayArgs {
    /// VM name (or full resource ID).
    pub name: String,
    /// The gateway's name (`ajar gateway list`).
    #[arg(required_unless_present = "none", conflicts_with = "none")]
    pub gateway: Option<String>,
    /// Take the machine out from behind its gateway.
    #[arg(long)]
    pub none: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// List enrolled gateways with the machines behind them.
    List(GatewayListArgs),
    /// Remove a gateway and its agent (refused while machines are behind it).
    Remove(GatewayNameArgs),
}

#[derive(Debug, Args)]
pub struct GatewayListArgs {
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct GatewayNameArgs {
    /// The gateway's name (`ajar gateway list`).
    pub name: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct VmAddArgs {
    /// VM name (or full resource ID).
    pub name: String,
    /// Operating system.
    #[arg(long, value_enum)]
    pub os: OsArg,
    /// Private IP address (repeatable).
    #[arg(long = "address", value_name = "IP")]
    pub addresses: Vec<IpAddr>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct VmListArgs {
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct VmNameArgs {
    /// VM name (or full resource ID).
    pub name: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create or replace one machine's ports in its policy.
    Set(PolicySetArgs),
    /// Enable JIT on machines with the OS defaults or the ports given.
    Enable(PolicyEnableArgs),
    /// Show a policy.
    Show(PolicyNameArgs),
    /// List policies (of the subscription, or narrowed by -g / -l).
    List(PolicyListArgs),
    /// Delete a policy.
    Remove(PolicyNameArgs),
    /// Take a machine out of its policy (deleting the policy if it becomes empty).
    RemoveVm(PolicyRemoveVmArgs),
}

#[derive(Debug, Args)]
pub struct PolicySetArgs {
    /// VM name (or full resource ID).
    pub vm: String,
    /// NUMBER[/PROTO][,from=PREFIX[;PREFIX...]][,max=DURATION], e.g. 22/tcp,from=10.0.0.0/8,max=PT1H (repeatable).
    #[arg(long = "port", value_name = "SPEC", required = true)]
    pub ports: Vec<PortSpec>,
    /// Policy name (default: the policy that already holds the machine, else "default").
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Whether an early revoke also cuts the grant's established connections (the whole policy's setting;
    /// default: unchanged, off for a new policy).
    #[arg(long, value_name = "true|false")]
    pub cut_connections_on_revoke: Option<bool>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["defaults", "ports"])))]
pub struct PolicyEnableArgs {
    /// VM names (or full resource IDs).
    #[arg(required = true)]
    pub vms: Vec<String>,
    /// Use the OS defaults: Linux 22, Windows 3389, TCP, any source, PT3H.
    #[arg(long, conflicts_with = "ports")]
    pub defaults: bool,
    /// A port spec as for `policy set` (repeatable).
    #[arg(long = "port", value_name = "SPEC")]
    pub ports: Vec<PortSpec>,
    /// Policy name (default: the server's, "default").
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct PolicyNameArgs {
    /// Policy name (or full resource ID).
    #[arg(default_value = "default")]
    pub name: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct PolicyListArgs {
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct PolicyRemoveVmArgs {
    /// VM name (or full resource ID).
    pub vm: String,
    /// Policy name (default: the policy that holds the machine).
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// VM name (or full resource ID).
    pub vm: String,
    /// Port to open (repeatable, or comma-separated).
    #[arg(long = "port", value_name = "N", required = true, value_delimiter = ',', value_parser = crate::spec::port_number)]
    pub ports: Vec<u16>,
    /// How long: 1h, 30m, 90s or ISO 8601 (default: the port's maximum).
    #[arg(long = "for", value_name = "DURATION", value_parser = crate::spec::parse_duration, conflicts_with = "until")]
    pub duration: Option<AccessDuration>,
    /// Until when (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = crate::spec::rfc3339)]
    pub until: Option<time::OffsetDateTime>,
    /// Source: my-ip (the address the server sees), an IP or a CIDR.
    #[arg(long, value_name = "SOURCE", default_value = "my-ip")]
    pub from: SourceArg,
    /// Why access is needed (kept in the activity log).
    #[arg(long, value_name = "TEXT")]
    pub justification: Option<String>,
    /// Policy name (default: the policy that holds the machine).
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// VM name (or full resource ID).
    pub vm: String,
    /// Port whose live grants end now (repeatable, or comma-separated).
    #[arg(long = "port", value_name = "N", required = true, value_delimiter = ',', value_parser = crate::spec::port_number)]
    pub ports: Vec<u16>,
    /// Policy name (default: the policy that holds the machine).
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Configured,
    NotConfigured,
    Unsupported,
}

impl StateArg {
    pub fn as_wire(self) -> &'static str {
        match self {
            StateArg::Configured => "Configured",
            StateArg::NotConfigured => "NotConfigured",
            StateArg::Unsupported => "Unsupported",
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only machines in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActivityFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ActivityArgs {
    /// Without one, the log itself.
    #[command(subcommand)]
    pub command: Option<ActivityCommand>,
    /// Only entries about this VM (name or full resource ID).
    #[arg(long, value_name = "VM")]
    pub vm: Option<String>,
    /// Only entries by this caller.
    #[arg(long, value_name = "NAME")]
    pub caller: Option<String>,
    /// From this time on: RFC 3339 or a time ago such as 1h or 7d.
    #[arg(long, value_name = "TIME")]
    pub since: Option<TimeArg>,
    /// Before this time: RFC 3339 or a time ago such as 1h.
    #[arg(long, value_name = "TIME")]
    pub until: Option<TimeArg>,
    /// At most this many entries (newest first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// table, json or csv (the server's CSV export, unchanged). Overrides --output.
    #[arg(long, value_enum)]
    pub format: Option<ActivityFormat>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Subcommand)]
pub enum ActivityCommand {
    /// Check the log's hash chain: exits 0 if every entry is as written, 1 if one was edited or inserted,
    /// or one before the newest deleted.
    Verify(ActivityVerifyArgs),
}

#[derive(Debug, Args)]
pub struct ActivityVerifyArgs {
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct OpenapiArgs {
    #[command(flatten)]
    pub conn: Conn,
}

// ------------------------------------------------------------------ identities and roles

#[derive(Debug, Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub conn: Conn,
}

/// A name for people to read: 1 to `max` characters, not blank, no control characters.
fn display_text(what: &str, s: &str, max: usize) -> Result<String, String> {
    let len = s.chars().count();
    if s.trim().is_empty() {
        Err(format!("the {what} must not be empty"))
    } else if len > max {
        Err(format!("the {what} is {len} characters long; at most {max} are allowed"))
    } else if s.chars().any(char::is_control) {
        Err(format!("the {what} must not contain control characters"))
    } else {
        Ok(s.to_owned())
    }
}

pub fn principal_name(s: &str) -> Result<String, String> {
    display_text("name", s, MAX_NAME)
}

/// A principal's name or ID, to look up in the principal list.
pub fn principal_ref(s: &str) -> Result<String, String> {
    display_text("principal name or ID", s, 256)
}

pub fn role_name(s: &str) -> Result<String, String> {
    display_text("role name", s, ajar_domain::access::role::MAX_ROLE_NAME)
}

pub fn token_name(s: &str) -> Result<String, String> {
    display_text("token name", s, MAX_NAME)
}

/// A token ID: one non-blank path segment.
pub fn token_id(s: &str) -> Result<String, String> {
    display_text("token ID", s, 256)
}

/// An OpenID Connect issuer: an absolute http(s) URL with a host.
pub fn oidc_issuer(s: &str) -> Result<String, String> {
    display_text("issuer", s, MAX_ISSUER)?;
    let hint = "give the issuer's URL as its tokens' `iss` says, such as https://login.example.com";
    let url = url::Url::parse(s).map_err(|e| format!("'{s}' is not a URL ({e}); {hint}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() || s.chars().any(char::is_whitespace) {
        return Err(format!("'{s}' is not an http(s) URL with a host; {hint}"));
    }
    Ok(s.to_owned())
}

pub fn oidc_subject(s: &str) -> Result<String, String> {
    display_text("subject", s, MAX_SUBJECT)
}

/// A whole number of days, `30` or `30d`, from 1 to the server's maximum.
pub fn expiry_days(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let digits = t.strip_suffix('d').unwrap_or(t);
    match digits.parse::<i64>() {
        Ok(n) if (1..=MAX_EXPIRES_IN_DAYS).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} days is out of range; give 1 to {MAX_EXPIRES_IN_DAYS}")),
        Err(_) => Err(format!("'{s}' is not a number of days such as 30 or 30d")),
    }
}

/// A scope as ARM writes it: `/`, a subscription, a resource group or a resource ID.
pub fn scope_arg(s: &str) -> Result<Scope, String> {
    s.trim().parse::<Scope>().map_err(|e| e.to_string())
}

/// A VM name or full resource ID (resolved against the settings later).
pub fn vm_ref(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.starts_with('/') {
        t.parse::<VmId>().map_err(|e| e.to_string())?;
    } else {
        t.parse::<VmName>().map_err(|e| format!("{e}; give a VM name such as web1 or a full resource ID"))?;
    }
    Ok(t.to_owned())
}

/// A role's GUID (or role definition ID), or its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRef {
    /// The lower-cased GUID.
    Id(String),
    Name(String),
}

impl std::str::FromStr for RoleRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.starts_with('/') {
            return parse_role_definition_ref(t).map(|(_, guid)| RoleRef::Id(guid));
        }
        match parse_role_definition_ref(t) {
            Ok((_, guid)) => Ok(RoleRef::Id(guid)),
            Err(_) => role_name(t).map(RoleRef::Name),
        }
    }
}

/// A role assignment: its GUID (found by listing), or its full ID
/// (`{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentRef {
    Name(String),
    Id { scope: Scope, name: String },
}

impl std::str::FromStr for AssignmentRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let guid_hint = "give the assignment's GUID (its name in `ajar role assignments`) or its full ID";
        if !t.starts_with('/') {
            return if ajar_domain::access::role::is_guid(t) {
                Ok(AssignmentRef::Name(t.to_ascii_lowercase()))
            } else {
                Err(format!("'{t}' is not a role assignment GUID; {guid_hint}"))
            };
        }
        let path = authorization_path(t).map_err(|e| e.body.message)?;
        match (path.kind, path.name) {
            (AuthorizationKind::RoleAssignments, Some(name)) if ajar_domain::access::role::is_guid(&name) => {
                Ok(AssignmentRef::Id { scope: path.scope, name: name.to_ascii_lowercase() })
            }
            _ => Err(format!("'{t}' is not a role assignment ID; {guid_hint}")),
        }
    }
}

/// Where a role command applies. One of --scope, --vm or the connection's
/// -g/--resource-group; without any, the default subscription.
#[derive(Debug, Clone, Default, Args)]
pub struct ScopeArgs {
    /// Scope: '/', /subscriptions/GUID, /subscriptions/GUID/resourceGroups/RG or a resource ID
    /// (default: the default subscription; -g RG or --vm VM are shorthands).
    #[arg(long, value_name = "SCOPE", value_parser = scope_arg, conflicts_with_all = ["vm", "resource_group"])]
    pub scope: Option<Scope>,
    /// Shorthand for the scope of a VM (name or resource ID).
    #[arg(long, value_name = "VM", value_parser = vm_ref)]
    pub vm: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrincipalKindArg {
    /// A person.
    User,
    /// A program: a script, a pipeline, another service.
    Service,
}

impl PrincipalKindArg {
    pub fn as_wire(self) -> &'static str {
        match self {
            PrincipalKindArg::User => "user",
            PrincipalKindArg::Service => "service",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// Add a user or a service.
    Add(PrincipalAddArgs),
    /// List principals.
    List(PrincipalListArgs),
    /// Remove a principal (by name or ID); its tokens stop working.
    Remove(PrincipalRefArgs),
}

#[derive(Debug, Args)]
pub struct PrincipalAddArgs {
    /// Its name.
    #[arg(value_parser = principal_name)]
    pub name: String,
    #[arg(long, value_enum, default_value_t = PrincipalKindArg::User)]
    pub kind: PrincipalKindArg,
    /// OpenID Connect issuer it signs in with (the `iss` of its ID tokens).
    #[arg(long, value_name = "URL", value_parser = oidc_issuer, requires = "oidc_subject")]
    pub oidc_issuer: Option<String>,
    /// Its subject at that issuer (the `sub` of its ID tokens).
    #[arg(long, value_name = "SUB", value_parser = oidc_subject, requires = "oidc_issuer")]
    pub oidc_subject: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct PrincipalListArgs {
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct PrincipalRefArgs {
    /// The principal's name or ID.
    #[arg(value_name = "NAME|ID", value_parser = principal_ref)]
    pub principal: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; its secret is printed this once.
    Create(TokenCreateArgs),
    /// List API tokens (never their secrets).
    List(TokenListArgs),
    /// Revoke an API token: it stops working at once.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// Whose token (name or ID; default: yourself).
    #[arg(long, value_name = "NAME|ID", value_parser = principal_ref)]
    pub principal: Option<String>,
    /// A label to tell it by (default: cli- and the time).
    #[arg(long, value_name = "LABEL", value_parser = token_name)]
    pub name: Option<String>,
    /// Days until it expires (default: the server's, 90).
    #[arg(long, value_name = "DAYS", value_parser = expiry_days, conflicts_with = "expires_on")]
    pub expires_in: Option<i64>,
    /// When it expires (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = crate::spec::rfc3339)]
    pub expires_on: Option<time::OffsetDateTime>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    /// Whose tokens (name or ID; default: yours).
    #[arg(long, value_name = "NAME|ID", value_parser = principal_ref)]
    pub principal: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's ID (from `ajar token list`).
    #[arg(value_name = "TOKEN_ID", value_parser = token_id)]
    pub id: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// List role definitions, built-in and custom.
    List(RoleListArgs),
    /// Show one role definition.
    Show(RoleRefArgs),
    /// Create a custom role from a role file (Azure CLI or ARM shape); a GUID is made when it has no Id.
    Create(RoleFileArgs),
    /// Replace a custom role from a role file naming it by Id or Name.
    Update(RoleFileArgs),
    /// Delete a custom role.
    Delete(RoleRefArgs),
    /// Assign a role to a principal at a scope.
    Assign(RoleAssignArgs),
    /// Remove a role assignment: by its ID, or by principal, role and scope.
    Unassign(RoleUnassignArgs),
    /// List role assignments at, above and below a scope.
    Assignments(RoleAssignmentsArgs),
    /// Create the least-privileged custom role for requesting JIT access.
    CreateRequester(RoleCreateRequesterArgs),
}

#[derive(Debug, Args)]
pub struct RoleListArgs {
    /// Only custom roles.
    #[arg(long)]
    pub custom: bool,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct RoleRefArgs {
    /// The role's name or GUID.
    #[arg(value_name = "NAME|GUID")]
    pub role: RoleRef,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct RoleFileArgs {
    /// The role file (JSON): `az role definition create`'s shape or the ARM resource.
    #[arg(long, value_name = "ROLE.json")]
    pub file: PathBuf,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct RoleAssignArgs {
    /// Who (name or ID).
    #[arg(long, value_name = "NAME|ID", value_parser = principal_ref)]
    pub principal: String,
    /// Which role (name or GUID).
    #[arg(long, value_name = "NAME|GUID")]
    pub role: RoleRef,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct RoleUnassignArgs {
    /// The assignment's GUID or full ID.
    #[arg(value_name = "ASSIGNMENT_ID", required_unless_present_all = ["principal", "role"], conflicts_with_all = ["principal", "role"])]
    pub assignment: Option<AssignmentRef>,
    /// Who (name or ID); with --role.
    #[arg(long, value_name = "NAME|ID", value_parser = principal_ref, requires = "role")]
    pub principal: Option<String>,
    /// Which role (name or GUID); with --principal.
    #[arg(long, value_name = "NAME|GUID", requires = "principal")]
    pub role: Option<RoleRef>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct RoleAssignmentsArgs {
    /// Only this principal's (name or ID).
    #[arg(long, value_name = "NAME|ID", value_parser = principal_ref)]
    pub principal: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct RoleCreateRequesterArgs {
    /// Leave out what only the portal's VM pages need (reading machines and networks).
    #[arg(long)]
    pub api_only: bool,
    /// The role's name (default: the server's, "JIT Network Access Requester (custom)" or "(API only)").
    #[arg(long, value_name = "NAME", value_parser = role_name)]
    pub name: Option<String>,
    /// Where it is assignable (default: the server's default subscription).
    #[arg(long, value_name = "SCOPE", value_parser = scope_arg)]
    pub scope: Option<Scope>,
    #[command(flatten)]
    pub conn: Conn,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ajar").chain(args.iter().copied()))
    }

    #[test]
    fn serve_flags() {
        let Command::Serve(s) = parse(&["serve", "--data-dir", "/d"]).unwrap().command else { panic!() };
        assert_eq!(s.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(s.page_size, 100);
        assert_eq!(s.max_body_bytes, 1024 * 1024);
        assert_eq!(s.min_max_request_duration.to_string(), "PT5M");
        assert_eq!(s.max_max_request_duration.to_string(), "P1D");
        assert_eq!(s.resource_group.as_str(), "default");
        assert_eq!(s.location.as_str(), "local");
        assert!(parse(&["serve", "--data-dir", "/d", "--tls-cert", "c"]).is_err());
        assert!(parse(&["serve", "--data-dir", "/d", "--page-size", "0"]).is_err());
        assert!(parse(&["serve", "--data-dir", "/d", "--min-max-request-duration", "5m"]).is_err());
        assert!(parse(&["serve", "--data-dir", "/d", "--subscription-id", "nope"]).is_err());
        assert!(parse(&["serve", "--data-dir", "/d", "--tls-cert", "c", "--tls-key", "k", "--san", "x"]).is_err());
        assert!(parse(&["serve", "--data-dir", "/d", "--tls-cert", "c", "--tls-key", "k"]).is_ok());
        assert_eq!((s.max_connections, s.max_connections_per_address), (4096, 256));
        assert_eq!((s.tls_handshake_timeout, s.header_read_timeout), (10, 10));
        let Command::Serve(s) =
            parse(&["serve", "--data-dir", "/d", "--max-connections", "8", "--header-read-timeout", "2"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!((s.max_connections, s.header_read_timeout), (8, 2));
        for bad in [
            &["--max-connections", "0"][..],
            &["--max-connections", "many"],
            &["--max-connections", "2000000"],
            &["--max-connections-per-address", "0"],
            &["--tls-handshake-timeout", "0"],
            &["--tls-handshake-timeout", "1.5"],
            &["--header-read-timeout", "3601"],
        ] {
            let err = parse(&[&["serve", "--data-dir", "/d"][..], bad].concat()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            assert!(err.to_string().contains(bad[0]), "{bad:?}: {err}");
        }
    }

    #[test]
    fn client_flags() {
        let Command::Request(r) = parse(&["request", "web1", "--port", "22,3389", "--for", "1h"]).unwrap().command else { panic!() };
        assert_eq!(r.ports, vec![22, 3389]);
        assert_eq!(r.from, SourceArg::MyIp);
        assert!(parse(&["request", "web1", "--port", "22", "--for", "1h", "--until", "2026-01-01T00:00:00Z"]).is_err());
        assert!(parse(&["request", "web1"]).is_err());
        let Command::Revoke(r) = parse(&["revoke", "web1", "--port", "22,3389", "--port", "22"]).unwrap().command else { panic!() };
        assert_eq!(r.ports, vec![22, 3389, 22]);
        assert!(parse(&["revoke", "web1"]).is_err());
        assert!(parse(&["revoke", "web1", "--port", "0"]).is_err());
        assert!(parse(&["policy", "enable", "web1"]).is_err());
        assert!(parse(&["policy", "enable", "web1", "--defaults", "--port", "22"]).is_err());
        assert!(parse(&["policy", "enable", "web1", "web2", "--defaults", "-o", "json"]).is_ok());
        assert!(parse(&["policy", "set", "web1", "--port", "22/tcp,from=10.0.0.0/8,max=PT1H"]).is_ok());
        assert!(parse(&["policy", "set", "web1", "--port", "22/icmp"]).is_err());
        assert!(parse(&["status", "--state", "not-configured"]).is_ok());
        assert!(parse(&["activity", "--since", "7d", "--format", "csv"]).is_ok());
        let Command::Activity(a) = parse(&["activity", "verify", "-o", "json"]).unwrap().command else { panic!() };
        assert!(matches!(a.command, Some(ActivityCommand::Verify(ActivityVerifyArgs { conn: Conn { output: OutputFormat::Json, .. } }))));
        assert!(parse(&["activity", "--vm", "web1", "verify"]).is_err(), "the log's filters are not the check's");
        assert!(parse(&["vm", "add", "web1", "--os", "linux", "--address", "10.0.0.4", "--address", "10.0.0.5"]).is_ok());
        assert!(parse(&["vm", "add", "web1", "--os", "beos"]).is_err());
    }

    #[test]
    fn identity_flags() {
        assert!(parse(&["whoami", "-o", "json"]).is_ok());
        let Command::Principal(PrincipalCommand::Add(a)) = parse(&["principal", "add", "alice"]).unwrap().command else { panic!() };
        assert_eq!((a.name.as_str(), a.kind, a.oidc_issuer), ("alice", PrincipalKindArg::User, None));
        assert!(
            parse(&["principal", "add", "ci", "--kind", "service", "--oidc-issuer", "https://a.example", "--oidc-subject", "s"]).is_ok()
        );
        assert!(parse(&["principal", "list"]).is_ok());
        assert!(parse(&["principal", "remove", "alice"]).is_ok());
        assert!(parse(&["token", "list", "--principal", "alice"]).is_ok());
        assert!(parse(&["token", "revoke", "0190a1b2-0000-7000-8000-000000000001"]).is_ok());
        for bad in [
            &["principal", "add"][..],
            &["principal", "add", ""],
            &["principal", "add", "a\tb"],
            &["principal", "add", "alice", "--kind", "group"],
            &["principal", "add", "alice", "--oidc-issuer", "https://a.example"],
            &["principal", "add", "alice", "--oidc-subject", "s"],
            &["principal", "add", "alice", "--oidc-issuer", "login.example.com", "--oidc-subject", "s"],
            &["principal", "add", "alice", "--oidc-issuer", "ftp://a.example", "--oidc-subject", "s"],
            &["principal", "remove"],
            &["token", "revoke"],
            &["token", "revoke", " "],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
        let long = "x".repeat(129);
        assert!(parse(&["principal", "add", &long]).is_err());
        assert_eq!(expiry_days("365"), Ok(365));
        assert!(expiry_days("-1").is_err());
    }

    #[test]
    fn demo_flags() {
        let Command::Demo(d) = parse(&["demo"]).unwrap().command else { panic!() };
        assert!(d.command.is_none());
        assert_eq!(d.dir, PathBuf::from("ajar-demo"));
        let Command::Demo(d) = parse(&["demo", "connect", "web1", "22", "--dir", "/x"]).unwrap().command else { panic!() };
        assert_eq!(d.dir, PathBuf::from("/x"));
        assert!(matches!(d.command, Some(DemoCommand::Connect(DemoConnectArgs { port: 22, .. }))));
        let Command::Demo(d) = parse(&["demo", "run", "--", "request", "web1", "--port", "22"]).unwrap().command else { panic!() };
        let Some(DemoCommand::Run(r)) = d.command else { panic!() };
        assert_eq!(r.args, ["request", "web1", "--port", "22"]);
        assert!(parse(&["demo", "run"]).is_err());
        assert!(parse(&["demo", "connect", "web1", "0"]).is_err());
    }
}
