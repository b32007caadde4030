//! The timeline of grants: one lane per machine and port that had a grant in a day or a week, a bar
//! per grant from its start to its end (its revocation or expiry, or now while it is live), labelled
//! with who and from where; and the same grants as a table.

use std::collections::BTreeMap;

use askama::Template;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, Time};

use ajar_domain::history::{GrantHistory, GrantSpan, SpanState};

use crate::{RenderError, sources_text, stamp, vm_href};

/// Most grants one timeline shows: the newest of its window.
pub const TIMELINE_LIMIT: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Day,
    Week,
}

impl Range {
    pub const ALL: [Range; 2] = [Range::Day, Range::Week];

    pub fn key(self) -> &'static str {
        match self {
            Range::Day => "day",
            Range::Week => "week",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Range::Day => "Day",
            Range::Week => "Week",
        }
    }

    pub fn length(self) -> Duration {
        match self {
            Range::Day => Duration::days(1),
            Range::Week => Duration::days(7),
        }
    }
}

/// The form's fields as the address carries them, trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimelineForm {
    /// `day` (the default) or `week`.
    pub range: String,
    /// The last day shown, `YYYY-MM-DD` (UTC); empty: up to now.
    pub end: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowErrors {
    pub range: Option<String>,
    pub end: Option<String>,
}

/// The stretch of time a timeline shows, `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub range: Range,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// The last day, when the form named one.
    pub end: Option<Date>,
}

fn midnight(d: Date) -> OffsetDateTime {
    d.with_time(Time::MIDNIGHT).assume_utc()
}

impl TimelineForm {
    pub fn from_query<'a>(get: impl Fn(&str) -> Option<&'a str>) -> TimelineForm {
        let field = |name: &str| get(name).map(str::trim).unwrap_or_default().to_owned();
        TimelineForm { range: field("range"), end: field("end") }
    }

    /// The window the form asks for as of `now`: a day or a week ending at the end of `end`, or now.
    pub fn window(&self, now: OffsetDateTime) -> Result<Window, WindowErrors> {
        let mut errors = WindowErrors::default();
        let range = match self.range.as_str() {
            "" => Range::Day,
            r => Range::ALL.into_iter().find(|x| x.key().eq_ignore_ascii_case(r)).unwrap_or_else(|| {
                errors.range = Some(format!("Range '{r}' is not day or week."));
                Range::Day
            }),
        };
        let today = now.date();
        let end = match self.end.as_str() {
            "" => None,
            e => match Date::parse(e, format_description!("[year]-[month]-[day]")) {
                Ok(d) if d > today => {
                    errors.end = Some(format!("End date {d} is after today ({today}, UTC)."));
                    None
                }
                Ok(d) => Some(d),
                Err(_) => {
                    errors.end = Some(format!("End date '{e}' is not a date; use the form 2026-01-31."));
                    None
                }
            },
        };
        if errors != WindowErrors::default() {
            return Err(errors);
        }
        let to = match end {
            Some(d) => midnight(d) + Duration::days(1),
            None => now,
        };
        // A window reaching back past the calendar's first day (year -9999) cannot be shown.
        let Some(from) = to.checked_sub(range.length()) else {
            let end = Some(format!("End date '{}' is too early for a {}; use a later date.", self.end, range.label().to_lowercase()));
            return Err(WindowErrors { end, ..WindowErrors::default() });
        };
        Ok(Window { range, from, to, end })
    }
}

fn clock(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

fn timeline_href(range: Range, end: Option<Date>) -> String {
    match end {
        Some(d) => format!("/ui/timeline?range={}&end={d}", range.key()),
        None => format!("/ui/timeline?range={}", range.key()),
    }
}

// The drawing's own units; CSS scales it to the page's width.
const WIDTH: i64 = 1000;
const PLOT_X: i64 = 190;
const PLOT_WIDTH: i64 = WIDTH - PLOT_X - 10;
const AXIS_HEIGHT: i64 = 28;
const LANE_HEIGHT: i64 = 26;
const BAR_HEIGHT: i64 = 18;
/// Roughly how wide a character of the labels is, to judge whether a label fits its bar.
const CHAR_WIDTH: i64 = 7;
const LANE_LABEL_CHARS: usize = 25;

pub struct Tick {
    pub x: i64,
    pub label: String,
}

pub struct TimelineBar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    /// `live`, `expired`, `revoked` or `superseded`.
    pub class: &'static str,
    pub title: String,
    /// Drawn on the bar when it fits; empty when not.
    pub text: String,
    pub text_x: i64,
    pub text_y: i64,
}

pub struct Lane {
    pub y: i64,
    pub label_y: i64,
    /// `machine:port`, shortened to fit.
    pub label: String,
    pub title: String,
    pub bars: Vec<TimelineBar>,
}

pub struct TimelineSvg {
    pub width: i64,
    pub height: i64,
    pub plot_x: i64,
    pub plot_end: i64,
    pub axis_y: i64,
    pub ticks: Vec<Tick>,
    pub lanes: Vec<Lane>,
    /// Where now is, if inside the window.
    pub now_x: Option<i64>,
    pub description: String,
}

/// A grant as a row of the table.
pub struct GrantRow {
    pub machine: String,
    pub machine_href: String,
    pub resource_group: String,
    pub port: String,
    pub who: String,
    pub from: String,
    pub start: String,
    pub end: String,
    pub state: String,
    pub justification: String,
}

/// How the grant ended, or that it has not, in words.
fn state_text(span: &GrantSpan, now: OffsetDateTime) -> String {
    match span.state_at(now) {
        SpanState::Live => format!("open until {}", stamp(span.grant.end)),
        SpanState::Expired => format!("expired at {}", stamp(span.grant.end)),
        SpanState::Revoked if span.revoked.is_some() => format!("revoked at {}", stamp(span.closed())),
        SpanState::Revoked => "revoked".to_owned(),
        SpanState::Superseded if span.revoked.is_some() => format!("replaced by a newer request at {}", stamp(span.closed())),
        SpanState::Superseded => "replaced by a newer request".to_owned(),
    }
}

struct Scale {
    from: OffsetDateTime,
    to: OffsetDateTime,
}

impl Scale {
    fn x(&self, t: OffsetDateTime) -> i64 {
        let t = t.clamp(self.from, self.to);
        let span = (self.to - self.from).as_seconds_f64().max(1.0);
        PLOT_X + ((t - self.from).as_seconds_f64() / span * PLOT_WIDTH as f64).round() as i64
    }
}

fn ticks(window: &Window, scale: &Scale) -> Vec<Tick> {
    let (step, first) = match window.range {
        Range::Day => {
            let hour = window.from.hour() - window.from.hour() % 3;
            let start = window.from.replace_time(Time::MIDNIGHT) + Duration::hours(hour.into());
            (Duration::hours(3), if start < window.from { start + Duration::hours(3) } else { start })
        }
        Range::Week => {
            let start = midnight(window.from.date());
            (Duration::days(1), if start < window.from { start + Duration::days(1) } else { start })
        }
    };
    let mut out = Vec::new();
    let mut t = first;
    // A day has 8 ticks and a week 7; the bound only guards against a window that is neither.
    while t < window.to && out.len() < 16 {
        let label = match window.range {
            Range::Day if t.hour() == 0 => format!("{} 00:00", t.date()),
            Range::Day => clock(t),
            Range::Week => format!("{} {:02}-{:02}", &t.weekday().to_string()[..3], u8::from(t.month()), t.day()),
        };
        out.push(Tick { x: scale.x(t), label });
        t += step;
    }
    out
}

fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars { text.to_owned() } else { format!("{}…", text.chars().take(chars - 1).collect::<String>()) }
}

fn fits(text: &str, width: i64) -> bool {
    text.chars().count() as i64 * CHAR_WIDTH + 8 <= width
}

/// The drawing: lanes by machine name, resource group and port; a bar per grant.
fn drawing(window: &Window, spans: &[GrantSpan], now: OffsetDateTime) -> TimelineSvg {
    let scale = Scale { from: window.from, to: window.to };
    let mut by_lane: BTreeMap<(String, String, u16), Vec<&GrantSpan>> = BTreeMap::new();
    for span in spans {
        let key = (span.vm.name.key(), span.vm.resource_group.key(), span.grant.number);
        by_lane.entry(key).or_default().push(span);
    }
    let lanes: Vec<Lane> = by_lane
        .values()
        .enumerate()
        .filter_map(|(i, lane)| {
            let first = lane.first()?;
            let y = AXIS_HEIGHT + i as i64 * LANE_HEIGHT;
            let name = format!("{}:{}", first.vm.name, first.grant.number);
            let bars = lane
                .iter()
                .map(|span| {
                    let (start, until) = (span.start, span.until(now));
                    let x = scale.x(start);
                    let width = (scale.x(until) - x).max(2);
                    let (who, from) = (span.requestor.clone(), sources_text(&span.grant.sources));
                    let long = format!("{who} from {from}");
                    let text = if fits(&long, width) {
                        long.clone()
                    } else if fits(&who, width) {
                        who.clone()
                    } else {
                        String::new()
                    };
                    TimelineBar {
                        x,
                        y: y + (LANE_HEIGHT - BAR_HEIGHT) / 2,
                        width,
                        height: BAR_HEIGHT,
                        class: span.state_at(now).as_str(),
                        title: format!(
                            "{long} · {}:{}/{} · {} – {} ({})",
                            span.vm.name,
                            span.grant.number,
                            span.grant.protocol,
                            stamp(start),
                            clock(until),
                            state_text(span, now)
                        ),
                        text,
                        text_x: x + 4,
                        text_y: y + LANE_HEIGHT / 2 + 4,
                    }
                })
                .collect();
            Some(Lane {
                y,
                label_y: y + LANE_HEIGHT / 2 + 4,
                label: shorten(&name, LANE_LABEL_CHARS),
                title: format!("{} port {}/{}", first.vm, first.grant.number, first.grant.protocol),
                bars,
            })
        })
        .collect();
    let height = AXIS_HEIGHT + lanes.len() as i64 * LANE_HEIGHT + 4;
    TimelineSvg {
        width: WIDTH,
        height,
        plot_x: PLOT_X,
        plot_end: PLOT_X + PLOT_WIDTH,
        axis_y: AXIS_HEIGHT - 4,
        ticks: ticks(window, &scale),
        now_x: (window.from < now && now <= window.to).then(|| scale.x(now)),
        description: format!(
            "{} grants on {} machine ports from {} to {}; the table below lists them.",
            spans.len(),
            lanes.len(),
            stamp(window.from),
            stamp(window.to)
        ),
        lanes,
    }
}

pub struct RangeOption {
    pub key: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "timeline.html")]
pub struct TimelinePage {
    pub user: String,
    pub csrf: String,
    pub ranges: Vec<RangeOption>,
    pub end: String,
    pub errors: WindowErrors,
    /// The window in words.
    pub heading: String,
    pub earlier_href: String,
    pub later_href: Option<String>,
    pub svg: Option<TimelineSvg>,
    pub rows: Vec<GrantRow>,
    pub cut: bool,
    pub limit: usize,
}

impl TimelinePage {
    /// The page for `window` showing `history` (newest first), or, when the form was wrong, its errors.
    pub fn new(
        user: &str,
        csrf: &str,
        form: &TimelineForm,
        window: Result<Window, WindowErrors>,
        history: &GrantHistory,
        now: OffsetDateTime,
    ) -> TimelinePage {
        let (window, errors) = match window {
            Ok(w) => (Some(w), WindowErrors::default()),
            Err(e) => (None, e),
        };
        let range = window.map(|w| w.range).unwrap_or(Range::Day);
        let ranges = Range::ALL.into_iter().map(|r| RangeOption { key: r.key(), label: r.label(), selected: r == range }).collect();
        let mut page = TimelinePage {
            user: user.to_owned(),
            csrf: csrf.to_owned(),
            ranges,
            end: form.end.clone(),
            errors,
            heading: String::new(),
            earlier_href: timeline_href(range, None),
            later_href: None,
            svg: None,
            rows: Vec::new(),
            cut: history.cut,
            limit: TIMELINE_LIMIT,
        };
        let Some(window) = window else { return page };
        page.heading = format!("{} to {}", stamp(window.from), stamp(window.to));
        page.earlier_href = timeline_href(range, Some((window.from - Duration::nanoseconds(1)).date()));
        page.later_href = window.end.map(|end| {
            let later = end + range.length();
            timeline_href(range, (later < now.date()).then_some(later))
        });
        if !history.spans.is_empty() {
            page.svg = Some(drawing(&window, &history.spans, now));
        }
        let mut spans: Vec<&GrantSpan> = history.spans.iter().collect();
        spans.sort_by_key(|s| (s.vm.name.key(), s.vm.resource_group.key(), s.grant.number, s.start));
        page.rows = spans
            .iter()
            .map(|s| GrantRow {
                machine: s.vm.name.to_string(),
                machine_href: vm_href(&s.vm.to_string()),
                resource_group: s.vm.resource_group.to_string(),
                port: format!("{}/{}", s.grant.number, s.grant.protocol),
                who: s.requestor.clone(),
                from: sources_text(&s.grant.sources),
                start: stamp(s.start),
                end: match s.state_at(now) {
                    SpanState::Live => "now".to_owned(),
                    _ => stamp(s.closed()),
                },
                state: state_text(s, now),
                justification: s.justification.clone().unwrap_or_default(),
            })
            .collect();
        page
    }

    pub fn render_page(&self) -> Result<String, RenderError> {
        Ok(self.render()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ajar_domain::Sources;
    use ajar_domain::initiate::{Grant, GrantStatus, StatusReason};
    use ajar_domain::policy::Protocol;
    use time::macros::{date, datetime};

    fn form(range: &str, end: &str) -> TimelineForm {
        TimelineForm { range: range.into(), end: end.into() }
    }

    const NOW: OffsetDateTime = datetime!(2026-03-10 10:15 UTC);

    #[test]
    fn the_window_is_a_day_or_a_week_ending_now_or_at_the_end_of_a_day() {
        let w = form("", "").window(NOW).unwrap();
        assert_eq!((w.range, w.from, w.to, w.end), (Range::Day, datetime!(2026-03-09 10:15 UTC), NOW, None));
        let w = form("week", "2026-03-08").window(NOW).unwrap();
        assert_eq!((w.from, w.to, w.end), (datetime!(2026-03-02 00:00 UTC), datetime!(2026-03-09 00:00 UTC), Some(date!(2026 - 03 - 08))));
        let e = form("month", "tomorrow").window(NOW).unwrap_err();
        assert!(e.range.is_some_and(|r| r.contains("'month'")));
        assert!(e.end.is_some_and(|r| r.contains("'tomorrow'")));
        assert!(form("day", "2026-03-11").window(NOW).unwrap_err().end.is_some_and(|e| e.contains("after today")));
    }

    fn span(name: &str, port: u16, start: OffsetDateTime, minutes: i64, who: &str) -> GrantSpan {
        GrantSpan {
            request_id: "r".into(),
            requestor: who.into(),
            justification: Some("deploy".into()),
            start,
            vm: format!(
                "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}"
            )
            .parse()
            .unwrap(),
            grant: Grant {
                number: port,
                protocol: Protocol::Tcp,
                sources: Sources::One("10.1.2.3".parse().unwrap()),
                end: start + Duration::minutes(minutes),
                status: GrantStatus::Initiated,
                reason: StatusReason::UserRequested,
                mapped_port: None,
            },
            revoked: None,
        }
    }

    #[test]
    fn lanes_bars_and_ticks() {
        let window = form("day", "").window(NOW).unwrap();
        let spans = [
            span("web1", 22, datetime!(2026-03-10 09:15 UTC), 120, "alice"),
            span("db1", 3389, datetime!(2026-03-09 08:00 UTC), 180, "bob"),
            span("web1", 22, datetime!(2026-03-09 22:00 UTC), 60, "carol"),
        ];
        let svg = drawing(&window, &spans, NOW);
        let labels: Vec<&str> = svg.lanes.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, ["db1:3389", "web1:22"]);
        let web1 = &svg.lanes[1];
        assert_eq!(web1.bars.len(), 2);
        let live = &web1.bars[0];
        assert_eq!((live.class, live.x + live.width, svg.now_x), ("live", PLOT_X + PLOT_WIDTH, Some(PLOT_X + PLOT_WIDTH)), "open to now");
        assert!(live.title.starts_with("alice from 10.1.2.3 · web1:22/TCP"), "{}", live.title);
        let early = &svg.lanes[0].bars[0];
        assert_eq!((early.x, early.class), (PLOT_X, "expired"), "started before the window: drawn from its start");
        assert!((early.width - PLOT_WIDTH * 45 / (24 * 60)).abs() <= 1, "08:00–11:00, of which 10:15–11:00 is inside: {}", early.width);
        assert_eq!(svg.ticks.len(), 8);
        assert_eq!((svg.ticks[0].label.as_str(), svg.ticks[4].label.as_str()), ("12:00", "2026-03-10 00:00"));
        let week = drawing(&form("week", "2026-03-09").window(NOW).unwrap(), &spans, NOW);
        assert_eq!(week.ticks.iter().map(|t| t.label.as_str()).collect::<Vec<_>>()[..2], ["Tue 03-03", "Wed 03-04"]);
        assert_eq!(week.now_x, None);
    }
}
