//! Azure-style role-based access control: scopes, action patterns, role
//! definitions and assignments, and the decision whether a caller may act.
//!
//! Pure: the server loads roles and assignments, builds an [`AccessIndex`] once,
//! and asks it per request. Wire formats belong to the API crate.

pub mod action;
pub mod builtin;
pub mod check;
pub mod principal;
pub mod role;
pub mod scope;

pub use action::{ActionPattern, CATALOG};
pub use builtin::{JIT_REQUESTER_NAME, builtin_roles, requester_role};
pub use check::{AccessIndex, Decision, GrantDenied, RoleAssignment};
pub use principal::PrincipalKind;
pub use role::{CompiledRole, RoleDefinition, RoleKind, validate_custom_role};
pub use scope::{Scope, ScopeError};
