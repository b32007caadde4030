//! Azure action patterns (`*`, `*/read`, `Microsoft.Security/*`) and the catalog
//! of every action ajar checks.
//!
//! A pattern is compiled once (lower-cased, split on `*`) so that matching an
//! action during a request allocates nothing.

use std::fmt;

use crate::activity::actions as a;

/// Every action ajar knows and checks, with a line saying what it permits.
/// Custom roles may only name patterns that match at least one of these.
pub const CATALOG: &[(&str, &str)] = &[
    (a::JIT_READ, "Read JIT network access policies"),
    (a::JIT_WRITE, "Create or update JIT network access policies"),
    (a::JIT_DELETE, "Delete JIT network access policies"),
    (a::JIT_INITIATE, "Request just-in-time access to a virtual machine"),
    (a::VM_READ, "Read virtual machines"),
    (a::VM_WRITE, "Add or update virtual machines in the inventory"),
    (a::VM_DELETE, "Remove virtual machines from the inventory"),
    (a::SUBSCRIPTIONS_READ, "Read subscriptions"),
    (a::RESOURCE_GROUPS_READ, "Read resource groups"),
    (a::NETWORK_INTERFACES_READ, "Read network interfaces"),
    (a::PUBLIC_IP_ADDRESSES_READ, "Read public IP addresses"),
    (a::SECURITY_POLICIES_READ, "Read security policies"),
    (a::SECURITY_PRICINGS_READ, "Read Defender for Cloud pricing tiers"),
    (a::ROLE_DEFINITIONS_READ, "Read role definitions"),
    (a::ROLE_DEFINITIONS_WRITE, "Create or update custom role definitions"),
    (a::ROLE_DEFINITIONS_DELETE, "Delete custom role definitions"),
    (a::ROLE_ASSIGNMENTS_READ, "Read role assignments"),
    (a::ROLE_ASSIGNMENTS_WRITE, "Create role assignments"),
    (a::ROLE_ASSIGNMENTS_DELETE, "Delete role assignments"),
    (a::ACTIVITY_READ, "Read the activity log"),
    (a::JIT_REVOKE, "End a live access grant before its time"),
    (a::PRINCIPALS_READ, "Read users, groups and service principals"),
    (a::PRINCIPALS_WRITE, "Create or update users, groups and service principals"),
    (a::PRINCIPALS_DELETE, "Delete users, groups and service principals"),
    (a::PRINCIPAL_TOKENS_READ, "List a principal's API tokens"),
    (a::PRINCIPAL_TOKENS_WRITE, "Mint API tokens for a principal"),
    (a::PRINCIPAL_TOKENS_DELETE, "Revoke a principal's API tokens"),
    (a::AGENTS_READ, "Read enrolled agents and their health"),
    (a::GATEWAYS_DELETE, "Remove a gateway and its agent"),
];

/// Every catalog action, without descriptions.
pub fn catalog_actions() -> impl Iterator<Item = &'static str> {
    CATALOG.iter().map(|(action, _)| *action)
}

/// A compiled action pattern. `*` matches any run of characters, `/` included;
/// everything else compares ASCII case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPattern {
    source: String,
    /// The lower-cased pattern split on `*`: one piece means no wildcard.
    pieces: Vec<String>,
}

impl ActionPattern {
    pub fn new(pattern: &str) -> ActionPattern {
        let pieces = pattern.to_ascii_lowercase().split('*').map(str::to_owned).collect();
        ActionPattern { source: pattern.to_owned(), pieces }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn has_wildcard(&self) -> bool {
        self.pieces.len() > 1
    }

    pub fn matches(&self, action: &str) -> bool {
        let action = action.as_bytes();
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return action.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return action.eq_ignore_ascii_case(first.as_bytes());
        };
        let (first, last) = (first.as_bytes(), last.as_bytes());
        if action.len() < first.len() + last.len() {
            return false;
        }
        if !action[..first.len()].eq_ignore_ascii_case(first) || !action[action.len() - last.len()..].eq_ignore_ascii_case(last) {
            return false;
        }
        // With only `*` as wildcard, taking each middle piece at its leftmost
        // place is never worse than any other choice.
        let mut window = &action[first.len()..action.len() - last.len()];
        for piece in middle {
            match find_ignore_case(window, piece.as_bytes()) {
                Some(at) => window = &window[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

impl fmt::Display for ActionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// `needle` is already lower-case.
fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(pattern: &str, table: &[(&str, bool)]) {
        let compiled = ActionPattern::new(pattern);
        for (action, expected) in table {
            assert_eq!(compiled.matches(action), *expected, "pattern '{pattern}' against '{action}'");
        }
    }

    #[test]
    fn matching() {
        check("*", &[("", true), ("Microsoft.Security/locations/jitNetworkAccessPolicies/read", true), ("Ajar/agents/read", true)]);
        check(
            "*/read",
            &[
                ("Microsoft.Compute/virtualMachines/read", true),
                ("Microsoft.Compute/virtualMachines/READ", true),
                ("Microsoft.Compute/virtualMachines/write", false),
                ("Microsoft.X/y/write", false),
                ("read", false),
                ("/read", true),
                ("Microsoft.Compute/virtualMachines/reader", false),
            ],
        );
        check(
            "Microsoft.Network/*/read",
            &[
                ("Microsoft.Network/networkInterfaces/read", true),
                ("microsoft.network/publicIPAddresses/READ", true),
                ("Microsoft.Network/a/b/c/read", true),
                ("Microsoft.Network/read", false),
                ("Microsoft.Network/networkInterfaces/write", false),
                ("Microsoft.Compute/virtualMachines/read", false),
            ],
        );
        check(
            "Microsoft.Security/*",
            &[
                ("Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action", true),
                ("MICROSOFT.SECURITY/pricings/read", true),
                ("Microsoft.Security/", true),
                ("Microsoft.Securityx/pricings/read", false),
                ("Microsoft.Compute/virtualMachines/read", false),
            ],
        );
        check(
            "Microsoft.Authorization/*/Write",
            &[
                ("Microsoft.Authorization/roleAssignments/write", true),
                ("Microsoft.Authorization/roleDefinitions/write", true),
                ("Microsoft.Authorization/roleAssignments/read", false),
            ],
        );
        check(
            "Microsoft.Security/locations/jitNetworkAccessPolicies/read",
            &[
                ("microsoft.security/locations/jitnetworkaccesspolicies/read", true),
                ("Microsoft.Security/locations/jitNetworkAccessPolicies/read/x", false),
                ("Microsoft.Security/locations/jitNetworkAccessPolicies/rea", false),
            ],
        );
        check("a*b*c", &[("abc", true), ("aXbYc", true), ("abbc", true), ("acb", false), ("ab", false), ("a*b*c", true)]);
        check("ab*ba", &[("aba", false), ("abba", true), ("abXba", true)]);
        check("**", &[("", true), ("x", true)]);
    }

    #[test]
    fn catalog_is_unique_and_has_descriptions() {
        let mut seen = std::collections::HashSet::new();
        for (action, description) in CATALOG {
            assert!(seen.insert(action.to_ascii_lowercase()), "{action} twice");
            assert!(!description.is_empty(), "{action}");
            assert!(!action.contains('*'), "{action}");
        }
    }

    /// A reference matcher: plain backtracking, obviously right and slow.
    fn reference(pattern: &[u8], action: &[u8]) -> bool {
        match pattern.split_first() {
            None => action.is_empty(),
            Some((b'*', rest)) => (0..=action.len()).any(|i| reference(rest, &action[i..])),
            Some((c, rest)) => action.first().is_some_and(|a| a.eq_ignore_ascii_case(c)) && reference(rest, &action[1..]),
        }
    }

    proptest! {
        #[test]
        fn literal_patterns_match_only_themselves(p in "[A-Za-z./]{0,12}", other in "[A-Za-z./]{0,12}") {
            let compiled = ActionPattern::new(&p);
            prop_assert!(compiled.matches(&p));
            prop_assert!(compiled.matches(&p.to_ascii_uppercase()));
            prop_assert!(compiled.matches(&p.to_ascii_lowercase()));
            prop_assert_eq!(compiled.matches(&other), p.eq_ignore_ascii_case(&other));
        }

        #[test]
        fn agrees_with_backtracking(p in "[ab/*]{0,8}", action in "[abAB/]{0,10}") {
            prop_assert_eq!(ActionPattern::new(&p).matches(&action), reference(p.as_bytes(), action.as_bytes()));
        }
    }
}
