//! Wakes the agents whose machine's desired state may have changed, so a grant
//! reaches its machine as soon as it is stored, not on a polling interval.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// One watch channel per machine key while an agent waits on it, so the map holds at most one entry per
/// waiting request (each an authenticated agent's, for its own machine). `None` once the server is
/// shutting down.
pub struct ChangeHub {
    channels: Mutex<Option<HashMap<String, watch::Sender<u64>>>>,
    /// Machine key → the channel key of the waiting gateway in front of it, so a change to a machine
    /// also wakes its gateway. Held only while that gateway waits.
    routes: Mutex<HashMap<String, String>>,
}

impl Default for ChangeHub {
    fn default() -> Self {
        ChangeHub { channels: Mutex::new(Some(HashMap::new())), routes: Mutex::new(HashMap::new()) }
    }
}

/// A waiter's view of one machine's changes; the machine's channel goes when its last waiter does.
pub struct Subscription {
    hub: Arc<ChangeHub>,
    vm_key: String,
    receiver: watch::Receiver<u64>,
}

impl Deref for Subscription {
    type Target = watch::Receiver<u64>;
    fn deref(&self) -> &Self::Target {
        &self.receiver
    }
}

impl DerefMut for Subscription {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.receiver
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self.hub.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Subscribing takes the same lock, so nobody joins between the count and the removal.
        if let Some(map) = channels.as_mut()
            && map.get(&self.vm_key).is_some_and(|tx| tx.receiver_count() <= 1)
        {
            map.remove(&self.vm_key);
            let mut routes = self.hub.routes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            routes.retain(|_, to| *to != self.vm_key);
        }
    }
}

impl ChangeHub {
    /// A receiver that sees this machine's changes. Once the hub is closed it
    /// is closed too, so a waiter answers at once.
    pub fn subscribe(self: &Arc<Self>, vm_key: &str) -> Subscription {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let receiver = match channels.as_mut() {
            Some(map) => map.entry(vm_key.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe(),
            None => watch::channel(0).1,
        };
        Subscription { hub: Arc::clone(self), vm_key: vm_key.to_owned(), receiver }
    }

    /// A receiver for a gateway (its `GatewayName::id_key`) that also sees the changes of the machines behind
    /// it (`served`, their keys), for as long as it waits.
    pub fn subscribe_gateway(self: &Arc<Self>, key: &str, served: Vec<String>) -> Subscription {
        let subscription = self.subscribe(key);
        let mut routes = self.routes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        routes.retain(|_, to| to != key);
        routes.extend(served.into_iter().map(|vm| (vm, key.to_owned())));
        subscription
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
            let routes = self.routes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for key in vm_keys {
                for key in std::iter::once(key).chain(routes.get(key)) {
                    if let Some(tx) = channels.get(key) {
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
        }
    }

    /// Machines with a waiting agent.
    pub fn channels(&self) -> usize {
        self.channels.lock().map(|c| c.as_ref().map_or(0, HashMap::len)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_channel_lasts_while_someone_waits_on_it() {
        let hub = Arc::new(ChangeHub::default());
        let first = hub.subscribe("vm1");
        let mut second = hub.subscribe("vm1");
        let other = hub.subscribe("vm2");
        assert_eq!(hub.channels(), 2);
        drop(first);
        assert_eq!(hub.channels(), 2, "vm1 still has a waiter");
        hub.notify([&"vm1".to_owned()]);
        assert!(second.has_changed().unwrap(), "and it still sees changes");
        second.borrow_and_update();
        drop(second);
        drop(other);
        assert_eq!(hub.channels(), 0);
        for i in 0..1_000 {
            let _waiter = hub.subscribe(&format!("vm{i}"));
        }
        assert_eq!(hub.channels(), 0, "nothing stays behind");
    }

    #[tokio::test]
    async fn a_gateway_sees_the_changes_of_the_machines_behind_it() {
        let hub = Arc::new(ChangeHub::default());
        let mut gateway = hub.subscribe_gateway("gateway:gw", vec!["vm1".into(), "vm2".into()]);
        hub.notify([&"vm3".to_owned()]);
        assert!(!gateway.has_changed().unwrap(), "not its machine");
        hub.notify([&"vm2".to_owned()]);
        assert!(gateway.has_changed().unwrap());
        gateway.borrow_and_update();
        drop(gateway);
        assert!(hub.routes.lock().unwrap().is_empty(), "routes go with the last waiter");
    }

    #[tokio::test]
    async fn closing_ends_every_wait_now() {
        let hub = Arc::new(ChangeHub::default());
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
