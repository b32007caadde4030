//! "Enable JIT" and "Edit JIT configuration": one row per port with its protocol, allowed sources and
//! maximum request time; the confirmation before "Remove JIT"; and the page that says what was done.

use askama::Template;
use time::OffsetDateTime;

use ajar_domain::inventory::Vm;
use ajar_domain::policy::{PortRule, RECOMMENDED_PORTS, recommended_rule};
use ajar_domain::status::VmJitStatus;

use crate::{RenderError, encode, open_grants, sources_text, vm_href};

/// The protocols a port rule may name, as (form value, label): Azure's TCP, UDP and `*`.
pub const PROTOCOLS: [(&str, &str); 3] = [("TCP", "TCP"), ("UDP", "UDP"), ("*", "Any (TCP and UDP)")];

/// Maximum request times offered as suggestions; any ISO 8601 duration within the server's limits is
/// accepted.
pub const SUGGESTED_MAXIMUMS: [&str; 7] = ["PT30M", "PT1H", "PT2H", "PT3H", "PT6H", "PT12H", "P1D"];

/// One port of the form, as the user sees it: the values as typed (so a refused form comes back as it
/// was sent) and what is wrong with each field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleRow {
    /// Unticked: the port is left out (a recommended port not wanted, or a port removed).
    pub keep: bool,
    pub number: String,
    pub protocol: String,
    pub sources: String,
    pub max: String,
    pub number_error: Option<String>,
    pub protocol_error: Option<String>,
    pub sources_error: Option<String>,
    pub max_error: Option<String>,
}

/// A field of a [`RuleRow`], for placing an error next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleField {
    Number,
    Protocol,
    Sources,
    Max,
}

impl RuleRow {
    /// A kept row showing `rule`.
    pub fn from_rule(rule: &PortRule) -> RuleRow {
        RuleRow {
            keep: true,
            number: rule.number.to_string(),
            protocol: rule.protocol.as_str().to_owned(),
            sources: sources_text(&rule.sources),
            max: rule.max_duration.to_string(),
            ..RuleRow::default()
        }
    }

    /// An empty row for a custom port, with the recommended settings.
    pub fn blank() -> RuleRow {
        RuleRow { number: String::new(), ..RuleRow::from_rule(&recommended_rule(0)) }
    }

    /// The recommended ports (22, 3389, 5985, 5986) with their defaults, all kept: "Save" as they are is
    /// the one-click path.
    pub fn recommended() -> Vec<RuleRow> {
        RECOMMENDED_PORTS.iter().map(|(n, _)| RuleRow::from_rule(&recommended_rule(*n))).collect()
    }

    pub fn set_error(&mut self, field: RuleField, message: String) {
        let slot = match field {
            RuleField::Number => &mut self.number_error,
            RuleField::Protocol => &mut self.protocol_error,
            RuleField::Sources => &mut self.sources_error,
            RuleField::Max => &mut self.max_error,
        };
        slot.get_or_insert(message);
    }

    pub fn has_error(&self) -> bool {
        self.number_error.is_some() || self.protocol_error.is_some() || self.sources_error.is_some() || self.max_error.is_some()
    }

    /// The row's heading: the service of a recommended port, else the port typed.
    pub fn legend(&self) -> String {
        let typed = self.number.trim();
        match typed.parse::<u16>().ok().and_then(|n| RECOMMENDED_PORTS.iter().find(|(p, _)| *p == n)) {
            Some((n, service)) => format!("{service} ({n})"),
            None if typed.is_empty() => "New port".to_owned(),
            None => format!("Port {typed}"),
        }
    }
}

/// A machine the form configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineView {
    pub id: String,
    pub name: String,
    pub href: String,
    /// OS, resource group and location.
    pub detail: String,
}

impl MachineView {
    pub fn of(vm: &Vm) -> MachineView {
        MachineView {
            id: vm.id.to_string(),
            name: vm.id.name.to_string(),
            href: vm_href(&vm.id.to_string()),
            detail: format!("{} · resource group {} · {}", vm.os, vm.id.resource_group, vm.location),
        }
    }
}

/// A selected machine the form does not configure, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub name: String,
    /// Its page, when the caller may see it.
    pub href: Option<String>,
    pub text: String,
    /// Where to go instead (edit it on its own), as (label, address).
    pub link: Option<(String, String)>,
}

/// Whether the form enables JIT on machines that have none, or edits one machine's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enable,
    Edit,
}

impl Mode {
    pub fn key(self) -> &'static str {
        match self {
            Mode::Enable => "enable",
            Mode::Edit => "edit",
        }
    }

    pub fn parse(key: &str) -> Option<Mode> {
        [Mode::Enable, Mode::Edit].into_iter().find(|m| m.key() == key)
    }
}

#[derive(Template)]
#[template(path = "configure.html")]
pub struct ConfigurePage {
    pub user: String,
    pub csrf: String,
    pub mode: Mode,
    pub machines: Vec<MachineView>,
    pub notes: Vec<Note>,
    pub rows: Vec<RuleRow>,
    /// What is wrong with the form as a whole, or what the server refused.
    pub error: Option<String>,
    /// The range a maximum request time must be in, e.g. "PT5M to P1D".
    pub limits: String,
    /// In edit mode: whether the caller may also remove JIT from the machine.
    pub can_remove: bool,
    /// In edit mode: the version of the policy the form was opened on; saving is refused if the
    /// policy changed since.
    pub etag: Option<String>,
}

impl ConfigurePage {
    pub fn title(&self) -> String {
        match (self.mode, self.machines.as_slice()) {
            (Mode::Edit, [m]) => format!("Edit JIT configuration of {}", m.name),
            (_, [m]) => format!("Enable JIT on {}", m.name),
            (_, []) => "Configure JIT".to_owned(),
            (_, many) => format!("Enable JIT on {} machines", many.len()),
        }
    }

    pub fn protocols(&self) -> &'static [(&'static str, &'static str)] {
        &PROTOCOLS
    }

    pub fn suggested_maximums(&self) -> &'static [&'static str] {
        &SUGGESTED_MAXIMUMS
    }

    pub fn render_page(&self) -> Result<String, RenderError> {
        Ok(self.render()?)
    }
}

/// "Remove JIT from this machine?"
#[derive(Template)]
#[template(path = "configure_remove.html")]
pub struct RemovePage {
    pub user: String,
    pub csrf: String,
    pub machine: MachineView,
    /// The protected ports, e.g. "22/TCP, 3389/TCP".
    pub ports: String,
    /// Grants open on it now, one line each.
    pub live: Vec<crate::OpenGrant>,
    /// The other machines of its policy, which keep their configuration.
    pub others: usize,
    /// The version of the policy the page shows: removing is refused if it changed since.
    pub etag: String,
}

impl RemovePage {
    /// The confirmation for removing JIT from the machine `s`, whose policy holds `others` more machines.
    pub fn from_status(s: &VmJitStatus, user: &str, csrf: &str, others: usize, etag: &str, now: OffsetDateTime) -> RemovePage {
        RemovePage {
            etag: etag.to_owned(),
            user: user.to_owned(),
            csrf: csrf.to_owned(),
            machine: MachineView::of(&s.vm),
            ports: s.ports.iter().map(|p| format!("{}/{}", p.number, p.protocol)).collect::<Vec<_>>().join(", "),
            live: open_grants(s, now),
            others,
        }
    }

    pub fn render_page(&self) -> Result<String, RenderError> {
        Ok(self.render()?)
    }
}

/// What a save or a removal did, one line per machine.
#[derive(Template)]
#[template(path = "configure_done.html")]
pub struct DonePage {
    pub user: String,
    pub csrf: String,
    pub title: String,
    /// Each machine, with what it is now (its ports, one a line).
    pub lines: Vec<(MachineView, Vec<String>)>,
    pub note: Option<String>,
}

impl DonePage {
    pub fn render_page(&self) -> Result<String, RenderError> {
        Ok(self.render()?)
    }
}

/// One port rule in a line: "22/TCP from * for at most PT3H".
pub fn describe_rule(rule: &PortRule) -> String {
    format!("{}/{} from {} for at most {}", rule.number, rule.protocol, sources_text(&rule.sources), rule.max_duration)
}

/// The configure page's address for these machines.
pub fn configure_href(vm_ids: &[String]) -> String {
    let query: Vec<String> = vm_ids.iter().map(|id| format!("vm={}", encode(id))).collect();
    format!("/ui/configure?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_start_from_the_recommended_ports_with_their_defaults() {
        let rows = RuleRow::recommended();
        let numbers: Vec<&str> = rows.iter().map(|r| r.number.as_str()).collect();
        assert_eq!(numbers, ["22", "3389", "5985", "5986"]);
        assert!(rows.iter().all(|r| r.keep && r.protocol == "TCP" && r.sources == "*" && r.max == "PT3H"));
        assert_eq!(rows[0].legend(), "SSH (22)");
        let blank = RuleRow::blank();
        assert_eq!((blank.number.as_str(), blank.legend(), blank.keep), ("", "New port".to_owned(), true));
        assert_eq!(RuleRow { number: "8443".into(), ..blank }.legend(), "Port 8443");
    }

    #[test]
    fn the_first_error_of_a_field_stays() {
        let mut row = RuleRow::blank();
        assert!(!row.has_error());
        row.set_error(RuleField::Sources, "first".into());
        row.set_error(RuleField::Sources, "second".into());
        assert_eq!(row.sources_error.as_deref(), Some("first"));
        assert!(row.has_error());
    }

    #[test]
    fn modes_round_trip_and_the_address_is_encoded() {
        assert_eq!(Mode::parse(Mode::Edit.key()), Some(Mode::Edit));
        assert_eq!(Mode::parse("delete"), None);
        assert_eq!(configure_href(&["/a b".into(), "/c".into()]), "/ui/configure?vm=%2Fa%20b&vm=%2Fc");
    }
}
