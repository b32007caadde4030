//! The dashboard's pages, rendered on the server from askama templates compiled into the binary, with
//! their CSS embedded: nothing is fetched from elsewhere, so the dashboard works on an air-gapped network.
//!
//! Pure: view models in, HTML out. The server decides who may see what and fills the models.

use askama::Template;
use time::OffsetDateTime;

use ajar_domain::status::VmJitStatus;

mod activity;
mod chart;
mod jit;
mod timeline;
mod vm;

pub use activity::{ActivityFilter, ActivityPage, CSV_LIMIT, FilterErrors, PAGE_SIZE, Paging, SEARCH_STRETCH, Stretch};
pub use chart::{DayChart, day_chart};
pub use jit::{Allowed, Filter, JitPage, Row, Tab, TabLink, jit_page};
pub use timeline::{TIMELINE_LIMIT, TimelineForm, TimelinePage, Window, WindowErrors};
pub use vm::{PortView, VmPage, connect_hint, durations_up_to};

/// The stylesheet, served at `/ui/static/style.css`.
pub const STYLE: &str = include_str!("../static/style.css");

#[derive(Debug, thiserror::Error)]
#[error("rendering the page: {0}")]
pub struct RenderError(#[from] askama::Error);

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignInPage {
    pub csrf: String,
    pub error: Option<String>,
}

/// Everything but RFC 3986's unreserved characters is encoded in a query value.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub(crate) fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, QUERY_VALUE).to_string()
}

pub(crate) fn when(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let ago = now - t;
    let text = format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute());
    if ago.whole_minutes() < 60 { format!("{text} ({} min ago)", ago.whole_minutes().max(0)) } else { text }
}

/// The live grants, one line each: port, who, time left.
pub(crate) fn open_grants(s: &VmJitStatus, now: OffsetDateTime) -> Vec<String> {
    s.live.iter().map(|(who, g)| format!("{} for {who}, {} min left", g.number, ((g.end - now).whole_seconds().max(0) + 59) / 60)).collect()
}

pub fn signin_page(csrf: &str, error: Option<String>) -> Result<String, RenderError> {
    Ok(SignInPage { csrf: csrf.to_owned(), error }.render()?)
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
