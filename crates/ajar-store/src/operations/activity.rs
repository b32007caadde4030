//! The activity log: entries hash-chained so that an edited, inserted or deleted entry shows.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use ajar_domain::activity::{Audit, Outcome};
use ajar_domain::ids::arm_key;

use crate::backend::{ActivityRow, Read, Tx};
use crate::{StoreError, StoreResult};

/// SHA-256 over the previous hash and the entry's fields (time in nanoseconds as decimal text, then
/// subscription, resource group, resource ID, operation, caller, caller address, result, error code and
/// the details' JSON; an absent field as empty text), each length-prefixed so that no two different
/// entries hash alike. Every backend stores the same chain.
pub(crate) fn chain_hash(prev: &[u8; 32], row: &ActivityRow) -> [u8; 32] {
    let time = row.time.unix_timestamp_nanos().to_string();
    let fields = [
        time.as_str(),
        row.subscription.as_deref().unwrap_or(""),
        row.resource_group.as_deref().unwrap_or(""),
        &row.resource_id,
        &row.operation,
        &row.caller,
        row.caller_addr.as_deref().unwrap_or(""),
        &row.result,
        row.error_code.as_deref().unwrap_or(""),
        &row.details,
    ];
    let mut h = Sha256::new();
    h.update(prev);
    for f in fields {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f.as_bytes());
    }
    h.finalize().into()
}

/// Appends the entry of `audit` ending as `outcome`, with `extra` details after the audit's own.
pub(crate) fn append(
    tx: &mut dyn Tx,
    now: OffsetDateTime,
    audit: &Audit,
    outcome: &Outcome,
    extra: &[(String, String)],
) -> StoreResult<()> {
    let details: Vec<&(String, String)> = audit.details.iter().chain(extra).collect();
    let details = serde_json::to_string(&details).map_err(|e| StoreError::Backend(format!("encoding activity details: {e}")))?;
    let subjects = if audit.subjects.is_empty() { vec![arm_key(&audit.resource_id)] } else { audit.subjects.clone() };
    let mut row = ActivityRow {
        time: now,
        subscription: audit.subscription.clone(),
        resource_group: audit.resource_group.clone(),
        resource_id: audit.resource_id.clone(),
        operation: audit.operation.to_owned(),
        caller: audit.caller.clone(),
        caller_addr: audit.caller_addr.map(|a| a.to_string()),
        result: outcome.as_str().to_owned(),
        error_code: outcome.error_code().map(str::to_owned),
        details,
        subjects,
        chain: [0; 32],
    };
    row.chain = chain_hash(&tx.chain_head()?, &row);
    tx.append_activity(&row)
}

/// Entries checked per read while verifying: bounds the memory of a check over a long log.
const VERIFY_BATCH: usize = 10_000;

/// Recomputes the chain from the first entry: how many entries match, or the sequence number of the
/// first that does not (edited, inserted, or after a deleted one).
pub(crate) fn verify_chain(r: &mut dyn Read) -> StoreResult<Result<u64, i64>> {
    let mut prev = [0u8; 32];
    let mut checked = 0u64;
    let mut after = i64::MIN;
    loop {
        let rows = r.activity_rows(after, VERIFY_BATCH)?;
        let Some((last, _)) = rows.last() else { return Ok(Ok(checked)) };
        after = *last;
        for (seq, row) in &rows {
            let expected = chain_hash(&prev, row);
            if row.chain != expected {
                return Ok(Err(*seq));
            }
            prev = expected;
            checked += 1;
        }
    }
}
