//! `ajar token create|list|revoke`: API tokens. The server keeps only a
//! token's hash, so `create` is the one time its secret is seen.

use time::OffsetDateTime;

use ajar_api::principals::{TokenCreatedOut, TokenOut};
use ajar_client::TokenExpiry;

use super::Ctx;
use super::principal::{expiry_text, principal_or_me};
use crate::flags::{TokenCommand, TokenCreateArgs, TokenListArgs, TokenRevokeArgs};
use crate::output::{self, OutputFormat, Table};

pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create(args) => create(args).await,
        TokenCommand::List(args) => list(args).await,
        TokenCommand::Revoke(args) => revoke(args).await,
    }
}

/// The expiry the flags ask for (clap lets at most one through).
pub fn expiry(args: &TokenCreateArgs) -> TokenExpiry {
    match (args.expires_in, args.expires_on) {
        (Some(days), _) => TokenExpiry::InDays(days),
        (None, Some(at)) => TokenExpiry::On(at),
        (None, None) => TokenExpiry::Default,
    }
}

/// A label when none is given: `cli-20260301T120000Z`.
pub fn default_token_name(now: OffsetDateTime) -> String {
    let t = now.to_offset(time::UtcOffset::UTC);
    format!("cli-{:04}{:02}{:02}T{:02}{:02}{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// What `token create` prints: the secret on a line of its own, and that it
/// will not be shown again.
pub fn created_text(t: &TokenCreatedOut, principal_name: &str) -> String {
    format!(
        "Created token '{}' (ID {}) for {principal_name}, expiring {}:\n{}\nCopy it now: the server keeps only its hash, so it won't be shown again.\n",
        t.name,
        t.id,
        output::human_time(&t.expires_on),
        t.token
    )
}

pub fn token_table(tokens: &[TokenOut], now: OffsetDateTime) -> Table {
    let mut table = Table::new(&["NAME", "ID", "CREATED", "EXPIRES"]);
    for t in tokens {
        let expires = match (&t.revoked_on, &t.expires_on) {
            (Some(revoked), _) => format!("revoked {}", output::human_time(revoked)),
            (None, Some(expires)) => expiry_text(expires, now),
            (None, None) => "never (until revoked)".to_owned(),
        };
        table.row(vec![t.name.clone(), t.id.clone(), output::human_time(&t.created_on), expires]);
    }
    table
}

async fn create(args: TokenCreateArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let (principal_id, principal_name) = principal_or_me(&ctx, args.principal.as_deref()).await?;
    let name = args.name.clone().unwrap_or_else(|| default_token_name(OffsetDateTime::now_utc()));
    let created = ctx.client.create_token(&principal_id, &name, &expiry(&args)).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&created),
        OutputFormat::Table => output::emit(created_text(&created, &principal_name).as_bytes()),
    }
}

async fn list(args: TokenListArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let (principal_id, principal_name) = principal_or_me(&ctx, args.principal.as_deref()).await?;
    let list = ctx.client.list_tokens(&principal_id).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&list),
        OutputFormat::Table => {
            token_table(&list.value, OffsetDateTime::now_utc()).print_or(&format!("{principal_name} has no API tokens."))
        }
    }
}

async fn revoke(args: TokenRevokeArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let out = ctx.client.revoke_token(&args.id).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&out),
        OutputFormat::Table if out.revoked => output::line(&format!("Revoked token {}; it no longer works.", args.id)),
        OutputFormat::Table => output::line(&format!("Token {} was already revoked.", args.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use time::macros::datetime;

    use crate::flags::{Cli, Command};

    fn create_args(args: &[&str]) -> Result<TokenCreateArgs, clap::Error> {
        let cli = Cli::try_parse_from(["ajar", "token", "create"].iter().chain(args))?;
        let Command::Token(TokenCommand::Create(a)) = cli.command else { panic!() };
        Ok(a)
    }

    #[test]
    fn expiry_flags() {
        assert_eq!(expiry(&create_args(&[]).unwrap()), TokenExpiry::Default);
        assert_eq!(expiry(&create_args(&["--expires-in", "30"]).unwrap()), TokenExpiry::InDays(30));
        assert_eq!(expiry(&create_args(&["--expires-in", "7d"]).unwrap()), TokenExpiry::InDays(7));
        assert_eq!(
            expiry(&create_args(&["--expires-on", "2026-12-31T23:59:59Z"]).unwrap()),
            TokenExpiry::On(datetime!(2026-12-31 23:59:59 UTC))
        );
        for bad in [
            &["--expires-in", "0"][..],
            &["--expires-in", "366"],
            &["--expires-in", "1w"],
            &["--expires-on", "tomorrow"],
            &["--expires-in", "3", "--expires-on", "2026-12-31T23:59:59Z"],
            &["--name", ""],
            &["--principal", " "],
        ] {
            let e = create_args(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
        let a = create_args(&["--principal", "ci", "--name", "deploy key"]).unwrap();
        assert_eq!((a.principal.as_deref(), a.name.as_deref()), (Some("ci"), Some("deploy key")));
    }

    #[test]
    fn shows_the_secret_once() {
        let t = TokenCreatedOut {
            id: "t-1".into(),
            name: "laptop".into(),
            principal_id: "p-1".into(),
            created_on: "2026-03-01T12:00:00.0000000Z".into(),
            expires_on: "2026-05-30T12:00:00.0000000Z".into(),
            token: "ajr_s3cret".into(),
        };
        let text = created_text(&t, "alice");
        assert_eq!(
            text,
            "Created token 'laptop' (ID t-1) for alice, expiring 2026-05-30 12:00:00Z:\najr_s3cret\n\
             Copy it now: the server keeps only its hash, so it won't be shown again.\n"
        );
        assert_eq!(text.matches("ajr_s3cret").count(), 1);
        assert_eq!(default_token_name(datetime!(2026-03-01 09:05:07 UTC)), "cli-20260301T090507Z");
    }

    #[test]
    fn token_tables_never_hold_secrets() {
        let now = datetime!(2026-03-01 12:00 UTC);
        let t = |id: &str, name: &str, expires: &str| TokenOut {
            id: id.into(),
            name: name.into(),
            principal_id: "p-1".into(),
            created_on: "2026-01-01T00:00:00Z".into(),
            expires_on: Some(expires.into()),
            revoked_on: None,
        };
        let table = token_table(&[t("t-1", "laptop", "2026-05-30T12:00:00Z"), t("t-2", "old", "2026-02-01T00:00:00Z")], now);
        assert_eq!(
            table.render(),
            "NAME    ID   CREATED               EXPIRES\n\
             laptop  t-1  2026-01-01 00:00:00Z  2026-05-30 12:00:00Z\n\
             old     t-2  2026-01-01 00:00:00Z  2026-02-01 00:00:00Z (expired)\n"
        );
    }
}
