//! Who holds role assignments: principals (users and services, with IDs the store makes), and the
//! users and groups of a configured OIDC issuer, which need no principal: their IDs say where they
//! come from, so roles can be assigned to them before they ever sign in.

use std::fmt;
use std::str::FromStr;

/// What a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A program: a script, a pipeline, another service.
    Service,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Service => "service",
        }
    }
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PrincipalKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "user" => Ok(PrincipalKind::User),
            "service" => Ok(PrincipalKind::Service),
            other => Err(format!("kind '{other}' is not 'user' or 'service'")),
        }
    }
}

const OIDC_USER: &str = "oidc:";
const OIDC_GROUP: &str = "group:";

/// The ID of an OIDC user no principal is linked to: `oidc:{issuer label}/{subject}`.
pub fn oidc_user_id(issuer_label: &str, subject: &str) -> String {
    format!("{OIDC_USER}{issuer_label}/{subject}")
}

/// The ID of an OIDC group: `group:{issuer label}/{group}`.
pub fn oidc_group_id(issuer_label: &str, group: &str) -> String {
    format!("{OIDC_GROUP}{issuer_label}/{group}")
}

/// Whether `id` names an OIDC user or group rather than a stored principal.
pub fn is_oidc_identity(id: &str) -> bool {
    id.starts_with(OIDC_USER) || is_oidc_group(id)
}

pub fn is_oidc_group(id: &str) -> bool {
    id.starts_with(OIDC_GROUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oidc_identities_are_told_apart_from_principals() {
        assert_eq!(oidc_user_id("corp", "alice"), "oidc:corp/alice");
        assert_eq!(oidc_group_id("corp", "admins"), "group:corp/admins");
        assert!(is_oidc_identity("oidc:corp/alice") && is_oidc_identity("group:corp/admins") && is_oidc_group("group:corp/admins"));
        assert!(!is_oidc_identity("01a20442-35ee-728d-ad68-15767d3962de") && !is_oidc_group("oidc:corp/alice"));
    }
}
