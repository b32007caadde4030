//! ajar's durable store.
//!
//! [`Store`] is what the server needs from storage, one method per operation, so
//! a second backend (PostgreSQL) can slot in beside [`SqliteStore`]. Each
//! mutating method checks its input with the domain's rules and applies it in
//! one transaction together with its activity-log entry; a refused operation
//! changes nothing but is still logged as failed.

mod sqlite;

use async_trait::async_trait;
use time::OffsetDateTime;

use ajar_domain::activity::{ActivityEntry, ActivityQuery, Audit, Outcome};
use ajar_domain::agent::DesiredState;
use ajar_domain::ids::{Location, PolicyName, ResourceGroup, Scope};
use ajar_domain::initiate::{AccessRequest, Caller, InitiateDraft};
use ajar_domain::inventory::Vm;
use ajar_domain::policy::{Limits, Policy, PortRule};
use ajar_domain::status::VmJitStatus;
use ajar_domain::{PolicyId, Problem, SubscriptionId, VmId};

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input broke a rule or named something absent; nothing was changed.
    #[error("{0}")]
    Rejected(Problem),
    #[error("storage failure: {0}")]
    Backend(String),
}

impl From<Problem> for StoreError {
    fn from(p: Problem) -> Self {
        StoreError::Rejected(p)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A policy with its recent request history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    pub policy: Policy,
    /// Oldest first; at most [`REQUEST_HISTORY`] of the most recent requests.
    pub requests: Vec<AccessRequest>,
}

/// How many of a policy's most recent requests its `requests[]` shows. The
/// activity log keeps all of them.
pub const REQUEST_HISTORY: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Continue after this key (from the previous page's `next`).
    pub after: Option<String>,
    pub size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The key to continue after, when more items follow.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Updated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Calls the API as its principal.
    Api,
    /// Only enrols host agents.
    Join,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Api => "api",
            TokenPurpose::Join => "join",
        }
    }
}

/// A host agent at enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent {
    pub token_hash: [u8; 32],
    pub version: String,
    pub nftables: Result<(), String>,
}

/// What an agent reports about itself and its machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReport {
    pub version: String,
    pub nftables: Result<(), String>,
    pub addresses: Vec<std::net::IpAddr>,
    /// The etag of the desired state it has applied.
    pub applied: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub display_name: String,
}

/// What first start creates. Tokens arrive hashed: the store never sees them.
#[derive(Debug, Clone)]
pub struct BootstrapPlan {
    pub subscription: Subscription,
    pub resource_group: ResourceGroup,
    pub location: Location,
    pub admin_name: String,
    pub admin_token_hash: [u8; 32],
    pub join_token_hash: [u8; 32],
}

/// The defaults recorded at first start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub subscription: SubscriptionId,
    pub resource_group: ResourceGroup,
    pub location: Location,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The defaults, if first start has happened.
    async fn defaults(&self) -> StoreResult<Option<Defaults>>;
    /// Records first start; refuses if it already happened.
    async fn bootstrap(&self, plan: BootstrapPlan) -> StoreResult<Defaults>;
    /// The principal holding a live token of this purpose with this hash.
    async fn principal_for_token(&self, hash: [u8; 32], purpose: TokenPurpose) -> StoreResult<Option<Principal>>;
    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>>;

    async fn put_vm(&self, vm: Vm, audit: Audit) -> StoreResult<PutOutcome>;
    async fn get_vm(&self, id: &VmId) -> StoreResult<Option<Vm>>;
    async fn list_vms(&self, scope: &Scope, page: PageRequest) -> StoreResult<Page<Vm>>;
    /// Refuses while the machine is in a policy. Returns whether it existed.
    async fn delete_vm(&self, id: &VmId, audit: Audit) -> StoreResult<bool>;

    /// Creates or replaces a policy. Live grants the new version no longer
    /// allows are revoked in the same transaction.
    async fn put_policy(&self, policy: Policy, limits: Limits, audit: Audit) -> StoreResult<(PutOutcome, PolicyView)>;
    async fn get_policy(&self, id: &PolicyId) -> StoreResult<Option<PolicyView>>;
    async fn list_policies(&self, scope: &Scope, page: PageRequest) -> StoreResult<Page<PolicyView>>;
    /// Deletes a policy and revokes its live grants. Returns whether it existed.
    async fn delete_policy(&self, id: &PolicyId, audit: Audit) -> StoreResult<bool>;
    /// Adds machines to the policy named `policy_name` in each machine's resource
    /// group and location, with `ports` or, when `None`, the OS defaults. All or none.
    async fn enable(
        &self,
        vms: Vec<VmId>,
        policy_name: PolicyName,
        ports: Option<Vec<PortRule>>,
        limits: Limits,
        audit: Audit,
    ) -> StoreResult<Vec<PolicyView>>;

    /// Checks a request against the policy and, if allowed, stores it as live
    /// grants, superseding earlier live grants for the same machine and port.
    async fn initiate(&self, id: &PolicyId, draft: InitiateDraft, caller: Caller, audit: Audit) -> StoreResult<AccessRequest>;
    /// Marks live grants whose end time has passed as expired. Returns how many.
    async fn expire_due(&self) -> StoreResult<u64>;
    /// The earliest end time of a live grant.
    async fn next_expiry(&self) -> StoreResult<Option<OffsetDateTime>>;

    async fn vm_statuses(&self, scope: &Scope, page: PageRequest) -> StoreResult<Page<VmJitStatus>>;

    /// Records an operation that failed before reaching the store (refused
    /// authentication, unreadable input).
    async fn record(&self, audit: Audit, outcome: Outcome) -> StoreResult<()>;
    /// Newest first.
    async fn activity(&self, query: ActivityQuery) -> StoreResult<Vec<ActivityEntry>>;
    /// Enrols a host agent: registers (or updates) its machine in the inventory
    /// and records the agent with the hash of its new credential. Refuses a
    /// machine that already has an agent, so a leaked join token cannot take one over.
    async fn enroll_agent(&self, vm: Vm, agent: NewAgent, audit: Audit) -> StoreResult<String>;
    /// The agent holding this credential: its ID and machine.
    async fn agent_for_token(&self, hash: [u8; 32]) -> StoreResult<Option<(String, VmId)>>;
    /// Records an agent's report (also its heartbeat).
    async fn agent_report(&self, agent_id: &str, report: AgentReport) -> StoreResult<()>;
    /// What the agent of `vm` must enforce now.
    async fn desired_state(&self, vm: &VmId) -> StoreResult<DesiredState>;
    /// Ends the live grants on these ports of `vm` now (status Revoked,
    /// UserRequested). Returns how many it ended.
    async fn revoke(&self, policy: &PolicyId, vm: &VmId, ports: Vec<u16>, audit: Audit) -> StoreResult<u64>;
    /// Recomputes the activity log's hash chain from the first entry. Returns
    /// how many entries it checked, or the sequence number of the first entry
    /// that does not match (edited, inserted, or after a deleted one).
    async fn verify_activity_chain(&self) -> StoreResult<Result<u64, i64>>;
}
