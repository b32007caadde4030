//! "Request access": the form for one or several machines (`GET /ui/request?vm=…&vm=…`), and "Open ports"
//! (`POST /ui/request`), which initiates through the API's code path. Machines may belong to different
//! policies and Azure's initiate is per policy, so the request has a part per policy, and all parts are
//! granted in one transaction or none: one bad machine refuses the whole request.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use time::OffsetDateTime;

use ajar_api::ApiError;
use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::actions;
use ajar_domain::initiate::{AccessRequest, EndSpec, InitiateDraft, PortAsk, VmAsk};
use ajar_domain::status::VmJitStatus;
use ajar_domain::{AccessDuration, PolicyId, SourcePrefix, Sources};
use ajar_web::{Choice, Field, FieldErrors, MachineInput, MachineState, OpenedMachine, RequestPageInput, TargetField};

use super::configure::may_enable;
use super::vm_page::{visible, vm_param};
use super::{FormFields, PostedForm, SignedIn, html, message, rendered};
use crate::auth::Caller;
use crate::http::{HttpError, HttpResult, Query};
use crate::routes::{AppState, audit, jit};

/// Most machines one request may name: the page stays usable and the work per request bounded.
const MAX_MACHINES: usize = 50;

/// A machine named in the request, as far as the caller may know it.
enum Found {
    Requestable(VmJitStatus),
    NotConfigured { status: VmJitStatus, may_configure: bool },
    Forbidden(VmJitStatus),
    NotVisible(String),
}

impl Found {
    fn status(&self) -> Option<&VmJitStatus> {
        match self {
            Found::Requestable(s) | Found::Forbidden(s) | Found::NotConfigured { status: s, .. } => Some(s),
            Found::NotVisible(_) => None,
        }
    }

    fn state(&self) -> MachineState<'_> {
        match self {
            Found::Requestable(s) => MachineState::Requestable(s),
            Found::NotConfigured { status, may_configure } => MachineState::NotConfigured { status, may_configure: *may_configure },
            Found::Forbidden(s) => MachineState::Forbidden(s),
            Found::NotVisible(given) => MachineState::NotVisible(given),
        }
    }
}

/// Looks up a machine as `given` (its resource ID). One the caller may not read is not told apart from
/// one that does not exist.
async fn find(state: &AppState, caller: &Caller, given: &str) -> HttpResult<Found> {
    let not_visible = || Ok(Found::NotVisible(given.to_owned()));
    let Some(vm) = vm_param(given) else { return not_visible() };
    let Some(status) = visible(state, caller, &vm).await? else { return not_visible() };
    if status.policy.is_none() || status.ports.is_empty() {
        let may_configure = may_enable(state, caller, &vm).await?;
        return Ok(Found::NotConfigured { status, may_configure });
    }
    if !state.may(caller, actions::JIT_INITIATE, &AccessScope::from(&vm)).await? {
        return Ok(Found::Forbidden(status));
    }
    Ok(Found::Requestable(status))
}

/// The machines named, in order, at most [`MAX_MACHINES`]; else the page that says what is wrong.
fn named(given: Vec<String>) -> HttpResult<Result<Vec<String>, Response>> {
    if given.is_empty() {
        return message(
            StatusCode::BAD_REQUEST,
            "No machine chosen",
            "Choose one or more machines on the Configured tab of Just-in-time VM access, then Request access.",
        )
        .map(Err);
    }
    if given.len() > MAX_MACHINES {
        return message(
            StatusCode::BAD_REQUEST,
            "Too many machines",
            &format!("One request may name at most {MAX_MACHINES} machines; choose fewer."),
        )
        .map(Err);
    }
    Ok(Ok(given))
}

/// A page with the request form (or why there is none): what the user sent, with the errors found.
struct Page<'a> {
    caller: &'a Caller,
    csrf: &'a str,
    machines: Vec<(&'a Found, Option<Choice>, FieldErrors)>,
    justification: &'a str,
    justification_error: Option<String>,
    problem: Option<String>,
    opened: Vec<OpenedMachine>,
}

impl Page<'_> {
    fn respond(self, status: StatusCode) -> HttpResult<Response> {
        let my_ip = self.caller.addr.to_string();
        let input = RequestPageInput {
            user: &self.caller.principal.name,
            csrf: self.csrf,
            my_ip: &my_ip,
            machines: self
                .machines
                .into_iter()
                .map(|(found, choice, errors)| MachineInput { state: found.state(), choice, errors })
                .collect(),
            justification: self.justification,
            justification_error: self.justification_error,
            problem: self.problem,
            opened: self.opened,
        };
        Ok(html(status, rendered(ajar_web::request_page(input))?, Vec::new()))
    }
}

/// `GET /ui/request?vm=ID&vm=ID…`: the form, one part per machine that may be requested, and for each
/// other machine named why it cannot be.
pub(in crate::routes) async fn request_form(
    State(state): State<AppState>,
    SignedIn { caller, session }: SignedIn,
    query: Query,
) -> HttpResult<Response> {
    let mut given: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for v in FormFields::from(query).all("vm") {
        // The JIT page's selection names each machine once; a hand-made address may repeat one, in
        // any case.
        if seen.insert(vm_param(&v).map_or_else(|| v.clone(), |id| id.key())) {
            given.push(v);
        }
    }
    let given = match named(given)? {
        Ok(g) => g,
        Err(page) => return Ok(page),
    };
    let mut found = Vec::with_capacity(given.len());
    for g in &given {
        found.push(find(&state, &caller, g).await?);
    }
    let status = if found.iter().any(|f| matches!(f, Found::Requestable(_))) {
        StatusCode::OK
    } else if found.iter().any(|f| matches!(f, Found::Forbidden(_))) {
        StatusCode::FORBIDDEN
    } else if found.iter().any(|f| matches!(f, Found::NotConfigured { .. })) {
        StatusCode::CONFLICT
    } else {
        StatusCode::NOT_FOUND
    };
    let page = Page {
        caller: &caller,
        csrf: &session.csrf,
        machines: found.iter().map(|f| (f, None, FieldErrors::default())).collect(),
        justification: "",
        justification_error: None,
        problem: None,
        opened: Vec::new(),
    };
    page.respond(status)
}

/// What the form says about machine `i`.
fn choice(fields: &FormFields, i: usize) -> (Choice, Vec<String>) {
    let mut ports = Vec::new();
    let mut bad = Vec::new();
    for raw in fields.all(&format!("port.{i}")) {
        match raw.parse::<u16>() {
            Ok(n) => ports.push(n),
            Err(_) => bad.push(raw),
        }
    }
    let choice = Choice {
        ports,
        range_chosen: fields.get(&format!("source.{i}")) == "range",
        range: fields.get(&format!("range.{i}")),
        duration: fields.get(&format!("duration.{i}")),
    };
    (choice, bad)
}

/// The ports to ask for on one machine, or the errors of its fields. The rules of what may be opened are
/// the domain's, checked later on the whole request; this only reads the form.
fn asks(choice: &Choice, bad_ports: &[String]) -> Result<Vec<PortAsk>, FieldErrors> {
    let mut errors = FieldErrors::default();
    if let Some(bad) = bad_ports.first() {
        errors.set(Field::Ports, format!("'{bad}' is not a port number."));
    } else if choice.ports.is_empty() {
        errors.set(Field::Ports, "Choose at least one port.");
    }
    let duration = match choice.duration.parse::<AccessDuration>() {
        Ok(d) => Some(d),
        Err(_) if choice.duration.is_empty() => {
            errors.set(Field::Duration, "Choose a time window.");
            None
        }
        Err(e) => {
            errors.set(Field::Duration, e.to_string());
            None
        }
    };
    let sources = if choice.range_chosen {
        if choice.range.is_empty() {
            errors.set(Field::Source, "Enter an address or a CIDR range such as 10.0.0.0/24, or choose My IP.");
            None
        } else {
            match choice.range.parse::<SourcePrefix>() {
                Ok(prefix) => Some(Sources::One(prefix)),
                Err(e) => {
                    errors.set(Field::Source, e.to_string());
                    None
                }
            }
        }
    } else {
        None
    };
    match duration {
        Some(d) if errors.is_empty() => {
            Ok(choice.ports.iter().map(|&number| PortAsk { number, end: EndSpec::For(d), sources: sources.clone() }).collect())
        }
        _ => Err(errors),
    }
}

/// One policy's part of the request: its initiate, and which machine of the form each of its machines is.
struct PolicyPart {
    policy: PolicyId,
    draft: InitiateDraft,
    machines: Vec<usize>,
}

/// Puts an API error where it belongs in the form: at the field of the machine it concerns, at the
/// machines it refused (authorization names no machine), or above the form (`false`).
fn place_error(e: &ApiError, found: &[Found], errors: &mut [FieldErrors], justification_error: &mut Option<String>) -> bool {
    let cause = e.cause.as_ref();
    let field = cause.and_then(|p| p.target.as_ref()).and_then(ajar_web::field_of_target);
    if field == Some(TargetField::Justification) {
        justification_error.get_or_insert_with(|| e.body.message.clone());
        return true;
    }
    let row = cause.and_then(|p| p.machine.as_ref()).and_then(|vm| found.iter().position(|f| f.status().is_some_and(|s| s.vm.id == **vm)));
    if let Some(m) = row {
        let field = match field {
            Some(TargetField::Machine(field)) => field,
            _ => Field::Machine,
        };
        errors[m].set(field, e.body.message.clone());
        return true;
    }
    let mut placed = false;
    if e.body.code == "AuthorizationFailed" {
        for (m, _) in found.iter().enumerate().filter(|(_, f)| matches!(f, Found::Forbidden(_))) {
            errors[m].set(Field::Machine, e.body.message.clone());
            placed = true;
        }
    }
    placed
}

/// Records that the form was refused before it reached the initiate, as the API records a body it cannot
/// read: one failed initiate per policy concerned.
async fn record_refused_form(state: &AppState, caller: &Caller, part: &PolicyPart, errors: &[FieldErrors]) {
    let messages: Vec<String> = part
        .machines
        .iter()
        .filter_map(|&m| {
            let e = &errors[m];
            let text: Vec<&str> = [&e.machine, &e.ports, &e.source, &e.duration].into_iter().flatten().map(String::as_str).collect();
            (!text.is_empty()).then(|| text.join("; "))
        })
        .collect();
    if messages.is_empty() {
        return;
    }
    let mut record =
        audit(caller, actions::JIT_INITIATE, part.policy.to_string(), &part.policy.subscription, Some(&part.policy.resource_group));
    record.subjects = part.draft.vms.iter().map(|v| v.vm.key()).collect();
    let error = ApiError::new(400, "InvalidInitiateInput", messages.join(" | "));
    state.refuse(record, error).await;
}

/// `POST /ui/request`: "Open ports". Nothing is opened unless every machine named may be opened as asked.
pub(in crate::routes) async fn request(
    State(state): State<AppState>,
    PostedForm { caller, session, fields }: PostedForm,
) -> HttpResult<Response> {
    let given = match named(fields.all("vm"))? {
        Ok(g) => g,
        Err(page) => return Ok(page),
    };
    let justification = fields.get("justification");
    let mut found = Vec::with_capacity(given.len());
    for g in &given {
        found.push(find(&state, &caller, g).await?);
    }
    let mut choices = Vec::with_capacity(found.len());
    let mut errors = vec![FieldErrors::default(); found.len()];
    let mut parts: Vec<PolicyPart> = Vec::new();
    for (i, f) in found.iter().enumerate() {
        let (chosen, bad_ports) = choice(&fields, i);
        let key = f.status().map(|s| s.vm.id.key());
        let duplicate = key.is_some() && found[..i].iter().any(|o| o.status().map(|o| o.vm.id.key()) == key);
        match f {
            _ if duplicate => errors[i].set(Field::Machine, "This machine is named twice in the request."),
            Found::NotVisible(_) => errors[i].set(Field::Machine, "There is no such machine that you may see."),
            Found::NotConfigured { .. } => errors[i].set(Field::Machine, "JIT is not configured on this machine."),
            Found::Requestable(s) | Found::Forbidden(s) => {
                let ports = match asks(&chosen, &bad_ports) {
                    Ok(ports) => ports,
                    // A machine the caller may not request has no fields on the page to show errors at: it
                    // is refused by the authorization below, which is recorded as the API's.
                    Err(_) if matches!(f, Found::Forbidden(_)) => Vec::new(),
                    Err(e) => {
                        errors[i] = e;
                        Vec::new()
                    }
                };
                if let Some(policy) = &s.policy {
                    let ask = VmAsk { vm: s.vm.id.clone(), ports };
                    match parts.iter_mut().find(|p| p.policy == *policy) {
                        Some(part) => {
                            part.draft.vms.push(ask);
                            part.machines.push(i);
                        }
                        None => parts.push(PolicyPart {
                            policy: policy.clone(),
                            draft: InitiateDraft { vms: vec![ask], justification: None },
                            machines: vec![i],
                        }),
                    }
                }
            }
        }
        choices.push(chosen);
    }
    let justification_value = Some(justification.clone()).filter(|j| !j.is_empty());
    for part in &mut parts {
        part.draft.justification = justification_value.clone();
    }
    let again = |errors: Vec<FieldErrors>, justification_error: Option<String>, problem: String, status: StatusCode| {
        let page = Page {
            caller: &caller,
            csrf: &session.csrf,
            machines: found.iter().zip(choices.iter().cloned()).zip(errors).map(|((f, c), e)| (f, Some(c), e)).collect(),
            justification: &justification,
            justification_error,
            problem: Some(problem),
            opened: Vec::new(),
        };
        page.respond(status)
    };
    const CORRECT: &str = "Nothing was opened: correct what is marked below and send the request again.";
    if errors.iter().any(|e| !e.is_empty()) {
        let status = if found.iter().any(|f| matches!(f, Found::NotVisible(_))) {
            StatusCode::NOT_FOUND
        } else if found.iter().any(|f| matches!(f, Found::NotConfigured { .. })) {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        for part in &parts {
            record_refused_form(&state, &caller, part, &errors).await;
        }
        return again(errors, None, CORRECT.to_owned(), status);
    }

    // One request for all of it: one refusal refuses every part, and nothing is opened anywhere.
    let asked = parts.into_iter().map(|part| (part.policy, part.draft)).collect();
    match jit::initiate_parts(&state, &caller, asked).await {
        Ok(granted) => result(&caller, &session.csrf, &found, &granted, &justification),
        Err(HttpError(e)) => {
            let mut justification_error = None;
            let placed = place_error(&e, &found, &mut errors, &mut justification_error);
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut problem = format!("The request was refused ({}). {CORRECT}", e.body.code);
            if !placed {
                problem.push_str(&format!(" {}", e.body.message));
            }
            again(errors, justification_error, problem, status)
        }
    }
}

/// The result page: per machine and port what was opened, from where, until when, and how to connect.
fn result(caller: &Caller, csrf: &str, found: &[Found], granted: &[AccessRequest], justification: &str) -> HttpResult<Response> {
    let now = OffsetDateTime::now_utc();
    let opened = granted
        .iter()
        .flat_map(|r| &r.vms)
        .map(|vm| {
            let status = found.iter().filter_map(Found::status).find(|s| s.vm.id.key() == vm.vm.key());
            ajar_web::opened_machine(vm, status, now)
        })
        .collect();
    let page = Page { caller, csrf, machines: Vec::new(), justification, justification_error: None, problem: None, opened };
    page.respond(StatusCode::OK)
}
