//! Keeps grant statuses true to the clock: a live grant becomes
//! Revoked/Expired at its end time even if nobody reads it, including grants
//! that ended while the server was down (caught up at start).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use ajar_store::Store;

/// Longest sleep between checks, so a clock jump is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Pause after a store error before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// When the scheduler will next look, and a way to make it look sooner. Only a
/// grant that ends before then wakes it, so initiates do not cost it work.
#[derive(Default)]
pub struct ExpiryWake {
    notify: Notify,
    /// Unix milliseconds of the next look; `i64::MAX` while it is deciding, so
    /// that every new grant wakes it then.
    next_ms: AtomicI64,
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    // Saturates below the "deciding" value, so a far-future grant still wakes a deciding scheduler.
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX - 1)
}

impl ExpiryWake {
    /// A live grant ending at `end` was stored.
    pub fn grant_ends_at(&self, end: OffsetDateTime) {
        if unix_ms(end) < self.next_ms.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }
}

pub async fn run(store: Arc<dyn Store>, wake: Arc<ExpiryWake>, mut stop: watch::Receiver<bool>) {
    loop {
        // While deciding, every new grant wakes it, so none is missed.
        wake.next_ms.store(i64::MAX, Ordering::SeqCst);
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
        let next = OffsetDateTime::now_utc() + sleep;
        wake.next_ms.store(unix_ms(next), Ordering::SeqCst);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notify.notified() => {}
            _ = stop.changed() => return,
        }
    }
}
