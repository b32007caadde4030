//! What the agent keeps in its state directory (mode 0700, files 0600): its
//! credential, so a restart does not enrol again, and the last desired state it
//! applied, with absolute end times, so a restart while the server is down
//! restores only the grants that have not ended.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub agent_id: String,
    pub token: String,
    /// The machine a host agent enforces; none for a gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// One grant as applied, with its end on this machine's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedGrant {
    pub request_id: String,
    pub number: u16,
    pub protocol: String,
    pub sources: Vec<String>,
    /// Unix time in milliseconds.
    pub end_ms: i128,
    /// The end as the server wrote it (`endTimeUtc`). While it is unchanged, `end_ms` is carried over from
    /// the previous state instead of being recomputed from the time left (which jitters by the poll's
    /// latency), so an unchanged grant keeps its element in the kernel. Empty in files from older agents.
    #[serde(default)]
    pub server_end: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub etag: String,
    /// (port, protocol as the API writes it).
    pub protected: Vec<(u16, String)>,
    pub grants: Vec<SavedGrant>,
    /// The cuts (of connections of grants revoked early) already carried out, so that a restart does not
    /// cut again connections a newer grant let in.
    #[serde(default)]
    pub cuts_done: Vec<String>,
    /// On a gateway: what it forwards and maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<SavedGateway>,
}

/// A gateway's part of the state: its public addresses, the protected ports of the machines behind it,
/// and the live mappings, with their ends on this machine's clock like grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedGateway {
    pub public: Vec<String>,
    /// (machine address, port, protocol as the API writes it).
    pub served: Vec<(String, u16, String)>,
    pub mappings: Vec<SavedMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedMapping {
    pub request_id: String,
    pub number: u16,
    pub protocol: String,
    pub mapped_port: u16,
    /// The machine's addresses (one per family is used).
    pub targets: Vec<String>,
    pub sources: Vec<String>,
    pub end_ms: i128,
    pub server_end: String,
}

const CREDENTIAL: &str = "credential.json";
const DESIRED: &str = "desired.json";

pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating the state directory {}", dir.display()))
}

fn write_private(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let bytes = serde_json::to_vec_pretty(value).context("encoding state")?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&bytes).and_then(|_| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn read<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn load_credential(dir: &Path) -> anyhow::Result<Option<Credential>> {
    read(&dir.join(CREDENTIAL))
}

pub fn save_credential(dir: &Path, c: &Credential) -> anyhow::Result<()> {
    write_private(&dir.join(CREDENTIAL), c)
}

pub fn load_desired(dir: &Path) -> anyhow::Result<Option<Saved>> {
    read(&dir.join(DESIRED))
}

pub fn save_desired(dir: &Path, s: &Saved) -> anyhow::Result<()> {
    write_private(&dir.join(DESIRED), s)
}
