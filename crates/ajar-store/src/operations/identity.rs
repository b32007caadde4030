//! Principals, tokens, custom roles and role assignments, as the domain's rules allow.

use time::OffsetDateTime;

use ajar_domain::access::{RoleAssignment, RoleDefinition, builtin_roles};
use ajar_domain::plans::identity::{
    AssignRole, builtin_role, plan_assignment, plan_delete_assignment, plan_delete_principal, plan_delete_role_definition, plan_principal,
    plan_role_definition, plan_token, role_key, stored_assignment,
};

use super::Details;
use crate::backend::{Read, Tx};
use crate::{NewPrincipal, NewToken, Principal, PutOutcome, StoreResult, TokenInfo, TokenPurpose};

pub(crate) fn new_token_id() -> String {
    format!("tok_{}", uuid::Uuid::now_v7().simple())
}

pub(crate) fn create_principal(tx: &mut dyn Tx, new: &NewPrincipal, now: OffsetDateTime) -> StoreResult<(Principal, Details)> {
    let taken = tx.principal_named(&new.name)?;
    let linked = match &new.oidc {
        Some(link) => tx.principal_for_oidc(&link.issuer, &link.subject)?,
        None => None,
    };
    let oidc = new.oidc.as_ref().map(|l| (l.issuer.as_str(), l.subject.as_str()));
    plan_principal(&new.name, oidc, taken.as_ref().map(|p| p.name.as_str()), linked.as_ref().map(|p| p.name.as_str()))?;
    let principal = Principal { id: uuid::Uuid::now_v7().to_string(), name: new.name.clone(), kind: new.kind };
    tx.insert_principal(&principal, new.oidc.as_ref(), now)?;
    let details = vec![("principalId".to_owned(), principal.id.clone())];
    Ok((principal, details))
}

/// Its tokens are deleted outright (which ends them as revoking would); the activity log keeps the record.
pub(crate) fn delete_principal(tx: &mut dyn Tx, id: &str, now: OffsetDateTime) -> StoreResult<(bool, Details)> {
    let Some(existing) = tx.principal(id, now)? else { return Ok((false, Vec::new())) };
    plan_delete_principal(id, &existing.principal.name, &tx.root_owners()?)?;
    let (tokens, assignments) = tx.delete_principal(id)?;
    let details = vec![("deletedTokens".to_owned(), tokens.to_string()), ("deletedRoleAssignments".to_owned(), assignments.to_string())];
    Ok((true, details))
}

pub(crate) fn create_token(tx: &mut dyn Tx, new: &NewToken, now: OffsetDateTime) -> StoreResult<(TokenInfo, Details)> {
    let known = tx.principal(&new.principal_id, now)?.is_some();
    plan_token(&new.name, new.expires, &new.principal_id, known, now)?;
    let token = TokenInfo {
        id: new_token_id(),
        principal_id: new.principal_id.clone(),
        name: new.name.clone(),
        purpose: TokenPurpose::Api,
        created: now,
        expires: new.expires,
        revoked: None,
    };
    tx.insert_token(&token, &new.hash)?;
    let details = vec![("tokenId".to_owned(), token.id.clone())];
    Ok((token, details))
}

/// Revokes a token now (a revoked one stays as it was). `None` if there is no such token.
pub(crate) fn revoke_token(tx: &mut dyn Tx, id: &str, now: OffsetDateTime) -> StoreResult<(Option<TokenInfo>, Details)> {
    tx.revoke_token(id, now)?;
    let token = tx.token(id)?;
    let details = token.iter().map(|t| ("principalId".to_owned(), t.principal_id.clone())).collect();
    Ok((token, details))
}

pub(crate) fn role_definition(r: &mut dyn Read, id: &str) -> StoreResult<Option<RoleDefinition>> {
    let key = role_key(id);
    match builtin_role(&key) {
        Some(role) => Ok(Some(role)),
        None => r.custom_role(&key),
    }
}

/// The built-in roles first, then the custom ones by name.
pub(crate) fn role_definitions(r: &mut dyn Read) -> StoreResult<Vec<RoleDefinition>> {
    let mut roles = builtin_roles();
    roles.extend(r.custom_roles()?);
    Ok(roles)
}

pub(crate) fn put_role_definition(tx: &mut dyn Tx, role: &RoleDefinition, now: OffsetDateTime) -> StoreResult<(PutOutcome, Details)> {
    let key = role.id.to_ascii_lowercase();
    let same_name = tx.custom_role_named(&role.name, &key)?;
    plan_role_definition(role, same_name.as_deref())?;
    let existed = tx.custom_role(&key)?.is_some();
    tx.put_custom_role(role, now)?;
    Ok((if existed { PutOutcome::Updated } else { PutOutcome::Created }, Vec::new()))
}

pub(crate) fn delete_role_definition(tx: &mut dyn Tx, id: &str) -> StoreResult<(bool, Details)> {
    let key = role_key(id);
    plan_delete_role_definition(&key, tx.assignments_of_role(&key)?)?;
    Ok((tx.delete_custom_role(&key)?, Vec::new()))
}

pub(crate) fn create_role_assignment(
    tx: &mut dyn Tx,
    assignment: &RoleAssignment,
    created_by: &str,
    now: OffsetDateTime,
) -> StoreResult<(PutOutcome, Details)> {
    let a = stored_assignment(assignment);
    let same_id = tx.assignment(&a.id)?;
    let principal_known = tx.principal(&a.principal_id, now)?.is_some();
    let role = role_definition(tx, &a.role_id)?;
    let duplicate = tx.assignment_of(&a.principal_id, &a.role_id, &a.scope)?;
    let store = plan_assignment(AssignRole {
        assignment: &a,
        same_id: same_id.as_ref(),
        principal_known,
        role: role.as_ref(),
        duplicate: duplicate.as_deref(),
    })?;
    if store {
        tx.insert_assignment(&a, created_by, now)?;
    }
    let details = vec![
        ("principalId".to_owned(), a.principal_id.clone()),
        ("roleDefinitionId".to_owned(), a.role_id.clone()),
        ("scope".to_owned(), a.scope.to_string()),
    ];
    Ok((if store { PutOutcome::Created } else { PutOutcome::Updated }, details))
}

pub(crate) fn delete_role_assignment(tx: &mut dyn Tx, id: &str, now: OffsetDateTime) -> StoreResult<(Option<RoleAssignment>, Details)> {
    let Some(existing) = tx.assignment(id)? else { return Ok((None, Vec::new())) };
    let name = tx.principal(&existing.principal_id, now)?.map(|p| p.principal.name);
    plan_delete_assignment(&existing, &tx.root_owners()?, name.as_deref().unwrap_or(&existing.principal_id))?;
    tx.delete_assignment(&existing.id)?;
    let details = vec![
        ("principalId".to_owned(), existing.principal_id.clone()),
        ("roleDefinitionId".to_owned(), existing.role_id.clone()),
        ("scope".to_owned(), existing.scope.to_string()),
    ];
    Ok((Some(existing), details))
}
