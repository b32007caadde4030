//! Fuzzing of the parsers that take user input: ARM names and resource IDs, scopes, source prefixes,
//! ISO 8601 durations, protocols and OS types. Each never panics, on any text or on text shaped like
//! what it expects, and whatever it accepts it shows in a form it reads back as the same value; ARM's
//! names and IDs compare ignoring case, so a changed case reads back as the same value too.
//! (The modules' own tests check their rules on chosen examples.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;

use proptest::prelude::*;

use ajar_domain::access::Scope;
use ajar_domain::inventory::OsType;
use ajar_domain::policy::Protocol;
use ajar_domain::{AccessDuration, Location, PolicyId, PolicyName, ResourceGroup, SourcePrefix, SubscriptionId, VmId, VmName};

/// Few enough cases that the whole file runs in about a second.
fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, ..ProptestConfig::default() }
}

/// The words a resource ID or scope is made of, with near misses, for inputs shaped like one.
const WORDS: &[&str] = &[
    "subscriptions",
    "SUBSCRIPTIONS",
    "resourceGroups",
    "resourcegroups",
    "providers",
    "Microsoft.Compute",
    "microsoft.compute",
    "Microsoft.Security",
    "Microsoft.Authorization",
    "virtualMachines",
    "locations",
    "jitNetworkAccessPolicies",
    "roleAssignments",
    "20ff7fc3-e762-44dd-bd96-b71116dcdc23",
    "20FF7FC3-E762-44DD-BD96-B71116DCDC23",
    "20ff7fc3-e762-44dd-bd96-b71116dcdc2",
    "rg",
    "vm1",
    "default",
    "westeurope",
    "a.",
    ".",
    "..",
    "",
    " ",
    "%2F",
    "é",
    "(x)",
];

/// A `/`-joined path of [`WORDS`] and random segments.
fn id_like() -> impl Strategy<Value = String> {
    let segment = prop_oneof![4 => proptest::sample::select(WORDS).prop_map(str::to_owned), 1 => "\\PC{0,8}"];
    (proptest::collection::vec(segment, 0..12), any::<bool>(), any::<bool>()).prop_map(|(segs, lead, trail)| {
        let mut s = segs.join("/");
        if lead {
            s.insert(0, '/');
        }
        if trail {
            s.push('/');
        }
        s
    })
}

/// An ARM name: `^[-\w._()]+$`, not ending in `.`, of 1 to `max` characters, with non-ASCII letters.
fn arm_name(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[-a-zA-Z0-9_.()éÅ中]{{0,{}}}[-a-zA-Z0-9_()éÅ中]", max - 1)).unwrap()
}

/// An ARM name of ASCII only, where changing case is one-to-one.
fn ascii_name(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[-a-zA-Z0-9_.()]{{0,{}}}[-a-zA-Z0-9_()]", max - 1)).unwrap()
}

fn guid(n: u128) -> String {
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// `s` with the case of each ASCII letter flipped where `flips` says so.
fn recase(s: &str, flips: &[bool]) -> String {
    s.chars()
        .zip(flips.iter().cycle())
        .map(|(c, flip)| match (flip, c.is_ascii_lowercase()) {
            (false, _) => c,
            (true, true) => c.to_ascii_uppercase(),
            (true, false) => c.to_ascii_lowercase(),
        })
        .collect()
}

fn flips() -> impl Strategy<Value = Vec<bool>> {
    proptest::collection::vec(any::<bool>(), 1..16)
}

/// Parses `shown` back and checks it is `value`, and that its display is stable.
fn reads_back<T: FromStr + PartialEq + std::fmt::Debug + std::fmt::Display>(value: &T) -> Result<(), TestCaseError>
where
    T::Err: std::fmt::Debug,
{
    let shown = value.to_string();
    let back: T = shown.parse().map_err(|e| TestCaseError::fail(format!("{shown}: {e:?}")))?;
    prop_assert_eq!(&back, value);
    prop_assert_eq!(back.to_string(), shown);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn id_parsers_never_panic(s in prop_oneof![id_like(), "\\PC{0,160}", any::<String>()]) {
        let _ = s.parse::<VmId>();
        let _ = s.parse::<PolicyId>();
        let _ = s.parse::<SubscriptionId>();
        let _ = s.parse::<ResourceGroup>();
        let _ = s.parse::<Location>();
        let _ = s.parse::<PolicyName>();
        let _ = s.parse::<VmName>();
        let _ = s.parse::<Scope>();
    }

    #[test]
    fn accepted_ids_read_back(s in id_like()) {
        if let Ok(id) = s.parse::<VmId>() {
            reads_back(&id)?;
            prop_assert_eq!(Scope::from(&id), id.to_string().parse::<Scope>().unwrap());
        }
        if let Ok(id) = s.parse::<PolicyId>() {
            reads_back(&id)?;
        }
        if let Ok(scope) = s.parse::<Scope>() {
            prop_assert_eq!(&scope.to_string().parse::<Scope>().unwrap(), &scope);
            prop_assert_eq!(scope.to_string().parse::<Scope>().unwrap().to_string(), scope.to_string());
            prop_assert!(scope.contains(&scope));
        }
    }

    #[test]
    fn names_read_back(rg in arm_name(90), vm in arm_name(64)) {
        let rg: ResourceGroup = rg.parse().unwrap();
        let vm: VmName = vm.parse().unwrap();
        reads_back(&rg)?;
        reads_back(&vm)?;
        reads_back(&rg.as_str().parse::<Location>().unwrap())?;
        reads_back(&rg.as_str().parse::<PolicyName>().unwrap())?;
    }

    #[test]
    fn names_compare_ignoring_case(name in ascii_name(64), f in flips()) {
        let other = recase(&name, &f);
        prop_assert_eq!(name.parse::<ResourceGroup>().unwrap(), other.parse::<ResourceGroup>().unwrap());
        prop_assert_eq!(name.parse::<VmName>().unwrap(), other.parse::<VmName>().unwrap());
        prop_assert_eq!(name.parse::<VmName>().unwrap().key(), other.to_lowercase());
    }

    #[test]
    fn names_past_their_limit_are_refused(name in ascii_name(40)) {
        let long_rg = format!("{}{name}", "a".repeat(91 - name.len().min(90)));
        let long_vm = format!("{}{name}", "v".repeat(65));
        let dotted = format!("{name}.");
        prop_assert!(long_rg.parse::<ResourceGroup>().is_err());
        prop_assert!(long_vm.parse::<VmName>().is_err());
        prop_assert!(dotted.parse::<ResourceGroup>().is_err());
    }

    #[test]
    fn subscription_ids_read_back_in_lower_case(n in any::<u128>(), f in flips()) {
        let shown = guid(n);
        let sub: SubscriptionId = recase(&shown, &f).parse().unwrap();
        prop_assert_eq!(sub.as_str(), shown.as_str());
        reads_back(&sub)?;
    }

    #[test]
    fn resource_ids_read_back_in_any_case(n in any::<u128>(), rg in ascii_name(90), loc in ascii_name(20), name in ascii_name(64), f in flips()) {
        let sub = guid(n);
        let vm = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}");
        let id: VmId = vm.parse().unwrap();
        reads_back(&id)?;
        prop_assert_eq!(recase(&vm, &f).parse::<VmId>().unwrap(), id.clone());
        prop_assert_eq!(recase(&vm, &f).parse::<VmId>().unwrap().key(), id.key());
        let policy = format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies/{name}"
        );
        let pid: PolicyId = policy.parse().unwrap();
        reads_back(&pid)?;
        prop_assert_eq!(recase(&policy, &f).parse::<PolicyId>().unwrap(), pid);
        prop_assert_eq!(recase(&vm, &f).parse::<Scope>().unwrap(), Scope::from(&id));
        // Anything after the name is refused, not ignored.
        let longer = format!("{vm}/extra");
        prop_assert!(longer.parse::<VmId>().is_err());
    }

    #[test]
    fn prefixes_never_panic(s in prop_oneof!["[0-9a-fA-F:./* %\\[\\]]{0,48}", "\\PC{0,64}", any::<String>()]) {
        if let Ok(p) = s.parse::<SourcePrefix>() {
            reads_back(&p)?;
            prop_assert!(p.contains(&p));
        }
    }

    #[test]
    fn durations_never_panic(s in prop_oneof!["[PpTt0-9.,HMSDWY +-]{0,24}", "\\PC{0,32}"]) {
        if let Ok(d) = s.parse::<AccessDuration>() {
            reads_back(&d)?;
            prop_assert!(d.whole_seconds() >= 0);
        }
    }

    #[test]
    fn durations_read_back_from_their_parts(w in 0u32..100, d in 0u32..1000, h in 0u32..1000, m in 0u32..1000, s in 0u32..100_000, f in flips()) {
        let text = format!("P{w}W{d}DT{h}H{m}M{s}S");
        let parsed: AccessDuration = recase(&text, &f).parse().unwrap();
        let expected = i64::from(w) * 7 * 86_400 + i64::from(d) * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s);
        prop_assert_eq!(parsed.whole_seconds(), expected);
        reads_back(&parsed)?;
    }

    #[test]
    fn keywords_read_back_in_any_case(s in "[a-zA-Z*]{0,8}", f in flips()) {
        for word in ["TCP", "UDP", "*"] {
            let p: Protocol = recase(word, &f).parse().unwrap();
            prop_assert_eq!(p.as_str(), word);
        }
        for word in ["Linux", "Windows"] {
            let os: OsType = recase(word, &f).parse().unwrap();
            prop_assert_eq!(os.as_str(), word);
        }
        let _ = s.parse::<Protocol>();
        let _ = s.parse::<OsType>();
    }
}
