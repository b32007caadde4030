//! Role assignments and the access decision.
//!
//! An [`AccessIndex`] is built once from every role and assignment, and then
//! answers each request by looking only at the caller's own assignments.
//! Everything fails closed: an assignment to a missing role, or outside the
//! role's assignable scopes, grants nothing.

use std::collections::HashMap;
use std::sync::Arc;

use crate::access::action::catalog_actions;
use crate::access::role::{CompiledRole, RoleDefinition};
use crate::access::scope::Scope;
use crate::activity::actions::ROLE_ASSIGNMENTS_WRITE;

/// A role granted to a principal (user, group or service principal) at a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    /// A GUID, the assignment's resource name.
    pub id: String,
    /// Matched exactly: a user's subject, or a group such as `group:admins`.
    pub principal_id: String,
    /// The role definition's GUID, or a `…/roleDefinitions/{guid}` resource ID.
    pub role_id: String,
    pub scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Names what was missing, for the `AuthorizationFailed` message.
    Denied {
        action: String,
        scope: Scope,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed)
    }
}

/// Why a role assignment may not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantDenied {
    #[error("role '{role}' cannot be assigned at scope '{scope}'; it is assignable only within its assignable scopes")]
    NotAssignable { role: String, scope: Scope },
    /// The caller lacks `action` at `scope`: either the right to assign roles,
    /// or one of the role's own actions, which nobody may hand out without holding it.
    #[error("the caller does not have '{action}' at scope '{scope}', so it cannot assign role '{role}' there")]
    Missing { role: String, action: &'static str, scope: Scope },
}

/// One assignment, resolved: where it applies and what its role allows.
#[derive(Debug, Clone)]
struct Grant {
    scope: Scope,
    role: Arc<CompiledRole>,
}

/// Every role assignment, indexed by principal.
#[derive(Debug, Clone, Default)]
pub struct AccessIndex {
    by_principal: HashMap<String, Vec<Grant>>,
}

/// `…/roleDefinitions/{guid}` or `{guid}` → the lower-cased GUID.
fn role_key(role_id: &str) -> String {
    role_id.rsplit('/').next().unwrap_or(role_id).to_ascii_lowercase()
}

impl AccessIndex {
    /// `roles` are all the definitions, built-in and custom; where two share an
    /// ID the first wins, so pass the built-ins first and no custom role can
    /// redefine one.
    pub fn new(roles: &[RoleDefinition], assignments: &[RoleAssignment]) -> AccessIndex {
        let mut compiled: HashMap<String, Arc<CompiledRole>> = HashMap::new();
        for role in roles {
            compiled.entry(role_key(&role.id)).or_insert_with(|| Arc::new(role.compile()));
        }
        let mut by_principal: HashMap<String, Vec<Grant>> = HashMap::new();
        for assignment in assignments {
            let Some(role) = compiled.get(&role_key(&assignment.role_id)) else { continue };
            if !role.assignable_at(&assignment.scope) {
                continue;
            }
            by_principal
                .entry(assignment.principal_id.clone())
                .or_default()
                .push(Grant { scope: assignment.scope.clone(), role: Arc::clone(role) });
        }
        AccessIndex { by_principal }
    }

    fn grants<'a>(&'a self, principals: &'a [&str]) -> impl Iterator<Item = &'a Grant> + 'a {
        principals.iter().filter_map(|p| self.by_principal.get(*p)).flatten()
    }

    fn holds(&self, principals: &[&str], action: &str, scope: &Scope) -> bool {
        self.grants(principals).any(|g| g.scope.contains(scope) && g.role.allows(action))
    }

    /// Allowed if some assignment of the caller's, at `scope` or above it, has a role that allows `action`.
    pub fn check(&self, principals: &[&str], action: &str, scope: &Scope) -> Decision {
        if self.holds(principals, action, scope) {
            Decision::Allowed
        } else {
            Decision::Denied { action: action.to_owned(), scope: scope.clone() }
        }
    }

    /// True if the caller holds `action` at `scope` or anywhere inside it: a
    /// list uses it to decide whether to look inside `scope` at all.
    pub fn may_any_below(&self, principals: &[&str], action: &str, scope: &Scope) -> bool {
        self.grants(principals).any(|g| (g.scope.contains(scope) || scope.contains(&g.scope)) && g.role.allows(action))
    }

    /// The scopes at which the caller holds `action`, none inside another: it may do `action` at a
    /// scope exactly when one of these contains it (what [`AccessIndex::check`] decides), so a query
    /// can select what the caller may read instead of reading everything and dropping the rest.
    /// The root alone when it holds `action` everywhere; empty when nowhere.
    pub fn scopes_allowing(&self, principals: &[&str], action: &str) -> Vec<Scope> {
        let mut held: Vec<Scope> = self.grants(principals).filter(|g| g.role.allows(action)).map(|g| g.scope.clone()).collect();
        // Shortest keys first: an enclosing scope comes before what it contains.
        held.sort_by_key(|s| s.key().len());
        let mut outermost: Vec<Scope> = Vec::with_capacity(held.len());
        for scope in held {
            if !outermost.iter().any(|o| o.contains(&scope)) {
                outermost.push(scope);
            }
        }
        outermost
    }

    /// The escalation guard: the caller needs `roleAssignments/write` at
    /// `scope`, and every catalog action the role allows, at `scope` too. The
    /// first missing action, in catalog order, is named.
    pub fn can_grant(&self, principals: &[&str], role: &RoleDefinition, scope: &Scope) -> Result<(), GrantDenied> {
        if !role.assignable_at(scope) {
            return Err(GrantDenied::NotAssignable { role: role.name.clone(), scope: scope.clone() });
        }
        let compiled = role.compile();
        let required = std::iter::once(ROLE_ASSIGNMENTS_WRITE).chain(compiled.catalog_allowed());
        for action in required {
            if !self.holds(principals, action, scope) {
                return Err(GrantDenied::Missing { role: role.name.clone(), action, scope: scope.clone() });
            }
        }
        Ok(())
    }

    /// The catalog actions the caller holds at `scope`, in catalog order, so a
    /// client can hide what it would be refused.
    pub fn effective_actions(&self, principals: &[&str], scope: &Scope) -> Vec<&'static str> {
        catalog_actions().filter(|action| self.holds(principals, action, scope)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::builtin::{
        CONTRIBUTOR_ID, JIT_REQUESTER_ID, OWNER_ID, READER_ID, SECURITY_ADMIN_ID, SECURITY_READER_ID, builtin_roles,
    };
    use crate::access::role::RoleKind;
    use crate::activity::actions as a;

    const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
    const SUB2: &str = "00000000-0000-0000-0000-000000000002";
    const ASSIGNER_ID: &str = "6c1c2a4e-8a55-4e0b-a7a2-7d0b5f9c1e01";

    fn sc(s: &str) -> Scope {
        s.parse().unwrap()
    }

    fn sub(s: &str) -> String {
        format!("/subscriptions/{s}")
    }

    fn rg(s: &str, rg: &str) -> String {
        format!("/subscriptions/{s}/resourceGroups/{rg}")
    }

    fn vm(s: &str, group: &str, name: &str) -> String {
        format!("{}/providers/Microsoft.Compute/virtualMachines/{name}", rg(s, group))
    }

    fn policy(s: &str, group: &str) -> String {
        format!("{}/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default", rg(s, group))
    }

    fn assign(principal: &str, role: &str, scope: &str) -> RoleAssignment {
        RoleAssignment { id: format!("{principal}-{role}-{scope}"), principal_id: principal.into(), role_id: role.into(), scope: sc(scope) }
    }

    fn assigner_role() -> RoleDefinition {
        RoleDefinition {
            id: ASSIGNER_ID.into(),
            name: "Assigner".into(),
            description: String::new(),
            kind: RoleKind::Custom,
            actions: vec![a::ROLE_ASSIGNMENTS_WRITE.into(), a::JIT_READ.into()],
            not_actions: vec![],
            assignable_scopes: vec![Scope::root()],
        }
    }

    fn index(assignments: &[RoleAssignment]) -> AccessIndex {
        let mut roles = builtin_roles();
        roles.push(assigner_role());
        AccessIndex::new(&roles, assignments)
    }

    /// `(principals, action, scope, allowed)`
    fn check(idx: &AccessIndex, table: &[(&[&str], &str, String, bool)]) {
        for (principals, action, scope, expected) in table {
            let decision = idx.check(principals, action, &sc(scope));
            assert_eq!(decision.is_allowed(), *expected, "{principals:?} {action} at {scope}: {decision:?}");
        }
    }

    #[test]
    fn inheritance_and_groups() {
        let idx = index(&[
            assign("alice", READER_ID, &rg(SUB, "rg1")),
            assign("bob", &format!("/providers/Microsoft.Authorization/roleDefinitions/{}", JIT_REQUESTER_ID.to_uppercase()), &sub(SUB)),
            assign("group:admins", OWNER_ID, "/"),
            assign("carol", SECURITY_READER_ID, &vm(SUB, "rg1", "vm1")),
        ]);
        let table: &[(&[&str], &str, String, bool)] = &[
            (&["alice"], a::VM_READ, vm(SUB, "rg1", "vm1"), true),
            (&["alice"], a::VM_READ, rg(SUB, "rg1"), true),
            (&["alice"], a::VM_READ, vm(SUB, "RG1", "vm2"), true),
            (&["alice"], a::VM_READ, vm(SUB, "rg2", "vm1"), false),
            (&["alice"], a::VM_READ, vm(SUB2, "rg1", "vm1"), false),
            (&["alice"], a::VM_READ, vm(SUB, "rg10", "vm1"), false),
            (&["alice"], a::VM_READ, sub(SUB), false),
            (&["alice"], a::VM_READ, "/".into(), false),
            (&["alice"], a::JIT_READ, policy(SUB, "rg1"), true),
            (&["alice"], a::JIT_INITIATE, policy(SUB, "rg1"), false),
            (&["bob"], a::JIT_INITIATE, policy(SUB, "rg2"), true),
            (&["bob"], a::JIT_INITIATE, policy(SUB2, "rg2"), false),
            (&["bob"], a::JIT_WRITE, policy(SUB, "rg2"), false),
            (&["alice", "group:admins"], a::JIT_WRITE, policy(SUB2, "rg2"), true),
            (&["alice", "group:others"], a::JIT_WRITE, policy(SUB2, "rg2"), false),
            (&["group:admins"], a::PRINCIPALS_WRITE, "/".into(), true),
            (&["Group:Admins"], a::PRINCIPALS_WRITE, "/".into(), false),
            (&["carol"], a::JIT_READ, vm(SUB, "rg1", "vm1"), true),
            (&["carol"], a::JIT_READ, policy(SUB, "rg1"), false),
            (&["nobody"], a::JIT_READ, policy(SUB, "rg1"), false),
            (&[], a::JIT_READ, policy(SUB, "rg1"), false),
        ];
        check(&idx, table);
        assert_eq!(
            idx.check(&["alice"], a::JIT_WRITE, &sc(&policy(SUB, "rg1"))),
            Decision::Denied { action: a::JIT_WRITE.into(), scope: sc(&policy(SUB, "rg1")) }
        );
    }

    #[test]
    fn unknown_and_unassignable_roles_grant_nothing() {
        let narrow = RoleDefinition {
            id: "11111111-1111-1111-1111-111111111111".into(),
            name: "Narrow".into(),
            description: String::new(),
            kind: RoleKind::Custom,
            actions: vec!["*".into()],
            not_actions: vec![],
            assignable_scopes: vec![sc(&rg(SUB, "rg1"))],
        };
        let mut roles = builtin_roles();
        roles.push(narrow);
        // A custom role reusing a built-in's ID does not replace it.
        roles.push(RoleDefinition { id: READER_ID.into(), name: "Fake reader".into(), actions: vec!["*".into()], ..assigner_role() });
        let idx = AccessIndex::new(
            &roles,
            &[
                assign("ghost", "99999999-9999-9999-9999-999999999999", "/"),
                assign("wide", "11111111-1111-1111-1111-111111111111", &sub(SUB)),
                assign("ok", "11111111-1111-1111-1111-111111111111", &rg(SUB, "rg1")),
                assign("reader", READER_ID, "/"),
            ],
        );
        let table: &[(&[&str], &str, String, bool)] = &[
            (&["ghost"], a::JIT_READ, policy(SUB, "rg1"), false),
            (&["wide"], a::JIT_READ, policy(SUB, "rg1"), false),
            (&["ok"], a::JIT_READ, policy(SUB, "rg1"), true),
            (&["reader"], a::JIT_READ, policy(SUB, "rg1"), true),
            (&["reader"], a::JIT_WRITE, policy(SUB, "rg1"), false),
        ];
        check(&idx, table);
    }

    #[test]
    fn may_any_below() {
        let idx = index(&[assign("alice", READER_ID, &rg(SUB, "rg1")), assign("bob", JIT_REQUESTER_ID, &sub(SUB))]);
        let table: &[(&str, &str, String, bool)] = &[
            ("alice", a::VM_READ, "/".into(), true),
            ("alice", a::VM_READ, sub(SUB), true),
            ("alice", a::VM_READ, rg(SUB, "rg1"), true),
            ("alice", a::VM_READ, vm(SUB, "rg1", "x"), true),
            ("alice", a::VM_READ, sub(SUB2), false),
            ("alice", a::VM_READ, rg(SUB, "rg2"), false),
            ("alice", a::VM_WRITE, sub(SUB), false),
            ("bob", a::JIT_INITIATE, "/".into(), true),
            ("bob", a::JIT_INITIATE, policy(SUB, "any"), true),
            ("bob", a::JIT_INITIATE, sub(SUB2), false),
        ];
        for (principal, action, scope, expected) in table {
            assert_eq!(idx.may_any_below(&[principal], action, &sc(scope)), *expected, "{principal} {action} below {scope}");
        }
    }

    #[test]
    fn scopes_allowing_agree_with_check() {
        let idx = index(&[
            assign("alice", READER_ID, &rg(SUB, "rg1")),
            assign("alice", READER_ID, &vm(SUB, "rg1", "x")),
            assign("alice", JIT_REQUESTER_ID, &rg(SUB, "rg2")),
            assign("group:ops", READER_ID, &sub(SUB2)),
            assign("owner", OWNER_ID, "/"),
        ]);
        let keys = |principals: &[&str], action: &str| -> Vec<String> {
            idx.scopes_allowing(principals, action).iter().map(|s| s.key().to_owned()).collect()
        };
        assert_eq!(keys(&["alice"], a::ACTIVITY_READ), [rg(SUB, "rg1").to_lowercase()], "the machine's scope is inside the group's");
        assert_eq!(keys(&["alice", "group:ops"], a::ACTIVITY_READ), [sub(SUB2), rg(SUB, "rg1").to_lowercase()]);
        assert_eq!(keys(&["owner", "alice"], a::ACTIVITY_READ), ["/"]);
        assert!(keys(&["nobody"], a::ACTIVITY_READ).is_empty());
        let principals: &[&str] = &["alice", "group:ops"];
        for action in [a::ACTIVITY_READ, a::JIT_INITIATE, a::VM_WRITE] {
            let held = idx.scopes_allowing(principals, action);
            for scope in [
                "/".to_owned(),
                sub(SUB),
                sub(SUB2),
                rg(SUB, "rg1"),
                rg(SUB, "RG2"),
                vm(SUB, "rg1", "y"),
                policy(SUB, "rg2"),
                vm(SUB2, "a", "b"),
            ] {
                let scope = sc(&scope);
                assert_eq!(
                    held.iter().any(|h| h.contains(&scope)),
                    idx.check(principals, action, &scope).is_allowed(),
                    "{action} at {scope}"
                );
            }
        }
    }

    fn role(id: &str) -> RoleDefinition {
        let mut roles = builtin_roles();
        roles.push(assigner_role());
        roles.into_iter().find(|r| r.id == id).unwrap()
    }

    #[test]
    fn escalation_guard() {
        let idx = index(&[
            assign("owner", OWNER_ID, "/"),
            assign("contrib", CONTRIBUTOR_ID, "/"),
            assign("rg-owner", OWNER_ID, &rg(SUB, "rg1")),
            assign("assigner", ASSIGNER_ID, &sub(SUB)),
            assign("secadmin", SECURITY_ADMIN_ID, "/"),
        ]);
        let missing = |role_id: &str, action: &'static str, scope: &str| {
            Err(GrantDenied::Missing { role: role(role_id).name, action, scope: sc(scope) })
        };
        let table: Vec<(&str, &str, String, Result<(), GrantDenied>)> = vec![
            ("owner", CONTRIBUTOR_ID, "/".into(), Ok(())),
            ("owner", OWNER_ID, sub(SUB), Ok(())),
            ("contrib", READER_ID, sub(SUB), missing(READER_ID, a::ROLE_ASSIGNMENTS_WRITE, &sub(SUB))),
            ("contrib", JIT_REQUESTER_ID, rg(SUB, "rg1"), missing(JIT_REQUESTER_ID, a::ROLE_ASSIGNMENTS_WRITE, &rg(SUB, "rg1"))),
            ("rg-owner", READER_ID, rg(SUB, "rg1"), Ok(())),
            ("rg-owner", OWNER_ID, vm(SUB, "rg1", "vm1"), Ok(())),
            ("rg-owner", READER_ID, sub(SUB), missing(READER_ID, a::ROLE_ASSIGNMENTS_WRITE, &sub(SUB))),
            ("rg-owner", READER_ID, rg(SUB, "rg2"), missing(READER_ID, a::ROLE_ASSIGNMENTS_WRITE, &rg(SUB, "rg2"))),
            ("assigner", CONTRIBUTOR_ID, sub(SUB), missing(CONTRIBUTOR_ID, a::JIT_WRITE, &sub(SUB))),
            ("assigner", READER_ID, rg(SUB, "rg1"), missing(READER_ID, a::VM_READ, &rg(SUB, "rg1"))),
            ("assigner", ASSIGNER_ID, rg(SUB, "rg1"), Ok(())),
            ("assigner", ASSIGNER_ID, sub(SUB2), missing(ASSIGNER_ID, a::ROLE_ASSIGNMENTS_WRITE, &sub(SUB2))),
            ("secadmin", SECURITY_READER_ID, "/".into(), missing(SECURITY_READER_ID, a::ROLE_ASSIGNMENTS_WRITE, "/")),
        ];
        for (caller, role_id, scope, expected) in table {
            assert_eq!(idx.can_grant(&[caller], &role(role_id), &sc(&scope)), expected, "{caller} grants {role_id} at {scope}");
        }
        let narrow = RoleDefinition { assignable_scopes: vec![sc(&rg(SUB, "rg1"))], ..assigner_role() };
        assert_eq!(
            idx.can_grant(&["owner"], &narrow, &sc(&sub(SUB))),
            Err(GrantDenied::NotAssignable { role: "Assigner".into(), scope: sc(&sub(SUB)) })
        );
        assert_eq!(idx.can_grant(&["owner"], &narrow, &sc(&rg(SUB, "rg1"))), Ok(()));
        let message = idx.can_grant(&["assigner"], &role(CONTRIBUTOR_ID), &sc(&sub(SUB))).unwrap_err().to_string();
        assert!(message.contains(a::JIT_WRITE) && message.contains("Contributor"), "{message}");
    }

    #[test]
    fn effective_actions() {
        let idx = index(&[assign("bob", JIT_REQUESTER_ID, &sub(SUB)), assign("group:sec", SECURITY_READER_ID, &rg(SUB, "rg1"))]);
        assert_eq!(
            idx.effective_actions(&["bob"], &sc(&policy(SUB, "rg1"))),
            vec![
                a::JIT_READ,
                a::JIT_INITIATE,
                a::VM_READ,
                a::NETWORK_INTERFACES_READ,
                a::PUBLIC_IP_ADDRESSES_READ,
                a::SECURITY_POLICIES_READ
            ]
        );
        assert_eq!(
            idx.effective_actions(&["bob", "group:sec"], &sc(&rg(SUB, "rg1"))),
            vec![
                a::JIT_READ,
                a::JIT_INITIATE,
                a::VM_READ,
                a::RESOURCE_GROUPS_READ,
                a::NETWORK_INTERFACES_READ,
                a::PUBLIC_IP_ADDRESSES_READ,
                a::SECURITY_POLICIES_READ,
                a::SECURITY_PRICINGS_READ,
                a::ROLE_DEFINITIONS_READ,
                a::ROLE_ASSIGNMENTS_READ,
                a::ACTIVITY_READ,
            ]
        );
        assert!(idx.effective_actions(&["bob"], &sc(&sub(SUB2))).is_empty());
        assert_eq!(idx.effective_actions(&["nobody"], &Scope::root()), Vec::<&str>::new());
    }
}
