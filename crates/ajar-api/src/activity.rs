//! The activity log as JSON and as CSV ("Download as CSV").

use serde::{Deserialize, Serialize};

use ajar_domain::activity::ActivityEntry;

use crate::wire_time;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityOut {
    pub seq: i64,
    pub time_utc: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subscription_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resource_group: Option<String>,
    pub resource_id: String,
    pub operation: String,
    pub caller: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub caller_address: Option<String>,
    /// `Succeeded` or `Failed`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_code: Option<String>,
    pub details: Vec<Detail>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityList {
    pub value: Vec<ActivityOut>,
}

/// `GET /ajar/v1/activity/verify`: whether the hash chain holds from the first entry to the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainVerification {
    pub verified: bool,
    /// How many entries were checked, when the chain holds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entries: Option<u64>,
    /// The sequence number of the first entry that does not match (edited, inserted, or after a deleted
    /// one), when it does not.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_bad_entry: Option<i64>,
}

/// The store's verdict (entries checked, or the first bad entry) as the API answers it.
pub fn chain_verification_out(verdict: Result<u64, i64>) -> ChainVerification {
    match verdict {
        Ok(entries) => ChainVerification { verified: true, entries: Some(entries), first_bad_entry: None },
        Err(seq) => ChainVerification { verified: false, entries: None, first_bad_entry: Some(seq) },
    }
}

pub fn activity_out(e: &ActivityEntry) -> ActivityOut {
    ActivityOut {
        seq: e.seq,
        time_utc: wire_time::format(e.time),
        subscription_id: e.subscription.clone(),
        resource_group: e.resource_group.clone(),
        resource_id: e.resource_id.clone(),
        operation: e.operation.clone(),
        caller: e.caller.clone(),
        caller_address: e.caller_addr.map(|a| a.to_string()),
        result: e.outcome.as_str().to_owned(),
        error_code: e.outcome.error_code().map(str::to_owned),
        details: e.details.iter().map(|(name, value)| Detail { name: name.clone(), value: value.clone() }).collect(),
    }
}

pub const CSV_HEADER: [&str; 11] = [
    "Time (UTC)",
    "Subscription",
    "Resource group",
    "Resource",
    "Operation",
    "Caller",
    "Caller address",
    "Result",
    "Error code",
    "Justification",
    "Details",
];

/// A spreadsheet treats a cell starting with one of these as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Makes a value safe as a spreadsheet cell: one that a spreadsheet would run
/// as a formula is prefixed with `'`, which makes it text.
fn cell(value: &str) -> String {
    if value.starts_with(FORMULA_STARTS) { format!("'{value}") } else { value.to_owned() }
}

/// The CSV export: a header row, then one row per entry. Quoting (RFC 4180)
/// keeps commas, quotes and newlines inside their cell.
pub fn to_csv(entries: &[ActivityEntry]) -> Result<Vec<u8>, String> {
    let mut w = csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Necessary).from_writer(Vec::new());
    w.write_record(CSV_HEADER).map_err(|e| e.to_string())?;
    for e in entries {
        let justification = e.details.iter().find(|(n, _)| n == "justification").map(|(_, v)| v.clone()).unwrap_or_default();
        let details: Vec<String> = e.details.iter().filter(|(n, _)| n != "justification").map(|(n, v)| format!("{n}={v}")).collect();
        let row = [
            wire_time::format(e.time),
            e.subscription.clone().unwrap_or_default(),
            e.resource_group.clone().unwrap_or_default(),
            e.resource_id.clone(),
            e.operation.clone(),
            e.caller.clone(),
            e.caller_addr.map(|a| a.to_string()).unwrap_or_default(),
            e.outcome.as_str().to_owned(),
            e.outcome.error_code().unwrap_or_default().to_owned(),
            justification,
            details.join("; "),
        ];
        w.write_record(row.iter().map(|v| cell(v))).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ajar_domain::activity::Outcome;
    use time::macros::datetime;

    fn entry(justification: &str) -> ActivityEntry {
        ActivityEntry {
            seq: 1,
            time: datetime!(2026-01-01 12:00 UTC),
            subscription: Some("s".into()),
            resource_group: Some("rg".into()),
            resource_id: "/subscriptions/s/x".into(),
            operation: "op".into(),
            caller: "alice".into(),
            caller_addr: None,
            outcome: Outcome::Succeeded,
            details: vec![("justification".into(), justification.into()), ("vm1:22".into(), "from *".into())],
        }
    }

    /// One case: a justification, the Justification cell as it must appear in
    /// the file, and the value a CSV reader must get back.
    fn check(justification: &str, expected_cell: &str, read_back: &str) {
        let csv = String::from_utf8(to_csv(&[entry(justification)]).unwrap()).unwrap();
        let line = csv.split_once('\n').unwrap().1;
        assert!(line.ends_with(&format!(",{expected_cell},vm1:22=from *\n")), "{line:?}");
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].len(), CSV_HEADER.len());
        assert_eq!(&rows[0][9], read_back);
    }

    #[test]
    fn chain_verdicts() {
        let ok = serde_json::to_value(chain_verification_out(Ok(7))).unwrap();
        assert_eq!(ok, serde_json::json!({"verified": true, "entries": 7}));
        let bad = serde_json::to_value(chain_verification_out(Err(3))).unwrap();
        assert_eq!(bad, serde_json::json!({"verified": false, "firstBadEntry": 3}));
    }

    #[test]
    fn escapes_cells() {
        check("plain", "plain", "plain");
        check("a, b", "\"a, b\"", "a, b");
        check("say \"hi\"", "\"say \"\"hi\"\"\"", "say \"hi\"");
        check("two\nlines", "\"two\nlines\"", "two\nlines");
        check("=1+1", "'=1+1", "'=1+1");
        check("@SUM(A1), x", "\"'@SUM(A1), x\"", "'@SUM(A1), x");
    }

    #[test]
    fn neutralises_formulas() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        for start in ["+1", "-1", "@SUM(A1)", "\tx"] {
            assert!(cell(start).starts_with('\''), "{start}");
        }
        assert_eq!(cell("alice"), "alice");
        let mut e = entry("x");
        e.caller = "=cmd|' /C calc'!A0".into();
        let csv = String::from_utf8(to_csv(&[e]).unwrap()).unwrap();
        assert!(csv.contains(",'=cmd|' /C calc'!A0,"), "{csv}");
    }
}
