//! Small charts drawn as SVG on the server, positioned by attributes (the CSP forbids `style="…"`), each
//! with its numbers in text for those who cannot see it.

use time::Date;

/// One bar, in the chart's own units.
pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    /// What the bar says, as its `<title>`.
    pub label: String,
    /// `zero` for a day without requests, drawn as a baseline.
    pub class: &'static str,
}

/// The Configured tab's "approved requests (7 days)": a bar per day, oldest first, today last.
pub struct DayChart {
    pub width: i64,
    pub height: i64,
    pub bars: Vec<Bar>,
    /// Every day and its count, for `aria-label`.
    pub label: String,
    pub total: u32,
}

const DAY_BAR: i64 = 6;
const DAY_GAP: i64 = 2;
const DAY_CHART_HEIGHT: i64 = 20;

fn requests(n: u32) -> String {
    if n == 1 { "1 request".to_owned() } else { format!("{n} requests") }
}

/// The chart of `days` (date, approved requests), oldest first. The tallest bar fills the height; a
/// day with none is a one-unit baseline.
pub fn day_chart(days: &[(Date, u32)]) -> DayChart {
    let most = days.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let bars = days
        .iter()
        .enumerate()
        .map(|(i, (date, n))| {
            let height = if *n == 0 { 1 } else { i64::from((*n * DAY_CHART_HEIGHT as u32).div_ceil(most)).max(2) };
            Bar {
                x: i as i64 * (DAY_BAR + DAY_GAP),
                y: DAY_CHART_HEIGHT - height,
                width: DAY_BAR,
                height,
                label: format!("{date}: {}", requests(*n)),
                class: if *n == 0 { "zero" } else { "" },
            }
        })
        .collect::<Vec<_>>();
    let total = days.iter().map(|(_, n)| n).sum();
    let each: Vec<String> = days.iter().map(|(date, n)| format!("{date}: {n}")).collect();
    DayChart {
        width: (days.len() as i64 * (DAY_BAR + DAY_GAP) - DAY_GAP).max(0),
        height: DAY_CHART_HEIGHT,
        label: format!("Approved requests per day (UTC): {}", each.join(", ")),
        bars,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn bars_grow_with_the_count_and_say_it() {
        let days: Vec<(Date, u32)> =
            [0, 1, 0, 0, 4, 0, 2].iter().enumerate().map(|(i, n)| (date!(2026 - 03 - 01) + time::Duration::days(i as i64), *n)).collect();
        let chart = day_chart(&days);
        assert_eq!(chart.total, 7);
        assert_eq!(chart.bars.len(), 7);
        let last = &chart.bars[6];
        assert_eq!(last.label, "2026-03-07: 2 requests");
        assert_eq!((last.x, last.height, last.y + last.height), (48, 10, 20), "half the tallest, standing on the baseline");
        assert_eq!((chart.bars[4].height, chart.bars[0].height, chart.bars[0].class), (20, 1, "zero"));
        assert_eq!(chart.bars[1].label, "2026-03-02: 1 request");
        assert!(chart.label.ends_with("2026-03-05: 4, 2026-03-06: 0, 2026-03-07: 2"), "{}", chart.label);
        assert_eq!(chart.width, 54);
        assert!(day_chart(&[]).bars.is_empty());
    }
}
