//! Identity and access control: `Microsoft.Authorization` role definitions and role assignments at any
//! scope (Azure's shapes), and ajar's own principals, tokens, requester role and `me`.
//!
//! Escalation is refused everywhere: nobody assigns a role, defines or widens a role, or mints a token for
//! someone else, with actions they do not hold themselves at that scope.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use ajar_api::ApiError;
use ajar_api::authorization::{
    AuthorizationKind, RoleAssignmentList, authorization_failed, authorization_path, builtin_role_read_only, role_assignment_in,
    role_assignment_not_found, role_assignment_out, role_definition_in, role_definition_list, role_definition_not_found,
    role_definition_out,
};
use ajar_api::principals::{
    MeOut, PrincipalFields, PrincipalList, PrincipalOut, TokenInfo as WireTokenInfo, TokenList, TokenRevokedOut, principal_in,
    principal_out, requester_role_in, token_created_out, token_in, token_out,
};
use ajar_domain::access::{GrantDenied, RoleAssignment, RoleDefinition, RoleKind, Scope as AccessScope};
use ajar_domain::activity::{Audit, actions};
use ajar_domain::ids::arm_key;
use ajar_store::{AssignmentFilter, NewPrincipal, NewToken, PrincipalInfo, TokenInfo, TokenPurpose};

use super::{AppState, created_or_ok, scope_audit};
use crate::auth::{Caller, hash_token};
use crate::bootstrap::new_token;
use crate::http::{ArmPath, HttpError, HttpResult, JsonBody, OptionalJsonBody, Query};

/// Filed under the subscription and resource group `resource_id` is in, when it is an ARM path.
fn identity_audit(caller: &Caller, operation: &'static str, resource_id: String) -> Audit {
    let scope = resource_id.parse::<AccessScope>().ok();
    scope_audit(caller, operation, resource_id, scope.as_ref())
}

fn principal_view(p: &PrincipalInfo) -> PrincipalOut {
    let fields = PrincipalFields {
        name: p.principal.name.clone(),
        kind: p.principal.kind,
        oidc: p.oidc.as_ref().map(|o| ajar_api::principals::OidcLink { issuer: o.issuer.clone(), subject: o.subject.clone() }),
    };
    principal_out(&p.principal.id, &fields, p.created, u64::from(p.live_tokens))
}

fn token_view(t: &TokenInfo) -> WireTokenInfo {
    WireTokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        principal_id: t.principal_id.clone(),
        created_on: t.created,
        expires_on: t.expires,
        revoked_on: t.revoked,
    }
}

/// A 403 for an escalation attempt, on record.
async fn refuse_grant(state: &AppState, caller: &Caller, audit: Audit, denied: GrantDenied) -> HttpError {
    let error = match &denied {
        GrantDenied::Missing { action, scope, .. } => {
            let mut e = authorization_failed(&caller.principal.name, &caller.principal.id, action, &scope.to_string());
            e.body.message = format!("{} ({denied})", e.body.message);
            e
        }
        GrantDenied::NotAssignable { .. } => ApiError::bad_request("ScopeNotAssignable", "properties.scope", denied.to_string()),
    };
    state.refuse(audit, error).await
}

/// Every catalog action `role` allows must be held by the caller at `scope`: defining or widening a role
/// is handing out its actions to whoever holds it.
async fn require_holds_role(
    state: &AppState,
    caller: &Caller,
    role: &RoleDefinition,
    scope: &AccessScope,
    audit: &Audit,
) -> HttpResult<()> {
    let index = state.access.index().await?;
    let held = index.effective_actions(&caller.ids(), scope);
    if let Some(missing) = role.compile().catalog_allowed().find(|a| !held.contains(a)) {
        return Err(refuse_grant(
            state,
            caller,
            audit.clone(),
            GrantDenied::Missing { role: role.name.clone(), action: missing, scope: scope.clone() },
        )
        .await);
    }
    Ok(())
}

// ------------------------------------------------------------------ Microsoft.Authorization

/// Every `{scope}/providers/Microsoft.Authorization/{roleDefinitions|roleAssignments}[/{name}]`.
pub(super) async fn authorization(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    method: axum::http::Method,
    uri: Uri,
    query: Query,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<Response> {
    let path = percent_decoded(uri.path());
    let target = authorization_path(&path)?;
    let scope = target.scope.clone();
    match (target.kind, target.name, method.as_str()) {
        (AuthorizationKind::RoleDefinitions, None, "GET") => list_role_definitions(&state, &caller, &scope, &query).await,
        (AuthorizationKind::RoleDefinitions, Some(id), "GET") => get_role_definition(&state, &caller, &scope, &id).await,
        (AuthorizationKind::RoleDefinitions, Some(id), "PUT") => put_role_definition(&state, &caller, &scope, &id, body).await,
        (AuthorizationKind::RoleDefinitions, Some(id), "DELETE") => delete_role_definition(&state, &caller, &scope, &id).await,
        (AuthorizationKind::RoleAssignments, None, "GET") => list_role_assignments(&state, &caller, &scope, &query).await,
        (AuthorizationKind::RoleAssignments, Some(name), "GET") => get_role_assignment(&state, &caller, &scope, &name).await,
        (AuthorizationKind::RoleAssignments, Some(name), "PUT") => put_role_assignment(&state, &caller, &scope, &name, body).await,
        (AuthorizationKind::RoleAssignments, Some(name), "DELETE") => delete_role_assignment(&state, &caller, &scope, &name).await,
        _ => Err(HttpError(ApiError::new(405, "MethodNotAllowed", "this resource does not support that HTTP method"))),
    }
}

fn percent_decoded(path: &str) -> String {
    percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned()
}

/// `$filter=roleName eq 'X'` / `principalId eq 'X'`: the quoted value of `field`.
fn filter_value(query: &Query, field: &str) -> HttpResult<Option<String>> {
    let Some(filter) = query.get("$filter") else { return Ok(None) };
    let bad =
        || HttpError(ApiError::bad_request("InvalidFilter", "$filter", format!("'{filter}' is not supported; use {field} eq 'value'")));
    let rest = filter.trim().strip_prefix(field).ok_or_else(bad)?.trim_start();
    let rest = rest.strip_prefix("eq").ok_or_else(bad)?.trim();
    let value = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')).ok_or_else(bad)?;
    Ok(Some(value.replace("''", "'")))
}

async fn list_role_definitions(state: &AppState, caller: &Caller, scope: &AccessScope, query: &Query) -> HttpResult<Response> {
    state.authorize_read(caller, actions::ROLE_DEFINITIONS_READ, scope).await?;
    let name = filter_value(query, "roleName")?;
    let roles: Vec<RoleDefinition> = state
        .store
        .list_role_definitions()
        .await?
        .into_iter()
        .filter(|r| name.as_deref().is_none_or(|n| arm_key(&r.name) == arm_key(n)))
        .collect();
    Ok(Json(role_definition_list(&roles, Some(scope))).into_response())
}

async fn get_role_definition(state: &AppState, caller: &Caller, scope: &AccessScope, id: &str) -> HttpResult<Response> {
    state.authorize_read(caller, actions::ROLE_DEFINITIONS_READ, scope).await?;
    let role = state.store.get_role_definition(id).await?.ok_or_else(|| HttpError(role_definition_not_found(id)))?;
    Ok(Json(role_definition_out(&role, Some(scope))).into_response())
}

/// Creates or replaces a custom role. The caller needs `roleDefinitions/write`, and every action of the
/// role, at each of its assignable scopes (old and new).
async fn put_role_definition(
    state: &AppState,
    caller: &Caller,
    scope: &AccessScope,
    id: &str,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<Response> {
    let audit = identity_audit(
        caller,
        actions::ROLE_DEFINITIONS_WRITE,
        format!("{}/providers/Microsoft.Authorization/roleDefinitions/{id}", scope_prefix(scope)),
    );
    let role = match body.and_then(|JsonBody(bytes)| role_definition_in(id, &bytes).map_err(HttpError)) {
        Ok(r) => r,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    let existing = state.store.get_role_definition(id).await?;
    if existing.as_ref().is_some_and(|r| r.kind == RoleKind::BuiltIn) {
        return Err(state.refuse(audit, builtin_role_read_only(id)).await);
    }
    let audit = audit.detail("roleName", role.name.clone()).detail("actions", role.actions.join(" "));
    let scopes: Vec<AccessScope> =
        role.assignable_scopes.iter().chain(existing.iter().flat_map(|r| r.assignable_scopes.iter())).cloned().collect();
    for s in &scopes {
        state.authorize_action(caller, actions::ROLE_DEFINITIONS_WRITE, s, &audit).await?;
        require_holds_role(state, caller, &role, s, &audit).await?;
    }
    let outcome = state.store.put_role_definition(role.clone(), audit).await?;
    Ok((created_or_ok(outcome), Json(role_definition_out(&role, Some(scope)))).into_response())
}

async fn delete_role_definition(state: &AppState, caller: &Caller, scope: &AccessScope, id: &str) -> HttpResult<Response> {
    let audit = identity_audit(
        caller,
        actions::ROLE_DEFINITIONS_DELETE,
        format!("{}/providers/Microsoft.Authorization/roleDefinitions/{id}", scope_prefix(scope)),
    );
    let Some(role) = state.store.get_role_definition(id).await? else {
        state.authorize_action(caller, actions::ROLE_DEFINITIONS_DELETE, scope, &audit).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if role.kind == RoleKind::BuiltIn {
        return Err(state.refuse(audit, builtin_role_read_only(id)).await);
    }
    for s in &role.assignable_scopes {
        state.authorize_action(caller, actions::ROLE_DEFINITIONS_DELETE, s, &audit).await?;
    }
    state.store.delete_role_definition(id, audit.detail("roleName", role.name.clone())).await?;
    Ok(Json(role_definition_out(&role, Some(scope))).into_response())
}

fn scope_prefix(scope: &AccessScope) -> String {
    if scope.is_root() { String::new() } else { scope.to_string() }
}

async fn principal_type_of(state: &AppState, principal_id: &str) -> HttpResult<&'static str> {
    if ajar_domain::access::principal::is_oidc_group(principal_id) {
        return Ok("Group");
    }
    Ok(match state.store.get_principal(principal_id).await? {
        Some(p) => ajar_api::principals::principal_type(p.principal.kind),
        None => "User",
    })
}

async fn assignment_out(state: &AppState, a: &RoleAssignment) -> HttpResult<ajar_api::authorization::RoleAssignmentOut> {
    Ok(role_assignment_out(a, principal_type_of(state, &a.principal_id).await?))
}

/// Assignments that apply at `scope` (at or above it) and those inside it, as Azure lists them.
async fn list_role_assignments(state: &AppState, caller: &Caller, scope: &AccessScope, query: &Query) -> HttpResult<Response> {
    state.authorize_read(caller, actions::ROLE_ASSIGNMENTS_READ, scope).await?;
    let principal_id = filter_value(query, "principalId")?;
    let all = state.store.list_role_assignments(AssignmentFilter { principal_id, scope: None }).await?;
    let mut value = Vec::new();
    for a in all.iter().filter(|a| a.scope.contains(scope) || scope.contains(&a.scope)) {
        value.push(assignment_out(state, a).await?);
    }
    Ok(Json(RoleAssignmentList { value, next_link: None }).into_response())
}

async fn find_assignment(state: &AppState, scope: &AccessScope, name: &str) -> HttpResult<Option<RoleAssignment>> {
    Ok(state.store.get_role_assignment(name).await?.filter(|a| a.scope == *scope))
}

async fn get_role_assignment(state: &AppState, caller: &Caller, scope: &AccessScope, name: &str) -> HttpResult<Response> {
    state.authorize_read(caller, actions::ROLE_ASSIGNMENTS_READ, scope).await?;
    let a = find_assignment(state, scope, name).await?.ok_or_else(|| HttpError(role_assignment_not_found(name)))?;
    Ok(Json(assignment_out(state, &a).await?).into_response())
}

/// Assigns a role. Beyond `roleAssignments/write` at the scope, the caller must hold every action the
/// role allows there.
async fn put_role_assignment(
    state: &AppState,
    caller: &Caller,
    scope: &AccessScope,
    name: &str,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<Response> {
    let audit = identity_audit(caller, actions::ROLE_ASSIGNMENTS_WRITE, ajar_api::authorization::role_assignment_id(scope, name));
    let assignment = match body.and_then(|JsonBody(bytes)| role_assignment_in(scope, name, &bytes).map_err(HttpError)) {
        Ok(a) => a,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    let audit = audit.detail("principalId", assignment.principal_id.clone()).detail("roleDefinitionId", assignment.role_id.clone());
    state.authorize_action(caller, actions::ROLE_ASSIGNMENTS_WRITE, scope, &audit).await?;
    let Some(role) = state.store.get_role_definition(&assignment.role_id).await? else {
        return Err(state.refuse(audit, role_definition_not_found(&assignment.role_id)).await);
    };
    let index = state.access.index().await?;
    if let Err(denied) = index.can_grant(&caller.ids(), &role, scope) {
        return Err(refuse_grant(state, caller, audit, denied).await);
    }
    state.store.create_role_assignment(assignment.clone(), audit.detail("roleName", role.name.clone())).await?;
    Ok((StatusCode::CREATED, Json(assignment_out(state, &assignment).await?)).into_response())
}

async fn delete_role_assignment(state: &AppState, caller: &Caller, scope: &AccessScope, name: &str) -> HttpResult<Response> {
    let audit = identity_audit(caller, actions::ROLE_ASSIGNMENTS_DELETE, ajar_api::authorization::role_assignment_id(scope, name));
    state.authorize_action(caller, actions::ROLE_ASSIGNMENTS_DELETE, scope, &audit).await?;
    let Some(found) = find_assignment(state, scope, name).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let out = assignment_out(state, &found).await?;
    state.store.delete_role_assignment(name, audit.detail("principalId", found.principal_id.clone())).await?;
    Ok(Json(out).into_response())
}

// ------------------------------------------------------------------ ajar's own

pub(super) async fn me(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> HttpResult<Json<MeOut>> {
    let index = state.access.index().await?;
    Ok(Json(MeOut {
        id: caller.principal.id.clone(),
        name: caller.principal.name.clone(),
        kind: caller.principal.kind.as_str().to_owned(),
        principal_ids: caller.principal_ids.clone(),
        actions_at_root: index.effective_actions(&caller.ids(), &AccessScope::root()).into_iter().map(str::to_owned).collect(),
    }))
}

const PRINCIPALS: &str = "/ajar/v1/principals";

pub(super) async fn list_principals(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> HttpResult<Json<PrincipalList>> {
    state.authorize_read(&caller, actions::PRINCIPALS_READ, &AccessScope::root()).await?;
    let value = state.store.list_principals().await?.iter().map(principal_view).collect();
    Ok(Json(PrincipalList { value, next_link: None }))
}

pub(super) async fn create_principal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<(StatusCode, Json<PrincipalOut>)> {
    let audit = identity_audit(&caller, actions::PRINCIPALS_WRITE, PRINCIPALS.to_owned());
    state.authorize_action(&caller, actions::PRINCIPALS_WRITE, &AccessScope::root(), &audit).await?;
    let fields = match body.and_then(|JsonBody(bytes)| principal_in(&bytes).map_err(HttpError)) {
        Ok(f) => f,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    let new = NewPrincipal {
        name: fields.name.clone(),
        kind: fields.kind,
        oidc: fields.oidc.as_ref().map(|o| ajar_store::OidcLink { issuer: o.issuer.clone(), subject: o.subject.clone() }),
    };
    let principal = state.store.create_principal(new, audit.detail("name", fields.name.clone())).await?;
    Ok((StatusCode::CREATED, Json(principal_out(&principal.id, &fields, OffsetDateTime::now_utc(), 0))))
}

async fn principal_or_404(state: &AppState, id: &str) -> HttpResult<PrincipalInfo> {
    state.store.get_principal(id).await?.ok_or_else(|| {
        HttpError(ApiError::not_found("PrincipalNotFound", format!("no principal has the ID '{id}'; `ajar principal list` shows them")))
    })
}

pub(super) async fn get_principal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath(id): ArmPath<String>,
) -> HttpResult<Json<PrincipalOut>> {
    if id != caller.principal.id {
        state.authorize_read(&caller, actions::PRINCIPALS_READ, &AccessScope::root()).await?;
    }
    Ok(Json(principal_view(&principal_or_404(&state, &id).await?)))
}

pub(super) async fn delete_principal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath(id): ArmPath<String>,
) -> HttpResult<StatusCode> {
    let audit = identity_audit(&caller, actions::PRINCIPALS_DELETE, format!("{PRINCIPALS}/{id}"));
    state.authorize_action(&caller, actions::PRINCIPALS_DELETE, &AccessScope::root(), &audit).await?;
    let existed = state.store.delete_principal(&id, audit).await?;
    Ok(if existed { StatusCode::OK } else { StatusCode::NO_CONTENT })
}

/// Whether the caller may manage another principal's tokens with `action`: a token acts as its
/// principal, so the caller must also hold everything that principal holds, wherever it holds it.
async fn authorize_for_principal(state: &AppState, caller: &Caller, target: &str, action: &'static str, audit: &Audit) -> HttpResult<()> {
    if target == caller.principal.id {
        return Ok(());
    }
    state.authorize_action(caller, action, &AccessScope::root(), audit).await?;
    if action == actions::PRINCIPAL_TOKENS_WRITE {
        let index = state.access.index().await?;
        let held = state.store.list_role_assignments(AssignmentFilter { principal_id: Some(target.to_owned()), scope: None }).await?;
        for a in held {
            let Some(role) = state.store.get_role_definition(&a.role_id).await? else { continue };
            let missing = role.compile().catalog_allowed().find(|act| !index.check(&caller.ids(), act, &a.scope).is_allowed());
            if let Some(missing) = missing {
                return Err(refuse_grant(
                    state,
                    caller,
                    audit.clone(),
                    GrantDenied::Missing { role: role.name, action: missing, scope: a.scope },
                )
                .await);
            }
        }
    }
    Ok(())
}

pub(super) async fn list_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath(principal): ArmPath<String>,
) -> HttpResult<Json<TokenList>> {
    if principal != caller.principal.id {
        state.authorize_read(&caller, actions::PRINCIPAL_TOKENS_READ, &AccessScope::root()).await?;
    }
    principal_or_404(&state, &principal).await?;
    let tokens = state.store.list_tokens(Some(&principal)).await?;
    let value = tokens.iter().filter(|t| t.purpose == TokenPurpose::Api).map(|t| token_out(&token_view(t))).collect();
    Ok(Json(TokenList { value }))
}

pub(super) async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath(principal): ArmPath<String>,
    body: Result<JsonBody, HttpError>,
) -> HttpResult<Response> {
    let audit = identity_audit(&caller, actions::PRINCIPAL_TOKENS_WRITE, format!("{PRINCIPALS}/{principal}/tokens"));
    authorize_for_principal(&state, &caller, &principal, actions::PRINCIPAL_TOKENS_WRITE, &audit).await?;
    let wanted = match body.and_then(|JsonBody(bytes)| token_in(&bytes, OffsetDateTime::now_utc()).map_err(HttpError)) {
        Ok(t) => t,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    principal_or_404(&state, &principal).await?;
    let secret = new_token("ajar");
    let new = NewToken {
        principal_id: principal.clone(),
        hash: hash_token(&secret),
        name: wanted.name.clone(),
        expires: Some(wanted.expires_on),
    };
    let info = state.store.create_token(new, audit.detail("name", wanted.name)).await?;
    Ok((StatusCode::CREATED, Json(token_created_out(&token_view(&info), &secret))).into_response())
}

pub(super) async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmPath(id): ArmPath<String>,
) -> HttpResult<Json<TokenRevokedOut>> {
    let audit = identity_audit(&caller, actions::PRINCIPAL_TOKENS_DELETE, format!("/ajar/v1/tokens/{id}"));
    let owner = state.store.get_token(&id).await?.map(|t| t.principal_id);
    match &owner {
        Some(owner) => authorize_for_principal(&state, &caller, owner, actions::PRINCIPAL_TOKENS_DELETE, &audit).await?,
        None => state.authorize_action(&caller, actions::PRINCIPAL_TOKENS_DELETE, &AccessScope::root(), &audit).await?,
    }
    let revoked = state.store.revoke_token(&id, audit).await?;
    Ok(Json(TokenRevokedOut { revoked: revoked.is_some() }))
}

/// The custom least-privileged requester role (Microsoft's `Set-JitLeastPrivilegedRole.ps1`), created
/// as any custom role is.
pub(super) async fn create_requester_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<OptionalJsonBody, HttpError>,
) -> HttpResult<Response> {
    let audit = identity_audit(&caller, actions::ROLE_DEFINITIONS_WRITE, "/ajar/v1/roles/requester".to_owned());
    let request = match body.and_then(|OptionalJsonBody(bytes)| requester_role_in(&bytes).map_err(HttpError)) {
        Ok(r) => r,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    let default_scope = match state.store.defaults().await? {
        Some(d) => AccessScope::subscription_scope(&d.subscription),
        None => AccessScope::root(),
    };
    let role = match request.to_role(&default_scope, uuid::Uuid::new_v4().to_string()) {
        Ok(r) => r,
        Err(e) => return Err(state.refuse(audit, e).await),
    };
    for s in &role.assignable_scopes {
        state.authorize_action(&caller, actions::ROLE_DEFINITIONS_WRITE, s, &audit).await?;
        require_holds_role(&state, &caller, &role, s, &audit).await?;
    }
    state.store.put_role_definition(role.clone(), audit.detail("roleName", role.name.clone())).await?;
    Ok((StatusCode::CREATED, Json(role_definition_out(&role, None))).into_response())
}
