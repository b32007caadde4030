//! [`Read`] and [`Tx`] over one SQLite connection: a read-only snapshot, or the writer's transaction
//! with what the writer keeps between operations.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;
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
use ajar_domain::status::RECENT_DAYS;
use ajar_domain::{PolicyId, SubscriptionId, VmId};

use super::{activity, backend, gateways, identity, inventory, policies};
use crate::backend::{ActivityRow, PolicyQuery, Read, Tx, VmQuery};
use crate::{
    AgentOf, AgentReport, AssignmentFilter, Defaults, NewAgent, OidcLink, Page, Principal, PrincipalInfo, StoreError, StoreResult,
    Subscription, TokenInfo, TokenPurpose,
};

/// Policies the policy cache holds before it starts over.
const POLICY_CACHE_MAX: usize = 4096;

/// What the writer keeps between operations.
pub(crate) struct WriterState {
    /// The activity log's last chain hash.
    pub(crate) chain: [u8; 32],
    /// Policies the writer has read, so an initiate does not read its policy again. Only the writer
    /// changes policies, and every change (and every rollback) clears it.
    policies: HashMap<String, Arc<policies::PolicyRow>>,
    /// Why an operation's changes could not be undone: the batch must not commit.
    pub(crate) poisoned: Option<String>,
}

impl WriterState {
    pub(crate) fn new(chain: [u8; 32]) -> WriterState {
        WriterState { chain, policies: HashMap::new(), poisoned: None }
    }

    /// Back to the state of the database after a failed batch.
    pub(crate) fn reset(&mut self, chain: [u8; 32]) {
        self.chain = chain;
        self.policies.clear();
    }
}

/// One connection's reads and, for the writer, writes.
pub(crate) struct Sql<'a> {
    c: &'a Connection,
    writer: Option<&'a mut WriterState>,
    /// The chain head when each open savepoint was taken.
    savepoints: Vec<[u8; 32]>,
}

impl<'a> Sql<'a> {
    pub(crate) fn reader(c: &'a Connection) -> Sql<'a> {
        Sql { c, writer: None, savepoints: Vec::new() }
    }

    pub(crate) fn writer(c: &'a Connection, state: &'a mut WriterState) -> Sql<'a> {
        Sql { c, writer: Some(state), savepoints: Vec::new() }
    }

    /// Ends an operation: a savepoint it left open poisons the batch (its work is in doubt).
    pub(crate) fn close(mut self) {
        if !self.savepoints.is_empty() {
            self.poison("an operation left a savepoint open".into());
        }
    }

    fn state(&mut self) -> StoreResult<&mut WriterState> {
        self.writer.as_deref_mut().ok_or_else(|| StoreError::Backend("a write on a read-only connection".into()))
    }

    fn poison(&mut self, why: String) {
        if let Some(state) = self.writer.as_deref_mut() {
            state.poisoned.get_or_insert(why);
        }
    }

    /// A policy with its incarnation, through the writer's cache.
    fn policy_row(&mut self, key: &str) -> StoreResult<Option<Arc<policies::PolicyRow>>> {
        let Some(state) = self.writer.as_deref_mut() else { return Ok(policies::policy(self.c, key)?.map(Arc::new)) };
        if let Some(row) = state.policies.get(key) {
            return Ok(Some(Arc::clone(row)));
        }
        let Some(row) = policies::policy(self.c, key)? else { return Ok(None) };
        if state.policies.len() >= POLICY_CACHE_MAX {
            state.policies.clear();
        }
        let row = Arc::new(row);
        state.policies.insert(key.to_owned(), Arc::clone(&row));
        Ok(Some(row))
    }

    fn forget_policies(&mut self) {
        if let Some(state) = self.writer.as_deref_mut() {
            state.policies.clear();
        }
    }
}

impl Read for Sql<'_> {
    fn defaults(&mut self) -> StoreResult<Option<Defaults>> {
        inventory::defaults(self.c)
    }

    fn subscriptions(&mut self) -> StoreResult<Vec<Subscription>> {
        inventory::subscriptions(self.c)
    }

    fn subscription_exists(&mut self, id: &SubscriptionId) -> StoreResult<bool> {
        inventory::subscription_exists(self.c, id)
    }

    fn vm(&mut self, id: &VmId) -> StoreResult<Option<Vm>> {
        inventory::vm(self.c, &id.key())
    }

    fn list_vms(&mut self, query: &VmQuery) -> StoreResult<Page<Vm>> {
        inventory::list_vms(self.c, query)
    }

    fn vms_with_policy_flag(&mut self, scope: &Scope, within: Option<&[AccessScope]>) -> StoreResult<Vec<(Vm, bool)>> {
        inventory::vms_with_policy_flag(self.c, scope, within)
    }

    fn policy(&mut self, id: &PolicyId) -> StoreResult<Option<StoredPolicy>> {
        Ok(self.policy_row(&id.key())?.map(|row| row.stored.clone()))
    }

    fn holders(&mut self, vms: &[VmId]) -> StoreResult<Vec<(VmId, PolicyId)>> {
        policies::holders(self.c, vms)
    }

    fn list_policies(&mut self, query: &PolicyQuery) -> StoreResult<Page<PolicyId>> {
        policies::list(self.c, query)
    }

    fn requests(&mut self, policy: &PolicyId, limit: usize) -> StoreResult<Vec<AccessRequest>> {
        policies::requests(self.c, policy, limit)
    }

    fn live_grants_of_policy(&mut self, policy: &PolicyId, now: OffsetDateTime) -> StoreResult<Vec<LiveGrant>> {
        policies::live_grants_of_policy(self.c, policy, now)
    }

    fn live_grants_on(&mut self, vm: &VmId, ports: Option<&[u16]>, now: OffsetDateTime) -> StoreResult<Vec<LiveGrant>> {
        policies::live_grants_on(self.c, vm, ports, now)
    }

    fn next_expiry(&mut self) -> StoreResult<Option<OffsetDateTime>> {
        policies::next_expiry(self.c)
    }

    fn cuts_since(&mut self, vm: &VmId, since: OffsetDateTime) -> StoreResult<Vec<ConnectionCut>> {
        policies::cuts_since(self.c, vm, since)
    }

    fn requests_per_day(&mut self, vm: &VmId, first: OffsetDateTime) -> StoreResult<[u32; RECENT_DAYS]> {
        policies::requests_per_day(self.c, vm, first)
    }

    fn last_access(&mut self, vm: &VmId) -> StoreResult<Option<(OffsetDateTime, String)>> {
        policies::last_access(self.c, vm)
    }

    fn grants_between(
        &mut self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        within: Option<&[AccessScope]>,
        limit: usize,
    ) -> StoreResult<GrantHistory> {
        policies::grants_between(self.c, from, to, within, limit)
    }

    fn activity(&mut self, query: &ActivityQuery) -> StoreResult<Vec<ActivityEntry>> {
        activity::activity(self.c, query)
    }

    fn chain_head(&mut self) -> StoreResult<[u8; 32]> {
        match self.writer.as_deref() {
            Some(state) => Ok(state.chain),
            None => activity::chain_head(self.c),
        }
    }

    fn activity_rows(&mut self, after: i64, limit: usize) -> StoreResult<Vec<(i64, ActivityRow)>> {
        activity::rows(self.c, after, limit)
    }

    fn agent_for_token(&mut self, hash: &[u8; 32]) -> StoreResult<Option<(String, AgentOf)>> {
        inventory::agent_for_token(self.c, hash)
    }

    fn gateway(&mut self, name: &GatewayName) -> StoreResult<Option<Gateway>> {
        gateways::gateway(self.c, name)
    }

    fn gateways(&mut self) -> StoreResult<Vec<Gateway>> {
        gateways::gateways(self.c)
    }

    fn served_by(&mut self, gateway: &GatewayName) -> StoreResult<Vec<Vm>> {
        gateways::served_by(self.c, gateway)
    }

    fn live_grants_behind(&mut self, gateway: &GatewayName, now: OffsetDateTime) -> StoreResult<Vec<LiveGrant>> {
        policies::live_grants_behind(self.c, &gateway.key(), now)
    }

    fn cuts_behind(&mut self, gateway: &GatewayName, since: OffsetDateTime) -> StoreResult<Vec<ConnectionCut>> {
        policies::cuts_behind(self.c, &gateway.key(), since)
    }

    fn principal_for_token(&mut self, hash: &[u8; 32], purpose: TokenPurpose, now: OffsetDateTime) -> StoreResult<Option<Principal>> {
        identity::principal_for_token(self.c, hash, purpose, now)
    }

    fn principals(&mut self, now: OffsetDateTime) -> StoreResult<Vec<PrincipalInfo>> {
        identity::list_principals(self.c, now)
    }

    fn principal(&mut self, id: &str, now: OffsetDateTime) -> StoreResult<Option<PrincipalInfo>> {
        identity::get_principal(self.c, id, now)
    }

    fn principal_named(&mut self, name: &str) -> StoreResult<Option<Principal>> {
        identity::principal_named(self.c, name)
    }

    fn principal_for_oidc(&mut self, issuer: &str, subject: &str) -> StoreResult<Option<Principal>> {
        identity::principal_for_oidc(self.c, issuer, subject)
    }

    fn tokens(&mut self, principal_id: Option<&str>) -> StoreResult<Vec<TokenInfo>> {
        identity::list_tokens(self.c, principal_id)
    }

    fn token(&mut self, id: &str) -> StoreResult<Option<TokenInfo>> {
        identity::get_token(self.c, id)
    }

    fn custom_role(&mut self, key: &str) -> StoreResult<Option<RoleDefinition>> {
        identity::custom_role(self.c, key)
    }

    fn custom_roles(&mut self) -> StoreResult<Vec<RoleDefinition>> {
        identity::custom_roles(self.c)
    }

    fn custom_role_named(&mut self, name: &str, except: &str) -> StoreResult<Option<String>> {
        identity::custom_role_named(self.c, name, except)
    }

    fn assignment(&mut self, id: &str) -> StoreResult<Option<RoleAssignment>> {
        identity::get_role_assignment(self.c, id)
    }

    fn assignments(&mut self, filter: &AssignmentFilter) -> StoreResult<Vec<RoleAssignment>> {
        identity::list_role_assignments(self.c, filter)
    }

    fn assignment_of(&mut self, principal_id: &str, role_key: &str, scope: &AccessScope) -> StoreResult<Option<String>> {
        identity::assignment_of(self.c, principal_id, role_key, scope)
    }

    fn assignments_of_role(&mut self, role_key: &str) -> StoreResult<u64> {
        identity::assignments_of_role(self.c, role_key)
    }

    fn root_owners(&mut self) -> StoreResult<Vec<String>> {
        identity::root_owners(self.c)
    }
}

impl Tx for Sql<'_> {
    fn savepoint(&mut self) -> StoreResult<()> {
        let chain = self.state()?.chain;
        self.c.execute_batch("SAVEPOINT op").map_err(|e| backend("savepoint", e))?;
        self.savepoints.push(chain);
        Ok(())
    }

    fn rollback_savepoint(&mut self) -> StoreResult<()> {
        let Some(chain) = self.savepoints.pop() else { return Err(StoreError::Backend("no savepoint to roll back".into())) };
        // What was read or chained inside the rolled-back work may be gone.
        let state = self.state()?;
        state.chain = chain;
        state.policies.clear();
        if let Err(e) = self.c.execute_batch("ROLLBACK TO op; RELEASE op") {
            self.poison(format!("rolling back a savepoint: {e}"));
            return Err(backend("rolling back a savepoint", e));
        }
        Ok(())
    }

    fn release_savepoint(&mut self) -> StoreResult<()> {
        if self.savepoints.pop().is_none() {
            return Err(StoreError::Backend("no savepoint to release".into()));
        }
        if let Err(e) = self.c.execute_batch("RELEASE op") {
            self.poison(format!("releasing a savepoint: {e}"));
            return Err(backend("releasing a savepoint", e));
        }
        Ok(())
    }

    fn insert_subscription(&mut self, subscription: &Subscription, now: OffsetDateTime) -> StoreResult<()> {
        inventory::insert_subscription(self.c, subscription, now)
    }

    fn store_defaults(&mut self, defaults: &Defaults) -> StoreResult<()> {
        inventory::store_defaults(self.c, defaults)
    }

    fn put_vm(&mut self, vm: &Vm, now: OffsetDateTime) -> StoreResult<bool> {
        inventory::put_vm(self.c, vm, now)
    }

    fn delete_vm(&mut self, id: &VmId) -> StoreResult<bool> {
        inventory::delete_vm(self.c, &id.key())
    }

    fn write_policy(&mut self, policy: &StoredPolicy, now: OffsetDateTime) -> StoreResult<()> {
        self.forget_policies();
        policies::write(self.c, policy, now)
    }

    fn delete_policy(&mut self, id: &PolicyId) -> StoreResult<()> {
        self.forget_policies();
        policies::delete(self.c, &id.key())
    }

    fn insert_request(&mut self, request: &AccessRequest, caller: &Caller) -> StoreResult<()> {
        let row = self.policy_row(&request.policy.key())?;
        let row =
            row.ok_or_else(|| StoreError::Backend(format!("storing a request under policy '{}', which is not stored", request.policy)))?;
        policies::insert_request(self.c, &row.uid, request, caller)
    }

    fn end_grants(&mut self, ends: &[GrantEnd], now: OffsetDateTime) -> StoreResult<()> {
        policies::end_grants(self.c, ends, now)
    }

    fn expire_grants(&mut self, now: OffsetDateTime) -> StoreResult<u64> {
        policies::expire_grants(self.c, now)
    }

    fn insert_cuts(&mut self, cuts: &[CutPlan], now: OffsetDateTime, forget_before: OffsetDateTime) -> StoreResult<()> {
        policies::insert_cuts(self.c, cuts, now, forget_before)
    }

    fn append_activity(&mut self, row: &ActivityRow) -> StoreResult<()> {
        activity::append(self.c, row)?;
        self.state()?.chain = row.chain;
        Ok(())
    }

    fn insert_agent(&mut self, id: &str, vm: &VmId, agent: &NewAgent, now: OffsetDateTime) -> StoreResult<()> {
        inventory::insert_agent(self.c, id, vm, agent, now)
    }

    fn update_agent(&mut self, agent_id: &str, report: &AgentReport, now: OffsetDateTime) -> StoreResult<bool> {
        inventory::update_agent(self.c, agent_id, report, now)
    }

    fn insert_gateway(&mut self, gateway: &Gateway, agent: &NewAgent, now: OffsetDateTime) -> StoreResult<()> {
        gateways::insert_gateway(self.c, gateway, agent, now)
    }

    fn delete_gateway(&mut self, name: &GatewayName) -> StoreResult<bool> {
        gateways::delete_gateway(self.c, name)
    }

    fn set_vm_gateway(&mut self, vm: &VmId, gateway: Option<&GatewayName>) -> StoreResult<()> {
        // Policies read afterwards show the machine's new public address.
        self.forget_policies();
        gateways::set_vm_gateway(self.c, vm, gateway)
    }

    fn insert_principal(&mut self, principal: &Principal, oidc: Option<&OidcLink>, now: OffsetDateTime) -> StoreResult<()> {
        identity::insert_principal(self.c, principal, oidc, now)
    }

    fn delete_principal(&mut self, id: &str) -> StoreResult<(u64, u64)> {
        identity::delete_principal(self.c, id)
    }

    fn insert_token(&mut self, token: &TokenInfo, hash: &[u8; 32]) -> StoreResult<()> {
        identity::insert_token(self.c, token, hash)
    }

    fn revoke_token(&mut self, id: &str, now: OffsetDateTime) -> StoreResult<()> {
        identity::revoke_token(self.c, id, now)
    }

    fn put_custom_role(&mut self, role: &RoleDefinition, now: OffsetDateTime) -> StoreResult<()> {
        identity::put_role_definition(self.c, role, now)
    }

    fn delete_custom_role(&mut self, key: &str) -> StoreResult<bool> {
        identity::delete_role_definition(self.c, key)
    }

    fn insert_assignment(&mut self, assignment: &RoleAssignment, created_by: &str, now: OffsetDateTime) -> StoreResult<()> {
        identity::insert_assignment(self.c, assignment, created_by, now)
    }

    fn delete_assignment(&mut self, id: &str) -> StoreResult<()> {
        identity::delete_role_assignment(self.c, id)
    }
}
