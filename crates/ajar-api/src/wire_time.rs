//! Date-times as ARM writes them (`2018-05-17T09:06:45.5691611Z`) and reads them.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// RFC 3339 in UTC with seven fractional digits, as Azure writes them.
pub fn format(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z");
    t.checked_to_offset(UtcOffset::UTC).and_then(|utc| utc.format(&fmt).ok()).unwrap_or_else(|| t.unix_timestamp().to_string())
}

/// RFC 3339; a time without an offset is taken as UTC (the fields are `…Utc`). The result is in UTC,
/// and a time whose offset takes it out of the years 0000 to 9999 there (`9999-12-31T23:59:59-01:00`)
/// is refused here, so that it can always be written back.
pub fn parse(s: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return t
            .checked_to_offset(UtcOffset::UTC)
            .filter(|utc| (0..=9999).contains(&utc.year()))
            .ok_or_else(|| format!("'{s}' is out of range: in UTC it falls outside the years 0000 to 9999"));
    }
    let local = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");
    PrimitiveDateTime::parse(s, &local)
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|_| format!("'{s}' is not an RFC 3339 date-time such as 2026-01-01T12:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_azure_times() {
        for s in ["2018-05-17T09:06:45.5691611Z", "2026-01-01T00:00:00.0000000Z"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
        assert_eq!(format(parse("2026-01-01T02:00:00+02:00").unwrap()), "2026-01-01T00:00:00.0000000Z");
        assert_eq!(format(parse("2026-01-01T00:00:00").unwrap()), "2026-01-01T00:00:00.0000000Z");
        assert!(parse("yesterday").is_err());
        assert!(parse("9999-12-31T23:59:59-23:59").unwrap_err().contains("out of range"));
        assert!(parse("0000-01-01T00:00:00+23:59").unwrap_err().contains("out of range"));
        assert!(parse("2026-13-01T00:00:00Z").is_err());
    }
}
