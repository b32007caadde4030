//! Fuzzing of the dashboard's own parsers of user input: the activity log's filter and the timeline's
//! window, read from the page's address. Neither panics on any field, nor on dates at the ends of the
//! calendar; a date it accepts gives a window that starts before it ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use time::OffsetDateTime;

use ajar_web::{ActivityFilter, TimelineForm};

/// Few enough cases that the whole file runs in about a second.
fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, ..ProptestConfig::default() }
}

/// A field as a person or a link might fill it: often a date, at the ends of the calendar too.
fn field() -> impl Strategy<Value = String> {
    let year = prop_oneof![Just(-9999i32), Just(0), Just(1970), Just(2026), Just(9999), -9999i32..=9999];
    let date = prop_oneof![
        Just("9999-12-31".to_owned()),
        Just("-9999-01-01".to_owned()),
        Just("0000-01-01".to_owned()),
        (year, 0u32..14, 0u32..33).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
    ];
    prop_oneof![4 => date, 1 => "[0-9+-]{0,12}", 1 => "\\PC{0,24}", 1 => Just(String::new())]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn activity_filters_never_panic(
        vm in prop_oneof![Just(String::new()), field()],
        result in prop_oneof![Just(String::new()), Just("Failed".to_owned()), field()],
        since in field(),
        until in field(),
    ) {
        let filter = ActivityFilter::from_query(|name| match name {
            "vm" => Some(vm.as_str()),
            "result" => Some(result.as_str()),
            "since" => Some(since.as_str()),
            "until" => Some(until.as_str()),
            _ => None,
        });
        if let Ok(query) = filter.to_query()
            && let (Some(s), Some(u)) = (query.since, query.until)
        {
            prop_assert!(s < u);
        }
    }

    #[test]
    fn timeline_windows_never_panic(range in prop_oneof![Just("day".to_owned()), Just("WEEK".to_owned()), field()], end in field()) {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let form = TimelineForm::from_query(|name| match name {
            "range" => Some(range.as_str()),
            "end" => Some(end.as_str()),
            _ => None,
        });
        if let Ok(window) = form.window(now) {
            prop_assert!(window.from < window.to);
            prop_assert!(window.to <= now || window.end.is_some());
        }
    }
}
