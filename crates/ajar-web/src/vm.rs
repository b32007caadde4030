//! A machine's page: its JIT configuration, live grants and Connect (the request form for this machine).

use askama::Template;
use time::OffsetDateTime;

use ajar_domain::status::{GatewayStatus, JitState, VmJitStatus};

use crate::request::{RequestForm, single_machine_form};
use crate::{OpenGrant, RenderError, address, firewall_marker, open_grants, sources_text, stamp};

pub struct PortView {
    pub number: u16,
    pub protocol: String,
    pub sources: String,
    pub max: String,
}

/// The gateway a machine is reached through, as its page shows it.
pub struct GatewayView {
    /// "Firewall: gw1".
    pub marker: String,
    pub name: String,
    /// Its public addresses, the one requesters are told first.
    pub public: String,
    /// The address requesters connect to, on each grant's mapped port.
    pub connect_address: String,
    pub mapped_ports: String,
    /// Whether its agent reports, and whether it has applied what it must enforce now.
    pub agent: String,
}

impl GatewayView {
    fn new(s: &VmJitStatus, g: &GatewayStatus, now: OffsetDateTime) -> GatewayView {
        let gw = &g.gateway;
        let first = gw.connection_address();
        let public: Vec<String> =
            first.into_iter().chain(gw.public.iter().copied().filter(|a| Some(*a) != first)).map(|a| a.to_string()).collect();
        let mut agent =
            if gw.agent.online(now) { "online".to_owned() } else { format!("offline (last seen {})", stamp(gw.agent.last_seen)) };
        if let Err(reason) = &gw.agent.nftables {
            agent.push_str(&format!(", nftables unusable: {reason}"));
        }
        agent.push_str(if g.in_sync() { ", in sync" } else { ", not in sync: it has not applied the latest changes yet" });
        GatewayView {
            marker: firewall_marker(s).unwrap_or_default(),
            name: gw.name.to_string(),
            public: public.join(", "),
            connect_address: first.map(|a| a.to_string()).unwrap_or_else(|| "no public address".to_owned()),
            mapped_ports: gw.mapped_ports.to_string(),
            agent,
        }
    }
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
    /// The gateway it is reached through (connection path "firewall"); `None`: directly.
    pub gateway: Option<GatewayView>,
    pub ports: Vec<PortView>,
    pub live: Vec<OpenGrant>,
    /// The request form for this machine, if the caller may open its ports.
    pub connect: Option<RequestForm>,
    /// Where to enable or edit its JIT configuration.
    pub configure_href: String,
    /// Whether the caller may enable JIT on it (not configured) or edit its configuration (configured).
    pub can_configure: bool,
    /// Whether the caller may remove JIT from it.
    pub can_remove: bool,
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
        // An IPv6 address needs brackets before a port (a name is shown as it is).
        _ => match address.parse() {
            Ok(ip) => ajar_domain::gateway::connect_to(ip, port),
            Err(_) => format!("{address}:{port}"),
        },
    }
}

impl VmPage {
    pub fn from_status(s: &VmJitStatus, user: &str, csrf: &str, my_ip: &str, can_request: bool, now: OffsetDateTime) -> VmPage {
        VmPage {
            user: user.to_owned(),
            csrf: csrf.to_owned(),
            vm_id: s.vm.id.to_string(),
            name: s.vm.id.name.to_string(),
            resource_group: s.vm.id.resource_group.to_string(),
            location: s.vm.location.to_string(),
            os: s.vm.os.as_str().to_owned(),
            address: address(&s.vm),
            state: match &s.state {
                JitState::Configured => "JIT configured".to_owned(),
                JitState::NotConfigured => "JIT not configured".to_owned(),
                JitState::Unsupported(r) => format!("unsupported: {}", r.description()),
            },
            gateway: s.gateway.as_ref().map(|g| GatewayView::new(s, g, now)),
            ports: s
                .ports
                .iter()
                .map(|p| PortView {
                    number: p.number,
                    protocol: p.protocol.to_string(),
                    sources: sources_text(&p.sources),
                    max: p.max_duration.to_string(),
                })
                .collect(),
            live: open_grants(s, now),
            connect: (can_request && !s.ports.is_empty()).then(|| single_machine_form(s, csrf, my_ip)),
            configure_href: crate::configure_href(&[s.vm.id.to_string()]),
            can_configure: false,
            can_remove: false,
        }
    }

    pub fn render_page(&self) -> Result<String, RenderError> {
        Ok(self.render()?)
    }
}

#[cfg(test)]
mod tests {
    use super::connect_hint;

    #[test]
    fn connect_hints_say_what_to_type() {
        for (address, port, expected) in [
            ("10.0.0.4", 22, "ssh 10.0.0.4"),
            ("10.0.0.4", 3389, "mstsc /v:10.0.0.4"),
            ("10.0.0.4", 8080, "10.0.0.4:8080"),
            ("fd00::4", 8080, "[fd00::4]:8080"),
            ("web1", 8080, "web1:8080"),
        ] {
            assert_eq!(connect_hint(address, port), expected);
        }
    }
}
