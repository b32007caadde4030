//! The "Just-in-time VM access" page: three tabs of machines, filters, and what the caller may do.

use askama::Template;
use time::OffsetDateTime;

use ajar_domain::ids::arm_key;
use ajar_domain::inventory::Vm;
use ajar_domain::status::{JitState, VmJitStatus};

use crate::{DayChart, OpenGrant, RenderError, address, day_chart, encode, firewall_marker, open_grants, query_string, vm_href, when};

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
    /// Ignoring case as ARM does (in any letters), and a name matches by substring.
    pub fn matches(&self, vm: &Vm) -> bool {
        let eq = |want: &str, have: &str| want.is_empty() || arm_key(want) == arm_key(have);
        eq(&self.subscription, vm.id.subscription.as_str())
            && eq(&self.resource_group, vm.id.resource_group.as_str())
            && eq(&self.location, vm.location.as_str())
            && (self.name.is_empty() || vm.id.name.key().contains(&arm_key(&self.name)))
    }

    /// The address of page `page` of `tab` (the first when `None`), keeping the filter.
    fn href(&self, tab: Tab, page: Option<usize>) -> String {
        let page = page.map(|p| p.to_string()).unwrap_or_default();
        let query = query_string(&[
            ("tab", tab.key()),
            ("subscription", &self.subscription),
            ("resourceGroup", &self.resource_group),
            ("location", &self.location),
            ("name", &self.name),
            ("page", &page),
        ]);
        format!("/ui/jit?{query}")
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
    /// Where requesters connect and the JIT ports; through the gateway's address for one behind a gateway.
    pub connection: String,
    /// "Firewall: gw1" for a machine reached through a gateway.
    pub firewall: Option<String>,
    pub last_user: String,
    pub open_now: Vec<OpenGrant>,
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
    pub pager: Pager,
}

/// Machines shown on one page of a tab: enough to scan, few enough to render fast with thousands.
pub const PAGE_SIZE: usize = 100;

/// Where this page sits among the tab's machines, and links to its neighbours.
pub struct Pager {
    /// 1-based positions of the first and last machine shown, of `total`.
    pub first: usize,
    pub last: usize,
    pub total: usize,
    pub previous: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    /// The pager for 1-based `page` (clamped to the pages there are) of `total` machines; `href` makes
    /// a page's address.
    fn new(page: usize, total: usize, href: impl Fn(usize) -> String) -> Pager {
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        let page = page.clamp(1, pages);
        let first = (page - 1) * PAGE_SIZE;
        Pager {
            first: if total == 0 { 0 } else { first + 1 },
            last: (first + PAGE_SIZE).min(total),
            total,
            previous: (page > 1).then(|| href(page - 1)),
            next: (page < pages).then(|| href(page + 1)),
        }
    }
}

fn row(s: &VmJitStatus, allowed: Allowed, now: OffsetDateTime) -> Row {
    let ports: Vec<String> = s.ports.iter().map(|p| format!("{}/{}", p.number, p.protocol)).collect();
    Row {
        id: s.vm.id.to_string(),
        id_query: encode(&s.vm.id.to_string()),
        href: vm_href(&s.vm.id.to_string()),
        allowed,
        name: s.vm.id.name.to_string(),
        resource_group: s.vm.id.resource_group.to_string(),
        location: s.vm.location.to_string(),
        os: s.vm.os.as_str().to_owned(),
        requests_7_days: s.requests_last_7_days(),
        chart: day_chart(&s.requests_by_day),
        last_access: s.last_access.map(|t| when(t, now)).unwrap_or_else(|| "never".to_owned()),
        connection: match s.gateway.as_ref().and_then(|g| g.gateway.connection_address()) {
            Some(public) => format!("{public} → {} : {}", address(&s.vm), ports.join(", ")),
            None => format!("{} : {}", address(&s.vm), ports.join(", ")),
        },
        firewall: firewall_marker(s),
        last_user: s.last_user.clone().unwrap_or_default(),
        open_now: open_grants(s, now),
        reason: match &s.state {
            JitState::Unsupported(r) => r.description().to_owned(),
            _ => String::new(),
        },
    }
}

/// A machine the caller may see, with its JIT state and what the caller may do to it: all the JIT page
/// needs to count the tabs and choose a page, before any machine's full status is read.
pub struct Listed {
    pub vm: Vm,
    pub state: JitState,
    pub allowed: Allowed,
}

/// The JIT page's first step: the tabs' counts and the page of `tab` to show, from every machine the
/// caller may see. The server then reads the statuses of [`JitListing::page`] only and renders.
pub struct JitListing<'a> {
    tab: Tab,
    filter: &'a Filter,
    tabs: Vec<TabLink>,
    pager: Pager,
    page: Vec<&'a Listed>,
}

impl<'a> JitListing<'a> {
    /// Page `page` (1-based, clamped) of `tab`, among `listed` filtered by `filter`.
    pub fn new(tab: Tab, page: usize, filter: &'a Filter, listed: &'a [Listed]) -> JitListing<'a> {
        let shown: Vec<&Listed> = listed.iter().filter(|l| filter.matches(&l.vm)).collect();
        let tabs = Tab::ALL
            .into_iter()
            .map(|t| TabLink {
                label: t.label(),
                href: filter.href(t, None),
                count: shown.iter().filter(|l| Tab::of(&l.state) == t).count(),
                current: t == tab,
            })
            .collect();
        let in_tab: Vec<&Listed> = shown.into_iter().filter(|l| Tab::of(&l.state) == tab).collect();
        let pager = Pager::new(page, in_tab.len(), |p| filter.href(tab, Some(p)));
        let page = in_tab.into_iter().skip(pager.first.saturating_sub(1)).take(PAGE_SIZE).collect();
        JitListing { tab, filter, tabs, pager, page }
    }

    /// The machines on the page, in order.
    pub fn page(&self) -> impl Iterator<Item = &Listed> {
        self.page.iter().copied()
    }

    /// The page, with `statuses` of (some of) the machines on it; a machine whose status is missing (it
    /// went away meanwhile) is left out.
    pub fn render(
        self,
        user: &str,
        csrf: &str,
        subscriptions: Vec<String>,
        statuses: &[VmJitStatus],
        now: OffsetDateTime,
    ) -> Result<String, RenderError> {
        let rows: Vec<Row> =
            self.page.iter().filter_map(|l| statuses.iter().find(|s| s.vm.id == l.vm.id).map(|s| row(s, l.allowed, now))).collect();
        let selectable = match self.tab {
            Tab::Configured => rows.iter().any(|r| r.allowed.request),
            Tab::NotConfigured => rows.iter().any(|r| r.allowed.configure),
            Tab::Unsupported => false,
        };
        let page = JitPage {
            user: user.to_owned(),
            csrf: csrf.to_owned(),
            tab: self.tab.key(),
            tabs: self.tabs,
            subscriptions,
            filter_subscription: self.filter.subscription.clone(),
            filter_resource_group: self.filter.resource_group.clone(),
            filter_location: self.filter.location.clone(),
            filter_name: self.filter.name.clone(),
            rows,
            selectable,
            pager: self.pager,
        };
        Ok(page.render()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_and_page_addresses_keep_the_filter() {
        let filter = Filter { resource_group: "rg 1".into(), name: "web&db".into(), ..Filter::default() };
        assert_eq!(filter.href(Tab::NotConfigured, None), "/ui/jit?tab=notconfigured&resourceGroup=rg%201&name=web%26db");
        assert_eq!(filter.href(Tab::Configured, Some(3)), "/ui/jit?tab=configured&resourceGroup=rg%201&name=web%26db&page=3");
        assert_eq!(Filter::default().href(Tab::Unsupported, Some(2)), "/ui/jit?tab=unsupported&page=2");
    }

    #[test]
    fn the_filter_ignores_case_in_any_letters() {
        use ajar_domain::inventory::{EnforcementPoint, OsType};
        let vm = Vm {
            id: "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/Ärger/providers/Microsoft.Compute/virtualMachines/ΑΣ-web1"
                .parse()
                .unwrap(),
            location: "Local".parse().unwrap(),
            os: OsType::Linux,
            private_addresses: Vec::new(),
            enforcement: EnforcementPoint::None,
            gateway: None,
        };
        let filter = |rg: &str, location: &str, name: &str| Filter {
            subscription: "20FF7FC3-E762-44DD-BD96-B71116DCDC23".into(),
            resource_group: rg.into(),
            location: location.into(),
            name: name.into(),
        };
        let table = [
            (filter("ärger", "LOCAL", ""), true),
            (filter("ÄRGER", "local", "ασ-WEB"), true),
            (filter("", "", "ας-web1"), true),
            (filter("", "", "σ-web"), true),
            (filter("ärge", "", ""), false),
            (filter("", "", "ασ-web2"), false),
            (filter("", "elsewhere", ""), false),
        ];
        for (f, expected) in table {
            assert_eq!(f.matches(&vm), expected, "{f:?}");
        }
    }
}
