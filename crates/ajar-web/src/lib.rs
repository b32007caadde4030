//! The dashboard's pages, rendered on the server from askama templates compiled into the binary, with
//! their CSS embedded: nothing is fetched from elsewhere, so the dashboard works on an air-gapped network.
//!
//! Pure: view models in, HTML out. The server decides who may see what and fills the models.

use askama::Template;
use time::OffsetDateTime;

use ajar_domain::status::{JitState, VmJitStatus};

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

/// The three tabs of the JIT page, as Azure's portal has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Configured,
    NotConfigured,
    Unsupported,
}

impl Tab {
    pub const ALL: [Tab; 3] = [Tab::Configured, Tab::NotConfigured, Tab::Unsupported];

    pub fn key(self) -> &'static str {
        match self {
            Tab::Configured => "configured",
            Tab::NotConfigured => "notconfigured",
            Tab::Unsupported => "unsupported",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Tab::Configured => "Configured",
            Tab::NotConfigured => "Not configured",
            Tab::Unsupported => "Unsupported",
        }
    }

    pub fn parse(key: &str) -> Option<Tab> {
        Tab::ALL.into_iter().find(|t| t.key().eq_ignore_ascii_case(key))
    }

    pub fn of(state: &JitState) -> Tab {
        match state {
            JitState::Configured => Tab::Configured,
            JitState::NotConfigured => Tab::NotConfigured,
            JitState::Unsupported(_) => Tab::Unsupported,
        }
    }
}

/// What the filter form says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub subscription: String,
    pub resource_group: String,
    pub location: String,
    pub name: String,
}

impl Filter {
    /// Case-insensitive, and a name matches by substring.
    pub fn matches(&self, s: &VmJitStatus) -> bool {
        let eq = |want: &str, have: &str| want.is_empty() || want.eq_ignore_ascii_case(have);
        eq(&self.subscription, s.vm.id.subscription.as_str())
            && eq(&self.resource_group, s.vm.id.resource_group.as_str())
            && eq(&self.location, s.vm.location.as_str())
            && (self.name.is_empty() || s.vm.id.name.as_str().to_ascii_lowercase().contains(&self.name.to_ascii_lowercase()))
    }

    fn query(&self) -> String {
        let mut q = String::new();
        for (k, v) in [
            ("subscription", &self.subscription),
            ("resourceGroup", &self.resource_group),
            ("location", &self.location),
            ("name", &self.name),
        ] {
            if !v.is_empty() {
                q.push_str(&format!("&{k}={}", encode(v)));
            }
        }
        q
    }
}

/// Everything but RFC 3986's unreserved characters is encoded in a query value.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, QUERY_VALUE).to_string()
}

pub struct TabLink {
    pub label: &'static str,
    pub href: String,
    pub count: usize,
    pub current: bool,
}

pub struct Row {
    pub href: String,
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub os: String,
    pub requests_7_days: u32,
    pub last_access: String,
    pub connection: String,
    pub last_user: String,
    pub open_now: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "jit.html")]
pub struct JitPage {
    pub user: String,
    pub csrf: String,
    pub tab: &'static str,
    pub tabs: Vec<TabLink>,
    pub subscriptions: Vec<String>,
    pub filter_subscription: String,
    pub filter_resource_group: String,
    pub filter_location: String,
    pub filter_name: String,
    pub rows: Vec<Row>,
}

fn when(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let ago = now - t;
    let text = format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute());
    if ago.whole_minutes() < 60 { format!("{text} ({} min ago)", ago.whole_minutes().max(0)) } else { text }
}

/// The live grants, one line each: port, who, time left.
fn open_grants(s: &VmJitStatus, now: OffsetDateTime) -> Vec<String> {
    s.live.iter().map(|(who, g)| format!("{} for {who}, {} min left", g.number, ((g.end - now).whole_seconds().max(0) + 59) / 60)).collect()
}

fn row(s: &VmJitStatus, now: OffsetDateTime) -> Row {
    let ports: Vec<String> = s.ports.iter().map(|p| format!("{}/{}", p.number, p.protocol)).collect();
    let address = s.vm.private_addresses.first().map(ToString::to_string).unwrap_or_else(|| "no address".to_owned());
    let open = open_grants(s, now);
    Row {
        href: vm_href(&s.vm.id.to_string()),
        name: s.vm.id.name.to_string(),
        resource_group: s.vm.id.resource_group.to_string(),
        location: s.vm.location.to_string(),
        os: s.vm.os.as_str().to_owned(),
        requests_7_days: s.requests_last_7_days,
        last_access: s.last_access.map(|t| when(t, now)).unwrap_or_else(|| "never".to_owned()),
        connection: format!("{address} : {}", ports.join(", ")),
        last_user: s.last_user.clone().unwrap_or_default(),
        open_now: if open.is_empty() { "closed".to_owned() } else { open.join("; ") },
        reason: match &s.state {
            JitState::Unsupported(r) => r.description().to_owned(),
            _ => String::new(),
        },
    }
}

/// The JIT page for `statuses` (those the caller may see, all tabs), showing `tab` filtered by `filter`.
pub fn jit_page(
    user: &str,
    csrf: &str,
    tab: Tab,
    filter: &Filter,
    subscriptions: Vec<String>,
    statuses: &[VmJitStatus],
    now: OffsetDateTime,
) -> Result<String, RenderError> {
    let shown: Vec<&VmJitStatus> = statuses.iter().filter(|s| filter.matches(s)).collect();
    let tabs = Tab::ALL
        .into_iter()
        .map(|t| TabLink {
            label: t.label(),
            href: format!("/ui/jit?tab={}{}", t.key(), filter.query()),
            count: shown.iter().filter(|s| Tab::of(&s.state) == t).count(),
            current: t == tab,
        })
        .collect();
    let page = JitPage {
        user: user.to_owned(),
        csrf: csrf.to_owned(),
        tab: tab.key(),
        tabs,
        subscriptions,
        filter_subscription: filter.subscription.clone(),
        filter_resource_group: filter.resource_group.clone(),
        filter_location: filter.location.clone(),
        filter_name: filter.name.clone(),
        rows: shown.iter().filter(|s| Tab::of(&s.state) == tab).map(|s| row(s, now)).collect(),
    };
    Ok(page.render()?)
}

pub fn signin_page(csrf: &str, error: Option<String>) -> Result<String, RenderError> {
    Ok(SignInPage { csrf: csrf.to_owned(), error }.render()?)
}

/// The VM page's address.
pub fn vm_href(vm_id: &str) -> String {
    format!("/ui/vm?id={}", encode(vm_id))
}

pub struct PortView {
    pub number: u16,
    pub protocol: String,
    pub sources: String,
    pub max: String,
}

#[derive(Template)]
#[template(path = "vm.html")]
pub struct VmPage {
    pub user: String,
    pub csrf: String,
    pub vm_id: String,
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub os: String,
    pub address: String,
    pub state: String,
    pub ports: Vec<PortView>,
    pub live: Vec<String>,
    pub can_request: bool,
    pub my_ip: String,
    /// (ISO 8601 value, label), up to the longest maximum among the ports.
    pub durations: Vec<(String, String)>,
    pub error: Option<String>,
    pub opened: Vec<String>,
}

/// The durations offered: the usual ones up to `max_seconds`, and the maximum itself.
pub fn durations_up_to(max_seconds: i64) -> Vec<(String, String)> {
    const USUAL: [(i64, &str, &str); 8] = [
        (900, "PT15M", "15 minutes"),
        (1800, "PT30M", "30 minutes"),
        (3600, "PT1H", "1 hour"),
        (7200, "PT2H", "2 hours"),
        (10800, "PT3H", "3 hours"),
        (21600, "PT6H", "6 hours"),
        (43200, "PT12H", "12 hours"),
        (86400, "P1D", "24 hours"),
    ];
    let mut out: Vec<(String, String)> =
        USUAL.iter().filter(|(s, _, _)| *s <= max_seconds).map(|(_, v, l)| (v.to_string(), l.to_string())).collect();
    if out.is_empty() {
        out.push((format!("PT{max_seconds}S"), format!("{} minutes", max_seconds / 60)));
    }
    out
}

/// How to reach a port that was opened.
pub fn connect_hint(address: &str, port: u16) -> String {
    match port {
        22 => format!("ssh {address}"),
        3389 => format!("mstsc /v:{address}"),
        _ => format!("{address}:{port}"),
    }
}

impl VmPage {
    pub fn from_status(s: &VmJitStatus, user: &str, csrf: &str, my_ip: &str, can_request: bool, now: OffsetDateTime) -> VmPage {
        let max = s.ports.iter().map(|p| p.max_duration.as_duration().whole_seconds()).max().unwrap_or(0);
        VmPage {
            user: user.to_owned(),
            csrf: csrf.to_owned(),
            vm_id: s.vm.id.to_string(),
            name: s.vm.id.name.to_string(),
            resource_group: s.vm.id.resource_group.to_string(),
            location: s.vm.location.to_string(),
            os: s.vm.os.as_str().to_owned(),
            address: s.vm.private_addresses.first().map(ToString::to_string).unwrap_or_else(|| "no address".to_owned()),
            state: match &s.state {
                JitState::Configured => "JIT configured".to_owned(),
                JitState::NotConfigured => "JIT not configured".to_owned(),
                JitState::Unsupported(r) => format!("unsupported: {}", r.description()),
            },
            ports: s
                .ports
                .iter()
                .map(|p| PortView {
                    number: p.number,
                    protocol: p.protocol.to_string(),
                    sources: p.sources.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    max: p.max_duration.to_string(),
                })
                .collect(),
            live: open_grants(s, now),
            can_request,
            my_ip: my_ip.to_owned(),
            durations: durations_up_to(max),
            error: None,
            opened: Vec::new(),
        }
    }

    pub fn render_page(&self) -> Result<String, RenderError> {
        Ok(self.render()?)
    }
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
