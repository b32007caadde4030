//! ARM names and resource IDs.
//!
//! ARM treats names and IDs case-insensitively; each type keeps the spelling it
//! was given for display and offers `key()`, the lower-cased form used to compare
//! and to look things up.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} '{input}' is invalid: {why}")]
pub struct IdError {
    pub what: &'static str,
    pub input: String,
    pub why: String,
}

fn id_error(what: &'static str, input: &str, why: impl Into<String>) -> IdError {
    IdError { what, input: input.to_owned(), why: why.into() }
}

/// Checks an ARM name against `^[-\w\._\(\)]+$` with a length bound.
fn check_name(what: &'static str, input: &str, max: usize) -> Result<(), IdError> {
    if input.is_empty() {
        return Err(id_error(what, input, "it is empty"));
    }
    if input.chars().count() > max {
        return Err(id_error(what, input, format!("it is longer than {max} characters")));
    }
    if let Some(bad) = input.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))) {
        return Err(id_error(what, input, format!("'{bad}' is not allowed; use letters, digits, '-', '_', '.', '(' and ')'")));
    }
    if input.ends_with('.') {
        return Err(id_error(what, input, "it must not end with '.'"));
    }
    Ok(())
}

macro_rules! arm_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The lower-cased form, for comparing and looking up.
            pub fn key(&self) -> String {
                self.0.to_lowercase()
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                check_name($what, s, $max)?;
                Ok($name(s.to_owned()))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.key() == other.key()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

arm_name!(
    /// A resource group name (ARM: 1–90 characters).
    ResourceGroup, "resource group name", 90
);
arm_name!(
    /// A location (`westeurope`, `local`).
    Location, "location", 90
);
arm_name!(
    /// A JIT policy's name (`default` in the portal's convention).
    PolicyName, "policy name", 90
);
arm_name!(
    /// A virtual machine's name (ARM allows 64 characters for Linux VMs).
    VmName, "virtual machine name", 64
);

/// A subscription ID: a GUID, kept in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(String);

impl SubscriptionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SubscriptionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let groups: Vec<&str> = s.split('-').collect();
        let shape_ok =
            groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
        if !shape_ok {
            return Err(id_error("subscription ID", s, "it must be a GUID such as 20ff7fc3-e762-44dd-bd96-b71116dcdc23"));
        }
        Ok(SubscriptionId(s.to_ascii_lowercase()))
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One segment of a resource ID's template: a fixed word, or a named value.
enum Segment {
    Literal(&'static str),
    Value(&'static str),
}

use Segment::{Literal, Value};

/// Matches `input` against `template` (fixed words compare case-insensitively)
/// and returns the values in order.
fn match_template<'a>(what: &'static str, input: &'a str, template: &[Segment]) -> Result<Vec<&'a str>, IdError> {
    let rest = input.strip_prefix('/').ok_or_else(|| id_error(what, input, "it must start with '/subscriptions/'"))?;
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(id_error(what, input, "it has an empty segment"));
    }
    let mut values = Vec::new();
    for (i, expected) in template.iter().enumerate() {
        match (expected, segs.get(i)) {
            (Literal(word), Some(got)) if got.eq_ignore_ascii_case(word) => {}
            (Literal(word), Some(got)) => return Err(id_error(what, input, format!("expected '{word}' where it says '{got}'"))),
            (Literal(word), None) => return Err(id_error(what, input, format!("it ends before '{word}'"))),
            (Value(_), Some(got)) => values.push(*got),
            (Value(name), None) => return Err(id_error(what, input, format!("it ends before the {name}"))),
        }
    }
    if segs.len() > template.len() {
        return Err(id_error(what, input, "it goes on after the resource name"));
    }
    Ok(values)
}

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmId {
    pub subscription: SubscriptionId,
    pub resource_group: ResourceGroup,
    pub name: VmName,
}

impl VmId {
    pub fn key(&self) -> String {
        self.to_string().to_lowercase()
    }
}

impl FromStr for VmId {
    type Err = IdError;
    fn from_str(input: &str) -> Result<Self, IdError> {
        const TEMPLATE: [Segment; 8] = [
            Literal("subscriptions"),
            Value("subscription ID"),
            Literal("resourceGroups"),
            Value("resource group name"),
            Literal("providers"),
            Literal("Microsoft.Compute"),
            Literal("virtualMachines"),
            Value("virtual machine name"),
        ];
        let v = match_template("virtual machine ID", input, &TEMPLATE)?;
        Ok(VmId { subscription: v[0].parse()?, resource_group: v[1].parse()?, name: v[2].parse()? })
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
            self.subscription, self.resource_group, self.name
        )
    }
}

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies/{name}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyId {
    pub subscription: SubscriptionId,
    pub resource_group: ResourceGroup,
    pub location: Location,
    pub name: PolicyName,
}

impl PolicyId {
    pub fn key(&self) -> String {
        self.to_string().to_lowercase()
    }
}

impl FromStr for PolicyId {
    type Err = IdError;
    fn from_str(input: &str) -> Result<Self, IdError> {
        const TEMPLATE: [Segment; 10] = [
            Literal("subscriptions"),
            Value("subscription ID"),
            Literal("resourceGroups"),
            Value("resource group name"),
            Literal("providers"),
            Literal("Microsoft.Security"),
            Literal("locations"),
            Value("location"),
            Literal("jitNetworkAccessPolicies"),
            Value("policy name"),
        ];
        let v = match_template("JIT policy ID", input, &TEMPLATE)?;
        Ok(PolicyId { subscription: v[0].parse()?, resource_group: v[1].parse()?, location: v[2].parse()?, name: v[3].parse()? })
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Security/locations/{}/jitNetworkAccessPolicies/{}",
            self.subscription, self.resource_group, self.location, self.name
        )
    }
}

/// Where a list or query looks: a whole subscription, or narrower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub subscription: SubscriptionId,
    pub resource_group: Option<ResourceGroup>,
    pub location: Option<Location>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";

    fn check_vm(input: &str, expected: Result<&str, &str>) {
        match (input.parse::<VmId>(), expected) {
            (Ok(id), Ok(shown)) => assert_eq!(id.to_string(), shown),
            (Err(e), Err(why)) => assert!(e.to_string().contains(why), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn vm_ids() {
        let canonical = format!("/subscriptions/{SUB}/resourceGroups/myRg1/providers/Microsoft.Compute/virtualMachines/vm1");
        check_vm(&canonical, Ok(&canonical));
        check_vm(
            &format!("/SUBSCRIPTIONS/{}/resourcegroups/myRg1/providers/microsoft.compute/VIRTUALMACHINES/vm1", SUB.to_uppercase()),
            Ok(&canonical),
        );
        check_vm("subscriptions/x", Err("must start with"));
        check_vm(&format!("/subscriptions/{SUB}/resourceGroups/rg"), Err("ends before 'providers'"));
        check_vm("/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v", Err("GUID"));
        check_vm(
            &format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualMachines/v"),
            Err("expected 'Microsoft.Compute'"),
        );
        check_vm(&format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v/extra"), Err("goes on"));
        check_vm(
            &format!("/subscriptions/{SUB}/resourceGroups/r g/providers/Microsoft.Compute/virtualMachines/v"),
            Err("' ' is not allowed"),
        );
        check_vm(&format!("/subscriptions/{SUB}//resourceGroups"), Err("empty segment"));
    }

    #[test]
    fn policy_ids_round_trip() {
        let id = format!(
            "/subscriptions/{SUB}/resourceGroups/myRg1/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
        );
        let parsed: PolicyId = id.parse().unwrap();
        assert_eq!(parsed.to_string(), id);
        assert_eq!(parsed.name.as_str(), "default");
        assert!(format!("{id}/initiate").parse::<PolicyId>().is_err());
    }

    #[test]
    fn names_compare_case_insensitively() {
        let a: ResourceGroup = "MyRG".parse().unwrap();
        let b: ResourceGroup = "myrg".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "MyRG");
        assert!("a".repeat(91).parse::<ResourceGroup>().is_err());
        assert!("rg.".parse::<ResourceGroup>().is_err());
    }

    proptest! {
        #[test]
        fn vm_id_round_trips(rg in "[A-Za-z0-9_()-]{1,20}", name in "[A-Za-z0-9_-]{1,20}") {
            let id = format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}");
            let parsed: VmId = id.parse().unwrap();
            prop_assert_eq!(parsed.to_string(), id);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,120}") {
            let _ = s.parse::<VmId>();
            let _ = s.parse::<PolicyId>();
            let _ = s.parse::<SubscriptionId>();
        }
    }
}
