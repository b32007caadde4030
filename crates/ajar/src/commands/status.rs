//! `ajar status`: the JIT status of every machine, as the portal's three tabs
//! (Configured, Not configured, Unsupported) show it.

use time::OffsetDateTime;

use ajar_api::ajar_v1::{VmStatusList, VmStatusOut};
use ajar_api::wire_time;
use ajar_client::StatusQuery;

use super::Ctx;
use crate::flags::StatusArgs;
use crate::output::{self, OutputFormat, Table, or_dash};

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let query = StatusQuery {
        resource_group: args.conn.resource_group.as_ref().map(ToString::to_string),
        location: args.conn.location.as_ref().map(ToString::to_string),
        state: args.state.map(|s| s.as_wire().to_owned()),
    };
    let list = ctx.client.jit_status(ctx.settings.subscription()?, &query).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Table => print_table(&list, OffsetDateTime::now_utc()),
    }
}

/// The state as the portal words it.
pub fn state_label(state: &str) -> String {
    match state {
        "Configured" => "Configured".to_owned(),
        "NotConfigured" => "Not configured".to_owned(),
        "Unsupported" => "Unsupported".to_owned(),
        other => other.to_owned(),
    }
}

/// `22/TCP from 10.0.0.0/8 in 30m (alice, applied)` for each live grant.
fn live_grants(s: &VmStatusOut, now: OffsetDateTime) -> String {
    if s.live_grants.is_empty() {
        return "-".to_owned();
    }
    s.live_grants
        .iter()
        .map(|g| {
            let until = match wire_time::parse(&g.end_time_utc) {
                Ok(end) => output::relative(end, now),
                Err(_) => g.end_time_utc.clone(),
            };
            // Whether what enforces it (the machine's agent, its gateway) has put it in force; nothing
            // enforces it without either.
            let applied = match (s.agent.is_some() || s.gateway.is_some(), g.applied) {
                (false, _) => ", no agent",
                (true, true) => ", applied",
                (true, false) => ", not yet applied",
            };
            format!("{}/{} from {} {} ({}{applied})", g.number, g.protocol, g.allowed_source_address_prefixes.join(";"), until, g.requestor)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lines under a table explaining why machines are Unsupported.
pub fn unsupported_notes(list: &[VmStatusOut]) -> Vec<String> {
    let mut notes: Vec<(String, Vec<String>)> = Vec::new();
    for s in list {
        if let Some(reason) = &s.unsupported_reason {
            match notes.iter_mut().find(|(m, _)| *m == reason.message) {
                Some((_, names)) => names.push(s.name.clone()),
                None => notes.push((reason.message.clone(), vec![s.name.clone()])),
            }
        }
    }
    notes.into_iter().map(|(message, names)| format!("Unsupported ({}): {message}", names.join(", "))).collect()
}

fn print_table(list: &VmStatusList, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut table =
        Table::new(&["NAME", "RESOURCE GROUP", "LOCATION", "STATE", "AGENT", "REQUESTS (7D)", "LAST ACCESS", "LAST USER", "LIVE GRANTS"]);
    for s in &list.value {
        table.row(vec![
            s.name.clone(),
            s.resource_group.clone(),
            s.location.clone(),
            state_label(&s.state),
            match &s.agent {
                None => "-".to_owned(),
                Some(a) if !a.online => "offline".to_owned(),
                Some(a) if a.in_sync => "online, in sync".to_owned(),
                Some(_) => "online, applying".to_owned(),
            },
            s.approved_requests_last_7_days.to_string(),
            s.last_access_time_utc.as_deref().map(output::human_time).unwrap_or_else(|| "-".to_owned()),
            or_dash(s.last_user.as_deref()),
            live_grants(s, now),
        ]);
    }
    table.print_or("No virtual machines.")?;
    for note in unsupported_notes(&list.value) {
        output::line(&note)?;
    }
    Ok(())
}
