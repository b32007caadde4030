//! `ajar-bench control-plane --rbac`: role data stored through the API before
//! the load, and the principal the load then runs as.
//!
//! Creates `--rbac-principals` user principals, `--rbac-roles` custom roles
//! (the same generator as `ajar-bench authz`: action lists from the catalog
//! with wildcards, some notActions; assignable in the bootstrap subscription)
//! and `--rbac-assignments` role assignments over those principals (a heavy
//! tail up to 50 each) at resource-group and VM scopes, all as the bootstrap
//! admin. Then one more principal, the requester, gets a token and the
//! built-in JIT Network Access Requester role at the policies' resource group:
//! the load runs with its token, so every request is authorized by a role
//! assignment below the root instead of the admin's Owner at `/`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::authz::{assignment_guid, assignments_per_principal, custom_role_actions, custom_role_guid};
use crate::{Api, SEED_CONCURRENCY, error_chain};

const AUTHZ_API_VERSION: &str = "api-version=2022-04-01";
const READER_ID: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const JIT_REQUESTER_ID: &str = "df903be8-ea06-4b3a-a014-28c820417985";
/// The most assignments one principal gets.
const MAX_PER_PRINCIPAL: usize = 50;
/// Resource groups besides the bootstrap one that resource-group assignments name.
const OTHER_GROUPS: u64 = 20;

#[derive(Debug, Clone, Copy)]
pub(crate) struct RbacOptions {
    pub roles: u32,
    pub assignments: u32,
    pub principals: u32,
}

/// What was stored, how fast, and who the load runs as.
pub(crate) struct RbacSeeded {
    pub opts: RbacOptions,
    pub principals_time: Duration,
    pub roles_time: Duration,
    pub assignments_time: Duration,
    /// Assignments at resource-group and at VM scope.
    pub at_group: usize,
    pub at_vm: usize,
    pub max_per_principal: usize,
    pub requester_id: String,
    pub requester_token: String,
}

impl RbacSeeded {
    pub fn to_json(&self) -> Value {
        json!({
            "customRoles": self.opts.roles,
            "roleAssignments": self.opts.assignments,
            "principals": self.opts.principals,
            "assignmentsAtResourceGroup": self.at_group,
            "assignmentsAtVm": self.at_vm,
            "maxAssignmentsPerPrincipal": self.max_per_principal,
            "principalsSeconds": self.principals_time.as_secs_f64(),
            "rolesSeconds": self.roles_time.as_secs_f64(),
            "assignmentsSeconds": self.assignments_time.as_secs_f64(),
            "requesterId": self.requester_id,
        })
    }
}

/// Sends a request and returns its JSON body (`null` if empty); anything but 2xx is an error.
async fn send_json(req: reqwest::RequestBuilder, what: &str) -> Result<Value> {
    let resp = req.send().await.map_err(|e| anyhow!("{what}: {}", error_chain(&e)))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| anyhow!("{what}: reading the body after HTTP {status}: {}", error_chain(&e)))?;
    if !status.is_success() {
        let text: String = String::from_utf8_lossy(&body).chars().take(500).collect();
        bail!("{what}: HTTP {status}: {text}");
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).with_context(|| format!("{what}: the answer is not JSON"))
}

/// Runs `f(0..n)` with `SEED_CONCURRENCY` in flight; the results in index
/// order and the time taken. Stops at the first error.
async fn fan_out<T, F, Fut>(n: usize, f: F) -> Result<(Vec<T>, Duration)>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..SEED_CONCURRENCY.min(n) {
        let f = Arc::clone(&f);
        let next = Arc::clone(&next);
        set.spawn(async move {
            let mut out = Vec::new();
            // Bounded by n: each iteration takes a fresh index.
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(out);
                }
                out.push((i, f(i).await?));
            }
        });
    }
    let mut all: Vec<(usize, T)> = crate::join_all(set, "a seeding task").await?.into_iter().flatten().collect();
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok((all.into_iter().map(|(_, t)| t).collect(), start.elapsed()))
}

fn principal_id(v: &Value, what: &str) -> Result<String> {
    v.get("id").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| anyhow!("{what}: the answer has no \"id\": {v}"))
}

async fn create_principal(api: &Api, name: String) -> Result<String> {
    let what = format!("POST principal {name}");
    let req =
        api.client.post(format!("{}/ajar/v1/principals", api.url)).bearer_auth(&api.token).json(&json!({"name": name, "kind": "user"}));
    principal_id(&send_json(req, &what).await?, &what)
}

fn assignment_request(api: &Api, scope: &str, guid: &str, role: &str, principal: &str) -> reqwest::RequestBuilder {
    let body = json!({"properties": {
        "roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{role}"),
        "principalId": principal,
    }});
    api.client
        .put(format!("{}{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}?{AUTHZ_API_VERSION}", api.url))
        .bearer_auth(&api.token)
        .json(&body)
}

/// One planned assignment: scope, role GUID, index of the principal.
struct Planned {
    scope: String,
    role: String,
    principal: usize,
}

/// Stores the role data as the admin `api` and returns the requester's token.
/// `vms` is how many VMs (`vm0`…) the bench seeded in the bootstrap resource group.
pub(crate) async fn seed(api: &Arc<Api>, opts: RbacOptions, vms: u64, seed: u64) -> Result<RbacSeeded> {
    let mut rng = StdRng::seed_from_u64(seed);
    let sub_scope = format!("/subscriptions/{}", api.sub);
    let rg_scope = |rg: &str| format!("{sub_scope}/resourceGroups/{rg}");

    eprintln!("RBAC: creating {} principals ...", opts.principals);
    let a = Arc::clone(api);
    let (principals, principals_time) = fan_out(opts.principals as usize, move |i| {
        let a = Arc::clone(&a);
        async move { create_principal(&a, format!("bench-user-{i:05}")).await }
    })
    .await?;

    eprintln!("RBAC: creating {} custom roles ...", opts.roles);
    let bodies: Arc<Vec<Value>> = Arc::new(
        (0..opts.roles)
            .map(|i| {
                let (actions, not_actions) = custom_role_actions(&mut rng);
                json!({
                    "Name": format!("Bench role {i:04}"),
                    "IsCustom": true,
                    "Description": "ajar-bench",
                    "Actions": actions,
                    "NotActions": not_actions,
                    "AssignableScopes": [sub_scope],
                })
            })
            .collect(),
    );
    let a = Arc::clone(api);
    let (_, roles_time) = fan_out(opts.roles as usize, move |i| {
        let a = Arc::clone(&a);
        let bodies = Arc::clone(&bodies);
        async move {
            let guid = custom_role_guid(i as u32);
            let url =
                format!("{}/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{guid}?{AUTHZ_API_VERSION}", a.url, a.sub);
            send_json(a.client.put(url).bearer_auth(&a.token).json(&bodies[i]), &format!("PUT role definition {guid}")).await.map(drop)
        }
    })
    .await?;

    // Assignments: a heavy tail of principals; 85 % custom roles, the rest Reader or
    // the requester role; 30 % at a resource group, 70 % at a VM.
    let counts = assignments_per_principal(&mut rng, principals.len(), opts.assignments as usize, MAX_PER_PRINCIPAL);
    let mut plan = Vec::with_capacity(opts.assignments as usize);
    let (mut at_group, mut at_vm) = (0, 0);
    // The server refuses a second assignment of one role to one principal at one scope: draw again.
    let mut seen = std::collections::HashSet::new();
    let draw = |rng: &mut StdRng| {
        let role = if rng.gen_bool(0.85) {
            custom_role_guid(rng.gen_range(0..opts.roles))
        } else if rng.gen_bool(0.5) {
            READER_ID.to_owned()
        } else {
            JIT_REQUESTER_ID.to_owned()
        };
        if rng.gen_bool(0.3) {
            let scope = match rng.gen_range(0..=OTHER_GROUPS) {
                0 => rg_scope(&api.rg),
                k => rg_scope(&format!("bench-rg-{k:02}")),
            };
            (scope, role, true)
        } else {
            (api.vm_id(rng.gen_range(0..vms.max(1))), role, false)
        }
    };
    for (principal, count) in counts.iter().enumerate() {
        for _ in 0..*count {
            let mut attempts = 0;
            let (scope, role, level_group) = loop {
                let (scope, role, level_group) = draw(&mut rng);
                attempts += 1;
                if seen.insert((principal, scope.to_ascii_lowercase(), role.clone())) || attempts > 1000 {
                    break (scope, role, level_group);
                }
            };
            if level_group {
                at_group += 1;
            } else {
                at_vm += 1;
            }
            plan.push(Planned { scope, role, principal });
        }
    }
    eprintln!("RBAC: creating {} role assignments ...", plan.len());
    let plan = Arc::new(plan);
    let principals = Arc::new(principals);
    let a = Arc::clone(api);
    let p = Arc::clone(&plan);
    let (_, assignments_time) = fan_out(plan.len(), move |i| {
        let (a, p, principals) = (Arc::clone(&a), Arc::clone(&p), Arc::clone(&principals));
        async move {
            let one = &p[i];
            let guid = assignment_guid(i as u32);
            let req = assignment_request(&a, &one.scope, &guid, &one.role, &principals[one.principal]);
            send_json(req, &format!("PUT role assignment {guid} at {}", one.scope)).await.map(drop)
        }
    })
    .await?;
    eprintln!(
        "RBAC: stored in {:.1} s (principals) + {:.1} s (roles) + {:.1} s (assignments, {:.0}/s)",
        principals_time.as_secs_f64(),
        roles_time.as_secs_f64(),
        assignments_time.as_secs_f64(),
        plan.len() as f64 / assignments_time.as_secs_f64().max(1e-9)
    );

    // The requester: its own principal and token, the requester role at the policies' resource group.
    let requester_id = create_principal(api, "bench-requester".to_owned()).await?;
    let what = "POST requester token";
    let token = send_json(
        api.client
            .post(format!("{}/ajar/v1/principals/{requester_id}/tokens", api.url))
            .bearer_auth(&api.token)
            .json(&json!({"name": "bench"})),
        what,
    )
    .await?;
    let requester_token =
        token.get("token").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| anyhow!("{what}: the answer has no \"token\""))?;
    let guid = assignment_guid(u32::MAX);
    send_json(assignment_request(api, &rg_scope(&api.rg), &guid, JIT_REQUESTER_ID, &requester_id), "PUT the requester's role assignment")
        .await?;

    Ok(RbacSeeded {
        opts,
        principals_time,
        roles_time,
        assignments_time,
        at_group,
        at_vm,
        max_per_principal: counts.iter().copied().max().unwrap_or(0),
        requester_id,
        requester_token,
    })
}
