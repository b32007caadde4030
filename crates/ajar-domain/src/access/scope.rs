//! Where a role assignment applies: the ARM hierarchy root → subscription →
//! resource group → resource.
//!
//! ARM compares IDs case-insensitively, so a scope keeps the spelling it was
//! given for display and compares by its key ([`arm_key`]); the key of a
//! resource starts with the key of every scope holding it. Containment is by
//! whole path segments, never by string prefix alone.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::ids::{PolicyId, ResourceGroup, SubscriptionId, VmId, arm_key};

/// The forms a scope may take, quoted in every parse error so the user can fix the input.
pub const ACCEPTED_FORMS: &str = "'/', '/subscriptions/{subscriptionId}', '/subscriptions/{subscriptionId}/resourceGroups/{name}' \
     or a resource ID in a resource group, such as \
     '/subscriptions/{subscriptionId}/resourceGroups/{name}/providers/Microsoft.Compute/virtualMachines/{vm}'";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope '{input}' is invalid: {why}; a scope is {ACCEPTED_FORMS}")]
pub struct ScopeError {
    pub input: String,
    pub why: String,
}

fn scope_error(input: &str, why: impl Into<String>) -> ScopeError {
    ScopeError { input: input.to_owned(), why: why.into() }
}

/// An ARM scope. Equality and hashing ignore case. Cloning is cheap: the
/// access index and every denial hold copies.
#[derive(Debug, Clone)]
pub struct Scope(Arc<Parts>);

#[derive(Debug)]
struct Parts {
    /// Canonical spelling: fixed words as ARM writes them, names as given, no trailing slash
    /// (except the root, `/`).
    display: String,
    /// `display`'s [`arm_key`], with the root as the empty string so that every
    /// other key starts with `/` and containment is a segment-aligned prefix test.
    key: String,
    subscription: Option<SubscriptionId>,
    resource_group: Option<ResourceGroup>,
}

impl Scope {
    /// `/`: everything ajar manages.
    pub fn root() -> Scope {
        Scope(Arc::new(Parts { display: "/".to_owned(), key: String::new(), subscription: None, resource_group: None }))
    }

    pub fn subscription_scope(sub: &SubscriptionId) -> Scope {
        Scope::from_display(format!("/subscriptions/{sub}"), Some(sub.clone()), None)
    }

    pub fn resource_group_scope(sub: &SubscriptionId, rg: &ResourceGroup) -> Scope {
        Scope::from_display(format!("/subscriptions/{sub}/resourceGroups/{rg}"), Some(sub.clone()), Some(rg.clone()))
    }

    fn from_display(display: String, subscription: Option<SubscriptionId>, resource_group: Option<ResourceGroup>) -> Scope {
        let key = arm_key(&display);
        Scope(Arc::new(Parts { display, key, subscription, resource_group }))
    }

    pub fn is_root(&self) -> bool {
        self.0.key.is_empty()
    }

    pub fn subscription(&self) -> Option<&SubscriptionId> {
        self.0.subscription.as_ref()
    }

    pub fn resource_group(&self) -> Option<&ResourceGroup> {
        self.0.resource_group.as_ref()
    }

    /// True for a resource ID (below a resource group), false for root, subscription and resource group.
    pub fn is_resource(&self) -> bool {
        self.0.resource_group.is_some() && self.0.key.split('/').count() > 5
    }

    /// The [`arm_key`], for comparing and looking up (`/` for the root).
    pub fn key(&self) -> &str {
        if self.is_root() { "/" } else { &self.0.key }
    }

    /// Ancestor-or-self, by whole segments: `/subscriptions/a` contains
    /// `/subscriptions/a/resourceGroups/x` but not `/subscriptions/ab`.
    pub fn contains(&self, other: &Scope) -> bool {
        match other.0.key.strip_prefix(self.0.key.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl PartialEq for Scope {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for Scope {}

impl Hash for Scope {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.display)
    }
}

impl From<&VmId> for Scope {
    fn from(id: &VmId) -> Scope {
        Scope::from_display(id.to_string(), Some(id.subscription.clone()), Some(id.resource_group.clone()))
    }
}

impl From<&PolicyId> for Scope {
    fn from(id: &PolicyId) -> Scope {
        Scope::from_display(id.to_string(), Some(id.subscription.clone()), Some(id.resource_group.clone()))
    }
}

/// A resource provider namespace: dotted words such as `Microsoft.Compute`.
fn is_namespace(s: &str) -> bool {
    s.contains('.')
        && s.split('.').all(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()) && w.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// A resource type segment such as `virtualMachines`.
fn is_type(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A resource name: ARM's `^[-\w\._\(\)]+$`, never `.` or `..`, never ending in `.`.
fn is_resource_name(s: &str) -> bool {
    !s.is_empty() && !s.ends_with('.') && s.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(input: &str) -> Result<Self, ScopeError> {
        let Some(rest) = input.strip_prefix('/') else {
            return Err(scope_error(input, "it must start with '/'"));
        };
        if rest.is_empty() {
            return Ok(Scope::root());
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(scope_error(input, "it has an empty segment"));
        }
        if let Some(bad) = segs.iter().find(|s| **s == "." || **s == "..") {
            return Err(scope_error(input, format!("'{bad}' is not a segment")));
        }
        if !segs[0].eq_ignore_ascii_case("subscriptions") {
            return Err(scope_error(input, format!("expected 'subscriptions' where it says '{}'", segs[0])));
        }
        let Some(sub) = segs.get(1) else {
            return Err(scope_error(input, "it ends before the subscription ID"));
        };
        let sub: SubscriptionId = sub.parse().map_err(|e: crate::ids::IdError| scope_error(input, e.to_string()))?;
        let Some(word) = segs.get(2) else {
            return Ok(Scope::subscription_scope(&sub));
        };
        if !word.eq_ignore_ascii_case("resourceGroups") {
            return Err(scope_error(input, format!("expected 'resourceGroups' where it says '{word}'")));
        }
        let Some(rg) = segs.get(3) else {
            return Err(scope_error(input, "it ends before the resource group name"));
        };
        let rg: ResourceGroup = rg.parse().map_err(|e: crate::ids::IdError| scope_error(input, e.to_string()))?;
        let Some(word) = segs.get(4) else {
            return Ok(Scope::resource_group_scope(&sub, &rg));
        };
        if !word.eq_ignore_ascii_case("providers") {
            return Err(scope_error(input, format!("expected 'providers' where it says '{word}'")));
        }
        let Some(namespace) = segs.get(5) else {
            return Err(scope_error(input, "it ends before the provider namespace"));
        };
        if !is_namespace(namespace) {
            return Err(scope_error(input, format!("'{namespace}' is not a provider namespace such as 'Microsoft.Compute'")));
        }
        let pairs = &segs[6..];
        if pairs.is_empty() {
            return Err(scope_error(input, "it ends before the resource type"));
        }
        if !pairs.len().is_multiple_of(2) {
            return Err(scope_error(input, "a resource type must be followed by a resource name"));
        }
        let mut display = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}");
        for pair in pairs.chunks(2) {
            let (ty, name) = (pair[0], pair[1]);
            if !is_type(ty) {
                return Err(scope_error(input, format!("'{ty}' is not a resource type; use letters and digits")));
            }
            if !is_resource_name(name) {
                return Err(scope_error(
                    input,
                    format!("'{name}' is not a resource name; use letters, digits, '-', '_', '.', '(' and ')'"),
                ));
            }
            display.push('/');
            display.push_str(ty);
            display.push('/');
            display.push_str(name);
        }
        Ok(Scope::from_display(display, Some(sub), Some(rg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
    const SUB2: &str = "00000000-0000-0000-0000-000000000002";

    fn s(input: &str) -> Scope {
        input.parse().unwrap()
    }

    fn check_parse(input: &str, expected: Result<&str, &str>) {
        match (input.parse::<Scope>(), expected) {
            (Ok(scope), Ok(shown)) => assert_eq!(scope.to_string(), shown, "{input}"),
            (Err(e), Err(why)) => {
                let msg = e.to_string();
                assert!(msg.contains(why), "{input}: {msg}");
                assert!(msg.contains("a scope is '/', '/subscriptions/{subscriptionId}'"), "{input}: {msg}");
            }
            (got, want) => panic!("{input}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn parsing() {
        let rg = format!("/subscriptions/{SUB}/resourceGroups/myRg");
        let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm1");
        let policy = format!("{rg}/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default");
        let table: Vec<(String, Result<String, &str>)> = vec![
            ("/".into(), Ok("/".into())),
            ("/subscriptions/".into(), Err("ends before the subscription ID")),
            (format!("/subscriptions/{SUB}"), Ok(format!("/subscriptions/{SUB}"))),
            (format!("/subscriptions/{SUB}/"), Ok(format!("/subscriptions/{SUB}"))),
            (format!("/SUBSCRIPTIONS/{}", SUB.to_uppercase()), Ok(format!("/subscriptions/{SUB}"))),
            (rg.clone(), Ok(rg.clone())),
            (format!("/subscriptions/{SUB}/resourcegroups/myRg/"), Ok(rg.clone())),
            (vm.clone(), Ok(vm.clone())),
            (format!("/subscriptions/{SUB}/RESOURCEGROUPS/myRg/PROVIDERS/Microsoft.Compute/virtualMachines/vm1"), Ok(vm.clone())),
            (policy.clone(), Ok(policy.clone())),
            ("".into(), Err("must start with '/'")),
            ("subscriptions/x".into(), Err("must start with '/'")),
            ("//".into(), Err("empty segment")),
            (format!("/subscriptions/{SUB}//resourceGroups/rg"), Err("empty segment")),
            (format!("/subscriptions/{SUB}/resourceGroups/../x"), Err("'..' is not a segment")),
            (format!("/subscriptions/{SUB}/resourceGroups/."), Err("'.' is not a segment")),
            ("/subscription/x".into(), Err("expected 'subscriptions'")),
            ("/providers/Microsoft.Management/managementGroups/mg".into(), Err("expected 'subscriptions'")),
            ("/subscriptions/not-a-guid".into(), Err("GUID")),
            (format!("/subscriptions/{SUB}/providers/Microsoft.Security/pricings/x"), Err("expected 'resourceGroups'")),
            (format!("/subscriptions/{SUB}/resourceGroups"), Err("ends before the resource group name")),
            (format!("/subscriptions/{SUB}/resourceGroups/r g"), Err("' ' is not allowed")),
            (format!("{rg}/virtualMachines/vm1"), Err("expected 'providers'")),
            (format!("{rg}/providers"), Err("ends before the provider namespace")),
            (format!("{rg}/providers/Compute/virtualMachines/vm1"), Err("not a provider namespace")),
            (format!("{rg}/providers/Microsoft.Compute"), Err("ends before the resource type")),
            (format!("{rg}/providers/Microsoft.Compute/virtualMachines"), Err("must be followed by a resource name")),
            (format!("{rg}/providers/Microsoft.Compute/virtual-machines/vm1"), Err("not a resource type")),
            (format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm?1"), Err("not a resource name")),
        ];
        for (input, expected) in &table {
            check_parse(input, expected.as_ref().map(|s| s.as_str()).map_err(|e| *e));
        }
    }

    #[test]
    fn accessors() {
        let vm = s(&format!("/subscriptions/{SUB}/resourceGroups/myRg/providers/Microsoft.Compute/virtualMachines/vm1"));
        assert_eq!(vm.subscription().map(|s| s.as_str()), Some(SUB));
        assert_eq!(vm.resource_group().map(|r| r.as_str()), Some("myRg"));
        assert!(vm.is_resource());
        let rg = s(&format!("/subscriptions/{SUB}/resourceGroups/myRg"));
        assert!(!rg.is_resource());
        assert!(Scope::root().is_root());
        assert_eq!(Scope::root().key(), "/");
        assert_eq!(s(&format!("/subscriptions/{SUB}")).resource_group(), None);
        let vm_id: VmId = vm.to_string().parse().unwrap();
        assert_eq!(Scope::from(&vm_id), vm);
        assert_eq!(Scope::resource_group_scope(&vm_id.subscription, &vm_id.resource_group), rg);
    }

    fn check_contains(outer: &str, inner: &str, expected: bool) {
        assert_eq!(s(outer).contains(&s(inner)), expected, "{outer} contains {inner}");
    }

    #[test]
    fn containment() {
        let sub = format!("/subscriptions/{SUB}");
        let rg = format!("{sub}/resourceGroups/rg");
        let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm1");
        let table: Vec<(&str, &str, bool)> = vec![
            ("/", "/", true),
            ("/", &sub, true),
            ("/", &vm, true),
            (&sub, "/", false),
            (&sub, &sub, true),
            (&sub, &rg, true),
            (&sub, &vm, true),
            (&rg, &vm, true),
            (&rg, &sub, false),
            (&vm, &rg, false),
            (&vm, &vm, true),
        ];
        for (outer, inner, expected) in table {
            check_contains(outer, inner, expected);
        }
        check_contains(&format!("/subscriptions/{SUB}/resourceGroups/a"), &format!("/subscriptions/{SUB}/resourceGroups/ab"), false);
        check_contains(&format!("/subscriptions/{SUB}/resourceGroups/a"), &format!("/subscriptions/{SUB}/resourceGroups/A/"), true);
        check_contains(&format!("/subscriptions/{SUB}"), &format!("/subscriptions/{SUB2}/resourceGroups/rg"), false);
        check_contains(
            &format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm"),
            &format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm1"),
            false,
        );
    }

    fn arb_scope() -> impl Strategy<Value = String> {
        let sub = prop_oneof![Just(SUB), Just(SUB2)];
        let name = prop_oneof![Just("a"), Just("ab"), Just("A"), Just("b")];
        (0usize..4, sub, name.clone(), name.clone(), name).prop_map(|(depth, sub, rg, vm, nic)| match depth {
            0 => "/".to_owned(),
            1 => format!("/subscriptions/{sub}"),
            2 => format!("/subscriptions/{sub}/resourceGroups/{rg}"),
            _ if nic == "b" => format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}"),
            _ => format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/networkInterfaces/{nic}"),
        })
    }

    fn segments(key: &str) -> Vec<&str> {
        key.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// `name` with each letter in its other case, where that is one letter.
    fn swap_case(name: &str) -> String {
        fn one(mut mapped: impl Iterator<Item = char>) -> Option<char> {
            let first = mapped.next()?;
            mapped.next().is_none().then_some(first)
        }
        name.chars().map(|c| one(c.to_uppercase()).filter(|u| *u != c).or_else(|| one(c.to_lowercase())).unwrap_or(c)).collect()
    }

    proptest! {
        #[test]
        fn contains_is_a_partial_order_by_segment_prefix(a in arb_scope(), b in arb_scope(), c in arb_scope()) {
            let (a, b, c) = (s(&a), s(&b), s(&c));
            prop_assert!(a.contains(&a));
            if a.contains(&b) && b.contains(&a) {
                prop_assert_eq!(&a, &b);
            }
            if a.contains(&b) && b.contains(&c) {
                prop_assert!(a.contains(&c));
            }
            let (sa, sb) = (segments(a.key()), segments(b.key()));
            prop_assert_eq!(a.contains(&b), sb.starts_with(&sa));
        }

        #[test]
        fn display_round_trips(a in arb_scope()) {
            let scope = s(&a);
            prop_assert_eq!(s(&scope.to_string()), scope.clone());
            prop_assert_eq!(s(&a.to_uppercase()), scope);
        }

        /// A scope spelled in any case holds exactly what it holds in its own spelling, for names in
        /// any letters: the same resources, and never a neighbour whose name it begins.
        #[test]
        fn containment_ignores_case_in_any_letters(
            rg in "[A-Za-zΣσςſµΜμßẞİǅǄǆ\u{212a}Ää_-]{1,10}",
            vm in "[A-Za-zΣσςſµΜμßẞİǅǄǆ\u{212a}Ää_-]{1,10}",
        ) {
            let (rg2, vm2) = (swap_case(&rg), swap_case(&vm));
            let group = s(&format!("/subscriptions/{SUB}/resourceGroups/{rg}"));
            let group2 = s(&format!("/SUBSCRIPTIONS/{}/RESOURCEGROUPS/{rg2}", SUB.to_uppercase()));
            let machine = s(&format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}"));
            let machine2 = s(&format!("/subscriptions/{SUB}/resourcegroups/{rg2}/providers/microsoft.compute/VIRTUALMACHINES/{vm2}"));
            prop_assert_eq!(&group, &group2);
            prop_assert_eq!(&machine, &machine2);
            prop_assert!(group2.contains(&machine) && group.contains(&machine2) && machine2.contains(&machine));
            let vm_id: VmId = machine2.to_string().parse().unwrap();
            prop_assert_eq!(Scope::from(&vm_id).key().to_owned(), vm_id.key());
            let neighbour_group = s(&format!("/subscriptions/{SUB}/resourceGroups/{rg2}1/providers/Microsoft.Compute/virtualMachines/{vm}"));
            let neighbour_vm = s(&format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm2}1"));
            prop_assert!(!group.contains(&neighbour_group) && !machine.contains(&neighbour_vm) && !neighbour_vm.contains(&machine));
        }

        #[test]
        fn parser_never_panics(input in "\\PC{0,120}") {
            let _ = input.parse::<Scope>();
        }
    }
}
