//! What commands print: aligned tables for people, JSON for scripts.

use std::io::Write;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use ajar_api::wire_time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for reading.
    #[default]
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// Writes to stdout. A closed pipe (`ajar activity | head`) is not an error:
/// the reader has what it wanted.
pub fn emit(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub fn line(text: &str) -> anyhow::Result<()> {
    emit(format!("{text}\n").as_bytes())
}

/// Pretty JSON and a newline.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    emit(text.as_bytes())
}

/// Columns padded to their widest cell, two spaces apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table { headers: headers.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                // Cells are one line each: a newline would break the columns.
                let cell = cell.replace(['\n', '\r'], " ");
                if i + 1 == columns {
                    text.push_str(&cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table, or `empty` when it has no rows.
    pub fn print_or(&self, empty: &str) -> anyhow::Result<()> {
        if self.is_empty() { line(empty) } else { emit(self.render().as_bytes()) }
    }
}

/// `2026-01-01T12:00:00.0000000Z` → `2026-01-01 12:00:00Z`; unparseable text as is.
pub fn human_time(wire: &str) -> String {
    match wire_time::parse(wire) {
        Ok(t) => short_time(t),
        Err(_) => wire.to_owned(),
    }
}

pub fn short_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// `in 1h 5m` or `3m ago`, to the minute (seconds under a minute).
pub fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let d = t - now;
    if d.is_negative() { format!("{} ago", span(-d)) } else { format!("in {}", span(d)) }
}

fn span(d: Duration) -> String {
    let secs = d.whole_seconds();
    if secs < 60 {
        return format!("{secs}s");
    }
    // To the nearest minute: an hour asked a moment ago reads "in 1h", not "in 59m".
    let secs = (secs + 30) / 60 * 60;
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 && days == 0 {
        parts.push(format!("{minutes}m"));
    }
    parts.join(" ")
}

/// The last segment of a resource ID: its name.
pub fn short_name(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

/// `-` for nothing, so columns never look empty by accident.
pub fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", "STATE"]);
        t.row(vec!["web1".into(), "Configured".into()]);
        t.row(vec!["a-long-name".into(), "-".into()]);
        assert_eq!(t.render(), "NAME         STATE\nweb1         Configured\na-long-name  -\n");
    }

    #[test]
    fn times_read_well() {
        let now = datetime!(2026-01-01 12:00 UTC);
        let check = |t: OffsetDateTime, expected: &str| assert_eq!(relative(t, now), expected);
        check(datetime!(2026-01-01 13:00 UTC), "in 1h");
        check(datetime!(2026-01-01 13:05:20 UTC), "in 1h 5m");
        check(datetime!(2026-01-01 11:57 UTC), "3m ago");
        check(datetime!(2026-01-01 12:00:20 UTC), "in 20s");
        check(datetime!(2026-01-01 12:59:58 UTC), "in 1h");
        check(datetime!(2026-01-03 15:00 UTC), "in 2d 3h");
        assert_eq!(human_time("2026-01-01T12:00:00.0000000Z"), "2026-01-01 12:00:00Z");
        assert_eq!(human_time("junk"), "junk");
        assert_eq!(short_name("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web1"), "web1");
    }
}
