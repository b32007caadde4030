//! Fuzzing of the wire parsers: every request body the API reads, the `Microsoft.Authorization` paths
//! and role references, and date-times. Each never panics, on any bytes or on JSON shaped like what it
//! expects, and refuses with an ARM error a client can act on (4xx, a code and a message); what the
//! server writes, it reads back as the same value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};

use ajar_api::ApiError;
use ajar_api::agent::{EnrollIn, NftablesStatus, ReportIn, RevokeIn, RevokePortIn, RevokeVmIn, enroll_in, report_in, revoke_in};
use ajar_api::ajar_v1::{EnableIn, enable_in};
use ajar_api::authorization::{
    AuthorizationKind, AuthorizationPath, PRINCIPAL_TYPES, authorization_path, parse_role_definition_ref, role_assignment_id,
    role_assignment_in, role_assignment_out, role_definition_id, role_definition_in, role_definition_out,
};
use ajar_api::compute::{vm_in, vm_out};
use ajar_api::jit::{PortRuleIn, initiate_in, policy_in, policy_out, port_rule_out};
use ajar_api::principals::{OidcLink, PrincipalIn, principal_in, requester_role_in, token_in};
use ajar_api::wire_time;
use ajar_domain::access::{CATALOG, RoleAssignment, RoleDefinition, RoleKind, Scope};
use ajar_domain::initiate::{EndSpec, InitiateDraft, PortAsk, VmAsk};
use ajar_domain::inventory::{EnforcementPoint, OsType, Vm};
use ajar_domain::policy::{Policy, PortRule, Protocol, VmPolicy};
use ajar_domain::{AccessDuration, Location, PolicyId, ResourceGroup, SourcePrefix, Sources, SubscriptionId, VmId};

/// Few enough cases that the whole file runs in a few seconds.
fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, ..ProptestConfig::default() }
}

// ------------------------------------------------------------------ inputs shaped like requests

/// Every field name the API's bodies have, so that generated objects often hit a real field.
const KEYS: &[&str] = &[
    "id",
    "name",
    "type",
    "kind",
    "location",
    "properties",
    "virtualMachines",
    "ports",
    "number",
    "protocol",
    "allowedSourceAddressPrefix",
    "allowedSourceAddressPrefixes",
    "maxRequestAccessDuration",
    "requests",
    "provisioningState",
    "cutConnectionsOnRevoke",
    "publicIpAddress",
    "justification",
    "endTimeUtc",
    "duration",
    "policyName",
    "storageProfile",
    "osDisk",
    "osType",
    "networkProfile",
    "privateIPAddresses",
    "roleName",
    "description",
    "permissions",
    "actions",
    "notActions",
    "dataActions",
    "notDataActions",
    "assignableScopes",
    "Name",
    "Id",
    "IsCustom",
    "Actions",
    "NotActions",
    "AssignableScopes",
    "Condition",
    "roleDefinitionId",
    "principalId",
    "principalType",
    "scope",
    "condition",
    "oidc",
    "issuer",
    "subject",
    "expiresInDays",
    "expiresOn",
    "apiOnly",
    "resourceGroup",
    "addresses",
    "version",
    "nftables",
    "usable",
    "reason",
    "appliedEtag",
    "driftRepaired",
    "cutsDone",
    "requestId",
    "connections",
    "error",
    "",
];

const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";

/// Values that are valid somewhere, or nearly.
fn plausible_text() -> impl Strategy<Value = String> {
    let vm = format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1");
    let role = format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7");
    let fixed: Vec<String> = [
        vm.as_str(),
        role.as_str(),
        SUB,
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "/",
        "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/rg",
        "Microsoft.Security/locations/jitNetworkAccessPolicies/*",
        "*",
        "PT3H",
        "P1D",
        "PT0S",
        "P99999999999999999999D",
        "TCP",
        "udp",
        "Linux",
        "user",
        "service",
        "CustomRole",
        "User",
        "Basic",
        "10.0.0.0/8",
        "10.0.0.1/8",
        "2001:db8::/32",
        "::ffff:10.0.0.1",
        "2026-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00+23:59",
        "2026-02-30T00:00:00Z",
        "",
        " ",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    prop_oneof![3 => proptest::sample::select(fixed), 1 => "\\PC{0,24}", 1 => any::<String>()]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![Just(0i64), Just(-1), Just(22), Just(65_535), Just(65_536), Just(i64::MAX), Just(i64::MIN), any::<i64>()]
            .prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(18_446_744_073_709_551_615u64)),
        plausible_text().prop_map(Value::String),
    ]
}

/// JSON of any shape, whose object keys are mostly the API's field names.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 96, 6, |inner| {
        let key = prop_oneof![4 => proptest::sample::select(KEYS).prop_map(str::to_owned), 1 => "\\PC{0,6}"];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key, inner, 0..7).prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A body: arbitrary bytes, or JSON shaped like a request.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..64),
        4 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
}

/// A refusal a client can act on: ARM's error body with a 4xx status, a code and a message.
fn refused_well(e: &ApiError) -> Result<(), TestCaseError> {
    prop_assert!((400..500).contains(&e.status), "{e:?}");
    prop_assert!(!e.body.code.is_empty() && !e.body.message.is_empty(), "{e:?}");
    let back: Value = serde_json::from_slice(&e.to_json()).unwrap();
    prop_assert_eq!(back["error"]["code"].as_str(), Some(e.body.code.as_str()));
    Ok(())
}

fn check<T>(result: Result<T, ApiError>) -> Result<(), TestCaseError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => refused_well(&e),
    }
}

// ------------------------------------------------------------------ values the server writes

fn guid(n: u128) -> String {
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn ascii_name(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[-a-zA-Z0-9_.()]{{0,{}}}[-a-zA-Z0-9_()]", max - 1)).unwrap()
}

fn vm_id() -> impl Strategy<Value = VmId> {
    (any::<u128>(), ascii_name(20), ascii_name(20)).prop_map(|(sub, rg, name)| {
        format!("/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}", guid(sub)).parse().unwrap()
    })
}

fn policy_id() -> impl Strategy<Value = PolicyId> {
    (any::<u128>(), ascii_name(20), ascii_name(12), ascii_name(20)).prop_map(|(sub, rg, loc, name)| {
        format!(
            "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies/{name}",
            guid(sub)
        )
        .parse()
        .unwrap()
    })
}

/// An address as the server keeps it: IPv4, or IPv6 that is not IPv4-mapped (those become IPv4).
fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::from(std::net::Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::from(std::net::Ipv6Addr::from(a))).prop_filter("not IPv4-mapped", |a| a.to_canonical() == *a),
    ]
}

fn prefix() -> impl Strategy<Value = SourcePrefix> {
    prop_oneof![
        Just(SourcePrefix::Any),
        (any::<u32>(), 0u32..=32).prop_map(|(a, len)| {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            format!("{}/{len}", std::net::Ipv4Addr::from(a & mask)).parse().unwrap()
        }),
        (any::<u128>(), 0u32..128).prop_map(|(a, len)| {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            format!("{}/{len}", std::net::Ipv6Addr::from(a & mask)).parse().unwrap()
        }),
        address().prop_map(SourcePrefix::host),
    ]
}

fn sources() -> impl Strategy<Value = Sources> {
    prop_oneof![prefix().prop_map(Sources::One), proptest::collection::vec(prefix(), 1..4).prop_map(Sources::List)]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    proptest::sample::select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Any])
}

fn duration() -> impl Strategy<Value = AccessDuration> {
    (0i64..100_000_000, 0i64..1000).prop_map(|(s, ms)| AccessDuration::from(Duration::seconds(s) + Duration::milliseconds(ms)))
}

fn port_rule() -> impl Strategy<Value = PortRule> {
    (any::<u16>(), protocol(), sources(), duration()).prop_map(|(number, protocol, sources, max_duration)| PortRule {
        number,
        protocol,
        sources,
        max_duration,
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    let vm = (vm_id(), proptest::collection::vec(port_rule(), 0..4), proptest::option::of("\\PC{0,16}"))
        .prop_map(|(vm, ports, public_ip)| VmPolicy { vm, ports, public_ip });
    (policy_id(), proptest::option::of(Just("Basic".to_owned())), proptest::collection::vec(vm, 0..3), any::<bool>())
        .prop_map(|(id, kind, vms, cut_connections_on_revoke)| Policy { id, kind, vms, cut_connections_on_revoke })
}

/// A time the wire carries exactly: whole 100 ns, years 0000 to 9999.
fn wire_instant() -> impl Strategy<Value = OffsetDateTime> {
    let first = OffsetDateTime::parse("0000-01-01T00:00:00Z", &time::format_description::well_known::Rfc3339).unwrap();
    let last = OffsetDateTime::parse("9999-12-31T23:59:59.9999999Z", &time::format_description::well_known::Rfc3339).unwrap();
    let (lo, hi) = (first.unix_timestamp_nanos() / 100, last.unix_timestamp_nanos() / 100);
    prop_oneof![Just(lo), Just(hi), lo..=hi].prop_map(|t| OffsetDateTime::from_unix_timestamp_nanos(t * 100).unwrap())
}

/// Date-times as clients write them, often at the ends of the range and with odd offsets.
fn date_time_text() -> impl Strategy<Value = String> {
    let date = prop_oneof![Just((9999u32, 12u32, 31u32)), Just((0, 1, 1)), (0u32..=9999, 0u32..14, 0u32..33)];
    let clock = prop_oneof![Just((23u32, 59u32, 59u32)), Just((0, 0, 0)), (0u32..25, 0u32..61, 0u32..62)];
    let offset = prop_oneof![
        Just("Z".to_owned()),
        Just("z".to_owned()),
        Just("".to_owned()),
        Just("+23:59".to_owned()),
        Just("-23:59".to_owned()),
        (0u32..30, 0u32..70, any::<bool>()).prop_map(|(h, m, plus)| format!("{}{h:02}:{m:02}", if plus { '+' } else { '-' })),
    ];
    let fraction = prop_oneof![Just(String::new()), "\\.[0-9]{1,12}"];
    (date, clock, fraction, offset, any::<bool>()).prop_map(|((y, mo, d), (h, mi, s), frac, off, t)| {
        format!("{y:04}-{mo:02}-{d:02}{}{h:02}:{mi:02}:{s:02}{frac}{off}", if t { 'T' } else { ' ' })
    })
}

fn role_scope() -> impl Strategy<Value = Scope> {
    (0u8..4, any::<u128>(), ascii_name(20), ascii_name(20)).prop_map(|(depth, sub, rg, vm)| {
        let sub = guid(sub);
        let text = match depth {
            0 => "/".to_owned(),
            1 => format!("/subscriptions/{sub}"),
            2 => format!("/subscriptions/{sub}/resourceGroups/{rg}"),
            _ => format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}"),
        };
        text.parse().unwrap()
    })
}

/// A display name the server accepts: not blank, no control characters.
fn display_name(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("\\PC{{1,{max}}}")).unwrap().prop_filter("not blank", |s| !s.trim().is_empty())
}

fn custom_role() -> impl Strategy<Value = RoleDefinition> {
    let actions: Vec<String> =
        CATALOG.iter().map(|(a, _)| (*a).to_owned()).chain(["*".to_owned(), "Microsoft.Security/*".to_owned()]).collect();
    (
        any::<u128>(),
        display_name(40).prop_filter("not a built-in role's name", |n| {
            !ajar_domain::access::builtin_roles().iter().any(|b| b.name.eq_ignore_ascii_case(n.trim()))
        }),
        "\\PC{0,40}",
        proptest::collection::vec(proptest::sample::select(actions.clone()), 1..4),
        proptest::collection::vec(proptest::sample::select(actions), 0..3),
        proptest::collection::vec(role_scope(), 1..3),
    )
        .prop_filter("not a built-in role's GUID", |(id, ..)| !ajar_domain::access::builtin_roles().iter().any(|b| b.id == guid(*id)))
        .prop_map(|(id, name, description, actions, not_actions, assignable_scopes)| RoleDefinition {
            id: guid(id),
            name,
            description,
            kind: RoleKind::Custom,
            actions,
            not_actions,
            assignable_scopes,
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn body_parsers_never_panic(body in body(), vm in vm_id(), policy in policy_id(), scope in role_scope(), name in plausible_text()) {
        let sub: SubscriptionId = SUB.parse().unwrap();
        let rg: ResourceGroup = "rg".parse().unwrap();
        let loc: Location = "local".parse().unwrap();
        check(policy_in(&policy, &body))?;
        check(initiate_in(&body))?;
        check(vm_in(&vm, &body))?;
        check(revoke_in(&body))?;
        check(enable_in(&body))?;
        check(enroll_in(&body, &sub, &rg, &loc))?;
        check(report_in(&body))?;
        check(role_definition_in(&guid(7), &body))?;
        check(role_definition_in(&name, &body))?;
        check(role_assignment_in(&scope, &guid(9), &body))?;
        check(role_assignment_in(&scope, &name, &body))?;
        check(principal_in(&body))?;
        check(token_in(&body, OffsetDateTime::now_utc()))?;
        check(requester_role_in(&body))?;
    }

    #[test]
    fn authorization_paths_never_panic(path in prop_oneof![
        "(/[a-zA-Z0-9.-]{0,12}){0,10}",
        "\\PC{0,80}",
        (role_scope(), "\\PC{0,20}").prop_map(|(s, rest)| format!("{}/providers/Microsoft.Authorization/{rest}", if s.is_root() { String::new() } else { s.to_string() })),
    ]) {
        check(authorization_path(&path))?;
        let _ = parse_role_definition_ref(&path);
    }

    #[test]
    fn authorization_paths_read_back(scope in role_scope(), name in proptest::option::of(ascii_name(36)), assignments in any::<bool>()) {
        let kind = if assignments { AuthorizationKind::RoleAssignments } else { AuthorizationKind::RoleDefinitions };
        let prefix = if scope.is_root() { String::new() } else { scope.to_string() };
        let mut path = format!("{prefix}/providers/Microsoft.Authorization/{}", kind.as_str());
        if let Some(n) = &name {
            path = format!("{path}/{n}");
        }
        prop_assert_eq!(authorization_path(&path).unwrap(), AuthorizationPath { scope: scope.clone(), kind, name: name.clone() });
        prop_assert_eq!(authorization_path(&path.to_uppercase()).unwrap().scope, scope.clone());
        if let Some(n) = name {
            let id = role_assignment_id(&scope, &n);
            prop_assert_eq!(authorization_path(&id).unwrap(), AuthorizationPath { scope, kind: AuthorizationKind::RoleAssignments, name: Some(n) });
        }
    }

    #[test]
    fn role_definition_refs_read_back(n in any::<u128>(), sub in proptest::option::of(any::<u128>()), upper in any::<bool>()) {
        let sub: Option<SubscriptionId> = sub.map(|s| guid(s).parse().unwrap());
        let id = role_definition_id(&guid(n), sub.as_ref());
        let id = if upper { id.to_uppercase() } else { id };
        prop_assert_eq!(parse_role_definition_ref(&id).unwrap(), (sub, guid(n)));
        prop_assert_eq!(parse_role_definition_ref(&guid(n).to_uppercase()).unwrap(), (None, guid(n)));
    }

    #[test]
    fn policies_read_back(policy in policy()) {
        let shown = serde_json::to_vec(&policy_out(&policy, "v1", &[], OffsetDateTime::now_utc())).unwrap();
        prop_assert_eq!(policy_in(&policy.id, &shown).unwrap(), policy);
    }

    #[test]
    fn initiate_bodies_read_back(
        asks in proptest::collection::vec((vm_id(), proptest::collection::vec((any::<u16>(), prop_oneof![
            wire_instant().prop_map(EndSpec::At),
            duration().prop_map(EndSpec::For),
        ], proptest::option::of(sources())), 0..3)), 0..3),
        justification in proptest::option::of("\\PC{0,40}"),
    ) {
        let draft = InitiateDraft {
            vms: asks.into_iter().map(|(vm, ports)| VmAsk {
                vm,
                ports: ports.into_iter().map(|(number, end, sources)| PortAsk { number, end, sources }).collect(),
            }).collect(),
            justification,
        };
        let body = json!({
            "virtualMachines": draft.vms.iter().map(|vm| json!({"id": vm.vm.to_string(), "ports": vm.ports.iter().map(|p| {
                let mut port = json!({"number": p.number});
                match p.end {
                    EndSpec::At(t) => port["endTimeUtc"] = json!(wire_time::format(t)),
                    EndSpec::For(d) => port["duration"] = json!(d.to_string()),
                }
                match &p.sources {
                    Some(Sources::One(s)) => port["allowedSourceAddressPrefix"] = json!(s.to_string()),
                    Some(Sources::List(l)) => port["allowedSourceAddressPrefixes"] = json!(l.iter().map(ToString::to_string).collect::<Vec<_>>()),
                    None => {}
                }
                port
            }).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "justification": draft.justification,
        });
        prop_assert_eq!(initiate_in(&serde_json::to_vec(&body).unwrap()).unwrap(), draft);
    }

    #[test]
    fn machines_read_back(id in vm_id(), loc in ascii_name(20), linux in any::<bool>(), addresses in proptest::collection::vec(address(), 0..4)) {
        let vm = Vm {
            id,
            location: loc.parse().unwrap(),
            os: if linux { OsType::Linux } else { OsType::Windows },
            private_addresses: addresses,
            enforcement: EnforcementPoint::None,
        gateway: None,
        };
        let shown = serde_json::to_vec(&vm_out(&vm)).unwrap();
        prop_assert_eq!(vm_in(&vm.id, &shown).unwrap(), vm);
    }

    #[test]
    fn revokes_read_back(asks in proptest::collection::vec((vm_id(), proptest::collection::vec(any::<u16>(), 1..4)), 1..4)) {
        let body = RevokeIn { virtual_machines: asks.iter().map(|(vm, ports)| RevokeVmIn {
            id: vm.to_string(),
            ports: ports.iter().map(|n| RevokePortIn { number: *n }).collect(),
        }).collect() };
        prop_assert_eq!(revoke_in(&serde_json::to_vec(&body).unwrap()).unwrap(), asks);
    }

    #[test]
    fn enable_bodies_read_back(vms in proptest::collection::vec(vm_id(), 0..4), name in ascii_name(30), ports in proptest::option::of(proptest::collection::vec(port_rule(), 0..4))) {
        let wire_ports = ports.as_ref().map(|ports| ports.iter().map(|r| {
            let out = port_rule_out(r);
            PortRuleIn {
                number: i64::from(out.number),
                protocol: out.protocol,
                allowed_source_address_prefix: out.allowed_source_address_prefix,
                allowed_source_address_prefixes: out.allowed_source_address_prefixes,
                max_request_access_duration: out.max_request_access_duration,
            }
        }).collect());
        let body = EnableIn { virtual_machines: vms.iter().map(ToString::to_string).collect(), policy_name: Some(name.clone()), ports: wire_ports };
        let got = enable_in(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!(got.vms, vms);
        prop_assert_eq!(got.policy_name.as_str(), name.as_str());
        prop_assert_eq!(got.ports, ports);
    }

    #[test]
    fn agent_bodies_read_back(
        name in ascii_name(30),
        rg in proptest::option::of(ascii_name(20)),
        loc in proptest::option::of(ascii_name(20)),
        addresses in proptest::collection::vec(address(), 0..4),
        version in "\\PC{0,12}",
        usable in any::<bool>(),
        reason in proptest::option::of("\\PC{0,20}"),
    ) {
        let sub: SubscriptionId = SUB.parse().unwrap();
        let (default_rg, default_loc): (ResourceGroup, Location) = ("default".parse().unwrap(), "local".parse().unwrap());
        let nftables = NftablesStatus { usable, reason: reason.clone() };
        let wire_addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        let enroll = EnrollIn {
            name: name.clone(),
            resource_group: rg.clone(),
            location: loc.clone(),
            os_type: "Linux".into(),
            addresses: wire_addresses.clone(),
            version: version.clone(),
            nftables: nftables.clone(),
            gateway: None,
        };
        let (enrolment, got_version, got_nftables) = enroll_in(&serde_json::to_vec(&enroll).unwrap(), &sub, &default_rg, &default_loc).unwrap();
        let ajar_api::agent::Enrolment::Machine(vm) = enrolment else { panic!("a machine's enrolment read as a gateway's") };
        prop_assert_eq!(vm.id.name.as_str(), name.as_str());
        prop_assert_eq!(vm.id.resource_group, rg.map_or(default_rg, |r| r.parse().unwrap()));
        prop_assert_eq!(vm.location, loc.map_or(default_loc, |l| l.parse().unwrap()));
        prop_assert_eq!(&vm.private_addresses, &addresses);
        prop_assert_eq!(got_version, version.clone());
        prop_assert_eq!(got_nftables, nftables.to_result());
        let report = ReportIn { version, nftables, addresses: wire_addresses, applied_etag: reason.clone(), drift_repaired: reason, cuts_done: Vec::new() };
        let (got, got_addresses) = report_in(&serde_json::to_vec(&report).unwrap()).unwrap();
        prop_assert_eq!(got, report);
        prop_assert_eq!(got_addresses, addresses);
    }

    #[test]
    fn role_definitions_read_back(role in custom_role(), at in proptest::option::of(role_scope())) {
        let shown = serde_json::to_vec(&role_definition_out(&role, at.as_ref())).unwrap();
        prop_assert_eq!(role_definition_in(&role.id, &shown).unwrap(), role.clone());
        prop_assert_eq!(role_definition_in(&role.id.to_uppercase(), &shown).unwrap(), role);
    }

    #[test]
    fn role_assignments_read_back(scope in role_scope(), name in any::<u128>(), role in any::<u128>(), principal in display_name(60), kind in proptest::sample::select(PRINCIPAL_TYPES.to_vec())) {
        prop_assume!(principal.trim() == principal);
        let assignment = RoleAssignment { id: guid(name), principal_id: principal, role_id: guid(role), scope: scope.clone() };
        let shown = serde_json::to_vec(&role_assignment_out(&assignment, kind)).unwrap();
        prop_assert_eq!(role_assignment_in(&scope, &guid(name), &shown).unwrap(), assignment.clone());
        prop_assert_eq!(role_assignment_in(&scope, &guid(name).to_uppercase(), &shown).unwrap(), assignment);
    }

    #[test]
    fn identity_bodies_read_back(
        name in display_name(128),
        service in any::<bool>(),
        oidc in proptest::option::of(("[!-~]{1,60}", display_name(60))),
        days in 1i64..=365,
        ahead in 1i64..(730 * 86_400),
        api_only in any::<bool>(),
        scope in role_scope(),
    ) {
        let kind = if service { "service" } else { "user" };
        let oidc = oidc.map(|(issuer, subject)| OidcLink { issuer, subject });
        let body = PrincipalIn { name: name.clone(), kind: kind.to_owned(), oidc: oidc.clone() };
        let got = principal_in(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!((got.name.as_str(), got.kind.as_str(), got.oidc), (name.as_str(), kind, oidc));

        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let got = token_in(&serde_json::to_vec(&json!({"name": name, "expiresInDays": days})).unwrap(), now).unwrap();
        prop_assert_eq!(got.expires_on, now + Duration::days(days));
        let at = now + Duration::seconds(ahead);
        let got = token_in(&serde_json::to_vec(&json!({"name": name, "expiresOn": wire_time::format(at)})).unwrap(), now).unwrap();
        prop_assert_eq!(got.expires_on, at);

        let got = requester_role_in(&serde_json::to_vec(&json!({"name": name, "apiOnly": api_only, "scope": scope.to_string()})).unwrap()).unwrap();
        prop_assert_eq!((got.name, got.api_only, got.scope), (name, api_only, Some(scope)));
    }

    #[test]
    fn date_times_never_panic(s in prop_oneof![date_time_text(), "[0-9TZ:.+-]{0,32}", "\\PC{0,40}"]) {
        if let Ok(t) = wire_time::parse(&s) {
            let shown = wire_time::format(t);
            let back = wire_time::parse(&shown).unwrap();
            prop_assert_eq!(wire_time::format(back), shown);
            prop_assert!((t - back).abs() < Duration::nanoseconds(100));
        }
    }

    #[test]
    fn bodies_with_date_times_never_panic(t in date_time_text(), vm in vm_id()) {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        check(token_in(&serde_json::to_vec(&json!({"name": "ci", "expiresOn": t})).unwrap(), now))?;
        let initiate = json!({"virtualMachines": [{"id": vm.to_string(), "ports": [{"number": 22, "endTimeUtc": t}]}]});
        if let Ok(draft) = initiate_in(&serde_json::to_vec(&initiate).unwrap()) {
            let EndSpec::At(end) = draft.vms[0].ports[0].end else { return Err(TestCaseError::fail("not an end time")) };
            let _ = wire_time::format(end);
        }
    }

    #[test]
    fn date_times_read_back(t in wire_instant()) {
        let shown = wire_time::format(t);
        prop_assert_eq!(wire_time::parse(&shown).unwrap(), t);
        prop_assert_eq!(wire_time::parse(shown.trim_end_matches('Z')).unwrap(), t);
    }
}
