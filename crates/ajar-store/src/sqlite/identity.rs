//! The SQL of principals, tokens, custom role definitions and role assignments. Like the other
//! modules, each function runs inside the caller's transaction and checks nothing: the rules are the
//! domain's (`ajar_domain::plans::identity`).

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use ajar_domain::access::builtin::OWNER_ID;
use ajar_domain::access::{RoleAssignment, RoleDefinition, RoleKind, Scope};
use ajar_domain::{ErrorCode, Problem};

use super::codec::{from_ns, to_ns};
use super::{backend, db};
use crate::{AssignmentFilter, OidcLink, Principal, PrincipalInfo, StoreError, StoreResult, TokenInfo, TokenPurpose};

pub(crate) fn principal_for_token(
    c: &Connection,
    hash: &[u8; 32],
    purpose: TokenPurpose,
    now: OffsetDateTime,
) -> StoreResult<Option<Principal>> {
    c.prepare_cached(
        "SELECT p.id, p.name, p.kind FROM tokens t JOIN principals p ON p.id = t.principal_id
         WHERE t.hash = ?1 AND t.purpose = ?2 AND t.revoked_ns IS NULL AND (t.expires_ns IS NULL OR t.expires_ns > ?3)",
    )
    .map_err(db("looking up a token"))?
    .query_row(params![hash.as_slice(), purpose.as_str(), to_ns(now)], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })
    .optional()
    .map_err(db("looking up a token"))?
    .map(|(id, name, kind)| Ok(Principal { id, name, kind: kind.parse().map_err(|e: String| backend("stored principal kind", e))? }))
    .transpose()
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

/// The principal with this name, ignoring case in any letters (the unique index on `lower(name)` folds
/// ASCII only).
pub(crate) fn principal_named(c: &Connection, name: &str) -> StoreResult<Option<Principal>> {
    let err = db("reading a principal");
    let mut stmt =
        c.prepare_cached(&format!("SELECT {PRINCIPAL_COLUMNS} FROM principals p WHERE arm_key(p.name) = arm_key(?1)")).map_err(&err)?;
    let mut rows = stmt.query([name]).map_err(&err)?;
    match rows.next().map_err(&err)? {
        Some(r) => Ok(Some(principal_info_from_row(r, 0)?.principal)),
        None => Ok(None),
    }
}

pub(crate) fn insert_principal(c: &Connection, principal: &Principal, oidc: Option<&OidcLink>, now: OffsetDateTime) -> StoreResult<()> {
    c.prepare_cached("INSERT INTO principals (id, name, kind, created_ns, oidc_issuer, oidc_subject) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .map_err(db("creating a principal"))?
        .execute(params![
            principal.id,
            principal.name,
            principal.kind.as_str(),
            to_ns(now),
            oidc.map(|l| &l.issuer),
            oidc.map(|l| &l.subject)
        ])
        .map_err(db("creating a principal"))?;
    Ok(())
}

/// Principals holding Owner at `/`.
pub(crate) fn root_owners(c: &Connection) -> StoreResult<Vec<String>> {
    let err = db("finding the owners");
    let mut stmt = c
        .prepare_cached("SELECT DISTINCT principal_id FROM role_assignments WHERE role_id = ?1 AND scope_key = '/' ORDER BY principal_id")
        .map_err(&err)?;
    stmt.query_map([OWNER_ID], |r| r.get(0)).map_err(&err)?.collect::<Result<Vec<String>, _>>().map_err(&err)
}

/// Deletes the principal with its assignments and tokens; returns how many tokens and assignments went.
pub(crate) fn delete_principal(c: &Connection, id: &str) -> StoreResult<(u64, u64)> {
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
    Ok((tokens as u64, assignments as u64))
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

pub(crate) fn insert_token(c: &Connection, token: &TokenInfo, hash: &[u8; 32]) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO tokens (hash, principal_id, purpose, created_ns, expires_ns, id, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(db("storing a token"))?
    .execute(params![
        hash.as_slice(),
        token.principal_id,
        token.purpose.as_str(),
        to_ns(token.created),
        token.expires.map(to_ns),
        token.id,
        token.name
    ])
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            // Two random 256-bit tokens never collide; the caller stored this one twice.
            StoreError::from(Problem::new(ErrorCode::Conflict, None, "this token is stored already; make a new one"))
        }
        e => backend("storing a token", e),
    })?;
    Ok(())
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

pub(crate) fn revoke_token(c: &Connection, id: &str, now: OffsetDateTime) -> StoreResult<()> {
    c.prepare_cached("UPDATE tokens SET revoked_ns = ?2 WHERE id = ?1 AND revoked_ns IS NULL")
        .map_err(db("revoking a token"))?
        .execute(params![id, to_ns(now)])
        .map_err(db("revoking a token"))?;
    Ok(())
}

// ---------------------------------------------------------------- role definitions

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

pub(crate) fn custom_role(c: &Connection, key: &str) -> StoreResult<Option<RoleDefinition>> {
    let err = db("reading a role definition");
    let mut stmt = c.prepare_cached(&format!("SELECT {ROLE_COLUMNS} FROM role_definitions WHERE id = ?1")).map_err(&err)?;
    let mut rows = stmt.query([key]).map_err(&err)?;
    match rows.next().map_err(&err)? {
        Some(r) => Ok(Some(role_from_row(r)?)),
        None => Ok(None),
    }
}

pub(crate) fn custom_roles(c: &Connection) -> StoreResult<Vec<RoleDefinition>> {
    let err = db("listing role definitions");
    let mut stmt = c.prepare_cached(&format!("SELECT {ROLE_COLUMNS} FROM role_definitions ORDER BY lower(name), id")).map_err(&err)?;
    let mut rows = stmt.query([]).map_err(&err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(&err)? {
        out.push(role_from_row(r)?);
    }
    Ok(out)
}

/// The key of a custom role other than `except` named `name`, ignoring case.
pub(crate) fn custom_role_named(c: &Connection, name: &str, except: &str) -> StoreResult<Option<String>> {
    c.prepare_cached("SELECT id FROM role_definitions WHERE arm_key(name) = arm_key(?1) AND id <> ?2")
        .map_err(db("checking a role's name"))?
        .query_row(params![name, except], |r| r.get(0))
        .optional()
        .map_err(db("checking a role's name"))
}

pub(crate) fn put_role_definition(c: &Connection, role: &RoleDefinition, now: OffsetDateTime) -> StoreResult<()> {
    let scopes: Vec<String> = role.assignable_scopes.iter().map(ToString::to_string).collect();
    c.prepare_cached(
        "INSERT INTO role_definitions (id, name, description, actions, not_actions, assignable_scopes, created_ns, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT(id) DO UPDATE SET name = excluded.name, description = excluded.description, actions = excluded.actions,
             not_actions = excluded.not_actions, assignable_scopes = excluded.assignable_scopes, updated_ns = excluded.updated_ns",
    )
    .map_err(db("writing a role definition"))?
    .execute(params![
        role.id.to_ascii_lowercase(),
        role.name,
        role.description,
        encode_strings(role.actions.iter().map(String::as_str))?,
        encode_strings(role.not_actions.iter().map(String::as_str))?,
        encode_strings(scopes.iter().map(String::as_str))?,
        to_ns(now)
    ])
    .map_err(db("writing a role definition"))?;
    Ok(())
}

pub(crate) fn assignments_of_role(c: &Connection, key: &str) -> StoreResult<u64> {
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM role_assignments WHERE role_id = ?1")
        .map_err(db("counting a role's assignments"))?
        .query_row([key], |r| r.get(0))
        .map_err(db("counting a role's assignments"))?;
    Ok(n.unsigned_abs())
}

pub(crate) fn delete_role_definition(c: &Connection, key: &str) -> StoreResult<bool> {
    let n = c
        .prepare_cached("DELETE FROM role_definitions WHERE id = ?1")
        .map_err(db("deleting a role definition"))?
        .execute([key])
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

/// The ID of the assignment of `role_key` to `principal_id` at `scope`.
pub(crate) fn assignment_of(c: &Connection, principal_id: &str, role_key: &str, scope: &Scope) -> StoreResult<Option<String>> {
    c.prepare_cached("SELECT id FROM role_assignments WHERE principal_id = ?1 AND role_id = ?2 AND scope_key = ?3")
        .map_err(db("checking role assignments"))?
        .query_row(params![principal_id, role_key, scope.key()], |r| r.get(0))
        .optional()
        .map_err(db("checking role assignments"))
}

pub(crate) fn insert_assignment(c: &Connection, a: &RoleAssignment, created_by: &str, now: OffsetDateTime) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO role_assignments (id, principal_id, role_id, scope, scope_key, created_ns, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(db("writing a role assignment"))?
    .execute(params![a.id, a.principal_id, a.role_id, a.scope.to_string(), a.scope.key(), to_ns(now), created_by])
    .map_err(db("writing a role assignment"))?;
    Ok(())
}

pub(crate) fn delete_role_assignment(c: &Connection, id: &str) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM role_assignments WHERE id = ?1")
        .map_err(db("deleting a role assignment"))?
        .execute([id])
        .map_err(db("deleting a role assignment"))?;
    Ok(())
}
