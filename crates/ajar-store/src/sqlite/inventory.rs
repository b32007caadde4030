//! The SQL of settings, subscriptions, machines and their agents. Each function runs inside whatever
//! transaction the caller holds.

use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use time::OffsetDateTime;

use ajar_domain::access::Scope as AccessScope;
use ajar_domain::ids::Scope;
use ajar_domain::inventory::{AgentInfo, EnforcementPoint, Vm};
use ajar_domain::{SubscriptionId, VmId};

use super::codec::{decode_addresses, encode_addresses, from_ns, to_ns, within_sql};
use super::{backend, db};
use crate::backend::{JitStateFilter, VmQuery};
use crate::{AgentOf, AgentReport, Defaults, NewAgent, Page, StoreResult, Subscription};

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

pub(crate) fn store_defaults(c: &Connection, defaults: &Defaults) -> StoreResult<()> {
    let mut setting = c.prepare_cached("INSERT INTO settings (name, value) VALUES (?1, ?2)").map_err(db("storing settings"))?;
    for (name, value) in [
        ("subscription", defaults.subscription.as_str()),
        ("resource_group", defaults.resource_group.as_str()),
        ("location", defaults.location.as_str()),
    ] {
        setting.execute(params![name, value]).map_err(db("storing settings"))?;
    }
    Ok(())
}

pub(crate) fn insert_subscription(c: &Connection, subscription: &Subscription, now: OffsetDateTime) -> StoreResult<()> {
    c.execute(
        "INSERT INTO subscriptions (id, display_name, created_ns) VALUES (?1, ?2, ?3)",
        params![subscription.id.as_str(), subscription.display_name, to_ns(now)],
    )
    .map_err(db("creating the subscription"))?;
    Ok(())
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

pub(crate) fn subscription_exists(c: &Connection, id: &SubscriptionId) -> StoreResult<bool> {
    let found: Option<i64> = c
        .prepare_cached("SELECT 1 FROM subscriptions WHERE id = ?1")
        .map_err(db("checking the subscription"))?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()
        .map_err(db("checking the subscription"))?;
    Ok(found.is_some())
}

/// The columns `vm_from_row` reads, from `vms v LEFT JOIN agents a`.
pub(crate) const VM_COLUMNS: &str = "v.key, v.id, v.location, v.os, v.addresses, a.id, a.version, a.nft_error, a.last_seen_ns, a.applied, \
     (SELECT name FROM gateways WHERE key = v.gateway_key)";

pub(crate) fn vm_from_row(r: &rusqlite::Row<'_>) -> StoreResult<(String, Vm)> {
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
        gateway: r
            .get::<_, Option<String>>(10)
            .map_err(&err)?
            .map(|g| g.parse())
            .transpose()
            .map_err(|e| backend("stored gateway name", e))?,
    };
    Ok((key, vm))
}

pub(crate) fn vm(c: &Connection, key: &str) -> StoreResult<Option<Vm>> {
    let mut stmt = c
        .prepare_cached(&format!("SELECT {VM_COLUMNS} FROM vms v LEFT JOIN agents a ON a.vm_key = v.key WHERE v.key = ?1"))
        .map_err(db("reading a VM"))?;
    let mut rows = stmt.query([key]).map_err(db("reading a VM"))?;
    match rows.next().map_err(db("reading a VM"))? {
        Some(r) => Ok(Some(vm_from_row(r)?.1)),
        None => Ok(None),
    }
}

/// Whether the machine `v` is in a policy.
const IN_POLICY: &str = "EXISTS (SELECT 1 FROM policy_vms pv WHERE pv.vm_key = v.key)";

/// The JIT state as a condition on `vms v LEFT JOIN agents a`: `ajar_domain::status::jit_state` in SQL,
/// so that a filtered page is full. The store's conformance tests hold the two to agreeing.
fn state_sql(state: Option<JitStateFilter>) -> String {
    match state {
        None => "1".to_owned(),
        Some(JitStateFilter::Configured) => IN_POLICY.to_owned(),
        Some(JitStateFilter::NotConfigured) => {
            format!("NOT {IN_POLICY} AND (v.gateway_key IS NOT NULL OR (a.id IS NOT NULL AND a.nft_error IS NULL))")
        }
        Some(JitStateFilter::Unsupported) => {
            format!("NOT {IN_POLICY} AND v.gateway_key IS NULL AND (a.id IS NULL OR a.nft_error IS NOT NULL)")
        }
    }
}

/// The scope's own conditions, over placeholders 1 to 3, and their values.
fn scope_params(scope: &Scope) -> [Value; 3] {
    let text = |v: Option<String>| v.map_or(Value::Null, Value::Text);
    [
        Value::Text(scope.subscription.as_str().to_owned()),
        text(scope.resource_group.as_ref().map(|g| g.key())),
        text(scope.location.as_ref().map(|l| l.key())),
    ]
}

const IN_SCOPE: &str = "v.subscription = ?1 AND (?2 IS NULL OR v.rg_key = ?2) AND (?3 IS NULL OR arm_key(v.location) = ?3)";

pub(crate) fn list_vms(c: &Connection, query: &VmQuery) -> StoreResult<Page<Vm>> {
    let (inside, within_values) = within_sql("v.key", query.within.as_deref(), 6);
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {VM_COLUMNS} FROM vms v LEFT JOIN agents a ON a.vm_key = v.key
             WHERE {IN_SCOPE} AND v.key > ?4 AND {} AND {inside}
             ORDER BY v.key LIMIT ?5",
            state_sql(query.state)
        ))
        .map_err(db("listing VMs"))?;
    let fixed = scope_params(&query.scope).into_iter().chain([
        Value::Text(query.page.after.clone().unwrap_or_default()),
        Value::Integer(i64::try_from(query.page.size).unwrap_or(i64::MAX - 1) + 1),
    ]);
    let mut rows = stmt.query(params_from_iter(fixed.chain(within_values))).map_err(db("listing VMs"))?;
    let mut items = Vec::new();
    while let Some(r) = rows.next().map_err(db("listing VMs"))? {
        items.push(vm_from_row(r)?);
    }
    Ok(Page::of(items, query.page.size))
}

pub(crate) fn vms_with_policy_flag(c: &Connection, scope: &Scope, within: Option<&[AccessScope]>) -> StoreResult<Vec<(Vm, bool)>> {
    let (inside, within_values) = within_sql("v.key", within, 4);
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {VM_COLUMNS}, {IN_POLICY} FROM vms v LEFT JOIN agents a ON a.vm_key = v.key
             WHERE {IN_SCOPE} AND {inside} ORDER BY v.key"
        ))
        .map_err(db("listing JIT states"))?;
    let mut rows = stmt.query(params_from_iter(scope_params(scope).into_iter().chain(within_values))).map_err(db("listing JIT states"))?;
    // The column after VM_COLUMNS.
    let configured_at = VM_COLUMNS.split(',').count();
    let mut items = Vec::new();
    while let Some(r) = rows.next().map_err(db("listing JIT states"))? {
        let (_, vm) = vm_from_row(r)?;
        items.push((vm, r.get(configured_at).map_err(db("listing JIT states"))?));
    }
    Ok(items)
}

pub(crate) fn put_vm(c: &Connection, vm: &Vm, now: OffsetDateTime) -> StoreResult<bool> {
    let key = vm.id.key();
    let existed: Option<i64> = c
        .prepare_cached("SELECT 1 FROM vms WHERE key = ?1")
        .map_err(db("reading a VM"))?
        .query_row([&key], |r| r.get(0))
        .optional()
        .map_err(db("reading a VM"))?;
    c.prepare_cached(
        "INSERT INTO vms (key, id, subscription, rg_key, location, os, addresses, created_ns, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT(key) DO UPDATE SET location = excluded.location, os = excluded.os,
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
        to_ns(now)
    ])
    .map_err(db("writing a VM"))?;
    Ok(existed.is_none())
}

pub(crate) fn delete_vm(c: &Connection, key: &str) -> StoreResult<bool> {
    c.prepare_cached("DELETE FROM agents WHERE vm_key = ?1")
        .map_err(db("deleting a VM's agent"))?
        .execute([key])
        .map_err(db("deleting a VM's agent"))?;
    let n = c.prepare_cached("DELETE FROM vms WHERE key = ?1").map_err(db("deleting a VM"))?.execute([key]).map_err(db("deleting a VM"))?;
    Ok(n > 0)
}

pub(crate) fn insert_agent(c: &Connection, id: &str, vm: &VmId, agent: &NewAgent, now: OffsetDateTime) -> StoreResult<()> {
    let now_ns = to_ns(now);
    c.prepare_cached(
        "INSERT INTO agents (id, vm_key, token_hash, version, nft_error, applied, enrolled_ns, last_seen_ns) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?6)",
    )
    .map_err(db("recording an agent"))?
    .execute(params![id, vm.key(), agent.token_hash.as_slice(), agent.version, agent.nftables.as_ref().err(), now_ns])
    .map_err(db("recording an agent"))?;
    Ok(())
}

pub(crate) fn agent_for_token(c: &Connection, hash: &[u8; 32]) -> StoreResult<Option<(String, AgentOf)>> {
    let row: Option<(String, String, bool)> = c
        .prepare_cached(
            "SELECT a.id, v.id, 0 FROM agents a JOIN vms v ON v.key = a.vm_key WHERE a.token_hash = ?1
             UNION ALL SELECT agent_id, name, 1 FROM gateways WHERE token_hash = ?1",
        )
        .map_err(db("looking up an agent"))?
        .query_row([hash.as_slice()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(db("looking up an agent"))?;
    row.map(|(agent, of, gateway)| {
        let of = if gateway {
            AgentOf::Gateway(of.parse().map_err(|e| backend("stored gateway name", e))?)
        } else {
            AgentOf::Machine(of.parse().map_err(|e| backend("stored VM id", e))?)
        };
        Ok((agent, of))
    })
    .transpose()
}

pub(crate) fn update_agent(c: &Connection, agent_id: &str, report: &AgentReport, now: OffsetDateTime) -> StoreResult<bool> {
    let n = c
        .prepare_cached("UPDATE agents SET version = ?2, nft_error = ?3, applied = ?4, last_seen_ns = ?5 WHERE id = ?1")
        .map_err(db("recording an agent report"))?
        .execute(params![agent_id, report.version, report.nftables.as_ref().err(), report.applied, to_ns(now)])
        .map_err(db("recording an agent report"))?;
    if n == 0 {
        // A gateway's agent; its addresses are its machines', not its own.
        let n = c
            .prepare_cached("UPDATE gateways SET version = ?2, nft_error = ?3, applied = ?4, last_seen_ns = ?5 WHERE agent_id = ?1")
            .map_err(db("recording an agent report"))?
            .execute(params![agent_id, report.version, report.nftables.as_ref().err(), report.applied, to_ns(now)])
            .map_err(db("recording an agent report"))?;
        return Ok(n > 0);
    }
    c.prepare_cached("UPDATE vms SET addresses = ?2 WHERE key = (SELECT vm_key FROM agents WHERE id = ?1)")
        .map_err(db("recording an agent report"))?
        .execute(params![agent_id, encode_addresses(&report.addresses)])
        .map_err(db("recording an agent report"))?;
    Ok(true)
}
