//! `ajar agent`: runs on each guarded machine. It enrols once (the join token
//! only enrols; the agent then holds its own credential), follows its machine's
//! desired state by long-poll, applies it with nftables as one atomic change,
//! repairs drift, and reports what it applied.
//!
//! Fail closed: while the server is unreachable the table stays as it is, so
//! ports stay closed except for grants already held, which the kernel ends on
//! time. After a restart without the server, only grants that have not ended
//! are restored.

mod convert;
mod server;
mod state;

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;

use ajar_api::agent::{CutDone, CutOut, EnrollIn, GatewayEnrollIn, NftablesStatus, ReportIn};
use ajar_enforce::{Applied, Conntrack, Cut, Firewall, drift_reasons};

pub use server::ServerClient;
use state::Saved;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How often the agent checks its table for changes made by hand.
const DRIFT_CHECK_EVERY: Duration = Duration::from_secs(2);
/// How often it reports when nothing else happens (its heartbeat).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub join_token: Option<String>,
    pub name: String,
    pub resource_group: Option<String>,
    pub location: Option<String>,
    pub os_type: String,
    pub state_dir: PathBuf,
    /// Set when this agent enforces a gateway in front of machines rather than its own machine.
    pub gateway: Option<GatewayConfig>,
}

/// A gateway's enrolment: where clients connect, and the ports it may map from (`FIRST-LAST`; the
/// server's default when `None`).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub public_addresses: Vec<IpAddr>,
    pub mapped_ports: Option<String>,
}

fn now_ms() -> i128 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
}

/// The machine's own addresses, loopback aside.
fn addresses() -> Vec<String> {
    if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.into_iter()
                .filter(|i| !i.is_loopback())
                .map(|i| i.ip())
                .filter(|ip: &IpAddr| !ip.is_unspecified())
                .map(|ip| ip.to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn nftables_status(usable: &Result<(), String>) -> NftablesStatus {
    NftablesStatus { usable: usable.is_ok(), reason: usable.clone().err() }
}

struct Agent {
    config: AgentConfig,
    client: ServerClient,
    firewall: Arc<dyn Firewall + Send + Sync>,
    conntrack: Conntrack,
    nftables: Result<(), String>,
    /// What is applied now; one lock also serialises changes to the table.
    current: Mutex<Option<Saved>>,
}

impl Agent {
    fn report_body(&self, drift: Option<String>, cuts_done: Vec<CutDone>) -> ReportIn {
        let applied = self.current.lock().ok().and_then(|c| c.as_ref().map(|s| s.etag.clone()));
        ReportIn {
            version: VERSION.to_owned(),
            nftables: nftables_status(&self.nftables),
            addresses: addresses(),
            applied_etag: applied,
            drift_repaired: drift,
            cuts_done,
        }
    }

    /// Cuts the established connections of grants revoked early, after their elements are gone, and
    /// remembers each cut as done (also on disk). Blocking: runs `conntrack`.
    fn cut_connections(&self, pending: Vec<(CutOut, Cut)>) -> anyhow::Result<Vec<CutDone>> {
        let mut current = self.current.lock().map_err(|_| anyhow::anyhow!("agent state poisoned"))?;
        let Some(saved) = current.as_mut() else { return Ok(Vec::new()) };
        let mut done = Vec::new();
        for (out, cut) in pending {
            let (connections, error) = match self.conntrack.cut(&cut) {
                Ok(n) => (n, None),
                Err(e) => (0, Some(e.to_string())),
            };
            match &error {
                None => tracing::info!(request = %out.request_id, port = out.number, connections, "cut established connections"),
                Some(e) => {
                    tracing::error!(request = %out.request_id, port = out.number, error = %e, "could not cut established connections")
                }
            }
            saved.cuts_done.push(out.id.clone());
            done.push(CutDone { id: out.id, request_id: out.request_id, number: out.number, connections, error });
        }
        if let Err(e) = state::save_desired(&self.config.state_dir, saved) {
            tracing::warn!(error = %e, "could not save the cuts done; a restart may cut them again");
        }
        Ok(done)
    }

    /// Applies `saved` (as of now) and makes it current. Blocking: runs `nft`.
    ///
    /// With a current state, only the grant elements that changed are sent (one transaction; the firewall
    /// falls back to replacing the table when that is not possible). Both states are placed at the same
    /// instant so that an element is kept exactly when its end is unchanged. Without one (first apply,
    /// restore after a restart) the whole table is replaced.
    fn apply(&self, saved: Saved) -> anyhow::Result<()> {
        let mut current = self.current.lock().map_err(|_| anyhow::anyhow!("agent state poisoned"))?;
        let now = now_ms();
        let to = convert::enforce_at(&saved, now);
        match current.as_ref() {
            Some(prev) => {
                let from = convert::enforce_at(prev, now);
                match self.firewall.apply_change(&from, &to).context("applying the desired state")? {
                    Applied::Full { why } => tracing::info!(reason = %why, "replaced table inet ajar"),
                    applied => tracing::debug!(?applied, "changed table inet ajar"),
                }
            }
            None => self.firewall.apply(&to).context("applying the desired state")?,
        }
        if let Err(e) = state::save_desired(&self.config.state_dir, &saved) {
            tracing::warn!(error = %e, "could not save the applied state; a restart without the server would start closed");
        }
        *current = Some(saved);
        Ok(())
    }

    /// Removes the grants that ended after `since_ms` now, at their end, rather than
    /// when the kernel's whole-second timeout runs out. Returns the time it looked.
    fn close_ended(&self, since_ms: i128) -> anyhow::Result<i128> {
        let current = self.current.lock().map_err(|_| anyhow::anyhow!("agent state poisoned"))?;
        let now = now_ms();
        let Some(saved) = current.as_ref() else { return Ok(now) };
        if convert::next_end(saved, since_ms).is_none_or(|end| end > now) {
            return Ok(now);
        }
        let from = convert::enforce_with_ended(saved, now, since_ms);
        let to = convert::enforce_at(saved, now);
        self.firewall.apply_change(&from, &to).context("closing ended grants")?;
        Ok(now)
    }

    fn next_end(&self, after_ms: i128) -> Option<i128> {
        self.current.lock().ok().and_then(|c| c.as_ref().and_then(|s| convert::next_end(s, after_ms)))
    }

    /// Re-applies the current state if the table differs from it. Returns what was found.
    fn repair_drift(&self) -> anyhow::Result<Option<String>> {
        let current = self.current.lock().map_err(|_| anyhow::anyhow!("agent state poisoned"))?;
        let Some(saved) = current.as_ref() else { return Ok(None) };
        let desired = convert::enforce_at(saved, now_ms());
        let reasons = match self.firewall.read_own().context("reading table inet ajar")? {
            None => vec!["table inet ajar is missing".to_owned()],
            Some(observed) => drift_reasons(&observed, &desired),
        };
        if reasons.is_empty() {
            return Ok(None);
        }
        self.firewall.apply(&desired).context("repairing table inet ajar")?;
        Ok(Some(reasons.join("; ")))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await.context("a blocking task failed")?
}

/// Enrols if the state directory holds no credential yet.
async fn credential(config: &AgentConfig, client: &ServerClient, nftables: &Result<(), String>) -> anyhow::Result<state::Credential> {
    if let Some(c) = state::load_credential(&config.state_dir)? {
        return Ok(c);
    }
    let join =
        config.join_token.as_deref().context("this agent is not enrolled yet: give --join-token (the server's bootstrap.json has it)")?;
    let enrolled = client
        .enroll(
            join,
            &EnrollIn {
                name: config.name.clone(),
                resource_group: config.resource_group.clone(),
                location: config.location.clone(),
                os_type: config.os_type.clone(),
                addresses: addresses(),
                version: VERSION.to_owned(),
                nftables: nftables_status(nftables),
                gateway: config.gateway.as_ref().map(|g| GatewayEnrollIn {
                    public_addresses: g.public_addresses.iter().map(ToString::to_string).collect(),
                    mapped_ports: g.mapped_ports.clone(),
                }),
            },
        )
        .await?;
    let c = state::Credential { agent_id: enrolled.agent_id, token: enrolled.token, vm_id: enrolled.vm_id, gateway: enrolled.gateway };
    state::save_credential(&config.state_dir, &c)?;
    match (&c.vm_id, &c.gateway) {
        (_, Some(gateway)) => tracing::info!(%gateway, agent = %c.agent_id, "enrolled as a gateway"),
        (vm, None) => tracing::info!(vm = vm.as_deref().unwrap_or_default(), agent = %c.agent_id, "enrolled"),
    }
    Ok(c)
}

/// Runs the agent until `shutdown` resolves. The table stays in place when it
/// stops: grants keep their kernel timeouts and everything else stays closed.
pub async fn run(
    config: AgentConfig,
    firewall: Arc<dyn Firewall + Send + Sync>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    state::create_dir(&config.state_dir)?;
    let nftables = blocking({
        let firewall = firewall.clone();
        move || Ok(firewall.usable())
    })
    .await?;
    if let Err(why) = &nftables {
        tracing::error!(reason = %why, "nftables is unusable here; this machine will show as Unsupported");
    }
    let client = ServerClient::new(&config.server, &config.ca_pem)?;
    let cred = credential(&config, &client, &nftables).await?;
    let client = client.with_token(&cred.token);
    let agent =
        Arc::new(Agent { config: config.clone(), client, firewall, conntrack: Conntrack::new(), nftables, current: Mutex::new(None) });

    // Restore what was applied before, minus the grants that have ended.
    if agent.nftables.is_ok()
        && let Some(saved) = state::load_desired(&config.state_dir)?
    {
        let now = now_ms();
        // A gateway's mappings are its grants.
        let ends: Vec<i128> =
            saved.grants.iter().map(|g| g.end_ms).chain(saved.gateway.iter().flat_map(|g| g.mappings.iter().map(|m| m.end_ms))).collect();
        let live = ends.iter().filter(|end| **end > now).count();
        let ended = ends.len() - live;
        let a = Arc::clone(&agent);
        match blocking(move || a.apply(saved)).await {
            Ok(()) => tracing::info!(live, ended, "restored the saved state, without the grants that have ended"),
            Err(e) => tracing::error!(error = %e, "could not restore the saved state"),
        }
    }

    let (reports, to_report) = tokio::sync::mpsc::unbounded_channel();
    let follow = follow(Arc::clone(&agent), reports);
    let watch = watch(Arc::clone(&agent));
    tokio::select! {
        _ = shutdown => tracing::info!("agent stopping; the table stays in force"),
        r = follow => r?,
        r = watch => r?,
        () = report_applied(Arc::clone(&agent), to_report) => {}
    }
    Ok(())
}

/// Reports what was applied, apart from following: the next change is fetched while the report is on
/// its way, rather than after it (a write on the server). Reports queued meanwhile go as one, saying
/// the newest applied state and every cut done.
async fn report_applied(agent: Arc<Agent>, mut queue: tokio::sync::mpsc::UnboundedReceiver<Vec<CutDone>>) {
    while let Some(mut cuts_done) = queue.recv().await {
        while let Ok(more) = queue.try_recv() {
            cuts_done.extend(more);
        }
        if let Err(e) = agent.client.report(&agent.report_body(None, cuts_done)).await {
            tracing::warn!(error = %e, "report failed");
        }
    }
}

/// Follows the desired state: applies each new version and has it reported.
async fn follow(agent: Arc<Agent>, reports: tokio::sync::mpsc::UnboundedSender<Vec<CutDone>>) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(500);
    loop {
        let etag = agent.current.lock().ok().and_then(|c| c.as_ref().map(|s| s.etag.clone()));
        match agent.client.desired_state(etag.as_deref()).await {
            Ok(out) => {
                if Some(&out.etag) == etag.as_ref() || agent.nftables.is_err() {
                    backoff = Duration::from_millis(500);
                    continue;
                }
                let previous = agent.current.lock().ok().and_then(|c| c.clone());
                let saved = convert::saved_from(&out, now_ms(), previous.as_ref());
                let pending = convert::pending_cuts(&out, &saved, now_ms());
                let a = Arc::clone(&agent);
                let mut cuts_done = Vec::new();
                match blocking(move || a.apply(saved)).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(500);
                        let mappings = out.gateway.as_ref().map_or(0, |g| g.mappings.len());
                        tracing::info!(etag = %out.etag, grants = out.grants.len(), mappings, "applied");
                        if !pending.is_empty() {
                            let a = Arc::clone(&agent);
                            match blocking(move || a.cut_connections(pending)).await {
                                Ok(done) => cuts_done = done,
                                Err(e) => tracing::error!(error = %e, "cutting connections failed"),
                            }
                        }
                    }
                    Err(e) => {
                        // The next poll would return the same state at once: pause first.
                        tracing::error!(error = %e, retry_in = ?backoff, "could not apply the desired state; the table is unchanged");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
                // The reporter lives as long as this loop (both end only with the agent).
                let _ = reports.send(cuts_done);
            }
            Err(e) => {
                // Fail closed: keep the table as it is; grants end on their own.
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot reach the server; keeping the current table");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Repairs drift within seconds and sends the heartbeat.
async fn watch(agent: Arc<Agent>) -> anyhow::Result<()> {
    let mut since_report = Duration::ZERO;
    let mut last_drift_check = tokio::time::Instant::now();
    let mut checked = now_ms();
    loop {
        // Wake for the next drift check, or at the next grant's end if that is sooner.
        let mut sleep = DRIFT_CHECK_EVERY.saturating_sub(last_drift_check.elapsed());
        if let Some(end) = agent.next_end(checked) {
            sleep = sleep.min(Duration::from_millis(u64::try_from(end - now_ms()).unwrap_or(0)));
        }
        tokio::time::sleep(sleep).await;
        if agent.nftables.is_ok() {
            let a = Arc::clone(&agent);
            let since = checked;
            match blocking(move || a.close_ended(since)).await {
                Ok(looked) => checked = looked,
                Err(e) => {
                    // Move on rather than retry at once: the kernel closes them within a second.
                    tracing::error!(error = %e, "closing ended grants failed; the kernel closes them within a second");
                    checked = now_ms();
                }
            }
        }
        if last_drift_check.elapsed() < DRIFT_CHECK_EVERY {
            continue;
        }
        last_drift_check = tokio::time::Instant::now();
        since_report += DRIFT_CHECK_EVERY;
        let mut drift = None;
        if agent.nftables.is_ok() {
            let a = Arc::clone(&agent);
            match blocking(move || a.repair_drift()).await {
                Ok(Some(found)) => {
                    tracing::warn!(drift = %found, "table inet ajar was changed by hand; repaired");
                    drift = Some(found);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "drift check failed"),
            }
        }
        if drift.is_some() || since_report >= HEARTBEAT_EVERY {
            since_report = Duration::ZERO;
            if let Err(e) = agent.client.report(&agent.report_body(drift, Vec::new())).await {
                tracing::warn!(error = %e, "report failed");
            }
        }
    }
}

/// `ajar agent --uninstall`: removes table `inet ajar`, and nothing else.
pub fn uninstall(firewall: &dyn Firewall) -> anyhow::Result<()> {
    firewall.remove().context("removing table inet ajar")
}
