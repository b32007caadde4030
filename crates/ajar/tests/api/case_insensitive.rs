//! ARM IDs are case-insensitive: `/resourcegroups/DEFAULT/...` and `/resourceGroups/default/...` name
//! the same resource. Over real HTTPS: every segment of a path in any case (the subscription GUID, the
//! fixed words, names in letters beyond ASCII, whose lower case alone is no key: `ς` and `σ` are both
//! `Σ`), and no scope check, uniqueness rule or lookup that case bypasses or duplicates.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{API, READER, Server};
use crate::dashboard::Ui;

const AUTHZ_API: &str = "api-version=2022-04-01";
const JIT_REQUESTER: &str = "df903be8-ea06-4b3a-a014-28c820417985";

/// A resource group named beyond ASCII, and two other spellings of it: `Σ` ends it, so lower-casing
/// the whole name gives a final sigma `ς`, which ARM upper-cases to `Σ` as it does `σ`.
const GROUP: &str = "Ärger-ΑΣ";
const GROUP_LOWER: &str = "äRGER-ας";
const GROUP_UPPER: &str = "ÄRGER-ασ";
/// A machine in [`GROUP`], and two other spellings of it.
const MACHINE: &str = "WebΣ";
const MACHINE_LOWER: &str = "wEBς";
const MACHINE_UPPER: &str = "WEBσ";

/// One call, and what it must answer.
struct Case {
    what: String,
    token: String,
    method: Method,
    path: String,
    body: Option<Value>,
    status: u16,
    /// JSON pointers into the answer and the values they must hold (`Null`: nothing there).
    at: Vec<(String, Value)>,
}

impl Case {
    fn new(what: &str, token: &str, method: Method, path: String) -> Case {
        Case { what: what.to_owned(), token: token.to_owned(), method, path, body: None, status: 200, at: Vec::new() }
    }

    fn body(mut self, body: Value) -> Case {
        self.body = Some(body);
        self
    }

    fn answers(mut self, status: u16) -> Case {
        self.status = status;
        self
    }

    /// The error code the answer must carry.
    fn code(self, code: &str) -> Case {
        self.with("/error/code", json!(code))
    }

    fn with(mut self, pointer: &str, value: Value) -> Case {
        self.at.push((pointer.to_owned(), value));
        self
    }

    /// A list answer holding exactly these resource IDs, in this order.
    fn listing(mut self, ids: &[String]) -> Case {
        for (i, id) in ids.iter().enumerate() {
            self.at.push((format!("/value/{i}/id"), json!(id)));
        }
        self.at.push((format!("/value/{}", ids.len()), Value::Null));
        self
    }
}

fn get(what: &str, token: &str, path: String) -> Case {
    Case::new(what, token, Method::GET, path)
}

/// Makes the calls in order and reports every one answered otherwise than expected.
async fn check(s: &Server, cases: Vec<Case>) {
    let mut wrong = Vec::new();
    for c in &cases {
        let body = c.body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
        let (st, v, _) = s.send(c.method.clone(), &c.path, Some(&c.token), body, "application/json").await;
        if st.as_u16() != c.status {
            wrong.push(format!("{}: {} {} answered {st}, expected {}: {v}", c.what, c.method, c.path, c.status));
            continue;
        }
        for (pointer, want) in &c.at {
            let got = v.pointer(pointer).cloned().unwrap_or(Value::Null);
            if got != *want {
                wrong.push(format!("{}: {pointer} is {got}, expected {want}: {v}", c.what));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} cases:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

/// `path` (an ARM ID or path below one) with its fixed words and subscription GUID in other cases.
fn shout(s: &Server, path: &str) -> String {
    [
        ("/subscriptions/", "/SUBSCRIPTIONS/"),
        ("/resourceGroups/", "/resourcegroups/"),
        ("/providers/", "/PROVIDERS/"),
        ("Microsoft.Security", "microsoft.security"),
        ("/locations/", "/Locations/"),
        ("jitNetworkAccessPolicies", "JITNETWORKACCESSPOLICIES"),
        ("Microsoft.Compute", "MICROSOFT.COMPUTE"),
        ("virtualMachines", "virtualmachines"),
        ("Microsoft.Authorization", "microsoft.authorization"),
        ("roleAssignments", "ROLEASSIGNMENTS"),
        ("roleDefinitions", "roledefinitions"),
    ]
    .iter()
    .fold(path.replace(&s.sub, &s.sub.to_uppercase()), |p, (from, to)| p.replace(from, to))
}

fn group_path(s: &Server, group: &str) -> String {
    format!("/subscriptions/{}/resourceGroups/{group}", s.sub)
}

fn vm_in(s: &Server, group: &str, name: &str) -> String {
    format!("{}/providers/Microsoft.Compute/virtualMachines/{name}", group_path(s, group))
}

fn policy_in(s: &Server, group: &str, location: &str, name: &str) -> String {
    format!("{}/providers/Microsoft.Security/locations/{location}/jitNetworkAccessPolicies/{name}", group_path(s, group))
}

fn arm(path: &str) -> String {
    format!("{path}?{API}")
}

fn authz(path: &str) -> String {
    format!("{path}?{AUTHZ_API}")
}

fn policy_body(vms: &[impl AsRef<str>]) -> Value {
    let vms: Vec<Value> = vms
        .iter()
        .map(|id| json!({"id": id.as_ref(), "ports": [{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT1H"}]}))
        .collect();
    json!({"properties": {"virtualMachines": vms}})
}

fn initiate_body(vms: &[impl AsRef<str>]) -> Value {
    let vms: Vec<Value> = vms
        .iter()
        .map(|id| json!({"id": id.as_ref(), "ports": [{"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "10.1.2.3"}]}))
        .collect();
    json!({"virtualMachines": vms})
}

fn revoke_body(vms: &[impl AsRef<str>]) -> Value {
    let vms: Vec<Value> = vms.iter().map(|id| json!({"id": id.as_ref(), "ports": [{"number": 22}]})).collect();
    json!({"virtualMachines": vms})
}

fn assignment_body(role: &str, principal: &str) -> Value {
    json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{role}"), "principalId": principal}})
}

fn assignment_path(scope: &str, name: &str) -> String {
    authz(&format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"))
}

/// Query-string encoding of a resource ID.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Every GET in `spellings` answers what the GET of `canonical` answers, which is a 200 with something in it.
async fn same_answers(s: &Server, token: &str, canonical: &str, spellings: &[String]) {
    let (st, want, _) = s.send(Method::GET, canonical, Some(token), None, "").await;
    assert_eq!(st, StatusCode::OK, "{canonical}: {want}");
    assert!(want.as_object().is_some_and(|o| !o.is_empty()) && want.get("value") != Some(&json!([])), "{canonical}: {want}");
    for path in spellings {
        let (st, got, _) = s.send(Method::GET, path, Some(token), None, "").await;
        assert_eq!((st, &got), (StatusCode::OK, &want), "{path} answers otherwise than {canonical}");
    }
}

#[tokio::test]
async fn every_segment_of_a_path_matches_in_any_case() {
    let s = Server::start(&[]).await;
    let admin = s.token.clone();
    for name in ["web1", "web2"] {
        s.add_vm(name, "Linux", &s.loc, "10.0.0.4").await;
    }
    s.add_vm_in(GROUP, MACHINE, "Linux", &s.loc, "10.0.0.6").await;
    let (web1, web2, machine) = (s.vm_id("web1"), s.vm_id("web2"), vm_in(&s, GROUP, MACHINE));
    let (policy, group_policy) = (s.policy_path("default"), policy_in(&s, GROUP, &s.loc, "Default"));
    assert_eq!(s.put_policy("default", policy_body(&[&web1])).await.0, StatusCode::OK);
    let (st, v) = s.call(Method::PUT, &arm(&group_policy), Some(policy_body(&[&machine]))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let web1_shouted = shout(&s, &vm_in(&s, &s.rg.to_uppercase(), "WEB1"));
    let machine_lower = shout(&s, &vm_in(&s, GROUP_LOWER, MACHINE_LOWER));
    let machine_upper = vm_in(&s, GROUP_UPPER, MACHINE_UPPER);
    let policy_shouted = shout(&s, &policy_in(&s, &s.rg.to_uppercase(), &s.loc.to_uppercase(), "DEFAULT"));

    // Reads: any spelling answers exactly what the resource's own spelling does.
    let sub_shouted = shout(&s, &format!("/subscriptions/{}", s.sub));
    same_answers(&s, &admin, &arm(&web1), &[arm(&web1_shouted)]).await;
    same_answers(&s, &admin, &arm(&machine), &[arm(&machine_lower), arm(&machine_upper)]).await;
    same_answers(&s, &admin, &arm(&policy), &[arm(&policy_shouted)]).await;
    same_answers(
        &s,
        &admin,
        &arm(&group_policy),
        &[arm(&shout(&s, &policy_in(&s, GROUP_LOWER, "LOCAL", "DEFAULT"))), arm(&policy_in(&s, GROUP_UPPER, "Local", "default"))],
    )
    .await;
    let vms = "providers/Microsoft.Compute/virtualMachines";
    let jit = "providers/Microsoft.Security/jitNetworkAccessPolicies";
    let jit_local = format!("providers/Microsoft.Security/locations/{}/jitNetworkAccessPolicies", s.loc);
    same_answers(
        &s,
        &admin,
        &arm(&format!("{}/{vms}", group_path(&s, GROUP))),
        &[arm(&shout(&s, &format!("{}/{vms}", group_path(&s, GROUP_LOWER)))), arm(&format!("{}/{vms}", group_path(&s, GROUP_UPPER)))],
    )
    .await;
    same_answers(&s, &admin, &arm(&format!("/subscriptions/{}/{vms}", s.sub)), &[arm(&shout(&s, &format!("{sub_shouted}/{vms}")))]).await;
    same_answers(&s, &admin, &arm(&format!("/subscriptions/{}/{jit}", s.sub)), &[arm(&shout(&s, &format!("{sub_shouted}/{jit}")))]).await;
    same_answers(
        &s,
        &admin,
        &arm(&format!("{}/{jit_local}", group_path(&s, GROUP))),
        &[arm(&shout(&s, &format!("{}/{}", group_path(&s, GROUP_LOWER), jit_local.replace(&s.loc, "LOCAL"))))],
    )
    .await;
    same_answers(
        &s,
        &admin,
        &format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub),
        &[format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub.to_uppercase())],
    )
    .await;

    // Writes, actions and deletes through other spellings reach the same resources, which keep the
    // spelling they were created with.
    check(
        &s,
        vec![
            Case::new("PUT of the policy", &admin, Method::PUT, arm(&policy_shouted))
                .body(policy_body(&[&web1_shouted, &web2]))
                .with("/id", json!(policy))
                .with("/properties/virtualMachines/2", Value::Null),
            Case::new("PUT of the other group's policy, its body naming it in other spellings", &admin, Method::PUT, arm(&group_policy))
                .body({
                    let mut body = policy_body(&[&machine_lower]);
                    body["id"] = json!(shout(&s, &policy_in(&s, GROUP_UPPER, "LOCAL", "DEFAULT")));
                    (body["name"], body["location"]) = (json!("DEFAULT"), json!("LOCAL"));
                    body
                })
                .with("/id", json!(group_policy)),
            get("the policy list", &admin, arm(&format!("/subscriptions/{}/{jit}", s.sub)))
                .listing(&[policy.clone(), group_policy.clone()]),
            Case::new("initiate", &admin, Method::POST, arm(&format!("{policy_shouted}/initiate")))
                .body(initiate_body(&[web1_shouted.replace("WEB1", "Web1")]))
                .answers(202),
            Case::new(
                "initiate in the other group",
                &admin,
                Method::POST,
                arm(&format!("{}/initiate", shout(&s, &policy_in(&s, GROUP_LOWER, "LOCAL", "default")))),
            )
            .body(initiate_body(&[&machine_upper]))
            .answers(202),
            Case::new("revoke", &admin, Method::POST, arm(&format!("{}/revoke", policy_in(&s, GROUP_UPPER, &s.loc, "DEFAULT"))))
                .body(revoke_body(&[&machine_lower]))
                .with("/revoked", json!(1)),
            Case::new("revoke in the default group", &admin, Method::POST, arm(&format!("{policy_shouted}/revoke")))
                .body(revoke_body(&[web1.to_uppercase()]))
                .with("/revoked", json!(1)),
            Case::new("PUT of a machine named in another case", &admin, Method::PUT, arm(&shout(&s, &vm_in(&s, &s.rg, "WEB2"))))
                .body(json!({"location": s.loc, "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}}}))
                .with("/id", json!(web2)),
            Case::new("PUT of the machine beyond ASCII named in another case", &admin, Method::PUT, arm(&machine_upper))
                .body(json!({"location": s.loc, "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}}}))
                .with("/id", json!(machine)),
            get("the machines", &admin, arm(&format!("/subscriptions/{}/{vms}", s.sub))).listing(&[
                web1.clone(),
                web2.clone(),
                machine.clone(),
            ]),
            Case::new(
                "DELETE of the other group's policy",
                &admin,
                Method::DELETE,
                arm(&shout(&s, &policy_in(&s, GROUP_LOWER, "LOCAL", "DEFAULT"))),
            ),
            get("the deleted policy", &admin, arm(&group_policy)).answers(404).code("PolicyNotFound"),
            Case::new("DELETE of the deleted policy", &admin, Method::DELETE, arm(&policy_in(&s, GROUP_UPPER, &s.loc, "default")))
                .answers(204),
            get("a neighbour of the machine", &admin, arm(&format!("{machine_upper}1"))).answers(404),
            get("a neighbour of the group", &admin, arm(&vm_in(&s, &format!("{GROUP}1"), MACHINE))).answers(404),
            Case::new(
                "DELETE of a machine in a policy, in another case",
                &admin,
                Method::DELETE,
                arm(&shout(&s, &vm_in(&s, &s.rg, "WEB2"))),
            )
            .answers(409)
            .code("VirtualMachineInUse"),
            Case::new("DELETE of the machine beyond ASCII, in another case", &admin, Method::DELETE, arm(&machine_lower)),
            get("the deleted machine", &admin, arm(&machine)).answers(404),
            Case::new("DELETE of the deleted machine", &admin, Method::DELETE, arm(&machine_upper)).answers(204),
        ],
    )
    .await;

    // The activity log finds a machine's entries by any spelling of its ID.
    for (id, spellings) in [(&web1, vec![web1_shouted.clone(), web1.to_uppercase()]), (&machine, vec![machine_lower, machine_upper])] {
        let canonical = format!("/ajar/v1/activity?vm={}", encode(id));
        let found = s.get(&canonical).await;
        assert!(found["value"].as_array().unwrap().len() >= 3, "{found}");
        same_answers(&s, &admin, &canonical, &spellings.iter().map(|v| format!("/ajar/v1/activity?vm={}", encode(v))).collect::<Vec<_>>())
            .await;
    }
}

#[tokio::test]
async fn no_uniqueness_rule_is_duplicated_through_case() {
    let s = Server::start(&[]).await;
    let admin = s.token.clone();
    for name in ["web1", "web2"] {
        s.add_vm(name, "Linux", &s.loc, "10.0.0.4").await;
    }
    s.add_vm_in(GROUP, MACHINE, "Linux", &s.loc, "10.0.0.6").await;
    let (web1, web2, machine) = (s.vm_id("web1"), s.vm_id("web2"), vm_in(&s, GROUP, MACHINE));
    assert_eq!(s.put_policy("default", policy_body(&[&web1])).await.0, StatusCode::OK);
    let (web1_upper, web2_upper) = (shout(&s, &s.vm_id("WEB1")), s.vm_id("Web2"));
    let other = arm(&s.policy_path("other"));
    let (alice, _) = s.principal("alice").await;
    let (bob, _) = s.principal("bob").await;
    let rg = s.rg_scope();
    let rg_shouted = shout(&s, &group_path(&s, &s.rg.to_uppercase()));
    let group = group_path(&s, GROUP);
    let machine_scope = shout(&s, &vm_in(&s, GROUP_LOWER, MACHINE_LOWER));
    let assignment = "0E5F2E6A-3F52-4B38-9C43-5F1D3BB6B0E1";
    let role = "3DAF09FB-CEA9-4548-957A-9955C9EE6410";
    let role_body = |name: &str, scope: &str| json!({"Name": name, "IsCustom": true, "Actions": ["Microsoft.Security/locations/jitNetworkAccessPolicies/read"], "AssignableScopes": [scope]});
    check(
        &s,
        vec![
            // One policy per machine, one entry per machine in a policy, a request or a revoke.
            Case::new("a second policy naming a machine in another case", &admin, Method::PUT, other.clone())
                .body(policy_body(&[&web1_upper]))
                .answers(400)
                .code("VirtualMachineInAnotherPolicy"),
            Case::new("a policy naming a machine twice", &admin, Method::PUT, other.clone())
                .body(policy_body(&[&web2, &web2_upper]))
                .answers(400)
                .code("InvalidPolicy")
                .with("/error/target", json!("properties.virtualMachines[1].id")),
            Case::new("a policy naming the machine beyond ASCII twice", &admin, Method::PUT, arm(&policy_in(&s, GROUP, &s.loc, "default")))
                .body(policy_body(&[&machine, &vm_in(&s, GROUP_UPPER, MACHINE_UPPER)]))
                .answers(400)
                .code("InvalidPolicy")
                .with("/error/target", json!("properties.virtualMachines[1].id")),
            Case::new("enabling JIT on a machine named twice", &admin, Method::POST, "/ajar/v1/jit/enable".to_owned())
                .body(json!({"virtualMachines": [web2.clone(), web2_upper.clone()]}))
                .answers(400),
            Case::new("a request naming a machine twice", &admin, Method::POST, arm(&format!("{}/initiate", s.policy_path("default"))))
                .body(initiate_body(&[&web1, &web1_upper]))
                .answers(400)
                .code("InvalidInitiateInput")
                .with("/error/target", json!("virtualMachines[1].id")),
            Case::new("a revoke naming a machine twice", &admin, Method::POST, arm(&format!("{}/revoke", s.policy_path("default"))))
                .body(revoke_body(&[&web1, &web1_upper]))
                .answers(400),
            // One machine, one policy, whatever the case of its name.
            Case::new("PUT of the machine in other cases", &admin, Method::PUT, arm(&vm_in(&s, GROUP_UPPER, MACHINE_LOWER)))
                .body(json!({"location": s.loc, "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}}}))
                .with("/id", json!(machine)),
            Case::new("PUT of the policy in another case", &admin, Method::PUT, arm(&shout(&s, &s.policy_path("DEFAULT"))))
                .body(policy_body(&[&web1_upper]))
                .with("/id", json!(s.policy_path("default"))),
            get("the machines", &admin, arm(&format!("/subscriptions/{}/providers/Microsoft.Compute/virtualMachines", s.sub))).listing(&[
                web1.clone(),
                web2.clone(),
                machine.clone(),
            ]),
            get("the policies", &admin, arm(&format!("/subscriptions/{}/providers/Microsoft.Security/jitNetworkAccessPolicies", s.sub)))
                .listing(&[s.policy_path("default")]),
            // One assignment of a role to a principal at a scope, whatever the case of the scope or the GUIDs.
            Case::new("an assignment", &admin, Method::PUT, assignment_path(&rg, assignment))
                .body(assignment_body(READER, &alice))
                .answers(201),
            Case::new(
                "the same at the scope in another case",
                &admin,
                Method::PUT,
                assignment_path(&rg_shouted, &uuid::Uuid::new_v4().to_string()),
            )
            .body(assignment_body(&READER.to_uppercase(), &alice))
            .answers(409)
            .code("RoleAssignmentExists"),
            Case::new(
                "the same, the principal's ID in upper case",
                &admin,
                Method::PUT,
                assignment_path(&rg, &uuid::Uuid::new_v4().to_string()),
            )
            .body(assignment_body(READER, &alice.to_uppercase()))
            .answers(409)
            .code("RoleAssignmentExists"),
            Case::new(
                "the assignment again, its GUIDs in lower case",
                &admin,
                Method::PUT,
                assignment_path(&rg_shouted, &assignment.to_lowercase()),
            )
            .body(assignment_body(&READER.to_uppercase(), &alice))
            .answers(201)
            .with("/name", json!(assignment.to_lowercase())),
            get("the assignment by its GUID in lower case", &admin, assignment_path(&rg, &assignment.to_lowercase()))
                .with("/properties/scope", json!(rg)),
            Case::new(
                "another assignment under its GUID",
                &admin,
                Method::PUT,
                assignment_path(&format!("/subscriptions/{}", s.sub), &assignment.to_lowercase()),
            )
            .body(assignment_body(READER, &alice))
            .answers(409)
            .code("RoleAssignmentUpdateNotPermitted"),
            get(
                "alice's assignments at the group",
                &admin,
                format!("{rg_shouted}/providers/Microsoft.Authorization/roleAssignments?{AUTHZ_API}&$filter=principalId%20eq%20'{alice}'"),
            )
            .with("/value/0/name", json!(assignment.to_lowercase()))
            .with("/value/1", Value::Null),
            Case::new(
                "deleting it by its GUID in another case",
                &admin,
                Method::DELETE,
                assignment_path(&rg, "0e5f2e6a-3F52-4b38-9C43-5f1d3bb6b0e1"),
            ),
            get("the deleted assignment", &admin, assignment_path(&rg, assignment)).answers(404),
            // A custom role by its GUID in any case, assignable in its scopes in any spelling.
            Case::new(
                "a custom role",
                &admin,
                Method::PUT,
                authz(&format!("{group}/providers/Microsoft.Authorization/roleDefinitions/{role}")),
            )
            .body(role_body("Prüfer-Σ", &shout(&s, &group_path(&s, GROUP_UPPER))))
            .answers(201)
            .with("/name", json!(role.to_lowercase())),
            get(
                "the role by its GUID in lower case",
                &admin,
                authz(&format!(
                    "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
                    group_path(&s, GROUP_LOWER),
                    role.to_lowercase()
                )),
            )
            .with("/properties/roleName", json!("Prüfer-Σ")),
            Case::new(
                "another role of the same name in other cases",
                &admin,
                Method::PUT,
                authz(&format!("{group}/providers/Microsoft.Authorization/roleDefinitions/{}", uuid::Uuid::new_v4())),
            )
            .body(role_body("PRÜFER-ς", &group))
            .answers(409)
            .code("RoleDefinitionWithSameNameExists"),
            Case::new(
                "assigning it inside its assignable scope, spelled otherwise",
                &admin,
                Method::PUT,
                assignment_path(&machine_scope, &uuid::Uuid::new_v4().to_string()),
            )
            .body(assignment_body(&role.to_lowercase(), &alice))
            .answers(201),
            Case::new(
                "assigning it there again to another principal, the body naming the assignment in another spelling",
                &admin,
                Method::PUT,
                assignment_path(&machine_scope, "5a4c4f2e-1d0b-4c3e-9f8a-7b6c5d4e3f21"),
            )
            .body({
                let mut body = assignment_body(role, &bob);
                body["id"] = json!(format!(
                    "{}/providers/Microsoft.Authorization/roleAssignments/5A4C4F2E-1D0B-4C3E-9F8A-7B6C5D4E3F21",
                    vm_in(&s, GROUP_UPPER, MACHINE_UPPER)
                ));
                body
            })
            .answers(201),
            Case::new("assigning it outside", &admin, Method::PUT, assignment_path(&rg, &uuid::Uuid::new_v4().to_string()))
                .body(assignment_body(role, &alice))
                .answers(400)
                .code("ScopeNotAssignable"),
            Case::new(
                "deleting it while assigned, by its GUID in lower case",
                &admin,
                Method::DELETE,
                authz(&format!("{group}/providers/Microsoft.Authorization/roleDefinitions/{}", role.to_lowercase())),
            )
            .answers(409)
            .code("RoleDefinitionHasAssignments"),
            // ajar's own names are unique ignoring case in any letters too.
            Case::new("a principal", &admin, Method::POST, "/ajar/v1/principals".to_owned())
                .body(json!({"name": "Émile", "kind": "user"}))
                .answers(201),
            Case::new("another principal of the same name in another case", &admin, Method::POST, "/ajar/v1/principals".to_owned())
                .body(json!({"name": "éMILE", "kind": "user"}))
                .answers(409)
                .code("PrincipalExists"),
        ],
    )
    .await;
}

#[tokio::test]
async fn roles_reach_exactly_their_scope_in_any_spelling() {
    let s = Server::start(&[]).await;
    for (group, name) in [
        ("RG1", "vmA"),
        ("RG1", "vmAB"),
        ("RG1", "vmB"),
        ("rg10", "vmA"),
        ("rg2", "vmC"),
        (GROUP, MACHINE),
        (&format!("{GROUP}1"), MACHINE),
    ] {
        s.add_vm_in(group, name, "Linux", &s.loc, "10.0.0.4").await;
    }
    let vm = |group: &str, name: &str| vm_in(&s, group, name);
    for (group, names) in [("RG1", vec!["vmA", "vmAB", "vmB"]), ("rg10", vec!["vmA"]), (GROUP, vec![MACHINE])] {
        let body = policy_body(&names.iter().map(|n| vm(group, n)).collect::<Vec<_>>());
        let (st, v) = s.call(Method::PUT, &arm(&policy_in(&s, group, &s.loc, "default")), Some(body)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let policy = |group: &str| arm(&policy_in(&s, group, &s.loc, "default"));
    // Each role is assigned at a scope spelled otherwise than the resources in it.
    let (_, alice) = s.principal_with_role("alice", READER, &group_path(&s, "rg1")).await;
    let (_, bob) = s.principal_with_role("bob", JIT_REQUESTER, &shout(&s, &vm("rg1", "VMA"))).await;
    let (_, carol) = s.principal_with_role("carol", READER, &shout(&s, &group_path(&s, GROUP_UPPER))).await;
    let vms = |group: Option<&str>| match group {
        Some(g) => arm(&format!("{}/providers/Microsoft.Compute/virtualMachines", group_path(&s, g))),
        None => arm(&format!("/subscriptions/{}/providers/Microsoft.Compute/virtualMachines", s.sub)),
    };
    let policies = arm(&format!("/subscriptions/{}/providers/Microsoft.Security/jitNetworkAccessPolicies", s.sub));
    let in_rg1 = [vm("RG1", "vmA"), vm("RG1", "vmAB"), vm("RG1", "vmB")];
    check(
        &s,
        vec![
            // Reader at the group rg1: the machines of RG1, in any spelling, and nothing else.
            get("alice reads a machine of her group", &alice, arm(&shout(&s, &vm("Rg1", "VMAB")))).with("/id", json!(in_rg1[1])),
            get("alice reads the same name in rg10", &alice, arm(&vm("rg10", "vmA"))).answers(403).code("AuthorizationFailed"),
            get("alice reads another group's machine", &alice, arm(&vm("RG2", "vmC"))).answers(403),
            get("alice lists the subscription's machines", &alice, vms(None)).listing(&in_rg1),
            get("alice lists her group's", &alice, vms(Some("rG1"))).listing(&in_rg1),
            get("alice lists rg10's", &alice, vms(Some("RG10"))).answers(403),
            get("alice lists the policies", &alice, policies.clone()).listing(&[policy_in(&s, "RG1", &s.loc, "default")]),
            // Requester on the machine vmA: that machine, in any spelling, and not its neighbours.
            get("bob reads his machine", &bob, arm(&vm("rg1", "VMA"))).with("/id", json!(in_rg1[0])),
            get("bob reads vmAB", &bob, arm(&vm("RG1", "vmAB"))).answers(403),
            get("bob reads vmB", &bob, arm(&vm("RG1", "vmB"))).answers(403),
            get("bob reads vmA of rg10", &bob, arm(&vm("RG10", "VMA"))).answers(403),
            get("bob lists the machines", &bob, vms(None)).listing(&in_rg1[..1]),
            get("bob reads his machine's policy", &bob, policy("rg1"))
                .with("/properties/virtualMachines/0/id", json!(in_rg1[0]))
                .with("/properties/virtualMachines/1", Value::Null),
            get("bob lists the policies", &bob, policies.clone())
                .with("/value/0/properties/virtualMachines/0/id", json!(in_rg1[0]))
                .with("/value/0/properties/virtualMachines/1", Value::Null)
                .with("/value/1", Value::Null),
            Case::new(
                "bob opens his machine",
                &bob,
                Method::POST,
                arm(&format!("{}/initiate", shout(&s, &policy_in(&s, "rg1", "LOCAL", "DEFAULT")))),
            )
            .body(initiate_body(&[shout(&s, &vm("rg1", "VMA"))]))
            .answers(202),
            Case::new("bob opens vmAB", &bob, Method::POST, arm(&format!("{}/initiate", policy_in(&s, "RG1", &s.loc, "default"))))
                .body(initiate_body(&[vm("rg1", "VMAB")]))
                .answers(403),
            Case::new(
                "bob opens his machine and vmAB",
                &bob,
                Method::POST,
                arm(&format!("{}/initiate", policy_in(&s, "RG1", &s.loc, "default"))),
            )
            .body(initiate_body(&[vm("rg1", "vma"), vm("rg1", "vmab")]))
            .answers(403),
            Case::new("bob opens vmA of rg10", &bob, Method::POST, arm(&format!("{}/initiate", policy_in(&s, "rg10", &s.loc, "default"))))
                .body(initiate_body(&[vm("RG10", "VMA")]))
                .answers(403),
            // Reader at a group named beyond ASCII, assigned in another spelling of it.
            get("carol reads her group's machine", &carol, arm(&vm(GROUP_LOWER, MACHINE_UPPER))).with("/id", json!(vm(GROUP, MACHINE))),
            get("carol reads the neighbour group's", &carol, arm(&vm(&format!("{GROUP}1"), MACHINE))).answers(403),
            get("carol lists the machines", &carol, vms(None)).listing(&[vm(GROUP, MACHINE)]),
            get("carol lists her group's", &carol, vms(Some(GROUP_LOWER))).listing(&[vm(GROUP, MACHINE)]),
            get("carol lists the policies", &carol, policies).listing(&[policy_in(&s, GROUP, &s.loc, "default")]),
        ],
    )
    .await;

    // The activity log and JIT status each caller sees are about its scope alone.
    for (who, token, inside) in [("alice", &alice, "/resourcegroups/rg1/"), ("carol", &carol, "/resourcegroups/ärger-ασ/")] {
        let (st, entries, _) = s.send(Method::GET, "/ajar/v1/activity?limit=1000", Some(token), None, "").await;
        assert_eq!(st, StatusCode::OK, "{entries}");
        let entries = entries["value"].as_array().unwrap();
        assert!(!entries.is_empty(), "{who} sees entries");
        for e in entries {
            let id = ajar_domain::ids::arm_key(e["resourceId"].as_str().unwrap());
            assert!(id.contains(inside), "{who} sees {e}");
        }
        let (st, status, _) =
            s.send(Method::GET, &format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub.to_uppercase()), Some(token), None, "").await;
        assert_eq!(st, StatusCode::OK, "{status}");
        assert!(!status["value"].as_array().unwrap().is_empty(), "{who} sees machines");
        for m in status["value"].as_array().unwrap() {
            assert!(ajar_domain::ids::arm_key(m["id"].as_str().unwrap()).contains(inside), "{who} sees {m}");
        }
    }
}

#[tokio::test]
async fn agents_and_the_dashboard_find_machines_in_any_case() {
    let s = Server::start(&[]).await;
    let (st, enrolled) = s.enroll_agent("Web1", true).await;
    assert_eq!(st, StatusCode::CREATED, "{enrolled}");
    assert_eq!(enrolled["vmId"], s.vm_id("Web1"));
    let agent = enrolled["token"].as_str().unwrap().to_owned();
    let admin = s.token.clone();
    let web1 = s.vm_id("Web1");
    check(
        &s,
        vec![
            Case::new("PUT of the enrolled machine in another case", &admin, Method::PUT, arm(&s.vm_id("WEB1")))
                .body(json!({"location": s.loc, "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}}}))
                .with("/id", json!(web1)),
            Case::new("a policy naming it in another case", &admin, Method::PUT, arm(&s.policy_path("default")))
                .body(policy_body(&[shout(&s, &vm_in(&s, &s.rg.to_uppercase(), "web1"))])),
            Case::new("a request naming it in a third", &admin, Method::POST, arm(&format!("{}/initiate", s.policy_path("default"))))
                .body(initiate_body(&[s.vm_id("wEB1")]))
                .answers(202),
            get("its JIT status", &admin, format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub.to_uppercase()))
                .with("/value/0/id", json!(web1))
                .with("/value/0/state", json!("Configured"))
                .with("/value/0/agent/online", json!(true))
                .with("/value/1", Value::Null),
        ],
    )
    .await;
    // The agent's own machine: the policy's ports and the grant, named in other cases.
    let (st, desired, _) = s.send(Method::GET, "/ajar/v1/agent/desiredState", Some(&agent), None, "").await;
    assert_eq!(st, StatusCode::OK, "{desired}");
    assert_eq!(desired["protected"], json!([{"number": 22, "protocol": "TCP"}]), "{desired}");
    assert_eq!(desired["grants"].as_array().map(Vec::len), Some(1), "{desired}");
    // Enrolling the machine again under another spelling takes nothing over.
    let (st, v) = s.enroll_agent("web1", true).await;
    assert_eq!((st.as_u16(), v["error"]["code"].as_str()), (409, Some("Conflict")), "{v}");

    // The dashboard's machine parameters, in any case.
    let ui = Ui::sign_in(&s, &s.token).await;
    let spellings = [web1.clone(), shout(&s, &s.vm_id("WEB1")), s.vm_id("web1").to_uppercase()];
    let csv = ui.get(&format!("/ui/activity.csv?vm={}", encode(&web1))).await;
    assert_eq!(csv.0, StatusCode::OK);
    assert!(csv.1.lines().count() > 3, "{}", csv.1);
    for id in &spellings {
        let (st, page) = ui.get(&format!("/ui/vm?id={}", encode(id))).await;
        assert_eq!(st, StatusCode::OK, "the machine's page by {id}: {page}");
        assert!(
            page.contains("<h1>Web1</h1>") && page.contains("<td>22</td><td>TCP</td>") && page.contains("22/TCP for admin"),
            "{id}: {page}"
        );
        assert_eq!(ui.get(&format!("/ui/activity.csv?vm={}", encode(id))).await, csv, "the machine's activity by {id}");
    }
    let thrice = spellings.iter().map(|id| format!("vm={}", encode(id))).collect::<Vec<_>>().join("&");
    let (st, form) = ui.get(&format!("/ui/request?{thrice}")).await;
    assert_eq!(st, StatusCode::OK, "{form}");
    assert_eq!(form.matches(r#"<fieldset class="machine""#).count(), 1, "one machine to request, named thrice: {form}");
    let (st, form) = ui.get(&format!("/ui/configure?{thrice}")).await;
    assert_eq!(st, StatusCode::OK, "{form}");
    assert_eq!(form.matches(r#"<li><a href="/ui/vm?id="#).count(), 1, "one machine to configure, named thrice: {form}");

    // The JIT page's filter, in letters beyond ASCII: the group's machine whose name holds the text, only.
    for (group, name) in [(GROUP, MACHINE), (GROUP, "db1"), (&format!("{GROUP}1"), MACHINE)] {
        s.add_vm_in(group, name, "Linux", &s.loc, "10.0.0.6").await;
    }
    let (st, html) = ui.get(&format!("/ui/jit?tab=unsupported&resourceGroup={}&name={}", encode(GROUP_UPPER), encode("ebσ"))).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_eq!(html.matches(&format!(">{MACHINE}</a>")).count(), 1, "{html}");
    assert!(!html.contains(">db1</a>"), "{html}");
}

/// The command line names a machine in any case, also beyond ASCII.
#[tokio::test]
async fn the_command_line_finds_machines_in_any_case() {
    let s = Server::start(&[]).await;
    let steps: [(&[&str], &str); 7] = [
        (&["vm", "add", MACHINE, "--os", "linux", "--address", "10.0.0.4"], ""),
        (&["policy", "enable", MACHINE_LOWER, "--defaults"], ""),
        (&["policy", "set", MACHINE_UPPER, "--port", "22/tcp,from=10.0.0.0/8,max=PT1H", "--port", "8443/tcp"], ""),
        (&["request", MACHINE_UPPER, "--port", "8443", "--from", "10.1.2.3", "--for", "30m"], "8443"),
        (&["revoke", MACHINE_LOWER, "--port", "8443"], "revoked 1 grant(s)"),
        (&["activity", "--vm", MACHINE_UPPER, "--format", "csv"], "Ajar/jitNetworkAccessPolicies/revoke/action"),
        (&["policy", "remove-vm", MACHINE_LOWER], ""),
    ];
    for (args, says) in steps {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ajar"))
            .args(args)
            .env_clear()
            .env("AJAR_BOOTSTRAP", s.data_dir().join("bootstrap.json"))
            .output()
            .expect("run ajar");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && stdout.contains(says), "ajar {args:?}: {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    }
    let vms = s.get(&arm(&format!("/subscriptions/{}/providers/Microsoft.Compute/virtualMachines", s.sub))).await;
    assert_eq!(vms["value"].as_array().map(Vec::len), Some(1), "{vms}");
    assert_eq!(vms["value"][0]["name"], MACHINE);
}
