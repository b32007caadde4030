//! [`Store`] for every [`Backend`]: each operation reads through [`Read`]/[`Tx`] what its decision
//! needs, asks the domain for the plan, and applies it, with its activity entry, in one transaction.

mod activity;
mod gateways;
mod identity;
mod inventory;
mod policies;
mod requests;
mod status;

use async_trait::async_trait;
use time::OffsetDateTime;

use ajar_domain::access::{RoleAssignment, RoleDefinition, Scope as AccessScope};
use ajar_domain::activity::{ActivityEntry, ActivityQuery, Audit, Outcome};
use ajar_domain::agent::{DesiredState, GatewayDesiredState};
use ajar_domain::gateway::GatewayName;
use ajar_domain::history::GrantHistory;
use ajar_domain::ids::{PolicyName, Scope};
use ajar_domain::initiate::{AccessRequest, Caller};
use ajar_domain::inventory::Vm;
use ajar_domain::plans::Precondition;
use ajar_domain::policy::{Limits, Policy, PortRule};
use ajar_domain::status::{JitState, VmJitStatus};
use ajar_domain::{PolicyId, VmId};

use crate::backend::{Backend, JitStateFilter, Tx, WriteKind};
use crate::{
    AccessSnapshot, AgentOf, AgentReport, AssignmentFilter, BootstrapPlan, Defaults, GatewayView, InitiatePart, ListQuery, NewAgent,
    NewGateway, NewPrincipal, NewToken, Page, PolicyView, Principal, PrincipalInfo, PutOutcome, Store, StoreError, StoreResult,
    Subscription, TokenInfo, TokenPurpose,
};

/// Name/value pairs an operation adds to its activity entry.
pub(crate) type Details = Vec<(String, String)>;

/// Runs `work` on its own: inside a savepoint, undone if it fails.
pub(crate) fn atomic<R>(tx: &mut dyn Tx, work: impl FnOnce(&mut dyn Tx) -> StoreResult<R>) -> StoreResult<R> {
    tx.savepoint()?;
    match work(tx) {
        Ok(value) => {
            tx.release_savepoint()?;
            Ok(value)
        }
        Err(e) => {
            tx.rollback_savepoint()?;
            Err(e)
        }
    }
}

/// Runs `work` on record: on success with an entry per audit (each with the details `work` returns
/// for it, in order), in the same transaction; refused, with nothing of it kept but a failed entry per
/// audit, naming the problem. A backend failure records nothing (the transaction is in doubt).
pub(crate) fn logged<R>(
    tx: &mut dyn Tx,
    now: OffsetDateTime,
    audits: &[&Audit],
    work: impl FnOnce(&mut dyn Tx) -> StoreResult<(R, Vec<Details>)>,
) -> StoreResult<R> {
    let result = atomic(tx, |tx| {
        let (value, details) = work(tx)?;
        for (i, audit) in audits.iter().enumerate() {
            let extra = details.get(i).map(Vec::as_slice).unwrap_or_default();
            activity::append(tx, now, audit, &Outcome::Succeeded, extra)?;
        }
        Ok(value)
    });
    if let Err(StoreError::Rejected(problem)) = &result {
        let mut extra = vec![("error".to_owned(), problem.message.clone())];
        if let Some(machine) = &problem.machine {
            extra.push(("refusedMachine".to_owned(), machine.to_string()));
        }
        let failed = Outcome::Failed { code: problem.code.as_str().to_owned() };
        atomic(tx, |tx| audits.iter().try_for_each(|audit| activity::append(tx, now, audit, &failed, &extra)))?;
    }
    result
}

/// [`logged`] for an operation with one audit and its details.
pub(crate) fn logged_one<R>(
    tx: &mut dyn Tx,
    now: OffsetDateTime,
    audit: &Audit,
    work: impl FnOnce(&mut dyn Tx) -> StoreResult<(R, Details)>,
) -> StoreResult<R> {
    logged(tx, now, &[audit], |tx| work(tx).map(|(value, details)| (value, vec![details])))
}

#[async_trait]
impl<B: Backend> Store for B {
    async fn defaults(&self) -> StoreResult<Option<Defaults>> {
        self.read(|r, _| r.defaults()).await
    }

    async fn bootstrap(&self, plan: BootstrapPlan) -> StoreResult<Defaults> {
        self.write(WriteKind::Access, move |tx, now| atomic(tx, |tx| inventory::bootstrap(tx, &plan, now))).await
    }

    async fn principal_for_token(&self, hash: [u8; 32], purpose: TokenPurpose) -> StoreResult<Option<Principal>> {
        self.read(move |r, now| r.principal_for_token(&hash, purpose, now)).await
    }

    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        self.read(|r, _| r.subscriptions()).await
    }

    async fn put_vm(&self, vm: Vm, audit: Audit) -> StoreResult<PutOutcome> {
        self.write(WriteKind::Data, move |tx, now| logged_one(tx, now, &audit, |tx| Ok((inventory::put_vm(tx, &vm, now)?, Vec::new()))))
            .await
    }

    async fn get_vm(&self, id: &VmId) -> StoreResult<Option<Vm>> {
        let id = id.clone();
        self.read(move |r, _| r.vm(&id)).await
    }

    async fn list_vms(&self, query: ListQuery) -> StoreResult<Page<Vm>> {
        self.read(move |r, _| r.list_vms(&inventory::vm_query(query, None))).await
    }

    async fn delete_vm(&self, id: &VmId, audit: Audit) -> StoreResult<bool> {
        let id = id.clone();
        self.write(WriteKind::Data, move |tx, now| logged_one(tx, now, &audit, |tx| Ok((inventory::delete_vm(tx, &id)?, Vec::new())))).await
    }

    async fn put_policy(
        &self,
        policy: Policy,
        precondition: Option<Precondition>,
        limits: Limits,
        audit: Audit,
    ) -> StoreResult<(PutOutcome, PolicyView)> {
        self.write(WriteKind::Data, move |tx, now| {
            logged_one(tx, now, &audit, |tx| policies::put(tx, policy, precondition.as_ref(), &limits, now))
        })
        .await
    }

    async fn get_policy(&self, id: &PolicyId) -> StoreResult<Option<PolicyView>> {
        let id = id.clone();
        self.read(move |r, _| policies::view(r, &id)).await
    }

    async fn list_policies(&self, query: ListQuery) -> StoreResult<Page<PolicyView>> {
        self.read(move |r, _| policies::list(r, query)).await
    }

    async fn delete_policy(&self, id: &PolicyId, precondition: Option<Precondition>, audit: Audit) -> StoreResult<Option<Policy>> {
        let id = id.clone();
        self.write(WriteKind::Data, move |tx, now| logged_one(tx, now, &audit, |tx| policies::delete(tx, &id, precondition.as_ref(), now)))
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
        self.write(WriteKind::Data, move |tx, now| {
            logged_one(tx, now, &audit, |tx| policies::enable(tx, &vms, &policy_name, ports.as_deref(), &limits, now))
        })
        .await
    }

    async fn initiate(&self, parts: Vec<InitiatePart>, caller: Caller) -> StoreResult<Vec<AccessRequest>> {
        self.write(WriteKind::Data, move |tx, now| {
            let audits: Vec<&Audit> = parts.iter().map(|p| &p.audit).collect();
            logged(tx, now, &audits, |tx| requests::initiate(tx, &parts, &caller, now))
        })
        .await
    }

    async fn expire_due(&self) -> StoreResult<u64> {
        self.write(WriteKind::Data, |tx, now| atomic(tx, |tx| tx.expire_grants(now))).await
    }

    async fn next_expiry(&self) -> StoreResult<Option<OffsetDateTime>> {
        self.read(|r, _| r.next_expiry()).await
    }

    async fn vm_statuses(&self, query: ListQuery, state: Option<JitStateFilter>) -> StoreResult<Page<VmJitStatus>> {
        self.read(move |r, now| status::statuses(r, &inventory::vm_query(query, state), now)).await
    }

    async fn vm_status(&self, id: &VmId) -> StoreResult<Option<VmJitStatus>> {
        let id = id.clone();
        self.read(move |r, now| Ok(status::of_ids(r, std::slice::from_ref(&id), now)?.pop())).await
    }

    async fn vm_statuses_of(&self, ids: Vec<VmId>) -> StoreResult<Vec<VmJitStatus>> {
        self.read(move |r, now| status::of_ids(r, &ids, now)).await
    }

    async fn jit_states(&self, scope: &Scope, within: Option<Vec<AccessScope>>) -> StoreResult<Vec<(Vm, JitState)>> {
        let scope = scope.clone();
        self.read(move |r, _| status::jit_states(r, &scope, within.as_deref())).await
    }

    async fn grants_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        within: Option<Vec<AccessScope>>,
        limit: usize,
    ) -> StoreResult<GrantHistory> {
        self.read(move |r, _| r.grants_between(from, to, within.as_deref(), limit)).await
    }

    async fn record(&self, audit: Audit, outcome: Outcome) -> StoreResult<()> {
        self.write(WriteKind::Data, move |tx, now| atomic(tx, |tx| activity::append(tx, now, &audit, &outcome, &[]))).await
    }

    async fn activity(&self, query: ActivityQuery) -> StoreResult<Vec<ActivityEntry>> {
        self.read(move |r, _| r.activity(&query)).await
    }

    async fn enroll_agent(&self, vm: Vm, agent: NewAgent, audit: Audit) -> StoreResult<String> {
        self.write(WriteKind::Data, move |tx, now| {
            logged_one(tx, now, &audit, |tx| Ok((inventory::enroll_agent(tx, &vm, &agent, now)?, Vec::new())))
        })
        .await
    }

    async fn agent_for_token(&self, hash: [u8; 32]) -> StoreResult<Option<(String, AgentOf)>> {
        self.read(move |r, _| r.agent_for_token(&hash)).await
    }

    async fn agent_report(&self, agent_id: &str, report: AgentReport) -> StoreResult<()> {
        let agent_id = agent_id.to_owned();
        self.write(WriteKind::Data, move |tx, now| atomic(tx, |tx| inventory::agent_report(tx, &agent_id, &report, now))).await
    }

    async fn desired_state(&self, vm: &VmId) -> StoreResult<DesiredState> {
        let vm = vm.clone();
        self.read(move |r, now| status::desired_state(r, &vm, now)).await
    }

    async fn enroll_gateway(&self, gateway: NewGateway, agent: NewAgent, audit: Audit) -> StoreResult<String> {
        self.write(WriteKind::Data, move |tx, now| {
            logged_one(tx, now, &audit, |tx| Ok((gateways::enroll(tx, &gateway, &agent, now)?, Vec::new())))
        })
        .await
    }

    async fn gateways(&self) -> StoreResult<Vec<GatewayView>> {
        self.read(|r, _| r.gateways()?.into_iter().map(|g| gateways::view(r, g)).collect()).await
    }

    async fn get_gateway(&self, name: &GatewayName) -> StoreResult<Option<GatewayView>> {
        let name = name.clone();
        self.read(move |r, _| r.gateway(&name)?.map(|g| gateways::view(r, g)).transpose()).await
    }

    async fn delete_gateway(&self, name: &GatewayName, audit: Audit) -> StoreResult<bool> {
        let name = name.clone();
        self.write(WriteKind::Data, move |tx, now| logged_one(tx, now, &audit, |tx| gateways::delete(tx, &name))).await
    }

    async fn set_vm_gateway(&self, vm: &VmId, gateway: Option<GatewayName>, audit: Audit) -> StoreResult<(Vm, Option<GatewayName>)> {
        let vm = vm.clone();
        self.write(WriteKind::Data, move |tx, now| {
            logged_one(tx, now, &audit, |tx| gateways::set_vm_gateway(tx, &vm, gateway.as_ref(), now))
        })
        .await
    }

    async fn gateway_desired_state(&self, name: &GatewayName) -> StoreResult<GatewayDesiredState> {
        let name = name.clone();
        self.read(move |r, now| gateways::desired_state(r, &name, now)).await
    }

    async fn revoke(&self, policy: &PolicyId, targets: Vec<(VmId, Vec<u16>)>, audit: Audit) -> StoreResult<u64> {
        let policy = policy.clone();
        self.write(WriteKind::Data, move |tx, now| logged_one(tx, now, &audit, |tx| requests::revoke(tx, &policy, &targets, now))).await
    }

    async fn verify_activity_chain(&self) -> StoreResult<Result<u64, i64>> {
        self.read(|r, _| activity::verify_chain(r)).await
    }

    async fn create_principal(&self, new: NewPrincipal, audit: Audit) -> StoreResult<Principal> {
        self.write(WriteKind::Access, move |tx, now| logged_one(tx, now, &audit, |tx| identity::create_principal(tx, &new, now))).await
    }

    async fn list_principals(&self) -> StoreResult<Vec<PrincipalInfo>> {
        self.read(|r, now| r.principals(now)).await
    }

    async fn get_principal(&self, id: &str) -> StoreResult<Option<PrincipalInfo>> {
        let id = id.to_owned();
        self.read(move |r, now| r.principal(&id, now)).await
    }

    async fn delete_principal(&self, id: &str, audit: Audit) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(WriteKind::Access, move |tx, now| logged_one(tx, now, &audit, |tx| identity::delete_principal(tx, &id, now))).await
    }

    async fn principal_for_oidc(&self, issuer: &str, subject: &str) -> StoreResult<Option<Principal>> {
        let (issuer, subject) = (issuer.to_owned(), subject.to_owned());
        self.read(move |r, _| r.principal_for_oidc(&issuer, &subject)).await
    }

    async fn create_token(&self, new: NewToken, audit: Audit) -> StoreResult<TokenInfo> {
        self.write(WriteKind::Access, move |tx, now| logged_one(tx, now, &audit, |tx| identity::create_token(tx, &new, now))).await
    }

    async fn list_tokens(&self, principal_id: Option<&str>) -> StoreResult<Vec<TokenInfo>> {
        let principal_id = principal_id.map(str::to_owned);
        self.read(move |r, _| r.tokens(principal_id.as_deref())).await
    }

    async fn get_token(&self, id: &str) -> StoreResult<Option<TokenInfo>> {
        let id = id.to_owned();
        self.read(move |r, _| r.token(&id)).await
    }

    async fn revoke_token(&self, id: &str, audit: Audit) -> StoreResult<Option<TokenInfo>> {
        let id = id.to_owned();
        self.write(WriteKind::Access, move |tx, now| logged_one(tx, now, &audit, |tx| identity::revoke_token(tx, &id, now))).await
    }

    async fn put_role_definition(&self, role: RoleDefinition, audit: Audit) -> StoreResult<PutOutcome> {
        self.write(WriteKind::Access, move |tx, now| logged_one(tx, now, &audit, |tx| identity::put_role_definition(tx, &role, now))).await
    }

    async fn get_role_definition(&self, id: &str) -> StoreResult<Option<RoleDefinition>> {
        let id = id.to_owned();
        self.read(move |r, _| identity::role_definition(r, &id)).await
    }

    async fn list_role_definitions(&self) -> StoreResult<Vec<RoleDefinition>> {
        self.read(|r, _| identity::role_definitions(r)).await
    }

    async fn delete_role_definition(&self, id: &str, audit: Audit) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(WriteKind::Access, move |tx, now| logged_one(tx, now, &audit, |tx| identity::delete_role_definition(tx, &id))).await
    }

    async fn create_role_assignment(&self, assignment: RoleAssignment, audit: Audit) -> StoreResult<PutOutcome> {
        self.write(WriteKind::Access, move |tx, now| {
            let created_by = audit.caller.clone();
            logged_one(tx, now, &audit, |tx| identity::create_role_assignment(tx, &assignment, &created_by, now))
        })
        .await
    }

    async fn delete_role_assignment(&self, id: &str, audit: Audit) -> StoreResult<Option<RoleAssignment>> {
        let id = id.to_owned();
        self.write(WriteKind::Access, move |tx, now| logged_one(tx, now, &audit, |tx| identity::delete_role_assignment(tx, &id, now))).await
    }

    async fn get_role_assignment(&self, id: &str) -> StoreResult<Option<RoleAssignment>> {
        let id = id.to_owned();
        self.read(move |r, _| r.assignment(&id)).await
    }

    async fn list_role_assignments(&self, filter: AssignmentFilter) -> StoreResult<Vec<RoleAssignment>> {
        self.read(move |r, _| r.assignments(&filter)).await
    }

    async fn access_snapshot(&self) -> StoreResult<AccessSnapshot> {
        // Read before the data: a write that commits meanwhile leaves the snapshot older than its
        // version says, and the next check rebuilds.
        let version = Backend::access_version(self);
        self.read(move |r, _| {
            Ok(AccessSnapshot { version, roles: identity::role_definitions(r)?, assignments: r.assignments(&AssignmentFilter::default())? })
        })
        .await
    }

    fn access_version(&self) -> u64 {
        Backend::access_version(self)
    }
}
