//! The SQL of principals, tokens, custom role definitions and role
//! assignments. Like `ops`, each function runs inside the caller's transaction.

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use ajar_domain::access::builtin::OWNER_ID;
use ajar_domain::access::role::is_guid;
use ajar_domain::access::{RoleAssignment, RoleDefinition, RoleKind, Scope, builtin_roles, validate_custom_role};
use ajar_domain::{ErrorCode, Problem};

use super::backend;
use super::codec::{from_ns, to_ns};
use crate::{
    AccessSnapshot, AssignmentFilter, NewPrincipal, NewToken, OidcLink, Principal, PrincipalInfo, PutOutcome, StoreError, StoreResult,
    TokenInfo, TokenPurpose,
};

fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| backend(context, e)
}

/// The longest principal name or token label.
pub(crate) const MAX_LABEL: usize = 128;
/// The longest OIDC issuer or subject kept.
const MAX_OIDC_FIELD: usize = 1024;

/// 1–`max` characters, no control characters, no blank ends.
fn check_text(code: ErrorCode, target: &str, what: &str, text: &str, max: usize) -> Result<(), Problem> {
    let len = text.chars().count();
    if text.trim().is_empty() {
        return Err(Problem::at(code, target, format!("{what} must not be empty")));
    }
    if len > max {
        return Err(Problem::at(code, target, format!("{what} is {len} characters long; at most {max} are allowed")));
    }
    if let Some(bad) = text.chars().find(|c| c.is_control()) {
        return Err(Problem::at(code, target, format!("{what} contains the control character '{}'; remove it", bad.escape_default())));
    }
    if text.trim() != text {
        return Err(Problem::at(code, target, format!("{what} '{text}' starts or ends with white space; remove it")));
    }
    Ok(())
}

// ---------------------------------------------------------------- principals

const PRINCIPAL_COLUMNS: &str = "p.id, p.name, p.kind, p.oidc_issuer, p.oidc_subject, p.created_ns";

fn principal_info_from_row(r: &rusqlite::Row<'_>, live_tokens: u32) -> StoreResult<PrincipalInfo> {
    let err = db("reading a principal");
    let kind: String = r.get(2).map_err(&err)?;
    let issuer: Option<String> = r.get(3).map_err(&err)?;
    let subject: Option<String> = r.get(4).map_err(&err)?;
    Ok(PrincipalInfo {
        principal: Principal {
            id: r.get(0).map_err(&err)?,
            name: r.get(1).map_err(&err)?,
            kind: kind.parse().map_err(|e: String| backend("stored principal kind", e))?,
        },
        oidc: issuer.zip(subject).map(|(issuer, subject)| OidcLink { issuer, subject }),
        created: from_ns(r.get(5).map_err(&err)?)?,
        live_tokens,
    })
}

/// `live` counts the tokens neither revoked nor expired at `?1`.
fn principals_query(filter: &str) -> String {
    format!(
        "SELECT {PRINCIPAL_COLUMNS},
             (SELECT count(*) FROM tokens t WHERE t.principal_id = p.id AND t.revoked_ns IS NULL
                 AND (t.expires_ns IS NULL OR t.expires_ns > ?1))
         FROM principals p {filter}"
    )
}

pub(crate) fn list_principals(c: &Connection, now: OffsetDateTime) -> StoreResult<Vec<PrincipalInfo>> {
    let err = db("listing principals");
    let mut stmt = c.prepare_cached(&principals_query("ORDER BY lower(p.name), p.id")).map_err(&err)?;
    let mut rows = stmt.query([to_ns(now)]).map_err(&err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(&err)? {
        out.push(principal_info_from_row(r, r.get(6).map_err(&err)?)?);
    }
    Ok(out)
}

pub(crate) fn get_principal(c: &Connection, id: &str, now: OffsetDateTime) -> StoreResult<Option<PrincipalInfo>> {
    let err = db("reading a principal");
    let mut stmt = c.prepare_cached(&principals_query("WHERE p.id = ?2")).map_err(&err)?;
    let mut rows = stmt.query(params![to_ns(now), id]).map_err(&err)?;
    match rows.next().map_err(&err)? {
        Some(r) => Ok(Some(principal_info_from_row(r, r.get(6).map_err(&err)?)?)),
        None => Ok(None),
    }
}

pub(crate) fn principal_for_oidc(c: &Connection, issuer: &str, subject: &str) -> StoreResult<Option<Principal>> {
    let err = db("looking up an OIDC identity");
    let mut stmt = c
        .prepare_cached(&format!("SELECT {PRINCIPAL_COLUMNS} FROM principals p WHERE p.oidc_issuer = ?1 AND p.oidc_subject = ?2"))
        .map_err(&err)?;
    let mut rows = stmt.query(params![issuer, subject]).map_err(&err)?;
    match rows.next().map_err(&err)? {
        Some(r) => Ok(Some(principal_info_from_row(r, 0)?.principal)),
        None => Ok(None),
    }
}

fn principal_name_of(c: &Connection, id: &str) -> StoreResult<Option<String>> {
    c.prepare_cached("SELECT name FROM principals WHERE id = ?1")
        .map_err(db("reading a principal"))?
        .query_row([id], |r| r.get(0))
        .optional()
        .map_err(db("reading a principal"))
}

pub(crate) fn create_principal(c: &Connection, new: &NewPrincipal, now: OffsetDateTime) -> StoreResult<Principal> {
    check_text(ErrorCode::InvalidPrincipal, "name", "a principal's name", &new.name, MAX_LABEL)?;
    if let Some(link) = &new.oidc {
        check_text(ErrorCode::InvalidPrincipal, "oidc.issuer", "the OIDC issuer", &link.issuer, MAX_OIDC_FIELD)?;
        check_text(ErrorCode::InvalidPrincipal, "oidc.subject", "the OIDC subject", &link.subject, MAX_OIDC_FIELD)?;
    }
    let taken: Option<String> = c
        .prepare_cached("SELECT name FROM principals WHERE lower(name) = lower(?1)")
        .map_err(db("checking a principal's name"))?
        .query_row([&new.name], |r| r.get(0))
        .optional()
        .map_err(db("checking a principal's name"))?;
    if let Some(existing) = taken {
        return Err(Problem::at(
            ErrorCode::PrincipalExists,
            "name",
            format!("a principal named '{existing}' exists already (names are compared ignoring case); choose another name"),
        )
        .into());
    }
    if let Some(link) = &new.oidc
        && let Some(holder) = principal_for_oidc(c, &link.issuer, &link.subject)?
    {
        return Err(Problem::at(
            ErrorCode::PrincipalExists,
            "oidc",
            format!(
                "the OIDC identity '{}' of issuer '{}' is linked to principal '{}' already; delete that principal first",
                link.subject, link.issuer, holder.name
            ),
        )
        .into());
    }
    let principal = Principal { id: uuid::Uuid::now_v7().to_string(), name: new.name.clone(), kind: new.kind };
    c.prepare_cached("INSERT INTO principals (id, name, kind, created_ns, oidc_issuer, oidc_subject) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .map_err(db("creating a principal"))?
        .execute(params![
            principal.id,
            principal.name,
            principal.kind.as_str(),
            to_ns(now),
            new.oidc.as_ref().map(|l| &l.issuer),
            new.oidc.as_ref().map(|l| &l.subject)
        ])
        .map_err(db("creating a principal"))?;
    Ok(principal)
}

/// Principals holding Owner at `/`.
fn root_owners(c: &Connection) -> StoreResult<Vec<String>> {
    let err = db("finding the owners");
    let mut stmt = c
        .prepare_cached("SELECT DISTINCT principal_id FROM role_assignments WHERE role_id = ?1 AND scope_key = '/' ORDER BY principal_id")
        .map_err(&err)?;
    stmt.query_map([OWNER_ID], |r| r.get(0)).map_err(&err)?.collect::<Result<Vec<String>, _>>().map_err(&err)
}

fn last_owner(name: &str) -> StoreError {
    Problem::new(
        ErrorCode::LastOwner,
        None,
        format!("'{name}' is the only principal with the Owner role at '/'; assign Owner at '/' to another principal first"),
    )
    .into()
}

/// What deleting a principal removed besides the principal.
pub(crate) struct DeletedPrincipal {
    pub(crate) existed: bool,
    pub(crate) tokens: usize,
    pub(crate) assignments: usize,
}

/// Its tokens are deleted outright (their rows reference the principal), which
/// ends them as revoking would; the activity log keeps the record.
pub(crate) fn delete_principal(c: &Connection, id: &str) -> StoreResult<DeletedPrincipal> {
    let Some(name) = principal_name_of(c, id)? else {
        return Ok(DeletedPrincipal { existed: false, tokens: 0, assignments: 0 });
    };
    if matches!(root_owners(c)?.as_slice(), [only] if only == id) {
        return Err(last_owner(&name));
    }
    let assignments = c
        .prepare_cached("DELETE FROM role_assignments WHERE principal_id = ?1")
        .map_err(db("deleting a principal's role assignments"))?
        .execute([id])
        .map_err(db("deleting a principal's role assignments"))?;
    let tokens = c
        .prepare_cached("DELETE FROM tokens WHERE principal_id = ?1")
        .map_err(db("deleting a principal's tokens"))?
        .execute([id])
        .map_err(db("deleting a principal's tokens"))?;
    c.prepare_cached("DELETE FROM principals WHERE id = ?1")
        .map_err(db("deleting a principal"))?
        .execute([id])
        .map_err(db("deleting a principal"))?;
    Ok(DeletedPrincipal { existed: true, tokens, assignments })
}

fn principal_not_found(target: &str, id: &str) -> StoreError {
    Problem::at(ErrorCode::PrincipalNotFound, target, format!("no principal with ID '{id}' exists; list the principals to find its ID"))
        .into()
}

// ---------------------------------------------------------------- tokens

const TOKEN_COLUMNS: &str = "id, principal_id, name, purpose, created_ns, expires_ns, revoked_ns";

fn token_from_row(r: &rusqlite::Row<'_>) -> StoreResult<TokenInfo> {
    let err = db("reading a token");
    let purpose: String = r.get(3).map_err(&err)?;
    Ok(TokenInfo {
        id: r.get(0).map_err(&err)?,
        principal_id: r.get(1).map_err(&err)?,
        name: r.get::<_, Option<String>>(2).map_err(&err)?.unwrap_or_default(),
        purpose: TokenPurpose::parse(&purpose).ok_or_else(|| backend("stored token purpose", &purpose))?,
        created: from_ns(r.get(4).map_err(&err)?)?,
        expires: r.get::<_, Option<i64>>(5).map_err(&err)?.map(from_ns).transpose()?,
        revoked: r.get::<_, Option<i64>>(6).map_err(&err)?.map(from_ns).transpose()?,
    })
}

pub(crate) fn get_token(c: &Connection, id: &str) -> StoreResult<Option<TokenInfo>> {
    let err = db("reading a token");
    let mut stmt = c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1")).map_err(&err)?;
    let mut rows = stmt.query([id]).map_err(&err)?;
    match rows.next().map_err(&err)? {
        Some(r) => Ok(Some(token_from_row(r)?)),
        None => Ok(None),
    }
}

pub(crate) fn new_token_id() -> String {
    format!("tok_{}", uuid::Uuid::now_v7().simple())
}

/// Inserts a token row; the caller has checked the principal.
pub(crate) fn insert_token(
    c: &Connection,
    hash: &[u8; 32],
    principal_id: &str,
    purpose: TokenPurpose,
    name: &str,
    expires: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> StoreResult<String> {
    let id = new_token_id();
    c.prepare_cached(
        "INSERT INTO tokens (hash, principal_id, purpose, created_ns, expires_ns, id, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(db("storing a token"))?
    .execute(params![hash.as_slice(), principal_id, purpose.as_str(), to_ns(now), expires.map(to_ns), id, name])
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            // Two random 256-bit tokens never collide; the caller stored this one twice.
            StoreError::from(Problem::new(ErrorCode::Conflict, None, "this token is stored already; make a new one"))
        }
        e => backend("storing a token", e),
    })?;
    Ok(id)
}

pub(crate) fn create_token(c: &Connection, new: &NewToken, now: OffsetDateTime) -> StoreResult<TokenInfo> {
    check_text(ErrorCode::InvalidToken, "name", "a token's name", &new.name, MAX_LABEL)?;
    if let Some(expires) = new.expires
        && expires <= now
    {
        return Err(Problem::at(ErrorCode::InvalidToken, "expires", "the expiry time has passed; give a time in the future").into());
    }
    if principal_name_of(c, &new.principal_id)?.is_none() {
        return Err(principal_not_found("principalId", &new.principal_id));
    }
    let id = insert_token(c, &new.hash, &new.principal_id, TokenPurpose::Api, &new.name, new.expires, now)?;
    get_token(c, &id)?.ok_or_else(|| StoreError::Backend("the token vanished after storing it".into()))
}

pub(crate) fn list_tokens(c: &Connection, principal_id: Option<&str>) -> StoreResult<Vec<TokenInfo>> {
    let err = db("listing tokens");
    let mut stmt = c
        .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE ?1 IS NULL OR principal_id = ?1 ORDER BY created_ns, id"))
        .map_err(&err)?;
    let mut rows = stmt.query([principal_id]).map_err(&err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(&err)? {
        out.push(token_from_row(r)?);
    }
    Ok(out)
}

pub(crate) fn revoke_token(c: &Connection, id: &str, now: OffsetDateTime) -> StoreResult<Option<TokenInfo>> {
    c.prepare_cached("UPDATE tokens SET revoked_ns = ?2 WHERE id = ?1 AND revoked_ns IS NULL")
        .map_err(db("revoking a token"))?
        .execute(params![id, to_ns(now)])
        .map_err(db("revoking a token"))?;
    get_token(c, id)
}

// ---------------------------------------------------------------- role definitions

/// `{guid}` or `…/roleDefinitions/{guid}`, any case → the lower-cased GUID.
pub(crate) fn role_key(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_ascii_lowercase()
}

fn builtin(key: &str) -> Option<RoleDefinition> {
    builtin_roles().into_iter().find(|r| r.id == key)
}

fn json_strings(column: &str, text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| backend(&format!("stored role {column}"), e))
}

fn encode_strings<'a>(items: impl IntoIterator<Item = &'a str>) -> StoreResult<String> {
    serde_json::to_string(&items.into_iter().collect::<Vec<_>>()).map_err(|e| backend("encoding a role", e))
}

const ROLE_COLUMNS: &str = "id, name, description, actions, not_actions, assignable_scopes";

fn role_from_row(r: &rusqlite::Row<'_>) -> StoreResult<RoleDefinition> {
    let err = db("reading a role definition");
    let scopes = json_strings("assignable scopes", &r.get::<_, String>(5).map_err(&err)?)?;
    Ok(RoleDefinition {
        id: r.get(0).map_err(&err)?,
        name: r.get(1).map_err(&err)?,
        description: r.get(2).map_err(&err)?,
        kind: RoleKind::Custom,
        actions: json_strings("actions", &r.get::<_, String>(3).map_err(&err)?)?,
        not_actions: json_strings("notActions", &r.get::<_, String>(4).map_err(&err)?)?,
        assignable_scopes: scopes
            .iter()
            .map(|s| s.parse::<Scope>().map_err(|e| backend("stored assignable scope", e)))
            .collect::<StoreResult<_>>()?,
    })
}

fn custom_role(c: &Connection, key: &str) -> StoreResult<Option<RoleDefinition>> {
    let err = db("reading a role definition");
    let mut stmt = c.prepare_cached(&format!("SELECT {ROLE_COLUMNS} FROM role_definitions WHERE id = ?1")).map_err(&err)?;
    let mut rows = stmt.query([key]).map_err(&err)?;
    match rows.next().map_err(&err)? {
        Some(r) => Ok(Some(role_from_row(r)?)),
        None => Ok(None),
    }
}

pub(crate) fn get_role_definition(c: &Connection, id: &str) -> StoreResult<Option<RoleDefinition>> {
    let key = role_key(id);
    match builtin(&key) {
        Some(role) => Ok(Some(role)),
        None => custom_role(c, &key),
    }
}

fn custom_roles(c: &Connection) -> StoreResult<Vec<RoleDefinition>> {
    let err = db("listing role definitions");
    let mut stmt = c.prepare_cached(&format!("SELECT {ROLE_COLUMNS} FROM role_definitions ORDER BY lower(name), id")).map_err(&err)?;
    let mut rows = stmt.query([]).map_err(&err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(&err)? {
        out.push(role_from_row(r)?);
    }
    Ok(out)
}

pub(crate) fn list_role_definitions(c: &Connection) -> StoreResult<Vec<RoleDefinition>> {
    let mut roles = builtin_roles();
    roles.extend(custom_roles(c)?);
    Ok(roles)
}

pub(crate) fn put_role_definition(c: &Connection, role: &RoleDefinition, now: OffsetDateTime) -> StoreResult<PutOutcome> {
    validate_custom_role(role)?;
    let key = role.id.to_ascii_lowercase();
    let same_name: Option<String> = c
        .prepare_cached("SELECT id FROM role_definitions WHERE lower(name) = lower(?1) AND id <> ?2")
        .map_err(db("checking a role's name"))?
        .query_row(params![role.name, key], |r| r.get(0))
        .optional()
        .map_err(db("checking a role's name"))?;
    if let Some(other) = same_name {
        return Err(Problem::at(
            ErrorCode::RoleDefinitionWithSameNameExists,
            "properties.roleName",
            format!("custom role '{other}' is named '{}' already; choose another name", role.name),
        )
        .into());
    }
    let existed = custom_role(c, &key)?.is_some();
    let scopes: Vec<String> = role.assignable_scopes.iter().map(ToString::to_string).collect();
    c.prepare_cached(
        "INSERT INTO role_definitions (id, name, description, actions, not_actions, assignable_scopes, created_ns, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, description = excluded.description, actions = excluded.actions,
             not_actions = excluded.not_actions, assignable_scopes = excluded.assignable_scopes, updated_ns = excluded.updated_ns",
    )
    .map_err(db("writing a role definition"))?
    .execute(params![
        key,
        role.name,
        role.description,
        encode_strings(role.actions.iter().map(String::as_str))?,
        encode_strings(role.not_actions.iter().map(String::as_str))?,
        encode_strings(scopes.iter().map(String::as_str))?,
        to_ns(now)
    ])
    .map_err(db("writing a role definition"))?;
    Ok(if existed { PutOutcome::Updated } else { PutOutcome::Created })
}

pub(crate) fn delete_role_definition(c: &Connection, id: &str) -> StoreResult<bool> {
    let key = role_key(id);
    if let Some(b) = builtin(&key) {
        return Err(Problem::at(
            ErrorCode::InvalidRoleDefinition,
            "name",
            format!("'{}' is a built-in role; it cannot be deleted", b.name),
        )
        .into());
    }
    let assigned: i64 = c
        .prepare_cached("SELECT count(*) FROM role_assignments WHERE role_id = ?1")
        .map_err(db("counting a role's assignments"))?
        .query_row([&key], |r| r.get(0))
        .map_err(db("counting a role's assignments"))?;
    if assigned > 0 {
        return Err(Problem::new(
            ErrorCode::RoleDefinitionHasAssignments,
            None,
            format!("role definition '{key}' is used by {assigned} role assignment(s); delete them first"),
        )
        .into());
    }
    let n = c
        .prepare_cached("DELETE FROM role_definitions WHERE id = ?1")
        .map_err(db("deleting a role definition"))?
        .execute([&key])
        .map_err(db("deleting a role definition"))?;
    Ok(n > 0)
}

// ---------------------------------------------------------------- role assignments

const ASSIGNMENT_COLUMNS: &str = "id, principal_id, role_id, scope";

fn assignment_from_row(r: &rusqlite::Row<'_>) -> StoreResult<RoleAssignment> {
    let err = db("reading a role assignment");
    Ok(RoleAssignment {
        id: r.get(0).map_err(&err)?,
        principal_id: r.get(1).map_err(&err)?,
        role_id: r.get(2).map_err(&err)?,
        scope: r.get::<_, String>(3).map_err(&err)?.parse().map_err(|e| backend("stored assignment scope", e))?,
    })
}

pub(crate) fn get_role_assignment(c: &Connection, id: &str) -> StoreResult<Option<RoleAssignment>> {
    let err = db("reading a role assignment");
    let mut stmt = c.prepare_cached(&format!("SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments WHERE id = ?1")).map_err(&err)?;
    let mut rows = stmt.query([id.to_ascii_lowercase()]).map_err(&err)?;
    match rows.next().map_err(&err)? {
        Some(r) => Ok(Some(assignment_from_row(r)?)),
        None => Ok(None),
    }
}

pub(crate) fn list_role_assignments(c: &Connection, filter: &AssignmentFilter) -> StoreResult<Vec<RoleAssignment>> {
    let err = db("listing role assignments");
    // At or below a scope: the same key, or a key continuing it with '/'
    // (a whole segment; LIKE would treat '_' in names as a wildcard).
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM role_assignments
             WHERE (?1 IS NULL OR principal_id = ?1)
               AND (?2 IS NULL OR ?2 = '/' OR scope_key = ?2 OR substr(scope_key, 1, length(?2) + 1) = ?2 || '/')
             ORDER BY scope_key, principal_id, role_id, id"
        ))
        .map_err(&err)?;
    let mut rows = stmt.query(params![filter.principal_id, filter.scope.as_ref().map(|s| s.key().to_owned())]).map_err(&err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(&err)? {
        out.push(assignment_from_row(r)?);
    }
    Ok(out)
}

/// Stores `assignment` with lower-cased IDs; returns it as stored.
pub(crate) fn create_role_assignment(
    c: &Connection,
    assignment: &RoleAssignment,
    created_by: &str,
    now: OffsetDateTime,
) -> StoreResult<(PutOutcome, RoleAssignment)> {
    if !is_guid(&assignment.id) {
        return Err(Problem::at(
            ErrorCode::InvalidRoleAssignment,
            "name",
            format!("role assignment ID '{}' must be a GUID such as 0e5f2e6a-3f52-4b38-9c43-5f1d3bb6b0e1", assignment.id),
        )
        .into());
    }
    let role_key = role_key(&assignment.role_id);
    let stored = RoleAssignment {
        id: assignment.id.to_ascii_lowercase(),
        principal_id: assignment.principal_id.clone(),
        role_id: role_key.clone(),
        scope: assignment.scope.clone(),
    };
    if let Some(existing) = get_role_assignment(c, &stored.id)? {
        if existing.principal_id == stored.principal_id && existing.role_id == stored.role_id && existing.scope == stored.scope {
            return Ok((PutOutcome::Updated, existing));
        }
        return Err(Problem::at(
            ErrorCode::RoleAssignmentUpdateNotPermitted,
            "name",
            format!("role assignment '{}' exists with other properties; a role assignment cannot be changed, only deleted", stored.id),
        )
        .into());
    }
    if !ajar_domain::access::principal::is_oidc_identity(&stored.principal_id) && principal_name_of(c, &stored.principal_id)?.is_none() {
        return Err(principal_not_found("properties.principalId", &stored.principal_id));
    }
    let Some(role) = get_role_definition(c, &role_key)? else {
        return Err(Problem::at(
            ErrorCode::RoleDefinitionDoesNotExist,
            "properties.roleDefinitionId",
            format!("the role definition '{role_key}' does not exist; list the role definitions to find its ID"),
        )
        .into());
    };
    if !role.assignable_at(&stored.scope) {
        let scopes: Vec<String> = role.assignable_scopes.iter().map(ToString::to_string).collect();
        return Err(Problem::at(
            ErrorCode::ScopeNotAssignable,
            "properties.scope",
            format!(
                "role '{}' cannot be assigned at scope '{}'; it is assignable only at or below: {}",
                role.name,
                stored.scope,
                scopes.join(", ")
            ),
        )
        .into());
    }
    let duplicate: Option<String> = c
        .prepare_cached("SELECT id FROM role_assignments WHERE principal_id = ?1 AND role_id = ?2 AND scope_key = ?3")
        .map_err(db("checking role assignments"))?
        .query_row(params![stored.principal_id, role_key, stored.scope.key()], |r| r.get(0))
        .optional()
        .map_err(db("checking role assignments"))?;
    if let Some(other) = duplicate {
        return Err(Problem::new(
            ErrorCode::RoleAssignmentExists,
            None,
            format!("the principal holds role '{}' at scope '{}' already, through role assignment '{other}'", role.name, stored.scope),
        )
        .into());
    }
    c.prepare_cached(
        "INSERT INTO role_assignments (id, principal_id, role_id, scope, scope_key, created_ns, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(db("writing a role assignment"))?
    .execute(params![stored.id, stored.principal_id, role_key, stored.scope.to_string(), stored.scope.key(), to_ns(now), created_by])
    .map_err(db("writing a role assignment"))?;
    Ok((PutOutcome::Created, stored))
}

pub(crate) fn delete_role_assignment(c: &Connection, id: &str) -> StoreResult<Option<RoleAssignment>> {
    let Some(existing) = get_role_assignment(c, id)? else { return Ok(None) };
    if existing.role_id == OWNER_ID
        && existing.scope.is_root()
        && matches!(root_owners(c)?.as_slice(), [only] if *only == existing.principal_id)
    {
        let name = principal_name_of(c, &existing.principal_id)?.unwrap_or_else(|| existing.principal_id.clone());
        return Err(last_owner(&name));
    }
    c.prepare_cached("DELETE FROM role_assignments WHERE id = ?1")
        .map_err(db("deleting a role assignment"))?
        .execute([&existing.id])
        .map_err(db("deleting a role assignment"))?;
    Ok(Some(existing))
}

/// Every role and assignment in one read transaction.
pub(crate) fn access_snapshot(c: &Connection, version: u64) -> StoreResult<AccessSnapshot> {
    let tx = c.unchecked_transaction().map_err(db("reading access control"))?;
    let roles = list_role_definitions(&tx)?;
    let assignments = list_role_assignments(&tx, &AssignmentFilter::default())?;
    tx.finish().map_err(db("reading access control"))?;
    Ok(AccessSnapshot { version, roles, assignments })
}

/// Owner at `/` for the bootstrap admin.
pub(crate) fn assign_root_owner(c: &Connection, principal_id: &str, now: OffsetDateTime) -> StoreResult<()> {
    let assignment = RoleAssignment {
        id: uuid::Uuid::new_v4().to_string(),
        principal_id: principal_id.to_owned(),
        role_id: OWNER_ID.to_owned(),
        scope: Scope::root(),
    };
    create_role_assignment(c, &assignment, "bootstrap", now).map(|_| ())
}
