//! First start: a subscription, resource group and location to work in, an
//! admin token and an agent join token, written to `DATA_DIR/bootstrap.json`
//! (mode 0600) for the operator. Later starts reuse them.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use ajar_api::bootstrap::{BootstrapFile, FILE_NAME};
use ajar_store::{BootstrapPlan, Store, Subscription};

use crate::auth::hash_token;
use crate::config::ServeConfig;

/// A fresh secret: 256 random bits, base64url.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh token: a [`random_secret`] with a prefix that says what it is.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}_{}", random_secret())
}

pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Writes the file readable only by its owner: it holds the admin token.
fn write_private(path: &Path, file: &BootstrapFile) -> anyhow::Result<()> {
    let bytes = file.render().context("encoding the bootstrap file")?;
    Ok(crate::tls::write_atomic(path, &bytes, 0o600)?)
}

/// Creates the bootstrap records on first start; on later starts keeps them and
/// refreshes the file's `url` and `ca`, which may change between starts.
pub async fn ensure(store: &dyn Store, config: &ServeConfig, url: &str, ca: &Path) -> anyhow::Result<()> {
    let path = config.data_dir.join(FILE_NAME);
    let ca = ca.canonicalize().unwrap_or_else(|_| ca.to_owned()).display().to_string();
    if store.defaults().await?.is_some() {
        match fs::read(&path) {
            Ok(bytes) => {
                let mut file = BootstrapFile::parse(&bytes).with_context(|| format!("reading {}", path.display()))?;
                if file.url.as_deref() != Some(url) || file.ca.as_ref() != Some(&ca) {
                    file.url = Some(url.to_owned());
                    file.ca = Some(ca);
                    write_private(&path, &file)?;
                }
            }
            Err(_) => {
                tracing::warn!(path = %path.display(), "the bootstrap file is gone; its tokens still work, but cannot be shown again")
            }
        }
        return Ok(());
    }
    let subscription = config
        .first_start
        .subscription
        .clone()
        .map_or_else(|| uuid::Uuid::new_v4().to_string().parse(), Ok)
        .context("making a subscription ID")?;
    let admin_token = new_token("ajar");
    let join_token = new_token("ajarjoin");
    let file = BootstrapFile {
        url: Some(url.to_owned()),
        ca: Some(ca),
        subscription_id: Some(subscription.to_string()),
        resource_group: Some(config.first_start.resource_group.to_string()),
        location: Some(config.first_start.location.to_string()),
        admin_token: Some(admin_token.clone()),
        join_token: Some(join_token.clone()),
    };
    // The file first: if the process dies before the store commits, the next
    // start finds no records and writes both again.
    write_private(&path, &file)?;
    store
        .bootstrap(BootstrapPlan {
            subscription: Subscription { id: subscription.clone(), display_name: "ajar".to_owned() },
            resource_group: config.first_start.resource_group.clone(),
            location: config.first_start.location.clone(),
            admin_name: "admin".to_owned(),
            admin_token_hash: hash_token(&admin_token),
            join_token_hash: hash_token(&join_token),
        })
        .await?;
    eprintln!(
        "First start: created subscription {} (resource group '{}', location '{}'), an admin token and an agent join token.\n\
         They are in {} (readable only by you). Use them with:\n  export AJAR_BOOTSTRAP={}\n  ajar vm add web1 --os linux --address 10.0.0.4\n  ajar policy enable web1 --defaults\n  ajar request web1 --port 22 --for 1h",
        subscription,
        config.first_start.resource_group,
        config.first_start.location,
        path.display(),
        path.display()
    );
    Ok(())
}
