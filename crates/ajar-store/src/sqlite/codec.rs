//! How domain values are written into columns and read back.

use std::net::IpAddr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

pub(crate) fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
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
