//! `ajar gateway list|remove` and `ajar vm set-gateway`: gateways, the enforcement points in front of
//! machines.

use ajar_api::ajar_v1::GatewayAssignmentIn;
use ajar_domain::gateway::GatewayName;

use super::Ctx;
use crate::error::UsageError;
use crate::flags::{GatewayCommand, GatewayListArgs, GatewayNameArgs, VmSetGatewayArgs};
use crate::output::{self, OutputFormat, Table};

pub async fn run(cmd: GatewayCommand) -> anyhow::Result<()> {
    match cmd {
        GatewayCommand::List(args) => list(args).await,
        GatewayCommand::Remove(args) => remove(args).await,
    }
}

async fn list(args: GatewayListArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let list = ctx.client.gateways().await?;
    if ctx.output == OutputFormat::Json {
        return output::json(&list);
    }
    let mut table = Table::new(&["NAME", "PUBLIC ADDRESSES", "MAPPED PORTS", "AGENT", "MACHINES"]);
    for g in &list.value {
        let machines = g.virtual_machines.as_deref().unwrap_or_default();
        let names: Vec<&str> = machines.iter().map(|id| id.rsplit('/').next().unwrap_or(id)).collect();
        table.row(vec![
            g.name.clone(),
            g.public_addresses.join(", "),
            g.mapped_ports.clone(),
            match (&g.agent.nftables_unusable, g.agent.online) {
                (Some(why), _) => format!("nftables unusable: {why}"),
                (None, true) => "online".to_owned(),
                (None, false) => "offline".to_owned(),
            },
            if names.is_empty() { "-".to_owned() } else { names.join(", ") },
        ]);
    }
    table.print_or("No gateways. Enrol one with: ajar agent --gateway --public-address ADDR --name NAME ...")
}

async fn remove(args: GatewayNameArgs) -> anyhow::Result<()> {
    // Checked here, so that the name goes into the URL as one path segment.
    let name: GatewayName = args.name.parse().map_err(UsageError::new)?;
    let ctx = Ctx::new(&args.conn)?;
    let removed = ctx.client.delete_gateway(&name).await?;
    output::line(&if removed { format!("Removed gateway {name}.") } else { format!("No gateway named {name}.") })
}

pub async fn set(args: VmSetGatewayArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let id = ctx.settings.vm_id(&args.name)?;
    let body = GatewayAssignmentIn { virtual_machine_id: id.to_string(), gateway: if args.none { None } else { args.gateway.clone() } };
    let out = ctx.client.set_gateway(&body).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&out),
        OutputFormat::Table => output::line(&match &out.gateway {
            Some(g) => format!("VM {} is behind gateway {g}: its JIT ports are reached through the gateway.", id.name),
            None => format!("VM {} is behind no gateway.", id.name),
        }),
    }
}
