//! `ajar activity`: the activity log, newest first; `ajar activity verify`: its hash chain.

use time::OffsetDateTime;

use ajar_api::activity::{ActivityOut, ChainVerification};
use ajar_api::wire_time;
use ajar_client::ActivityQuery;

use super::Ctx;
use crate::flags::{ActivityArgs, ActivityCommand, ActivityFormat, ActivityVerifyArgs};
use crate::output::{self, OutputFormat, Table};

/// The query for the flags; relative times are taken back from `now`.
pub fn query(args: &ActivityArgs, vm: Option<String>, now: OffsetDateTime) -> ActivityQuery {
    ActivityQuery {
        vm,
        caller: args.caller.clone(),
        since: args.since.map(|t| wire_time::format(t.resolve(now))),
        until: args.until.map(|t| wire_time::format(t.resolve(now))),
        limit: args.limit,
    }
}

fn operation(e: &ActivityOut) -> String {
    // `Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action` → `jitNetworkAccessPolicies/initiate/action`.
    let op = e.operation.as_str();
    op.split_once('/').map(|(_, rest)| rest.trim_start_matches("locations/")).unwrap_or(op).to_owned()
}

fn print_table(list: &[ActivityOut]) -> anyhow::Result<()> {
    let mut table = Table::new(&["TIME", "CALLER", "ADDRESS", "OPERATION", "RESOURCE", "RESULT", "DETAILS"]);
    for e in list {
        let result = match &e.error_code {
            Some(code) => format!("{} ({code})", e.result),
            None => e.result.clone(),
        };
        let details: Vec<String> = e.details.iter().map(|d| format!("{}={}", d.name, d.value)).collect();
        table.row(vec![
            output::human_time(&e.time_utc),
            e.caller.clone(),
            output::or_dash(e.caller_address.as_deref()),
            operation(e),
            output::short_name(&e.resource_id).to_owned(),
            result,
            if details.is_empty() { "-".to_owned() } else { details.join("; ") },
        ]);
    }
    table.print_or("No activity.")
}

/// What `verify` says, and the error that makes it exit 1 when the chain is broken.
fn verdict(v: &ChainVerification) -> Result<String, String> {
    match (v.verified, v.entries, v.first_bad_entry) {
        (true, Some(n), _) => Ok(format!("verified: all {n} entries of the activity log are as written\n")),
        (true, None, _) => Ok("verified: the activity log is as written\n".to_owned()),
        (false, _, Some(seq)) => Err(format!(
            "the activity log's hash chain is broken at entry {seq}: it was edited or inserted, or the entry before it was deleted"
        )),
        (false, _, None) => Err("the activity log's hash chain is broken".to_owned()),
    }
}

async fn verify(args: ActivityVerifyArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let v = ctx.client.verify_activity().await?;
    let verdict = verdict(&v);
    match (&verdict, ctx.output) {
        (_, OutputFormat::Json) => output::json(&v)?,
        (Ok(line), OutputFormat::Table) => output::emit(line.as_bytes())?,
        (Err(_), OutputFormat::Table) => {}
    }
    verdict.map(|_| ()).map_err(anyhow::Error::msg)
}

pub async fn run(args: ActivityArgs) -> anyhow::Result<()> {
    if let Some(ActivityCommand::Verify(v)) = args.command {
        return verify(v).await;
    }
    let ctx = Ctx::new(&args.conn)?;
    let format = args.format.unwrap_or(match ctx.output {
        OutputFormat::Table => ActivityFormat::Table,
        OutputFormat::Json => ActivityFormat::Json,
    });
    let vm = args.vm.as_deref().map(|v| ctx.settings.vm_id(v)).transpose()?.map(|id| id.to_string());
    let query = query(&args, vm, OffsetDateTime::now_utc());
    match format {
        // The server's export, byte for byte.
        ActivityFormat::Csv => output::emit(&ctx.client.activity_csv(&query).await?),
        ActivityFormat::Json => output::json(&ctx.client.activity(&query).await?),
        ActivityFormat::Table => print_table(&ctx.client.activity(&query).await?.value),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use time::macros::datetime;

    use super::*;
    use crate::flags::{Cli, Command};

    #[test]
    fn a_broken_chain_is_an_error() {
        let ok = ChainVerification { verified: true, entries: Some(12), first_bad_entry: None };
        assert_eq!(verdict(&ok), Ok("verified: all 12 entries of the activity log are as written\n".to_owned()));
        let bad = ChainVerification { verified: false, entries: None, first_bad_entry: Some(3) };
        assert!(verdict(&bad).unwrap_err().contains("broken at entry 3"));
    }

    #[test]
    fn relative_times_become_rfc3339() {
        let cli = Cli::try_parse_from([
            "ajar",
            "activity",
            "--since",
            "7d",
            "--until",
            "2026-01-08T00:00:00Z",
            "--caller",
            "alice",
            "--limit",
            "5",
        ])
        .unwrap();
        let Command::Activity(args) = cli.command else { panic!("not activity") };
        let q = query(&args, Some("/vm".into()), datetime!(2026-01-08 12:00 UTC));
        assert_eq!(
            q,
            ActivityQuery {
                vm: Some("/vm".into()),
                caller: Some("alice".into()),
                since: Some("2026-01-01T12:00:00.0000000Z".into()),
                until: Some("2026-01-08T00:00:00.0000000Z".into()),
                limit: Some(5),
            }
        );
    }
}
