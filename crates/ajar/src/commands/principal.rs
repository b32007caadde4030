//! `ajar principal add|list|remove` and `ajar whoami`: who may call the API.
//!
//! A principal is named by its name or its ID wherever a command takes one;
//! names are resolved to IDs through the principal list ([`pick`]).

use time::OffsetDateTime;

use ajar_api::principals::{OidcLink, PrincipalIn, PrincipalOut};
use ajar_client::Me;

use super::Ctx;
use crate::flags::{PrincipalAddArgs, PrincipalCommand, PrincipalListArgs, PrincipalRefArgs, WhoamiArgs};
use crate::output::{self, OutputFormat, Table};

pub async fn run(cmd: PrincipalCommand) -> anyhow::Result<()> {
    match cmd {
        PrincipalCommand::Add(args) => add(args).await,
        PrincipalCommand::List(args) => list(args).await,
        PrincipalCommand::Remove(args) => remove(args).await,
    }
}

/// The one item that `input` names: the item with that ID (IDs compare
/// without case), else the one with that name exactly, else the one with that
/// name in any case. Several with the same name are ambiguous: the message
/// lists their IDs so the caller can pick one.
pub fn pick<'a, T>(items: &'a [T], input: &str, what: &str, id: impl Fn(&T) -> &str, name: impl Fn(&T) -> &str) -> anyhow::Result<&'a T> {
    let input = input.trim();
    if let Some(found) = items.iter().find(|t| id(t).eq_ignore_ascii_case(input)) {
        return Ok(found);
    }
    let exact: Vec<&T> = items.iter().filter(|t| name(t) == input).collect();
    let candidates =
        if exact.is_empty() { items.iter().filter(|t| name(t).to_lowercase() == input.to_lowercase()).collect() } else { exact };
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => anyhow::bail!("no {what} is named '{input}' or has that ID"),
        many => {
            let ids: Vec<&str> = many.iter().map(|t| id(t)).collect();
            anyhow::bail!("{} {what}s are named '{input}'; give one of their IDs: {}", many.len(), ids.join(", "))
        }
    }
}

/// The principal a name or ID stands for, from the server's list.
pub async fn resolve_principal(ctx: &Ctx, input: &str) -> anyhow::Result<PrincipalOut> {
    let list = ctx.client.list_principals().await?;
    Ok(pick(&list.value, input, "principal", |p| &p.id, |p| &p.name)?.clone())
}

/// A principal's ID and name: the one named, or the caller (`/ajar/v1/me`).
pub async fn principal_or_me(ctx: &Ctx, input: Option<&str>) -> anyhow::Result<(String, String)> {
    match input {
        Some(input) => {
            let p = resolve_principal(ctx, input).await?;
            Ok((p.id, p.name))
        }
        None => {
            let me = ctx.client.me().await?;
            Ok((me.id, me.name))
        }
    }
}

pub fn oidc_text(oidc: Option<&OidcLink>) -> String {
    match oidc {
        Some(o) => format!("{} {}", o.issuer, o.subject),
        None => "-".to_owned(),
    }
}

pub fn principal_table(principals: &[PrincipalOut]) -> Table {
    let mut table = Table::new(&["NAME", "KIND", "ID", "TOKENS", "CREATED", "OIDC"]);
    for p in principals {
        table.row(vec![
            p.name.clone(),
            p.kind.clone(),
            p.id.clone(),
            p.tokens.to_string(),
            output::human_time(&p.created_on),
            oidc_text(p.oidc.as_ref()),
        ]);
    }
    table
}

/// `key: value` lines, keys padded to the longest.
pub fn details(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter().map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:"))).collect()
}

pub fn me_text(me: &Me) -> String {
    let ids = if me.principal_ids.is_empty() { "-".to_owned() } else { me.principal_ids.join(", ") };
    details(&[("Name", me.name.clone()), ("Kind", me.kind.clone()), ("ID", me.id.clone()), ("Principal IDs", ids)])
}

pub async fn whoami(args: WhoamiArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let me = ctx.client.me().await?;
    match ctx.output {
        OutputFormat::Json => output::json(&me),
        OutputFormat::Table => output::emit(me_text(&me).as_bytes()),
    }
}

pub fn principal_body(args: &PrincipalAddArgs) -> PrincipalIn {
    let oidc = match (&args.oidc_issuer, &args.oidc_subject) {
        (Some(issuer), Some(subject)) => Some(OidcLink { issuer: issuer.clone(), subject: subject.clone() }),
        _ => None,
    };
    PrincipalIn { name: args.name.clone(), kind: args.kind.as_wire().to_owned(), oidc }
}

async fn add(args: PrincipalAddArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let p = ctx.client.create_principal(&principal_body(&args)).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&p),
        OutputFormat::Table => {
            let signs_in = match &p.oidc {
                Some(o) => format!(", signing in as '{}' at {}", o.subject, o.issuer),
                None => String::new(),
            };
            output::line(&format!("Added {} '{}' (ID {}){signs_in}.", p.kind, p.name, p.id))?;
            output::line(&format!(
                "It may do nothing until it has a role: ajar role assign --principal {} --role ROLE; \
                 a token for it: ajar token create --principal {}",
                p.id, p.id
            ))
        }
    }
}

async fn list(args: PrincipalListArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let list = ctx.client.list_principals().await?;
    match ctx.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Table => principal_table(&list.value).print_or("No principals."),
    }
}

async fn remove(args: PrincipalRefArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let p = resolve_principal(&ctx, &args.principal).await?;
    let deleted = ctx.client.delete_principal(&p.id).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&serde_json::json!({ "id": p.id, "name": p.name, "deleted": deleted })),
        OutputFormat::Table if deleted => {
            output::line(&format!("Removed {} '{}' (ID {}); its tokens no longer work.", p.kind, p.name, p.id))
        }
        OutputFormat::Table => output::line(&format!("{} '{}' (ID {}) was already gone; nothing to remove.", p.kind, p.name, p.id)),
    }
}

/// `2026-05-30 12:00:00Z`, with `(expired)` once past.
pub fn expiry_text(expires_on: &str, now: OffsetDateTime) -> String {
    let shown = output::human_time(expires_on);
    match ajar_api::wire_time::parse(expires_on) {
        Ok(at) if at <= now => format!("{shown} (expired)"),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Item(&'static str, &'static str);

    fn check(items: &[Item], input: &str, expected: Result<&str, &str>) {
        match (pick(items, input, "principal", |i| i.0, |i| i.1), expected) {
            (Ok(found), Ok(id)) => assert_eq!(found.0, id, "{input}"),
            (Err(e), Err(why)) => assert!(e.to_string().contains(why), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn names_and_ids_resolve() {
        let items = [
            Item("0190a1b2-0000-7000-8000-000000000001", "alice"),
            Item("0190a1b2-0000-7000-8000-000000000002", "Alice"),
            Item("0190a1b2-0000-7000-8000-000000000003", "ci"),
            Item("0190a1b2-0000-7000-8000-000000000004", "bob"),
            Item("0190a1b2-0000-7000-8000-000000000005", "BOB"),
            // A name that looks like another's ID: the ID wins.
            Item("0190a1b2-0000-7000-8000-000000000006", "0190a1b2-0000-7000-8000-000000000003"),
        ];
        check(&items, "0190a1b2-0000-7000-8000-000000000003", Ok("0190a1b2-0000-7000-8000-000000000003"));
        check(&items, "0190A1B2-0000-7000-8000-000000000004", Ok("0190a1b2-0000-7000-8000-000000000004"));
        check(&items, "alice", Ok("0190a1b2-0000-7000-8000-000000000001"));
        check(&items, "Alice", Ok("0190a1b2-0000-7000-8000-000000000002"));
        check(&items, " ci ", Ok("0190a1b2-0000-7000-8000-000000000003"));
        check(&items, "CI", Ok("0190a1b2-0000-7000-8000-000000000003"));
        check(&items, "ALICE", Err("2 principals are named 'ALICE'; give one of their IDs: 0190a1b2-0000-7000-8000-000000000001, "));
        check(&items, "Bob", Err("2 principals are named 'Bob'"));
        check(&items, "carol", Err("no principal is named 'carol' or has that ID"));
        check(&[], "alice", Err("no principal"));
    }

    #[test]
    fn principal_tables() {
        let p = |id: &str, name: &str, kind: &str, oidc: Option<OidcLink>, tokens| PrincipalOut {
            id: id.into(),
            name: name.into(),
            kind: kind.into(),
            oidc,
            created_on: "2026-03-01T12:00:00.0000000Z".into(),
            tokens,
        };
        let list = [
            p("p-1", "alice", "user", Some(OidcLink { issuer: "https://login.example.com".into(), subject: "00u1".into() }), 2),
            p("p-22", "ci-pipeline", "service", None, 0),
        ];
        assert_eq!(
            principal_table(&list).render(),
            "NAME         KIND     ID    TOKENS  CREATED               OIDC\n\
             alice        user     p-1   2       2026-03-01 12:00:00Z  https://login.example.com 00u1\n\
             ci-pipeline  service  p-22  0       2026-03-01 12:00:00Z  -\n"
        );
        let me = Me {
            id: "p-1".into(),
            name: "alice".into(),
            kind: "user".into(),
            principal_ids: vec!["p-1".into(), "g-1".into()],
            actions_at_root: vec![],
        };
        assert_eq!(me_text(&me), "Name:          alice\nKind:          user\nID:            p-1\nPrincipal IDs: p-1, g-1\n");
    }

    #[test]
    fn add_bodies() {
        use crate::flags::{Cli, Command, PrincipalCommand};
        use clap::Parser;
        let parse = |args: &[&str]| {
            let Command::Principal(PrincipalCommand::Add(a)) = Cli::try_parse_from(args).unwrap().command else { panic!() };
            serde_json::to_value(principal_body(&a)).unwrap()
        };
        assert_eq!(parse(&["ajar", "principal", "add", "alice"]), serde_json::json!({"name": "alice", "kind": "user"}));
        assert_eq!(
            parse(&[
                "ajar",
                "principal",
                "add",
                "ci",
                "--kind",
                "service",
                "--oidc-issuer",
                "https://token.actions.example",
                "--oidc-subject",
                "repo:x"
            ]),
            serde_json::json!({"name": "ci", "kind": "service", "oidc": {"issuer": "https://token.actions.example", "subject": "repo:x"}})
        );
    }

    #[test]
    fn expiry_reads_well() {
        let now = time::macros::datetime!(2026-03-01 12:00 UTC);
        assert_eq!(expiry_text("2026-05-30T12:00:00.0000000Z", now), "2026-05-30 12:00:00Z");
        assert_eq!(expiry_text("2026-02-01T00:00:00Z", now), "2026-02-01 00:00:00Z (expired)");
    }
}
