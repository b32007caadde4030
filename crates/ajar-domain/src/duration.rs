//! ISO 8601 durations as JIT uses them (`PT3H`, `P1D`, `PT90M`, `PT1H30M`).
//!
//! Years and months are refused: they have no fixed length, so a maximum access
//! time written with them would be ambiguous.

use std::fmt;
use std::str::FromStr;

use time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccessDuration(Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not an ISO 8601 duration such as PT3H, PT90M or P1D: {why}")]
pub struct DurationError {
    pub input: String,
    pub why: &'static str,
}

impl AccessDuration {
    pub fn from_seconds(secs: i64) -> Self {
        AccessDuration(Duration::seconds(secs))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn whole_seconds(self) -> i64 {
        self.0.whole_seconds()
    }
}

impl From<Duration> for AccessDuration {
    fn from(d: Duration) -> Self {
        AccessDuration(d)
    }
}

impl FromStr for AccessDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |why| DurationError { input: input.to_owned(), why };
        let s = input.trim();
        let rest = s.strip_prefix(['P', 'p']).ok_or_else(|| err("it must start with 'P'"))?;
        if rest.is_empty() {
            return Err(err("it names no amount"));
        }
        if rest.contains('-') {
            return Err(err("negative durations are not allowed"));
        }
        let (date, clock) = match rest.find(['T', 't']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if clock == Some("") {
            return Err(err("'T' must be followed by hours, minutes or seconds"));
        }
        // Nanoseconds, so fractional seconds add no rounding.
        let mut total: i128 = 0;
        let mut last_rank = 0;
        let mut parse_part = |part: &str, in_clock: bool, total: &mut i128| -> Result<(), DurationError> {
            let mut num = String::new();
            for ch in part.chars() {
                if ch.is_ascii_digit() || ch == '.' || ch == ',' {
                    num.push(if ch == ',' { '.' } else { ch });
                    continue;
                }
                if num.is_empty() {
                    return Err(err("a designator has no number before it"));
                }
                let (rank, unit_ns): (u8, i128) = match (in_clock, ch.to_ascii_uppercase()) {
                    (false, 'W') => (1, 7 * 86_400_000_000_000),
                    (false, 'D') => (2, 86_400_000_000_000),
                    (true, 'H') => (3, 3_600_000_000_000),
                    (true, 'M') => (4, 60_000_000_000),
                    (true, 'S') => (5, 1_000_000_000),
                    (false, 'Y') | (false, 'M') => {
                        return Err(err("years and months have no fixed length; use days (D), hours (H), minutes (M) or seconds (S)"));
                    }
                    (false, 'H') | (false, 'S') => return Err(err("hours, minutes and seconds go after 'T' (PT3H)")),
                    _ => return Err(err("unknown designator")),
                };
                if rank <= last_rank {
                    return Err(err("designators must appear once each, in the order W, D, H, M, S"));
                }
                last_rank = rank;
                let value = if num.contains('.') {
                    if rank != 5 {
                        return Err(err("only seconds may have a fraction"));
                    }
                    let (whole, frac) = num.split_once('.').unwrap_or((&num, ""));
                    if whole.is_empty() || frac.is_empty() || frac.len() > 9 || frac.contains('.') {
                        return Err(err("malformed fraction of a second"));
                    }
                    let whole: i128 = whole.parse().map_err(|_| err("number too large"))?;
                    let frac_ns: i128 = format!("{frac:0<9}").parse().map_err(|_| err("malformed fraction of a second"))?;
                    whole.checked_mul(unit_ns).and_then(|w| w.checked_add(frac_ns))
                } else {
                    if num.len() > 12 {
                        return Err(err("number too large"));
                    }
                    let n: i128 = num.parse().map_err(|_| err("number too large"))?;
                    n.checked_mul(unit_ns)
                };
                *total = value.and_then(|v| total.checked_add(v)).ok_or_else(|| err("number too large"))?;
                num.clear();
            }
            if !num.is_empty() {
                return Err(err("a number has no designator after it"));
            }
            Ok(())
        };
        parse_part(date, false, &mut total)?;
        if let Some(clock) = clock {
            parse_part(clock, true, &mut total)?;
        }
        let nanos = i64::try_from(total).map_err(|_| err("number too large"))?;
        Ok(AccessDuration(Duration::nanoseconds(nanos)))
    }
}

impl fmt::Display for AccessDuration {
    /// The canonical form: `P1D`, `PT3H`, `PT1H30M`, `P1DT2H`, `PT0.5S`, `PT0S`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.whole_nanoseconds();
        if total < 0 {
            return write!(f, "-{}", AccessDuration(Duration::nanoseconds(i64::try_from(-total).unwrap_or(i64::MAX))));
        }
        let secs = total / 1_000_000_000;
        let frac = total % 1_000_000_000;
        let (days, hours, minutes, seconds) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
        f.write_str("P")?;
        if days > 0 {
            write!(f, "{days}D")?;
        }
        if hours == 0 && minutes == 0 && seconds == 0 && frac == 0 {
            return if days == 0 { f.write_str("T0S") } else { Ok(()) };
        }
        f.write_str("T")?;
        if hours > 0 {
            write!(f, "{hours}H")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}M")?;
        }
        if frac > 0 {
            let digits = format!("{frac:09}");
            write!(f, "{seconds}.{}S", digits.trim_end_matches('0'))?;
        } else if seconds > 0 {
            write!(f, "{seconds}S")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str, expected: Result<i64, &str>) {
        let got = input.parse::<AccessDuration>();
        match (got, expected) {
            (Ok(d), Ok(secs)) => assert_eq!(d.as_duration(), Duration::seconds(secs), "{input}"),
            (Err(e), Err(why)) => assert!(e.to_string().contains(why), "{input}: {e}"),
            (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parses_what_jit_uses() {
        check("PT3H", Ok(3 * 3600));
        check("P1D", Ok(86_400));
        check("PT5M", Ok(300));
        check("PT1H30M", Ok(5400));
        check("P1DT2H", Ok(93_600));
        check("PT90M", Ok(5400));
        check("pt3h", Ok(3 * 3600));
        check("P1W", Ok(7 * 86_400));
        check("PT0S", Ok(0));
    }

    #[test]
    fn refuses_what_is_ambiguous_or_malformed() {
        check("", Err("must start with 'P'"));
        check("3H", Err("must start with 'P'"));
        check("P", Err("names no amount"));
        check("PT", Err("'T' must be followed"));
        check("P1Y", Err("years and months"));
        check("P1M", Err("years and months"));
        check("P3H", Err("go after 'T'"));
        check("PT3", Err("no designator after it"));
        check("PTH", Err("no number before it"));
        check("PT1M1H", Err("in the order"));
        check("PT1H1H", Err("in the order"));
        check("PT1.5H", Err("only seconds"));
        check("PT99999999999999999H", Err("too large"));
        check("PT-3H", Err("negative"));
        check("PT3X", Err("unknown designator"));
    }

    #[test]
    fn fractional_seconds() {
        let d: AccessDuration = "PT1.5S".parse().unwrap();
        assert_eq!(d.as_duration(), Duration::milliseconds(1500));
        assert_eq!(d.to_string(), "PT1.5S");
    }

    #[test]
    fn canonical_display() {
        for (input, shown) in [
            ("PT3H", "PT3H"),
            ("PT180M", "PT3H"),
            ("P1D", "P1D"),
            ("PT24H", "P1D"),
            ("PT1H30M", "PT1H30M"),
            ("P1DT2H", "P1DT2H"),
            ("PT0S", "PT0S"),
            ("PT61S", "PT1M1S"),
        ] {
            assert_eq!(input.parse::<AccessDuration>().unwrap().to_string(), shown, "{input}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(secs in 0i64..10_000_000, frac_ms in 0i64..1000) {
            let d = AccessDuration(Duration::seconds(secs) + Duration::milliseconds(frac_ms));
            let back: AccessDuration = d.to_string().parse().unwrap();
            prop_assert_eq!(back, d);
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<AccessDuration>();
        }

        #[test]
        fn never_panics_on_near_misses(s in "[PpTt0-9.,HMSDWY-]{0,16}") {
            let _ = s.parse::<AccessDuration>();
        }
    }
}
