//! The SQL of the activity log.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use ajar_domain::activity::{ActivityEntry, ActivityQuery, Outcome};

use super::codec::{from_ns, to_ns, within_sql};
use super::{backend, db};
use crate::backend::ActivityRow;
use crate::{StoreError, StoreResult};

pub(crate) fn chain_head(c: &Connection) -> StoreResult<[u8; 32]> {
    let last: Option<Vec<u8>> = c
        .query_row("SELECT chain FROM activity ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(db("reading the activity chain"))?;
    match last {
        None => Ok([0; 32]),
        Some(bytes) => bytes.try_into().map_err(|_| StoreError::Backend("the activity chain's last hash is malformed".into())),
    }
}

pub(crate) fn append(c: &Connection, row: &ActivityRow) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO activity (time_ns, subscription, resource_group, resource_id, operation, caller, caller_addr, result, error_code, details, chain)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .map_err(db("writing the activity log"))?
    .execute(params![
        to_ns(row.time),
        row.subscription,
        row.resource_group,
        row.resource_id,
        row.operation,
        row.caller,
        row.caller_addr,
        row.result,
        row.error_code,
        row.details,
        row.chain.as_slice()
    ])
    .map_err(db("writing the activity log"))?;
    let seq = c.last_insert_rowid();
    let mut subject =
        c.prepare_cached("INSERT OR IGNORE INTO activity_subjects (key, seq) VALUES (?1, ?2)").map_err(db("writing the activity log"))?;
    for key in &row.subjects {
        subject.execute(params![key, seq]).map_err(db("writing the activity log"))?;
    }
    Ok(())
}

pub(crate) fn rows(c: &Connection, after: i64, limit: usize) -> StoreResult<Vec<(i64, ActivityRow)>> {
    let err = db("reading the activity log");
    let mut stmt = c
        .prepare_cached(
            "SELECT seq, time_ns, subscription, resource_group, resource_id, operation, caller, caller_addr, result, error_code, details, chain
             FROM activity WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(&err)?;
    let mut rows = stmt.query(params![after, i64::try_from(limit).unwrap_or(i64::MAX)]).map_err(&err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(&err)? {
        let chain: Vec<u8> = r.get(11).map_err(&err)?;
        out.push((
            r.get(0).map_err(&err)?,
            ActivityRow {
                time: from_ns(r.get(1).map_err(&err)?)?,
                subscription: r.get(2).map_err(&err)?,
                resource_group: r.get(3).map_err(&err)?,
                resource_id: r.get(4).map_err(&err)?,
                operation: r.get(5).map_err(&err)?,
                caller: r.get(6).map_err(&err)?,
                caller_addr: r.get(7).map_err(&err)?,
                result: r.get(8).map_err(&err)?,
                error_code: r.get(9).map_err(&err)?,
                details: r.get(10).map_err(&err)?,
                subjects: Vec::new(),
                // A malformed hash matches no computed one: the check reports this entry.
                chain: chain.try_into().unwrap_or([0; 32]),
            },
        ));
    }
    Ok(out)
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
    let limit = q.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)).unwrap_or(-1);
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
