//! "Request access": one form for one or several machines (per machine its configured ports, the source
//! and the time window; one justification), the errors next to the fields they concern, and the result:
//! what was opened, until when, and how to connect.

use askama::Template;
use time::OffsetDateTime;

use ajar_domain::initiate::{MAX_JUSTIFICATION, RequestVm};
use ajar_domain::problem::{Step, Target};
use ajar_domain::status::VmJitStatus;

use crate::{GrantEnd, RenderError, address, configure_href, connect_hint, durations_up_to, firewall_marker, sources_text, vm_href};

/// A field of one machine's part of the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The machine as a whole (not configured, not allowed, listed twice).
    Machine,
    Ports,
    /// "My IP" or the range.
    Source,
    Duration,
}

/// Where a refusal's target points in this form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetField {
    /// A field of the machine the refusal concerns.
    Machine(Field),
    Justification,
}

/// The form field an initiate refusal's target concerns (`virtualMachines[1].ports[0].duration` is
/// that machine's time window: the form asks one window and one source for all of a machine's ports).
pub fn field_of_target(target: &Target) -> Option<TargetField> {
    use ajar_domain::problem::Field as F;
    match target.steps() {
        [Step::Field(F::Justification)] => Some(TargetField::Justification),
        [Step::Field(F::VirtualMachines), Step::At(_), rest @ ..] => Some(TargetField::Machine(match rest {
            [Step::Field(F::Ports), ..] => match rest.last() {
                Some(Step::Field(F::Duration | F::EndTimeUtc)) => Field::Duration,
                Some(Step::Field(F::AllowedSourceAddressPrefix | F::AllowedSourceAddressPrefixes)) => Field::Source,
                _ => Field::Ports,
            },
            _ => Field::Machine,
        })),
        _ => None,
    }
}

/// What the user chose for one machine, as posted (kept to show the form again as it was).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    pub ports: Vec<u16>,
    /// The source is the range rather than "My IP".
    pub range_chosen: bool,
    pub range: String,
    /// The time window's ISO 8601 value (`PT1H`).
    pub duration: String,
}

/// The messages for one machine's fields; the first for each field is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors {
    pub machine: Option<String>,
    pub ports: Option<String>,
    pub source: Option<String>,
    pub duration: Option<String>,
}

impl FieldErrors {
    pub fn set(&mut self, field: Field, message: impl Into<String>) {
        let slot = match field {
            Field::Machine => &mut self.machine,
            Field::Ports => &mut self.ports,
            Field::Source => &mut self.source,
            Field::Duration => &mut self.duration,
        };
        if slot.is_none() {
            *slot = Some(message.into());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.machine.is_none() && self.ports.is_none() && self.source.is_none() && self.duration.is_none()
    }
}

/// One machine named in the request, as far as the caller may know it.
pub enum MachineState<'a> {
    /// The caller may open its ports.
    Requestable(&'a VmJitStatus),
    /// Visible, but JIT is not configured on it; `may_configure` offers to enable it.
    NotConfigured { status: &'a VmJitStatus, may_configure: bool },
    /// Visible, but the caller may not request access to it.
    Forbidden(&'a VmJitStatus),
    /// Absent, or not visible to the caller (the two are not told apart): named only as it was given.
    NotVisible(&'a str),
}

pub struct MachineInput<'a> {
    pub state: MachineState<'a>,
    /// What was posted; `None` for a fresh form.
    pub choice: Option<Choice>,
    pub errors: FieldErrors,
}

pub struct PortChoice {
    pub number: u16,
    pub protocol: String,
    /// The port's maximum, in words.
    pub max: String,
    pub checked: bool,
}

pub struct DurationChoice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// One machine's part of the page: its fields if it may be requested, else why not.
pub struct MachineSection {
    /// Its position in the form, which names its fields (`port.0`, `m0-range`).
    pub index: usize,
    pub vm_id: String,
    pub name: String,
    pub href: String,
    /// Resource group, location, address.
    pub detail: String,
    /// Why it cannot be requested; `None` if it can.
    pub note: Option<String>,
    /// Where to enable JIT on it, when it is not configured and the caller may.
    pub enable_href: Option<String>,
    pub ports: Vec<PortChoice>,
    pub my_ip: String,
    pub range_chosen: bool,
    pub range: String,
    pub durations: Vec<DurationChoice>,
    pub errors: FieldErrors,
}

/// The form: the machines that may be requested, and the justification.
pub struct RequestForm {
    pub csrf: String,
    pub machines: Vec<MachineSection>,
    pub justification: String,
    pub justification_error: Option<String>,
    pub max_justification: usize,
}

/// A link from the error summary to the field it concerns.
pub struct ErrorLink {
    pub href: String,
    pub text: String,
}

pub struct OpenedPort {
    pub number: u16,
    pub protocol: String,
    pub sources: String,
    pub end: GrantEnd,
    /// What to type: `ssh 10.0.0.4`, or `address:mappedPort` on the gateway.
    pub connect: String,
    /// "through gateway gw1, firewall" for a port reached through a gateway; `None`: directly.
    pub through: Option<String>,
}

/// What one machine's part of a granted request opened.
pub struct OpenedMachine {
    pub name: String,
    pub href: String,
    pub ports: Vec<OpenedPort>,
}

#[derive(Template)]
#[template(path = "request.html")]
pub struct RequestPage {
    pub user: String,
    pub csrf: String,
    /// Machines named that cannot be requested, each with why.
    pub refused: Vec<MachineSection>,
    pub form: Option<RequestForm>,
    /// Why the request was refused as a whole (with the server's error code), if it was.
    pub problem: Option<String>,
    pub summary: Vec<ErrorLink>,
    pub opened: Vec<OpenedMachine>,
    pub justification: String,
}

/// A duration in words: "3 hours", "1 hour 30 minutes", "45 minutes".
fn in_words(seconds: i64) -> String {
    let plural = |n: i64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(plural(days, "day"));
    }
    if hours > 0 {
        parts.push(plural(hours, "hour"));
    }
    if minutes > 0 || parts.is_empty() {
        parts.push(plural(minutes, "minute"));
    }
    parts.join(" ")
}

fn detail(s: &VmJitStatus) -> String {
    let mut text = format!("resource group {} · {} · {}", s.vm.id.resource_group, s.vm.location, address(&s.vm));
    if let Some(marker) = firewall_marker(s) {
        text.push_str(&format!(" · {marker} (reached through the gateway)"));
    }
    text
}

/// A machine's part of the form: every configured port (checked as chosen; a fresh form checks a lone
/// port, never several, so nothing opens that was not picked), "My IP" or the range, and the time
/// windows up to its ports' longest maximum (a fresh form picks the longest every port allows).
pub(crate) fn machine_section(index: usize, s: &VmJitStatus, choice: Option<&Choice>, errors: FieldErrors, my_ip: &str) -> MachineSection {
    let maxima: Vec<i64> = s.ports.iter().map(|p| p.max_duration.whole_seconds()).collect();
    let longest = maxima.iter().copied().max().unwrap_or(0);
    let shortest = maxima.iter().copied().min().unwrap_or(0);
    let offered = durations_up_to(longest);
    let fresh_duration = offered
        .iter()
        .rev()
        .find(|(value, _)| value.parse::<ajar_domain::AccessDuration>().is_ok_and(|d| d.whole_seconds() <= shortest))
        .or(offered.first())
        .map(|(value, _)| value.clone())
        .unwrap_or_default();
    let duration = choice.map(|c| c.duration.clone()).unwrap_or(fresh_duration);
    MachineSection {
        index,
        vm_id: s.vm.id.to_string(),
        name: s.vm.id.name.to_string(),
        href: vm_href(&s.vm.id.to_string()),
        detail: detail(s),
        note: None,
        enable_href: None,
        ports: s
            .ports
            .iter()
            .map(|p| PortChoice {
                number: p.number,
                protocol: p.protocol.to_string(),
                max: in_words(p.max_duration.whole_seconds()),
                checked: match choice {
                    Some(c) => c.ports.contains(&p.number),
                    None => s.ports.len() == 1,
                },
            })
            .collect(),
        my_ip: my_ip.to_owned(),
        range_chosen: choice.is_some_and(|c| c.range_chosen),
        range: choice.map(|c| c.range.clone()).unwrap_or_default(),
        durations: offered.into_iter().map(|(value, label)| DurationChoice { selected: value == duration, value, label }).collect(),
        errors,
    }
}

fn refused_section(index: usize, state: &MachineState<'_>, errors: FieldErrors) -> MachineSection {
    let seen = |s: &VmJitStatus| (s.vm.id.to_string(), s.vm.id.name.to_string(), vm_href(&s.vm.id.to_string()), detail(s));
    let ((vm_id, name, href, detail), note, enable_href) = match state {
        // Named only as it was given: no link, no details.
        MachineState::NotVisible(given) => {
            (((*given).to_owned(), (*given).to_owned(), String::new(), String::new()), "There is no such machine that you may see.", None)
        }
        MachineState::Forbidden(s) => {
            (seen(s), "You may not request access to this machine (your roles do not include the JIT initiate action on it).", None)
        }
        MachineState::NotConfigured { status, may_configure } => (
            seen(status),
            "JIT is not configured on this machine: its ports are not managed, so there is nothing to request.",
            may_configure.then(|| configure_href(&[status.vm.id.to_string()])),
        ),
        MachineState::Requestable(s) => (seen(s), "", None),
    };
    MachineSection {
        index,
        vm_id,
        name,
        href,
        detail,
        note: Some(note.to_owned()),
        enable_href,
        ports: Vec::new(),
        my_ip: String::new(),
        range_chosen: false,
        range: String::new(),
        durations: Vec::new(),
        errors,
    }
}

/// The summary's links to each field that has an error, in page order.
fn summary(form: Option<&RequestForm>, refused: &[MachineSection]) -> Vec<ErrorLink> {
    let mut links = Vec::new();
    let mut link = |href: String, name: &str, message: &Option<String>| {
        if let Some(m) = message {
            links.push(ErrorLink { href, text: if name.is_empty() { m.clone() } else { format!("{name}: {m}") } });
        }
    };
    for m in refused {
        link(format!("#refused-{}", m.index), &m.name, &m.errors.machine);
    }
    if let Some(form) = form {
        for m in &form.machines {
            let i = m.index;
            link(format!("#m{i}"), &m.name, &m.errors.machine);
            link(format!("#m{i}-ports"), &m.name, &m.errors.ports);
            link(format!("#m{i}-{}", if m.range_chosen { "range" } else { "myip" }), &m.name, &m.errors.source);
            link(format!("#m{i}-duration"), &m.name, &m.errors.duration);
        }
        link("#justification".to_owned(), "", &form.justification_error);
    }
    links
}

/// The form for one machine alone, as a machine's page offers it ("Connect").
pub(crate) fn single_machine_form(s: &VmJitStatus, csrf: &str, my_ip: &str) -> RequestForm {
    RequestForm {
        csrf: csrf.to_owned(),
        machines: vec![machine_section(0, s, None, FieldErrors::default(), my_ip)],
        justification: String::new(),
        justification_error: None,
        max_justification: MAX_JUSTIFICATION,
    }
}

/// Everything the request page shows, but the page's own chrome.
pub struct RequestPageInput<'a> {
    pub user: &'a str,
    pub csrf: &'a str,
    pub my_ip: &'a str,
    pub machines: Vec<MachineInput<'a>>,
    pub justification: &'a str,
    pub justification_error: Option<String>,
    pub problem: Option<String>,
    /// What was opened, when the request (or a part of it) was granted.
    pub opened: Vec<OpenedMachine>,
}

/// The request page: the form (again, with the user's choices and errors, if it was refused), the
/// machines that cannot be requested, and what was opened.
pub fn request_page(input: RequestPageInput<'_>) -> Result<String, RenderError> {
    let mut refused = Vec::new();
    let mut sections = Vec::new();
    let granted = !input.opened.is_empty();
    for m in input.machines {
        match &m.state {
            MachineState::Requestable(s) => sections.push(machine_section(sections.len(), s, m.choice.as_ref(), m.errors, input.my_ip)),
            other => refused.push(refused_section(refused.len(), other, m.errors)),
        }
    }
    // Once granted, the page shows the result, not a form to send again.
    let form = (!granted && !sections.is_empty()).then(|| RequestForm {
        csrf: input.csrf.to_owned(),
        machines: sections,
        justification: input.justification.to_owned(),
        justification_error: input.justification_error,
        max_justification: MAX_JUSTIFICATION,
    });
    let summary = summary(form.as_ref(), &refused);
    let page = RequestPage {
        user: input.user.to_owned(),
        csrf: input.csrf.to_owned(),
        refused,
        form,
        problem: input.problem,
        summary,
        opened: input.opened,
        justification: input.justification.to_owned(),
    };
    Ok(page.render()?)
}

/// What a granted request opened on one machine: each port, from where, until when, and how to connect,
/// as `status` (the machine as read for the request; `None` if it could not be) tells: to the machine's
/// address, or, for a port mapped on its gateway, to the gateway's address on the mapped port.
pub fn opened_machine(granted: &RequestVm, status: Option<&VmJitStatus>, now: OffsetDateTime) -> OpenedMachine {
    let address =
        status.and_then(|s| s.vm.private_addresses.first()).map(ToString::to_string).unwrap_or_else(|| granted.vm.name.to_string());
    let gateway = status.and_then(|s| s.gateway.as_ref()).map(|g| &g.gateway);
    OpenedMachine {
        name: granted.vm.name.to_string(),
        href: vm_href(&granted.vm.to_string()),
        ports: granted
            .grants
            .iter()
            .map(|g| {
                let (connect, through) = match (g.mapped_port, gateway) {
                    (Some(mapped), Some(gw)) => (
                        gw.connect_to(g.sources.prefixes(), mapped).unwrap_or_else(|| format!("mapped port {mapped}")),
                        Some(format!("through gateway {}, firewall", gw.name)),
                    ),
                    // Put behind a gateway after it was read: the mapped port is known, the gateway not.
                    (Some(mapped), None) => (format!("mapped port {mapped}"), Some("through the machine's gateway, firewall".to_owned())),
                    (None, _) => (connect_hint(&address, g.number), None),
                };
                OpenedPort {
                    number: g.number,
                    protocol: g.protocol.to_string(),
                    sources: sources_text(&g.sources),
                    end: GrantEnd::new(g.end, now),
                    connect,
                    through,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_the_fields_they_concern() {
        use ajar_domain::initiate::{port_target, vm_target};
        use ajar_domain::problem::Field as F;
        let cases = [
            (Target::of(F::Justification), Some(TargetField::Justification)),
            (vm_target(0).field(F::Id), Some(TargetField::Machine(Field::Machine))),
            (vm_target(2), Some(TargetField::Machine(Field::Machine))),
            (vm_target(1).field(F::Ports), Some(TargetField::Machine(Field::Ports))),
            (port_target(1, 3).field(F::Number), Some(TargetField::Machine(Field::Ports))),
            (port_target(1, 0).field(F::Duration), Some(TargetField::Machine(Field::Duration))),
            (port_target(0, 0).field(F::EndTimeUtc), Some(TargetField::Machine(Field::Duration))),
            (port_target(4, 1).field(F::AllowedSourceAddressPrefix), Some(TargetField::Machine(Field::Source))),
            (port_target(4, 1).field(F::AllowedSourceAddressPrefixes), Some(TargetField::Machine(Field::Source))),
            (Target::of(F::VirtualMachines), None),
            (ajar_domain::policy::vm_target(0), None),
        ];
        for (target, expected) in cases {
            assert_eq!(field_of_target(&target), expected, "{target}");
        }
    }

    #[test]
    fn durations_in_words() {
        for (seconds, words) in [(0, "0 minutes"), (300, "5 minutes"), (3600, "1 hour"), (5400, "1 hour 30 minutes"), (86_400, "1 day")] {
            assert_eq!(in_words(seconds), words);
        }
    }

    #[test]
    fn grant_ends_for_countdowns() {
        let now = time::macros::datetime!(2026-03-01 13:00 UTC);
        let today = GrantEnd::new(time::macros::datetime!(2026-03-01 14:05:07.25 UTC), now);
        assert_eq!((today.attr.as_str(), today.until.as_str()), ("2026-03-01T14:05:07.250Z", "until 14:05 UTC"));
        assert_eq!(today.full, "2026-03-01 14:05:07 UTC");
        // Another day names it; another offset is shown in UTC.
        let tomorrow = GrantEnd::new(time::macros::datetime!(2026-03-02 01:30 +02:00), now);
        assert_eq!((tomorrow.attr.as_str(), tomorrow.until.as_str()), ("2026-03-01T23:30:00.000Z", "until 23:30 UTC"));
        let later = GrantEnd::new(time::macros::datetime!(2026-03-02 00:10 UTC), now);
        assert_eq!(later.until, "until 2026-03-02 00:10 UTC");
    }

    #[test]
    fn first_error_per_field_is_kept() {
        let mut e = FieldErrors::default();
        assert!(e.is_empty());
        e.set(Field::Duration, "first");
        e.set(Field::Duration, "second");
        assert_eq!(e.duration.as_deref(), Some("first"));
        assert!(!e.is_empty());
    }
}
