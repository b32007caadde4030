//! The SQL of each operation. Functions take a `Connection` (a `Transaction`
//! derefs to one) and run inside whatever transaction the caller holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use time::{Date, OffsetDateTime};

use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::{ActivityEntry, ActivityQuery, Audit, Outcome};
use ajar_domain::agent::{self, ConnectionCut, DesiredState};
use ajar_domain::history::{GrantHistory, GrantSpan};
use ajar_domain::ids::{PolicyName, Scope};
use ajar_domain::initiate::{
    AccessRequest, Caller, Grant, GrantStatus, InitiateDraft, RequestVm, StatusReason, grant_still_allowed, plan_initiate,
};
use ajar_domain::inventory::{AgentInfo, EnforcementPoint, Vm};
use ajar_domain::policy::{Limits, Policy, PortRule, VmPolicy, default_ports, validate_policy, vm_target};
use ajar_domain::status::{JitState, RECENT_DAYS, VmJitStatus, jit_state, recent_days, recent_window_start};
use ajar_domain::{AccessDuration, ErrorCode, PolicyId, Problem, SubscriptionId, VmId};

use super::codec::{decode_addresses, decode_protocol, decode_sources, encode_addresses, encode_sources, from_ns, to_ns};
use super::{backend, chain_hash};
use crate::{
    AgentReport, BootstrapPlan, Defaults, NewAgent, Page, PageRequest, PolicyView, Principal, PutOutcome, REQUEST_HISTORY, StoreError,
    StoreResult, Subscription, TokenPurpose,
};

fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| backend(context, e)
}

// ---------------------------------------------------------------- bootstrap

pub(crate) fn defaults(c: &Connection) -> StoreResult<Option<Defaults>> {
    let mut stmt = c.prepare_cached("SELECT name, value FROM settings").map_err(db("reading settings"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(db("reading settings"))?
        .collect::<Result<HashMap<_, _>, _>>()
        .map_err(db("reading settings"))?;
    let (Some(sub), Some(rg), Some(loc)) = (rows.get("subscription"), rows.get("resource_group"), rows.get("location")) else {
        return Ok(None);
    };
    Ok(Some(Defaults {
        subscription: sub.parse().map_err(|e| backend("stored subscription", e))?,
        resource_group: rg.parse().map_err(|e| backend("stored resource group", e))?,
        location: loc.parse().map_err(|e| backend("stored location", e))?,
    }))
}

pub(crate) fn bootstrap(c: &Connection, plan: &BootstrapPlan, now: OffsetDateTime) -> StoreResult<Defaults> {
    if defaults(c)?.is_some() {
        return Err(Problem::new(ErrorCode::Conflict, None, "this data directory was initialised already").into());
    }
    let now_ns = to_ns(now);
    let admin_id = uuid::Uuid::new_v4().to_string();
    let join_id = uuid::Uuid::new_v4().to_string();
    c.execute(
        "INSERT INTO subscriptions (id, display_name, created_ns) VALUES (?1, ?2, ?3)",
        params![plan.subscription.id.as_str(), plan.subscription.display_name, now_ns],
    )
    .map_err(db("creating the subscription"))?;
    let mut principal = c
        .prepare_cached("INSERT INTO principals (id, name, kind, created_ns) VALUES (?1, ?2, ?3, ?4)")
        .map_err(db("creating principals"))?;
    principal.execute(params![admin_id, plan.admin_name, "user", now_ns]).map_err(db("creating the admin"))?;
    principal.execute(params![join_id, "agent-enrolment", "service", now_ns]).map_err(db("creating the enrolment principal"))?;
    super::identity::insert_token(c, &plan.admin_token_hash, &admin_id, TokenPurpose::Api, "bootstrap api", None, now)?;
    super::identity::insert_token(c, &plan.join_token_hash, &join_id, TokenPurpose::Join, "bootstrap join", None, now)?;
    super::identity::assign_root_owner(c, &admin_id, now)?;
    let mut setting = c.prepare_cached("INSERT INTO settings (name, value) VALUES (?1, ?2)").map_err(db("storing settings"))?;
    for (name, value) in [
        ("subscription", plan.subscription.id.as_str()),
        ("resource_group", plan.resource_group.as_str()),
        ("location", plan.location.as_str()),
    ] {
        setting.execute(params![name, value]).map_err(db("storing settings"))?;
    }
    Ok(Defaults {
        subscription: plan.subscription.id.clone(),
        resource_group: plan.resource_group.clone(),
        location: plan.location.clone(),
    })
}

pub(crate) fn principal_for_token(
    c: &Connection,
    hash: &[u8; 32],
    purpose: TokenPurpose,
    now: OffsetDateTime,
) -> StoreResult<Option<Principal>> {
    c.prepare_cached(
        "SELECT p.id, p.name, p.kind FROM tokens t JOIN principals p ON p.id = t.principal_id
         WHERE t.hash = ?1 AND t.purpose = ?2 AND t.revoked_ns IS NULL AND (t.expires_ns IS NULL OR t.expires_ns > ?3)",
    )
    .map_err(db("looking up a token"))?
    .query_row(params![hash.as_slice(), purpose.as_str(), to_ns(now)], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })
    .optional()
    .map_err(db("looking up a token"))?
    .map(|(id, name, kind)| Ok(Principal { id, name, kind: kind.parse().map_err(|e: String| backend("stored principal kind", e))? }))
    .transpose()
}

pub(crate) fn subscriptions(c: &Connection) -> StoreResult<Vec<Subscription>> {
    let mut stmt = c.prepare_cached("SELECT id, display_name FROM subscriptions ORDER BY id").map_err(db("listing subscriptions"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(db("listing subscriptions"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db("listing subscriptions"))?;
    rows.into_iter()
        .map(|(id, display_name)| Ok(Subscription { id: id.parse().map_err(|e| backend("stored subscription", e))?, display_name }))
        .collect()
}

fn require_subscription(c: &Connection, id: &SubscriptionId) -> StoreResult<()> {
    let found: Option<i64> = c
        .prepare_cached("SELECT 1 FROM subscriptions WHERE id = ?1")
        .map_err(db("checking the subscription"))?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()
        .map_err(db("checking the subscription"))?;
    match found {
        Some(_) => Ok(()),
        None => Err(Problem::new(ErrorCode::SubscriptionNotFound, None, format!("subscription '{id}' is not known to this server")).into()),
    }
}

// ---------------------------------------------------------------- inventory

/// The columns `vm_from_row` reads, from `vms v LEFT JOIN agents a`.
const VM_COLUMNS: &str = "v.key, v.id, v.location, v.os, v.addresses, a.id, a.version, a.nft_error, a.last_seen_ns, a.applied";

fn vm_from_row(r: &rusqlite::Row<'_>) -> StoreResult<(String, Vm)> {
    let err = db("reading a VM");
    let key: String = r.get(0).map_err(&err)?;
    let id: String = r.get(1).map_err(&err)?;
    let location: String = r.get(2).map_err(&err)?;
    let os: String = r.get(3).map_err(&err)?;
    let addresses: String = r.get(4).map_err(&err)?;
    let enforcement = match r.get::<_, Option<String>>(5).map_err(&err)? {
        None => EnforcementPoint::None,
        Some(agent_id) => EnforcementPoint::Agent(AgentInfo {
            agent_id,
            version: r.get(6).map_err(&err)?,
            nftables: r.get::<_, Option<String>>(7).map_err(&err)?.map_or(Ok(()), Err),
            last_seen: from_ns(r.get(8).map_err(&err)?)?,
            applied: r.get(9).map_err(&err)?,
        }),
    };
    let vm = Vm {
        id: id.parse().map_err(|e| backend("stored VM id", e))?,
        location: location.parse().map_err(|e| backend("stored location", e))?,
        os: os.parse().map_err(|e: String| backend("stored OS type", e))?,
        private_addresses: decode_addresses(&addresses)?,
        enforcement,
    };
    Ok((key, vm))
}

pub(crate) fn get_vm(c: &Connection, key: &str) -> StoreResult<Option<Vm>> {
    let mut stmt = c
        .prepare_cached(&format!("SELECT {VM_COLUMNS} FROM vms v LEFT JOIN agents a ON a.vm_key = v.key WHERE v.key = ?1"))
        .map_err(db("reading a VM"))?;
    let mut rows = stmt.query([key]).map_err(db("reading a VM"))?;
    match rows.next().map_err(db("reading a VM"))? {
        Some(r) => Ok(Some(vm_from_row(r)?.1)),
        None => Ok(None),
    }
}

pub(crate) fn put_vm(c: &Connection, vm: &Vm, now: OffsetDateTime) -> StoreResult<PutOutcome> {
    require_subscription(c, &vm.id.subscription)?;
    let key = vm.id.key();
    if let Some(policy_id) = policy_of_vm(c, &key)? {
        let policy: PolicyId = policy_id.parse().map_err(|e| backend("stored policy id", e))?;
        if policy.location != vm.location {
            return Err(Problem::at(
                ErrorCode::InvalidVirtualMachine,
                "location",
                format!(
                    "the machine is in JIT policy '{policy}' of location '{}'; remove it from that policy before moving it",
                    policy.location
                ),
            )
            .into());
        }
    }
    let existed = get_vm(c, &key)?.is_some();
    let now_ns = to_ns(now);
    c.prepare_cached(
        "INSERT INTO vms (key, id, subscription, rg_key, location, os, addresses, created_ns, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT(key) DO UPDATE SET id = excluded.id, location = excluded.location, os = excluded.os,
             addresses = excluded.addresses, updated_ns = excluded.updated_ns",
    )
    .map_err(db("writing a VM"))?
    .execute(params![
        key,
        vm.id.to_string(),
        vm.id.subscription.as_str(),
        vm.id.resource_group.key(),
        vm.location.as_str(),
        vm.os.as_str(),
        encode_addresses(&vm.private_addresses),
        now_ns
    ])
    .map_err(db("writing a VM"))?;
    Ok(if existed { PutOutcome::Updated } else { PutOutcome::Created })
}

fn policy_of_vm(c: &Connection, vm_key: &str) -> StoreResult<Option<String>> {
    c.prepare_cached("SELECT p.id FROM policy_vms v JOIN policies p ON p.key = v.policy_key WHERE v.vm_key = ?1")
        .map_err(db("finding a VM's policy"))?
        .query_row([vm_key], |r| r.get(0))
        .optional()
        .map_err(db("finding a VM's policy"))
}

pub(crate) fn delete_vm(c: &Connection, id: &VmId) -> StoreResult<bool> {
    let key = id.key();
    if let Some(policy) = policy_of_vm(c, &key)? {
        return Err(Problem::new(
            ErrorCode::VirtualMachineInUse,
            None,
            format!("virtual machine '{id}' is in JIT policy '{policy}'; remove it from the policy first"),
        )
        .into());
    }
    // Its agent goes too: the credential stops working, and the machine can be enrolled again.
    c.prepare_cached("DELETE FROM agents WHERE vm_key = ?1")
        .map_err(db("deleting a VM's agent"))?
        .execute([&key])
        .map_err(db("deleting a VM's agent"))?;
    let n =
        c.prepare_cached("DELETE FROM vms WHERE key = ?1").map_err(db("deleting a VM"))?.execute([&key]).map_err(db("deleting a VM"))?;
    Ok(n > 0)
}

fn page_of<T>(mut items: Vec<(String, T)>, size: usize) -> Page<T> {
    let next = if items.len() > size {
        items.truncate(size);
        items.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    Page { items: items.into_iter().map(|(_, t)| t).collect(), next }
}

pub(crate) fn list_vms(c: &Connection, scope: &Scope, page: &PageRequest) -> StoreResult<Page<Vm>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {VM_COLUMNS} FROM vms v LEFT JOIN agents a ON a.vm_key = v.key
             WHERE v.subscription = ?1 AND (?2 IS NULL OR v.rg_key = ?2) AND (?3 IS NULL OR lower(v.location) = ?3) AND v.key > ?4
             ORDER BY v.key LIMIT ?5"
        ))
        .map_err(db("listing VMs"))?;
    let mut rows = stmt
        .query(params![
            scope.subscription.as_str(),
            scope.resource_group.as_ref().map(|g| g.key()),
            scope.location.as_ref().map(|l| l.key()),
            page.after.as_deref().unwrap_or(""),
            (page.size + 1) as i64
        ])
        .map_err(db("listing VMs"))?;
    let mut items = Vec::new();
    while let Some(r) = rows.next().map_err(db("listing VMs"))? {
        items.push(vm_from_row(r)?);
    }
    Ok(page_of(items, page.size))
}

// ---------------------------------------------------------------- policies

pub(crate) struct StoredPolicy {
    uid: String,
    policy: Policy,
}

/// Policies the policy cache holds before it starts over.
const POLICY_CACHE_MAX: usize = 4096;

/// Policies the writer has read, so an initiate does not read its policy again.
/// Only the writer changes policies, and every operation that does clears this.
#[derive(Default)]
pub(crate) struct PolicyCache(HashMap<String, Arc<StoredPolicy>>);

impl PolicyCache {
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    fn load(&mut self, c: &Connection, key: &str) -> StoreResult<Option<Arc<StoredPolicy>>> {
        if let Some(p) = self.0.get(key) {
            return Ok(Some(Arc::clone(p)));
        }
        let Some(stored) = load_policy(c, key)? else { return Ok(None) };
        let stored = Arc::new(stored);
        if self.0.len() >= POLICY_CACHE_MAX {
            self.0.clear();
        }
        self.0.insert(key.to_owned(), Arc::clone(&stored));
        Ok(Some(stored))
    }
}

fn load_policy(c: &Connection, key: &str) -> StoreResult<Option<StoredPolicy>> {
    let head = c
        .prepare_cached("SELECT uid, id, kind, cut_connections_on_revoke FROM policies WHERE key = ?1")
        .map_err(db("reading a policy"))?
        .query_row([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, bool>(3)?)))
        .optional()
        .map_err(db("reading a policy"))?;
    let Some((uid, id, kind, cut_connections_on_revoke)) = head else { return Ok(None) };
    let mut vms_stmt = c
        .prepare_cached("SELECT vm_key, vm_id, public_ip FROM policy_vms WHERE policy_key = ?1 ORDER BY ord")
        .map_err(db("reading a policy's VMs"))?;
    let vm_rows = vms_stmt
        .query_map([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?)))
        .map_err(db("reading a policy's VMs"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db("reading a policy's VMs"))?;
    let mut ports_stmt = c
        .prepare_cached(
            "SELECT number, protocol, sources, sources_is_list, max_duration_ns FROM policy_ports WHERE vm_key = ?1 ORDER BY ord",
        )
        .map_err(db("reading a policy's ports"))?;
    let mut vms = Vec::with_capacity(vm_rows.len());
    for (vm_key, vm_id, public_ip) in vm_rows {
        let rows = ports_stmt
            .query_map([&vm_key], |r| {
                Ok((r.get::<_, u16>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, bool>(3)?, r.get::<_, i64>(4)?))
            })
            .map_err(db("reading a policy's ports"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db("reading a policy's ports"))?;
        let ports = rows
            .into_iter()
            .map(|(number, protocol, sources, is_list, max_ns)| {
                Ok(PortRule {
                    number,
                    protocol: decode_protocol(&protocol)?,
                    sources: decode_sources(&sources, is_list)?,
                    max_duration: AccessDuration::from(time::Duration::nanoseconds(max_ns)),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        vms.push(VmPolicy { vm: vm_id.parse().map_err(|e| backend("stored VM id", e))?, ports, public_ip });
    }
    let policy = Policy { id: id.parse().map_err(|e| backend("stored policy id", e))?, kind, vms, cut_connections_on_revoke };
    Ok(Some(StoredPolicy { uid, policy }))
}

fn load_requests(c: &Connection, policy: &PolicyId, uid: &str) -> StoreResult<Vec<AccessRequest>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT r.seq, r.id, r.requestor, r.start_ns, r.justification,
                    g.vm_id, g.number, g.protocol, g.sources, g.sources_is_list, g.end_ns, g.status, g.reason, g.mapped_port
             FROM (SELECT * FROM access_requests WHERE policy_uid = ?1 ORDER BY seq DESC LIMIT ?2) r
             JOIN grants g ON g.request_seq = r.seq
             ORDER BY r.seq, g.vm_ord, g.port_ord",
        )
        .map_err(db("reading requests"))?;
    let mut rows = stmt.query(params![uid, REQUEST_HISTORY as i64]).map_err(db("reading requests"))?;
    let mut requests: Vec<(i64, AccessRequest)> = Vec::new();
    while let Some(r) = rows.next().map_err(db("reading requests"))? {
        let seq: i64 = r.get(0).map_err(db("reading requests"))?;
        if requests.last().map(|(s, _)| *s) != Some(seq) {
            requests.push((
                seq,
                AccessRequest {
                    id: r.get(1).map_err(db("reading requests"))?,
                    policy: policy.clone(),
                    requestor: r.get(2).map_err(db("reading requests"))?,
                    start: from_ns(r.get(3).map_err(db("reading requests"))?)?,
                    justification: r.get(4).map_err(db("reading requests"))?,
                    vms: Vec::new(),
                },
            ));
        }
        let vm_id: String = r.get(5).map_err(db("reading requests"))?;
        let grant = grant_from_row(r, 6)?;
        let Some((_, request)) = requests.last_mut() else { continue };
        match request.vms.last_mut() {
            Some(vm) if vm.vm.to_string() == vm_id => vm.grants.push(grant),
            _ => request.vms.push(RequestVm { vm: vm_id.parse().map_err(|e| backend("stored VM id", e))?, grants: vec![grant] }),
        }
    }
    Ok(requests.into_iter().map(|(_, r)| r).collect())
}

/// Reads number, protocol, sources, sources_is_list, end_ns, status, reason, mapped_port from column `at` on.
fn grant_from_row(r: &rusqlite::Row<'_>, at: usize) -> StoreResult<Grant> {
    let get_err = db("reading a grant");
    let status: String = r.get(at + 5).map_err(&get_err)?;
    let reason: String = r.get(at + 6).map_err(&get_err)?;
    Ok(Grant {
        number: r.get(at).map_err(&get_err)?,
        protocol: decode_protocol(&r.get::<_, String>(at + 1).map_err(&get_err)?)?,
        sources: decode_sources(&r.get::<_, String>(at + 2).map_err(&get_err)?, r.get(at + 3).map_err(&get_err)?)?,
        end: from_ns(r.get(at + 4).map_err(&get_err)?)?,
        status: match status.as_str() {
            "Initiated" => GrantStatus::Initiated,
            _ => GrantStatus::Revoked,
        },
        reason: match reason.as_str() {
            "Expired" => StatusReason::Expired,
            "NewerRequestInitiated" => StatusReason::NewerRequestInitiated,
            _ => StatusReason::UserRequested,
        },
        mapped_port: r.get(at + 7).map_err(&get_err)?,
    })
}

pub(crate) fn policy_view(c: &Connection, key: &str) -> StoreResult<Option<PolicyView>> {
    let Some(stored) = load_policy(c, key)? else { return Ok(None) };
    let requests = load_requests(c, &stored.policy.id, &stored.uid)?;
    Ok(Some(PolicyView { policy: stored.policy, requests }))
}

pub(crate) fn list_policies(c: &Connection, scope: &Scope, page: &PageRequest) -> StoreResult<Page<PolicyView>> {
    let keys: Vec<String> = c
        .prepare_cached(
            "SELECT key FROM policies
             WHERE subscription = ?1 AND (?2 IS NULL OR rg_key = ?2) AND (?3 IS NULL OR loc_key = ?3) AND key > ?4
             ORDER BY key LIMIT ?5",
        )
        .map_err(db("listing policies"))?
        .query_map(
            params![
                scope.subscription.as_str(),
                scope.resource_group.as_ref().map(|g| g.key()),
                scope.location.as_ref().map(|l| l.key()),
                page.after.as_deref().unwrap_or(""),
                (page.size + 1) as i64
            ],
            |r| r.get(0),
        )
        .map_err(db("listing policies"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db("listing policies"))?;
    let mut items = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(view) = policy_view(c, &key)? {
            items.push((key, view));
        }
    }
    Ok(page_of(items, page.size))
}

/// Writes a policy after checking it. Returns whether it was new and how many
/// live grants it revoked because the new version no longer allows them.
pub(crate) fn put_policy(c: &Connection, policy: &Policy, limits: &Limits, now: OffsetDateTime) -> StoreResult<(PutOutcome, u64)> {
    require_subscription(c, &policy.id.subscription)?;
    let mut inventory = HashMap::new();
    for vm_policy in &policy.vms {
        if let Some(vm) = get_vm(c, &vm_policy.vm.key())? {
            inventory.insert(vm_policy.vm.key(), vm);
        }
    }
    validate_policy(policy, limits, |id| inventory.get(&id.key()))?;
    let key = policy.id.key();
    for (i, vm_policy) in policy.vms.iter().enumerate() {
        if let Some(other) = policy_of_vm(c, &vm_policy.vm.key())?
            && other.to_lowercase() != key
        {
            return Err(Problem::at(
                ErrorCode::VirtualMachineInAnotherPolicy,
                &format!("{}.id", vm_target(i)),
                format!(
                    "virtual machine '{}' is already configured in JIT policy '{other}'; edit or remove that policy first",
                    vm_policy.vm
                ),
            )
            .into());
        }
    }
    let existing = load_policy(c, &key)?;
    let now_ns = to_ns(now);
    let uid = existing.as_ref().map(|e| e.uid.clone()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    c.prepare_cached(
        "INSERT INTO policies (key, uid, id, subscription, rg_key, loc_key, kind, cut_connections_on_revoke, created_ns, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
         ON CONFLICT(key) DO UPDATE SET kind = excluded.kind, cut_connections_on_revoke = excluded.cut_connections_on_revoke,
             updated_ns = excluded.updated_ns",
    )
    .map_err(db("writing a policy"))?
    .execute(params![
        key,
        uid,
        policy.id.to_string(),
        policy.id.subscription.as_str(),
        policy.id.resource_group.key(),
        policy.id.location.key(),
        policy.kind,
        policy.cut_connections_on_revoke,
        now_ns
    ])
    .map_err(db("writing a policy"))?;
    c.prepare_cached("DELETE FROM policy_vms WHERE policy_key = ?1")
        .map_err(db("replacing a policy's VMs"))?
        .execute([&key])
        .map_err(db("replacing a policy's VMs"))?;
    let mut vm_stmt = c
        .prepare_cached("INSERT INTO policy_vms (vm_key, policy_key, vm_id, ord, public_ip) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(db("writing a policy's VMs"))?;
    let mut port_stmt = c
        .prepare_cached(
            "INSERT INTO policy_ports (vm_key, ord, number, protocol, sources, sources_is_list, max_duration_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(db("writing a policy's ports"))?;
    for (i, vm_policy) in policy.vms.iter().enumerate() {
        let vm_key = vm_policy.vm.key();
        vm_stmt
            .execute(params![vm_key, key, vm_policy.vm.to_string(), i as i64, vm_policy.public_ip])
            .map_err(db("writing a policy's VMs"))?;
        for (j, port) in vm_policy.ports.iter().enumerate() {
            let (sources, is_list) = encode_sources(&port.sources);
            let max_ns = i64::try_from(port.max_duration.as_duration().whole_nanoseconds()).unwrap_or(i64::MAX);
            port_stmt
                .execute(params![vm_key, j as i64, port.number, port.protocol.as_str(), sources, is_list, max_ns])
                .map_err(db("writing a policy's ports"))?;
        }
    }
    let revoked = revoke_disallowed(c, &uid, Some(policy), now)?;
    Ok((if existing.is_some() { PutOutcome::Updated } else { PutOutcome::Created }, revoked))
}

/// Revokes the policy's live grants that `policy` does not allow (all of them when `None`).
fn revoke_disallowed(c: &Connection, uid: &str, policy: Option<&Policy>, now: OffsetDateTime) -> StoreResult<u64> {
    let mut stmt = c
        .prepare_cached(
            "SELECT g.request_seq, g.vm_key, g.vm_id, g.number, g.protocol, g.sources, g.sources_is_list, g.end_ns, g.status, g.reason, g.mapped_port, r.start_ns
             FROM grants g JOIN access_requests r ON r.seq = g.request_seq
             WHERE r.policy_uid = ?1 AND g.status = 'Initiated' AND g.end_ns > ?2",
        )
        .map_err(db("reading live grants"))?;
    let mut rows = stmt.query(params![uid, to_ns(now)]).map_err(db("reading live grants"))?;
    let mut doomed = Vec::new();
    while let Some(r) = rows.next().map_err(db("reading live grants"))? {
        let seq: i64 = r.get(0).map_err(db("reading live grants"))?;
        let vm_key: String = r.get(1).map_err(db("reading live grants"))?;
        let vm_id: String = r.get(2).map_err(db("reading live grants"))?;
        let grant = grant_from_row(r, 3)?;
        let start = from_ns(r.get(11).map_err(db("reading live grants"))?)?;
        let keep = match (policy, vm_id.parse::<VmId>()) {
            (Some(p), Ok(vm)) => grant_still_allowed(p, &vm, &grant, start),
            _ => false,
        };
        if !keep {
            doomed.push((seq, vm_key, grant.number));
        }
    }
    let mut update = c
        .prepare_cached(
            "UPDATE grants SET status = 'Revoked', reason = 'UserRequested', revoked_ns = ?4 WHERE request_seq = ?1 AND vm_key = ?2 AND number = ?3",
        )
        .map_err(db("revoking grants"))?;
    for (seq, vm_key, number) in &doomed {
        update.execute(params![seq, vm_key, number, to_ns(now)]).map_err(db("revoking grants"))?;
    }
    Ok(doomed.len() as u64)
}

pub(crate) fn delete_policy(c: &Connection, key: &str, now: OffsetDateTime) -> StoreResult<(bool, u64)> {
    let Some(stored) = load_policy(c, key)? else { return Ok((false, 0)) };
    let revoked = revoke_disallowed(c, &stored.uid, None, now)?;
    c.prepare_cached("DELETE FROM policies WHERE key = ?1")
        .map_err(db("deleting a policy"))?
        .execute([key])
        .map_err(db("deleting a policy"))?;
    Ok((true, revoked))
}

/// Adds each machine to the policy `name` of its resource group and location.
/// Returns the keys of the policies written.
pub(crate) fn enable(
    c: &Connection,
    vms: &[VmId],
    name: &PolicyName,
    ports: Option<&[PortRule]>,
    limits: &Limits,
    now: OffsetDateTime,
) -> StoreResult<Vec<String>> {
    if vms.is_empty() {
        return Err(Problem::at(ErrorCode::InvalidPolicy, "virtualMachines", "name at least one virtual machine").into());
    }
    let mut policies: BTreeMap<String, Policy> = BTreeMap::new();
    for (i, id) in vms.iter().enumerate() {
        let target = format!("virtualMachines[{i}]");
        let Some(vm) = get_vm(c, &id.key())? else {
            return Err(
                Problem::at(ErrorCode::VirtualMachineNotFound, &target, format!("virtual machine '{id}' is not in the inventory")).into()
            );
        };
        if let Some(other) = policy_of_vm(c, &id.key())? {
            return Err(Problem::at(
                ErrorCode::VirtualMachineInAnotherPolicy,
                &target,
                format!("JIT is already enabled on '{}' by policy '{other}'; edit that policy instead", id.name),
            )
            .into());
        }
        let policy_id = PolicyId {
            subscription: id.subscription.clone(),
            resource_group: id.resource_group.clone(),
            location: vm.location.clone(),
            name: name.clone(),
        };
        let key = policy_id.key();
        let policy = match policies.remove(&key) {
            Some(p) => p,
            None => match load_policy(c, &key)? {
                Some(stored) => stored.policy,
                None => Policy { id: policy_id, kind: Some("Basic".into()), vms: Vec::new(), cut_connections_on_revoke: false },
            },
        };
        let mut policy = policy;
        let rules = ports.map(<[PortRule]>::to_vec).unwrap_or_else(|| default_ports(vm.os));
        policy.vms.push(VmPolicy { vm: id.clone(), ports: rules, public_ip: None });
        policies.insert(key, policy);
    }
    for policy in policies.values() {
        put_policy(c, policy, limits, now)?;
    }
    Ok(policies.into_keys().collect())
}

// ---------------------------------------------------------------- requests

/// Stores a checked request. Returns it and how many older grants it superseded.
pub(crate) fn initiate(
    c: &Connection,
    cache: &mut PolicyCache,
    key: &str,
    draft: &InitiateDraft,
    caller: &Caller,
    now: OffsetDateTime,
) -> StoreResult<(AccessRequest, u64)> {
    let Some(stored) = cache.load(c, key)? else {
        return Err(Problem::new(
            ErrorCode::PolicyNotFound,
            None,
            "no JIT policy with this name exists in this resource group and location",
        )
        .into());
    };
    // Time-ordered IDs (v7) append to the unique index instead of landing on a random page.
    let request = plan_initiate(&stored.policy, draft, caller, now, uuid::Uuid::now_v7().to_string())?;
    let now_ns = to_ns(now);
    c.prepare_cached(
        "INSERT INTO access_requests (id, policy_uid, policy_id, requestor, principal_id, caller_addr, start_ns, justification)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .map_err(db("storing a request"))?
    .execute(params![
        request.id,
        stored.uid,
        stored.policy.id.to_string(),
        request.requestor,
        caller.principal_id,
        caller.addr.to_string(),
        now_ns,
        request.justification
    ])
    .map_err(db("storing a request"))?;
    let seq = c.last_insert_rowid();
    let mut supersede = c
        .prepare_cached(
            "UPDATE grants SET status = 'Revoked', reason = 'NewerRequestInitiated', revoked_ns = ?3
             WHERE vm_key = ?1 AND number = ?2 AND status = 'Initiated' AND end_ns > ?3 AND request_seq != ?4",
        )
        .map_err(db("superseding grants"))?;
    let mut insert = c
        .prepare_cached(
            "INSERT INTO grants (request_seq, vm_key, vm_id, vm_ord, port_ord, number, protocol, sources, sources_is_list, end_ns, status, reason, mapped_port)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .map_err(db("storing grants"))?;
    let mut superseded = 0u64;
    for (i, vm) in request.vms.iter().enumerate() {
        let vm_key = vm.vm.key();
        for (j, g) in vm.grants.iter().enumerate() {
            superseded += supersede.execute(params![vm_key, g.number, now_ns, seq]).map_err(db("superseding grants"))? as u64;
            let (sources, is_list) = encode_sources(&g.sources);
            insert
                .execute(params![
                    seq,
                    vm_key,
                    vm.vm.to_string(),
                    i as i64,
                    j as i64,
                    g.number,
                    g.protocol.as_str(),
                    sources,
                    is_list,
                    to_ns(g.end),
                    g.status.as_str(),
                    g.reason.as_str(),
                    g.mapped_port
                ])
                .map_err(db("storing grants"))?;
        }
    }
    let longest = request.vms.iter().flat_map(|v| &v.grants).map(|g| to_ns(g.end) - now_ns).max().unwrap_or(0);
    c.prepare_cached("UPDATE grant_bounds SET longest_ns = ?1 WHERE longest_ns < ?1")
        .map_err(db("recording the longest grant"))?
        .execute([longest])
        .map_err(db("recording the longest grant"))?;
    Ok((request, superseded))
}

pub(crate) fn expire_due(c: &Connection, now: OffsetDateTime) -> StoreResult<u64> {
    let n = c
        .prepare_cached("UPDATE grants SET status = 'Revoked', reason = 'Expired' WHERE status = 'Initiated' AND end_ns <= ?1")
        .map_err(db("expiring grants"))?
        .execute([to_ns(now)])
        .map_err(db("expiring grants"))?;
    Ok(n as u64)
}

pub(crate) fn next_expiry(c: &Connection) -> StoreResult<Option<OffsetDateTime>> {
    let ns: Option<i64> = c
        .prepare_cached("SELECT min(end_ns) FROM grants WHERE status = 'Initiated'")
        .map_err(db("finding the next expiry"))?
        .query_row([], |r| r.get(0))
        .map_err(db("finding the next expiry"))?;
    ns.map(from_ns).transpose()
}

// ---------------------------------------------------------------- agents

pub(crate) fn enroll_agent(c: &Connection, vm: &Vm, agent: &NewAgent, now: OffsetDateTime) -> StoreResult<String> {
    let key = vm.id.key();
    if get_vm(c, &key)?.is_some_and(|existing| matches!(existing.enforcement, EnforcementPoint::Agent(_))) {
        return Err(Problem::new(
            ErrorCode::Conflict,
            None,
            format!("virtual machine '{}' already has an agent; remove it (ajar vm remove) before enrolling another", vm.id),
        )
        .into());
    }
    put_vm(c, vm, now)?;
    let id = uuid::Uuid::new_v4().to_string();
    let now_ns = to_ns(now);
    c.prepare_cached(
        "INSERT INTO agents (id, vm_key, token_hash, version, nft_error, applied, enrolled_ns, last_seen_ns) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?6)",
    )
    .map_err(db("recording an agent"))?
    .execute(params![id, key, agent.token_hash.as_slice(), agent.version, agent.nftables.as_ref().err(), now_ns])
    .map_err(db("recording an agent"))?;
    Ok(id)
}

pub(crate) fn agent_for_token(c: &Connection, hash: &[u8; 32]) -> StoreResult<Option<(String, VmId)>> {
    let row: Option<(String, String)> = c
        .prepare_cached("SELECT a.id, v.id FROM agents a JOIN vms v ON v.key = a.vm_key WHERE a.token_hash = ?1")
        .map_err(db("looking up an agent"))?
        .query_row([hash.as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db("looking up an agent"))?;
    row.map(|(agent, vm)| Ok((agent, vm.parse().map_err(|e| backend("stored VM id", e))?))).transpose()
}

pub(crate) fn agent_report(c: &Connection, agent_id: &str, report: &AgentReport, now: OffsetDateTime) -> StoreResult<()> {
    let n = c
        .prepare_cached("UPDATE agents SET version = ?2, nft_error = ?3, applied = ?4, last_seen_ns = ?5 WHERE id = ?1")
        .map_err(db("recording an agent report"))?
        .execute(params![agent_id, report.version, report.nftables.as_ref().err(), report.applied, to_ns(now)])
        .map_err(db("recording an agent report"))?;
    if n == 0 {
        return Err(Problem::new(ErrorCode::Conflict, None, "this agent is no longer enrolled").into());
    }
    c.prepare_cached("UPDATE vms SET addresses = ?2 WHERE key = (SELECT vm_key FROM agents WHERE id = ?1)")
        .map_err(db("recording an agent report"))?
        .execute(params![agent_id, encode_addresses(&report.addresses)])
        .map_err(db("recording an agent report"))?;
    Ok(())
}

/// The live grants of a machine, each with its request's ID and requestor.
fn live_grants(c: &Connection, vm_key: &str, now: OffsetDateTime) -> StoreResult<Vec<(String, String, Grant)>> {
    let err = db("reading live grants");
    let mut stmt = c
        .prepare_cached(
            "SELECT r.id, r.requestor, g.number, g.protocol, g.sources, g.sources_is_list, g.end_ns, g.status, g.reason, g.mapped_port
             FROM grants g JOIN access_requests r ON r.seq = g.request_seq
             WHERE g.vm_key = ?1 AND g.status = 'Initiated' AND g.end_ns > ?2 ORDER BY g.number, r.seq",
        )
        .map_err(&err)?;
    let mut rows = stmt.query(params![vm_key, to_ns(now)]).map_err(&err)?;
    let mut live = Vec::new();
    while let Some(r) = rows.next().map_err(&err)? {
        live.push((r.get(0).map_err(&err)?, r.get(1).map_err(&err)?, grant_from_row(r, 2)?));
    }
    Ok(live)
}

/// The policy the machine is in, if any.
fn policy_holding(c: &Connection, vm_key: &str) -> StoreResult<Option<Policy>> {
    let policy_key: Option<String> = c
        .prepare_cached("SELECT policy_key FROM policy_vms WHERE vm_key = ?1")
        .map_err(db("finding a VM's policy"))?
        .query_row([vm_key], |r| r.get(0))
        .optional()
        .map_err(db("finding a VM's policy"))?;
    Ok(match policy_key {
        Some(key) => load_policy(c, &key)?.map(|s| s.policy),
        None => None,
    })
}

pub(crate) fn desired_state(c: &Connection, vm: &VmId, now: OffsetDateTime) -> StoreResult<DesiredState> {
    let key = vm.key();
    let policy = policy_holding(c, &key)?;
    let grants: Vec<(String, Grant)> = live_grants(c, &key, now)?.into_iter().map(|(request, _, grant)| (request, grant)).collect();
    let cuts = recent_cuts(c, &key, now)?;
    Ok(agent::desired_state(vm, policy.as_ref(), &grants, cuts, now))
}

/// Records, for the agent, the live grants on `ports` that a revoke is about to end.
fn record_cuts(c: &Connection, policy_uid: &str, vm: &VmId, ports: &[u16], now: OffsetDateTime) -> StoreResult<()> {
    let mut insert = c
        .prepare_cached(
            "INSERT INTO connection_cuts (vm_key, request_id, number, protocol, sources, sources_is_list, revoked_ns)
             SELECT g.vm_key, r.id, g.number, g.protocol, g.sources, g.sources_is_list, ?3
             FROM grants g JOIN access_requests r ON r.seq = g.request_seq
             WHERE g.vm_key = ?1 AND g.number = ?2 AND g.status = 'Initiated' AND g.end_ns > ?3 AND r.policy_uid = ?4",
        )
        .map_err(db("recording connection cuts"))?;
    for port in ports {
        insert.execute(params![vm.key(), port, to_ns(now), policy_uid]).map_err(db("recording connection cuts"))?;
    }
    c.prepare_cached("DELETE FROM connection_cuts WHERE revoked_ns <= ?1")
        .map_err(db("pruning connection cuts"))?
        .execute([to_ns(now - agent::CUT_WINDOW)])
        .map_err(db("pruning connection cuts"))?;
    Ok(())
}

fn recent_cuts(c: &Connection, vm_key: &str, now: OffsetDateTime) -> StoreResult<Vec<ConnectionCut>> {
    let get_err = db("reading connection cuts");
    let mut stmt = c
        .prepare_cached(
            "SELECT seq, request_id, number, protocol, sources, sources_is_list, revoked_ns FROM connection_cuts
             WHERE vm_key = ?1 AND revoked_ns > ?2 ORDER BY seq",
        )
        .map_err(&get_err)?;
    let mut rows = stmt.query(params![vm_key, to_ns(now - agent::CUT_WINDOW)]).map_err(&get_err)?;
    let mut cuts = Vec::new();
    while let Some(r) = rows.next().map_err(&get_err)? {
        cuts.push(ConnectionCut {
            id: format!("cut-{}", r.get::<_, i64>(0).map_err(&get_err)?),
            request_id: r.get(1).map_err(&get_err)?,
            port: r.get(2).map_err(&get_err)?,
            protocol: decode_protocol(&r.get::<_, String>(3).map_err(&get_err)?)?,
            sources: decode_sources(&r.get::<_, String>(4).map_err(&get_err)?, r.get(5).map_err(&get_err)?)?,
            revoked: from_ns(r.get(6).map_err(&get_err)?)?,
        });
    }
    Ok(cuts)
}

pub(crate) fn revoke(c: &Connection, policy: &PolicyId, vm: &VmId, ports: &[u16], now: OffsetDateTime) -> StoreResult<u64> {
    let Some(stored) = load_policy(c, &policy.key())? else {
        return Err(Problem::new(
            ErrorCode::PolicyNotFound,
            None,
            "no JIT policy with this name exists in this resource group and location",
        )
        .into());
    };
    if stored.policy.vm(vm).is_none() {
        return Err(Problem::at(
            ErrorCode::InvalidInitiateInput,
            "virtualMachines[0].id",
            format!("virtual machine '{vm}' is not configured in JIT policy '{}'", policy.name),
        )
        .into());
    }
    if stored.policy.cut_connections_on_revoke {
        record_cuts(c, &stored.uid, vm, ports, now)?;
    }
    let mut update = c
        .prepare_cached(
            "UPDATE grants SET status = 'Revoked', reason = 'UserRequested', revoked_ns = ?3
             WHERE vm_key = ?1 AND number = ?2 AND status = 'Initiated' AND end_ns > ?3
               AND request_seq IN (SELECT seq FROM access_requests WHERE policy_uid = ?4)",
        )
        .map_err(db("revoking grants"))?;
    let mut revoked = 0u64;
    for port in ports {
        revoked += update.execute(params![vm.key(), port, to_ns(now), stored.uid]).map_err(db("revoking grants"))? as u64;
    }
    Ok(revoked)
}

// ---------------------------------------------------------------- history

/// The grants open at some time in `[from, to)`, on machines inside `within`, newest start first: at
/// most `limit`, and whether there were more.
pub(crate) fn grants_between(
    c: &Connection,
    from: OffsetDateTime,
    to: OffsetDateTime,
    within: Option<&[AccessScope]>,
    limit: usize,
) -> StoreResult<GrantHistory> {
    let err = db("reading grants over time");
    // A grant open at `from` started at most the longest grant ever given before it: that bounds the
    // scan of requests by start time.
    let longest: i64 = c.prepare_cached("SELECT longest_ns FROM grant_bounds").map_err(&err)?.query_row([], |r| r.get(0)).map_err(&err)?;
    let (inside, scope_params) = within_sql("g.vm_key", within, 5);
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT r.id, r.requestor, r.justification, r.start_ns, g.vm_id,
                    g.number, g.protocol, g.sources, g.sources_is_list, g.end_ns, g.status, g.reason, g.mapped_port, g.revoked_ns
             FROM access_requests r JOIN grants g ON g.request_seq = r.seq
             WHERE r.start_ns >= ?1 AND r.start_ns < ?2
               AND CASE WHEN g.revoked_ns < g.end_ns THEN g.revoked_ns ELSE g.end_ns END > ?3
               AND {inside}
             ORDER BY r.start_ns DESC, r.seq DESC, g.vm_ord, g.port_ord
             LIMIT ?4"
        ))
        .map_err(&err)?;
    let (start, end) = (to_ns(from), to_ns(to));
    let asked = i64::try_from(limit).unwrap_or(i64::MAX - 1).saturating_add(1);
    let fixed = [Value::Integer(start.saturating_sub(longest)), Value::Integer(end), Value::Integer(start), Value::Integer(asked)];
    let mut rows = stmt.query(params_from_iter(fixed.into_iter().chain(scope_params))).map_err(&err)?;
    let mut history = GrantHistory::default();
    while let Some(r) = rows.next().map_err(&err)? {
        if history.spans.len() == limit {
            history.cut = true;
            break;
        }
        let vm_id: String = r.get(4).map_err(&err)?;
        let revoked: Option<i64> = r.get(13).map_err(&err)?;
        history.spans.push(GrantSpan {
            request_id: r.get(0).map_err(&err)?,
            requestor: r.get(1).map_err(&err)?,
            justification: r.get(2).map_err(&err)?,
            start: from_ns(r.get(3).map_err(&err)?)?,
            vm: vm_id.parse().map_err(|e| backend("stored VM id", e))?,
            grant: grant_from_row(r, 5)?,
            revoked: revoked.map(from_ns).transpose()?,
        });
    }
    Ok(history)
}

// ---------------------------------------------------------------- status

pub(crate) fn vm_statuses(c: &Connection, scope: &Scope, page: &PageRequest, now: OffsetDateTime) -> StoreResult<Page<VmJitStatus>> {
    let vms = list_vms(c, scope, page)?;
    let items = vms.items.into_iter().map(|vm| status_of(c, vm, now)).collect::<StoreResult<Vec<_>>>()?;
    Ok(Page { items, next: vms.next })
}

/// Every machine in `scope` with its JIT state, in key order, in one query: what the JIT page's tabs
/// and counts need, without building each machine's full status.
pub(crate) fn jit_states(c: &Connection, scope: &Scope) -> StoreResult<Vec<(Vm, JitState)>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {VM_COLUMNS}, EXISTS(SELECT 1 FROM policy_vms pv WHERE pv.vm_key = v.key)
             FROM vms v LEFT JOIN agents a ON a.vm_key = v.key
             WHERE v.subscription = ?1 AND (?2 IS NULL OR v.rg_key = ?2) AND (?3 IS NULL OR lower(v.location) = ?3)
             ORDER BY v.key"
        ))
        .map_err(db("listing JIT states"))?;
    let mut rows = stmt
        .query(params![
            scope.subscription.as_str(),
            scope.resource_group.as_ref().map(|g| g.key()),
            scope.location.as_ref().map(|l| l.key())
        ])
        .map_err(db("listing JIT states"))?;
    // The column after VM_COLUMNS.
    let configured_at = VM_COLUMNS.split(',').count();
    let mut items = Vec::new();
    while let Some(r) = rows.next().map_err(db("listing JIT states"))? {
        let (_, vm) = vm_from_row(r)?;
        let configured: bool = r.get(configured_at).map_err(db("listing JIT states"))?;
        let state = jit_state(&vm, configured);
        items.push((vm, state));
    }
    Ok(items)
}

pub(crate) fn vm_status(c: &Connection, id: &VmId, now: OffsetDateTime) -> StoreResult<Option<VmJitStatus>> {
    get_vm(c, &id.key())?.map(|vm| status_of(c, vm, now)).transpose()
}

/// The machine's approved requests on each of the recent days, counted by the day (UTC) they started.
fn requests_by_day(c: &Connection, vm_key: &str, now: OffsetDateTime) -> StoreResult<[(Date, u32); RECENT_DAYS]> {
    const DAY_NS: i64 = 86_400_000_000_000;
    let err = db("counting requests");
    let mut days = recent_days(now);
    let mut stmt = c
        .prepare_cached(
            "SELECT (r.start_ns - ?2) / ?3, count(DISTINCT g.request_seq) FROM grants g JOIN access_requests r ON r.seq = g.request_seq
             WHERE g.vm_key = ?1 AND r.start_ns >= ?2 GROUP BY 1",
        )
        .map_err(&err)?;
    let mut rows = stmt.query(params![vm_key, to_ns(recent_window_start(now)), DAY_NS]).map_err(&err)?;
    while let Some(r) = rows.next().map_err(&err)? {
        let (day, count): (i64, u32) = (r.get(0).map_err(&err)?, r.get(1).map_err(&err)?);
        // A request stamped after `now` (a clock that stepped back) counts as today's.
        let at = usize::try_from(day).unwrap_or(0).min(RECENT_DAYS - 1);
        days[at].1 += count;
    }
    Ok(days)
}

fn status_of(c: &Connection, vm: Vm, now: OffsetDateTime) -> StoreResult<VmJitStatus> {
    let key = vm.id.key();
    let policy = policy_holding(c, &key)?;
    let ports = policy.as_ref().and_then(|p| p.vm(&vm.id)).map(|v| v.ports.clone()).unwrap_or_default();
    let requests_by_day = requests_by_day(c, &key, now)?;
    let last: Option<(i64, String)> = c
        .prepare_cached(
            "SELECT r.start_ns, r.requestor FROM grants g JOIN access_requests r ON r.seq = g.request_seq
             WHERE g.vm_key = ?1 ORDER BY g.request_seq DESC LIMIT 1",
        )
        .map_err(db("finding the last access"))?
        .query_row([&key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db("finding the last access"))?;
    // One read of the live grants serves both what is shown (who asked) and what the agent must enforce
    // (which request).
    let (by_request, live): (Vec<_>, Vec<_>) =
        live_grants(c, &key, now)?.into_iter().map(|(request, requestor, grant)| ((request, grant.clone()), (requestor, grant))).unzip();
    let state = jit_state(&vm, policy.is_some());
    let desired = agent::desired_state(&vm.id, policy.as_ref(), &by_request, recent_cuts(c, &key, now)?, now);
    Ok(VmJitStatus {
        desired,
        state,
        policy: policy.map(|p| p.id),
        ports,
        requests_by_day,
        last_access: last.as_ref().map(|(ns, _)| from_ns(*ns)).transpose()?,
        last_user: last.map(|(_, user)| user),
        live,
        vm,
    })
}

// ---------------------------------------------------------------- activity

pub(crate) fn last_chain(c: &Connection) -> StoreResult<[u8; 32]> {
    let last: Option<Vec<u8>> = c
        .query_row("SELECT chain FROM activity ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(db("reading the activity chain"))?;
    match last {
        None => Ok([0; 32]),
        Some(bytes) => bytes.try_into().map_err(|_| StoreError::Backend("the activity chain's last hash is malformed".into())),
    }
}

/// The fields an entry's chain hash covers, in order.
fn chain_fields<'a>(time: &'a str, row: [Option<&'a str>; 9]) -> [&'a str; 10] {
    let [subscription, resource_group, resource_id, operation, caller, addr, result, code, details] = row.map(|f| f.unwrap_or(""));
    [time, subscription, resource_group, resource_id, operation, caller, addr, result, code, details]
}

pub(crate) fn verify_chain(c: &Connection) -> StoreResult<Result<u64, i64>> {
    let err = db("verifying the activity chain");
    let mut stmt = c
        .prepare("SELECT seq, time_ns, subscription, resource_group, resource_id, operation, caller, caller_addr, result, error_code, details, chain FROM activity ORDER BY seq")
        .map_err(&err)?;
    let mut rows = stmt.query([]).map_err(&err)?;
    let mut prev = [0u8; 32];
    let mut checked = 0u64;
    while let Some(r) = rows.next().map_err(&err)? {
        let seq: i64 = r.get(0).map_err(&err)?;
        let time: i64 = r.get(1).map_err(&err)?;
        let text = |i: usize| r.get::<_, Option<String>>(i);
        let fields = [text(2), text(3), text(4), text(5), text(6), text(7), text(8), text(9), text(10)];
        let fields: Vec<Option<String>> = fields.into_iter().collect::<Result<_, _>>().map_err(&err)?;
        let row: [Option<&str>; 9] = std::array::from_fn(|i| fields[i].as_deref());
        let time = time.to_string();
        let stored: Vec<u8> = r.get(11).map_err(&err)?;
        let expected = chain_hash(&prev, &chain_fields(&time, row));
        if stored != expected {
            return Ok(Err(seq));
        }
        prev = expected;
        checked += 1;
    }
    Ok(Ok(checked))
}

pub(crate) fn append_activity(
    c: &Connection,
    chain: &mut [u8; 32],
    now: OffsetDateTime,
    audit: &Audit,
    outcome: &Outcome,
    extra: &[(String, String)],
) -> StoreResult<()> {
    let details: Vec<&(String, String)> = audit.details.iter().chain(extra).collect();
    let details_json = serde_json::to_string(&details).map_err(|e| backend("encoding activity details", e))?;
    let time_ns = to_ns(now);
    let addr = audit.caller_addr.map(|a| a.to_string());
    let time_text = time_ns.to_string();
    let next = chain_hash(
        chain,
        &chain_fields(
            &time_text,
            [
                audit.subscription.as_deref(),
                audit.resource_group.as_deref(),
                Some(&audit.resource_id),
                Some(audit.operation),
                Some(&audit.caller),
                addr.as_deref(),
                Some(outcome.as_str()),
                outcome.error_code(),
                Some(&details_json),
            ],
        ),
    );
    c.prepare_cached(
        "INSERT INTO activity (time_ns, subscription, resource_group, resource_id, operation, caller, caller_addr, result, error_code, details, chain)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .map_err(db("writing the activity log"))?
    .execute(params![
        time_ns,
        audit.subscription,
        audit.resource_group,
        audit.resource_id,
        audit.operation,
        audit.caller,
        addr,
        outcome.as_str(),
        outcome.error_code(),
        details_json,
        next.as_slice()
    ])
    .map_err(db("writing the activity log"))?;
    let seq = c.last_insert_rowid();
    let mut subject =
        c.prepare_cached("INSERT OR IGNORE INTO activity_subjects (key, seq) VALUES (?1, ?2)").map_err(db("writing the activity log"))?;
    if audit.subjects.is_empty() {
        subject.execute(params![audit.resource_id.to_lowercase(), seq]).map_err(db("writing the activity log"))?;
    }
    for key in &audit.subjects {
        subject.execute(params![key, seq]).map_err(db("writing the activity log"))?;
    }
    *chain = next;
    Ok(())
}

/// A condition that `key` (an SQL expression giving a lower-cased resource key) is one of `within`'s
/// scopes or inside one, over placeholders numbered from `first`, and their values. `None`, or a list
/// holding the root, is everywhere. Each scope is a range test (`key/` from `scope/` up to `scope0`, '0'
/// following '/'), cheaper than any table of scopes would be.
fn within_sql(key: &str, within: Option<&[AccessScope]>, first: usize) -> (String, Vec<Value>) {
    let Some(scopes) = within.filter(|scopes| !scopes.iter().any(AccessScope::is_root)) else { return ("1".to_owned(), Vec::new()) };
    if scopes.is_empty() {
        return ("0".to_owned(), Vec::new());
    }
    let mut values = Vec::with_capacity(scopes.len() * 2);
    let terms: Vec<String> = scopes
        .iter()
        .enumerate()
        .map(|(i, scope)| {
            values.push(Value::Text(format!("{}/", scope.key())));
            values.push(Value::Text(format!("{}0", scope.key())));
            let (low, high) = (first + 2 * i, first + 2 * i + 1);
            format!("({key} || '/' >= ?{low} AND {key} || '/' < ?{high})")
        })
        .collect();
    (format!("({})", terms.join(" OR ")), values)
}

pub(crate) fn activity(c: &Connection, q: &ActivityQuery) -> StoreResult<Vec<ActivityEntry>> {
    let (inside, scope_params) = within_sql("arm_key(resource_id)", q.within.as_deref(), 10);
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT seq, time_ns, subscription, resource_group, resource_id, operation, caller, caller_addr, result, error_code, details
             FROM activity
             WHERE (?1 IS NULL OR seq IN (SELECT seq FROM activity_subjects WHERE key = ?1))
               AND (?2 IS NULL OR caller = ?2) AND (?3 IS NULL OR time_ns >= ?3) AND (?4 IS NULL OR time_ns < ?4)
               AND (?5 IS NULL OR operation = ?5) AND (?6 IS NULL OR result = ?6)
               AND seq < coalesce(?7, 9223372036854775807) AND seq > coalesce(?8, -1)
               AND {inside}
             ORDER BY seq DESC LIMIT ?9"
        ))
        .map_err(db("reading the activity log"))?;
    let limit = q.limit.map(|l| l as i64).unwrap_or(-1);
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
    let number = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
    let fixed = [
        text(&q.resource_key),
        text(&q.caller),
        number(q.since.map(to_ns)),
        number(q.until.map(to_ns)),
        text(&q.operation),
        q.result.map_or(Value::Null, |r| Value::Text(r.as_str().to_owned())),
        number(q.before),
        number(q.after),
        Value::Integer(limit),
    ];
    let mut rows = stmt.query(params_from_iter(fixed.into_iter().chain(scope_params))).map_err(db("reading the activity log"))?;
    let mut out = Vec::new();
    let err = db("reading the activity log");
    while let Some(r) = rows.next().map_err(&err)? {
        let result: String = r.get(8).map_err(&err)?;
        let code: Option<String> = r.get(9).map_err(&err)?;
        let details: String = r.get(10).map_err(&err)?;
        let addr: Option<String> = r.get(7).map_err(&err)?;
        out.push(ActivityEntry {
            seq: r.get(0).map_err(&err)?,
            time: from_ns(r.get(1).map_err(&err)?)?,
            subscription: r.get(2).map_err(&err)?,
            resource_group: r.get(3).map_err(&err)?,
            resource_id: r.get(4).map_err(&err)?,
            operation: r.get(5).map_err(&err)?,
            caller: r.get(6).map_err(&err)?,
            caller_addr: addr.and_then(|a| a.parse().ok()),
            outcome: if result == "Succeeded" { Outcome::Succeeded } else { Outcome::Failed { code: code.unwrap_or_default() } },
            details: serde_json::from_str(&details).map_err(|e| backend("decoding activity details", e))?,
        });
    }
    Ok(out)
}
