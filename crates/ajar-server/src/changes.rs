//! Wakes the agents whose machine's desired state may have changed, so a grant
//! reaches its machine as soon as it is stored, not on a polling interval.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// One watch channel per machine key, made when an agent first waits on it.
/// `None` once the server is shutting down.
pub struct ChangeHub {
    channels: Mutex<Option<HashMap<String, watch::Sender<u64>>>>,
}

impl Default for ChangeHub {
    fn default() -> Self {
        ChangeHub { channels: Mutex::new(Some(HashMap::new())) }
    }
}

impl ChangeHub {
    /// A receiver that sees this machine's changes. Once the hub is closed it
    /// is closed too, so a waiter answers at once.
    pub fn subscribe(&self, vm_key: &str) -> watch::Receiver<u64> {
        match self.channels.lock() {
            Ok(mut channels) => match channels.as_mut() {
                Some(map) => map.entry(vm_key.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe(),
                None => watch::channel(0).1,
            },
            // A poisoned map only means a panic elsewhere; a fresh channel still
            // lets the waiter time out and poll again.
            Err(_) => watch::channel(0).1,
        }
    }

    /// At shutdown: ends every wait now (the waiters answer with the current
    /// state), so long-polls do not hold the graceful drain until its timeout.
    pub fn close(&self) {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Dropping the senders closes every receiver.
        *channels = None;
    }

    /// Marks these machines changed; waiters on them wake.
    pub fn notify<'a>(&self, vm_keys: impl IntoIterator<Item = &'a String>) {
        if let Ok(channels) = self.channels.lock()
            && let Some(channels) = channels.as_ref()
        {
            for key in vm_keys {
                if let Some(tx) = channels.get(key) {
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_ends_every_wait_now() {
        let hub = ChangeHub::default();
        let mut before = hub.subscribe("vm1");
        hub.notify([&"vm1".to_owned()]);
        assert!(before.changed().await.is_ok(), "a change wakes the waiter");
        hub.close();
        let mut after = hub.subscribe("vm1");
        let ended =
            tokio::time::timeout(std::time::Duration::from_secs(1), async { (before.changed().await, after.changed().await) }).await;
        let (a, b) = ended.expect("waits end at once after close");
        assert!(a.is_err() && b.is_err());
        hub.notify([&"vm1".to_owned()]);
    }
}
