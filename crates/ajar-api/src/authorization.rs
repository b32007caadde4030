//! `Microsoft.Authorization` (api-version 2022-04-01): role definitions and
//! role assignments in Azure's JSON, the scope paths they live under, and the
//! errors Azure answers about them (`AuthorizationFailed` and friends).
//!
//! Role definitions are read in two shapes, told apart by their keys: the ARM
//! resource (`{ "properties": { "roleName", "permissions": [...], ... } }`, what
//! the SDKs and `az rest` send, and what a GET returns) and the role file of
//! `az role definition create` / `New-AzRoleDefinition -InputFile`
//! (`{ "Name", "Actions", "NotActions", "AssignableScopes", ... }`, first letters
//! of the keys in either case). A refusal names the field as the client wrote it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use ajar_domain::SubscriptionId;
use ajar_domain::access::role::is_guid;
use ajar_domain::access::scope::ACCEPTED_FORMS;
use ajar_domain::access::{ActionPattern, CATALOG, RoleAssignment, RoleDefinition, RoleKind, Scope, validate_custom_role};
use ajar_domain::ids::arm_key;
use ajar_domain::problem::{Field, Step, Target};

use crate::{ApiError, render_target, wire_time};

/// The api-version of `Microsoft.Authorization` that ajar speaks.
pub const API_VERSION: &str = "2022-04-01";
pub const ROLE_DEFINITION_TYPE: &str = "Microsoft.Authorization/roleDefinitions";
pub const ROLE_ASSIGNMENT_TYPE: &str = "Microsoft.Authorization/roleAssignments";
/// The provider segment between a scope and a role resource.
const PROVIDER: &str = "/providers/Microsoft.Authorization";
/// Azure's `principalType` values that ajar knows.
pub const PRINCIPAL_TYPES: [&str; 3] = ["User", "ServicePrincipal", "Group"];

const ROLE_CODE: &str = "InvalidRoleDefinition";
const EXAMPLE_GUID: &str = "3daf09fb-cea9-4548-957a-9955c9ee6410";

// ------------------------------------------------------------------ errors

/// 403 with Azure's wording, for an action the caller may not perform at `scope`.
pub fn authorization_failed(principal_name: &str, principal_id: &str, action: &str, scope: &str) -> ApiError {
    ApiError::new(
        403,
        "AuthorizationFailed",
        format!(
            "The client '{principal_name}' with object id '{principal_id}' does not have authorization to perform action \
             '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
        ),
    )
}

/// 409: an assignment of the same role to the same principal at the same scope exists.
pub fn role_assignment_exists() -> ApiError {
    ApiError::conflict("RoleAssignmentExists", "The role assignment already exists.")
}

/// 409: custom role names are unique.
pub fn role_definition_name_exists(role_name: &str) -> ApiError {
    ApiError::conflict(
        "RoleDefinitionWithSameNameExists",
        format!("A custom role with the same name '{role_name}' already exists; choose another name."),
    )
}

/// 409: a role definition that is still assigned cannot be deleted.
pub fn role_definition_has_assignments(id: &str) -> ApiError {
    ApiError::conflict(
        "RoleDefinitionHasAssignments",
        format!("There are existing role assignments referencing role '{id}'; delete them before the role definition."),
    )
}

/// 409: a built-in role cannot be changed or deleted.
pub fn builtin_role_read_only(id: &str) -> ApiError {
    ApiError::conflict(
        "BuiltInRoleReadOnly",
        format!("Role definition '{id}' is a built-in role; built-in roles cannot be changed or deleted."),
    )
}

/// 404 for a role definition ID nobody defined.
pub fn role_definition_not_found(id: &str) -> ApiError {
    ApiError::not_found("RoleDefinitionDoesNotExist", format!("The specified role definition with ID '{id}' does not exist."))
}

/// 404 for a role assignment name with no assignment at the scope.
pub fn role_assignment_not_found(name: &str) -> ApiError {
    ApiError::not_found("RoleAssignmentNotFound", format!("The role assignment '{name}' is not found."))
}

/// 400: the assignment names a principal ajar does not know.
pub fn principal_not_found(principal_id: &str) -> ApiError {
    ApiError::bad_request("PrincipalNotFound", "properties.principalId", format!("Principal {principal_id} does not exist."))
}

// ------------------------------------------------------------------ paths

/// The two kinds of `Microsoft.Authorization` resources ajar serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationKind {
    RoleAssignments,
    RoleDefinitions,
}

impl AuthorizationKind {
    /// The resource type segment, as ARM writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationKind::RoleAssignments => "roleAssignments",
            AuthorizationKind::RoleDefinitions => "roleDefinitions",
        }
    }

    pub fn resource_type(self) -> &'static str {
        match self {
            AuthorizationKind::RoleAssignments => ROLE_ASSIGNMENT_TYPE,
            AuthorizationKind::RoleDefinitions => ROLE_DEFINITION_TYPE,
        }
    }
}

/// A request path split at its `Microsoft.Authorization` provider segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPath {
    /// What precedes `/providers/Microsoft.Authorization`; the root when nothing does.
    pub scope: Scope,
    pub kind: AuthorizationKind,
    /// The resource name; `None` for the collection (a list).
    pub name: Option<String>,
}

const PATH_FORMS: &str = "a role path is '{scope}/providers/Microsoft.Authorization/roleAssignments[/{name}]' or \
     '{scope}/providers/Microsoft.Authorization/roleDefinitions[/{id}]', where {scope} is nothing (the root), ";

fn invalid_path(path: &str, why: &str) -> ApiError {
    ApiError::new(400, "InvalidResourceId", format!("'{path}' is not a valid path: {why}; {PATH_FORMS}{ACCEPTED_FORMS}"))
}

/// Splits the (percent-decoded) path of
/// `/{scope}/providers/Microsoft.Authorization/{roleAssignments|roleDefinitions}[/{name}]`
/// into its scope, kind and name. The scope is everything before the last
/// `Microsoft.Authorization` provider segment, so VM-scoped paths (which have a
/// `providers` segment of their own) work too. Words match case-insensitively.
pub fn authorization_path(path: &str) -> Result<AuthorizationPath, ApiError> {
    let lower = path.to_ascii_lowercase();
    let marker = "/providers/microsoft.authorization/";
    let Some(at) = lower.rfind(marker) else {
        return Err(invalid_path(path, "it has no '/providers/Microsoft.Authorization/' segment"));
    };
    let prefix = &path[..at];
    let rest = &path[at + marker.len()..];
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let scope = if prefix.is_empty() {
        Scope::root()
    } else {
        prefix.parse::<Scope>().map_err(|e| invalid_path(path, &format!("scope '{prefix}' is invalid: {}", e.why)))?
    };
    let mut segs = rest.split('/');
    let kind = match segs.next() {
        Some(k) if k.eq_ignore_ascii_case("roleAssignments") => AuthorizationKind::RoleAssignments,
        Some(k) if k.eq_ignore_ascii_case("roleDefinitions") => AuthorizationKind::RoleDefinitions,
        other => {
            return Err(invalid_path(
                path,
                &format!("expected 'roleAssignments' or 'roleDefinitions' where it says '{}'", other.unwrap_or_default()),
            ));
        }
    };
    let name = match (segs.next(), segs.next()) {
        (None, _) => None,
        (Some(""), _) => return Err(invalid_path(path, "it has an empty segment")),
        (Some(name), None) => Some(name.to_owned()),
        (Some(_), Some(_)) => return Err(invalid_path(path, &format!("nothing may follow the {} name", kind.as_str()))),
    };
    Ok(AuthorizationPath { scope, kind, name })
}

/// The ARM ID prefix of a scope: empty for the root, so that IDs read `/providers/...`.
fn scope_prefix(scope: &Scope) -> String {
    if scope.is_root() { String::new() } else { scope.to_string() }
}

/// `/providers/Microsoft.Authorization/roleDefinitions/{guid}`, under the
/// subscription when `sub` is given (as Azure writes IDs read at or below one).
pub fn role_definition_id(guid: &str, sub: Option<&SubscriptionId>) -> String {
    match sub {
        Some(sub) => format!("/subscriptions/{sub}{PROVIDER}/roleDefinitions/{guid}"),
        None => format!("{PROVIDER}/roleDefinitions/{guid}"),
    }
}

pub fn role_assignment_id(scope: &Scope, name: &str) -> String {
    format!("{}{PROVIDER}/roleAssignments/{name}", scope_prefix(scope))
}

/// A reference to a role definition: a bare GUID,
/// `/providers/Microsoft.Authorization/roleDefinitions/{guid}` or
/// `/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
/// Returns the subscription, if named, and the lower-cased GUID.
pub fn parse_role_definition_ref(s: &str) -> Result<(Option<SubscriptionId>, String), String> {
    let forms = format!(
        "give a GUID such as {EXAMPLE_GUID}, '/providers/Microsoft.Authorization/roleDefinitions/{{guid}}' or \
         '/subscriptions/{{subscriptionId}}/providers/Microsoft.Authorization/roleDefinitions/{{guid}}'"
    );
    if is_guid(s) {
        return Ok((None, s.to_ascii_lowercase()));
    }
    let lower = s.to_ascii_lowercase();
    let marker = "/providers/microsoft.authorization/roledefinitions/";
    let Some(at) = lower.find(marker) else {
        return Err(format!("'{s}' is not a role definition ID; {forms}"));
    };
    let guid = &s[at + marker.len()..];
    if !is_guid(guid) {
        return Err(format!("'{s}' does not end in a role definition GUID; {forms}"));
    }
    let sub = match &s[..at] {
        "" => None,
        prefix => {
            const SUBS: &str = "/subscriptions/";
            if !prefix.to_ascii_lowercase().starts_with(SUBS) {
                return Err(format!("'{s}' is not a role definition ID; {forms}"));
            }
            Some(prefix[SUBS.len()..].parse::<SubscriptionId>().map_err(|e| format!("'{s}': {e}"))?)
        }
    };
    Ok((sub, guid.to_ascii_lowercase()))
}

// ------------------------------------------------------------------ role definitions, output

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDefinitionOut {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub properties: RoleDefinitionProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinitionProperties {
    pub role_name: String,
    pub description: String,
    /// `BuiltInRole` or `CustomRole`.
    #[serde(rename = "type")]
    pub role_type: String,
    pub permissions: Vec<Permission>,
    pub assignable_scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub updated_on: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    /// Always empty: ajar has no data actions.
    pub data_actions: Vec<String>,
    /// Always empty.
    pub not_data_actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinitionList {
    pub value: Vec<RoleDefinitionOut>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_link: Option<String>,
}

impl RoleDefinitionOut {
    /// Adds `createdOn` and `updatedOn`, which the domain type does not carry.
    pub fn with_times(mut self, created_on: Option<OffsetDateTime>, updated_on: Option<OffsetDateTime>) -> Self {
        self.properties.created_on = created_on.map(wire_time::format);
        self.properties.updated_on = updated_on.map(wire_time::format);
        self
    }
}

/// A role definition as Azure shows it. Its ID is under the subscription of
/// `at_scope` when that has one (as Azure answers a read at a subscription,
/// resource group or resource), otherwise at the root.
pub fn role_definition_out(role: &RoleDefinition, at_scope: Option<&Scope>) -> RoleDefinitionOut {
    RoleDefinitionOut {
        id: role_definition_id(&role.id, at_scope.and_then(Scope::subscription)),
        name: role.id.clone(),
        resource_type: ROLE_DEFINITION_TYPE.to_owned(),
        properties: RoleDefinitionProperties {
            role_name: role.name.clone(),
            description: role.description.clone(),
            role_type: role.kind.as_str().to_owned(),
            permissions: vec![Permission {
                actions: role.actions.clone(),
                not_actions: role.not_actions.clone(),
                data_actions: Vec::new(),
                not_data_actions: Vec::new(),
            }],
            assignable_scopes: role.assignable_scopes.iter().map(ToString::to_string).collect(),
            created_on: None,
            updated_on: None,
        },
    }
}

pub fn role_definition_list(roles: &[RoleDefinition], at_scope: Option<&Scope>) -> RoleDefinitionList {
    RoleDefinitionList { value: roles.iter().map(|r| role_definition_out(r, at_scope)).collect(), next_link: None }
}

// ------------------------------------------------------------------ role definitions, input

/// The ARM resource shape of a PUT body. Read-only fields a GET returns are
/// accepted so that a read role can be sent back; `id`, `name` and `type`
/// must agree with the URL.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDefinitionIn {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub resource_type: Option<String>,
    pub properties: RoleDefinitionPropertiesIn,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleDefinitionPropertiesIn {
    pub role_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "type", default)]
    pub role_type: Option<String>,
    #[serde(default)]
    pub permissions: Option<Vec<PermissionIn>>,
    #[serde(default)]
    pub assignable_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub created_on: Option<String>,
    #[serde(default)]
    pub updated_on: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub updated_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionIn {
    #[serde(default)]
    pub actions: Option<Vec<String>>,
    #[serde(default)]
    pub not_actions: Option<Vec<String>>,
    #[serde(default)]
    pub data_actions: Option<Vec<String>>,
    #[serde(default)]
    pub not_data_actions: Option<Vec<String>>,
}

/// The role file of `az role definition create` and `New-AzRoleDefinition`.
/// Keys are PascalCase as Azure documents them; camelCase is accepted too,
/// as the Azure CLI does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFileIn {
    #[serde(rename = "Name", alias = "name")]
    pub name: String,
    #[serde(rename = "Id", alias = "id", default)]
    pub id: Option<String>,
    #[serde(rename = "IsCustom", alias = "isCustom", default)]
    pub is_custom: Option<bool>,
    #[serde(rename = "Description", alias = "description", default)]
    pub description: Option<String>,
    #[serde(rename = "Actions", alias = "actions", default)]
    pub actions: Option<Vec<String>>,
    #[serde(rename = "NotActions", alias = "notActions", default)]
    pub not_actions: Option<Vec<String>>,
    #[serde(rename = "DataActions", alias = "dataActions", default)]
    pub data_actions: Option<Vec<String>>,
    #[serde(rename = "NotDataActions", alias = "notDataActions", default)]
    pub not_data_actions: Option<Vec<String>>,
    #[serde(rename = "AssignableScopes", alias = "assignableScopes", default)]
    pub assignable_scopes: Option<Vec<String>>,
    /// `Get-AzRoleDefinition | ConvertTo-Json` writes these as null.
    #[serde(rename = "Condition", alias = "condition", default)]
    pub condition: Option<Value>,
    #[serde(rename = "ConditionVersion", alias = "conditionVersion", default)]
    pub condition_version: Option<Value>,
}

/// Keys only the role file has (in either case), to tell it from the ARM shape.
const ROLE_FILE_KEYS: &[&str] = &[
    "Name",
    "Id",
    "IsCustom",
    "isCustom",
    "Description",
    "Actions",
    "actions",
    "NotActions",
    "notActions",
    "DataActions",
    "dataActions",
    "NotDataActions",
    "notDataActions",
    "AssignableScopes",
    "assignableScopes",
];

/// A role, with where each of its parts came from in the body, so that a
/// validation problem names the field the client wrote.
struct Draft {
    name: String,
    description: String,
    /// Each pattern with its target.
    actions: Vec<(String, String)>,
    not_actions: Vec<(String, String)>,
    scopes: Vec<(String, String)>,
    /// Patterns per permission block, for the merge check (ARM shape only).
    blocks: Vec<(Vec<String>, Vec<String>)>,
    name_target: String,
    actions_target: String,
    scopes_target: String,
    type_target: String,
}

fn bad(target: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ROLE_CODE, target, message)
}

fn no_data_actions(list: Option<&Vec<String>>, target: &str) -> Result<(), ApiError> {
    match list {
        Some(list) if !list.is_empty() => Err(bad(
            target,
            "ajar has no data actions: every permission is a management action, given in actions and notActions; leave this empty",
        )),
        _ => Ok(()),
    }
}

/// The body's resource name or ID, if given, must name the URL's role.
fn check_same_role(given: &str, id_from_url: &str, target: &str) -> Result<(), ApiError> {
    let (_, guid) = parse_role_definition_ref(given).map_err(|e| bad(target, e))?;
    if guid.eq_ignore_ascii_case(id_from_url) {
        Ok(())
    } else {
        Err(bad(target, format!("the body names role definition '{given}' but the URL names '{id_from_url}'")))
    }
}

fn arm_draft(id_from_url: &str, body: &[u8]) -> Result<Draft, ApiError> {
    let input: RoleDefinitionIn = crate::parse_body(body)?;
    if let Some(t) = &input.resource_type
        && !t.eq_ignore_ascii_case(ROLE_DEFINITION_TYPE)
    {
        return Err(bad("type", format!("type '{t}' is not {ROLE_DEFINITION_TYPE}")));
    }
    if let Some(name) = &input.name {
        if !is_guid(name) {
            return Err(bad("name", format!("role definition name '{name}' must be a GUID such as {EXAMPLE_GUID}")));
        }
        check_same_role(name, id_from_url, "name")?;
    }
    if let Some(id) = &input.id {
        check_same_role(id, id_from_url, "id")?;
    }
    let p = input.properties;
    if let Some(t) = &p.role_type
        && !t.eq_ignore_ascii_case(RoleKind::Custom.as_str())
    {
        return Err(bad("properties.type", format!("type '{t}' cannot be written: only a CustomRole can be created or changed")));
    }
    let permissions = p.permissions.unwrap_or_default();
    let (mut actions, mut not_actions, mut blocks) = (Vec::new(), Vec::new(), Vec::new());
    for (j, block) in permissions.iter().enumerate() {
        let at = format!("properties.permissions[{j}]");
        no_data_actions(block.data_actions.as_ref(), &format!("{at}.dataActions"))?;
        no_data_actions(block.not_data_actions.as_ref(), &format!("{at}.notDataActions"))?;
        let a = block.actions.clone().unwrap_or_default();
        let n = block.not_actions.clone().unwrap_or_default();
        actions.extend(a.iter().enumerate().map(|(i, s)| (s.clone(), format!("{at}.actions[{i}]"))));
        not_actions.extend(n.iter().enumerate().map(|(i, s)| (s.clone(), format!("{at}.notActions[{i}]"))));
        blocks.push((a, n));
    }
    Ok(Draft {
        name: p.role_name,
        description: p.description.unwrap_or_default(),
        actions,
        not_actions,
        scopes: p
            .assignable_scopes
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, format!("properties.assignableScopes[{i}]")))
            .collect(),
        blocks,
        name_target: "properties.roleName".into(),
        actions_target: if permissions.len() == 1 { "properties.permissions[0].actions".into() } else { "properties.permissions".into() },
        scopes_target: "properties.assignableScopes".into(),
        type_target: "properties.type".into(),
    })
}

fn role_file_draft(id_from_url: &str, body: &[u8], keys: &serde_json::Map<String, Value>) -> Result<Draft, ApiError> {
    // Targets use the key as the client wrote it.
    let key = |pascal: &str| -> String {
        let camel = format!("{}{}", pascal[..1].to_ascii_lowercase(), &pascal[1..]);
        if keys.contains_key(&camel) && !keys.contains_key(pascal) { camel } else { pascal.to_owned() }
    };
    let input: RoleFileIn = crate::parse_body(body)?;
    if input.is_custom == Some(false) {
        return Err(bad(&key("IsCustom"), "only custom roles can be created or changed; set IsCustom to true"));
    }
    if let Some(id) = &input.id {
        check_same_role(id, id_from_url, &key("Id"))?;
    }
    for (value, field) in [(&input.condition, "Condition"), (&input.condition_version, "ConditionVersion")] {
        if value.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(bad(&key(field), "ajar has no role conditions; leave this out or null"));
        }
    }
    no_data_actions(input.data_actions.as_ref(), &key("DataActions"))?;
    no_data_actions(input.not_data_actions.as_ref(), &key("NotDataActions"))?;
    let listed = |list: Option<Vec<String>>, field: &str| -> Vec<(String, String)> {
        let field = key(field);
        list.unwrap_or_default().into_iter().enumerate().map(|(i, s)| (s, format!("{field}[{i}]"))).collect()
    };
    Ok(Draft {
        name: input.name,
        description: input.description.unwrap_or_default(),
        actions: listed(input.actions, "Actions"),
        not_actions: listed(input.not_actions, "NotActions"),
        scopes: listed(input.assignable_scopes, "AssignableScopes"),
        blocks: Vec::new(),
        name_target: key("Name"),
        actions_target: key("Actions"),
        scopes_target: key("AssignableScopes"),
        type_target: key("IsCustom"),
    })
}

/// Where the domain's validation target points in the client's body.
fn map_target(draft: &Draft, target: &Target) -> String {
    use Field::{Actions, AssignableScopes, NotActions, Permissions, Properties, RoleName, Type};
    use Step::{At, Field as F};
    let mapped = match target.steps() {
        [F(Properties), F(Permissions), At(0), F(Actions), At(i)] => draft.actions.get(*i).map(|(_, t)| t.clone()),
        [F(Properties), F(Permissions), At(0), F(NotActions), At(i)] => draft.not_actions.get(*i).map(|(_, t)| t.clone()),
        [F(Properties), F(RoleName)] => Some(draft.name_target.clone()),
        [F(Properties), F(Permissions), At(0), F(Actions)] => Some(draft.actions_target.clone()),
        [F(Properties), F(AssignableScopes)] => Some(draft.scopes_target.clone()),
        [F(Properties), F(Type)] => Some(draft.type_target.clone()),
        _ => None,
    };
    mapped.unwrap_or_else(|| render_target(target))
}

/// Azure checks each permission block on its own: a block's notActions only
/// take from that block's actions. ajar keeps one block, so merging must not
/// take away what another block grants; if it would, the role is refused.
fn check_merge(blocks: &[(Vec<String>, Vec<String>)]) -> Result<(), ApiError> {
    if blocks.len() < 2 {
        return Ok(());
    }
    let compiled: Vec<(Vec<ActionPattern>, Vec<ActionPattern>)> = blocks
        .iter()
        .map(|(a, n)| (a.iter().map(|p| ActionPattern::new(p)).collect(), n.iter().map(|p| ActionPattern::new(p)).collect()))
        .collect();
    for (action, _) in CATALOG {
        let Some(granted_by) =
            compiled.iter().position(|(a, n)| a.iter().any(|p| p.matches(action)) && !n.iter().any(|p| p.matches(action)))
        else {
            continue;
        };
        if let Some((k, pattern)) =
            compiled.iter().enumerate().find_map(|(k, (_, n))| n.iter().find(|p| p.matches(action)).map(|p| (k, p.as_str().to_owned())))
        {
            return Err(bad(
                "properties.permissions",
                format!(
                    "permissions[{granted_by}] grants '{action}' but permissions[{k}].notActions excludes it ('{pattern}'); \
                     ajar merges permission blocks into one, where the exclusion would win: write the role as one block"
                ),
            ));
        }
    }
    Ok(())
}

/// Turns a PUT body into the custom role with GUID `id_from_url`. Accepts the
/// ARM shape and the role file shape; several permission blocks are merged
/// (refused if merging would drop an action a block grants); data actions
/// must be empty; `type`/`IsCustom` must say custom; the body's name and id
/// must name the URL's role. The role is then validated
/// ([`validate_custom_role`]), and a problem is reported at the field the
/// client wrote.
pub fn role_definition_in(id_from_url: &str, body: &[u8]) -> Result<RoleDefinition, ApiError> {
    let value: Value = crate::parse_body(body)?;
    let Some(keys) = value.as_object() else {
        return Err(ApiError::new(400, "InvalidRequestContent", "the body must be a JSON object"));
    };
    let is_role_file = !keys.contains_key("properties") && ROLE_FILE_KEYS.iter().any(|k| keys.contains_key(*k));
    let draft = if is_role_file { role_file_draft(id_from_url, body, keys)? } else { arm_draft(id_from_url, body)? };
    let mut scopes = Vec::with_capacity(draft.scopes.len());
    for (s, target) in &draft.scopes {
        scopes.push(s.parse::<Scope>().map_err(|e| bad(target, e.to_string()))?);
    }
    let role = RoleDefinition {
        id: id_from_url.to_ascii_lowercase(),
        name: draft.name.clone(),
        description: draft.description.clone(),
        kind: RoleKind::Custom,
        actions: draft.actions.iter().map(|(p, _)| p.clone()).collect(),
        not_actions: draft.not_actions.iter().map(|(p, _)| p.clone()).collect(),
        assignable_scopes: scopes,
    };
    validate_custom_role(&role).map_err(|p| {
        let target = p.target.as_ref().map(|t| map_target(&draft, t));
        ApiError::from(p).with_target(target)
    })?;
    check_merge(&draft.blocks)?;
    Ok(role)
}

// ------------------------------------------------------------------ role assignments

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignmentOut {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub properties: RoleAssignmentProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentProperties {
    pub role_definition_id: String,
    pub principal_id: String,
    /// `User`, `ServicePrincipal` or `Group`.
    pub principal_type: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentList {
    pub value: Vec<RoleAssignmentOut>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_link: Option<String>,
}

impl RoleAssignmentOut {
    /// Adds `createdOn` and `createdBy` (the creator's principal ID), which the domain type does not carry.
    pub fn with_created(mut self, created_on: Option<OffsetDateTime>, created_by: Option<&str>) -> Self {
        self.properties.created_on = created_on.map(wire_time::format);
        self.properties.created_by = created_by.map(str::to_owned);
        self
    }
}

/// An assignment as Azure shows it; `roleDefinitionId` is written under the
/// scope's subscription when it has one, as Azure does.
pub fn role_assignment_out(assignment: &RoleAssignment, principal_type: &str) -> RoleAssignmentOut {
    let guid = assignment.role_id.rsplit('/').next().unwrap_or(&assignment.role_id);
    RoleAssignmentOut {
        id: role_assignment_id(&assignment.scope, &assignment.id),
        name: assignment.id.clone(),
        resource_type: ROLE_ASSIGNMENT_TYPE.to_owned(),
        properties: RoleAssignmentProperties {
            role_definition_id: role_definition_id(guid, assignment.scope.subscription()),
            principal_id: assignment.principal_id.clone(),
            principal_type: principal_type.to_owned(),
            scope: assignment.scope.to_string(),
            created_on: None,
            created_by: None,
        },
    }
}

/// A PUT body, as the server reads it and the client sends it. Read-only fields a GET
/// returns are accepted so that a read assignment can be sent back, and must agree with
/// the URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleAssignmentIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    pub properties: RoleAssignmentPropertiesIn,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignmentPropertiesIn {
    pub role_definition_id: String,
    pub principal_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_managed_identity_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

impl RoleAssignmentIn {
    /// The body that assigns `role_definition_id` to `principal_id`, naming nothing else.
    pub fn new(role_definition_id: String, principal_id: String) -> Self {
        RoleAssignmentIn {
            id: None,
            name: None,
            resource_type: None,
            properties: RoleAssignmentPropertiesIn {
                role_definition_id,
                principal_id,
                principal_type: None,
                scope: None,
                description: None,
                condition: None,
                condition_version: None,
                delegated_managed_identity_resource_id: None,
                created_on: None,
                updated_on: None,
                created_by: None,
                updated_by: None,
            },
        }
    }
}

/// Longest principal ID accepted (an OIDC `sub` is at most 255 ASCII characters).
pub const MAX_PRINCIPAL_ID: usize = 256;

/// Turns a PUT body into the assignment `name_from_url` at `scope`.
/// `roleDefinitionId` may be a GUID or a role definition ID at the root or
/// under the scope's subscription. `principalType`, if given, must be one of
/// [`PRINCIPAL_TYPES`]; it is not returned, since ajar knows its principals.
pub fn role_assignment_in(scope: &Scope, name_from_url: &str, body: &[u8]) -> Result<RoleAssignment, ApiError> {
    if !is_guid(name_from_url) {
        return Err(ApiError::bad_request(
            "InvalidRoleAssignmentId",
            "name",
            format!("The role assignment ID '{name_from_url}' is not valid. The role assignment ID must be a GUID such as {EXAMPLE_GUID}."),
        ));
    }
    let input: RoleAssignmentIn = crate::parse_body(body)?;
    let bad = |code: &str, target: &str, msg: String| ApiError::bad_request(code, target, msg);
    const CODE: &str = "InvalidRequestContent";
    if let Some(t) = &input.resource_type
        && !t.eq_ignore_ascii_case(ROLE_ASSIGNMENT_TYPE)
    {
        return Err(bad(CODE, "type", format!("type '{t}' is not {ROLE_ASSIGNMENT_TYPE}")));
    }
    if let Some(name) = &input.name
        && !name.eq_ignore_ascii_case(name_from_url)
    {
        return Err(bad(CODE, "name", format!("the body names role assignment '{name}' but the URL names '{name_from_url}'")));
    }
    let id = role_assignment_id(scope, name_from_url);
    if let Some(body_id) = &input.id
        && arm_key(body_id) != arm_key(&id)
    {
        return Err(bad(CODE, "id", format!("the body's id '{body_id}' is not the URL's resource '{id}'")));
    }
    let p = input.properties;
    if let Some(s) = &p.scope {
        let given: Scope =
            s.parse().map_err(|e: ajar_domain::access::ScopeError| bad("InvalidResourceId", "properties.scope", e.to_string()))?;
        if &given != scope {
            return Err(bad(CODE, "properties.scope", format!("the body's scope '{s}' is not the URL's scope '{scope}'")));
        }
    }
    let principal_id = p.principal_id.as_str();
    let principal_problem = if principal_id.trim().is_empty() {
        Some("a role assignment needs the principal's ID".to_owned())
    } else if principal_id.trim() != principal_id {
        Some(format!("principal ID '{principal_id}' has leading or trailing spaces"))
    } else if principal_id.chars().any(char::is_control) {
        Some("the principal ID contains control characters".to_owned())
    } else if principal_id.chars().count() > MAX_PRINCIPAL_ID {
        Some(format!("the principal ID is longer than {MAX_PRINCIPAL_ID} characters"))
    } else {
        None
    };
    if let Some(msg) = principal_problem {
        return Err(bad("InvalidPrincipalId", "properties.principalId", msg));
    }
    if let Some(t) = &p.principal_type
        && !PRINCIPAL_TYPES.iter().any(|k| k.eq_ignore_ascii_case(t))
    {
        return Err(bad(
            "InvalidPrincipalType",
            "properties.principalType",
            format!("principal type '{t}' is not one of {}", PRINCIPAL_TYPES.join(", ")),
        ));
    }
    let (role_sub, guid) =
        parse_role_definition_ref(&p.role_definition_id).map_err(|e| bad("InvalidRoleDefinitionId", "properties.roleDefinitionId", e))?;
    if let (Some(role_sub), Some(scope_sub)) = (&role_sub, scope.subscription())
        && role_sub != scope_sub
    {
        return Err(bad(
            "InvalidRoleDefinitionId",
            "properties.roleDefinitionId",
            format!("role definition '{}' is under subscription '{role_sub}', but the assignment is at '{scope}'", p.role_definition_id),
        ));
    }
    if p.description.as_deref().is_some_and(|d| !d.is_empty()) {
        return Err(bad(CODE, "properties.description", "ajar does not keep descriptions on role assignments; leave this out".into()));
    }
    for (value, target) in [
        (&p.condition, "properties.condition"),
        (&p.condition_version, "properties.conditionVersion"),
        (&p.delegated_managed_identity_resource_id, "properties.delegatedManagedIdentityResourceId"),
    ] {
        if value.is_some() {
            return Err(bad(CODE, target, "ajar has no conditions or delegated identities on role assignments; leave this out".into()));
        }
    }
    // A principal's object ID is a GUID in any case (ajar writes them in lower case); an OIDC identity's
    // subject is matched exactly.
    let principal_id = if is_guid(&p.principal_id) { p.principal_id.to_ascii_lowercase() } else { p.principal_id };
    Ok(RoleAssignment { id: name_from_url.to_ascii_lowercase(), principal_id, role_id: guid, scope: scope.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
    const OTHER_SUB: &str = "00000000-0000-0000-0000-000000000002";
    const ROLE: &str = "0f4b5b0e-9b0e-4a57-9d6b-0f0c7a1f2b3c";
    const ASSIGNMENT: &str = "b7c6f0a2-1d3e-4f5a-8b9c-0d1e2f3a4b5c";
    const JIT_READ: &str = "Microsoft.Security/locations/jitNetworkAccessPolicies/read";
    const JIT_INITIATE: &str = "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action";
    const VM_READ: &str = "Microsoft.Compute/virtualMachines/read";

    fn sub_scope() -> Scope {
        format!("/subscriptions/{SUB}").parse().unwrap()
    }

    /// What the portal's JSON tab and the SDKs send.
    fn arm_role() -> Value {
        json!({
            "id": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"),
            "name": ROLE,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": "JIT operator",
                "description": "Reads and requests JIT access",
                "type": "CustomRole",
                "permissions": [{
                    "actions": [JIT_READ, JIT_INITIATE, VM_READ],
                    "notActions": [],
                    "dataActions": [],
                    "notDataActions": []
                }],
                "assignableScopes": [format!("/subscriptions/{SUB}")]
            }
        })
    }

    /// What `az role definition create --role-definition file.json` reads.
    fn role_file() -> Value {
        json!({
            "Name": "JIT operator",
            "IsCustom": true,
            "Description": "Reads and requests JIT access",
            "Actions": [JIT_READ, JIT_INITIATE, VM_READ],
            "NotActions": [],
            "DataActions": [],
            "NotDataActions": [],
            "AssignableScopes": [format!("/subscriptions/{SUB}")]
        })
    }

    fn with(mut v: Value, pointer: &str, new: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let slot = v.pointer_mut(parent).unwrap();
        match slot {
            Value::Object(m) => {
                if new.is_null() && key.starts_with('-') {
                    m.remove(&key[1..]);
                } else {
                    m.insert(key.to_owned(), new);
                }
            }
            Value::Array(a) => a[key.parse::<usize>().unwrap()] = new,
            _ => panic!("{pointer}"),
        }
        v
    }

    fn without(v: Value, pointer: &str) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        with(v, &format!("{parent}/-{key}"), Value::Null)
    }

    fn expected_role() -> RoleDefinition {
        RoleDefinition {
            id: ROLE.into(),
            name: "JIT operator".into(),
            description: "Reads and requests JIT access".into(),
            kind: RoleKind::Custom,
            actions: vec![JIT_READ.into(), JIT_INITIATE.into(), VM_READ.into()],
            not_actions: vec![],
            assignable_scopes: vec![sub_scope()],
        }
    }

    fn check_error(got: Result<impl std::fmt::Debug, ApiError>, status: u16, code: &str, target: Option<&str>, msg: &str, what: &str) {
        match got {
            Err(e) => {
                assert_eq!((e.status, e.body.code.as_str(), e.body.target.as_deref()), (status, code, target), "{what}: {e}");
                assert!(e.body.message.contains(msg), "{what}: {e}");
            }
            Ok(v) => panic!("{what}: expected {code} at {target:?}, got {v:?}"),
        }
    }

    #[test]
    fn role_definitions_accepted() {
        let table: Vec<(&str, Value, RoleDefinition)> = vec![
            ("ARM shape", arm_role(), expected_role()),
            ("ARM shape, no read-only fields", without(without(without(arm_role(), "/id"), "/name"), "/type"), expected_role()),
            (
                "ARM shape, root id",
                with(arm_role(), "/id", json!(format!("/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"))),
                expected_role(),
            ),
            (
                "ARM shape, nulls",
                with(with(arm_role(), "/properties/permissions/0/dataActions", Value::Null), "/properties/description", Value::Null),
                RoleDefinition { description: String::new(), ..expected_role() },
            ),
            (
                "ARM shape, sent back after a GET",
                with(
                    with(arm_role(), "/properties/createdOn", json!("2026-01-01T00:00:00.0000000Z")),
                    "/properties/updatedBy",
                    Value::Null,
                ),
                expected_role(),
            ),
            (
                "ARM shape, two blocks merged",
                with(
                    arm_role(),
                    "/properties/permissions",
                    json!([{"actions": [JIT_READ, JIT_INITIATE]}, {"actions": [VM_READ], "notActions": ["Microsoft.Compute/virtualMachines/delete"]}]),
                ),
                RoleDefinition { not_actions: vec!["Microsoft.Compute/virtualMachines/delete".into()], ..expected_role() },
            ),
            ("role file", role_file(), expected_role()),
            ("role file with Id", with(role_file(), "/Id", json!(ROLE)), expected_role()),
            (
                "role file, PowerShell's nulls",
                with(with(role_file(), "/Condition", Value::Null), "/ConditionVersion", Value::Null),
                expected_role(),
            ),
            (
                "role file, camelCase keys",
                json!({"name": "JIT operator", "isCustom": true, "description": "Reads and requests JIT access", "actions": [JIT_READ, JIT_INITIATE, VM_READ], "assignableScopes": [format!("/subscriptions/{SUB}")]}),
                expected_role(),
            ),
        ];
        for (what, body, expected) in table {
            let got = role_definition_in(ROLE, body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got, expected, "{what}");
        }
        // The URL's GUID is kept lower-cased.
        assert_eq!(role_definition_in(&ROLE.to_uppercase(), arm_role().to_string().as_bytes()).unwrap().id, ROLE);
    }

    #[test]
    fn role_definitions_refused() {
        let typo = "Microsoft.Security/locations/jitNetworkAccessPolicy/read";
        type Row = (&'static str, Value, (&'static str, Option<&'static str>, &'static str));
        let table: Vec<Row> = vec![
            (
                "typo in an action",
                with(arm_role(), "/properties/permissions/0/actions/2", json!(typo)),
                (
                    "InvalidRoleDefinition",
                    Some("properties.permissions[0].actions[2]"),
                    "did you mean 'Microsoft.Security/locations/jitNetworkAccessPolicies/read'?",
                ),
            ),
            (
                "typo in the second block",
                with(arm_role(), "/properties/permissions", json!([{"actions": [JIT_READ]}, {"actions": [VM_READ, typo]}])),
                ("InvalidRoleDefinition", Some("properties.permissions[1].actions[1]"), "matches no action ajar knows"),
            ),
            (
                "typo in notActions",
                with(arm_role(), "/properties/permissions/0/notActions", json!(["Microsoft.Compute/virtualMachine/delete"])),
                ("InvalidRoleDefinition", Some("properties.permissions[0].notActions[0]"), "matches no action ajar knows"),
            ),
            (
                "typo in a role file",
                with(role_file(), "/Actions/1", json!("Microsoft.Security/*/inititate/action")),
                ("InvalidRoleDefinition", Some("Actions[1]"), "matches no action ajar knows"),
            ),
            (
                "typo in a camelCase role file",
                json!({"name": "r", "actions": ["*", "x"], "assignableScopes": ["/"]}),
                ("InvalidRoleDefinition", Some("actions[1]"), "matches no action ajar knows"),
            ),
            (
                "data actions",
                with(
                    arm_role(),
                    "/properties/permissions/0/dataActions",
                    json!(["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"]),
                ),
                ("InvalidRoleDefinition", Some("properties.permissions[0].dataActions"), "ajar has no data actions"),
            ),
            (
                "not data actions",
                with(arm_role(), "/properties/permissions/0/notDataActions", json!(["x"])),
                ("InvalidRoleDefinition", Some("properties.permissions[0].notDataActions"), "ajar has no data actions"),
            ),
            (
                "data actions in a role file",
                with(role_file(), "/DataActions", json!(["x"])),
                ("InvalidRoleDefinition", Some("DataActions"), "ajar has no data actions"),
            ),
            (
                "body name is another role",
                with(arm_role(), "/name", json!(EXAMPLE_GUID)),
                ("InvalidRoleDefinition", Some("name"), "but the URL names"),
            ),
            (
                "body name is not a GUID",
                with(arm_role(), "/name", json!("JIT operator")),
                ("InvalidRoleDefinition", Some("name"), "must be a GUID"),
            ),
            (
                "body id is another role",
                with(
                    arm_role(),
                    "/id",
                    json!(format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{EXAMPLE_GUID}")),
                ),
                ("InvalidRoleDefinition", Some("id"), "but the URL names"),
            ),
            (
                "body id is not a role ID",
                with(arm_role(), "/id", json!("/subscriptions/x")),
                ("InvalidRoleDefinition", Some("id"), "not a role definition ID"),
            ),
            (
                "role file Id is another role",
                with(role_file(), "/Id", json!(EXAMPLE_GUID)),
                ("InvalidRoleDefinition", Some("Id"), "but the URL names"),
            ),
            (
                "wrong resource type",
                with(arm_role(), "/type", json!("Microsoft.Authorization/roleAssignments")),
                ("InvalidRoleDefinition", Some("type"), "is not Microsoft.Authorization/roleDefinitions"),
            ),
            (
                "built-in type",
                with(arm_role(), "/properties/type", json!("BuiltInRole")),
                ("InvalidRoleDefinition", Some("properties.type"), "only a CustomRole"),
            ),
            (
                "IsCustom false",
                with(role_file(), "/IsCustom", json!(false)),
                ("InvalidRoleDefinition", Some("IsCustom"), "set IsCustom to true"),
            ),
            (
                "role file condition",
                with(role_file(), "/Condition", json!("@Resource[x] == 'y'")),
                ("InvalidRoleDefinition", Some("Condition"), "no role conditions"),
            ),
            (
                "built-in name",
                with(arm_role(), "/properties/roleName", json!("Owner")),
                ("InvalidRoleDefinition", Some("properties.roleName"), "built-in role"),
            ),
            (
                "built-in name in a role file",
                with(role_file(), "/Name", json!("reader")),
                ("InvalidRoleDefinition", Some("Name"), "built-in role"),
            ),
            (
                "no actions",
                with(arm_role(), "/properties/permissions/0/actions", json!([])),
                ("InvalidRoleDefinition", Some("properties.permissions[0].actions"), "at least one action"),
            ),
            (
                "no permissions",
                without(arm_role(), "/properties/permissions"),
                ("InvalidRoleDefinition", Some("properties.permissions"), "at least one action"),
            ),
            (
                "no actions in a role file",
                without(role_file(), "/Actions"),
                ("InvalidRoleDefinition", Some("Actions"), "at least one action"),
            ),
            (
                "no scopes",
                with(arm_role(), "/properties/assignableScopes", json!([])),
                ("InvalidRoleDefinition", Some("properties.assignableScopes"), "at least one assignable scope"),
            ),
            (
                "bad scope",
                with(arm_role(), "/properties/assignableScopes", json!(["/", "/subscriptions/nope"])),
                ("InvalidRoleDefinition", Some("properties.assignableScopes[1]"), "GUID"),
            ),
            (
                "bad scope in a role file",
                with(role_file(), "/AssignableScopes/0", json!("subscriptions")),
                ("InvalidRoleDefinition", Some("AssignableScopes[0]"), "must start with '/'"),
            ),
            (
                "merging would deny what a block grants",
                with(arm_role(), "/properties/permissions", json!([{"actions": ["*"], "notActions": [VM_READ]}, {"actions": [VM_READ]}])),
                ("InvalidRoleDefinition", Some("properties.permissions"), "write the role as one block"),
            ),
            (
                "unknown field",
                with(arm_role(), "/properties/permisions", json!([])),
                ("InvalidRequestContent", Some("properties.permisions"), "unknown field"),
            ),
            (
                "unknown field in a block",
                with(arm_role(), "/properties/permissions/0/condition", json!("x")),
                ("InvalidRequestContent", Some("properties.permissions[0].condition"), "unknown field"),
            ),
            (
                "unknown field in a role file",
                with(role_file(), "/Scopes", json!([])),
                ("InvalidRequestContent", Some("Scopes"), "unknown field"),
            ),
            ("not an object", json!([]), ("InvalidRequestContent", None, "JSON object")),
            ("no properties", json!({"name": ROLE}), ("InvalidRequestContent", None, "missing field `properties`")),
        ];
        for (what, body, (code, target, msg)) in table {
            check_error(role_definition_in(ROLE, body.to_string().as_bytes()), 400, code, target, msg, what);
        }
        check_error(
            role_definition_in("not-a-guid", arm_role().to_string().as_bytes()),
            400,
            "InvalidRoleDefinition",
            Some("name"),
            "",
            "URL name",
        );
        let syntax = role_definition_in(ROLE, b"{").unwrap_err();
        assert_eq!((syntax.status, syntax.body.code.as_str()), (400, "InvalidRequestContent"));
        assert!(syntax.body.message.contains("not valid JSON"), "{syntax}");
    }

    #[test]
    fn role_definition_round_trips() {
        let role = expected_role();
        let out = role_definition_out(&role, Some(&sub_scope()));
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v, arm_role(), "the output is the ARM shape");
        assert_eq!(role_definition_in(ROLE, v.to_string().as_bytes()).unwrap(), role);
        // Read at the root, and with times.
        let at_root = role_definition_out(&role, None).with_times(Some(time::macros::datetime!(2026-01-01 0:00 UTC)), None);
        let v = serde_json::to_value(&at_root).unwrap();
        assert_eq!(v["id"], format!("/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"));
        assert_eq!(v["properties"]["createdOn"], "2026-01-01T00:00:00.0000000Z");
        assert!(v["properties"].get("updatedOn").is_none());
        assert_eq!(role_definition_in(ROLE, v.to_string().as_bytes()).unwrap(), role);
        // A resource group read writes the subscription's ID, as Azure does.
        let rg: Scope = format!("/subscriptions/{SUB}/resourceGroups/rg").parse().unwrap();
        assert_eq!(role_definition_out(&role, Some(&rg)).id, role_definition_id(ROLE, Some(&SUB.parse().unwrap())));
        // Built-ins say so.
        let list = role_definition_list(&ajar_domain::access::builtin_roles(), None);
        let reader = list.value.iter().find(|r| r.properties.role_name == "Reader").unwrap();
        assert_eq!(
            serde_json::to_value(reader).unwrap(),
            json!({
                "id": "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
                "name": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                "type": "Microsoft.Authorization/roleDefinitions",
                "properties": {
                    "roleName": "Reader",
                    "description": "View all resources, but does not allow you to make any changes or list API tokens",
                    "type": "BuiltInRole",
                    "permissions": [{"actions": ["*/read"], "notActions": ["Ajar/principals/tokens/read"], "dataActions": [], "notDataActions": []}],
                    "assignableScopes": ["/"]
                }
            })
        );
    }

    fn assignment_body(role_definition_id: &str, principal_id: &str) -> Value {
        json!({"properties": {"roleDefinitionId": role_definition_id, "principalId": principal_id, "principalType": "User"}})
    }

    #[test]
    fn role_assignments() {
        let scope = sub_scope();
        let expected = RoleAssignment { id: ASSIGNMENT.into(), principal_id: "alice".into(), role_id: ROLE.into(), scope: scope.clone() };
        for form in [
            ROLE.to_owned(),
            ROLE.to_uppercase(),
            format!("/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"),
            format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"),
            format!("/Subscriptions/{SUB}/Providers/microsoft.authorization/RoleDefinitions/{ROLE}"),
        ] {
            let got = role_assignment_in(&scope, ASSIGNMENT, assignment_body(&form, "alice").to_string().as_bytes());
            assert_eq!(got.unwrap_or_else(|e| panic!("{form}: {e}")), expected, "{form}");
        }
        // Out, and back in.
        let out = role_assignment_out(&expected, "User");
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(
            v,
            json!({
                "id": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments/{ASSIGNMENT}"),
                "name": ASSIGNMENT,
                "type": "Microsoft.Authorization/roleAssignments",
                "properties": {
                    "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"),
                    "principalId": "alice",
                    "principalType": "User",
                    "scope": format!("/subscriptions/{SUB}")
                }
            })
        );
        assert_eq!(role_assignment_in(&scope, ASSIGNMENT, v.to_string().as_bytes()).unwrap(), expected);
        let created = out.with_created(Some(time::macros::datetime!(2026-01-01 0:00 UTC)), Some("admin"));
        let v = serde_json::to_value(&created).unwrap();
        assert_eq!(
            (v["properties"]["createdOn"].as_str(), v["properties"]["createdBy"].as_str()),
            (Some("2026-01-01T00:00:00.0000000Z"), Some("admin"))
        );
        assert_eq!(role_assignment_in(&scope, ASSIGNMENT, v.to_string().as_bytes()).unwrap(), expected);
        // At the root, IDs have no scope prefix.
        let root = RoleAssignment { scope: Scope::root(), ..expected.clone() };
        let out = role_assignment_out(&root, "Group");
        assert_eq!(out.id, format!("/providers/Microsoft.Authorization/roleAssignments/{ASSIGNMENT}"));
        assert_eq!(out.properties.role_definition_id, format!("/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"));
        assert_eq!(out.properties.scope, "/");
        let list = RoleAssignmentList { value: vec![out], next_link: Some("https://x/next".into()) };
        assert_eq!(serde_json::to_value(&list).unwrap()["nextLink"], "https://x/next");
    }

    #[test]
    fn role_assignments_refused() {
        let scope = sub_scope();
        let good = || assignment_body(ROLE, "alice");
        type Row = (&'static str, &'static str, Value, (&'static str, Option<&'static str>, &'static str));
        let table: Vec<Row> = vec![
            ("URL name not a GUID", "my-assignment", good(), ("InvalidRoleAssignmentId", Some("name"), "must be a GUID")),
            (
                "empty principal",
                ASSIGNMENT,
                assignment_body(ROLE, ""),
                ("InvalidPrincipalId", Some("properties.principalId"), "needs the principal's ID"),
            ),
            (
                "blank principal",
                ASSIGNMENT,
                assignment_body(ROLE, "  "),
                ("InvalidPrincipalId", Some("properties.principalId"), "needs the principal's ID"),
            ),
            (
                "padded principal",
                ASSIGNMENT,
                assignment_body(ROLE, " alice"),
                ("InvalidPrincipalId", Some("properties.principalId"), "leading or trailing"),
            ),
            (
                "control characters",
                ASSIGNMENT,
                assignment_body(ROLE, "al\nice"),
                ("InvalidPrincipalId", Some("properties.principalId"), "control characters"),
            ),
            (
                "long principal",
                ASSIGNMENT,
                assignment_body(ROLE, &"a".repeat(257)),
                ("InvalidPrincipalId", Some("properties.principalId"), "longer than 256"),
            ),
            (
                "missing principal",
                ASSIGNMENT,
                without(good(), "/properties/principalId"),
                ("InvalidRequestContent", Some("properties"), "missing field `principalId`"),
            ),
            (
                "principal type",
                ASSIGNMENT,
                with(good(), "/properties/principalType", json!("Device")),
                ("InvalidPrincipalType", Some("properties.principalType"), "is not one of User, ServicePrincipal, Group"),
            ),
            (
                "role name, not ID",
                ASSIGNMENT,
                assignment_body("Reader", "alice"),
                ("InvalidRoleDefinitionId", Some("properties.roleDefinitionId"), "is not a role definition ID"),
            ),
            (
                "role ID without GUID",
                ASSIGNMENT,
                assignment_body("/providers/Microsoft.Authorization/roleDefinitions/reader", "alice"),
                ("InvalidRoleDefinitionId", Some("properties.roleDefinitionId"), "does not end in a role definition GUID"),
            ),
            (
                "role ID with a bad prefix",
                ASSIGNMENT,
                assignment_body(&format!("/tenants/x/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"), "alice"),
                ("InvalidRoleDefinitionId", Some("properties.roleDefinitionId"), "is not a role definition ID"),
            ),
            (
                "role ID in another subscription",
                ASSIGNMENT,
                assignment_body(&format!("/subscriptions/{OTHER_SUB}/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"), "alice"),
                ("InvalidRoleDefinitionId", Some("properties.roleDefinitionId"), "is under subscription"),
            ),
            (
                "body name",
                ASSIGNMENT,
                with(good(), "/name", json!(EXAMPLE_GUID)),
                ("InvalidRequestContent", Some("name"), "but the URL names"),
            ),
            (
                "body id",
                ASSIGNMENT,
                with(good(), "/id", json!(format!("/providers/Microsoft.Authorization/roleAssignments/{ASSIGNMENT}"))),
                ("InvalidRequestContent", Some("id"), "is not the URL's resource"),
            ),
            (
                "body type",
                ASSIGNMENT,
                with(good(), "/type", json!(ROLE_DEFINITION_TYPE)),
                ("InvalidRequestContent", Some("type"), "is not Microsoft.Authorization/roleAssignments"),
            ),
            (
                "body scope",
                ASSIGNMENT,
                with(good(), "/properties/scope", json!("/")),
                ("InvalidRequestContent", Some("properties.scope"), "is not the URL's scope"),
            ),
            (
                "bad body scope",
                ASSIGNMENT,
                with(good(), "/properties/scope", json!("/x")),
                ("InvalidResourceId", Some("properties.scope"), "expected 'subscriptions'"),
            ),
            (
                "description",
                ASSIGNMENT,
                with(good(), "/properties/description", json!("why")),
                ("InvalidRequestContent", Some("properties.description"), "descriptions"),
            ),
            (
                "condition",
                ASSIGNMENT,
                with(good(), "/properties/condition", json!("@x")),
                ("InvalidRequestContent", Some("properties.condition"), "no conditions"),
            ),
            (
                "unknown field",
                ASSIGNMENT,
                with(good(), "/properties/principalName", json!("alice")),
                ("InvalidRequestContent", Some("properties.principalName"), "unknown field"),
            ),
        ];
        for (what, name, body, (code, target, msg)) in table {
            check_error(role_assignment_in(&scope, name, body.to_string().as_bytes()), 400, code, target, msg, what);
        }
        // Empty or null description and a null condition are what SDKs send.
        let body = with(with(good(), "/properties/description", json!("")), "/properties/condition", Value::Null);
        assert!(role_assignment_in(&scope, ASSIGNMENT, body.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn paths() {
        let sub = format!("/subscriptions/{SUB}");
        let rg = format!("/subscriptions/{SUB}/resourceGroups/myRg");
        let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm1");
        let auth = "/providers/Microsoft.Authorization";
        use AuthorizationKind::{RoleAssignments as A, RoleDefinitions as D};
        type Expected<'a> = Result<(&'a str, AuthorizationKind, Option<&'a str>), &'a str>;
        let table: Vec<(String, Expected)> = vec![
            (format!("{auth}/roleAssignments"), Ok(("/", A, None))),
            (format!("{auth}/roleDefinitions/{ROLE}"), Ok(("/", D, Some(ROLE)))),
            (format!("/subscriptions/{SUB}{auth}/roleDefinitions"), Ok((&sub, D, None))),
            (format!("/subscriptions/{SUB}{auth}/roleAssignments/{ASSIGNMENT}/"), Ok((&sub, A, Some(ASSIGNMENT)))),
            (format!("{rg}{auth}/roleAssignments/{ASSIGNMENT}"), Ok((&rg, A, Some(ASSIGNMENT)))),
            (format!("{rg}/PROVIDERS/microsoft.authorization/ROLEASSIGNMENTS"), Ok((&rg, A, None))),
            (format!("{vm}{auth}/roleAssignments/{ASSIGNMENT}"), Ok((&vm, A, Some(ASSIGNMENT)))),
            (format!("{vm}{auth}/roleDefinitions"), Ok((&vm, D, None))),
            (
                format!("/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines"),
                Err("no '/providers/Microsoft.Authorization/' segment"),
            ),
            (
                format!("{auth}/roleEligibilitySchedules/x"),
                Err("expected 'roleAssignments' or 'roleDefinitions' where it says 'roleEligibilitySchedules'"),
            ),
            (format!("{auth}/"), Err("expected 'roleAssignments' or 'roleDefinitions' where it says ''")),
            (format!("{auth}/roleAssignments//"), Err("empty segment")),
            (format!("{auth}/roleAssignments/a/b"), Err("nothing may follow the roleAssignments name")),
            (format!("/subscriptions/nope{auth}/roleAssignments"), Err("scope '/subscriptions/nope' is invalid")),
            (format!("/providers/Microsoft.Management/managementGroups/mg{auth}/roleAssignments"), Err("expected 'subscriptions'")),
        ];
        for (path, expected) in table {
            match (authorization_path(&path), expected) {
                (Ok(got), Ok((scope, kind, name))) => {
                    assert_eq!(got.scope.to_string(), scope, "{path}");
                    assert_eq!((got.kind, got.name.as_deref()), (kind, name), "{path}");
                }
                (Err(e), Err(why)) => {
                    assert_eq!((e.status, e.body.code.as_str()), (400, "InvalidResourceId"), "{path}");
                    assert!(e.body.message.contains(why), "{path}: {e}");
                    assert!(
                        e.body.message.contains("where {scope} is nothing (the root), '/', '/subscriptions/{subscriptionId}'"),
                        "{path}: {e}"
                    );
                }
                (got, want) => panic!("{path}: got {got:?}, expected {want:?}"),
            }
        }
        // IDs written out parse back to the same place.
        let scope: Scope = vm.parse().unwrap();
        let parsed = authorization_path(&role_assignment_id(&scope, ASSIGNMENT)).unwrap();
        assert_eq!((parsed.scope, parsed.name.as_deref()), (scope, Some(ASSIGNMENT)));
    }

    #[test]
    fn errors() {
        let e = authorization_failed(
            "alice",
            "0d5e2c1f-1111-2222-3333-444455556666",
            "Microsoft.Authorization/roleAssignments/write",
            &format!("/subscriptions/{SUB}"),
        );
        assert_eq!(e.status, 403);
        assert_eq!(
            serde_json::from_slice::<Value>(&e.to_json()).unwrap(),
            json!({"error": {
                "code": "AuthorizationFailed",
                "message": format!("The client 'alice' with object id '0d5e2c1f-1111-2222-3333-444455556666' does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/write' over scope '/subscriptions/{SUB}' or the scope is invalid. If access was recently granted, please refresh your credentials.")
            }})
        );
        let table: Vec<(ApiError, u16, &str)> = vec![
            (role_assignment_exists(), 409, "RoleAssignmentExists"),
            (role_definition_name_exists("r"), 409, "RoleDefinitionWithSameNameExists"),
            (role_definition_has_assignments(ROLE), 409, "RoleDefinitionHasAssignments"),
            (builtin_role_read_only(ROLE), 409, "BuiltInRoleReadOnly"),
            (role_definition_not_found(ROLE), 404, "RoleDefinitionDoesNotExist"),
            (role_assignment_not_found(ASSIGNMENT), 404, "RoleAssignmentNotFound"),
            (principal_not_found("bob"), 400, "PrincipalNotFound"),
        ];
        for (e, status, code) in table {
            assert_eq!((e.status, e.body.code.as_str()), (status, code));
        }
    }
}
