//! How domain values are written into columns and read back.

use std::net::IpAddr;

use time::OffsetDateTime;

use rusqlite::types::Value;

use ajar_domain::access::Scope as AccessScope;
use ajar_domain::policy::Protocol;
use ajar_domain::{SourcePrefix, Sources};

use super::backend;
use crate::StoreResult;

pub(crate) fn to_ns(t: OffsetDateTime) -> i64 {
    // Dates past 2262 do not fit; clamp rather than wrap (never reached by JIT's ≤ 1 day grants).
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

pub(crate) fn from_ns(ns: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).map_err(|e| backend("stored time out of range", e))
}

/// Prefixes joined by commas (a prefix never contains one), and whether they were a list.
pub(crate) fn encode_sources(sources: &Sources) -> (String, bool) {
    let text: Vec<String> = sources.prefixes().iter().map(ToString::to_string).collect();
    (text.join(","), matches!(sources, Sources::List(_)))
}

pub(crate) fn decode_sources(text: &str, is_list: bool) -> StoreResult<Sources> {
    let prefixes = text
        .split(',')
        .map(|p| p.parse::<SourcePrefix>().map_err(|e| backend("stored source prefix", e)))
        .collect::<StoreResult<Vec<_>>>()?;
    match (is_list, prefixes.as_slice()) {
        (false, [one]) => Ok(Sources::One(*one)),
        _ => Ok(Sources::List(prefixes)),
    }
}

pub(crate) fn decode_protocol(text: &str) -> StoreResult<Protocol> {
    text.parse().map_err(|e: String| backend("stored protocol", e))
}

pub(crate) fn encode_addresses(addrs: &[IpAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

pub(crate) fn decode_addresses(text: &str) -> StoreResult<Vec<IpAddr>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',').map(|a| a.parse().map_err(|e| backend("stored address", e))).collect()
}

/// A condition that `key` (an SQL expression giving a lower-cased resource key) is one of `within`'s
/// scopes or inside one, over placeholders numbered from `first`, and their values. `None`, or a list
/// holding the root, is everywhere. Each scope is a range test (`key/` from `scope/` up to `scope0`, '0'
/// following '/'), cheaper than any table of scopes would be.
pub(crate) fn within_sql(key: &str, within: Option<&[AccessScope]>, first: usize) -> (String, Vec<Value>) {
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
