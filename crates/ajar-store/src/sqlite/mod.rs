//! SQLite behind [`Backend`].
//!
//! One writer thread owns the only writable connection and commits in groups:
//! it drains whatever operations are queued, runs each (each keeps its own
//! changes in savepoints, so a refused one rolls back alone and is logged as
//! failed) and commits once. A syncer thread then fsyncs the write-ahead log and
//! only then answers the batch, while the writer already runs the next one (it
//! holds that commit until the fsync is done). The syncer also checkpoints the
//! log. Reads run on a small pool of read-only connections, each in a read
//! transaction, which WAL lets proceed while the writer commits.

mod activity;
mod codec;
mod gateways;
mod identity;
mod inventory;
mod policies;
mod schema;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::backend::{Backend, Read, Tx, WriteKind};
use crate::{StoreError, StoreResult};
use sql::{Sql, WriterState};

/// Most operations one commit carries.
const MAX_BATCH: usize = 512;
/// Operations that may wait for the writer before callers are held back.
const QUEUE_DEPTH: usize = 8192;
/// Reads that run at once, each on its own connection. Connections are kept
/// and reused: opening one costs far more than a typical read.
const READERS: usize = 4;

pub(crate) fn backend(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{context}: {e}"))
}

/// The error of a failed statement, saying what it was for.
pub(crate) fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| backend(context, e)
}

/// A unit of work for the writer: it runs inside the batch transaction, then
/// learns whether the batch committed.
trait Job: Send {
    fn run(&mut self, tx: &Transaction<'_>, now: OffsetDateTime, state: &mut WriterState);
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct WriteJob<R, F> {
    work: Option<F>,
    outcome: Option<StoreResult<R>>,
    /// Advanced once the write has committed, if it succeeded.
    bump: Option<Arc<AtomicU64>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<R, F> Job for WriteJob<R, F>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn Tx, OffsetDateTime) -> StoreResult<R> + Send + 'static,
{
    fn run(&mut self, tx: &Transaction<'_>, now: OffsetDateTime, state: &mut WriterState) {
        let Some(work) = self.work.take() else { return };
        let mut sql = Sql::writer(tx, state);
        let outcome = work(&mut sql, now);
        sql.close();
        self.outcome = Some(outcome);
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let result = match (committed, self.outcome) {
            (Ok(()), Some(outcome)) => outcome,
            (Err(e), _) => Err(StoreError::Backend(format!("commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::Backend("the operation did not run".into())),
        };
        // Here, not in the caller: the caller may be gone, and the change is committed regardless.
        if let (Some(version), Ok(_)) = (&self.bump, &result) {
            version.fetch_add(1, Ordering::SeqCst);
        }
        // The caller may have gone away (client disconnected); the work is done regardless.
        let _ = self.reply.send(result);
    }
}

/// A committed batch on its way to disk.
struct Committed {
    jobs: Vec<Box<dyn Job>>,
    result: Result<(), String>,
}

/// Makes each committed batch durable, then answers it. It runs beside the
/// writer so that one batch's fsync overlaps the work of the next; a caller
/// hears of success only once its commit is on disk. The writer holds its next
/// commit until `synced` says the disk is free again, because writing the log
/// while it is being flushed stalls.
fn syncer_loop(wal: PathBuf, checkpoints: Connection, rx: std::sync::mpsc::Receiver<Committed>, synced: std::sync::mpsc::SyncSender<()>) {
    let mut failed: Option<String> = None;
    let mut last_checkpoint = std::time::Instant::now();
    while let Ok(batch) = rx.recv() {
        if failed.is_none()
            && batch.result.is_ok()
            && let Err(e) = std::fs::File::open(&wal).and_then(|f| f.sync_data())
        {
            tracing::error!(error = %e, path = %wal.display(), "fsync of the write-ahead log failed; refusing to acknowledge writes");
            failed = Some(format!("the write-ahead log could not be synced: {e}"));
        }
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => batch.result,
        };
        for job in batch.jobs {
            job.finish(result.clone());
        }
        // Checkpoints fsync too, so they run here, while the writer waits,
        // rather than inside its commits; often, so that each is short.
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            last_checkpoint = std::time::Instant::now();
            if let Err(e) = checkpoints.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "checkpoint failed; the writer's own checkpoints take over");
            }
        }
        if synced.send(()).is_err() {
            return;
        }
    }
}

/// How often the syncer copies the write-ahead log into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    durable: std::sync::mpsc::Sender<Committed>,
    synced: std::sync::mpsc::Receiver<()>,
) {
    let chain = match activity::chain_head(&conn) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the activity log's chain head; refusing writes");
            while let Some(job) = rx.blocking_recv() {
                job.finish(Err(e.to_string()));
            }
            return;
        }
    };
    let mut state = WriterState::new(chain);
    // Whether the syncer is still flushing the previous commit.
    let mut syncing = false;
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let now = OffsetDateTime::now_utc();
        let chain_before = state.chain;
        let committed = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => {
                for job in batch.iter_mut() {
                    job.run(&tx, now, &mut state);
                }
                if let Some(why) = state.poisoned.take() {
                    // A job's changes could not be undone: none of the batch may be kept.
                    Err(why)
                } else if syncing && synced.recv().is_err() {
                    Err("the store's syncer has stopped".to_owned())
                } else {
                    syncing = false;
                    tx.commit().map_err(|e| e.to_string())
                }
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &committed {
            tracing::error!(error = %e, jobs = batch.len(), "write batch failed");
            state.reset(chain_before);
        }
        let jobs = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        match durable.send(Committed { jobs, result: committed }) {
            Ok(()) => syncing = true,
            Err(std::sync::mpsc::SendError(lost)) => {
                for job in lost.jobs {
                    job.finish(Err("the store's syncer has stopped".into()));
                }
            }
        }
    }
}

fn open_connection(path: &Path, writable: bool) -> StoreResult<Connection> {
    let flags = if writable {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| backend(&format!("opening {}", path.display()), e))?;
    // temp_store: savepoints' statement journals stay in memory instead of a
    // temporary file per operation. cache_size (KiB when negative): room for
    // the hot pages of a large inventory.
    conn.execute_batch(
        "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384;",
    )
    .map_err(|e| backend("configuring the connection", e))?;
    // Room for every statement the store prepares, so none is parsed twice.
    conn.set_prepared_statement_cache_capacity(128);
    // One plan per statement, whatever is bound: without this, SQLite (built with STAT4) re-prepares a
    // statement whenever a parameter its plan looked at is bound anew, which is every time here, and
    // re-preparing cost more than the work. The store runs no ANALYZE, so no plan could improve.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(|e| backend("fixing query plans", e))?;
    // SQLite's lower() folds ASCII only; ARM names may hold any letter. SQL folds them as the domain's keys do.
    conn.create_scalar_function("arm_key", 1, FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        Ok(ctx.get_raw(0).as_str_or_null()?.map(ajar_domain::ids::arm_key))
    })
    .map_err(|e| backend("registering arm_key", e))?;
    if writable {
        // WAL: readers never block the writer. synchronous=NORMAL: a commit
        // does not fsync; the syncer thread fsyncs the write-ahead log before
        // any caller is answered, so an acknowledged write survives a crash of
        // the process or of the machine.
        // The syncer thread keeps the log short; the writer checkpoints
        // only if that falls far behind.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 20000;")
            .map_err(|e| backend("enabling WAL", e))?;
    }
    Ok(conn)
}

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    read_permits: Arc<tokio::sync::Semaphore>,
    /// See [`Store::access_version`]. Starts at the time of opening in
    /// nanoseconds, so a restart does not repeat an earlier process's versions.
    access_version: Arc<AtomicU64>,
}

/// Creates a database with the schema of `version` (for tests of upgrades).
pub(crate) fn create_at_version(path: &Path, version: usize) -> StoreResult<()> {
    let mut conn = open_connection(path, true)?;
    schema::migrate_to(&mut conn, version)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema
    /// up to date. Must be called within a Tokio runtime.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let mut conn = open_connection(path, true)?;
        // Only the server's user reads the audit trail and token hashes. New
        // -wal and -shm files get the database's mode; older ones are fixed here.
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = PathBuf::from(file);
            if suffix.is_empty() || file.exists() {
                std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .map_err(|e| backend(&format!("restricting {} to its owner", file.display()), e))?;
            }
        }
        schema::migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (durable_tx, durable_rx) = std::sync::mpsc::channel();
        let (synced_tx, synced_rx) = std::sync::mpsc::sync_channel(1);
        let checkpoints = open_connection(path, true)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        std::thread::Builder::new()
            .name("ajar-store-sync".into())
            .spawn(move || syncer_loop(wal, checkpoints, durable_rx, synced_tx))
            .map_err(|e| backend("starting the syncer thread", e))?;
        std::thread::Builder::new()
            .name("ajar-store-writer".into())
            .spawn(move || writer_loop(conn, rx, durable_tx, synced_rx))
            .map_err(|e| backend("starting the writer thread", e))?;
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            read_permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
            access_version: Arc::new(AtomicU64::new(u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(1))),
        })
    }
}

#[async_trait]
impl Backend for SqliteStore {
    async fn write<R, F>(&self, kind: WriteKind, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx, OffsetDateTime) -> StoreResult<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let bump = (kind == WriteKind::Access).then(|| Arc::clone(&self.access_version));
        let job = WriteJob { work: Some(work), outcome: None, bump, reply };
        self.writer.send(Box::new(job)).await.map_err(|_| StoreError::Backend("the store's writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Backend("the store's writer dropped the operation".into()))?
    }

    async fn read<R, F>(&self, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Read, OffsetDateTime) -> StoreResult<R> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        let permit = Arc::clone(&self.read_permits).acquire_owned().await.map_err(|e| backend("read permit", e))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = readers.lock().map_err(|_| StoreError::Backend("reader pool poisoned".into()))?.pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&path, false)?,
            };
            // One snapshot for all the reads of the work.
            let result = conn.unchecked_transaction().map_err(|e| backend("starting a read", e)).and_then(|snapshot| {
                let result = work(&mut Sql::reader(&snapshot), OffsetDateTime::now_utc());
                snapshot.finish().map_err(|e| backend("ending a read", e))?;
                result
            });
            if let Ok(mut pool) = readers.lock() {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| backend("read task", e))?
    }

    fn access_version(&self) -> u64 {
        self.access_version.load(Ordering::SeqCst)
    }
}
