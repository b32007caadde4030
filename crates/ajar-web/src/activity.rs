//! The activity log page: entries newest first with time, date, subscription, operation, caller, source
//! and result; filters; pages of [`PAGE_SIZE`]; and "Download as CSV" with the same filters.

use askama::Template;
use time::macros::format_description;
use time::{Date, Time};

use ajar_domain::VmId;
use ajar_domain::activity::{ActivityEntry, ActivityQuery, Outcome, ResultKind, actions as a};

use crate::{RenderError, query_string, vm_href};

/// Entries on one page.
pub const PAGE_SIZE: usize = 100;
/// Most entries one CSV download holds: the newest that match.
pub const CSV_LIMIT: usize = 10_000;

/// The operations offered in the filter, with what the page calls them.
const OPERATIONS: &[(&str, &str)] = &[
    (a::JIT_INITIATE, "Request JIT access"),
    (a::JIT_REVOKE, "Revoke JIT access"),
    (a::JIT_WRITE, "Create or update JIT policy"),
    (a::JIT_DELETE, "Delete JIT policy"),
    (a::JIT_READ, "Read JIT policies"),
    (a::VM_WRITE, "Add or update VM"),
    (a::VM_DELETE, "Remove VM"),
    (a::AGENT_ENROLL, "Enrol agent"),
    (a::AGENT_DRIFT_REPAIRED, "Agent repaired drift"),
    (a::AGENT_CONNECTIONS_CUT, "Agent cut connections"),
    (a::AUTHENTICATE, "Authenticate"),
    (a::ROLE_ASSIGNMENTS_WRITE, "Assign role"),
    (a::ROLE_ASSIGNMENTS_DELETE, "Remove role assignment"),
    (a::ROLE_DEFINITIONS_WRITE, "Create or update role"),
    (a::ROLE_DEFINITIONS_DELETE, "Delete role"),
    (a::PRINCIPALS_WRITE, "Create principal"),
    (a::PRINCIPALS_DELETE, "Delete principal"),
    (a::PRINCIPAL_TOKENS_WRITE, "Create API token"),
    (a::PRINCIPAL_TOKENS_DELETE, "Revoke API token"),
    (a::ACTIVITY_READ, "Read activity log"),
];

/// What the page calls an operation: its label, else the catalog's description, else the action itself.
pub fn operation_label(operation: &str) -> String {
    OPERATIONS
        .iter()
        .chain(ajar_domain::access::CATALOG)
        .find(|(action, _)| action.eq_ignore_ascii_case(operation))
        .map(|(_, label)| (*label).to_owned())
        .unwrap_or_else(|| operation.to_owned())
}

/// The filter form's fields as the address carries them, trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityFilter {
    /// A machine's resource ID.
    pub vm: String,
    pub caller: String,
    pub operation: String,
    /// `Succeeded`, `Failed` or empty.
    pub result: String,
    /// First day shown, `YYYY-MM-DD` (UTC).
    pub since: String,
    /// Last day shown, `YYYY-MM-DD` (UTC), included.
    pub until: String,
}

/// What is wrong with the filter, each next to its field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterErrors {
    pub vm: Option<String>,
    pub result: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

impl FilterErrors {
    pub fn is_empty(&self) -> bool {
        self == &FilterErrors::default()
    }
}

fn day(field: &str, value: &str) -> Result<Option<Date>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    Date::parse(value, format_description!("[year]-[month]-[day]"))
        .map(Some)
        .map_err(|_| format!("{field} '{value}' is not a date; use the form 2026-01-31."))
}

impl ActivityFilter {
    /// The filter from the address's query, `get` giving a field's value.
    pub fn from_query<'a>(get: impl Fn(&str) -> Option<&'a str>) -> ActivityFilter {
        let field = |name: &str| get(name).map(str::trim).unwrap_or_default().to_owned();
        ActivityFilter {
            vm: field("vm"),
            caller: field("caller"),
            operation: field("operation"),
            result: field("result"),
            since: field("since"),
            until: field("until"),
        }
    }

    /// The machine the filter names, if it names one well.
    pub fn machine(&self) -> Option<VmId> {
        self.vm.parse().ok()
    }

    /// The store's query for these fields (no scope, page or limit yet), or what is wrong with them.
    pub fn to_query(&self) -> Result<ActivityQuery, FilterErrors> {
        let mut errors = FilterErrors::default();
        let resource_key = match self.vm.as_str() {
            "" => None,
            vm => match vm.parse::<VmId>() {
                Ok(id) => Some(id.key()),
                Err(e) => {
                    errors.vm = Some(format!("{e}. Give a machine's resource ID, as the JIT page's links do."));
                    None
                }
            },
        };
        let result = match self.result.as_str() {
            "" => None,
            r => {
                let kind = ResultKind::parse(r);
                if kind.is_none() {
                    errors.result = Some(format!("Result '{r}' is not Succeeded or Failed."));
                }
                kind
            }
        };
        let since = day("From", &self.since).unwrap_or_else(|e| {
            errors.since = Some(e);
            None
        });
        let until = day("To", &self.until).unwrap_or_else(|e| {
            errors.until = Some(e);
            None
        });
        if let (Some(s), Some(u)) = (since, until)
            && u < s
        {
            errors.until = Some("To must not be before From.".to_owned());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let midnight = |d: Date| d.with_time(Time::MIDNIGHT).assume_utc();
        Ok(ActivityQuery {
            resource_key,
            caller: Some(self.caller.clone()).filter(|c| !c.is_empty()),
            operation: Some(self.operation.clone()).filter(|o| !o.is_empty()),
            result,
            since: since.map(midnight),
            // The whole of the last day; after the calendar's last day there is nothing to leave out.
            until: until.and_then(Date::next_day).map(midnight),
            ..ActivityQuery::default()
        })
    }

    /// The address of `path` with these fields, empty ones left out, and `before` (where a page starts).
    fn href(&self, path: &str, before: Option<i64>) -> String {
        let before = before.map(|seq| seq.to_string()).unwrap_or_default();
        let query = query_string(&[
            ("vm", &self.vm),
            ("caller", &self.caller),
            ("operation", &self.operation),
            ("result", &self.result),
            ("since", &self.since),
            ("until", &self.until),
            ("before", &before),
        ]);
        if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
    }
}

/// Where a page of the log stands among the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paging {
    /// Where the next page starts (the sequence number its entries are older than), if there is one.
    pub older: Option<i64>,
    /// How many entries this page searched, when it ran out of them before it was full.
    pub searched: Option<usize>,
    /// Whether this is a later page than the first.
    pub paged: bool,
}

/// How many entries of the log one page searches at most, so that a filter that matches little
/// costs a bounded read per page rather than one of the whole log.
pub const SEARCH_STRETCH: usize = 50_000;

/// The stretch of the log one page searches: the entries below `top` and above `floor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stretch {
    pub top: i64,
    pub floor: i64,
    size: usize,
}

impl Stretch {
    /// From `before` (the page's start) or else just past the `newest` entry, `size` entries down.
    pub fn new(before: Option<i64>, newest: i64, size: usize) -> Stretch {
        let top = before.unwrap_or(newest.saturating_add(1));
        Stretch { top, floor: top.saturating_sub(1).saturating_sub(i64::try_from(size).unwrap_or(i64::MAX)), size }
    }

    /// Trims what the search found (newest first, up to one more than `page`) to a page, and says where
    /// the next one starts: after its last entry when there were more, else below this stretch.
    pub fn paging(&self, found: &mut Vec<ActivityEntry>, page: usize, paged: bool) -> Paging {
        if found.len() > page {
            found.truncate(page);
            return Paging { older: found.last().map(|e| e.seq), searched: None, paged };
        }
        if self.floor > 0 {
            return Paging { older: Some(self.floor + 1), searched: Some(self.size), paged };
        }
        Paging { older: None, searched: None, paged }
    }
}

pub struct OperationOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub struct ActivityRow {
    pub date: String,
    pub time: String,
    pub subscription: String,
    /// The subscription's first characters, enough to tell subscriptions apart; `subscription` in full.
    pub subscription_short: String,
    pub resource_group: String,
    /// The resource's kind and name; `resource_id` in full.
    pub resource: String,
    pub resource_id: String,
    pub operation: String,
    pub operation_label: String,
    pub caller: String,
    pub source: String,
    pub succeeded: bool,
    pub error_code: String,
    /// Name = value, the justification first.
    pub details: Vec<String>,
}

/// A resource as the page names it: its kind, when it is one the page knows, and its name.
fn resource_name(resource_id: &str) -> String {
    let mut segments = resource_id.trim_end_matches('/').rsplit('/');
    let name = segments.next().unwrap_or_default();
    match segments.next() {
        Some(kind) if kind.eq_ignore_ascii_case("virtualMachines") => format!("VM {name}"),
        Some(kind) if kind.eq_ignore_ascii_case("jitNetworkAccessPolicies") => format!("JIT policy {name}"),
        Some(kind) if kind.eq_ignore_ascii_case("resourceGroups") => format!("resource group {name}"),
        Some(kind) if kind.eq_ignore_ascii_case("subscriptions") => format!("subscription {name}"),
        _ => name.to_owned(),
    }
}

fn short(id: &str) -> String {
    if id.chars().count() > 9 { format!("{}…", id.chars().take(8).collect::<String>()) } else { id.to_owned() }
}

fn row(e: &ActivityEntry) -> ActivityRow {
    let t = e.time;
    let mut details: Vec<String> =
        e.details.iter().filter(|(n, _)| n == "justification").map(|(_, v)| format!("justification = {v}")).collect();
    details.extend(e.details.iter().filter(|(n, _)| n != "justification").map(|(n, v)| format!("{n} = {v}")));
    ActivityRow {
        date: format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        time: format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
        subscription: e.subscription.clone().unwrap_or_default(),
        subscription_short: e.subscription.as_deref().map(short).unwrap_or_default(),
        resource_group: e.resource_group.clone().unwrap_or_default(),
        resource: resource_name(&e.resource_id),
        resource_id: e.resource_id.clone(),
        operation: e.operation.clone(),
        operation_label: operation_label(&e.operation),
        caller: e.caller.clone(),
        source: e.caller_addr.map(|a| a.to_string()).unwrap_or_default(),
        succeeded: e.outcome == Outcome::Succeeded,
        error_code: e.outcome.error_code().unwrap_or_default().to_owned(),
        details,
    }
}

#[derive(Template)]
#[template(path = "activity.html")]
pub struct ActivityPage {
    pub user: String,
    pub csrf: String,
    /// The machine the log is about, by name, with its page.
    pub machine: Option<(String, String)>,
    pub filter: ActivityFilter,
    pub errors: FilterErrors,
    pub operations: Vec<OperationOption>,
    pub rows: Vec<ActivityRow>,
    /// The next page, when there are older entries.
    pub older_href: Option<String>,
    /// How many entries this page searched, when it ran out of them before it was full and older ones
    /// are still to search.
    pub searched: Option<usize>,
    /// The first page, when this is a later one.
    pub newest_href: Option<String>,
    pub csv_href: String,
    pub csv_limit: usize,
}

impl ActivityPage {
    /// The page for `entries` (newest first, at most a page), with where the next page starts.
    pub fn new(
        user: &str,
        csrf: &str,
        filter: ActivityFilter,
        errors: FilterErrors,
        entries: &[ActivityEntry],
        paging: Paging,
    ) -> ActivityPage {
        let mut operations: Vec<OperationOption> = OPERATIONS
            .iter()
            .map(|(action, label)| OperationOption {
                value: (*action).to_owned(),
                label: (*label).to_owned(),
                selected: action.eq_ignore_ascii_case(&filter.operation),
            })
            .collect();
        // An operation named by a link but not offered stays selected rather than silently dropped.
        if !filter.operation.is_empty() && !operations.iter().any(|o| o.selected) {
            operations.push(OperationOption { value: filter.operation.clone(), label: operation_label(&filter.operation), selected: true });
        }
        let machine = filter.machine().map(|vm| (vm.name.to_string(), vm_href(&vm.to_string())));
        ActivityPage {
            user: user.to_owned(),
            csrf: csrf.to_owned(),
            machine,
            older_href: paging.older.map(|seq| filter.href("/ui/activity", Some(seq))),
            searched: paging.searched,
            newest_href: paging.paged.then(|| filter.href("/ui/activity", None)),
            csv_href: filter.href("/ui/activity.csv", None),
            csv_limit: CSV_LIMIT,
            rows: entries.iter().map(row).collect(),
            operations,
            errors,
            filter,
        }
    }

    pub fn render_page(&self) -> Result<String, RenderError> {
        Ok(self.render()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode;
    use time::macros::datetime;

    const VM: &str =
        "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/Web1";

    fn filter(pairs: &[(&str, &str)]) -> ActivityFilter {
        ActivityFilter::from_query(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
    }

    #[test]
    fn the_fields_become_the_query() {
        let f = filter(&[("vm", VM), ("caller", " alice "), ("result", "failed"), ("since", "2026-01-02"), ("until", "2026-01-02")]);
        let q = f.to_query().unwrap();
        assert_eq!(q.resource_key.as_deref(), Some(VM.to_lowercase().as_str()));
        assert_eq!((q.caller.as_deref(), q.result, q.operation), (Some("alice"), Some(ResultKind::Failed), None));
        assert_eq!(
            (q.since, q.until),
            (Some(datetime!(2026-01-02 00:00 UTC)), Some(datetime!(2026-01-03 00:00 UTC))),
            "the whole last day"
        );
        assert_eq!(filter(&[]).to_query().unwrap(), ActivityQuery::default());
    }

    #[test]
    fn bad_fields_are_named() {
        let errors =
            filter(&[("vm", "web1"), ("result", "maybe"), ("since", "yesterday"), ("until", "2026-13-01")]).to_query().unwrap_err();
        assert!(errors.vm.as_deref().is_some_and(|e| e.contains("resource ID")), "{errors:?}");
        assert!(errors.result.as_deref().is_some_and(|e| e.contains("'maybe'")), "{errors:?}");
        assert!(errors.since.as_deref().is_some_and(|e| e.contains("'yesterday'")), "{errors:?}");
        assert!(errors.until.is_some(), "{errors:?}");
        let reversed = filter(&[("since", "2026-01-02"), ("until", "2026-01-01")]).to_query().unwrap_err();
        assert_eq!(reversed, FilterErrors { until: Some("To must not be before From.".into()), ..FilterErrors::default() });
    }

    #[test]
    fn links_keep_the_filters() {
        let f = filter(&[("vm", VM), ("operation", a::JIT_INITIATE)]);
        let encoded_vm = encode(VM);
        assert_eq!(f.href("/ui/activity.csv", None), format!("/ui/activity.csv?vm={encoded_vm}&operation={}", encode(a::JIT_INITIATE)));
        assert!(f.href("/ui/activity", Some(42)).ends_with("&before=42"));
        assert_eq!(filter(&[]).href("/ui/activity", Some(7)), "/ui/activity?before=7");
        assert_eq!(filter(&[]).href("/ui/activity.csv", None), "/ui/activity.csv");
    }

    fn entries(seqs: std::ops::RangeInclusive<i64>) -> Vec<ActivityEntry> {
        seqs.rev()
            .map(|seq| ActivityEntry {
                seq,
                time: datetime!(2026-01-01 00:00 UTC),
                subscription: None,
                resource_group: None,
                resource_id: "/".into(),
                operation: "op".into(),
                caller: "c".into(),
                caller_addr: None,
                outcome: Outcome::Succeeded,
                details: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_page_searches_a_stretch_and_continues_below_it() {
        // Entries 1..=100; stretches of 30, pages of 5.
        let first = Stretch::new(None, 100, 30);
        assert_eq!((first.top, first.floor), (101, 70), "searches 71..=100");
        let mut full = entries(90..=95);
        assert_eq!(first.paging(&mut full, 5, false), Paging { older: Some(91), searched: None, paged: false });
        assert_eq!(full.len(), 5, "one more than a page says there are more");
        let mut sparse = entries(80..=81);
        assert_eq!(
            first.paging(&mut sparse, 5, false),
            Paging { older: Some(71), searched: Some(30), paged: false },
            "on below the stretch"
        );
        let last = Stretch::new(Some(20), 100, 30);
        assert_eq!((last.top, last.floor), (20, -11));
        assert_eq!(last.paging(&mut entries(3..=4), 5, true), Paging { older: None, searched: None, paged: true }, "the log's start");
        assert_eq!(Stretch::new(None, 0, 30).paging(&mut Vec::new(), 5, false).older, None, "an empty log");
    }

    #[test]
    fn operations_have_labels() {
        assert_eq!(operation_label(a::JIT_INITIATE), "Request JIT access");
        assert_eq!(operation_label(a::AGENTS_READ), "Read enrolled agents and their health");
        assert_eq!(operation_label("Custom/thing/action"), "Custom/thing/action");
    }

    #[test]
    fn resources_are_named_with_their_kind() {
        assert_eq!(resource_name(VM), "VM Web1");
        let policy = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Security/locations/l/jitNetworkAccessPolicies/default";
        assert_eq!(resource_name(policy), "JIT policy default");
        assert_eq!(resource_name("/subscriptions/s/resourceGroups/rg/"), "resource group rg");
        assert_eq!(resource_name("/ui/signin"), "signin");
        assert_eq!(resource_name("/"), "");
    }
}
