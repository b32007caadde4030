//! `ajar serve`: the control plane. It holds JIT policies, access requests and
//! the VM inventory in the store, serves them over HTTPS in Azure's wire
//! contract (and ajar's own API), and keeps grant statuses true to the clock.

pub mod access;
pub mod auth;
pub mod bootstrap;
pub mod changes;
pub mod client_addr;
pub mod config;
pub mod http;
pub mod listener;
pub mod oidc;
pub mod routes;
pub mod scheduler;
pub mod sessions;
pub mod throttle;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use ajar_store::{SqliteStore, Store};

use crate::config::{ServeConfig, TlsSource};
use crate::routes::AppState;

/// How long in-flight requests may finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the server until `shutdown` resolves.
pub async fn run(config: ServeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    bootstrap::create_private_dir(&config.data_dir)?;
    let tls = match &config.tls {
        TlsSource::SelfSigned { extra_sans } => tls::ensure_self_signed(&config.data_dir, extra_sans),
        TlsSource::Given { cert, key } => tls::load_given(cert, key),
    }
    .context("preparing TLS")?;
    let db_path = config.data_dir.join("ajar.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db_path).with_context(|| format!("opening the store {}", db_path.display()))?);
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
    let local = listener.local_addr().context("reading the listening address")?;
    let url = format!("https://{}", local);
    bootstrap::ensure(store.as_ref(), &config, &url, &tls.ca_pem_path).await?;

    let mut state = AppState::new(Arc::clone(&store), &config);
    if !config.oidc.is_empty() {
        let labels = config.oidc.iter().map(|n| (n.config.issuer.clone(), n.label.clone())).collect();
        let verifier = oidc::OidcVerifier::new(config.oidc.iter().map(|n| n.config.clone()).collect()).await.context("setting up OIDC")?;
        let sign_in = oidc::signin::SignIn::new(&config.oidc, &verifier).context("setting up OIDC sign-in")?;
        state = state.with_oidc(auth::OidcAuth { verifier, labels, sign_in });
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(scheduler::run(Arc::clone(&store), state.expiry_wake(), stop_rx));
    // On shutdown, agents' long-polls answer at once instead of holding the drain.
    let changes = Arc::clone(&state.changes);
    let shutdown = async move {
        shutdown.await;
        changes.close();
    };
    let app = routes::router(state);

    tracing::info!(%url, data_dir = %config.data_dir.display(), "ajar is serving");
    // A line on stdout that scripts and tests wait for.
    println!("listening on {url}");
    let mut limits = config.connections.clone();
    listener::fit_to_open_files(&mut limits);
    let served = listener::serve_https(listener, tls.server_config, app, limits, shutdown, DRAIN_TIMEOUT).await;
    let _ = stop_tx.send(true);
    if let Err(e) = scheduler.await {
        tracing::warn!(error = %e, "the expiry scheduler ended abnormally");
    }
    tracing::info!("ajar stopped");
    served
}
