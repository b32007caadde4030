//! `ajar role list|show|create|update|delete|assign|unassign|assignments|create-requester`:
//! role definitions and role assignments (`Microsoft.Authorization`, api-version 2022-04-01).
//!
//! Scopes: `--scope SCOPE`, or the shorthands `-g RG` (the connection's
//! resource group flag, given explicitly) and `--vm VM`. Without any, reads
//! (list, show, delete, assignments) look at the default subscription, or at
//! the root when there is none; writes that create or remove an assignment
//! need a subscription to default to and never fall back to the root silently
//! (`--scope /` says so explicitly). A role file is written at its first
//! assignable scope, as Azure's CLI does.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use ajar_api::authorization::{RoleAssignmentList, RoleAssignmentOut, RoleDefinitionOut, parse_role_definition_ref};
use ajar_domain::access::Scope;
use ajar_domain::{ResourceGroup, SubscriptionId};

use super::Ctx;
use super::principal::{details, pick, resolve_principal};
use crate::error::UsageError;
use crate::flags::{
    AssignmentRef, Conn, RoleAssignArgs, RoleAssignmentsArgs, RoleCommand, RoleCreateRequesterArgs, RoleFileArgs, RoleListArgs, RoleRef,
    RoleRefArgs, RoleUnassignArgs, ScopeArgs,
};
use crate::output::{self, OutputFormat, Table};
use crate::settings::resolve_vm;

pub async fn run(cmd: RoleCommand) -> anyhow::Result<()> {
    match cmd {
        RoleCommand::List(args) => list(args).await,
        RoleCommand::Show(args) => show(args).await,
        RoleCommand::Create(args) => create(args).await,
        RoleCommand::Update(args) => update(args).await,
        RoleCommand::Delete(args) => delete(args).await,
        RoleCommand::Assign(args) => assign(args).await,
        RoleCommand::Unassign(args) => unassign(args).await,
        RoleCommand::Assignments(args) => assignments(args).await,
        RoleCommand::CreateRequester(args) => create_requester(args).await,
    }
}

// ------------------------------------------------------------------ scopes

/// What a command does when no scope is given and there is no default subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Look at the root: everything the caller may read.
    Root,
    /// Refuse: an assignment's scope is never guessed to be the root.
    Refuse,
}

/// The scope the flags name: `--scope`, else `--vm` (a short name in the
/// resource group of `-g` or the settings), else an explicit `-g`, else the
/// default subscription, else `fallback`.
pub fn resolve_scope(
    args: &ScopeArgs,
    explicit_rg: Option<&ResourceGroup>,
    subscription: Option<&SubscriptionId>,
    default_rg: Option<&ResourceGroup>,
    fallback: Fallback,
) -> Result<Scope, UsageError> {
    if let Some(scope) = &args.scope {
        return Ok(scope.clone());
    }
    if let Some(vm) = &args.vm {
        let id = resolve_vm(vm, subscription, explicit_rg.or(default_rg))?;
        return Ok(Scope::from(&id));
    }
    if let Some(rg) = explicit_rg {
        let sub = subscription.ok_or_else(|| {
            UsageError::new(format!(
                "cannot make a scope of resource group '{rg}': no subscription; pass --subscription GUID, --bootstrap FILE, or --scope"
            ))
        })?;
        return Ok(Scope::resource_group_scope(sub, rg));
    }
    match (subscription, fallback) {
        (Some(sub), _) => Ok(Scope::subscription_scope(sub)),
        (None, Fallback::Root) => Ok(Scope::root()),
        (None, Fallback::Refuse) => Err(UsageError::new(
            "no scope: pass --scope SCOPE (or -g RG, --vm VM), or a default subscription with --subscription GUID or --bootstrap FILE; \
             to act at the root, pass --scope /",
        )),
    }
}

fn scope_for(ctx: &Ctx, args: &ScopeArgs, conn: &Conn, fallback: Fallback) -> Result<Scope, UsageError> {
    let s = &ctx.settings;
    resolve_scope(args, conn.resource_group.as_ref(), s.subscription.as_ref(), s.resource_group.as_ref(), fallback)
}

/// The default scope for a request without scope flags.
fn default_scope(ctx: &Ctx) -> Scope {
    match &ctx.settings.subscription {
        Some(sub) => Scope::subscription_scope(sub),
        None => Scope::root(),
    }
}

// ------------------------------------------------------------------ rendering

fn role_kind(role_type: &str) -> String {
    match role_type {
        "BuiltInRole" => "built-in".to_owned(),
        "CustomRole" => "custom".to_owned(),
        other => other.to_owned(),
    }
}

pub fn is_custom(role: &RoleDefinitionOut) -> bool {
    role.properties.role_type == "CustomRole"
}

pub fn role_table(roles: &[RoleDefinitionOut]) -> Table {
    let mut table = Table::new(&["NAME", "TYPE", "ID", "ASSIGNABLE AT"]);
    for r in roles {
        table.row(vec![
            r.properties.role_name.clone(),
            role_kind(&r.properties.role_type),
            r.name.clone(),
            r.properties.assignable_scopes.join(", "),
        ]);
    }
    table
}

fn patterns(list: &[String]) -> String {
    if list.is_empty() { "-".to_owned() } else { list.join(", ") }
}

pub fn role_text(r: &RoleDefinitionOut) -> String {
    let p = &r.properties;
    let actions: Vec<String> = p.permissions.iter().flat_map(|b| b.actions.clone()).collect();
    let not_actions: Vec<String> = p.permissions.iter().flat_map(|b| b.not_actions.clone()).collect();
    let mut rows = vec![
        ("Name", p.role_name.clone()),
        ("ID", r.name.clone()),
        ("Type", role_kind(&p.role_type)),
        ("Description", output::or_dash(Some(&p.description))),
        ("Actions", patterns(&actions)),
        ("Not actions", patterns(&not_actions)),
        ("Assignable at", patterns(&p.assignable_scopes)),
    ];
    if let Some(t) = &p.created_on {
        rows.push(("Created", output::human_time(t)));
    }
    if let Some(t) = &p.updated_on {
        rows.push(("Updated", output::human_time(t)));
    }
    details(&rows)
}

/// The GUID of an assignment's role, from its `roleDefinitionId`.
pub fn assignment_role_guid(a: &RoleAssignmentOut) -> String {
    parse_role_definition_ref(&a.properties.role_definition_id)
        .map(|(_, guid)| guid)
        .unwrap_or_else(|_| a.properties.role_definition_id.clone())
}

/// Assignments with principal and role names where known (IDs otherwise).
pub fn assignment_table(list: &[RoleAssignmentOut], principals: &HashMap<String, String>, roles: &HashMap<String, String>) -> Table {
    let mut table = Table::new(&["ID", "PRINCIPAL", "TYPE", "ROLE", "SCOPE"]);
    for a in list {
        let p = &a.properties;
        let guid = assignment_role_guid(a);
        table.row(vec![
            a.name.clone(),
            principals.get(&p.principal_id).cloned().unwrap_or_else(|| p.principal_id.clone()),
            p.principal_type.clone(),
            roles.get(&guid).cloned().unwrap_or(guid),
            p.scope.clone(),
        ]);
    }
    table
}

// ------------------------------------------------------------------ role files

/// What a role file says about where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleFile {
    /// The file as written; sent to the server unchanged.
    pub body: Value,
    /// The role's GUID, from `Id` (role file) or `name`/`id` (ARM shape).
    pub id: Option<String>,
    /// The role's name, from `Name` or `properties.roleName`.
    pub name: Option<String>,
    /// Its first assignable scope: where Azure's CLI writes a role.
    pub scope: Option<Scope>,
}

/// A key of a role file in Azure's PascalCase or in camelCase.
fn key<'a>(obj: &'a serde_json::Map<String, Value>, pascal: &str) -> Option<(&'a Value, String)> {
    let camel = format!("{}{}", pascal[..1].to_ascii_lowercase(), &pascal[1..]);
    obj.get(pascal).map(|v| (v, pascal.to_owned())).or_else(|| obj.get(&camel).map(|v| (v, camel)))
}

fn text_field(value: Option<(&Value, String)>) -> Result<Option<(String, String)>, String> {
    match value {
        None | Some((Value::Null, _)) => Ok(None),
        Some((Value::String(s), k)) => Ok(Some((s.clone(), k))),
        Some((_, k)) => Err(format!("{k} must be a string")),
    }
}

/// Reads a role file: a JSON object in Azure CLI's shape (`Name`, `Id`,
/// `Actions`, `AssignableScopes`, ...) or ARM's (`properties.roleName`, ...).
/// Only what the CLI needs is checked here; the server validates the rest.
pub fn parse_role_file(bytes: &[u8]) -> Result<RoleFile, String> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| format!("it is not JSON: {e}"))?;
    let Some(obj) = body.as_object() else {
        return Err("it must hold one JSON object, a role definition".to_owned());
    };
    let (id, name, scopes) = if let Some(props) = obj.get("properties") {
        let Some(props) = props.as_object() else {
            return Err("properties must be an object".to_owned());
        };
        let id = match text_field(obj.get("name").map(|v| (v, "name".to_owned())))? {
            Some(n) => Some(n),
            None => text_field(obj.get("id").map(|v| (v, "id".to_owned())))?,
        };
        let name = text_field(props.get("roleName").map(|v| (v, "properties.roleName".to_owned())))?;
        (id, name, props.get("assignableScopes").map(|v| (v, "properties.assignableScopes".to_owned())))
    } else {
        (text_field(key(obj, "Id"))?, text_field(key(obj, "Name"))?, key(obj, "AssignableScopes"))
    };
    let id = match id {
        Some((s, k)) => Some(parse_role_definition_ref(s.trim()).map(|(_, guid)| guid).map_err(|e| format!("{k}: {e}"))?),
        None => None,
    };
    let scope = match scopes {
        None | Some((Value::Null, _)) => None,
        Some((Value::Array(list), k)) => match list.first() {
            None => None,
            Some(Value::String(s)) => Some(s.parse::<Scope>().map_err(|e| format!("{k}[0]: {e}"))?),
            Some(_) => return Err(format!("{k} must be a list of scope strings")),
        },
        Some((_, k)) => return Err(format!("{k} must be a list of scope strings")),
    };
    Ok(RoleFile { body, id, name: name.map(|(n, _)| n), scope })
}

fn read_role_file(path: &Path) -> anyhow::Result<RoleFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the role file {}", path.display()))?;
    Ok(parse_role_file(&bytes).map_err(|e| UsageError::new(format!("the role file {} is not a role definition: {e}", path.display())))?)
}

// ------------------------------------------------------------------ lookups

/// The role a name or GUID stands for at `scope`.
async fn resolve_role(ctx: &Ctx, scope: &Scope, role: &RoleRef) -> anyhow::Result<RoleDefinitionOut> {
    match role {
        RoleRef::Id(guid) => match ctx.client.find_role_definition(scope, guid).await? {
            Some(r) => Ok(r),
            None => anyhow::bail!("no role definition has ID {guid} (looked at {scope})"),
        },
        RoleRef::Name(name) => {
            find_role_by_name(ctx, scope, name).await?.ok_or_else(|| anyhow::anyhow!("no role is named '{name}' at {scope}"))
        }
    }
}

async fn find_role_by_name(ctx: &Ctx, scope: &Scope, name: &str) -> anyhow::Result<Option<RoleDefinitionOut>> {
    let list = ctx.client.list_role_definitions(scope, Some(name)).await?;
    // The server filters; the names are checked again here all the same.
    let named: Vec<RoleDefinitionOut> =
        list.value.into_iter().filter(|r| r.properties.role_name.to_lowercase() == name.to_lowercase()).collect();
    if named.is_empty() {
        return Ok(None);
    }
    Ok(Some(pick(&named, name, "role", |r| &r.name, |r| &r.properties.role_name)?.clone()))
}

/// Principal ID → name, for showing assignments; empty if the list cannot be read.
async fn principal_names(ctx: &Ctx) -> HashMap<String, String> {
    match ctx.client.list_principals().await {
        Ok(list) => list.value.into_iter().map(|p| (p.id, p.name)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the principals; showing IDs");
            HashMap::new()
        }
    }
}

/// Role GUID → name at `scope`; empty if the list cannot be read.
async fn role_names(ctx: &Ctx, scope: &Scope) -> HashMap<String, String> {
    match ctx.client.list_role_definitions(scope, None).await {
        Ok(list) => list.value.into_iter().map(|r| (r.name.to_ascii_lowercase(), r.properties.role_name)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the role definitions; showing IDs");
            HashMap::new()
        }
    }
}

// ------------------------------------------------------------------ role definitions

async fn list(args: RoleListArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let scope = scope_for(&ctx, &args.scope, &args.conn, Fallback::Root)?;
    let mut list = ctx.client.list_role_definitions(&scope, None).await?;
    if args.custom {
        list.value.retain(is_custom);
    }
    match ctx.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Table => role_table(&list.value).print_or(if args.custom { "No custom roles." } else { "No roles." }),
    }
}

async fn show(args: RoleRefArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let scope = scope_for(&ctx, &args.scope, &args.conn, Fallback::Root)?;
    let role = resolve_role(&ctx, &scope, &args.role).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&role),
        OutputFormat::Table => output::emit(role_text(&role).as_bytes()),
    }
}

fn print_written(ctx: &Ctx, role: &RoleDefinitionOut, created: bool) -> anyhow::Result<()> {
    match ctx.output {
        OutputFormat::Json => output::json(role),
        OutputFormat::Table => output::line(&format!(
            "{} custom role '{}' (ID {}), assignable at {}.",
            if created { "Created" } else { "Updated" },
            role.properties.role_name,
            role.name,
            patterns(&role.properties.assignable_scopes)
        )),
    }
}

async fn create(args: RoleFileArgs) -> anyhow::Result<()> {
    let file = read_role_file(&args.file)?;
    let ctx = Ctx::new(&args.conn)?;
    let scope = file.scope.clone().unwrap_or_else(|| default_scope(&ctx));
    let guid = match &file.id {
        Some(guid) => {
            if let Some(existing) = ctx.client.find_role_definition(&scope, guid).await? {
                anyhow::bail!(
                    "role {guid} ('{}') already exists; change it with `ajar role update --file {}`",
                    existing.properties.role_name,
                    args.file.display()
                );
            }
            guid.clone()
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let (role, created) = ctx.client.put_role_definition(&scope, &guid, &file.body).await?;
    print_written(&ctx, &role, created)
}

async fn update(args: RoleFileArgs) -> anyhow::Result<()> {
    let file = read_role_file(&args.file)?;
    let (id, name) = (file.id.clone(), file.name.clone());
    if id.is_none() && name.is_none() {
        return Err(UsageError::new(format!(
            "the role file {} names no role; give the role's Id (or Name) to update",
            args.file.display()
        ))
        .into());
    }
    let ctx = Ctx::new(&args.conn)?;
    let scope = file.scope.clone().unwrap_or_else(|| default_scope(&ctx));
    let existing = match (&id, &name) {
        (Some(guid), _) => ctx.client.find_role_definition(&scope, guid).await?.ok_or_else(|| {
            anyhow::anyhow!("no role definition has ID {guid}; create it with `ajar role create --file {}`", args.file.display())
        })?,
        (None, Some(name)) => find_role_by_name(&ctx, &scope, name).await?.ok_or_else(|| {
            anyhow::anyhow!("no role is named '{name}' at {scope}; create it with `ajar role create --file {}`", args.file.display())
        })?,
        (None, None) => anyhow::bail!("the role file names no role"),
    };
    let (role, created) = ctx.client.put_role_definition(&scope, &existing.name, &file.body).await?;
    print_written(&ctx, &role, created)
}

async fn delete(args: RoleRefArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let scope = scope_for(&ctx, &args.scope, &args.conn, Fallback::Root)?;
    let guid = match &args.role {
        RoleRef::Id(guid) => guid.clone(),
        RoleRef::Name(name) => {
            find_role_by_name(&ctx, &scope, name).await?.ok_or_else(|| anyhow::anyhow!("no role is named '{name}' at {scope}"))?.name
        }
    };
    let deleted = ctx.client.delete_role_definition(&scope, &guid).await?;
    match (ctx.output, deleted) {
        (OutputFormat::Json, Some(role)) => output::json(&role),
        (OutputFormat::Json, None) => output::json(&serde_json::json!({ "name": guid, "deleted": false })),
        (OutputFormat::Table, Some(role)) => {
            output::line(&format!("Deleted custom role '{}' (ID {}).", role.properties.role_name, role.name))
        }
        (OutputFormat::Table, None) => output::line(&format!("Role {guid} did not exist; nothing to delete.")),
    }
}

async fn create_requester(args: RoleCreateRequesterArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let role = ctx.client.create_requester_role(args.name.as_deref(), args.api_only, args.scope.as_ref()).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&role),
        OutputFormat::Table => {
            print_written(&ctx, &role, true)?;
            output::line(&format!("Assign it with: ajar role assign --principal NAME --role '{}'", role.properties.role_name))
        }
    }
}

// ------------------------------------------------------------------ role assignments

async fn assign(args: RoleAssignArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let scope = scope_for(&ctx, &args.scope, &args.conn, Fallback::Refuse)?;
    let principal = resolve_principal(&ctx, &args.principal).await?;
    let role = resolve_role(&ctx, &scope, &args.role).await?;
    let name = uuid::Uuid::new_v4().to_string();
    let assignment = ctx.client.create_role_assignment(&scope, &name, &role.name, &principal.id).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&assignment),
        OutputFormat::Table => output::line(&format!(
            "Assigned role '{}' to {} '{}' at {} (assignment {}).",
            role.properties.role_name, principal.kind, principal.name, assignment.properties.scope, assignment.name
        )),
    }
}

/// The assignments of `role_guid` held exactly at `scope`.
pub fn matching_assignments<'a>(list: &'a [RoleAssignmentOut], role_guid: &str, scope: &Scope) -> Vec<&'a RoleAssignmentOut> {
    list.iter()
        .filter(|a| assignment_role_guid(a).eq_ignore_ascii_case(role_guid))
        .filter(|a| a.properties.scope.parse::<Scope>().is_ok_and(|s| &s == scope))
        .collect()
}

async fn unassign(args: RoleUnassignArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let scope_given = args.scope.scope.is_some() || args.scope.vm.is_some() || args.conn.resource_group.is_some();
    // The scope and name of each assignment to remove.
    let mut targets: Vec<(Scope, String)> = Vec::new();
    match (&args.assignment, &args.principal, &args.role) {
        (Some(AssignmentRef::Id { scope, name }), _, _) => {
            if scope_given {
                return Err(UsageError::new("a full assignment ID already names its scope; leave out --scope, --vm and -g").into());
            }
            targets.push((scope.clone(), name.clone()));
        }
        (Some(AssignmentRef::Name(name)), _, _) => {
            let scope = scope_for(&ctx, &args.scope, &args.conn, Fallback::Root)?;
            let list = ctx.client.list_role_assignments(&scope, None).await?;
            let found = list
                .value
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| anyhow::anyhow!("no role assignment {name} at, above or below {scope}; pass its full ID or --scope"))?;
            let at: Scope =
                found.properties.scope.parse().map_err(|e| anyhow::anyhow!("the server gave assignment {name} a bad scope: {e}"))?;
            targets.push((at, found.name.clone()));
        }
        (None, Some(principal), Some(role)) => {
            let scope = scope_for(&ctx, &args.scope, &args.conn, Fallback::Refuse)?;
            let principal = resolve_principal(&ctx, principal).await?;
            let role = resolve_role(&ctx, &scope, role).await?;
            let list = ctx.client.list_role_assignments(&scope, Some(&principal.id)).await?;
            let held: Vec<&RoleAssignmentOut> = matching_assignments(&list.value, &role.name, &scope)
                .into_iter()
                .filter(|a| a.properties.principal_id == principal.id)
                .collect();
            if held.is_empty() {
                anyhow::bail!(
                    "{} '{}' has no assignment of role '{}' at {scope}",
                    principal.kind,
                    principal.name,
                    role.properties.role_name
                );
            }
            targets.extend(held.into_iter().map(|a| (scope.clone(), a.name.clone())));
        }
        _ => return Err(UsageError::new("give an assignment ID, or --principal and --role").into()),
    }
    let mut deleted = Vec::new();
    let mut lines = Vec::new();
    for (scope, name) in &targets {
        match ctx.client.delete_role_assignment(scope, name).await? {
            Some(a) => {
                lines.push(format!("Removed role assignment {name} at {scope}."));
                deleted.push(a);
            }
            None => lines.push(format!("Role assignment {name} at {scope} did not exist; nothing to remove.")),
        }
    }
    match ctx.output {
        OutputFormat::Json => output::json(&RoleAssignmentList { value: deleted, next_link: None }),
        OutputFormat::Table => lines.iter().try_for_each(|l| output::line(l)),
    }
}

async fn assignments(args: RoleAssignmentsArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let scope = scope_for(&ctx, &args.scope, &args.conn, Fallback::Root)?;
    let principal = match &args.principal {
        Some(p) => Some(resolve_principal(&ctx, p).await?),
        None => None,
    };
    let list = ctx.client.list_role_assignments(&scope, principal.as_ref().map(|p| p.id.as_str())).await?;
    if ctx.output == OutputFormat::Json {
        return output::json(&list);
    }
    let principals = match &principal {
        Some(p) => HashMap::from([(p.id.clone(), p.name.clone())]),
        None => principal_names(&ctx).await,
    };
    let roles = role_names(&ctx, &scope).await;
    assignment_table(&list.value, &principals, &roles).print_or(&format!("No role assignments at, above or below {scope}."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ajar_api::authorization::{Permission, RoleAssignmentProperties, RoleDefinitionProperties};
    use clap::Parser;
    use serde_json::json;

    use crate::flags::{Cli, Command};

    const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
    const ROLE: &str = "0f4b5b0e-9b0e-4a57-9d6b-0f0c7a1f2b3c";
    const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    const ASSIGNMENT: &str = "b7c6f0a2-1d3e-4f5a-8b9c-0d1e2f3a4b5c";

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ajar").chain(args.iter().copied()))
    }

    fn role_cmd(args: &[&str]) -> RoleCommand {
        let Command::Role(cmd) = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).command else { panic!() };
        cmd
    }

    fn scope_of(args: &[&str], sub: Option<&str>, rg: Option<&str>, fallback: Fallback) -> Result<String, String> {
        let RoleCommand::Assignments(a) = role_cmd(args) else { panic!() };
        let sub: Option<SubscriptionId> = sub.map(|s| s.parse().unwrap());
        let rg: Option<ResourceGroup> = rg.map(|s| s.parse().unwrap());
        // The settings' resource group is the flag's, else the bootstrap file's.
        let default_rg = a.conn.resource_group.clone().or(rg);
        resolve_scope(&a.scope, a.conn.resource_group.as_ref(), sub.as_ref(), default_rg.as_ref(), fallback)
            .map(|s| s.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn scopes_and_shorthands() {
        let sub = format!("/subscriptions/{SUB}");
        let a = &["role", "assignments"];
        let with = |extra: &[&'static str]| -> Vec<&'static str> { a.iter().copied().chain(extra.iter().copied()).collect() };
        // Defaults: the subscription, else the root for reads, else refused.
        assert_eq!(scope_of(a, Some(SUB), Some("filerg"), Fallback::Refuse), Ok(sub.clone()));
        assert_eq!(scope_of(a, None, None, Fallback::Root), Ok("/".to_owned()));
        assert!(scope_of(a, None, None, Fallback::Refuse).unwrap_err().contains("--scope /"));
        // --scope as given, the root included.
        assert_eq!(scope_of(&with(&["--scope", "/"]), Some(SUB), None, Fallback::Refuse), Ok("/".to_owned()));
        let rg_scope = format!("{sub}/resourceGroups/rg1");
        let v: Vec<&str> = a.iter().copied().chain(["--scope", rg_scope.as_str()]).collect();
        assert_eq!(scope_of(&v, None, None, Fallback::Refuse), Ok(rg_scope.clone()));
        // -g given on the command line is a shorthand; the bootstrap file's resource group is not.
        assert_eq!(scope_of(&with(&["-g", "rg1"]), Some(SUB), Some("filerg"), Fallback::Refuse), Ok(rg_scope.clone()));
        assert!(scope_of(&with(&["-g", "rg1"]), None, None, Fallback::Root).unwrap_err().contains("no subscription"));
        // --vm: a short name in -g's resource group, else the default one.
        assert_eq!(
            scope_of(&with(&["--vm", "web1"]), Some(SUB), Some("filerg"), Fallback::Refuse),
            Ok(format!("{sub}/resourceGroups/filerg/providers/Microsoft.Compute/virtualMachines/web1"))
        );
        assert_eq!(
            scope_of(&with(&["--vm", "web1", "-g", "rg1"]), Some(SUB), Some("filerg"), Fallback::Refuse),
            Ok(format!("{rg_scope}/providers/Microsoft.Compute/virtualMachines/web1"))
        );
        assert!(scope_of(&with(&["--vm", "web1"]), Some(SUB), None, Fallback::Refuse).unwrap_err().contains("no resource group"));
        // Bad scopes and conflicting shorthands are usage errors before any request.
        for bad in [
            &["role", "assignments", "--scope", "subscriptions/x"][..],
            &["role", "assignments", "--scope", "/subscriptions/nope"],
            &["role", "assignments", "--scope", "/", "--vm", "web1"],
            &["role", "assignments", "--scope", "/", "-g", "rg1"],
            &["role", "assignments", "--vm", "web 1"],
            &["role", "list", "--scope", "/subscriptions/x/resourceGroups"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn role_flags() {
        let RoleCommand::Show(s) = role_cmd(&["role", "show", "Reader"]) else { panic!() };
        assert_eq!(s.role, RoleRef::Name("Reader".into()));
        let RoleCommand::Show(s) = role_cmd(&["role", "show", &READER.to_uppercase()]) else { panic!() };
        assert_eq!(s.role, RoleRef::Id(READER.into()));
        let full = format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{READER}");
        let RoleCommand::Delete(d) = role_cmd(&["role", "delete", &full]) else { panic!() };
        assert_eq!(d.role, RoleRef::Id(READER.into()));
        let RoleCommand::Assign(a) = role_cmd(&["role", "assign", "--principal", "alice", "--role", "JIT Network Access Requester"]) else {
            panic!()
        };
        assert_eq!((a.principal.as_str(), a.role), ("alice", RoleRef::Name("JIT Network Access Requester".into())));
        let RoleCommand::Unassign(u) = role_cmd(&["role", "unassign", ASSIGNMENT]) else { panic!() };
        assert_eq!(u.assignment, Some(AssignmentRef::Name(ASSIGNMENT.into())));
        let id = format!("/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Authorization/roleAssignments/{ASSIGNMENT}");
        let RoleCommand::Unassign(u) = role_cmd(&["role", "unassign", &id]) else { panic!() };
        assert_eq!(
            u.assignment,
            Some(AssignmentRef::Id { scope: format!("/subscriptions/{SUB}/resourceGroups/rg1").parse().unwrap(), name: ASSIGNMENT.into() })
        );
        assert!(matches!(role_cmd(&["role", "unassign", "--principal", "a", "--role", "Reader"]), RoleCommand::Unassign(_)));
        let RoleCommand::CreateRequester(c) = role_cmd(&["role", "create-requester", "--api-only", "--scope", "/"]) else { panic!() };
        assert!(c.api_only && c.scope == Some(Scope::root()) && c.name.is_none());
        for bad in [
            &["role", "assign", "--principal", "alice"][..],
            &["role", "assign", "--role", "Reader"],
            &["role", "assign", "--principal", "alice", "--role", ""],
            &["role", "unassign"],
            &["role", "unassign", "--principal", "alice"],
            &["role", "unassign", "--role", "Reader"],
            &["role", "unassign", ASSIGNMENT, "--principal", "alice", "--role", "Reader"],
            &["role", "unassign", "not-a-guid"],
            &["role", "unassign", "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"],
            &["role", "show", "/providers/Microsoft.Authorization/roleDefinitions/reader"],
            &["role", "create"],
            &["role", "create-requester", "--scope", "nope"],
            &["role", "list", "--output", "yaml"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn role_files() {
        let scope = format!("/subscriptions/{SUB}");
        // Azure CLI's shape, without an Id.
        let f = parse_role_file(json!({"Name": "Ops", "Actions": ["*/read"], "AssignableScopes": [scope]}).to_string().as_bytes()).unwrap();
        assert_eq!((f.id, f.name.as_deref(), f.scope.map(|s| s.to_string())), (None, Some("Ops"), Some(scope.clone())));
        // camelCase keys, an Id as a full role definition ID.
        let f = parse_role_file(
            json!({"name": "Ops", "id": format!("/providers/Microsoft.Authorization/roleDefinitions/{}", ROLE.to_uppercase())})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!((f.id.as_deref(), f.scope), (Some(ROLE), None));
        // ARM's shape: the GUID in name (or id), the name in properties.roleName.
        let arm = json!({"name": ROLE, "properties": {"roleName": "Ops", "assignableScopes": ["/"]}});
        let f = parse_role_file(arm.to_string().as_bytes()).unwrap();
        assert_eq!((f.id.as_deref(), f.name.as_deref(), f.scope), (Some(ROLE), Some("Ops"), Some(Scope::root())));
        assert_eq!(f.body, arm, "sent unchanged");
        let f = parse_role_file(
            json!({"id": format!("{scope}/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"), "properties": {"roleName": "Ops"}})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(f.id.as_deref(), Some(ROLE));
        let bad = |v: &str, why: &str| {
            let e = parse_role_file(v.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        };
        bad("{", "not JSON");
        bad("[]", "one JSON object");
        bad(r#"{"Name": "x", "Id": "reader"}"#, "Id: 'reader' is not a role definition ID");
        bad(r#"{"Name": 3}"#, "Name must be a string");
        bad(r#"{"Name": "x", "AssignableScopes": "/"}"#, "AssignableScopes must be a list");
        bad(r#"{"Name": "x", "AssignableScopes": ["subscriptions/x"]}"#, "AssignableScopes[0]: scope 'subscriptions/x' is invalid");
        bad(r#"{"properties": []}"#, "properties must be an object");
        bad(r#"{"name": "ops", "properties": {"roleName": "x"}}"#, "name: 'ops' is not a role definition ID");
    }

    fn role(guid: &str, name: &str, kind: &str, scopes: &[&str]) -> RoleDefinitionOut {
        RoleDefinitionOut {
            id: format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
            name: guid.into(),
            resource_type: "Microsoft.Authorization/roleDefinitions".into(),
            properties: RoleDefinitionProperties {
                role_name: name.into(),
                description: String::new(),
                role_type: kind.into(),
                permissions: vec![Permission {
                    actions: vec!["*/read".into()],
                    not_actions: vec![],
                    data_actions: vec![],
                    not_data_actions: vec![],
                }],
                assignable_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                created_on: None,
                updated_on: Some("2026-03-01T12:00:00.0000000Z".into()),
            },
        }
    }

    fn assignment(name: &str, principal: &str, role_guid: &str, scope: &str) -> RoleAssignmentOut {
        RoleAssignmentOut {
            id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            name: name.into(),
            resource_type: "Microsoft.Authorization/roleAssignments".into(),
            properties: RoleAssignmentProperties {
                role_definition_id: format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"),
                principal_id: principal.into(),
                principal_type: "User".into(),
                scope: scope.into(),
                created_on: None,
                created_by: None,
            },
        }
    }

    #[test]
    fn tables() {
        let sub = format!("/subscriptions/{SUB}");
        let roles = [role(READER, "Reader", "BuiltInRole", &["/"]), role(ROLE, "Ops", "CustomRole", &[&sub, "/"])];
        assert_eq!(
            role_table(&roles).render(),
            format!(
                "NAME    TYPE      ID                                    ASSIGNABLE AT\n\
                 Reader  built-in  {READER}  /\n\
                 Ops     custom    {ROLE}  {sub}, /\n"
            )
        );
        assert!(is_custom(&roles[1]) && !is_custom(&roles[0]));
        assert_eq!(
            role_text(&roles[1]),
            format!(
                "Name:          Ops\nID:            {ROLE}\nType:          custom\nDescription:   -\nActions:       */read\n\
                 Not actions:   -\nAssignable at: {sub}, /\nUpdated:       2026-03-01 12:00:00Z\n"
            )
        );
        let list = [assignment(ASSIGNMENT, "p-1", READER, &sub), assignment("a2", "p-9", ROLE, "/")];
        let principals = HashMap::from([("p-1".to_owned(), "alice".to_owned())]);
        let names = HashMap::from([(READER.to_owned(), "Reader".to_owned())]);
        assert_eq!(
            assignment_table(&list, &principals, &names).render(),
            format!(
                "ID                                    PRINCIPAL  TYPE  ROLE                                  SCOPE\n\
                 {ASSIGNMENT}  alice      User  Reader                                {sub}\n\
                 a2                                    p-9        User  {ROLE}  /\n"
            )
        );
    }

    #[test]
    fn finds_assignments_to_remove() {
        let sub = format!("/subscriptions/{SUB}");
        let rg = format!("{sub}/resourceGroups/rg1");
        let list = [
            assignment("a1", "p-1", READER, &sub),
            assignment("a2", "p-1", READER, &rg),
            assignment("a3", "p-1", ROLE, &sub),
            assignment("a4", "p-1", READER, &sub.to_uppercase().replace("SUBSCRIPTIONS", "subscriptions")),
        ];
        let at_sub: Scope = sub.parse().unwrap();
        let found: Vec<&str> = matching_assignments(&list, &READER.to_uppercase(), &at_sub).iter().map(|a| a.name.as_str()).collect();
        assert_eq!(found, ["a1", "a4"], "exactly at the scope (case-insensitively), that role only");
        assert_eq!(assignment_role_guid(&list[2]), ROLE);
    }
}
