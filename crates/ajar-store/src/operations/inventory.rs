//! First start, the inventory of machines, and their agents.

use time::OffsetDateTime;

use ajar_domain::access::RoleAssignment;
use ajar_domain::access::builtin::OWNER_ID;
use ajar_domain::inventory::{EnforcementPoint, Vm};
use ajar_domain::problem::{Field, Target};
use ajar_domain::{ErrorCode, Problem, VmId};

use crate::backend::{JitStateFilter, Tx, VmQuery};
use crate::{
    AgentReport, BootstrapPlan, Defaults, ListQuery, NewAgent, Principal, PrincipalKind, PutOutcome, StoreResult, TokenInfo, TokenPurpose,
};

pub(crate) fn vm_query(query: ListQuery, state: Option<JitStateFilter>) -> VmQuery {
    VmQuery { scope: query.scope, within: query.within, state, page: query.page }
}

pub(crate) fn require_subscription(tx: &mut dyn Tx, id: &ajar_domain::SubscriptionId) -> StoreResult<()> {
    if tx.subscription_exists(id)? {
        Ok(())
    } else {
        Err(Problem::new(ErrorCode::SubscriptionNotFound, None, format!("subscription '{id}' is not known to this server")).into())
    }
}

/// First start: the subscription, the admin (Owner at `/`) with its API token, and the enrolment
/// principal with the join token. Refused once it has happened.
pub(crate) fn bootstrap(tx: &mut dyn Tx, plan: &BootstrapPlan, now: OffsetDateTime) -> StoreResult<Defaults> {
    if tx.defaults()?.is_some() {
        return Err(Problem::new(ErrorCode::Conflict, None, "this data directory was initialised already").into());
    }
    tx.insert_subscription(&plan.subscription, now)?;
    let admin = Principal { id: uuid::Uuid::new_v4().to_string(), name: plan.admin_name.clone(), kind: PrincipalKind::User };
    let enrolment = Principal { id: uuid::Uuid::new_v4().to_string(), name: "agent-enrolment".into(), kind: PrincipalKind::Service };
    for (principal, hash, purpose, label) in [
        (&admin, &plan.admin_token_hash, TokenPurpose::Api, "bootstrap api"),
        (&enrolment, &plan.join_token_hash, TokenPurpose::Join, "bootstrap join"),
    ] {
        tx.insert_principal(principal, None, now)?;
        let token = TokenInfo {
            id: super::identity::new_token_id(),
            principal_id: principal.id.clone(),
            name: label.to_owned(),
            purpose,
            created: now,
            expires: None,
            revoked: None,
        };
        tx.insert_token(&token, hash)?;
    }
    let owner = RoleAssignment {
        id: uuid::Uuid::new_v4().to_string(),
        principal_id: admin.id.clone(),
        role_id: OWNER_ID.to_owned(),
        scope: ajar_domain::access::Scope::root(),
    };
    tx.insert_assignment(&owner, "bootstrap", now)?;
    let defaults = Defaults {
        subscription: plan.subscription.id.clone(),
        resource_group: plan.resource_group.clone(),
        location: plan.location.clone(),
    };
    tx.store_defaults(&defaults)?;
    Ok(defaults)
}

/// Creates or replaces an inventory entry. A machine in a policy keeps the policy's location: moving
/// it would take it out of its policy's reach.
pub(crate) fn put_vm(tx: &mut dyn Tx, vm: &Vm, now: OffsetDateTime) -> StoreResult<PutOutcome> {
    require_subscription(tx, &vm.id.subscription)?;
    if let Some((_, policy)) = tx.holders(std::slice::from_ref(&vm.id))?.pop()
        && policy.location != vm.location
    {
        return Err(Problem::at(
            ErrorCode::InvalidVirtualMachine,
            Target::of(Field::Location),
            format!(
                "the machine is in JIT policy '{policy}' of location '{}'; remove it from that policy before moving it",
                policy.location
            ),
        )
        .about(&vm.id)
        .into());
    }
    Ok(if tx.put_vm(vm, now)? { PutOutcome::Created } else { PutOutcome::Updated })
}

/// Deletes an inventory entry and its agent (the credential stops working, and the machine can be
/// enrolled again); refused while the machine is in a policy.
pub(crate) fn delete_vm(tx: &mut dyn Tx, id: &VmId) -> StoreResult<bool> {
    if let Some((_, policy)) = tx.holders(std::slice::from_ref(id))?.pop() {
        return Err(Problem::new(
            ErrorCode::VirtualMachineInUse,
            None,
            format!("virtual machine '{id}' is in JIT policy '{policy}'; remove it from the policy first"),
        )
        .about(id)
        .into());
    }
    tx.delete_vm(id)
}

/// Registers (or updates) an agent's machine and records the agent. A machine that has an agent
/// already is refused, so that a leaked join token cannot take one over.
pub(crate) fn enroll_agent(tx: &mut dyn Tx, vm: &Vm, agent: &NewAgent, now: OffsetDateTime) -> StoreResult<String> {
    if tx.vm(&vm.id)?.is_some_and(|existing| matches!(existing.enforcement, EnforcementPoint::Agent(_))) {
        return Err(Problem::new(
            ErrorCode::Conflict,
            None,
            format!("virtual machine '{}' already has an agent; remove it (ajar vm remove) before enrolling another", vm.id),
        )
        .about(&vm.id)
        .into());
    }
    put_vm(tx, vm, now)?;
    let id = uuid::Uuid::new_v4().to_string();
    tx.insert_agent(&id, &vm.id, agent, now)?;
    Ok(id)
}

pub(crate) fn agent_report(tx: &mut dyn Tx, agent_id: &str, report: &AgentReport, now: OffsetDateTime) -> StoreResult<()> {
    if tx.update_agent(agent_id, report, now)? {
        Ok(())
    } else {
        Err(Problem::new(ErrorCode::Conflict, None, "this agent is no longer enrolled").into())
    }
}
