//! ajar's durable store.
//!
//! [`Store`] is what the server needs from storage, one method per operation. It is implemented once,
//! for every [`Backend`] (`operations/`): each mutating operation reads what its decision needs, gets
//! the plan from the domain (`ajar_domain::plans`), and applies it in one transaction together with
//! its activity-log entry; a refused operation changes nothing but is still logged as failed. A
//! backend ([`SqliteStore`]) only runs transactions and reads and writes data ([`Read`], [`Tx`]).

mod backend;
mod operations;
mod sqlite;

use async_trait::async_trait;
use time::OffsetDateTime;

use ajar_domain::access::{RoleAssignment, RoleDefinition, Scope as AccessScope};
use ajar_domain::activity::{ActivityEntry, ActivityQuery, Audit, Outcome};
use ajar_domain::agent::{DesiredState, GatewayDesiredState};
use ajar_domain::gateway::{Gateway, GatewayName, PortRange};
use ajar_domain::history::GrantHistory;
use ajar_domain::ids::{Location, PolicyName, ResourceGroup, Scope};
use ajar_domain::initiate::{AccessRequest, Caller, InitiateDraft};
use ajar_domain::inventory::Vm;
use ajar_domain::plans::Precondition;
use ajar_domain::policy::{Limits, Policy, PortRule};
use ajar_domain::status::{JitState, VmJitStatus};
use ajar_domain::{PolicyId, Problem, SubscriptionId, VmId};

pub use backend::{ActivityRow, Backend, JitStateFilter, PolicyQuery, Read, Tx, VmQuery, WriteKind};
pub use sqlite::SqliteStore;

/// For tests of schema upgrades only: creates a database at `path` with the
/// schema of `version` and nothing in it.
#[doc(hidden)]
pub fn create_database_at_version(path: &std::path::Path, version: usize) -> StoreResult<()> {
    sqlite::create_at_version(path, version)
}

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

/// A policy with its version and its recent request history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    pub policy: Policy,
    /// The entity tag of this version (`If-Match`).
    pub etag: String,
    /// Oldest first; at most [`REQUEST_HISTORY`] of the most recent requests.
    pub requests: Vec<AccessRequest>,
}

/// Which items a list holds: those in `scope` that are inside one of `within` (the scopes where the
/// caller may read them; `None`: all of `scope`, empty: none), a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub scope: Scope,
    pub within: Option<Vec<AccessScope>>,
    pub page: PageRequest,
}

/// One policy's part of a request for access, with its activity record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiatePart {
    pub policy: PolicyId,
    pub draft: InitiateDraft,
    pub audit: Audit,
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

impl<T> Page<T> {
    /// A page of `size` from `size + 1` keyed items read: the extra one says more follow.
    pub fn of(mut items: Vec<(String, T)>, size: usize) -> Page<T> {
        let next = if items.len() > size {
            items.truncate(size);
            items.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Page { items: items.into_iter().map(|(_, t)| t).collect(), next }
    }
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
    pub kind: PrincipalKind,
}

/// A person, or a program acting on its own behalf.
pub use ajar_domain::access::PrincipalKind;

/// An OIDC identity: the token issuer and its subject (`iss`, `sub`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OidcLink {
    pub issuer: String,
    pub subject: String,
}

/// A principal to create. The store makes its ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPrincipal {
    /// 1–128 characters, no control characters, unique ignoring ASCII case.
    pub name: String,
    pub kind: PrincipalKind,
    pub oidc: Option<OidcLink>,
}

/// A principal as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalInfo {
    pub principal: Principal,
    pub oidc: Option<OidcLink>,
    pub created: OffsetDateTime,
    /// API and join tokens neither revoked nor expired.
    pub live_tokens: u32,
}

/// An API token to store. The token arrives hashed: the store never sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub principal_id: String,
    pub hash: [u8; 32],
    /// A label, 1–128 characters, no control characters.
    pub name: String,
    /// `None`: until revoked. Must be in the future.
    pub expires: Option<OffsetDateTime>,
}

/// A token as listed: never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// `tok_` and a UUID: public, for listing and revoking.
    pub id: String,
    pub principal_id: String,
    pub name: String,
    pub purpose: TokenPurpose,
    pub created: OffsetDateTime,
    pub expires: Option<OffsetDateTime>,
    pub revoked: Option<OffsetDateTime>,
}

/// Which role assignments to list. Both set: both must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentFilter {
    pub principal_id: Option<String>,
    /// Assignments at this scope or below it.
    pub scope: Option<ajar_domain::access::Scope>,
}

/// Everything an access decision needs, read at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSnapshot {
    /// The [`Store::access_version`] read before the roles and assignments: if
    /// it still matches, nothing has changed since.
    pub version: u64,
    /// The built-in roles first, then the custom ones.
    pub roles: Vec<RoleDefinition>,
    pub assignments: Vec<RoleAssignment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Calls the API as its principal.
    Api,
    /// Only enrols host agents.
    Join,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Api => "api",
            TokenPurpose::Join => "join",
        }
    }

    pub fn parse(s: &str) -> Option<TokenPurpose> {
        match s {
            "api" => Some(TokenPurpose::Api),
            "join" => Some(TokenPurpose::Join),
            _ => None,
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

/// What an agent enforces: one machine (a host agent), or the machines behind a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentOf {
    Machine(VmId),
    Gateway(GatewayName),
}

/// A gateway at enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGateway {
    pub name: GatewayName,
    pub public: Vec<std::net::IpAddr>,
    pub mapped_ports: PortRange,
}

/// A gateway with the machines behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayView {
    pub gateway: Gateway,
    pub machines: Vec<VmId>,
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

    /// Creates or replaces a machine's entry. A machine keeps the spelling of the ID it was created
    /// with, as an ARM resource keeps its name's: a PUT naming it in another case updates it.
    async fn put_vm(&self, vm: Vm, audit: Audit) -> StoreResult<PutOutcome>;
    async fn get_vm(&self, id: &VmId) -> StoreResult<Option<Vm>>;
    async fn list_vms(&self, query: ListQuery) -> StoreResult<Page<Vm>>;
    /// Refuses while the machine is in a policy. Returns whether it existed.
    async fn delete_vm(&self, id: &VmId, audit: Audit) -> StoreResult<bool>;

    /// Creates or replaces a policy, if `precondition` names the version stored (`PreconditionFailed`
    /// otherwise). Live grants the new version no longer allows are revoked in the same transaction.
    async fn put_policy(
        &self,
        policy: Policy,
        precondition: Option<Precondition>,
        limits: Limits,
        audit: Audit,
    ) -> StoreResult<(PutOutcome, PolicyView)>;
    async fn get_policy(&self, id: &PolicyId) -> StoreResult<Option<PolicyView>>;
    /// The policies of the query's scope inside `within`, or holding a machine inside it.
    async fn list_policies(&self, query: ListQuery) -> StoreResult<Page<PolicyView>>;
    /// Deletes a policy, if `precondition` names the version stored, and revokes its live grants. Returns
    /// the version deleted, if there was one.
    async fn delete_policy(&self, id: &PolicyId, precondition: Option<Precondition>, audit: Audit) -> StoreResult<Option<Policy>>;
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

    /// Checks a request, one part per policy, against the policies and, if every part is allowed,
    /// stores each as live grants, superseding earlier live grants for the same machine and port. One
    /// refusal refuses all of it.
    async fn initiate(&self, parts: Vec<InitiatePart>, caller: Caller) -> StoreResult<Vec<AccessRequest>>;
    /// Marks live grants whose end time has passed as expired. Returns how many.
    async fn expire_due(&self) -> StoreResult<u64>;
    /// The earliest end time of a live grant.
    async fn next_expiry(&self) -> StoreResult<Option<OffsetDateTime>>;

    /// The statuses of the query's machines in state `state` (any if `None`).
    async fn vm_statuses(&self, query: ListQuery, state: Option<JitStateFilter>) -> StoreResult<Page<VmJitStatus>>;
    /// One machine's JIT status, if it is in the inventory.
    async fn vm_status(&self, id: &VmId) -> StoreResult<Option<VmJitStatus>>;
    /// The statuses of these machines (those in the inventory), in one read.
    async fn vm_statuses_of(&self, ids: Vec<VmId>) -> StoreResult<Vec<VmJitStatus>>;
    /// Every machine in `scope` inside `within` with its JIT state, without the rest of its status:
    /// cheap enough to count and page thousands.
    async fn jit_states(&self, scope: &Scope, within: Option<Vec<AccessScope>>) -> StoreResult<Vec<(Vm, JitState)>>;

    /// The grants open at some time in `[from, to)` on machines inside `within` (`None`: on any), newest
    /// start first: at most `limit`, with `cut` set when there were more.
    async fn grants_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        within: Option<Vec<AccessScope>>,
        limit: usize,
    ) -> StoreResult<GrantHistory>;

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
    async fn agent_for_token(&self, hash: [u8; 32]) -> StoreResult<Option<(String, AgentOf)>>;
    /// Records an agent's report (also its heartbeat).
    async fn agent_report(&self, agent_id: &str, report: AgentReport) -> StoreResult<()>;
    /// What the agent of `vm` must enforce now.
    async fn desired_state(&self, vm: &VmId) -> StoreResult<DesiredState>;
    /// Enrols a gateway with its agent; refused if one of that name exists. Returns the agent's ID.
    async fn enroll_gateway(&self, gateway: NewGateway, agent: NewAgent, audit: Audit) -> StoreResult<String>;
    async fn gateways(&self) -> StoreResult<Vec<GatewayView>>;
    async fn get_gateway(&self, name: &GatewayName) -> StoreResult<Option<GatewayView>>;
    /// Removes a gateway and its agent; refused while machines are behind it. `false`: there was none.
    async fn delete_gateway(&self, name: &GatewayName, audit: Audit) -> StoreResult<bool>;
    /// Puts a machine behind a gateway or takes it out (`None`), as
    /// `ajar_domain::plans::gateway_assignment` decides. Returns the machine as it now is, and the
    /// gateway it was behind before.
    async fn set_vm_gateway(&self, vm: &VmId, gateway: Option<GatewayName>, audit: Audit) -> StoreResult<(Vm, Option<GatewayName>)>;
    async fn gateway_desired_state(&self, name: &GatewayName) -> StoreResult<GatewayDesiredState>;
    /// Ends the live grants on these ports of these machines now (status Revoked, UserRequested): all
    /// or, if one machine or port is refused, none. Returns how many it ended.
    async fn revoke(&self, policy: &PolicyId, targets: Vec<(VmId, Vec<u16>)>, audit: Audit) -> StoreResult<u64>;
    /// Recomputes the activity log's hash chain from the first entry. Returns
    /// how many entries it checked, or the sequence number of the first entry
    /// that does not match (edited, inserted, or after a deleted one).
    async fn verify_activity_chain(&self) -> StoreResult<Result<u64, i64>>;

    // ------------------------------------------------------------ identity
    // The store checks shape and consistency only; who may call these is the
    // server's decision.

    /// Refuses a malformed name (`InvalidPrincipal`) and a name or OIDC
    /// identity already taken (`PrincipalExists`).
    async fn create_principal(&self, new: NewPrincipal, audit: Audit) -> StoreResult<Principal>;
    /// By name.
    async fn list_principals(&self) -> StoreResult<Vec<PrincipalInfo>>;
    async fn get_principal(&self, id: &str) -> StoreResult<Option<PrincipalInfo>>;
    /// Deletes the principal with its tokens and role assignments. Refuses
    /// (`LastOwner`) when it is the last principal holding Owner at `/`.
    /// Returns whether it existed.
    async fn delete_principal(&self, id: &str, audit: Audit) -> StoreResult<bool>;
    /// The principal linked to this OIDC identity.
    async fn principal_for_oidc(&self, issuer: &str, subject: &str) -> StoreResult<Option<Principal>>;

    /// Stores an API token. Refuses an unknown principal (`PrincipalNotFound`)
    /// and a malformed label or an expiry not in the future (`InvalidToken`).
    async fn create_token(&self, new: NewToken, audit: Audit) -> StoreResult<TokenInfo>;
    /// Every token, or one principal's, oldest first; revoked and expired ones too.
    async fn list_tokens(&self, principal_id: Option<&str>) -> StoreResult<Vec<TokenInfo>>;
    async fn get_token(&self, id: &str) -> StoreResult<Option<TokenInfo>>;
    /// Revokes a token now (a revoked one stays as it was). `None` if there is no such token.
    async fn revoke_token(&self, id: &str, audit: Audit) -> StoreResult<Option<TokenInfo>>;

    /// Creates or replaces a custom role. Refuses what `validate_custom_role`
    /// refuses (built-in IDs and names included) and a name another custom role
    /// has (`RoleDefinitionWithSameNameExists`).
    async fn put_role_definition(&self, role: RoleDefinition, audit: Audit) -> StoreResult<PutOutcome>;
    /// A built-in or custom role, by GUID or `…/roleDefinitions/{guid}`, any case.
    async fn get_role_definition(&self, id: &str) -> StoreResult<Option<RoleDefinition>>;
    /// The built-in roles first, then the custom ones by name.
    async fn list_role_definitions(&self) -> StoreResult<Vec<RoleDefinition>>;
    /// Deletes a custom role. Refuses a built-in one (`InvalidRoleDefinition`)
    /// and one still assigned (`RoleDefinitionHasAssignments`). Returns whether it existed.
    async fn delete_role_definition(&self, id: &str, audit: Audit) -> StoreResult<bool>;

    /// Stores an assignment (IDs lower-cased; `role_id` may be a resource ID).
    /// Refuses an unknown principal (`PrincipalNotFound`) or role
    /// (`RoleDefinitionDoesNotExist`), a scope outside the role's assignable
    /// scopes (`ScopeNotAssignable`), the same principal, role and scope under
    /// another ID (`RoleAssignmentExists`) and a different assignment under the
    /// same ID (`RoleAssignmentUpdateNotPermitted`). The same assignment again
    /// is `Updated` and changes nothing.
    async fn create_role_assignment(&self, assignment: RoleAssignment, audit: Audit) -> StoreResult<PutOutcome>;
    /// Refuses (`LastOwner`) to remove the last Owner assignment at `/`.
    async fn delete_role_assignment(&self, id: &str, audit: Audit) -> StoreResult<Option<RoleAssignment>>;
    async fn get_role_assignment(&self, id: &str) -> StoreResult<Option<RoleAssignment>>;
    /// By scope, then principal.
    async fn list_role_assignments(&self, filter: AssignmentFilter) -> StoreResult<Vec<RoleAssignment>>;

    /// Every role and assignment, read in one transaction.
    async fn access_snapshot(&self) -> StoreResult<AccessSnapshot>;
    /// Changes after every committed write to principals, tokens, roles or
    /// assignments, and never repeats across restarts; reads leave it alone.
    fn access_version(&self) -> u64;
}
