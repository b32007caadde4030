//! The built-in roles, with Azure's names and GUIDs so that scripts written for
//! Azure assign the same roles here, and the least-privileged JIT requester.

use crate::access::role::{RoleDefinition, RoleKind};
use crate::access::scope::Scope;
use crate::activity::actions as a;

pub const OWNER_ID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
pub const CONTRIBUTOR_ID: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const READER_ID: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
pub const SECURITY_ADMIN_ID: &str = "fb1c8493-542b-48eb-b624-b4c8fea62acd";
pub const SECURITY_READER_ID: &str = "39bc4728-0917-49c7-9d2c-d95423bc2eb4";
/// ajar's own GUID: Azure has no built-in requester role, only a script that
/// creates a custom one. Fixed so that assignments survive restarts and upgrades.
pub const JIT_REQUESTER_ID: &str = "df903be8-ea06-4b3a-a014-28c820417985";

/// The name `Set-JitLeastPrivilegedRole.ps1` gives its role by default.
pub const JIT_REQUESTER_NAME: &str = "JIT Network Access Requester";

fn builtin(id: &str, name: &str, description: &str, actions: &[&str], not_actions: &[&str]) -> RoleDefinition {
    RoleDefinition {
        id: id.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        kind: RoleKind::BuiltIn,
        actions: actions.iter().map(|s| (*s).to_owned()).collect(),
        not_actions: not_actions.iter().map(|s| (*s).to_owned()).collect(),
        assignable_scopes: vec![Scope::root()],
    }
}

/// The requester's actions: read and initiate JIT, and enough to see which
/// address to connect to. `api_only` drops what only the portal's VM blade needs.
fn requester_actions(api_only: bool) -> Vec<&'static str> {
    let mut actions = vec![a::JIT_READ, a::JIT_INITIATE, a::SECURITY_POLICIES_READ, a::PUBLIC_IP_ADDRESSES_READ];
    if !api_only {
        actions.extend([a::VM_READ, "Microsoft.Network/*/read"]);
    }
    actions
}

/// The least-privileged custom role for requesting JIT access, as
/// Microsoft's `Set-JitLeastPrivilegedRole.ps1` creates it, assignable at `scope`.
pub fn requester_role(name: &str, api_only: bool, scope: Scope, id: String) -> RoleDefinition {
    RoleDefinition {
        id,
        name: name.to_owned(),
        description: "Request just-in-time network access to virtual machines, and nothing else".to_owned(),
        kind: RoleKind::Custom,
        actions: requester_actions(api_only).into_iter().map(str::to_owned).collect(),
        not_actions: Vec::new(),
        assignable_scopes: vec![scope],
    }
}

/// Every built-in role, each assignable anywhere (`/`).
///
/// Decisions beyond Azure's definitions:
/// - Contributor may not manage principals or their tokens (`Ajar/principals/*`):
///   that is identity administration, as `Microsoft.Authorization` writes are.
/// - Reader reads everything, principals and role assignments included (as
///   Azure's Reader reads role assignments), but not the list of a principal's
///   API tokens.
/// - Security Admin configures JIT policies but cannot add machines: as on
///   Azure, writing a policy also needs `Microsoft.Compute/virtualMachines/write`.
pub fn builtin_roles() -> Vec<RoleDefinition> {
    vec![
        builtin(OWNER_ID, "Owner", "Grants full access to manage all resources, including the ability to assign roles", &["*"], &[]),
        builtin(
            CONTRIBUTOR_ID,
            "Contributor",
            "Grants full access to manage all resources, but does not allow you to assign roles or manage principals and their tokens",
            &["*"],
            &[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Ajar/principals/*",
            ],
        ),
        builtin(
            READER_ID,
            "Reader",
            "View all resources, but does not allow you to make any changes or list API tokens",
            &["*/read"],
            &[a::PRINCIPAL_TOKENS_READ],
        ),
        builtin(
            SECURITY_ADMIN_ID,
            "Security Admin",
            "View and update permissions for Security Center, including JIT network access policies and ending live grants",
            &[
                "Microsoft.Authorization/*/read",
                a::RESOURCE_GROUPS_READ,
                "Microsoft.Security/*",
                a::ACTIVITY_READ,
                "Ajar/jitNetworkAccessPolicies/*",
            ],
            &[],
        ),
        builtin(
            SECURITY_READER_ID,
            "Security Reader",
            "View permissions for Security Center, including JIT network access policies",
            &["Microsoft.Authorization/*/read", a::RESOURCE_GROUPS_READ, "Microsoft.Security/*/read", a::ACTIVITY_READ],
            &[],
        ),
        builtin(
            JIT_REQUESTER_ID,
            JIT_REQUESTER_NAME,
            "Request just-in-time network access to virtual machines, and nothing else",
            &requester_actions(false),
            &[],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::action::CATALOG;
    use crate::access::role::{is_guid, validate_custom_role};

    const ROLES: [&str; 6] = ["Owner", "Contributor", "Reader", "Security Admin", "Security Reader", JIT_REQUESTER_NAME];

    /// One row per catalog action: the expected decision for each role in `ROLES`, in order.
    /// `Y` allowed, `.` denied.
    const EXPECTED: &[(&str, &str)] = &[
        //                                                          Own Con Rea SAd SRe Req
        (a::JIT_READ, "YYYYYY"),
        (a::JIT_WRITE, "YY.Y.."),
        (a::JIT_DELETE, "YY.Y.."),
        (a::JIT_INITIATE, "YY.Y.Y"),
        (a::VM_READ, "YYY..Y"),
        (a::VM_WRITE, "YY...."),
        (a::VM_DELETE, "YY...."),
        (a::SUBSCRIPTIONS_READ, "YYY..."),
        (a::RESOURCE_GROUPS_READ, "YYYYY."),
        (a::NETWORK_INTERFACES_READ, "YYY..Y"),
        (a::PUBLIC_IP_ADDRESSES_READ, "YYY..Y"),
        (a::SECURITY_POLICIES_READ, "YYYYYY"),
        (a::SECURITY_PRICINGS_READ, "YYYYY."),
        (a::ROLE_DEFINITIONS_READ, "YYYYY."),
        (a::ROLE_DEFINITIONS_WRITE, "Y....."),
        (a::ROLE_DEFINITIONS_DELETE, "Y....."),
        (a::ROLE_ASSIGNMENTS_READ, "YYYYY."),
        (a::ROLE_ASSIGNMENTS_WRITE, "Y....."),
        (a::ROLE_ASSIGNMENTS_DELETE, "Y....."),
        (a::ACTIVITY_READ, "YYYYY."),
        (a::JIT_REVOKE, "YY.Y.."),
        (a::PRINCIPALS_READ, "Y.Y..."),
        (a::PRINCIPALS_WRITE, "Y....."),
        (a::PRINCIPALS_DELETE, "Y....."),
        (a::PRINCIPAL_TOKENS_READ, "Y....."),
        (a::PRINCIPAL_TOKENS_WRITE, "Y....."),
        (a::PRINCIPAL_TOKENS_DELETE, "Y....."),
        (a::AGENTS_READ, "YYY..."),
        (a::GATEWAYS_DELETE, "YY...."),
    ];

    #[test]
    fn every_builtin_role_against_every_catalog_action() {
        let roles = builtin_roles();
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ROLES);
        let expected_actions: Vec<&str> = EXPECTED.iter().map(|(action, _)| *action).collect();
        let catalog: Vec<&str> = CATALOG.iter().map(|(action, _)| *action).collect();
        assert_eq!(expected_actions, catalog, "the table must cover the catalog, in order");
        let compiled: Vec<_> = roles.iter().map(|r| r.compile()).collect();
        let mut wrong = Vec::new();
        for (action, row) in EXPECTED {
            for (role, want) in compiled.iter().zip(row.chars()) {
                if role.allows(action) != (want == 'Y') {
                    wrong.push(format!("{} {action}: expected {}", role.name, if want == 'Y' { "allow" } else { "deny" }));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn builtins_are_well_formed() {
        for role in builtin_roles() {
            assert!(is_guid(&role.id), "{}", role.name);
            assert_eq!(role.kind, RoleKind::BuiltIn);
            assert_eq!(role.assignable_scopes, vec![Scope::root()]);
        }
    }

    #[test]
    fn requester_role_is_a_valid_custom_role() {
        let sub: Scope = "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23".parse().unwrap();
        let id = "0f4b5b0e-9b0e-4a57-9d6b-0f0c7a1f2b3c".to_owned();
        let full = requester_role("My requester", false, sub.clone(), id.clone());
        validate_custom_role(&full).unwrap();
        assert_eq!(full.assignable_scopes, vec![sub.clone()]);
        let api = requester_role("My API requester", true, sub, id).compile();
        let table: &[(&str, bool)] = &[
            (a::JIT_READ, true),
            (a::JIT_INITIATE, true),
            (a::SECURITY_POLICIES_READ, true),
            (a::PUBLIC_IP_ADDRESSES_READ, true),
            (a::VM_READ, false),
            (a::NETWORK_INTERFACES_READ, false),
            (a::JIT_WRITE, false),
        ];
        for (action, expected) in table {
            assert_eq!(api.allows(action), *expected, "{action}");
        }
        // The default name is the built-in's, so a custom copy must be renamed.
        let clash = requester_role(JIT_REQUESTER_NAME, false, Scope::root(), "0f4b5b0e-9b0e-4a57-9d6b-0f0c7a1f2b3c".into());
        assert!(validate_custom_role(&clash).is_err());
    }
}
