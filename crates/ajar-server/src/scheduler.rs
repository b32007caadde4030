//! Keeps grant statuses true to the clock: a live grant becomes
//! Revoked/Expired at its end time even if nobody reads it, including grants
//! that ended while the server was down (caught up at start).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use ajar_store::Store;

/// Longest sleep between checks, so a clock jump is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Pause after a store error before trying again.
const RETRY: Duration = Duration::from_secs(1);

pub async fn run(store: Arc<dyn Store>, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        let expired = store.expire_due().await;
        match &expired {
            Ok(0) => {}
            Ok(n) => tracing::info!(grants = n, "grants expired"),
            Err(e) => tracing::error!(error = %e, "expiring grants failed"),
        }
        let sleep = match store.next_expiry().await {
            _ if expired.is_err() => RETRY,
            Ok(Some(end)) => {
                let left = end - OffsetDateTime::now_utc();
                Duration::try_from(left).unwrap_or(Duration::ZERO).min(MAX_SLEEP)
            }
            Ok(None) => MAX_SLEEP,
            Err(e) => {
                tracing::error!(error = %e, "finding the next expiry failed");
                RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}
