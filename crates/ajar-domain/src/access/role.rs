//! Role definitions: named sets of action patterns, as Azure's
//! `Microsoft.Authorization/roleDefinitions`.
//!
//! Azure's JSON nests the patterns in `properties.permissions[]`; ajar keeps one
//! permission block, so every validation target says `permissions[0]`.

use crate::access::action::{ActionPattern, CATALOG, catalog_actions};
use crate::access::builtin::builtin_roles;
use crate::access::scope::Scope;
use crate::ids::arm_key;
use crate::problem::{ErrorCode, Field, Problem, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleKind {
    BuiltIn,
    Custom,
}

impl RoleKind {
    /// Azure's `properties.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::BuiltIn => "BuiltInRole",
            RoleKind::Custom => "CustomRole",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    /// A GUID, the role definition's resource name.
    pub id: String,
    pub name: String,
    pub description: String,
    pub kind: RoleKind,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    /// Where the role may be assigned. An assignment outside them grants nothing.
    pub assignable_scopes: Vec<Scope>,
}

/// Azure's limit on `properties.roleName`.
pub const MAX_ROLE_NAME: usize = 128;

impl RoleDefinition {
    /// A custom role, refused unless [`validate_custom_role`] accepts it.
    pub fn custom(
        id: String,
        name: String,
        description: String,
        actions: Vec<String>,
        not_actions: Vec<String>,
        assignable_scopes: Vec<Scope>,
    ) -> Result<RoleDefinition, Problem> {
        let role = RoleDefinition { id, name, description, kind: RoleKind::Custom, actions, not_actions, assignable_scopes };
        validate_custom_role(&role)?;
        Ok(role)
    }

    /// True if the role may be assigned at `scope`.
    pub fn assignable_at(&self, scope: &Scope) -> bool {
        self.assignable_scopes.iter().any(|s| s.contains(scope))
    }

    pub fn compile(&self) -> CompiledRole {
        CompiledRole::new(self)
    }
}

/// A role's one permission block.
pub fn permissions_target() -> Target {
    Target::of(Field::Properties).field(Field::Permissions).at(0)
}

pub fn action_target(i: usize) -> Target {
    permissions_target().field(Field::Actions).at(i)
}

pub fn not_action_target(i: usize) -> Target {
    permissions_target().field(Field::NotActions).at(i)
}

/// Checks that a GUID has the 8-4-4-4-12 hex shape.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Checks the rules a custom role must meet on its own. Every pattern must
/// match some catalog action, so a typo is refused instead of silently
/// granting nothing (in `actions`) or denying nothing (in `notActions`).
pub fn validate_custom_role(role: &RoleDefinition) -> Result<(), Problem> {
    let invalid = |target: Target, msg: String| Problem::at(ErrorCode::InvalidRoleDefinition, target, msg);
    let properties = |field: Field| Target::of(Field::Properties).field(field);
    if role.kind != RoleKind::Custom {
        return Err(invalid(properties(Field::Type), format!("only a {} can be created or changed", RoleKind::Custom.as_str())));
    }
    if !is_guid(&role.id) {
        return Err(invalid(Target::of(Field::Name), format!("role definition ID '{}' must be a GUID such as {}", role.id, EXAMPLE_GUID)));
    }
    let builtins = builtin_roles();
    if builtins.iter().any(|b| b.id.eq_ignore_ascii_case(&role.id)) {
        return Err(invalid(Target::of(Field::Name), format!("role definition ID '{}' is a built-in role's", role.id)));
    }
    let name = role.name.trim();
    if name.is_empty() {
        return Err(invalid(properties(Field::RoleName), "a role needs a name".into()));
    }
    let len = role.name.chars().count();
    if len > MAX_ROLE_NAME {
        return Err(invalid(
            properties(Field::RoleName),
            format!("the name is {len} characters long; at most {MAX_ROLE_NAME} are allowed"),
        ));
    }
    if let Some(b) = builtins.iter().find(|b| arm_key(&b.name) == arm_key(name)) {
        return Err(invalid(properties(Field::RoleName), format!("'{}' is the name of a built-in role; choose another", b.name)));
    }
    if role.actions.is_empty() {
        return Err(invalid(permissions_target().field(Field::Actions), "a role needs at least one action".into()));
    }
    for (i, pattern) in role.actions.iter().enumerate() {
        check_pattern(pattern).map_err(|msg| invalid(action_target(i), msg))?;
    }
    for (i, pattern) in role.not_actions.iter().enumerate() {
        check_pattern(pattern).map_err(|msg| invalid(not_action_target(i), msg))?;
    }
    if role.assignable_scopes.is_empty() {
        return Err(invalid(properties(Field::AssignableScopes), "a role needs at least one assignable scope, such as '/'".into()));
    }
    Ok(())
}

const EXAMPLE_GUID: &str = "3daf09fb-cea9-4548-957a-9955c9ee6410";

fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an action pattern must not be empty".into());
    }
    if let Some(bad) = pattern.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '*' | '-' | '_'))) {
        return Err(format!(
            "'{pattern}': '{}' is not allowed; use letters, digits, '.', '/', '-', '_' and '*' as the only wildcard",
            bad.escape_default()
        ));
    }
    let compiled = ActionPattern::new(pattern);
    if catalog_actions().any(|action| compiled.matches(action)) {
        return Ok(());
    }
    let mut msg = format!("'{pattern}' matches no action ajar knows");
    if let Some(near) = nearest_catalog_action(pattern) {
        msg.push_str(&format!("; did you mean '{near}'?"));
    }
    Err(msg)
}

/// The catalog action closest to a mistyped literal pattern, if one is close.
fn nearest_catalog_action(pattern: &str) -> Option<&'static str> {
    let lower = pattern.to_ascii_lowercase();
    CATALOG
        .iter()
        .map(|(action, _)| (edit_distance(&lower, &action.to_ascii_lowercase()), *action))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, action)| action)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A role with its patterns compiled, ready to answer many checks.
#[derive(Debug, Clone)]
pub struct CompiledRole {
    pub id: String,
    pub name: String,
    actions: Vec<ActionPattern>,
    not_actions: Vec<ActionPattern>,
    assignable_scopes: Vec<Scope>,
}

impl CompiledRole {
    pub fn new(role: &RoleDefinition) -> CompiledRole {
        CompiledRole {
            id: role.id.clone(),
            name: role.name.clone(),
            actions: role.actions.iter().map(|p| ActionPattern::new(p)).collect(),
            not_actions: role.not_actions.iter().map(|p| ActionPattern::new(p)).collect(),
            assignable_scopes: role.assignable_scopes.clone(),
        }
    }

    /// Some action pattern matches and no notAction pattern does.
    pub fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|p| p.matches(action)) && !self.not_actions.iter().any(|p| p.matches(action))
    }

    pub fn assignable_at(&self, scope: &Scope) -> bool {
        self.assignable_scopes.iter().any(|s| s.contains(scope))
    }

    /// The catalog actions the role allows.
    pub fn catalog_allowed(&self) -> impl Iterator<Item = &'static str> + '_ {
        catalog_actions().filter(|action| self.allows(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::actions as a;

    fn role(name: &str, actions: &[&str], not_actions: &[&str]) -> RoleDefinition {
        RoleDefinition {
            id: EXAMPLE_GUID.into(),
            name: name.into(),
            description: String::new(),
            kind: RoleKind::Custom,
            actions: actions.iter().map(|s| s.to_string()).collect(),
            not_actions: not_actions.iter().map(|s| s.to_string()).collect(),
            assignable_scopes: vec![Scope::root()],
        }
    }

    fn check(role: RoleDefinition, expected: Result<(), (&str, &str)>) {
        match (validate_custom_role(&role), expected) {
            (Ok(()), Ok(())) => {}
            (Err(p), Err((target, msg))) => {
                assert_eq!(p.code, ErrorCode::InvalidRoleDefinition, "{p}");
                assert_eq!(p.target.as_ref().map(ToString::to_string).as_deref(), Some(target), "{p}");
                assert!(p.message.contains(msg), "{p}");
            }
            (got, want) => panic!("{role:?}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn custom_role_validation() {
        let ok = || role("JIT operator", &[a::JIT_READ, "Microsoft.Network/*/read", "*/read"], &["Ajar/principals/*"]);
        check(ok(), Ok(()));
        let table: Vec<(RoleDefinition, (&str, &str))> = vec![
            (RoleDefinition { kind: RoleKind::BuiltIn, ..ok() }, ("Properties.Type", "only a CustomRole")),
            (RoleDefinition { id: "not-a-guid".into(), ..ok() }, ("Name", "must be a GUID")),
            (RoleDefinition { id: "8E3AF657-A8FF-443C-A75C-2FE8C4BCB635".into(), ..ok() }, ("Name", "built-in role's")),
            (RoleDefinition { name: "  ".into(), ..ok() }, ("Properties.RoleName", "needs a name")),
            (RoleDefinition { name: "x".repeat(129), ..ok() }, ("Properties.RoleName", "129 characters")),
            (RoleDefinition { name: "reader".into(), ..ok() }, ("Properties.RoleName", "'Reader' is the name of a built-in role")),
            (role("r", &[], &[]), ("Properties.Permissions[0].Actions", "at least one action")),
            (role("r", &[a::JIT_READ, ""], &[]), ("Properties.Permissions[0].Actions[1]", "must not be empty")),
            (role("r", &["Microsoft.Security/*/read "], &[]), ("Properties.Permissions[0].Actions[0]", "' ' is not allowed")),
            (role("r", &["Microsoft.Security/?/read"], &[]), ("Properties.Permissions[0].Actions[0]", "'?' is not allowed")),
            (role("r", &["Microsöft.Security/*"], &[]), ("Properties.Permissions[0].Actions[0]", "is not allowed")),
            (
                role("r", &[a::JIT_READ, a::VM_READ, "Microsoft.Security/locations/jitNetworkAccessPolicy/read"], &[]),
                (
                    "Properties.Permissions[0].Actions[2]",
                    "'Microsoft.Security/locations/jitNetworkAccessPolicy/read' matches no action ajar knows; did you mean 'Microsoft.Security/locations/jitNetworkAccessPolicies/read'?",
                ),
            ),
            (
                role("r", &["Microsoft.Storage/*"], &[]),
                ("Properties.Permissions[0].Actions[0]", "'Microsoft.Storage/*' matches no action ajar knows"),
            ),
            (role("r", &["*"], &["Ajar/principal/*"]), ("Properties.Permissions[0].NotActions[0]", "matches no action ajar knows")),
            (RoleDefinition { assignable_scopes: vec![], ..ok() }, ("Properties.AssignableScopes", "at least one assignable scope")),
        ];
        for (role, (target, msg)) in table {
            check(role, Err((target, msg)));
        }
        assert!(
            RoleDefinition::custom(EXAMPLE_GUID.into(), "r".into(), String::new(), vec!["*".into()], vec![], vec![Scope::root()]).is_ok()
        );
    }

    #[test]
    fn compiled_allows() {
        let compiled =
            role("r", &["Microsoft.Security/*", "*/read"], &["Microsoft.Security/*/delete", "Ajar/principals/tokens/read"]).compile();
        let table: &[(&str, bool)] = &[
            (a::JIT_READ, true),
            (a::JIT_WRITE, true),
            (a::JIT_DELETE, false),
            (a::JIT_INITIATE, true),
            (a::VM_READ, true),
            (a::VM_WRITE, false),
            (a::PRINCIPALS_READ, true),
            (a::PRINCIPAL_TOKENS_READ, false),
            ("microsoft.security/locations/jitnetworkaccesspolicies/DELETE", false),
        ];
        for (action, expected) in table {
            assert_eq!(compiled.allows(action), *expected, "{action}");
        }
    }

    #[test]
    fn edit_distances() {
        for (x, y, d) in [("", "", 0), ("abc", "abc", 0), ("abc", "abd", 1), ("", "abc", 3), ("kitten", "sitting", 3)] {
            assert_eq!(edit_distance(x, y), d, "{x} {y}");
        }
    }
}
