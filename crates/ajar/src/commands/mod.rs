//! One module per command group. Each command resolves its settings, calls
//! the server through `ajar_client`, and prints a table or JSON.

mod activity;
mod agent;
mod demo;
mod gateway;
mod policy;
mod principal;
mod request;
mod revoke;
mod role;
mod serve;
mod status;
mod token;
mod vm;

use std::io::IsTerminal;

use anyhow::Context;

use ajar_client::Client;

use crate::flags::{Cli, Command, Conn};
use crate::output::{self, OutputFormat};
use crate::settings::Settings;

/// What every client command needs: its settings, a connected client and
/// the output format.
pub struct Ctx {
    pub settings: Settings,
    pub client: Client,
    pub output: OutputFormat,
}

impl Ctx {
    pub fn new(conn: &Conn) -> anyhow::Result<Ctx> {
        init_client_logging();
        let settings = Settings::from_env(conn)?;
        let ca = std::fs::read(&settings.ca).with_context(|| format!("cannot read the CA file {}", settings.ca.display()))?;
        let client = Client::new(&settings.server, &settings.token, &ca)?;
        Ok(Ctx { settings, client, output: conn.output })
    }
}

/// Client commands log only warnings unless RUST_LOG asks for more: their
/// stdout and stderr are for results and errors.
fn init_client_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Vm(cmd) => vm::run(cmd).await,
        Command::Gateway(cmd) => gateway::run(cmd).await,
        Command::Policy(cmd) => policy::run(cmd).await,
        Command::Request(args) => request::run(args).await,
        Command::Revoke(args) => revoke::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Activity(args) => activity::run(args).await,
        Command::Whoami(args) => principal::whoami(args).await,
        Command::Principal(cmd) => principal::run(cmd).await,
        Command::Token(cmd) => token::run(cmd).await,
        Command::Role(cmd) => role::run(cmd).await,
        Command::Openapi(args) => {
            let ctx = Ctx::new(&args.conn)?;
            output::json(&ctx.client.openapi().await?)
        }
    }
}
