//! The SQL of policies, requests, grants and connection cuts. Each function runs inside whatever
//! transaction the caller holds.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use time::OffsetDateTime;

use ajar_domain::access::Scope as AccessScope;
use ajar_domain::agent::ConnectionCut;
use ajar_domain::gateway::connection_address;
use ajar_domain::history::{GrantHistory, GrantSpan};
use ajar_domain::initiate::{AccessRequest, Caller, Grant, GrantStatus, RequestVm, StatusReason};
use ajar_domain::plans::access_request::CutPlan;
use ajar_domain::plans::{GrantEnd, LiveGrant};
use ajar_domain::policy::{Policy, PortRule, StoredPolicy, VmPolicy};
use ajar_domain::status::RECENT_DAYS;
use ajar_domain::{AccessDuration, PolicyId, VmId};

use super::codec::{decode_addresses, decode_protocol, decode_sources, encode_sources, from_ns, to_ns, within_sql};
use super::{backend, db};
use crate::backend::PolicyQuery;
use crate::{Page, StoreResult};

/// A policy as stored, with the ID of its incarnation: requests belong to that, so a policy deleted
/// and made again under the same name starts with no history.
pub(crate) struct PolicyRow {
    pub(crate) uid: String,
    pub(crate) stored: StoredPolicy,
}

pub(crate) fn policy(c: &Connection, key: &str) -> StoreResult<Option<PolicyRow>> {
    let head = c
        .prepare_cached("SELECT uid, id, kind, cut_connections_on_revoke, etag FROM policies WHERE key = ?1")
        .map_err(db("reading a policy"))?
        .query_row([key], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .optional()
        .map_err(db("reading a policy"))?;
    let Some((uid, id, kind, cut_connections_on_revoke, etag)) = head else { return Ok(None) };
    let mut vms_stmt = c
        .prepare_cached(
            "SELECT pv.vm_key, pv.vm_id, gw.public_addresses FROM policy_vms pv
             LEFT JOIN vms v ON v.key = pv.vm_key LEFT JOIN gateways gw ON gw.key = v.gateway_key
             WHERE pv.policy_key = ?1 ORDER BY pv.ord",
        )
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
    for (vm_key, vm_id, gateway_addresses) in vm_rows {
        let public = gateway_addresses.map(|a| decode_addresses(&a)).transpose()?.unwrap_or_default();
        let public_ip = connection_address(&public).map(|a| a.to_string());
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
    Ok(Some(PolicyRow { uid, stored: StoredPolicy { policy, etag } }))
}

fn policy_uid(c: &Connection, key: &str) -> StoreResult<Option<String>> {
    c.prepare_cached("SELECT uid FROM policies WHERE key = ?1")
        .map_err(db("reading a policy"))?
        .query_row([key], |r| r.get(0))
        .optional()
        .map_err(db("reading a policy"))
}

pub(crate) fn holders(c: &Connection, vms: &[VmId]) -> StoreResult<Vec<(VmId, PolicyId)>> {
    let mut stmt = c
        .prepare_cached("SELECT p.id FROM policy_vms v JOIN policies p ON p.key = v.policy_key WHERE v.vm_key = ?1")
        .map_err(db("finding a VM's policy"))?;
    let mut held = Vec::new();
    for vm in vms {
        let policy: Option<String> = stmt.query_row([vm.key()], |r| r.get(0)).optional().map_err(db("finding a VM's policy"))?;
        if let Some(policy) = policy {
            held.push((vm.clone(), policy.parse().map_err(|e| backend("stored policy id", e))?));
        }
    }
    Ok(held)
}

pub(crate) fn list(c: &Connection, query: &PolicyQuery) -> StoreResult<Page<PolicyId>> {
    // Visible whole (inside `within`) or through one of its machines.
    let (whole, whole_values) = within_sql("p.key", query.within.as_deref(), 6);
    let (member, member_values) = within_sql("pv.vm_key", query.within.as_deref(), 6 + whole_values.len());
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT p.key, p.id FROM policies p
             WHERE p.subscription = ?1 AND (?2 IS NULL OR p.rg_key = ?2) AND (?3 IS NULL OR p.loc_key = ?3) AND p.key > ?4
               AND ({whole} OR EXISTS (SELECT 1 FROM policy_vms pv WHERE pv.policy_key = p.key AND {member}))
             ORDER BY p.key LIMIT ?5"
        ))
        .map_err(db("listing policies"))?;
    let text = |v: Option<String>| v.map_or(Value::Null, Value::Text);
    let fixed = [
        Value::Text(query.scope.subscription.as_str().to_owned()),
        text(query.scope.resource_group.as_ref().map(|g| g.key())),
        text(query.scope.location.as_ref().map(|l| l.key())),
        Value::Text(query.page.after.clone().unwrap_or_default()),
        Value::Integer(i64::try_from(query.page.size).unwrap_or(i64::MAX - 1) + 1),
    ];
    let mut rows =
        stmt.query(params_from_iter(fixed.into_iter().chain(whole_values).chain(member_values))).map_err(db("listing policies"))?;
    let mut items = Vec::new();
    while let Some(r) = rows.next().map_err(db("listing policies"))? {
        let key: String = r.get(0).map_err(db("listing policies"))?;
        let id: String = r.get(1).map_err(db("listing policies"))?;
        items.push((key, id.parse().map_err(|e| backend("stored policy id", e))?));
    }
    Ok(Page::of(items, query.page.size))
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

const GRANT_COLUMNS: &str = "g.number, g.protocol, g.sources, g.sources_is_list, g.end_ns, g.status, g.reason, g.mapped_port";

pub(crate) fn requests(c: &Connection, policy: &PolicyId, limit: usize) -> StoreResult<Vec<AccessRequest>> {
    let Some(uid) = policy_uid(c, &policy.key())? else { return Ok(Vec::new()) };
    let err = db("reading requests");
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT r.seq, r.id, r.requestor, r.start_ns, r.justification, g.vm_id, {GRANT_COLUMNS}
             FROM (SELECT * FROM access_requests WHERE policy_uid = ?1 ORDER BY seq DESC LIMIT ?2) r
             JOIN grants g ON g.request_seq = r.seq
             ORDER BY r.seq, g.vm_ord, g.port_ord"
        ))
        .map_err(&err)?;
    let mut rows = stmt.query(params![uid, i64::try_from(limit).unwrap_or(i64::MAX)]).map_err(&err)?;
    let mut requests: Vec<(i64, AccessRequest)> = Vec::new();
    while let Some(r) = rows.next().map_err(&err)? {
        let seq: i64 = r.get(0).map_err(&err)?;
        if requests.last().map(|(s, _)| *s) != Some(seq) {
            requests.push((
                seq,
                AccessRequest {
                    id: r.get(1).map_err(&err)?,
                    policy: policy.clone(),
                    requestor: r.get(2).map_err(&err)?,
                    start: from_ns(r.get(3).map_err(&err)?)?,
                    justification: r.get(4).map_err(&err)?,
                    vms: Vec::new(),
                },
            ));
        }
        let vm_id: String = r.get(5).map_err(&err)?;
        let grant = grant_from_row(r, 6)?;
        let Some((_, request)) = requests.last_mut() else { continue };
        match request.vms.last_mut() {
            Some(vm) if vm.vm.to_string() == vm_id => vm.grants.push(grant),
            _ => request.vms.push(RequestVm { vm: vm_id.parse().map_err(|e| backend("stored VM id", e))?, grants: vec![grant] }),
        }
    }
    Ok(requests.into_iter().map(|(_, r)| r).collect())
}

/// Live grants, from `SELECT r.id, r.requestor, r.policy_id, r.start_ns, g.vm_id, GRANT_COLUMNS`.
fn live_grants(rows: &mut rusqlite::Rows<'_>) -> StoreResult<Vec<LiveGrant>> {
    let err = db("reading live grants");
    let mut live = Vec::new();
    while let Some(r) = rows.next().map_err(&err)? {
        let policy: String = r.get(2).map_err(&err)?;
        let vm: String = r.get(4).map_err(&err)?;
        live.push(LiveGrant {
            request_id: r.get(0).map_err(&err)?,
            requestor: r.get(1).map_err(&err)?,
            policy: policy.parse().map_err(|e| backend("stored policy id", e))?,
            start: from_ns(r.get(3).map_err(&err)?)?,
            vm: vm.parse().map_err(|e| backend("stored VM id", e))?,
            grant: grant_from_row(r, 5)?,
        });
    }
    Ok(live)
}

pub(crate) fn live_grants_of_policy(c: &Connection, policy: &PolicyId, now: OffsetDateTime) -> StoreResult<Vec<LiveGrant>> {
    let Some(uid) = policy_uid(c, &policy.key())? else { return Ok(Vec::new()) };
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT r.id, r.requestor, r.policy_id, r.start_ns, g.vm_id, {GRANT_COLUMNS}
             FROM grants g JOIN access_requests r ON r.seq = g.request_seq
             WHERE r.policy_uid = ?1 AND g.status = 'Initiated' AND g.end_ns > ?2 ORDER BY r.seq, g.vm_ord, g.port_ord"
        ))
        .map_err(db("reading live grants"))?;
    live_grants(&mut stmt.query(params![uid, to_ns(now)]).map_err(db("reading live grants"))?)
}

pub(crate) fn live_grants_on(c: &Connection, vm: &VmId, ports: Option<&[u16]>, now: OffsetDateTime) -> StoreResult<Vec<LiveGrant>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT r.id, r.requestor, r.policy_id, r.start_ns, g.vm_id, {GRANT_COLUMNS}
             FROM grants g JOIN access_requests r ON r.seq = g.request_seq
             WHERE g.vm_key = ?1 AND g.status = 'Initiated' AND g.end_ns > ?2 ORDER BY g.number, r.seq"
        ))
        .map_err(db("reading live grants"))?;
    let mut live = live_grants(&mut stmt.query(params![vm.key(), to_ns(now)]).map_err(db("reading live grants"))?)?;
    if let Some(ports) = ports {
        live.retain(|g| ports.contains(&g.grant.number));
    }
    Ok(live)
}

/// The live grants on the machines behind a gateway.
pub(crate) fn live_grants_behind(c: &Connection, gateway_key: &str, now: OffsetDateTime) -> StoreResult<Vec<LiveGrant>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT r.id, r.requestor, r.policy_id, r.start_ns, g.vm_id, {GRANT_COLUMNS}
             FROM grants g JOIN access_requests r ON r.seq = g.request_seq
             WHERE g.vm_key IN (SELECT key FROM vms WHERE gateway_key = ?1) AND g.status = 'Initiated' AND g.end_ns > ?2
             ORDER BY g.vm_key, g.number, r.seq"
        ))
        .map_err(db("reading live grants"))?;
    live_grants(&mut stmt.query(params![gateway_key, to_ns(now)]).map_err(db("reading live grants"))?)
}

pub(crate) fn next_expiry(c: &Connection) -> StoreResult<Option<OffsetDateTime>> {
    let ns: Option<i64> = c
        .prepare_cached("SELECT min(end_ns) FROM grants WHERE status = 'Initiated'")
        .map_err(db("finding the next expiry"))?
        .query_row([], |r| r.get(0))
        .map_err(db("finding the next expiry"))?;
    ns.map(from_ns).transpose()
}

pub(crate) fn cuts_since(c: &Connection, vm: &VmId, since: OffsetDateTime) -> StoreResult<Vec<ConnectionCut>> {
    let mut stmt = c
        .prepare_cached(&format!("SELECT {CUT_COLUMNS} FROM connection_cuts WHERE vm_key = ?1 AND revoked_ns > ?2 ORDER BY seq"))
        .map_err(db("reading connection cuts"))?;
    cuts(&mut stmt.query(params![vm.key(), to_ns(since)]).map_err(db("reading connection cuts"))?)
}

/// The cuts of mapped grants on the machines behind a gateway.
pub(crate) fn cuts_behind(c: &Connection, gateway_key: &str, since: OffsetDateTime) -> StoreResult<Vec<ConnectionCut>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {CUT_COLUMNS} FROM connection_cuts
             WHERE vm_key IN (SELECT key FROM vms WHERE gateway_key = ?1) AND mapped_port IS NOT NULL AND revoked_ns > ?2 ORDER BY seq"
        ))
        .map_err(db("reading connection cuts"))?;
    cuts(&mut stmt.query(params![gateway_key, to_ns(since)]).map_err(db("reading connection cuts"))?)
}

const CUT_COLUMNS: &str = "seq, request_id, number, protocol, sources, sources_is_list, revoked_ns, mapped_port";

fn cuts(rows: &mut rusqlite::Rows<'_>) -> StoreResult<Vec<ConnectionCut>> {
    let get_err = db("reading connection cuts");
    let mut cuts = Vec::new();
    while let Some(r) = rows.next().map_err(&get_err)? {
        cuts.push(ConnectionCut {
            id: format!("cut-{}", r.get::<_, i64>(0).map_err(&get_err)?),
            request_id: r.get(1).map_err(&get_err)?,
            port: r.get(2).map_err(&get_err)?,
            protocol: decode_protocol(&r.get::<_, String>(3).map_err(&get_err)?)?,
            sources: decode_sources(&r.get::<_, String>(4).map_err(&get_err)?, r.get(5).map_err(&get_err)?)?,
            revoked: from_ns(r.get(6).map_err(&get_err)?)?,
            mapped_port: r.get(7).map_err(&get_err)?,
        });
    }
    Ok(cuts)
}

pub(crate) fn requests_per_day(c: &Connection, vm: &VmId, first: OffsetDateTime) -> StoreResult<[u32; RECENT_DAYS]> {
    const DAY_NS: i64 = 86_400_000_000_000;
    let err = db("counting requests");
    let mut days = [0u32; RECENT_DAYS];
    let mut stmt = c
        .prepare_cached(
            "SELECT (r.start_ns - ?2) / ?3, count(DISTINCT g.request_seq) FROM grants g JOIN access_requests r ON r.seq = g.request_seq
             WHERE g.vm_key = ?1 AND r.start_ns >= ?2 GROUP BY 1",
        )
        .map_err(&err)?;
    let mut rows = stmt.query(params![vm.key(), to_ns(first), DAY_NS]).map_err(&err)?;
    while let Some(r) = rows.next().map_err(&err)? {
        let (day, count): (i64, u32) = (r.get(0).map_err(&err)?, r.get(1).map_err(&err)?);
        // A request stamped after the window (a clock that stepped back) counts as the last day's.
        days[usize::try_from(day).unwrap_or(0).min(RECENT_DAYS - 1)] += count;
    }
    Ok(days)
}

pub(crate) fn last_access(c: &Connection, vm: &VmId) -> StoreResult<Option<(OffsetDateTime, String)>> {
    let last: Option<(i64, String)> = c
        .prepare_cached(
            "SELECT r.start_ns, r.requestor FROM grants g JOIN access_requests r ON r.seq = g.request_seq
             WHERE g.vm_key = ?1 ORDER BY g.request_seq DESC LIMIT 1",
        )
        .map_err(db("finding the last access"))?
        .query_row([vm.key()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db("finding the last access"))?;
    last.map(|(ns, user)| Ok((from_ns(ns)?, user))).transpose()
}

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
            "SELECT r.id, r.requestor, r.justification, r.start_ns, g.vm_id, {GRANT_COLUMNS}, g.revoked_ns
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

pub(crate) fn write(c: &Connection, stored: &StoredPolicy, now: OffsetDateTime) -> StoreResult<()> {
    let policy = &stored.policy;
    let key = policy.id.key();
    let now_ns = to_ns(now);
    let uid = policy_uid(c, &key)?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    c.prepare_cached(
        "INSERT INTO policies (key, uid, id, subscription, rg_key, loc_key, kind, cut_connections_on_revoke, etag, created_ns, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
         ON CONFLICT(key) DO UPDATE SET kind = excluded.kind, cut_connections_on_revoke = excluded.cut_connections_on_revoke,
             etag = excluded.etag, updated_ns = excluded.updated_ns",
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
        stored.etag,
        now_ns
    ])
    .map_err(db("writing a policy"))?;
    c.prepare_cached("DELETE FROM policy_vms WHERE policy_key = ?1")
        .map_err(db("replacing a policy's VMs"))?
        .execute([&key])
        .map_err(db("replacing a policy's VMs"))?;
    let mut vm_stmt = c
        .prepare_cached("INSERT INTO policy_vms (vm_key, policy_key, vm_id, ord) VALUES (?1, ?2, ?3, ?4)")
        .map_err(db("writing a policy's VMs"))?;
    let mut port_stmt = c
        .prepare_cached(
            "INSERT INTO policy_ports (vm_key, ord, number, protocol, sources, sources_is_list, max_duration_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(db("writing a policy's ports"))?;
    for (i, vm_policy) in policy.vms.iter().enumerate() {
        let vm_key = vm_policy.vm.key();
        vm_stmt.execute(params![vm_key, key, vm_policy.vm.to_string(), i as i64]).map_err(db("writing a policy's VMs"))?;
        for (j, port) in vm_policy.ports.iter().enumerate() {
            let (sources, is_list) = encode_sources(&port.sources);
            let max_ns = i64::try_from(port.max_duration.as_duration().whole_nanoseconds()).unwrap_or(i64::MAX);
            port_stmt
                .execute(params![vm_key, j as i64, port.number, port.protocol.as_str(), sources, is_list, max_ns])
                .map_err(db("writing a policy's ports"))?;
        }
    }
    Ok(())
}

pub(crate) fn delete(c: &Connection, key: &str) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM policies WHERE key = ?1")
        .map_err(db("deleting a policy"))?
        .execute([key])
        .map_err(db("deleting a policy"))?;
    Ok(())
}

/// Stores a request and its grants under the policy's current incarnation, `uid`.
pub(crate) fn insert_request(c: &Connection, uid: &str, request: &AccessRequest, caller: &Caller) -> StoreResult<()> {
    let start_ns = to_ns(request.start);
    c.prepare_cached(
        "INSERT INTO access_requests (id, policy_uid, policy_id, requestor, principal_id, caller_addr, start_ns, justification)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .map_err(db("storing a request"))?
    .execute(params![
        request.id,
        uid,
        request.policy.to_string(),
        request.requestor,
        caller.principal_id,
        caller.addr.to_string(),
        start_ns,
        request.justification
    ])
    .map_err(db("storing a request"))?;
    let seq = c.last_insert_rowid();
    let mut insert = c
        .prepare_cached(
            "INSERT INTO grants (request_seq, vm_key, vm_id, vm_ord, port_ord, number, protocol, sources, sources_is_list, end_ns, status, reason, mapped_port)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .map_err(db("storing grants"))?;
    for (i, vm) in request.vms.iter().enumerate() {
        let vm_key = vm.vm.key();
        for (j, g) in vm.grants.iter().enumerate() {
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
    let longest = request.vms.iter().flat_map(|v| &v.grants).map(|g| to_ns(g.end) - start_ns).max().unwrap_or(0);
    c.prepare_cached("UPDATE grant_bounds SET longest_ns = ?1 WHERE longest_ns < ?1")
        .map_err(db("recording the longest grant"))?
        .execute([longest])
        .map_err(db("recording the longest grant"))?;
    Ok(())
}

pub(crate) fn end_grants(c: &Connection, ends: &[GrantEnd], now: OffsetDateTime) -> StoreResult<()> {
    let mut update = c
        .prepare_cached(
            "UPDATE grants SET status = 'Revoked', reason = ?4, revoked_ns = ?5
             WHERE request_seq = (SELECT seq FROM access_requests WHERE id = ?1) AND vm_key = ?2 AND number = ?3 AND status = 'Initiated'",
        )
        .map_err(db("ending grants"))?;
    for end in ends {
        update.execute(params![end.request_id, end.vm.key(), end.port, end.reason.as_str(), to_ns(now)]).map_err(db("ending grants"))?;
    }
    Ok(())
}

pub(crate) fn expire_grants(c: &Connection, now: OffsetDateTime) -> StoreResult<u64> {
    let n = c
        .prepare_cached("UPDATE grants SET status = 'Revoked', reason = 'Expired' WHERE status = 'Initiated' AND end_ns <= ?1")
        .map_err(db("expiring grants"))?
        .execute([to_ns(now)])
        .map_err(db("expiring grants"))?;
    Ok(n as u64)
}

pub(crate) fn insert_cuts(c: &Connection, cuts: &[CutPlan], now: OffsetDateTime, forget_before: OffsetDateTime) -> StoreResult<()> {
    let mut insert = c
        .prepare_cached(
            "INSERT INTO connection_cuts (vm_key, request_id, number, protocol, sources, sources_is_list, revoked_ns, mapped_port)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(db("recording connection cuts"))?;
    for cut in cuts {
        let (sources, is_list) = encode_sources(&cut.sources);
        insert
            .execute(params![cut.vm.key(), cut.request_id, cut.port, cut.protocol.as_str(), sources, is_list, to_ns(now), cut.mapped_port])
            .map_err(db("recording connection cuts"))?;
    }
    c.prepare_cached("DELETE FROM connection_cuts WHERE revoked_ns <= ?1")
        .map_err(db("pruning connection cuts"))?
        .execute([to_ns(forget_before)])
        .map_err(db("pruning connection cuts"))?;
    Ok(())
}
