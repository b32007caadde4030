//! SQLite behind [`Store`](crate::Store).
//!
//! One writer thread owns the only writable connection and commits in groups:
//! it drains whatever operations are queued, runs each inside its own savepoint
//! (so a refused one rolls back alone and is logged as failed) and commits
//! once. A syncer thread then fsyncs the write-ahead log and only then answers
//! the batch, while the writer already runs the next one (it holds that commit
//! until the fsync is done). The syncer also checkpoints the log. Reads run on a small
//! pool of read-only connections, which WAL lets proceed while the writer commits.

mod codec;
mod identity;
mod ops;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use ajar_domain::access::{RoleAssignment, RoleDefinition, Scope as AccessScope};
use ajar_domain::activity::{ActivityEntry, ActivityQuery, Audit, Outcome};
use ajar_domain::agent::DesiredState;
use ajar_domain::history::GrantHistory;
use ajar_domain::ids::{PolicyName, Scope};
use ajar_domain::initiate::{AccessRequest, Caller, InitiateDraft};
use ajar_domain::inventory::Vm;
use ajar_domain::policy::{Limits, Policy, PortRule};
use ajar_domain::status::{JitState, VmJitStatus};
use ajar_domain::{PolicyId, VmId};

use crate::{
    AccessSnapshot, AgentReport, AssignmentFilter, BootstrapPlan, Defaults, NewAgent, NewPrincipal, NewToken, Page, PageRequest,
    PolicyView, Principal, PrincipalInfo, PutOutcome, Store, StoreError, StoreResult, Subscription, TokenInfo, TokenPurpose,
};

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

/// What the writer thread keeps between operations.
struct WriterState {
    /// The activity log's last chain hash.
    chain: [u8; 32],
    policies: ops::PolicyCache,
}

/// A unit of work for the writer: it runs inside the batch transaction, then
/// learns whether the batch committed.
trait Job: Send {
    fn run(&mut self, tx: &Transaction<'_>, now: OffsetDateTime, state: &mut WriterState);
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

/// What a write returns besides its value: details for its activity entry.
pub(crate) type Details = Vec<(String, String)>;

struct WriteJob<R, F> {
    work: Option<F>,
    audit: Option<Audit>,
    outcome: Option<StoreResult<R>>,
    /// Advanced once the write has committed, if it succeeded.
    bump: Option<Arc<AtomicU64>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<R, F> Job for WriteJob<R, F>
where
    R: Send + 'static,
    F: FnOnce(&Transaction<'_>, OffsetDateTime, &mut ops::PolicyCache) -> StoreResult<(R, Details)> + Send + 'static,
{
    fn run(&mut self, tx: &Transaction<'_>, now: OffsetDateTime, state: &mut WriterState) {
        let Some(work) = self.work.take() else { return };
        self.outcome = Some(run_in_savepoint(tx, now, state, work, self.audit.as_ref()));
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

/// An activity entry with a given outcome, for operations refused before they
/// reached the store.
struct RecordJob {
    audit: Audit,
    outcome: Outcome,
    written: Option<StoreResult<()>>,
    reply: oneshot::Sender<StoreResult<()>>,
}

impl Job for RecordJob {
    fn run(&mut self, tx: &Transaction<'_>, now: OffsetDateTime, state: &mut WriterState) {
        let saved = state.chain;
        let written = ops::append_activity(tx, &mut state.chain, now, &self.audit, &self.outcome, &[]);
        if written.is_err() {
            state.chain = saved;
        }
        self.written = Some(written);
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let result = match committed {
            Ok(()) => self.written.unwrap_or_else(|| Err(StoreError::Backend("the entry was not written".into()))),
            Err(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
        };
        let _ = self.reply.send(result);
    }
}

fn run_in_savepoint<R>(
    tx: &Transaction<'_>,
    now: OffsetDateTime,
    state: &mut WriterState,
    work: impl FnOnce(&Transaction<'_>, OffsetDateTime, &mut ops::PolicyCache) -> StoreResult<(R, Details)>,
    audit: Option<&Audit>,
) -> StoreResult<R> {
    tx.execute_batch("SAVEPOINT op").map_err(|e| backend("savepoint", e))?;
    let chain = &mut state.chain;
    let saved_chain = *chain;
    let result = work(tx, now, &mut state.policies).and_then(|(value, extra)| {
        if let Some(audit) = audit {
            ops::append_activity(tx, chain, now, audit, &Outcome::Succeeded, &extra)?;
        }
        Ok(value)
    });
    match result {
        Ok(value) => {
            tx.execute_batch("RELEASE op").map_err(|e| backend("release savepoint", e))?;
            Ok(value)
        }
        Err(err) => {
            *chain = saved_chain;
            // What the cache read inside the rolled-back work may be gone.
            state.policies.clear();
            let chain = &mut state.chain;
            tx.execute_batch("ROLLBACK TO op").map_err(|e| backend("rollback to savepoint", e))?;
            if let (Some(audit), StoreError::Rejected(problem)) = (audit, &err) {
                let mut extra = vec![("error".to_owned(), problem.message.clone())];
                if let Some(target) = &problem.target {
                    extra.push(("target".to_owned(), target.clone()));
                }
                let failed = Outcome::Failed { code: problem.code.as_str().to_owned() };
                if let Err(log_err) = ops::append_activity(tx, chain, now, audit, &failed, &extra) {
                    *chain = saved_chain;
                    let _ = tx.execute_batch("ROLLBACK TO op");
                    let _ = tx.execute_batch("RELEASE op");
                    return Err(log_err);
                }
            }
            tx.execute_batch("RELEASE op").map_err(|e| backend("release savepoint", e))?;
            Err(err)
        }
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
    let chain = match ops::last_chain(&conn) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the activity log's chain head; refusing writes");
            while let Some(job) = rx.blocking_recv() {
                job.finish(Err(e.to_string()));
            }
            return;
        }
    };
    let mut state = WriterState { chain, policies: ops::PolicyCache::default() };
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
                if syncing && synced.recv().is_err() {
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
            state.chain = chain_before;
            state.policies.clear();
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
    // SQLite's lower() folds ASCII only; ARM names may hold any letter, and the domain's keys fold them all.
    conn.create_scalar_function("arm_key", 1, FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        Ok(ctx.get_raw(0).as_str_or_null()?.map(str::to_lowercase))
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

    async fn write<R, F>(&self, audit: Option<Audit>, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>, OffsetDateTime, &mut ops::PolicyCache) -> StoreResult<(R, Details)> + Send + 'static,
    {
        self.submit(audit, None, work).await
    }

    /// A write to principals, tokens, roles or assignments: it advances the access version.
    async fn write_access<R, F>(&self, audit: Audit, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>, OffsetDateTime) -> StoreResult<(R, Details)> + Send + 'static,
    {
        self.submit(Some(audit), Some(Arc::clone(&self.access_version)), move |tx, now, _| work(tx, now)).await
    }

    async fn submit<R, F>(&self, audit: Option<Audit>, bump: Option<Arc<AtomicU64>>, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>, OffsetDateTime, &mut ops::PolicyCache) -> StoreResult<(R, Details)> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = WriteJob { work: Some(work), audit, outcome: None, bump, reply };
        self.writer.send(Box::new(job)).await.map_err(|_| StoreError::Backend("the store's writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Backend("the store's writer dropped the operation".into()))?
    }

    async fn read<R, F>(&self, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, OffsetDateTime) -> StoreResult<R> + Send + 'static,
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
            let result = work(&conn, OffsetDateTime::now_utc());
            if let Ok(mut pool) = readers.lock() {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| backend("read task", e))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn defaults(&self) -> StoreResult<Option<Defaults>> {
        self.read(|c, _| ops::defaults(c)).await
    }

    async fn bootstrap(&self, plan: BootstrapPlan) -> StoreResult<Defaults> {
        let version = Some(Arc::clone(&self.access_version));
        self.submit(None, version, move |tx, now, _| Ok((ops::bootstrap(tx, &plan, now)?, Vec::new()))).await
    }

    async fn principal_for_token(&self, hash: [u8; 32], purpose: TokenPurpose) -> StoreResult<Option<Principal>> {
        self.read(move |c, now| ops::principal_for_token(c, &hash, purpose, now)).await
    }

    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        self.read(|c, _| ops::subscriptions(c)).await
    }

    async fn put_vm(&self, vm: Vm, audit: Audit) -> StoreResult<PutOutcome> {
        self.write(Some(audit), move |tx, now, _| Ok((ops::put_vm(tx, &vm, now)?, Vec::new()))).await
    }

    async fn get_vm(&self, id: &VmId) -> StoreResult<Option<Vm>> {
        let key = id.key();
        self.read(move |c, _| ops::get_vm(c, &key)).await
    }

    async fn list_vms(&self, scope: &Scope, page: PageRequest) -> StoreResult<Page<Vm>> {
        let scope = scope.clone();
        self.read(move |c, _| ops::list_vms(c, &scope, &page)).await
    }

    async fn delete_vm(&self, id: &VmId, audit: Audit) -> StoreResult<bool> {
        let id = id.clone();
        self.write(Some(audit), move |tx, _, _| Ok((ops::delete_vm(tx, &id)?, Vec::new()))).await
    }

    async fn put_policy(&self, policy: Policy, limits: Limits, audit: Audit) -> StoreResult<(PutOutcome, PolicyView)> {
        self.write(Some(audit), move |tx, now, cache| {
            cache.clear();
            let (outcome, revoked) = ops::put_policy(tx, &policy, &limits, now)?;
            let view =
                ops::policy_view(tx, &policy.id.key())?.ok_or_else(|| StoreError::Backend("policy vanished after writing it".into()))?;
            Ok(((outcome, view), revoked_details(revoked)))
        })
        .await
    }

    async fn get_policy(&self, id: &PolicyId) -> StoreResult<Option<PolicyView>> {
        let key = id.key();
        self.read(move |c, _| ops::policy_view(c, &key)).await
    }

    async fn list_policies(&self, scope: &Scope, page: PageRequest) -> StoreResult<Page<PolicyView>> {
        let scope = scope.clone();
        self.read(move |c, _| ops::list_policies(c, &scope, &page)).await
    }

    async fn delete_policy(&self, id: &PolicyId, audit: Audit) -> StoreResult<bool> {
        let key = id.key();
        self.write(Some(audit), move |tx, now, cache| {
            cache.clear();
            let (existed, revoked) = ops::delete_policy(tx, &key, now)?;
            Ok((existed, revoked_details(revoked)))
        })
        .await
    }

    async fn enable(
        &self,
        vms: Vec<VmId>,
        policy_name: PolicyName,
        ports: Option<Vec<PortRule>>,
        limits: Limits,
        audit: Audit,
    ) -> StoreResult<Vec<PolicyView>> {
        self.write(Some(audit), move |tx, now, cache| {
            cache.clear();
            let keys = ops::enable(tx, &vms, &policy_name, ports.as_deref(), &limits, now)?;
            let mut views = Vec::with_capacity(keys.len());
            for key in keys {
                views.extend(ops::policy_view(tx, &key)?);
            }
            let names: Vec<String> = views.iter().map(|v| v.policy.id.to_string()).collect();
            Ok((views, vec![("policies".to_owned(), names.join(" "))]))
        })
        .await
    }

    async fn initiate(&self, id: &PolicyId, draft: InitiateDraft, caller: Caller, audit: Audit) -> StoreResult<AccessRequest> {
        let key = id.key();
        self.write(Some(audit), move |tx, now, cache| {
            let (request, superseded) = ops::initiate(tx, cache, &key, &draft, &caller, now)?;
            let mut details = vec![("requestId".to_owned(), request.id.clone())];
            for vm in &request.vms {
                for g in &vm.grants {
                    details.push((format!("{}:{}", vm.vm.name, g.number), format!("until {}", codec::format_time(g.end))));
                }
            }
            if superseded > 0 {
                details.push(("superseded".to_owned(), superseded.to_string()));
            }
            Ok((request, details))
        })
        .await
    }

    async fn expire_due(&self) -> StoreResult<u64> {
        self.write(None, |tx, now, _| Ok((ops::expire_due(tx, now)?, Vec::new()))).await
    }

    async fn next_expiry(&self) -> StoreResult<Option<OffsetDateTime>> {
        self.read(|c, _| ops::next_expiry(c)).await
    }

    async fn vm_statuses(&self, scope: &Scope, page: PageRequest) -> StoreResult<Page<VmJitStatus>> {
        let scope = scope.clone();
        self.read(move |c, now| ops::vm_statuses(c, &scope, &page, now)).await
    }

    async fn vm_status(&self, id: &VmId) -> StoreResult<Option<VmJitStatus>> {
        let id = id.clone();
        self.read(move |c, now| ops::vm_status(c, &id, now)).await
    }

    async fn vm_statuses_of(&self, ids: Vec<VmId>) -> StoreResult<Vec<VmJitStatus>> {
        self.read(move |c, now| ids.iter().filter_map(|id| ops::vm_status(c, id, now).transpose()).collect()).await
    }

    async fn jit_states(&self, scope: &Scope) -> StoreResult<Vec<(Vm, JitState)>> {
        let scope = scope.clone();
        self.read(move |c, _| ops::jit_states(c, &scope)).await
    }

    async fn grants_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        within: Option<Vec<AccessScope>>,
        limit: usize,
    ) -> StoreResult<GrantHistory> {
        self.read(move |c, _| ops::grants_between(c, from, to, within.as_deref(), limit)).await
    }

    async fn record(&self, audit: Audit, outcome: Outcome) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        let job = RecordJob { audit, outcome, written: None, reply };
        self.writer.send(Box::new(job)).await.map_err(|_| StoreError::Backend("the store's writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Backend("the store's writer dropped the operation".into()))?
    }

    async fn activity(&self, query: ActivityQuery) -> StoreResult<Vec<ActivityEntry>> {
        self.read(move |c, _| ops::activity(c, &query)).await
    }

    async fn enroll_agent(&self, vm: Vm, agent: NewAgent, audit: Audit) -> StoreResult<String> {
        self.write(Some(audit), move |tx, now, _| Ok((ops::enroll_agent(tx, &vm, &agent, now)?, Vec::new()))).await
    }

    async fn agent_for_token(&self, hash: [u8; 32]) -> StoreResult<Option<(String, VmId)>> {
        self.read(move |c, _| ops::agent_for_token(c, &hash)).await
    }

    async fn agent_report(&self, agent_id: &str, report: AgentReport) -> StoreResult<()> {
        let agent_id = agent_id.to_owned();
        self.write(None, move |tx, now, _| Ok((ops::agent_report(tx, &agent_id, &report, now)?, Vec::new()))).await
    }

    async fn desired_state(&self, vm: &VmId) -> StoreResult<DesiredState> {
        let vm = vm.clone();
        self.read(move |c, now| ops::desired_state(c, &vm, now)).await
    }

    async fn revoke(&self, policy: &PolicyId, vm: &VmId, ports: Vec<u16>, audit: Audit) -> StoreResult<u64> {
        let (policy, vm) = (policy.clone(), vm.clone());
        self.write(Some(audit), move |tx, now, _| {
            let n = ops::revoke(tx, &policy, &vm, &ports, now)?;
            Ok((n, vec![("revokedGrants".to_owned(), n.to_string())]))
        })
        .await
    }

    async fn verify_activity_chain(&self) -> StoreResult<Result<u64, i64>> {
        self.read(|c, _| ops::verify_chain(c)).await
    }

    async fn create_principal(&self, new: NewPrincipal, audit: Audit) -> StoreResult<Principal> {
        self.write_access(audit, move |tx, now| {
            let p = identity::create_principal(tx, &new, now)?;
            let details = vec![("principalId".to_owned(), p.id.clone())];
            Ok((p, details))
        })
        .await
    }

    async fn list_principals(&self) -> StoreResult<Vec<PrincipalInfo>> {
        self.read(identity::list_principals).await
    }

    async fn get_principal(&self, id: &str) -> StoreResult<Option<PrincipalInfo>> {
        let id = id.to_owned();
        self.read(move |c, now| identity::get_principal(c, &id, now)).await
    }

    async fn delete_principal(&self, id: &str, audit: Audit) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write_access(audit, move |tx, _| {
            let deleted = identity::delete_principal(tx, &id)?;
            let details = vec![
                ("deletedTokens".to_owned(), deleted.tokens.to_string()),
                ("deletedRoleAssignments".to_owned(), deleted.assignments.to_string()),
            ];
            Ok((deleted.existed, if deleted.existed { details } else { Vec::new() }))
        })
        .await
    }

    async fn principal_for_oidc(&self, issuer: &str, subject: &str) -> StoreResult<Option<Principal>> {
        let (issuer, subject) = (issuer.to_owned(), subject.to_owned());
        self.read(move |c, _| identity::principal_for_oidc(c, &issuer, &subject)).await
    }

    async fn create_token(&self, new: NewToken, audit: Audit) -> StoreResult<TokenInfo> {
        self.write_access(audit, move |tx, now| {
            let token = identity::create_token(tx, &new, now)?;
            let details = vec![("tokenId".to_owned(), token.id.clone())];
            Ok((token, details))
        })
        .await
    }

    async fn list_tokens(&self, principal_id: Option<&str>) -> StoreResult<Vec<TokenInfo>> {
        let principal_id = principal_id.map(str::to_owned);
        self.read(move |c, _| identity::list_tokens(c, principal_id.as_deref())).await
    }

    async fn get_token(&self, id: &str) -> StoreResult<Option<TokenInfo>> {
        let id = id.to_owned();
        self.read(move |c, _| identity::get_token(c, &id)).await
    }

    async fn revoke_token(&self, id: &str, audit: Audit) -> StoreResult<Option<TokenInfo>> {
        let id = id.to_owned();
        self.write_access(audit, move |tx, now| {
            let token = identity::revoke_token(tx, &id, now)?;
            let details = token.iter().map(|t| ("principalId".to_owned(), t.principal_id.clone())).collect();
            Ok((token, details))
        })
        .await
    }

    async fn put_role_definition(&self, role: RoleDefinition, audit: Audit) -> StoreResult<PutOutcome> {
        self.write_access(audit, move |tx, now| Ok((identity::put_role_definition(tx, &role, now)?, Vec::new()))).await
    }

    async fn get_role_definition(&self, id: &str) -> StoreResult<Option<RoleDefinition>> {
        let id = id.to_owned();
        self.read(move |c, _| identity::get_role_definition(c, &id)).await
    }

    async fn list_role_definitions(&self) -> StoreResult<Vec<RoleDefinition>> {
        self.read(|c, _| identity::list_role_definitions(c)).await
    }

    async fn delete_role_definition(&self, id: &str, audit: Audit) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write_access(audit, move |tx, _| Ok((identity::delete_role_definition(tx, &id)?, Vec::new()))).await
    }

    async fn create_role_assignment(&self, assignment: RoleAssignment, audit: Audit) -> StoreResult<PutOutcome> {
        let created_by = audit.caller.clone();
        self.write_access(audit, move |tx, now| {
            let (outcome, stored) = identity::create_role_assignment(tx, &assignment, &created_by, now)?;
            let details = vec![
                ("principalId".to_owned(), stored.principal_id),
                ("roleDefinitionId".to_owned(), stored.role_id),
                ("scope".to_owned(), stored.scope.to_string()),
            ];
            Ok((outcome, details))
        })
        .await
    }

    async fn delete_role_assignment(&self, id: &str, audit: Audit) -> StoreResult<Option<RoleAssignment>> {
        let id = id.to_owned();
        self.write_access(audit, move |tx, _| {
            let removed = identity::delete_role_assignment(tx, &id)?;
            let details = match &removed {
                Some(a) => vec![
                    ("principalId".to_owned(), a.principal_id.clone()),
                    ("roleDefinitionId".to_owned(), a.role_id.clone()),
                    ("scope".to_owned(), a.scope.to_string()),
                ],
                None => Vec::new(),
            };
            Ok((removed, details))
        })
        .await
    }

    async fn get_role_assignment(&self, id: &str) -> StoreResult<Option<RoleAssignment>> {
        let id = id.to_owned();
        self.read(move |c, _| identity::get_role_assignment(c, &id)).await
    }

    async fn list_role_assignments(&self, filter: AssignmentFilter) -> StoreResult<Vec<RoleAssignment>> {
        self.read(move |c, _| identity::list_role_assignments(c, &filter)).await
    }

    async fn access_snapshot(&self) -> StoreResult<AccessSnapshot> {
        // Read before the data: a write that commits meanwhile leaves the
        // snapshot older than its version says, and the next check rebuilds.
        let version = self.access_version();
        self.read(move |c, _| identity::access_snapshot(c, version)).await
    }

    fn access_version(&self) -> u64 {
        self.access_version.load(Ordering::SeqCst)
    }
}

fn revoked_details(revoked: u64) -> Details {
    if revoked == 0 { Vec::new() } else { vec![("revokedGrants".to_owned(), revoked.to_string())] }
}

/// SHA-256 over the previous hash and the entry's fields, each length-prefixed
/// so that no two different entries hash alike.
pub(crate) fn chain_hash(prev: &[u8; 32], fields: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    for f in fields {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f.as_bytes());
    }
    h.finalize().into()
}
