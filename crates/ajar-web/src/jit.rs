//! The "Just-in-time VM access" page: three tabs of machines, filters, and what the caller may do.

use askama::Template;
use time::OffsetDateTime;

use ajar_domain::status::{JitState, VmJitStatus};

use crate::{DayChart, RenderError, day_chart, encode, open_grants, vm_href, when};

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

pub struct TabLink {
    pub label: &'static str,
    pub href: String,
    pub count: usize,
    pub current: bool,
}

/// What the caller may do to one machine, as its roles say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowed {
    /// Open its ports (`…/jitNetworkAccessPolicies/initiate/action`).
    pub request: bool,
    /// Enable, edit or remove its JIT configuration (JIT write and VM write).
    pub configure: bool,
}

pub struct Row {
    pub id: String,
    /// The ID, encoded for a query string (`?vm=…`).
    pub id_query: String,
    pub href: String,
    pub allowed: Allowed,
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub os: String,
    pub requests_7_days: u32,
    /// The same, day by day.
    pub chart: DayChart,
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
    /// Whether the page offers selection and the tab's action (some row allows it).
    pub selectable: bool,
}

fn row(s: &VmJitStatus, allowed: Allowed, now: OffsetDateTime) -> Row {
    let ports: Vec<String> = s.ports.iter().map(|p| format!("{}/{}", p.number, p.protocol)).collect();
    let address = s.vm.private_addresses.first().map(ToString::to_string).unwrap_or_else(|| "no address".to_owned());
    let open = open_grants(s, now);
    Row {
        id: s.vm.id.to_string(),
        id_query: encode(&s.vm.id.to_string()),
        href: vm_href(&s.vm.id.to_string()),
        allowed,
        name: s.vm.id.name.to_string(),
        resource_group: s.vm.id.resource_group.to_string(),
        location: s.vm.location.to_string(),
        os: s.vm.os.as_str().to_owned(),
        requests_7_days: s.requests_last_7_days,
        chart: day_chart(&s.requests_by_day),
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

/// The JIT page for `statuses` (those the caller may see, all tabs, with what it may do to each), showing
/// `tab` filtered by `filter`.
pub fn jit_page(
    user: &str,
    csrf: &str,
    tab: Tab,
    filter: &Filter,
    subscriptions: Vec<String>,
    statuses: &[(VmJitStatus, Allowed)],
    now: OffsetDateTime,
) -> Result<String, RenderError> {
    let shown: Vec<&(VmJitStatus, Allowed)> = statuses.iter().filter(|(s, _)| filter.matches(s)).collect();
    let tabs = Tab::ALL
        .into_iter()
        .map(|t| TabLink {
            label: t.label(),
            href: format!("/ui/jit?tab={}{}", t.key(), filter.query()),
            count: shown.iter().filter(|(s, _)| Tab::of(&s.state) == t).count(),
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
        rows: shown.iter().filter(|(s, _)| Tab::of(&s.state) == tab).map(|(s, allowed)| row(s, *allowed, now)).collect(),
        selectable: false,
    };
    let selectable = match tab {
        Tab::Configured => page.rows.iter().any(|r| r.allowed.request),
        Tab::NotConfigured => page.rows.iter().any(|r| r.allowed.configure),
        Tab::Unsupported => false,
    };
    let page = JitPage { selectable, ..page };
    Ok(page.render()?)
}
