//! Role-based access control in the server: one [`AccessIndex`] of every role and assignment, rebuilt
//! only when the store's access version moves (any write to principals, tokens, roles or assignments),
//! and asked on every request.

use std::sync::{Arc, RwLock};

use ajar_domain::access::{AccessIndex, Decision, Scope};
use ajar_store::{Store, StoreError};

pub struct Access {
    store: Arc<dyn Store>,
    cached: RwLock<Option<(u64, Arc<AccessIndex>)>>,
}

impl Access {
    pub fn new(store: Arc<dyn Store>) -> Access {
        Access { store, cached: RwLock::new(None) }
    }

    /// The index as of the store's current access version.
    pub async fn index(&self) -> Result<Arc<AccessIndex>, StoreError> {
        let version = self.store.access_version();
        if let Ok(cached) = self.cached.read()
            && let Some((v, index)) = cached.as_ref()
            && *v == version
        {
            return Ok(Arc::clone(index));
        }
        let snapshot = self.store.access_snapshot().await?;
        let index = Arc::new(AccessIndex::new(&snapshot.roles, &snapshot.assignments));
        if let Ok(mut cached) = self.cached.write() {
            // Keep the newer of two concurrent rebuilds.
            if cached.as_ref().is_none_or(|(v, _)| *v <= snapshot.version) {
                *cached = Some((snapshot.version, Arc::clone(&index)));
            }
        }
        Ok(index)
    }

    pub async fn check(&self, principals: &[&str], action: &str, scope: &Scope) -> Result<Decision, StoreError> {
        Ok(self.index().await?.check(principals, action, scope))
    }
}
