//! Wakes the agents whose machine's desired state may have changed, so a grant
//! reaches its machine as soon as it is stored, not on a polling interval.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// One watch channel per machine key, made when an agent first waits on it.
#[derive(Default)]
pub struct ChangeHub {
    channels: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl ChangeHub {
    pub fn subscribe(&self, vm_key: &str) -> watch::Receiver<u64> {
        match self.channels.lock() {
            Ok(mut channels) => channels.entry(vm_key.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe(),
            // A poisoned map only means a panic elsewhere; a fresh channel still
            // lets the waiter time out and poll again.
            Err(_) => watch::channel(0).1,
        }
    }

    /// Marks these machines changed; waiters on them wake.
    pub fn notify<'a>(&self, vm_keys: impl IntoIterator<Item = &'a String>) {
        if let Ok(channels) = self.channels.lock() {
            for key in vm_keys {
                if let Some(tx) = channels.get(key) {
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
    }
}
