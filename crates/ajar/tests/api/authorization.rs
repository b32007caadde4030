//! Who may do what: every route × every built-in role × a scope inside and outside the role's assignment,
//! plus callers without a valid token, in one table; multi-machine initiates refused whole; escalation
//! attempts; and no secret in logs, the activity log or error messages.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{API, Server};

const AUTHZ_API: &str = "api-version=2022-04-01";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Owner,
    Contributor,
    Reader,
    SecurityAdmin,
    SecurityReader,
    Requester,
}

const ROLES: [(Role, &str); 6] = [
    (Role::Owner, "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
    (Role::Contributor, "b24988ac-6180-42a0-ab88-20f7382dd24c"),
    (Role::Reader, "acdd72a7-3385-48ef-bd42-f606fba81ae7"),
    (Role::SecurityAdmin, "fb1c8493-542b-48eb-b624-b4c8fea62acd"),
    (Role::SecurityReader, "39bc4728-0917-49c7-9d2c-d95423bc2eb4"),
    (Role::Requester, "df903be8-ea06-4b3a-a014-28c820417985"),
];

use Role::*;
const READERS: &[Role] = &[Owner, Contributor, Reader, SecurityAdmin, SecurityReader, Requester];
const ALL_BUT_REQUESTER: &[Role] = &[Owner, Contributor, Reader, SecurityAdmin, SecurityReader];
const VM_READERS: &[Role] = &[Owner, Contributor, Reader, Requester];
const WRITERS: &[Role] = &[Owner, Contributor];
const JIT_ADMINS: &[Role] = &[Owner, Contributor, SecurityAdmin];
const INITIATORS: &[Role] = &[Owner, Contributor, SecurityAdmin, Requester];
const NOBODY: &[Role] = &[];

/// Where a route acts: inside the resource group the roles are assigned at, outside it, or at the root
/// (no resource group: the table then says who may, wherever assigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Inside,
    Outside,
}

struct World {
    s: Server,
    /// "default" (where the roles are assigned) and "other".
    rg_in: String,
    rg_out: String,
    /// Principal IDs and tokens per role, and of a principal with no role at all.
    tokens: Vec<(Role, String, String)>,
    nobody: (String, String),
    /// A principal that roles are handed to in the table.
    spare: String,
    bad_tokens: Vec<(&'static str, String)>,
    /// Every secret made, for the leak check.
    secrets: Vec<String>,
}

fn rg_path(s: &Server, rg: &str) -> String {
    format!("/subscriptions/{}/resourceGroups/{rg}", s.sub)
}

fn vm_path(s: &Server, rg: &str, name: &str) -> String {
    format!("{}/providers/Microsoft.Compute/virtualMachines/{name}", rg_path(s, rg))
}

fn policy_path(s: &Server, rg: &str, name: &str) -> String {
    format!("{}/providers/Microsoft.Security/locations/{}/jitNetworkAccessPolicies/{name}", rg_path(s, rg), s.loc)
}

fn policy_body(vms: &[String]) -> Value {
    let vms: Vec<Value> = vms
        .iter()
        .map(|id| json!({"id": id, "ports": [{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}]}))
        .collect();
    json!({"kind": "Basic", "properties": {"virtualMachines": vms}})
}

fn initiate_body(vms: &[String]) -> Value {
    let vms: Vec<Value> = vms
        .iter()
        .map(|id| json!({"id": id, "ports": [{"number": 22, "duration": "PT5M", "allowedSourceAddressPrefix": "10.1.2.3"}]}))
        .collect();
    json!({"virtualMachines": vms, "justification": "matrix"})
}

impl World {
    async fn new() -> World {
        // Callers without a valid token each come through the trusted proxy from an address of their own, so
        // that the throttle on failed authentications does not stop the table.
        let s = Server::start(&["--trusted-proxy", "127.0.0.1"]).await;
        let (rg_in, rg_out) = (s.rg.clone(), "other".to_owned());
        for rg in [&rg_in, &rg_out] {
            for vm in ["vm", "vm2"] {
                s.add_vm_in(rg, vm, "Linux", &s.loc, "10.0.0.4").await;
            }
            let (st, v) =
                s.call(Method::PUT, &format!("{}?{API}", policy_path(&s, rg, "p")), Some(policy_body(&[vm_path(&s, rg, "vm")]))).await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
        // One policy (outside) spanning both groups, for the multi-machine initiate.
        let spanning = [vm_path(&s, &rg_in, "vm2"), vm_path(&s, &rg_out, "vm2")];
        let (st, v) = s.call(Method::PUT, &format!("{}?{API}", policy_path(&s, &rg_out, "both")), Some(policy_body(&spanning))).await;
        assert_eq!(st, StatusCode::OK, "{v}");

        let mut w = World {
            rg_in,
            rg_out,
            tokens: Vec::new(),
            nobody: (String::new(), String::new()),
            spare: String::new(),
            bad_tokens: Vec::new(),
            secrets: vec![s.token.clone()],
            s,
        };
        for (role, guid) in ROLES {
            let (id, token) = w.principal_with_token(&format!("{role:?}")).await;
            w.assign(&id, guid, &rg_path(&w.s, &w.rg_in.clone())).await;
            w.tokens.push((role, id, token));
        }
        w.nobody = w.principal_with_token("Nobody").await;
        w.spare = w.principal_with_token("Spare").await.0;

        let (expired_id, _) = w.principal_with_token("Expired").await;
        let soon =
            (time::OffsetDateTime::now_utc() + time::Duration::seconds(1)).format(&time::format_description::well_known::Rfc3339).unwrap();
        let (st, v) =
            w.s.call(Method::POST, &format!("/ajar/v1/principals/{expired_id}/tokens"), Some(json!({"name": "short", "expiresOn": soon})))
                .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let expired = v["token"].as_str().unwrap().to_owned();
        w.assign(&expired_id, ROLES[0].1, "/").await;
        let (revoked_id, revoked) = w.principal_with_token("Revoked").await;
        w.assign(&revoked_id, ROLES[0].1, "/").await;
        let tokens = w.s.get(&format!("/ajar/v1/principals/{revoked_id}/tokens")).await;
        let token_id = tokens["value"][0]["id"].as_str().unwrap().to_owned();
        let (st, v) = w.s.call(Method::DELETE, &format!("/ajar/v1/tokens/{token_id}"), None).await;
        assert_eq!((st, &v["revoked"]), (StatusCode::OK, &json!(true)));
        let agent = w.agent_token().await;
        let (st, v) = w.s.enroll_gateway("gw1", &["10.9.0.1"], None).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let gateway = v["token"].as_str().unwrap().to_owned();
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        w.secrets.extend([expired.clone(), revoked.clone(), agent.clone(), gateway.clone()]);
        w.bad_tokens =
            vec![("no token", String::new()), ("expired", expired), ("revoked", revoked), ("agent", agent), ("gateway", gateway)];
        w
    }

    async fn principal_with_token(&mut self, name: &str) -> (String, String) {
        let (id, token) = self.s.principal(name).await;
        self.secrets.push(token.clone());
        (id, token)
    }

    async fn assign(&self, principal: &str, role: &str, scope: &str) {
        self.s.assign_role(principal, role, if scope == "/" { "" } else { scope }).await;
    }

    async fn agent_token(&self) -> String {
        let (st, v) = self.s.enroll_agent("agentvm", true).await;
        assert!(st.is_success(), "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    fn rg(&self, place: Place) -> &str {
        match place {
            Place::Inside => &self.rg_in,
            Place::Outside => &self.rg_out,
        }
    }
}

/// One route of the table: how to call it at a place, who may (when inside), and the status they get.
struct Case {
    name: &'static str,
    allowed: &'static [Role],
    /// Open to every authenticated caller, even one with no role.
    any_caller: bool,
    /// Whether "outside" exists for this route (false: no resource group in the path).
    scoped: bool,
    ok: u16,
    request: fn(&World, Place) -> (Method, String, Option<Value>),
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            any_caller: false,
            name: "list policies",
            allowed: READERS,
            scoped: true,
            ok: 200,
            request: |w, p| {
                (Method::GET, format!("{}/providers/Microsoft.Security/jitNetworkAccessPolicies?{API}", rg_path(&w.s, w.rg(p))), None)
            },
        },
        Case {
            any_caller: false,
            name: "get policy",
            allowed: READERS,
            scoped: true,
            ok: 200,
            request: |w, p| (Method::GET, format!("{}?{API}", policy_path(&w.s, w.rg(p), "p")), None),
        },
        Case {
            any_caller: false,
            name: "put policy",
            allowed: WRITERS,
            scoped: true,
            ok: 200,
            request: |w, p| {
                (Method::PUT, format!("{}?{API}", policy_path(&w.s, w.rg(p), "p")), Some(policy_body(&[vm_path(&w.s, w.rg(p), "vm")])))
            },
        },
        Case {
            any_caller: false,
            name: "delete policy",
            allowed: JIT_ADMINS,
            scoped: true,
            ok: 204,
            request: |w, p| (Method::DELETE, format!("{}?{API}", policy_path(&w.s, w.rg(p), "ghost")), None),
        },
        Case {
            any_caller: false,
            name: "initiate",
            allowed: INITIATORS,
            scoped: true,
            ok: 202,
            request: |w, p| {
                (
                    Method::POST,
                    format!("{}/initiate?{API}", policy_path(&w.s, w.rg(p), "p")),
                    Some(initiate_body(&[vm_path(&w.s, w.rg(p), "vm")])),
                )
            },
        },
        Case {
            any_caller: false,
            name: "revoke",
            allowed: JIT_ADMINS,
            scoped: true,
            ok: 200,
            request: |w, p| {
                let body = json!({"virtualMachines": [{"id": vm_path(&w.s, w.rg(p), "vm"), "ports": [{"number": 22}]}]});
                (Method::POST, format!("{}/revoke?{API}", policy_path(&w.s, w.rg(p), "p")), Some(body))
            },
        },
        Case {
            any_caller: false,
            name: "list vms",
            allowed: VM_READERS,
            scoped: true,
            ok: 200,
            request: |w, p| (Method::GET, format!("{}/providers/Microsoft.Compute/virtualMachines?{API}", rg_path(&w.s, w.rg(p))), None),
        },
        Case {
            any_caller: false,
            name: "get vm",
            allowed: VM_READERS,
            scoped: true,
            ok: 200,
            request: |w, p| (Method::GET, format!("{}?{API}", vm_path(&w.s, w.rg(p), "vm")), None),
        },
        Case {
            any_caller: false,
            name: "put vm",
            allowed: WRITERS,
            scoped: true,
            ok: 200,
            request: |w, p| {
                let body = json!({"location": w.s.loc, "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}, "networkProfile": {"privateIPAddresses": ["10.0.0.4"]}}});
                (Method::PUT, format!("{}?{API}", vm_path(&w.s, w.rg(p), "vm")), Some(body))
            },
        },
        Case {
            any_caller: false,
            name: "delete vm",
            allowed: WRITERS,
            scoped: true,
            ok: 204,
            request: |w, p| (Method::DELETE, format!("{}?{API}", vm_path(&w.s, w.rg(p), "ghost")), None),
        },
        Case {
            any_caller: false,
            name: "jit status",
            allowed: READERS,
            scoped: true,
            ok: 200,
            request: |w, p| (Method::GET, format!("/ajar/v1/subscriptions/{}/jitStatus?resourceGroup={}", w.s.sub, w.rg(p)), None),
        },
        Case {
            any_caller: false,
            name: "enable",
            allowed: WRITERS,
            scoped: true,
            ok: 400,
            request: |w, p| {
                (Method::POST, "/ajar/v1/jit/enable".to_owned(), Some(json!({"virtualMachines": [vm_path(&w.s, w.rg(p), "vm")]})))
            },
        },
        Case {
            any_caller: false,
            name: "list role assignments",
            allowed: ALL_BUT_REQUESTER,
            scoped: true,
            ok: 200,
            request: |w, p| {
                (Method::GET, format!("{}/providers/Microsoft.Authorization/roleAssignments?{AUTHZ_API}", rg_path(&w.s, w.rg(p))), None)
            },
        },
        Case {
            any_caller: false,
            name: "assign Reader",
            allowed: &[Owner],
            scoped: true,
            ok: 201,
            request: |w, p| {
                let body = json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{}", ROLES[2].1), "principalId": w.spare}});
                (
                    Method::PUT,
                    format!(
                        "{}/providers/Microsoft.Authorization/roleAssignments/{}?{AUTHZ_API}",
                        rg_path(&w.s, w.rg(p)),
                        uuid::Uuid::new_v4()
                    ),
                    Some(body),
                )
            },
        },
        Case {
            any_caller: false,
            name: "list role definitions",
            allowed: ALL_BUT_REQUESTER,
            scoped: true,
            ok: 200,
            request: |w, p| {
                (Method::GET, format!("{}/providers/Microsoft.Authorization/roleDefinitions?{AUTHZ_API}", rg_path(&w.s, w.rg(p))), None)
            },
        },
        Case {
            any_caller: false,
            name: "create requester role",
            allowed: &[Owner],
            scoped: true,
            ok: 201,
            request: |w, p| {
                (
                    Method::POST,
                    "/ajar/v1/roles/requester".to_owned(),
                    Some(json!({"name": format!("req-{}", uuid::Uuid::new_v4()), "scope": rg_path(&w.s, w.rg(p))})),
                )
            },
        },
        Case {
            any_caller: false,
            name: "activity",
            allowed: ALL_BUT_REQUESTER,
            scoped: false,
            ok: 200,
            request: |_, _| (Method::GET, "/ajar/v1/activity?limit=5".to_owned(), None),
        },
        Case {
            any_caller: false,
            name: "list gateways",
            allowed: NOBODY,
            scoped: false,
            ok: 200,
            request: |_, _| (Method::GET, "/ajar/v1/gateways".to_owned(), None),
        },
        Case {
            any_caller: false,
            name: "get gateway",
            allowed: NOBODY,
            scoped: false,
            ok: 200,
            request: |_, _| (Method::GET, "/ajar/v1/gateways/gw1".to_owned(), None),
        },
        Case {
            any_caller: false,
            name: "remove gateway",
            allowed: NOBODY,
            scoped: false,
            ok: 204,
            request: |_, _| (Method::DELETE, "/ajar/v1/gateways/ghost".to_owned(), None),
        },
        Case {
            any_caller: false,
            name: "put a machine behind a gateway",
            allowed: WRITERS,
            scoped: true,
            ok: 200,
            request: |w, p| {
                let body = json!({"virtualMachineId": vm_path(&w.s, w.rg(p), "vm2"), "gateway": "gw1"});
                (Method::POST, "/ajar/v1/gatewayAssignment".to_owned(), Some(body))
            },
        },
        Case {
            any_caller: false,
            name: "list principals",
            allowed: NOBODY,
            scoped: false,
            ok: 200,
            request: |_, _| (Method::GET, "/ajar/v1/principals".to_owned(), None),
        },
        Case {
            any_caller: false,
            name: "create principal",
            allowed: NOBODY,
            scoped: false,
            ok: 201,
            request: |_, _| {
                (
                    Method::POST,
                    "/ajar/v1/principals".to_owned(),
                    Some(json!({"name": format!("p-{}", uuid::Uuid::new_v4()), "kind": "service"})),
                )
            },
        },
        Case {
            any_caller: true,
            name: "me",
            allowed: READERS,
            scoped: false,
            ok: 200,
            request: |_, _| (Method::GET, "/ajar/v1/me".to_owned(), None),
        },
        Case {
            any_caller: true,
            name: "subscriptions",
            allowed: READERS,
            scoped: false,
            ok: 200,
            request: |_, _| (Method::GET, format!("/subscriptions?{API}"), None),
        },
        Case {
            any_caller: true,
            name: "recommended ports",
            allowed: READERS,
            scoped: false,
            ok: 200,
            request: |_, _| (Method::GET, "/ajar/v1/recommendedPorts".to_owned(), None),
        },
    ]
}

#[tokio::test]
async fn authorization_matrix() {
    let w = World::new().await;
    let mut differences = Vec::new();
    let mut bad_source = 0u32;
    for case in cases() {
        let places: &[Place] = if case.scoped { &[Place::Inside, Place::Outside] } else { &[Place::Inside] };
        for &place in places {
            let (method, path, body) = (case.request)(&w, place);
            let body = body.map(|b| b.to_string().into_bytes());
            for (role, _, token) in &w.tokens {
                let expected = if case.allowed.contains(role) && place == Place::Inside { case.ok } else { 403 };
                let (st, v, _) = w.s.send(method.clone(), &path, Some(token), body.clone(), "application/json").await;
                let code = v["error"]["code"].as_str().unwrap_or_default().to_owned();
                if st.as_u16() != expected || (expected == 403 && code != "AuthorizationFailed") {
                    differences.push(format!("{} {place:?} as {role:?}: expected {expected}, got {st} {v}", case.name));
                }
            }
            // No role at all: only what every authenticated caller may.
            let expected = if case.any_caller { case.ok } else { 403 };
            let (st, v, _) = w.s.send(method.clone(), &path, Some(&w.nobody.1), body.clone(), "application/json").await;
            if st.as_u16() != expected {
                differences.push(format!("{} {place:?} with no role: expected {expected}, got {st} {v}", case.name));
            }
            for (what, token) in &w.bad_tokens {
                bad_source += 1;
                let from = format!("198.51.100.{bad_source}");
                let token = (!token.is_empty()).then_some(token.as_str());
                let (st, v, _) =
                    w.s.send_with(method.clone(), &path, token, body.clone(), "application/json", &[("x-forwarded-for", &from)]).await;
                if st != StatusCode::UNAUTHORIZED {
                    differences.push(format!("{} {place:?} with {what}: expected 401, got {st} {v}", case.name));
                }
            }
        }
    }
    // The bootstrap admin (Owner at the root) may do the root-scoped ones.
    for (method, path) in [
        (Method::GET, "/ajar/v1/principals"),
        (Method::GET, "/ajar/v1/activity?limit=5"),
        (Method::GET, "/ajar/v1/gateways/gw1"),
        (Method::DELETE, "/ajar/v1/gateways/ghost"),
    ] {
        let (st, v) = w.s.call(method, path, None).await;
        assert!(st.is_success(), "{path}: {st} {v}");
    }
    assert!(differences.is_empty(), "{} differences from the table:\n{}", differences.len(), differences.join("\n"));

    // Every denial is on record with the caller, the action and the scope.
    let log = w.s.activity("limit=10000").await;
    let denials: Vec<&Value> = log.iter().filter(|e| e["errorCode"] == "AuthorizationFailed").collect();
    assert!(denials.len() > 100, "{}", denials.len());
    for d in &denials {
        let text = d.to_string();
        assert!(
            text.contains("deniedAction") && text.contains("deniedScope") && d["caller"].as_str().is_some_and(|c| !c.is_empty()),
            "{d}"
        );
    }
}

#[tokio::test]
async fn an_initiate_naming_several_machines_needs_each_and_is_refused_whole() {
    let w = World::new().await;
    let requester = &w.tokens.iter().find(|(r, _, _)| *r == Requester).unwrap().2;
    let both = policy_path(&w.s, &w.rg_out, "both");
    let vms = [vm_path(&w.s, &w.rg_in, "vm2"), vm_path(&w.s, &w.rg_out, "vm2")];
    let body = initiate_body(&vms).to_string().into_bytes();
    let (st, v, _) = w.s.send(Method::POST, &format!("{both}/initiate?{API}"), Some(requester), Some(body), "application/json").await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("AuthorizationFailed")), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("initiate/action") && message.contains(&vms[1]), "names the action and the scope: {message}");
    let policy = w.s.get(&format!("{both}?{API}")).await;
    assert_eq!(policy["properties"]["requests"], json!([]), "nothing was opened");
    // The one machine inside the assignment alone is fine.
    let body = initiate_body(&vms[..1]).to_string().into_bytes();
    let (st, v, _) = w.s.send(Method::POST, &format!("{both}/initiate?{API}"), Some(requester), Some(body), "application/json").await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    // And the requester sees that machine of the policy only, with its request.
    let (st, v, _) = w.s.send(Method::GET, &format!("{both}?{API}"), Some(requester), None, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let seen: BTreeSet<&str> = v["properties"]["virtualMachines"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(seen, BTreeSet::from([vms[0].as_str()]));
    assert_eq!(v["properties"]["requests"].as_array().unwrap().len(), 1, "{v}");
}

#[tokio::test]
async fn privileges_cannot_be_escalated() {
    let mut w = World::new().await;
    let token = |role: Role| w.tokens.iter().find(|(r, _, _)| *r == role).unwrap().2.clone();
    let rg = rg_path(&w.s, &w.rg_in);
    let assign_path =
        |scope: &str| format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{}?{AUTHZ_API}", uuid::Uuid::new_v4());
    let assign_body = |role: &str, principal: &str| {
        json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{role}"), "principalId": principal}})
            .to_string()
            .into_bytes()
    };
    let forbidden = |st: StatusCode, v: &Value, what: &str| {
        assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("AuthorizationFailed")), "{what}: {v}");
    };

    // A Contributor cannot assign roles, not even to itself.
    let contributor = w.tokens.iter().find(|(r, _, _)| *r == Contributor).unwrap().1.clone();
    let (st, v, _) = w
        .s
        .send(Method::PUT, &assign_path(&rg), Some(&token(Contributor)), Some(assign_body(ROLES[0].1, &contributor)), "application/json")
        .await;
    forbidden(st, &v, "contributor assigns Owner");

    // A requester can neither define a role nor edit a policy.
    let role = json!({"Name": "Mine", "IsCustom": true, "Actions": ["*"], "AssignableScopes": [rg]}).to_string().into_bytes();
    let (st, v, _) =
        w.s.send(
            Method::PUT,
            &format!("{rg}/providers/Microsoft.Authorization/roleDefinitions/{}?{AUTHZ_API}", uuid::Uuid::new_v4()),
            Some(&token(Requester)),
            Some(role),
            "application/json",
        )
        .await;
    forbidden(st, &v, "requester defines a role");
    let body = policy_body(&[vm_path(&w.s, &w.rg_in, "vm")]).to_string().into_bytes();
    let (st, v, _) = w
        .s
        .send(Method::PUT, &format!("{}?{API}", policy_path(&w.s, &w.rg_in, "p")), Some(&token(Requester)), Some(body), "application/json")
        .await;
    forbidden(st, &v, "requester edits a policy");

    // A custom "assigner" (may assign roles, and read JIT) cannot hand out more than it holds.
    let assigner_role = uuid::Uuid::new_v4().to_string();
    let role = json!({"Name": "Assigner", "IsCustom": true, "Actions": ["Microsoft.Authorization/roleAssignments/*", "Microsoft.Security/locations/jitNetworkAccessPolicies/read"], "AssignableScopes": [rg]});
    let (st, v) =
        w.s.call(Method::PUT, &format!("{rg}/providers/Microsoft.Authorization/roleDefinitions/{assigner_role}?{AUTHZ_API}"), Some(role))
            .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (assigner, assigner_token) = w.principal_with_token("Assigner").await;
    w.assign(&assigner, &assigner_role, &rg).await;
    for (role, what) in [(ROLES[1].1, "Contributor"), (ROLES[2].1, "Reader"), (ROLES[0].1, "Owner")] {
        let (st, v, _) =
            w.s.send(Method::PUT, &assign_path(&rg), Some(&assigner_token), Some(assign_body(role, &w.nobody.0)), "application/json").await;
        forbidden(st, &v, &format!("assigner grants {what}"));
    }
    let reader_only = uuid::Uuid::new_v4().to_string();
    let role = json!({"Name": "JIT reader", "IsCustom": true, "Actions": ["Microsoft.Security/locations/jitNetworkAccessPolicies/read"], "AssignableScopes": [rg]});
    let (st, v) =
        w.s.call(Method::PUT, &format!("{rg}/providers/Microsoft.Authorization/roleDefinitions/{reader_only}?{AUTHZ_API}"), Some(role))
            .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v, _) =
        w.s.send(Method::PUT, &assign_path(&rg), Some(&assigner_token), Some(assign_body(&reader_only, &w.nobody.0)), "application/json")
            .await;
    assert_eq!(st, StatusCode::CREATED, "what it holds itself it may hand out: {v}");
    // ... but not above the scope it holds it at.
    let sub = format!("/subscriptions/{}", w.s.sub);
    let (st, v, _) =
        w.s.send(Method::PUT, &assign_path(&sub), Some(&assigner_token), Some(assign_body(&reader_only, &w.nobody.0)), "application/json")
            .await;
    forbidden(st, &v, "assigner grants at the subscription");

    // Someone who may define roles cannot widen its own role beyond what it holds.
    let definer_role = uuid::Uuid::new_v4().to_string();
    let definer =
        json!({"Name": "Definer", "IsCustom": true, "Actions": ["Microsoft.Authorization/roleDefinitions/*"], "AssignableScopes": [rg]});
    let (st, v) =
        w.s.call(Method::PUT, &format!("{rg}/providers/Microsoft.Authorization/roleDefinitions/{definer_role}?{AUTHZ_API}"), Some(definer))
            .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (definer_id, definer_token) = w.principal_with_token("Definer").await;
    w.assign(&definer_id, &definer_role, &rg).await;
    let widened = json!({"Name": "Definer", "IsCustom": true, "Actions": ["*"], "AssignableScopes": [rg]}).to_string().into_bytes();
    let (st, v, _) =
        w.s.send(
            Method::PUT,
            &format!("{rg}/providers/Microsoft.Authorization/roleDefinitions/{definer_role}?{AUTHZ_API}"),
            Some(&definer_token),
            Some(widened),
            "application/json",
        )
        .await;
    forbidden(st, &v, "definer widens its own role");

    // Minting a token for someone else needs everything that someone holds.
    let minter_role = uuid::Uuid::new_v4().to_string();
    let minter = json!({"Name": "Minter", "IsCustom": true, "Actions": ["Ajar/principals/tokens/*"], "AssignableScopes": ["/"]});
    let (st, v) =
        w.s.call(Method::PUT, &format!("/providers/Microsoft.Authorization/roleDefinitions/{minter_role}?{AUTHZ_API}"), Some(minter)).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (minter_id, minter_token) = w.principal_with_token("Minter").await;
    w.assign(&minter_id, &minter_role, "/").await;
    let owner_id = w.tokens.iter().find(|(r, _, _)| *r == Owner).unwrap().1.clone();
    let body = json!({"name": "stolen"}).to_string().into_bytes();
    let (st, v, _) = w
        .s
        .send(Method::POST, &format!("/ajar/v1/principals/{owner_id}/tokens"), Some(&minter_token), Some(body.clone()), "application/json")
        .await;
    forbidden(st, &v, "minter mints an Owner's token");
    let (fresh, _) = w.principal_with_token("Fresh").await;
    let (st, v, _) =
        w.s.send(Method::POST, &format!("/ajar/v1/principals/{fresh}/tokens"), Some(&minter_token), Some(body), "application/json").await;
    assert_eq!(st, StatusCode::CREATED, "a principal with no roles: {v}");
    w.secrets.push(v["token"].as_str().unwrap().to_owned());

    // A revoked token stops at once (the cache follows the store).
    let (victim, victim_token) = w.principal_with_token("Victim").await;
    let (st, _, _) = w.s.send(Method::GET, "/ajar/v1/me", Some(&victim_token), None, "").await;
    assert_eq!(st, StatusCode::OK);
    let listed = w.s.get(&format!("/ajar/v1/principals/{victim}/tokens")).await;
    let id = listed["value"][0]["id"].as_str().unwrap();
    assert!(listed.to_string().find(&victim_token).is_none(), "lists never show a secret");
    let (st, _) = w.s.call(Method::DELETE, &format!("/ajar/v1/tokens/{id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = w.s.send(Method::GET, "/ajar/v1/me", Some(&victim_token), None, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn secrets_never_reach_logs_activity_or_errors() {
    let w = World::new().await;
    let mut seen = String::new();
    // Errors answered to bad and good callers alike.
    for (_, token) in &w.bad_tokens {
        if !token.is_empty() {
            let (_, v, _) =
                w.s.send_with(Method::GET, "/ajar/v1/me", Some(token), None, "", &[("x-forwarded-for", "198.51.100.250")]).await;
            seen.push_str(&v.to_string());
        }
    }
    for (_, _, token) in &w.tokens {
        let (_, v, _) = w.s.send(Method::GET, "/ajar/v1/principals", Some(token), None, "").await;
        seen.push_str(&v.to_string());
    }
    seen.push_str(&w.s.get("/ajar/v1/activity?limit=10000").await.to_string());
    let (_, csv, _) = w.s.send(Method::GET, "/ajar/v1/activity?format=csv&limit=10000", Some(&w.s.token), None, "").await;
    seen.push_str(&csv.to_string());
    seen.push_str(&w.s.get("/ajar/v1/principals").await.to_string());
    seen.push_str(&std::fs::read_to_string(w.s.log_path()).unwrap());
    assert!(seen.len() > 10_000, "enough was looked at: {}", seen.len());
    for secret in &w.secrets {
        // The random part alone: a prefix such as "ajar_" is no secret.
        let random = secret.split_once('_').map_or(secret.as_str(), |(_, r)| r);
        assert!(!seen.contains(random), "a secret leaked");
    }
}
