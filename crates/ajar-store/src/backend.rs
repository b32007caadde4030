//! The seam between ajar's decisions and a database: what a backend provides.
//!
//! A backend runs transactions and gives access to the data inside them ([`Read`], [`Tx`]); it
//! decides nothing. The operations of [`Store`](crate::Store) are written once, over these traits
//! (`operations/`): they read what a decision needs, ask the domain for the plan
//! (`ajar_domain::plans`), and apply it. So a second backend implements these traits and gets every
//! rule, every refusal and every activity record exactly as SQLite has them.
//!
//! What a backend must guarantee:
//! - **A write is durable before it is answered**: [`Backend::write`] returns only once the transaction
//!   holding the work has committed and is on disk.
//! - **What a write reads stays true until it commits**: no other write may change it in between
//!   (SQLite has a single writer; a backend with several writers locks what it reads, or runs
//!   serializable transactions and retries).
//! - **Savepoints nest**: [`Tx::savepoint`] / [`Tx::rollback_savepoint`] / [`Tx::release_savepoint`]
//!   act on the innermost open one, and a rolled-back savepoint leaves nothing of its work behind,
//!   including whatever the backend caches (policies, the activity chain's head).
//! - **Keys are ARM's**: resource IDs compare ignoring case (`VmId::key`, `PolicyId::key`,
//!   `Scope::key`), so no lookup, uniqueness rule or scope filter can be bypassed or duplicated
//!   through case.

use async_trait::async_trait;
use time::OffsetDateTime;

use ajar_domain::access::{RoleAssignment, RoleDefinition, Scope as AccessScope};
use ajar_domain::activity::{ActivityEntry, ActivityQuery};
use ajar_domain::agent::ConnectionCut;
use ajar_domain::gateway::{Gateway, GatewayName};
use ajar_domain::history::GrantHistory;
use ajar_domain::ids::Scope;
use ajar_domain::initiate::{AccessRequest, Caller};
use ajar_domain::inventory::Vm;
use ajar_domain::plans::access_request::CutPlan;
use ajar_domain::plans::{GrantEnd, LiveGrant};
use ajar_domain::policy::StoredPolicy;
use ajar_domain::status::{JitState, RECENT_DAYS};
use ajar_domain::{PolicyId, SubscriptionId, VmId};

use crate::{
    AgentOf, AgentReport, AssignmentFilter, Defaults, NewAgent, OidcLink, Page, PageRequest, Principal, PrincipalInfo, StoreResult,
    Subscription, TokenInfo, TokenPurpose,
};

/// What a write changes besides data: principals, tokens, roles or assignments move the access version
/// ([`Backend::access_version`]) once committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Data,
    Access,
}

/// Runs transactions. Implemented by each database ajar can keep its state in.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs `work` in a write transaction, with the time the transaction started, and answers once it
    /// has committed and is durable. Several may share one commit; each then runs on its own, and an
    /// error from one leaves the others alone (`work` rolls back what it did itself, through savepoints).
    async fn write<R, F>(&self, kind: WriteKind, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx, OffsetDateTime) -> StoreResult<R> + Send + 'static;

    /// Runs `work` on a consistent snapshot.
    async fn read<R, F>(&self, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Read, OffsetDateTime) -> StoreResult<R> + Send + 'static;

    /// See [`Store::access_version`](crate::Store::access_version).
    fn access_version(&self) -> u64;
}

/// Which machines a list holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmQuery {
    pub scope: Scope,
    /// Only machines inside one of these scopes; `None`: all of `scope`. Empty: none.
    pub within: Option<Vec<AccessScope>>,
    /// Only machines in this JIT state (compared by [`JitState::as_str`]).
    pub state: Option<JitStateFilter>,
    pub page: PageRequest,
}

/// The three tabs of the JIT page, as a filter of machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitStateFilter {
    Configured,
    NotConfigured,
    Unsupported,
}

impl JitStateFilter {
    pub fn matches(self, state: JitState) -> bool {
        matches!(
            (self, state),
            (JitStateFilter::Configured, JitState::Configured)
                | (JitStateFilter::NotConfigured, JitState::NotConfigured)
                | (JitStateFilter::Unsupported, JitState::Unsupported(_))
        )
    }
}

/// Which policies a list holds: those in `scope` that are inside one of `within`, or that hold a
/// machine inside one of them (a caller who may read some of a policy's machines sees those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyQuery {
    pub scope: Scope,
    pub within: Option<Vec<AccessScope>>,
    pub page: PageRequest,
}

/// One activity entry as stored: its fields as text (what the chain hash covers) and the keys of the
/// resources it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    pub time: OffsetDateTime,
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    pub resource_id: String,
    pub operation: String,
    pub caller: String,
    pub caller_addr: Option<String>,
    pub result: String,
    pub error_code: Option<String>,
    /// The details as JSON: `[[name, value], …]`.
    pub details: String,
    /// Lower-cased resource keys the entry is listed under.
    pub subjects: Vec<String>,
    /// SHA-256 over the previous entry's chain and this entry's fields.
    pub chain: [u8; 32],
}

/// Reads, in a write transaction or a read snapshot.
pub trait Read {
    // ------------------------------------------------------------ first start
    fn defaults(&mut self) -> StoreResult<Option<Defaults>>;
    fn subscriptions(&mut self) -> StoreResult<Vec<Subscription>>;
    fn subscription_exists(&mut self, id: &SubscriptionId) -> StoreResult<bool>;

    // ------------------------------------------------------------ inventory
    fn vm(&mut self, id: &VmId) -> StoreResult<Option<Vm>>;
    /// In key order, after `page.after`, at most `page.size`, with the key to continue after.
    fn list_vms(&mut self, query: &VmQuery) -> StoreResult<Page<Vm>>;
    /// Every machine in `scope` (inside `within`), in key order, and whether it is in a policy.
    fn vms_with_policy_flag(&mut self, scope: &Scope, within: Option<&[AccessScope]>) -> StoreResult<Vec<(Vm, bool)>>;

    // ------------------------------------------------------------ policies
    fn policy(&mut self, id: &PolicyId) -> StoreResult<Option<StoredPolicy>>;
    /// The policy each of these machines is in, for those in one.
    fn holders(&mut self, vms: &[VmId]) -> StoreResult<Vec<(VmId, PolicyId)>>;
    /// In key order, after `page.after`, at most `page.size`.
    fn list_policies(&mut self, query: &PolicyQuery) -> StoreResult<Page<PolicyId>>;
    /// The most recent `limit` requests made under the policy as stored now (not an earlier policy of
    /// the same name), oldest first.
    fn requests(&mut self, policy: &PolicyId, limit: usize) -> StoreResult<Vec<AccessRequest>>;

    // ------------------------------------------------------------ grants
    /// The live grants (status Initiated, end after `now`) made under the policy as stored now.
    fn live_grants_of_policy(&mut self, policy: &PolicyId, now: OffsetDateTime) -> StoreResult<Vec<LiveGrant>>;
    /// The live grants on `vm`, on `ports` if given, by port then request.
    fn live_grants_on(&mut self, vm: &VmId, ports: Option<&[u16]>, now: OffsetDateTime) -> StoreResult<Vec<LiveGrant>>;
    fn next_expiry(&mut self) -> StoreResult<Option<OffsetDateTime>>;
    /// Cuts recorded for `vm` after `since`, oldest first.
    fn cuts_since(&mut self, vm: &VmId, since: OffsetDateTime) -> StoreResult<Vec<ConnectionCut>>;
    /// How many requests naming `vm` started on each day (UTC) from `first` on, by day.
    fn requests_per_day(&mut self, vm: &VmId, first: OffsetDateTime) -> StoreResult<[u32; RECENT_DAYS]>;
    /// When the last request naming `vm` started, and who made it.
    fn last_access(&mut self, vm: &VmId) -> StoreResult<Option<(OffsetDateTime, String)>>;
    /// See [`Store::grants_between`](crate::Store::grants_between).
    fn grants_between(
        &mut self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        within: Option<&[AccessScope]>,
        limit: usize,
    ) -> StoreResult<GrantHistory>;

    // ------------------------------------------------------------ activity
    fn activity(&mut self, query: &ActivityQuery) -> StoreResult<Vec<ActivityEntry>>;
    /// The chain hash of the newest entry; zeros when there is none.
    fn chain_head(&mut self) -> StoreResult<[u8; 32]>;
    /// Entries after sequence number `after`, oldest first, at most `limit`, with their sequence numbers.
    fn activity_rows(&mut self, after: i64, limit: usize) -> StoreResult<Vec<(i64, ActivityRow)>>;

    // ------------------------------------------------------------ agents and gateways
    /// The agent holding this credential: its ID and what it enforces.
    fn agent_for_token(&mut self, hash: &[u8; 32]) -> StoreResult<Option<(String, AgentOf)>>;
    fn gateway(&mut self, name: &GatewayName) -> StoreResult<Option<Gateway>>;
    fn gateways(&mut self) -> StoreResult<Vec<Gateway>>;
    /// The machines behind a gateway, by key.
    fn served_by(&mut self, gateway: &GatewayName) -> StoreResult<Vec<Vm>>;
    /// The live grants (at `now`) on the machines behind a gateway.
    fn live_grants_behind(&mut self, gateway: &GatewayName, now: OffsetDateTime) -> StoreResult<Vec<LiveGrant>>;
    /// The cuts since `since` of mapped grants on the machines behind a gateway, oldest first.
    fn cuts_behind(&mut self, gateway: &GatewayName, since: OffsetDateTime) -> StoreResult<Vec<ConnectionCut>>;

    // ------------------------------------------------------------ identity
    /// The principal holding a live token (neither revoked nor expired at `now`) of this purpose.
    fn principal_for_token(&mut self, hash: &[u8; 32], purpose: TokenPurpose, now: OffsetDateTime) -> StoreResult<Option<Principal>>;
    /// By name, ignoring case.
    fn principals(&mut self, now: OffsetDateTime) -> StoreResult<Vec<PrincipalInfo>>;
    fn principal(&mut self, id: &str, now: OffsetDateTime) -> StoreResult<Option<PrincipalInfo>>;
    /// The principal with this name, ignoring case.
    fn principal_named(&mut self, name: &str) -> StoreResult<Option<Principal>>;
    fn principal_for_oidc(&mut self, issuer: &str, subject: &str) -> StoreResult<Option<Principal>>;
    /// Oldest first.
    fn tokens(&mut self, principal_id: Option<&str>) -> StoreResult<Vec<TokenInfo>>;
    fn token(&mut self, id: &str) -> StoreResult<Option<TokenInfo>>;
    /// A custom role by its key (lower-cased GUID).
    fn custom_role(&mut self, key: &str) -> StoreResult<Option<RoleDefinition>>;
    /// By name, ignoring case.
    fn custom_roles(&mut self) -> StoreResult<Vec<RoleDefinition>>;
    /// The key of a custom role other than `except` named `name`, ignoring case.
    fn custom_role_named(&mut self, name: &str, except: &str) -> StoreResult<Option<String>>;
    fn assignment(&mut self, id: &str) -> StoreResult<Option<RoleAssignment>>;
    /// By scope, then principal.
    fn assignments(&mut self, filter: &AssignmentFilter) -> StoreResult<Vec<RoleAssignment>>;
    /// The ID of the assignment of role `role_key` to `principal_id` at `scope`, if there is one.
    fn assignment_of(&mut self, principal_id: &str, role_key: &str, scope: &AccessScope) -> StoreResult<Option<String>>;
    fn assignments_of_role(&mut self, role_key: &str) -> StoreResult<u64>;
    /// The principals holding Owner at `/`, sorted.
    fn root_owners(&mut self) -> StoreResult<Vec<String>>;
}

/// Reads and writes inside one write transaction. Writes store what they are given: the operations
/// have checked it.
pub trait Tx: Read {
    fn savepoint(&mut self) -> StoreResult<()>;
    /// Undoes everything since the innermost open savepoint, and closes it.
    fn rollback_savepoint(&mut self) -> StoreResult<()>;
    /// Keeps everything since the innermost open savepoint, and closes it.
    fn release_savepoint(&mut self) -> StoreResult<()>;

    // ------------------------------------------------------------ first start
    fn insert_subscription(&mut self, subscription: &Subscription, now: OffsetDateTime) -> StoreResult<()>;
    fn store_defaults(&mut self, defaults: &Defaults) -> StoreResult<()>;

    // ------------------------------------------------------------ inventory
    /// Creates or replaces the machine's entry (its agent, and the spelling of its ID, stay). Returns
    /// whether it was new.
    fn put_vm(&mut self, vm: &Vm, now: OffsetDateTime) -> StoreResult<bool>;
    /// Deletes the machine and its agent. Returns whether it existed.
    fn delete_vm(&mut self, id: &VmId) -> StoreResult<bool>;

    // ------------------------------------------------------------ policies and grants
    /// Creates or replaces the policy, with its machines and ports.
    fn write_policy(&mut self, policy: &StoredPolicy, now: OffsetDateTime) -> StoreResult<()>;
    fn delete_policy(&mut self, id: &PolicyId) -> StoreResult<()>;
    /// Stores a request with its grants, under the policy as stored now.
    fn insert_request(&mut self, request: &AccessRequest, caller: &Caller) -> StoreResult<()>;
    /// Ends these live grants at `now`.
    fn end_grants(&mut self, ends: &[GrantEnd], now: OffsetDateTime) -> StoreResult<()>;
    /// Records as expired the live grants whose end is not after `now`. Returns how many.
    fn expire_grants(&mut self, now: OffsetDateTime) -> StoreResult<u64>;
    /// Records cuts revoked at `now`, and forgets those older than `forget_before`.
    fn insert_cuts(&mut self, cuts: &[CutPlan], now: OffsetDateTime, forget_before: OffsetDateTime) -> StoreResult<()>;

    // ------------------------------------------------------------ activity
    fn append_activity(&mut self, row: &ActivityRow) -> StoreResult<()>;

    // ------------------------------------------------------------ agents and gateways
    fn insert_agent(&mut self, id: &str, vm: &VmId, agent: &NewAgent, now: OffsetDateTime) -> StoreResult<()>;
    /// Records an agent's report (a host agent's, or a gateway's). Returns whether the agent exists.
    fn update_agent(&mut self, agent_id: &str, report: &AgentReport, now: OffsetDateTime) -> StoreResult<bool>;
    /// Records a gateway with its agent (`gateway.agent.agent_id`) and that agent's credential.
    fn insert_gateway(&mut self, gateway: &Gateway, agent: &NewAgent, now: OffsetDateTime) -> StoreResult<()>;
    /// Deletes a gateway and its agent. Returns whether it existed.
    fn delete_gateway(&mut self, name: &GatewayName) -> StoreResult<bool>;
    /// Puts a machine behind a gateway, or takes it out. A policy read afterwards shows the machine's
    /// new public address.
    fn set_vm_gateway(&mut self, vm: &VmId, gateway: Option<&GatewayName>) -> StoreResult<()>;

    // ------------------------------------------------------------ identity
    fn insert_principal(&mut self, principal: &Principal, oidc: Option<&OidcLink>, now: OffsetDateTime) -> StoreResult<()>;
    /// Deletes the principal with its tokens and assignments. Returns how many tokens and assignments went.
    fn delete_principal(&mut self, id: &str) -> StoreResult<(u64, u64)>;
    /// Stores a token; `Rejected(Conflict)` if its hash is stored already.
    fn insert_token(&mut self, token: &TokenInfo, hash: &[u8; 32]) -> StoreResult<()>;
    /// Revokes the token at `now` unless it is revoked already.
    fn revoke_token(&mut self, id: &str, now: OffsetDateTime) -> StoreResult<()>;
    /// Creates or replaces a custom role (stored under its lower-cased ID).
    fn put_custom_role(&mut self, role: &RoleDefinition, now: OffsetDateTime) -> StoreResult<()>;
    fn delete_custom_role(&mut self, key: &str) -> StoreResult<bool>;
    fn insert_assignment(&mut self, assignment: &RoleAssignment, created_by: &str, now: OffsetDateTime) -> StoreResult<()>;
    fn delete_assignment(&mut self, id: &str) -> StoreResult<()>;
}
