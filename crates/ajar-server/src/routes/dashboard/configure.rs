//! "Enable JIT", "Edit JIT configuration" and "Remove JIT". The form only gathers port rules; saving goes
//! through the functions behind the API's enable, PUT and DELETE of a policy, with their authorization,
//! validation, limits and activity record.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use time::OffsetDateTime;

use ajar_api::ajar_v1::EnableRequest;
use ajar_api::jit::{PortRuleIn, port_rule_in};
use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::actions;
use ajar_domain::plans::Precondition;
use ajar_domain::policy::{Policy, PortRule, VmPolicy};
use ajar_domain::problem::{Field, Step};
use ajar_domain::status::{JitState, VmJitStatus};
use ajar_domain::{PolicyName, Problem, VmId};
use ajar_store::PolicyView;
use ajar_web::{ConfigurePage, DonePage, MachineView, Mode, Note, RemovePage, RuleField, RuleRow};

use super::vm_page::{visible, visible_or_not_found, vm_param};
use super::{FormFields, PostedForm, SignedIn, html, message, rendered};
use crate::auth::Caller;
use crate::http::{HttpError, HttpResult, Query};
use crate::routes::AppState;
use crate::routes::ajar_v1::{authorize_enable, enable_vms};
use crate::routes::jit::{authorize_policy_write, remove_policy, write_policy};
use crate::sessions::Session;

/// The policy JIT is enabled in, in each machine's resource group and location: the one the API's enable
/// uses when it names none.
const DEFAULT_POLICY: &str = "default";

const MAY_NOT_ENABLE: &str = "you may not enable JIT on it: that needs JIT policy write and virtual machine write on the machine.";
const MAY_NOT_EDIT: &str =
    "you may not change its JIT configuration: that needs JIT policy write on its policy and virtual machine write on every machine of it.";

const MAY_NOT_REMOVE: &str =
    "that needs JIT policy write (delete, for its last machine) on its policy and virtual machine write on every machine of it.";

/// The form's error when fields are wrong (each says why next to it).
const FIELDS_WRONG: &str = "Some fields need correcting (marked below); nothing was changed.";

/// What the caller may do to one machine's JIT configuration: what the API's enable, PUT and DELETE of
/// its policy would let it do, checked without a record, to decide what to offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Rights {
    /// Enable JIT on it (not configured), or edit its configuration (configured).
    pub(super) configure: bool,
    /// Remove JIT from it.
    pub(super) remove: bool,
}

/// The caller's rights over the machine's configuration, and the machine's policy as stored, if any.
pub(super) async fn rights(state: &AppState, caller: &Caller, status: &VmJitStatus) -> HttpResult<(Rights, Option<PolicyView>)> {
    match (&status.state, &status.policy) {
        (JitState::Configured, Some(id)) => {
            let Some(view) = state.store.get_policy(id).await? else { return Ok((Rights::default(), None)) };
            Ok((policy_rights(state, caller, &view.policy).await?, Some(view)))
        }
        (JitState::NotConfigured, _) => Ok((Rights { configure: may_enable(state, caller, &status.vm.id).await?, remove: false }, None)),
        _ => Ok((Rights::default(), None)),
    }
}

/// The caller's rights over a machine of `policy`: a write of the policy touches every machine in it (see
/// `jit::authorize_policy_write`), and the last machine leaves by deleting the policy.
async fn policy_rights(state: &AppState, caller: &Caller, policy: &Policy) -> HttpResult<Rights> {
    let mut machines = true;
    for vm in &policy.vms {
        machines = machines && state.may(caller, actions::VM_WRITE, &AccessScope::from(&vm.vm)).await?;
    }
    let policy_scope = AccessScope::from(&policy.id);
    let write = machines && state.may(caller, actions::JIT_WRITE, &policy_scope).await?;
    let remove = if policy.vms.len() > 1 { write } else { machines && state.may(caller, actions::JIT_DELETE, &policy_scope).await? };
    Ok(Rights { configure: write, remove })
}

/// Whether the caller may enable JIT on the machine: JIT policy write and virtual machine write on it.
pub(super) async fn may_enable(state: &AppState, caller: &Caller, vm: &VmId) -> HttpResult<bool> {
    let scope = AccessScope::from(vm);
    Ok(state.may(caller, actions::JIT_WRITE, &scope).await? && state.may(caller, actions::VM_WRITE, &scope).await?)
}

/// Why a selected machine is not on the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// No such machine that the caller may see.
    NotFound,
    /// The caller may not configure it.
    Forbidden,
    /// Unsupported, or configured in a selection of several.
    Other,
}

/// What the form does with one selected machine.
enum Selected {
    Enable(VmJitStatus),
    /// Configured, and the caller may edit it: its policy, and whether the caller may also remove it.
    Edit(VmJitStatus, Box<PolicyView>, bool),
    Skipped(Note, Skip),
}

/// The selected machines as they are now, each once.
async fn select(state: &AppState, caller: &Caller, raw_ids: &[String]) -> HttpResult<Vec<Selected>> {
    let mut seen = HashSet::new();
    let mut selected = Vec::new();
    for raw in raw_ids {
        let skip =
            |text: &str, why: Skip| Selected::Skipped(Note { name: raw.clone(), href: None, text: text.to_owned(), link: None }, why);
        let Some(vm) = vm_param(raw) else {
            selected.push(skip("this is not a virtual machine's ID.", Skip::NotFound));
            continue;
        };
        if !seen.insert(vm.key()) {
            continue;
        }
        let Some(status) = visible(state, caller, &vm).await? else {
            selected.push(skip("there is no such machine that you may see.", Skip::NotFound));
            continue;
        };
        let note = |text: String, link: Option<(String, String)>| Note {
            name: status.vm.id.name.to_string(),
            href: Some(ajar_web::vm_href(&status.vm.id.to_string())),
            text,
            link,
        };
        let (rights, view) = rights(state, caller, &status).await?;
        selected.push(match (&status.state, view) {
            (JitState::Unsupported(reason), _) => {
                Selected::Skipped(note(format!("JIT cannot be enabled: {}.", reason.description()), None), Skip::Other)
            }
            (JitState::Configured, Some(view)) if rights.configure => Selected::Edit(status, Box::new(view), rights.remove),
            (JitState::Configured, _) => Selected::Skipped(note(MAY_NOT_EDIT.to_owned(), None), Skip::Forbidden),
            (JitState::NotConfigured, _) if rights.configure => Selected::Enable(status),
            (JitState::NotConfigured, _) => Selected::Skipped(note(MAY_NOT_ENABLE.to_owned(), None), Skip::Forbidden),
        });
    }
    Ok(selected)
}

/// What the form shows for a selection: one configured machine is edited on its own; otherwise the Not
/// configured machines are enabled together and every other machine gets a note saying why not.
struct Plan {
    mode: Mode,
    machines: Vec<VmJitStatus>,
    /// In edit mode: the machine's policy as stored, and whether the caller may remove JIT from it.
    edit: Option<(PolicyView, bool)>,
    notes: Vec<Note>,
    skipped: Vec<Skip>,
    /// In edit mode: the version of the policy the form edits (saving is refused if it changed since).
    etag: Option<String>,
}

impl Plan {
    /// A form for exactly these machines, with no notes.
    fn only(mode: Mode, machines: Vec<VmJitStatus>, edit: Option<(PolicyView, bool)>) -> Plan {
        let etag = edit.as_ref().map(|(view, _)| view.etag.clone());
        Plan { mode, machines, edit, notes: Vec::new(), skipped: Vec::new(), etag }
    }

    /// The same form, editing the version the user opened it on rather than the one stored now.
    fn opened_on(mut self, etag: Option<String>) -> Plan {
        if self.mode == Mode::Edit && etag.is_some() {
            self.etag = etag;
        }
        self
    }

    fn of(mut selected: Vec<Selected>) -> Plan {
        if let [Selected::Edit(..)] = selected.as_slice()
            && let Some(Selected::Edit(status, view, can_remove)) = selected.pop()
        {
            return Plan::only(Mode::Edit, vec![status], Some((*view, can_remove)));
        }
        let mut plan = Plan::only(Mode::Enable, Vec::new(), None);
        for s in selected {
            match s {
                Selected::Enable(status) => plan.machines.push(status),
                Selected::Edit(status, ..) => {
                    let id = status.vm.id.to_string();
                    plan.notes.push(Note {
                        name: status.vm.id.name.to_string(),
                        href: Some(ajar_web::vm_href(&id)),
                        text: "JIT is already configured on it.".to_owned(),
                        link: Some(("Edit its configuration".to_owned(), ajar_web::configure_href(&[id]))),
                    });
                    plan.skipped.push(Skip::Other);
                }
                Selected::Skipped(note, why) => {
                    plan.notes.push(note);
                    plan.skipped.push(why);
                }
            }
        }
        plan
    }

    /// The form's rows before anything is typed: the machine's ports, or the recommended ones.
    fn initial_rows(&self) -> Vec<RuleRow> {
        match (&self.edit, self.machines.first()) {
            (Some((view, _)), Some(status)) => {
                view.policy.vm(&status.vm.id).map(|v| v.ports.iter().map(RuleRow::from_rule).collect()).unwrap_or_default()
            }
            _ => RuleRow::recommended(),
        }
    }

    /// 200 with a form; without one, 403 if the caller may not configure some machine, 404 if some
    /// machine is not there for it, else 200 (the notes say why).
    fn status(&self) -> StatusCode {
        if !self.machines.is_empty() {
            StatusCode::OK
        } else if self.skipped.contains(&Skip::Forbidden) {
            StatusCode::FORBIDDEN
        } else if self.skipped.contains(&Skip::NotFound) {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        }
    }
}

/// The signed-in caller at the form, and the server's limits: what every answer of the form needs.
struct Ctx<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    session: &'a Session,
}

impl Ctx<'_> {
    /// The form for `plan` with `rows`, and `error` above it.
    fn form(&self, status: StatusCode, plan: Plan, rows: Vec<RuleRow>, error: Option<String>) -> HttpResult<Response> {
        let limits = &self.state.limits;
        let page = ConfigurePage {
            user: self.caller.principal.name.clone(),
            csrf: self.session.csrf.clone(),
            mode: plan.mode,
            machines: plan.machines.iter().map(|s| MachineView::of(&s.vm)).collect(),
            notes: plan.notes,
            rows,
            error,
            limits: format!("{} to {}", limits.min_max_duration, limits.max_max_duration),
            can_remove: plan.edit.as_ref().is_some_and(|(_, can_remove)| *can_remove),
            etag: plan.etag,
        };
        Ok(html(status, rendered(page.render_page())?, Vec::new()))
    }

    /// What a save or a removal did.
    fn done(&self, title: String, lines: Vec<(MachineView, Vec<String>)>, note: Option<String>) -> HttpResult<Response> {
        let page = DonePage { user: self.caller.principal.name.clone(), csrf: self.session.csrf.clone(), title, lines, note };
        Ok(html(StatusCode::OK, rendered(page.render_page())?, Vec::new()))
    }

    /// A refusal from the store (a rule, a limit, the machine configured meanwhile): on the form, as
    /// typed, next to the field it concerns (rule `j` of the refusal came from row `kept[j]`).
    fn failed(&self, plan: Plan, mut rows: Vec<RuleRow>, kept: &[usize], HttpError(e): HttpError) -> HttpResult<Response> {
        if e.status == 403 {
            return refused(HttpError(e));
        }
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        let placed = e.cause.as_ref().is_some_and(|problem| place_problem(&mut rows, kept, problem));
        let error = if placed { FIELDS_WRONG.to_owned() } else { format!("{}: {} Nothing was changed.", e.body.code, e.body.message) };
        self.form(status, plan, rows, Some(error))
    }
}

/// `GET /ui/configure?vm=ID&vm=ID…`: the form.
pub(in crate::routes) async fn configure(
    State(state): State<AppState>,
    SignedIn { caller, session }: SignedIn,
    query: Query,
) -> HttpResult<Response> {
    let ids = FormFields::from(query).all("vm");
    if ids.is_empty() {
        return no_machines();
    }
    let plan = Plan::of(select(&state, &caller, &ids).await?);
    let (status, rows) = (plan.status(), plan.initial_rows());
    Ctx { state: &state, caller: &caller, session: &session }.form(status, plan, rows, None)
}

fn no_machines() -> HttpResult<Response> {
    message(
        StatusCode::BAD_REQUEST,
        "No machines chosen",
        "Choose machines on the Not configured tab of Just-in-time VM access, or open a machine's page.",
    )
}

/// `POST /ui/configure`: "Add a port" shows the form again with one more row; "Save" applies it.
pub(in crate::routes) async fn configure_post(
    State(state): State<AppState>,
    PostedForm { caller, session, fields }: PostedForm,
) -> HttpResult<Response> {
    let ids = fields.all("vm");
    if ids.is_empty() {
        return no_machines();
    }
    let (Some(mode), Some(mut rows)) = (Mode::parse(&fields.get("mode")), rows_from_form(&fields)) else {
        return message(StatusCode::BAD_REQUEST, "Incomplete form", "The form was not sent whole; open it again.");
    };
    let ctx = Ctx { state: &state, caller: &caller, session: &session };
    let opened_on = Some(fields.get("etag")).filter(|e| !e.is_empty());
    if fields.get("action") == "add" {
        rows.push(RuleRow::blank());
        let plan = Plan::of(select(&state, &caller, &ids).await?).opened_on(opened_on);
        return ctx.form(plan.status(), plan, rows, None);
    }
    let mut statuses = Vec::with_capacity(ids.len());
    for raw in &ids {
        let Some(vm) = vm_param(raw) else {
            return message(StatusCode::BAD_REQUEST, "Not a machine", "The form names something that is not a virtual machine.");
        };
        match visible_or_not_found(&state, &caller, &vm).await? {
            Ok(status) if !statuses.iter().any(|s: &VmJitStatus| s.vm.id == vm) => statuses.push(status),
            Ok(_) => {}
            Err(not_found) => return Ok(not_found),
        }
    }
    match mode {
        Mode::Enable => save_enable(&ctx, statuses, rows).await,
        Mode::Edit => save_edit(&ctx, statuses, rows, opened_on).await,
    }
}

/// Enables JIT on every machine of the form at once, as the API's enable does: all or none.
async fn save_enable(ctx: &Ctx<'_>, statuses: Vec<VmJitStatus>, mut rows: Vec<RuleRow>) -> HttpResult<Response> {
    let (state, caller) = (ctx.state, ctx.caller);
    let vms: Vec<VmId> = statuses.iter().map(|s| s.vm.id.clone()).collect();
    // Refused as the API refuses, with its record, before anything typed is looked at.
    if let Err(e) = authorize_enable(state, caller, &vms).await {
        return refused(e);
    }
    let not_ready: Vec<String> = statuses
        .iter()
        .filter_map(|s| match s.state {
            JitState::NotConfigured => None,
            JitState::Configured => Some(format!("JIT is already configured on {}", s.vm.id.name)),
            JitState::Unsupported(reason) => Some(format!("JIT cannot be enabled on {}: {}", s.vm.id.name, reason.description())),
        })
        .collect();
    let plan = Plan::only(Mode::Enable, statuses, None);
    if !not_ready.is_empty() {
        let error = format!("{}. Nothing was changed; choose the machines again on Just-in-time VM access.", not_ready.join("; "));
        return ctx.form(StatusCode::CONFLICT, plan, rows, Some(error));
    }
    let Some((rules, kept)) = rules_from_rows(&mut rows) else {
        return ctx.form(StatusCode::BAD_REQUEST, plan, rows, Some(FIELDS_WRONG.to_owned()));
    };
    if rules.is_empty() {
        let error = "Keep at least one port.".to_owned();
        return ctx.form(StatusCode::BAD_REQUEST, plan, rows, Some(error));
    }
    let policy_name: PolicyName = match DEFAULT_POLICY.parse() {
        Ok(name) => name,
        Err(e) => {
            tracing::error!(error = %e, "the default policy name does not parse");
            return Err(HttpError(ajar_api::ApiError::internal()));
        }
    };
    let request = EnableRequest { vms, policy_name, ports: Some(rules) };
    match enable_vms(state, caller, request).await {
        Ok(views) => {
            let lines = plan
                .machines
                .iter()
                .map(|s| {
                    let rules = views.iter().find_map(|v| v.policy.vm(&s.vm.id)).map(|v| describe_rules(&v.ports)).unwrap_or_default();
                    (MachineView::of(&s.vm), rules)
                })
                .collect::<Vec<_>>();
            let title = match lines.as_slice() {
                [(m, _)] => format!("JIT enabled on {}", m.name),
                many => format!("JIT enabled on {} machines", many.len()),
            };
            ctx.done(title, lines, Some("Their ports stay closed until someone requests access.".to_owned()))
        }
        Err(e) => ctx.failed(plan, rows, &kept, e),
    }
}

/// Replaces one machine's ports in its policy, as the API's PUT of the policy does, leaving the other
/// machines of the policy as they are.
async fn save_edit(ctx: &Ctx<'_>, statuses: Vec<VmJitStatus>, mut rows: Vec<RuleRow>, opened_on: Option<String>) -> HttpResult<Response> {
    let (state, caller) = (ctx.state, ctx.caller);
    let [status] = statuses.as_slice() else {
        return message(StatusCode::BAD_REQUEST, "One machine at a time", "A JIT configuration is edited one machine at a time.");
    };
    let view = match &status.policy {
        Some(id) => state.store.get_policy(id).await?,
        None => None,
    };
    let Some(view) = view.filter(|v| v.policy.vm(&status.vm.id).is_some()) else {
        return message(
            StatusCode::CONFLICT,
            "Not configured",
            &format!("JIT is no longer configured on {}; nothing was changed. Enable it from its page.", status.vm.id.name),
        );
    };
    // Refused as the API refuses, with its record, before anything typed is looked at.
    if let Err(e) = authorize_policy_write(state, caller, &view.policy, Some(&view)).await {
        return refused(e);
    }
    // The policy just read (so the machine is configured) decides the rights; no second read.
    let can_remove = policy_rights(state, caller, &view.policy).await?.remove;
    let plan = Plan::only(Mode::Edit, statuses.clone(), Some((view.clone(), can_remove))).opened_on(opened_on.clone());
    let Some((rules, kept)) = rules_from_rows(&mut rows) else {
        return ctx.form(StatusCode::BAD_REQUEST, plan, rows, Some(FIELDS_WRONG.to_owned()));
    };
    if rules.is_empty() {
        let error = "Keep at least one port. To stop guarding this machine, use Remove JIT.".to_owned();
        return ctx.form(StatusCode::BAD_REQUEST, plan, rows, Some(error));
    }
    let mut policy = view.policy.clone();
    for v in policy.vms.iter_mut().filter(|v| v.vm == status.vm.id) {
        v.ports = rules.clone();
    }
    // Saved only over the version the form was opened on: an edit made meanwhile is not overwritten.
    let expected = opened_on.map(|etag| Precondition::OneOf(vec![etag]));
    match write_policy(state, caller, policy, expected).await {
        Ok(_) => {
            let ended = ended_grants(state, status).await?;
            let note = (ended > 0).then(|| format!("{ended} open grant(s) that the new configuration no longer allows were ended."));
            let lines = vec![(MachineView::of(&status.vm), describe_rules(&rules))];
            ctx.done(format!("JIT configuration of {} saved", status.vm.id.name), lines, note)
        }
        Err(HttpError(e)) if e.status == 412 => {
            // Someone saved this policy after the form was opened: show what it holds now.
            let current = Plan::only(Mode::Edit, statuses.clone(), Some((view, can_remove)));
            let rows = current.initial_rows();
            let error = format!(
                "The JIT configuration of {} was changed by someone else after you opened this form; nothing was saved. \
                 This is what it holds now: make your change again and save.",
                status.vm.id.name
            );
            ctx.form(StatusCode::PRECONDITION_FAILED, current, rows, Some(error))
        }
        Err(e) => ctx.failed(plan, rows, &kept, e),
    }
}

/// How many of the grants open on the machine before a write are no longer open.
async fn ended_grants(state: &AppState, before: &VmJitStatus) -> HttpResult<usize> {
    let now = state.store.vm_status(&before.vm.id).await?;
    let still: Vec<_> = now.map(|s| s.live).unwrap_or_default();
    Ok(before.live.iter().filter(|g| !still.contains(g)).count())
}

/// `POST /ui/configure/remove`: without `confirm=yes`, asks first; with it, removes the machine from its
/// policy (deleting the policy with its last machine), as the API's PUT or DELETE of the policy does.
pub(in crate::routes) async fn remove(
    State(state): State<AppState>,
    PostedForm { caller, session, fields }: PostedForm,
) -> HttpResult<Response> {
    let Some(vm) = vm_param(&fields.get("vm")) else {
        return message(StatusCode::BAD_REQUEST, "Not a machine", "The form names no virtual machine.");
    };
    let status = match visible_or_not_found(&state, &caller, &vm).await? {
        Ok(status) => status,
        Err(not_found) => return Ok(not_found),
    };
    let (rights, view) = rights(&state, &caller, &status).await?;
    let Some(view) = view.filter(|v| v.policy.vm(&vm).is_some()) else {
        return message(StatusCode::CONFLICT, "Not configured", &format!("JIT is not configured on {}; nothing was changed.", vm.name));
    };
    let others: Vec<VmPolicy> = view.policy.vms.iter().filter(|v| v.vm != vm).cloned().collect();
    if fields.get("confirm") != "yes" {
        // Asking changes nothing; the removal itself is refused (and recorded) as the API refuses it.
        if !rights.remove {
            return message(StatusCode::FORBIDDEN, "Refused", &format!("You may not remove JIT from {}: {MAY_NOT_REMOVE}", vm.name));
        }
        let page =
            RemovePage::from_status(&status, &caller.principal.name, &session.csrf, others.len(), &view.etag, OffsetDateTime::now_utc());
        return Ok(html(StatusCode::OK, rendered(page.render_page())?, Vec::new()));
    }
    // Removed only from the version the confirmation showed.
    let expected = Some(fields.get("etag")).filter(|e| !e.is_empty()).map(|etag| Precondition::OneOf(vec![etag]));
    let removed = if others.is_empty() {
        remove_policy(&state, &caller, &view.policy.id, expected).await.map(|_| ())
    } else {
        write_policy(&state, &caller, Policy { vms: others, ..view.policy.clone() }, expected).await.map(|_| ())
    };
    match removed {
        Err(HttpError(e)) if e.status == 412 => {
            let text = format!(
                "The JIT configuration of {} was changed by someone else after you asked to remove it; nothing was changed. Open its page to see what it holds now.",
                vm.name
            );
            return message(StatusCode::PRECONDITION_FAILED, "Changed meanwhile", &text);
        }
        Err(e) => return refused(e),
        Ok(()) => {}
    }
    let ended = ended_grants(&state, &status).await?;
    let text = format!(
        "ajar no longer guards its ports{}.",
        if ended > 0 { format!("; {ended} open grant(s) on it were ended") } else { String::new() }
    );
    let ctx = Ctx { state: &state, caller: &caller, session: &session };
    ctx.done(format!("JIT removed from {}", vm.name), vec![(MachineView::of(&status.vm), vec![text])], None)
}

/// What the shared code refused, on a page of its own: an authorization failure, a machine gone.
fn refused(HttpError(e): HttpError) -> HttpResult<Response> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    message(status, "Refused", &format!("{}: {}", e.body.code, e.body.message))
}

fn describe_rules(rules: &[PortRule]) -> Vec<String> {
    rules.iter().map(ajar_web::describe_rule).collect()
}

/// The rows as posted: the fields come in the order of the rows, a row's "Keep" box carries its index.
fn rows_from_form(fields: &FormFields) -> Option<Vec<RuleRow>> {
    let (numbers, protocols, sources, maxes) = (fields.all("number"), fields.all("protocol"), fields.all("sources"), fields.all("max"));
    let n = numbers.len();
    if protocols.len() != n || sources.len() != n || maxes.len() != n {
        return None;
    }
    let keep: HashSet<usize> = fields.all("keep").iter().filter_map(|k| k.parse().ok()).collect();
    let rows = numbers
        .into_iter()
        .zip(protocols)
        .zip(sources)
        .zip(maxes)
        .enumerate()
        .map(|(i, (((number, protocol), sources), max))| RuleRow {
            keep: keep.contains(&i),
            number,
            protocol,
            sources,
            max,
            ..RuleRow::default()
        })
        .collect();
    Some(rows)
}

/// The kept rows as port rules, each parsed as the API parses a port rule, with the index of the row each
/// came from; `None` when a field is wrong (its error is then set next to it).
fn rules_from_rows(rows: &mut [RuleRow]) -> Option<(Vec<PortRule>, Vec<usize>)> {
    let mut rules = Vec::new();
    let mut kept = Vec::new();
    for (i, row) in rows.iter_mut().enumerate().filter(|(_, r)| r.keep) {
        match rule_from_row(row) {
            Ok(rule) => {
                rules.push(rule);
                kept.push(i);
            }
            Err((field, message)) => row.set_error(field, message),
        }
    }
    (!rows.iter().any(RuleRow::has_error)).then_some((rules, kept))
}

fn rule_from_row(row: &RuleRow) -> Result<PortRule, (RuleField, String)> {
    let number = row.number.trim();
    if number.is_empty() {
        return Err((RuleField::Number, "Enter a port number, or untick Keep to leave this row out.".to_owned()));
    }
    let number: i64 = number.parse().map_err(|_| (RuleField::Number, format!("'{number}' is not a port number.")))?;
    let mut sources: Vec<String> =
        row.sources.split(|c: char| c == ',' || c == ';' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if sources.is_empty() {
        return Err((RuleField::Sources, "Enter * for any source, or addresses and CIDRs separated by commas.".to_owned()));
    }
    let (one, list) = if sources.len() == 1 { (sources.pop(), None) } else { (None, Some(sources)) };
    let input = PortRuleIn {
        number,
        protocol: row.protocol.clone(),
        allowed_source_address_prefix: one,
        allowed_source_address_prefixes: list,
        max_request_access_duration: row.max.trim().to_owned(),
    };
    port_rule_in(&input, "port").map_err(|e| {
        let field = e.body.target.as_deref().and_then(field_named).unwrap_or(RuleField::Number);
        (field, e.body.message)
    })
}

/// The form field a refusal's target names, by its last segment (`…ports[1].maxRequestAccessDuration`).
fn field_named(target: &str) -> Option<RuleField> {
    let last = target.rsplit('.').next()?;
    [
        ("number", RuleField::Number),
        ("protocol", RuleField::Protocol),
        ("allowedSourceAddressPrefix", RuleField::Sources),
        ("maxRequestAccessDuration", RuleField::Max),
    ]
    .into_iter()
    .find_map(|(name, field)| last.starts_with(name).then_some(field))
}

/// Puts a refusal next to the field it names (`…ports[j].number`: rule `j`, which came from row
/// `kept[j]`). Returns whether it named a field of a row.
fn place_problem(rows: &mut [RuleRow], kept: &[usize], problem: &Problem) -> bool {
    let Some(steps) = problem.target.as_ref().map(|t| t.steps()) else { return false };
    let rule = steps.windows(3).find_map(|w| match w {
        [Step::Field(Field::Ports), Step::At(j), Step::Field(field)] => Some((*j, *field)),
        _ => None,
    });
    let field = |f: Field| match f {
        Field::Number => Some(RuleField::Number),
        Field::Protocol => Some(RuleField::Protocol),
        Field::AllowedSourceAddressPrefix | Field::AllowedSourceAddressPrefixes => Some(RuleField::Sources),
        Field::MaxRequestAccessDuration => Some(RuleField::Max),
        _ => None,
    };
    match rule.and_then(|(j, f)| Some((*kept.get(j)?, field(f)?))) {
        Some((i, field)) if i < rows.len() => {
            rows[i].set_error(field, problem.message.clone());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ajar_domain::ErrorCode;
    use ajar_domain::policy::{port_target, vm_target};
    use ajar_domain::problem::Target;

    fn row(number: &str, protocol: &str, sources: &str, max: &str) -> RuleRow {
        RuleRow {
            keep: true,
            number: number.into(),
            protocol: protocol.into(),
            sources: sources.into(),
            max: max.into(),
            ..RuleRow::default()
        }
    }

    #[test]
    fn rows_become_the_rules_the_api_would_store() {
        let mut rows = vec![
            row("22", "TCP", "*", "PT3H"),
            RuleRow { keep: false, ..row("3389", "TCP", "*", "PT3H") },
            row("8443", "UDP", "10.0.0.0/24, 2001:db8::/32", "PT1H"),
        ];
        let (rules, kept) = rules_from_rows(&mut rows).unwrap();
        assert_eq!(kept, [0, 2]);
        let shown: Vec<String> = rules.iter().map(ajar_web::describe_rule).collect();
        assert_eq!(shown, ["22/TCP from * for at most PT3H", "8443/UDP from 10.0.0.0/24, 2001:db8::/32 for at most PT1H"]);
        assert!(matches!(rules[1].sources, ajar_domain::Sources::List(_)));
    }

    #[test]
    fn each_wrong_field_gets_its_own_error() {
        let mut rows = vec![
            row("70000", "TCP", "*", "PT3H"),
            row("22", "TCP", "10.0.0.0/33", "PT3H"),
            row("", "TCP", "*", "PT3H"),
            row("23", "ICMP", "*", "PT3H"),
            row("24", "TCP", "", "PT3H"),
            row("25", "TCP", "*", "3 hours"),
            RuleRow { keep: false, ..row("junk", "junk", "junk", "junk") },
        ];
        assert!(rules_from_rows(&mut rows).is_none());
        assert!(rows[0].number_error.as_deref().is_some_and(|e| e.contains("70000")), "{:?}", rows[0]);
        assert!(rows[1].sources_error.as_deref().is_some_and(|e| e.contains("10.0.0.0/33")), "{:?}", rows[1]);
        assert!(rows[2].number_error.is_some() && rows[3].protocol_error.is_some() && rows[4].sources_error.is_some());
        assert!(rows[5].max_error.is_some(), "{:?}", rows[5]);
        assert!(!rows[6].has_error(), "a row left out is not checked");
    }

    #[test]
    fn a_policy_refusal_lands_on_the_row_it_names() {
        let mut rows =
            vec![RuleRow { keep: false, ..row("1", "TCP", "*", "PT1H") }, row("22", "TCP", "*", "PT1H"), row("22", "TCP", "*", "P2D")];
        let problem = Problem::at(ErrorCode::InvalidPolicy, port_target(0, 1).field(Field::MaxRequestAccessDuration), "too long");
        assert!(place_problem(&mut rows, &[1, 2], &problem));
        assert_eq!(rows[2].max_error.as_deref(), Some("too long"));
        let enabled = Problem::at(ErrorCode::InvalidPolicy, Target::of(Field::Ports).at(0).field(Field::Number), "twice");
        assert!(place_problem(&mut rows, &[1, 2], &enabled));
        assert_eq!(rows[1].number_error.as_deref(), Some("twice"));
        let whole = Problem::at(ErrorCode::InvalidPolicy, vm_target(0).field(Field::Id), "names too long");
        assert!(!place_problem(&mut rows, &[1, 2], &whole));
    }

    #[test]
    fn a_form_with_rows_cut_short_is_refused() {
        let whole = FormFields::parse(b"number=22&protocol=TCP&sources=*&max=PT3H&keep=0&number=&protocol=UDP&sources=*&max=PT1H");
        let rows = rows_from_form(&whole).unwrap();
        assert_eq!((rows.len(), rows[0].keep, rows[1].keep, rows[1].protocol.as_str()), (2, true, false, "UDP"));
        assert!(rows_from_form(&FormFields::parse(b"number=22&protocol=TCP&sources=*")).is_none());
    }
}
