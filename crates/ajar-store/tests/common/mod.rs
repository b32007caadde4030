//! What the store's test files share: a store on a real file in `dir`, after first start.

use std::path::Path;
use std::sync::Arc;

use ajar_store::{BootstrapPlan, SqliteStore, Store, Subscription};

pub const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
pub const ADMIN_TOKEN: [u8; 32] = [1; 32];
pub const JOIN_TOKEN: [u8; 32] = [2; 32];

/// `dir/ajar.db`, bootstrapped: subscription [`SUB`], resource group `rg`, location `local`, an admin
/// holding [`ADMIN_TOKEN`] and the join token [`JOIN_TOKEN`].
pub async fn bootstrapped(dir: &Path) -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::open(&dir.join("ajar.db")).unwrap());
    store
        .bootstrap(BootstrapPlan {
            subscription: Subscription { id: SUB.parse().unwrap(), display_name: "t".into() },
            resource_group: "rg".parse().unwrap(),
            location: "local".parse().unwrap(),
            admin_name: "admin".into(),
            admin_token_hash: ADMIN_TOKEN,
            join_token_hash: JOIN_TOKEN,
        })
        .await
        .unwrap();
    store
}
