//! ARM names and resource IDs.
//!
//! ARM treats names and IDs case-insensitively; each type keeps the spelling it
//! was given for display and offers `key()`, its [`arm_key`], used to compare
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

/// The form ARM names and IDs are compared and looked up in: each character folded on its own, to
/// the lower case of its upper case. So every spelling of a name that differs only in case has one
/// key, also where lower-casing alone would keep two (`ς`/`σ` both under `Σ`, `ſ`/`s` under `S`,
/// `µ`/`μ` under `Μ`), and the key of a whole ID is the keys of its segments joined (no character's
/// fold depends on its neighbours, as the final sigma's does in `str::to_lowercase`). A character
/// whose upper case is several (`ß` → `SS`) is only lower-cased. ASCII folds as
/// `to_ascii_lowercase`. The store keeps these keys and folds in SQL with this same function.
pub fn arm_key(s: &str) -> String {
    let mut key = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            key.push(c.to_ascii_lowercase());
            continue;
        }
        let mut upper = c.to_uppercase();
        let upper = match (upper.next(), upper.next()) {
            (Some(u), None) => u,
            _ => c,
        };
        key.extend(upper.to_lowercase());
    }
    key
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

            /// The [`arm_key`], for comparing and looking up.
            pub fn key(&self) -> String {
                arm_key(&self.0)
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
    /// The [`arm_key`] of the whole ID.
    pub fn key(&self) -> String {
        arm_key(&self.to_string())
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
    /// The [`arm_key`] of the whole ID.
    pub fn key(&self) -> String {
        arm_key(&self.to_string())
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

    /// The characters a case mapping takes `c` to in one step, where it takes it to one character.
    fn single_case_variants(c: char) -> Vec<char> {
        fn single(mut mapped: impl Iterator<Item = char>) -> Option<char> {
            let first = mapped.next()?;
            mapped.next().is_none().then_some(first)
        }
        single(c.to_uppercase()).into_iter().chain(single(c.to_lowercase())).collect()
    }

    /// Over every character: the key is a fixed point, every one-character case variant has the same
    /// key, a key written by lower-casing (what the store kept before) folds to the same key again, and
    /// ASCII folds as `to_ascii_lowercase`.
    #[test]
    fn arm_key_gives_every_case_variant_of_a_character_one_key() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let key = arm_key(c.encode_utf8(&mut [0; 4]));
            assert_eq!(arm_key(&key), key, "{c:?}: the key is not a fixed point");
            for v in single_case_variants(c) {
                assert_eq!(arm_key(v.encode_utf8(&mut [0; 4])), key, "{c:?} and its case variant {v:?}");
            }
            assert_eq!(arm_key(&c.to_lowercase().collect::<String>()), key, "{c:?} lower-cased");
            if c.is_ascii() {
                assert_eq!(key, c.to_ascii_lowercase().to_string());
            }
        }
    }

    #[test]
    fn arm_key_table() {
        // (spellings that are one name, a spelling that is another)
        let table: &[(&[&str], &str)] = &[
            (&["DEFAULT", "default", "Default"], "defaults"),
            // Lower-casing keeps ς (a final sigma) and σ apart; ARM upper-cases both to Σ.
            (&["ΑΣ", "ας", "ασ", "Ας", "αΣ"], "α"),
            (&["vmſ", "VMS", "vms"], "vm"),
            (&["µ", "μ", "Μ"], "m"),
            (&["ǅ", "Ǆ", "ǆ"], "dz"),
            (&["\u{212a}", "K", "k"], "κ"),
            // ß upper-cases to two letters: it is no spelling of "ss", as in ARM.
            (&["ß", "ẞ"], "ss"),
            (&["İ", "i\u{307}"], "i"),
            (&["Ärg", "ärg", "ÄRG"], "arg"),
        ];
        for (same, other) in table {
            let key = arm_key(same[0]);
            for s in *same {
                assert_eq!(arm_key(s), key, "{s} is a spelling of {}", same[0]);
            }
            assert_ne!(arm_key(other), key, "{other} is not a spelling of {}", same[0]);
        }
        // A whole ID's key is its segments' keys joined: nothing folds by its neighbours.
        assert_eq!(arm_key("ΑΣ/ΑΣ.Σ-Σ"), format!("{}/{}.{}-{}", arm_key("ΑΣ"), arm_key("ΑΣ"), arm_key("Σ"), arm_key("Σ")));
    }

    /// Letters whose case mappings are unusual, for spelling names.
    const TRICKY: &str = "[A-Za-z0-9ΣσςſµΜμßẞİǅǄǆΩω\u{2126}\u{212a}Ää_-]{1,12}";

    /// `s` with each character changed to one of its one-character case variants (or kept), as `pick` says.
    fn respell(s: &str, pick: &[u8]) -> String {
        s.chars()
            .zip(pick.iter().cycle())
            .map(|(c, p)| {
                let mut variants = single_case_variants(c);
                variants.push(c);
                variants[usize::from(*p) % variants.len()]
            })
            .collect()
    }

    proptest! {
        #[test]
        fn ids_spelled_in_any_case_are_one_id(rg in TRICKY, name in TRICKY, pick in proptest::collection::vec(any::<u8>(), 1..16)) {
            let id = format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}");
            let other = respell(&format!("/SUBSCRIPTIONS/{}/resourcegroups/{rg}/PROVIDERS/microsoft.COMPUTE/virtualmachines/{name}", SUB.to_uppercase()), &pick);
            let (a, b): (VmId, VmId) = (id.parse().unwrap(), other.parse().unwrap());
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.key(), b.key());
            prop_assert_eq!(a.key(), format!("/subscriptions/{SUB}/resourcegroups/{}/providers/microsoft.compute/virtualmachines/{}", a.resource_group.key(), a.name.key()));
            // Another name is another machine, whatever its case.
            let neighbour: VmId = format!("{other}1").parse().unwrap();
            prop_assert_ne!(&a, &neighbour);
            prop_assert_ne!(a.key(), neighbour.key());
        }

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
