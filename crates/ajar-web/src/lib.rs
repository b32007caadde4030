//! The dashboard's pages, rendered on the server from askama templates compiled into the binary, with
//! their CSS embedded: nothing is fetched from elsewhere, so the dashboard works on an air-gapped network.
//!
//! Pure: view models in, HTML out. The server decides who may see what and fills the models.

use askama::Template;
use time::{OffsetDateTime, UtcOffset};

use ajar_domain::Sources;
use ajar_domain::inventory::Vm;
use ajar_domain::status::VmJitStatus;

mod activity;
mod chart;
mod configure;
mod jit;
mod request;
mod signin;
mod timeline;
mod vm;

pub use activity::{ActivityFilter, ActivityPage, CSV_LIMIT, FilterErrors, PAGE_SIZE, Paging, SEARCH_STRETCH, Stretch};
pub use chart::{DayChart, day_chart};
pub use configure::{ConfigurePage, DonePage, MachineView, Mode, Note, RemovePage, RuleField, RuleRow, configure_href, describe_rule};
pub use jit::{Allowed, Filter, JitListing, JitPage, Listed, Pager, Row, Tab, TabLink};
pub use request::{
    Choice, Field, FieldErrors, MachineInput, MachineState, OpenedMachine, RequestForm, RequestPage, RequestPageInput, TargetField,
    field_of_target, opened_machine, request_page,
};
pub use signin::{signed_in_page, signin_page};
pub use timeline::{TIMELINE_LIMIT, TimelineForm, TimelinePage, Window, WindowErrors};
pub use vm::{PortView, VmPage, connect_hint, durations_up_to};

/// The stylesheet, served at `/ui/static/style.css`.
pub const STYLE: &str = include_str!("../static/style.css");

/// The dashboard's only script, served at `/ui/static/ajar.js`: live countdowns. Every page works without it.
pub const SCRIPT: &str = include_str!("../static/ajar.js");

#[derive(Debug, thiserror::Error)]
#[error("rendering the page: {0}")]
pub struct RenderError(#[from] askama::Error);

/// Everything but RFC 3986's unreserved characters is encoded in a query value.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub(crate) fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, QUERY_VALUE).to_string()
}

/// An address's query from `name=value` pairs, in order, values encoded, empty ones left out.
pub(crate) fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&")
}

/// A time to the minute: "2026-01-01 14:05 UTC".
pub(crate) fn stamp(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

/// [`stamp`], with how long ago when that is under an hour.
pub(crate) fn when(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let ago = now - t;
    let text = stamp(t);
    if ago.whole_minutes() < 60 { format!("{text} ({} min ago)", ago.whole_minutes().max(0)) } else { text }
}

/// Allowed sources in a line: "10.0.0.0/24, 2001:db8::/32".
pub(crate) fn sources_text(sources: &Sources) -> String {
    sources.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The machine's first private address, which the pages offer to connect to.
pub(crate) fn address(vm: &Vm) -> String {
    vm.private_addresses.first().map(ToString::to_string).unwrap_or_else(|| "no address".to_owned())
}

/// A live grant as the pages show it, its end ready for a countdown.
pub struct OpenGrant {
    pub port: u16,
    pub protocol: String,
    pub who: String,
    pub end: GrantEnd,
    /// `address:mappedPort` on the machine's gateway, for a machine reached through one.
    pub connect_to: Option<String>,
}

/// When a grant ends: `<time class="countdown" datetime="{{ attr }}">{{ until }}</time>`, which the page's
/// script turns into the time left.
pub struct GrantEnd {
    /// RFC 3339 in UTC with milliseconds, for the `datetime` attribute.
    pub attr: String,
    /// What the element says without the script: "until 14:05 UTC" (with the date if not today).
    pub until: String,
    /// The whole end time: "2026-01-01 14:05:07 UTC".
    pub full: String,
}

impl GrantEnd {
    pub fn new(end: OffsetDateTime, now: OffsetDateTime) -> GrantEnd {
        let t = end.to_offset(UtcOffset::UTC);
        let date = format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day());
        let clock = format!("{:02}:{:02}", t.hour(), t.minute());
        let until = if t.date() == now.to_offset(UtcOffset::UTC).date() {
            format!("until {clock} UTC")
        } else {
            format!("until {date} {clock} UTC")
        };
        GrantEnd {
            attr: format!("{date}T{clock}:{:02}.{:03}Z", t.second(), t.millisecond()),
            until,
            full: format!("{date} {clock}:{:02} UTC", t.second()),
        }
    }
}

/// The live grants: port, protocol, who asked, when each ends, and where to connect through a gateway.
pub(crate) fn open_grants(s: &VmJitStatus, now: OffsetDateTime) -> Vec<OpenGrant> {
    let gateway = s.gateway.as_ref().map(|g| &g.gateway);
    s.live
        .iter()
        .map(|(who, g)| OpenGrant {
            port: g.number,
            protocol: g.protocol.to_string(),
            who: who.clone(),
            end: GrantEnd::new(g.end, now),
            connect_to: gateway.zip(g.mapped_port).and_then(|(gw, p)| gw.connect_to(g.sources.prefixes(), p)),
        })
        .collect()
}

/// The gateway a machine is reached through, as the pages name it: "Firewall: gw1" (Azure's name for
/// the path through a firewall).
pub(crate) fn firewall_marker(s: &VmJitStatus) -> Option<String> {
    s.gateway.as_ref().map(|g| format!("Firewall: {}", g.gateway.name))
}

/// The VM page's address.
pub fn vm_href(vm_id: &str) -> String {
    format!("/ui/vm?id={}", encode(vm_id))
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// A page that only says something (not found, not allowed).
pub fn message_page(title: &str, message: &str) -> Result<String, RenderError> {
    Ok(MessagePage { title, message }.render()?)
}
