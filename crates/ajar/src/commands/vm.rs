//! `ajar vm add|list|show|remove`: the VM inventory.

use ajar_api::ajar_v1::VmStatusOut;
use ajar_api::compute::{VirtualMachine, VirtualMachineIn};
use ajar_client::StatusQuery;
use ajar_domain::VmId;
use ajar_domain::ids::arm_key;

use super::Ctx;
use super::status::{state_label, unsupported_notes};
use crate::flags::{VmAddArgs, VmCommand, VmListArgs, VmNameArgs};
use crate::output::{self, OutputFormat, Table};

pub async fn run(cmd: VmCommand) -> anyhow::Result<()> {
    match cmd {
        VmCommand::Add(args) => add(args).await,
        VmCommand::List(args) => list(args).await,
        VmCommand::Show(args) => show(args).await,
        VmCommand::Remove(args) => remove(args).await,
        VmCommand::SetGateway(args) => super::gateway::set(args).await,
    }
}

fn addresses(vm: &VirtualMachine) -> String {
    let a = &vm.properties.network_profile.private_ip_addresses;
    if a.is_empty() { "-".to_owned() } else { a.join(", ") }
}

async fn add(args: VmAddArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let id = ctx.settings.vm_id(&args.name)?;
    let body = VirtualMachineIn::new(ctx.settings.location()?, args.os.as_wire(), args.addresses.iter().map(ToString::to_string).collect());
    let (vm, created) = ctx.client.put_vm(&id, &body).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&vm),
        OutputFormat::Table => output::line(&format!(
            "{} VM {} ({}, {}) in resource group '{}', location '{}'.",
            if created { "Added" } else { "Updated" },
            vm.name,
            vm.properties.storage_profile.os_disk.os_type,
            addresses(&vm),
            id.resource_group,
            vm.location
        )),
    }
}

async fn list(args: VmListArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    // Only explicit flags narrow the list; bootstrap defaults do not.
    let query = StatusQuery {
        resource_group: args.conn.resource_group.as_ref().map(ToString::to_string),
        location: args.conn.location.as_ref().map(ToString::to_string),
        state: None,
    };
    let list = ctx.client.jit_status(ctx.settings.subscription()?, &query).await?;
    if ctx.output == OutputFormat::Json {
        return output::json(&list);
    }
    let mut table = Table::new(&["NAME", "RESOURCE GROUP", "LOCATION", "OS", "ADDRESS", "JIT"]);
    for s in &list.value {
        table.row(vec![
            s.name.clone(),
            s.resource_group.clone(),
            s.location.clone(),
            s.os_type.clone(),
            output::or_dash(s.connection.address.as_deref()),
            state_label(&s.state),
        ]);
    }
    table.print_or("No virtual machines.")?;
    for note in unsupported_notes(&list.value) {
        output::line(&note)?;
    }
    Ok(())
}

/// The status entry of one machine, if the status endpoint has it. Used for
/// extra detail only, so a failure is logged, not fatal.
pub async fn find_status(ctx: &Ctx, id: &VmId, location: &str) -> Option<VmStatusOut> {
    let query = StatusQuery { resource_group: Some(id.resource_group.to_string()), location: Some(location.to_owned()), state: None };
    match ctx.client.jit_status(&id.subscription, &query).await {
        Ok(list) => list.value.into_iter().find(|s| arm_key(&s.id) == id.key()),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the JIT status");
            None
        }
    }
}

async fn show(args: VmNameArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let id = ctx.settings.vm_id(&args.name)?;
    let vm = ctx.client.get_vm(&id).await?;
    if ctx.output == OutputFormat::Json {
        return output::json(&vm);
    }
    let status = find_status(&ctx, &id, &vm.location).await;
    let mut rows = vec![
        ("Name", vm.name.clone()),
        ("ID", vm.id.clone()),
        ("Resource group", id.resource_group.to_string()),
        ("Location", vm.location.clone()),
        ("OS", vm.properties.storage_profile.os_disk.os_type.clone()),
        ("Addresses", addresses(&vm)),
    ];
    if let Some(s) = status {
        let mut jit = state_label(&s.state);
        if let Some(r) = &s.unsupported_reason {
            jit.push_str(&format!(" ({})", r.message));
        }
        rows.push(("JIT", jit));
        if let Some(p) = &s.policy_id {
            rows.push(("Policy", p.clone()));
        }
        if !s.connection.ports.is_empty() {
            let ports: Vec<String> =
                s.connection.ports.iter().map(|p| format!("{}/{} (max {})", p.number, p.protocol, p.max_request_access_duration)).collect();
            rows.push(("JIT ports", ports.join(", ")));
        }
        if let Some(g) = &s.gateway {
            let at = g.public_addresses.join(", ");
            rows.push(("Gateway", format!("{} at {at} (firewall: JIT ports are reached through it)", g.name)));
        }
        let through: Vec<String> =
            s.live_grants.iter().filter_map(|g| g.connect_to.as_ref().map(|to| format!("{to} (port {})", g.number))).collect();
        if !through.is_empty() {
            rows.push(("Connect to", through.join(", ")));
        }
        rows.push(("Requests (7d)", s.approved_requests_last_7_days.to_string()));
        rows.push(("Last access", s.last_access_time_utc.as_deref().map(output::human_time).unwrap_or_else(|| "-".to_owned())));
        rows.push(("Last user", output::or_dash(s.last_user.as_deref())));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let text: String = rows.iter().map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:"))).collect();
    output::emit(text.as_bytes())
}

async fn remove(args: VmNameArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let id = ctx.settings.vm_id(&args.name)?;
    let deleted = ctx.client.delete_vm(&id).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&serde_json::json!({ "id": id.to_string(), "deleted": deleted })),
        OutputFormat::Table if deleted => output::line(&format!("Removed VM {} from resource group '{}'.", id.name, id.resource_group)),
        OutputFormat::Table => {
            output::line(&format!("VM {} was not in resource group '{}'; nothing to remove.", id.name, id.resource_group))
        }
    }
}
