//! Principals, tokens, custom roles and role assignments: the rules a store must hold whatever it is
//! built on (names unique ignoring case, an assignment never changed in place, always an Owner at `/`).

use time::OffsetDateTime;

use crate::access::builtin::{OWNER_ID, builtin_roles};
use crate::access::role::is_guid;
use crate::access::{RoleAssignment, RoleDefinition, validate_custom_role};
use crate::problem::{ErrorCode, Field, Problem, Target};

/// The longest principal name or token label.
pub const MAX_LABEL: usize = 128;
/// The longest OIDC issuer or subject kept.
pub const MAX_OIDC_FIELD: usize = 1024;

/// 1–`max` characters, no control characters, no blank ends.
pub fn check_text(code: ErrorCode, target: Target, what: &str, text: &str, max: usize) -> Result<(), Problem> {
    let len = text.chars().count();
    let refuse = |message: String| Err(Problem::at(code, target.clone(), message));
    if text.trim().is_empty() {
        return refuse(format!("{what} must not be empty"));
    }
    if len > max {
        return refuse(format!("{what} is {len} characters long; at most {max} are allowed"));
    }
    if let Some(bad) = text.chars().find(|c| c.is_control()) {
        return refuse(format!("{what} contains the control character '{}'; remove it", bad.escape_default()));
    }
    if text.trim() != text {
        return refuse(format!("{what} '{text}' starts or ends with white space; remove it"));
    }
    Ok(())
}

/// A new principal: `name_taken_by` is the principal already named so (ignoring case), `oidc_linked_to`
/// the one the OIDC identity `oidc` (issuer, subject) is linked to already.
pub fn plan_principal(
    name: &str,
    oidc: Option<(&str, &str)>,
    name_taken_by: Option<&str>,
    oidc_linked_to: Option<&str>,
) -> Result<(), Problem> {
    check_text(ErrorCode::InvalidPrincipal, Target::of(Field::Name), "a principal's name", name, MAX_LABEL)?;
    if let Some((issuer, subject)) = oidc {
        let link = Target::of(Field::Oidc);
        check_text(ErrorCode::InvalidPrincipal, link.field(Field::Issuer), "the OIDC issuer", issuer, MAX_OIDC_FIELD)?;
        check_text(ErrorCode::InvalidPrincipal, link.field(Field::Subject), "the OIDC subject", subject, MAX_OIDC_FIELD)?;
    }
    if let Some(existing) = name_taken_by {
        return Err(Problem::at(
            ErrorCode::PrincipalExists,
            Target::of(Field::Name),
            format!("a principal named '{existing}' exists already (names are compared ignoring case); choose another name"),
        ));
    }
    if let (Some((issuer, subject)), Some(holder)) = (oidc, oidc_linked_to) {
        return Err(Problem::at(
            ErrorCode::PrincipalExists,
            Target::of(Field::Oidc),
            format!(
                "the OIDC identity '{subject}' of issuer '{issuer}' is linked to principal '{holder}' already; delete that principal first"
            ),
        ));
    }
    Ok(())
}

fn last_owner(name: &str) -> Problem {
    Problem::new(
        ErrorCode::LastOwner,
        None,
        format!("'{name}' is the only principal with the Owner role at '/'; assign Owner at '/' to another principal first"),
    )
}

/// Deleting principal `id` (named `name`) with its tokens and assignments: refused when it is the only
/// one of `root_owners` (the principals holding Owner at `/`), so that someone can always administer.
pub fn plan_delete_principal(id: &str, name: &str, root_owners: &[String]) -> Result<(), Problem> {
    match root_owners {
        [only] if only == id => Err(last_owner(name)),
        _ => Ok(()),
    }
}

fn principal_not_found(target: Target, id: &str) -> Problem {
    Problem::at(ErrorCode::PrincipalNotFound, target, format!("no principal with ID '{id}' exists; list the principals to find its ID"))
}

/// A new API token for principal `principal_id` (which exists if `principal_known`).
pub fn plan_token(
    name: &str,
    expires: Option<OffsetDateTime>,
    principal_id: &str,
    principal_known: bool,
    now: OffsetDateTime,
) -> Result<(), Problem> {
    check_text(ErrorCode::InvalidToken, Target::of(Field::Name), "a token's name", name, MAX_LABEL)?;
    if expires.is_some_and(|e| e <= now) {
        return Err(Problem::at(
            ErrorCode::InvalidToken,
            Target::of(Field::Expires),
            "the expiry time has passed; give a time in the future",
        ));
    }
    if !principal_known {
        return Err(principal_not_found(Target::of(Field::PrincipalId), principal_id));
    }
    Ok(())
}

/// `{guid}` or `…/roleDefinitions/{guid}`, any case: the lower-cased GUID, the key roles are stored by.
pub fn role_key(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_ascii_lowercase()
}

/// The built-in role with this key, if it is one.
pub fn builtin_role(key: &str) -> Option<RoleDefinition> {
    builtin_roles().into_iter().find(|r| r.id == key)
}

/// Creating or replacing a custom role: valid on its own ([`validate_custom_role`]), and no other
/// custom role (`same_name`, its ID) has its name.
pub fn plan_role_definition(role: &RoleDefinition, same_name: Option<&str>) -> Result<(), Problem> {
    validate_custom_role(role)?;
    if let Some(other) = same_name {
        return Err(Problem::at(
            ErrorCode::RoleDefinitionWithSameNameExists,
            Target::of(Field::Properties).field(Field::RoleName),
            format!("custom role '{other}' is named '{}' already; choose another name", role.name),
        ));
    }
    Ok(())
}

/// Deleting the role with key `key`: never a built-in one, never one still assigned (`assignments`).
pub fn plan_delete_role_definition(key: &str, assignments: u64) -> Result<(), Problem> {
    if let Some(b) = builtin_role(key) {
        return Err(Problem::at(
            ErrorCode::InvalidRoleDefinition,
            Target::of(Field::Name),
            format!("'{}' is a built-in role; it cannot be deleted", b.name),
        ));
    }
    if assignments > 0 {
        return Err(Problem::new(
            ErrorCode::RoleDefinitionHasAssignments,
            None,
            format!("role definition '{key}' is used by {assignments} role assignment(s); delete them first"),
        ));
    }
    Ok(())
}

/// An assignment as stored: its ID and role in the keys they are compared by.
pub fn stored_assignment(assignment: &RoleAssignment) -> RoleAssignment {
    RoleAssignment {
        id: assignment.id.to_ascii_lowercase(),
        principal_id: assignment.principal_id.clone(),
        role_id: role_key(&assignment.role_id),
        scope: assignment.scope.clone(),
    }
}

/// What a role assignment needs to know: what is stored under its ID, whether its principal exists
/// (an OIDC identity or group needs no stored principal), its role, and the ID of an assignment giving
/// the same principal the same role at the same scope.
#[derive(Debug, Clone)]
pub struct AssignRole<'a> {
    /// As [`stored_assignment`] makes it.
    pub assignment: &'a RoleAssignment,
    pub same_id: Option<&'a RoleAssignment>,
    pub principal_known: bool,
    pub role: Option<&'a RoleDefinition>,
    pub duplicate: Option<&'a str>,
}

/// Whether an assignment is to be stored (`true`) or is already stored exactly so (`false`, a PUT of
/// the same assignment again). An assignment is never changed: another one under the same ID is
/// refused, as is a second assignment of the same role to the same principal at the same scope.
pub fn plan_assignment(input: AssignRole<'_>) -> Result<bool, Problem> {
    let AssignRole { assignment: a, same_id, principal_known, role, duplicate } = input;
    let properties = |field: Field| Target::of(Field::Properties).field(field);
    if !is_guid(&a.id) {
        return Err(Problem::at(
            ErrorCode::InvalidRoleAssignment,
            Target::of(Field::Name),
            format!("role assignment ID '{}' must be a GUID such as 0e5f2e6a-3f52-4b38-9c43-5f1d3bb6b0e1", a.id),
        ));
    }
    if let Some(existing) = same_id {
        if existing.principal_id == a.principal_id && existing.role_id == a.role_id && existing.scope == a.scope {
            return Ok(false);
        }
        return Err(Problem::at(
            ErrorCode::RoleAssignmentUpdateNotPermitted,
            Target::of(Field::Name),
            format!("role assignment '{}' exists with other properties; a role assignment cannot be changed, only deleted", a.id),
        ));
    }
    if !principal_known && !crate::access::principal::is_oidc_identity(&a.principal_id) {
        return Err(principal_not_found(properties(Field::PrincipalId), &a.principal_id));
    }
    let Some(role) = role else {
        return Err(Problem::at(
            ErrorCode::RoleDefinitionDoesNotExist,
            properties(Field::RoleDefinitionId),
            format!("the role definition '{}' does not exist; list the role definitions to find its ID", a.role_id),
        ));
    };
    if !role.assignable_at(&a.scope) {
        let scopes: Vec<String> = role.assignable_scopes.iter().map(ToString::to_string).collect();
        return Err(Problem::at(
            ErrorCode::ScopeNotAssignable,
            properties(Field::Scope),
            format!(
                "role '{}' cannot be assigned at scope '{}'; it is assignable only at or below: {}",
                role.name,
                a.scope,
                scopes.join(", ")
            ),
        ));
    }
    if let Some(other) = duplicate {
        return Err(Problem::new(
            ErrorCode::RoleAssignmentExists,
            None,
            format!("the principal holds role '{}' at scope '{}' already, through role assignment '{other}'", role.name, a.scope),
        ));
    }
    Ok(true)
}

/// Removing an assignment: never the last Owner assignment at `/` (`root_owners`: the principals
/// holding Owner there; `principal_name`: the name of the assignment's principal).
pub fn plan_delete_assignment(existing: &RoleAssignment, root_owners: &[String], principal_name: &str) -> Result<(), Problem> {
    let last = existing.role_id == OWNER_ID && existing.scope.is_root() && matches!(root_owners, [only] if *only == existing.principal_id);
    if last { Err(last_owner(principal_name)) } else { Ok(()) }
}
