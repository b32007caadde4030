//! `ajar policy set|enable|show|list|remove|remove-vm`: JIT policies.
//!
//! Azure's PUT replaces a policy's whole VM list, so changing one machine is a
//! read-modify-write: GET the policy, change that machine's entry, PUT it back
//! with every other machine as it was, on condition (`If-Match` with the etag
//! read) that nobody changed it in between.

use time::OffsetDateTime;

use ajar_api::ajar_v1::EnableIn;
use ajar_api::jit::{JitNetworkAccessPolicy, JitNetworkAccessPortRule, PolicyIn, PolicyVmIn, unchanged_since};
use ajar_client::{ClientError, PolicyScope};
use ajar_domain::{Location, PolicyId, VmId};

use super::Ctx;
use crate::error::UsageError;
use crate::flags::{PolicyCommand, PolicyEnableArgs, PolicyListArgs, PolicyNameArgs, PolicyRemoveVmArgs, PolicySetArgs};
use crate::output::{self, OutputFormat, Table};
use crate::settings::policy_id_for;

pub const DEFAULT_POLICY: &str = "default";

pub async fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Set(args) => set(args).await,
        PolicyCommand::Enable(args) => enable(args).await,
        PolicyCommand::Show(args) => show(args).await,
        PolicyCommand::List(args) => list(args).await,
        PolicyCommand::Remove(args) => remove(args).await,
        PolicyCommand::RemoveVm(args) => remove_vm(args).await,
    }
}

/// ARM IDs compare ignoring case in any letters.
fn same_id(a: &str, b: &str) -> bool {
    ajar_domain::ids::arm_key(a) == ajar_domain::ids::arm_key(b)
}

/// Puts `entry` in place of the machine's existing entry, or adds it.
pub fn upsert_vm(put: &mut PolicyIn, entry: PolicyVmIn) {
    let vms = &mut put.properties.virtual_machines;
    match vms.iter_mut().find(|v| same_id(&v.id, &entry.id)) {
        Some(existing) => {
            // A linked gateway address is the policy's business, not the ports'.
            let public_ip = existing.public_ip_address.take();
            *existing = PolicyVmIn { public_ip_address: entry.public_ip_address.or(public_ip), ..entry };
        }
        None => vms.push(entry),
    }
}

/// Drops the machine's entry; false when it had none.
pub fn remove_vm_entry(put: &mut PolicyIn, vm: &str) -> bool {
    let vms = &mut put.properties.virtual_machines;
    let before = vms.len();
    vms.retain(|v| !same_id(&v.id, vm));
    vms.len() != before
}

/// A write refused because the policy changed after it was read: nothing was written, and the
/// command, run again, applies its change to the policy as it is now.
fn changed_meanwhile(e: ClientError, id: &PolicyId) -> anyhow::Error {
    let changed = e.code() == Some("PreconditionFailed");
    let e = anyhow::Error::from(e);
    if changed {
        e.context(format!(
            "policy '{}' changed while this command ran, so nothing was written; run it again to apply the change to it as it is now",
            id.name
        ))
    } else {
        e
    }
}

/// The machine's location: policies live in their machines' location.
pub async fn vm_location(ctx: &Ctx, vm: &VmId) -> anyhow::Result<Location> {
    let found = ctx.client.get_vm(vm).await?;
    found.location.parse().map_err(|e| anyhow::anyhow!("the server reported VM {} in location '{}': {e}", vm.name, found.location))
}

/// The policy of `vm`'s resource group that lists it (the one named, or else preferring "default"),
/// found by reading JIT policies only.
pub async fn policy_holding_vm(ctx: &Ctx, vm: &VmId, name: Option<&str>) -> anyhow::Result<(PolicyId, JitNetworkAccessPolicy)> {
    let list = ctx.client.list_policies_in_resource_group(&vm.subscription, &vm.resource_group).await?;
    let vm_text = vm.to_string();
    let mut holding: Vec<JitNetworkAccessPolicy> = list
        .value
        .into_iter()
        .filter(|p| name.is_none_or(|n| p.name.eq_ignore_ascii_case(n)))
        .filter(|p| p.properties.virtual_machines.iter().any(|v| same_id(&v.id, &vm_text)))
        .collect();
    holding.sort_by_key(|p| !p.name.eq_ignore_ascii_case(DEFAULT_POLICY));
    let Some(policy) = holding.into_iter().next() else {
        let which = name.map(|n| format!("policy '{n}'")).unwrap_or_else(|| "no policy".to_owned());
        anyhow::bail!(
            "VM {} is not configured for JIT: {which} in resource group '{}' lists it (that you may read); enable it first with `ajar policy enable {} --defaults`",
            vm.name,
            vm.resource_group,
            vm.name
        );
    };
    let id = policy.id.parse::<PolicyId>().map_err(|e| anyhow::anyhow!("the server sent policy ID '{}': {e}", policy.id))?;
    Ok((id, policy))
}

/// The policy that holds `vm` in its resource group and location: the one
/// named, else the one that lists the machine (preferring "default"), else
/// "default" (which may not exist yet).
pub async fn policy_for_vm(
    ctx: &Ctx,
    vm: &VmId,
    location: &Location,
    name: Option<&str>,
) -> anyhow::Result<(PolicyId, Option<JitNetworkAccessPolicy>)> {
    if let Some(name) = name {
        let id = policy_id_for(vm, location, name)?;
        let policy = ctx.client.find_policy(&id).await?;
        return Ok((id, policy));
    }
    let list = ctx.client.list_policies_in_resource_group_and_location(&vm.subscription, &vm.resource_group, location).await?;
    let vm_text = vm.to_string();
    let mut holding: Vec<JitNetworkAccessPolicy> =
        list.value.into_iter().filter(|p| p.properties.virtual_machines.iter().any(|v| same_id(&v.id, &vm_text))).collect();
    holding.sort_by_key(|p| !p.name.eq_ignore_ascii_case(DEFAULT_POLICY));
    match holding.into_iter().next() {
        Some(p) => {
            let id = match p.id.parse::<PolicyId>() {
                Ok(id) => id,
                Err(_) => policy_id_for(vm, location, &p.name)?,
            };
            Ok((id, Some(p)))
        }
        // Not in any policy yet: it joins "default", keeping what that already holds.
        None => {
            let id = policy_id_for(vm, location, DEFAULT_POLICY)?;
            let existing = ctx.client.find_policy(&id).await?;
            Ok((id, existing))
        }
    }
}

/// `*` or `10.0.0.0/8;192.0.2.7`.
pub fn sources(one: Option<&str>, list: Option<&[String]>) -> String {
    match (one, list) {
        (Some(p), _) => p.to_owned(),
        (None, Some(l)) if !l.is_empty() => l.join(";"),
        _ => "-".to_owned(),
    }
}

fn port_cells(p: &JitNetworkAccessPortRule) -> [String; 4] {
    [
        p.number.to_string(),
        p.protocol.clone(),
        sources(p.allowed_source_address_prefix.as_deref(), p.allowed_source_address_prefixes.as_deref()),
        p.max_request_access_duration.clone(),
    ]
}

/// `22/TCP,3389/TCP`.
fn port_list(ports: &[JitNetworkAccessPortRule]) -> String {
    ports.iter().map(|p| format!("{}/{}", p.number, p.protocol)).collect::<Vec<_>>().join(",")
}

/// The resource group of a policy, from its ID.
fn resource_group_of(policy: &JitNetworkAccessPolicy) -> String {
    policy.id.parse::<PolicyId>().map(|id| id.resource_group.to_string()).unwrap_or_else(|_| "-".to_owned())
}

fn print_policy(policy: &JitNetworkAccessPolicy, now: OffsetDateTime) -> anyhow::Result<()> {
    let mut text = format!(
        "Policy:          {}\nResource group:  {}\nLocation:        {}\nID:              {}\nCut on revoke:   {}\n\n",
        policy.name,
        resource_group_of(policy),
        policy.location,
        policy.id,
        if policy.properties.cut_connections_on_revoke { "yes" } else { "no" }
    );
    let mut ports = Table::new(&["VM", "PORT", "PROTOCOL", "ALLOWED SOURCES", "MAX DURATION"]);
    for vm in &policy.properties.virtual_machines {
        for p in &vm.ports {
            let [number, protocol, from, max] = port_cells(p);
            ports.row(vec![output::short_name(&vm.id).to_owned(), number, protocol, from, max]);
        }
    }
    text.push_str(&if ports.is_empty() { "No virtual machines.\n".to_owned() } else { ports.render() });
    if !policy.properties.requests.is_empty() {
        let mut requests = Table::new(&["STARTED", "REQUESTOR", "VM", "PORT", "SOURCE", "ENDS", "STATUS"]);
        for r in &policy.properties.requests {
            for vm in &r.virtual_machines {
                for p in &vm.ports {
                    let ends = match ajar_api::wire_time::parse(&p.end_time_utc) {
                        Ok(t) if p.status == "Initiated" => {
                            format!("{} ({})", output::short_time(t), output::relative(t, now))
                        }
                        _ => output::human_time(&p.end_time_utc),
                    };
                    let status = if p.status == "Initiated" { p.status.clone() } else { format!("{} ({})", p.status, p.status_reason) };
                    requests.row(vec![
                        output::human_time(&r.start_time_utc),
                        r.requestor.clone(),
                        output::short_name(&vm.id).to_owned(),
                        p.number.to_string(),
                        sources(p.allowed_source_address_prefix.as_deref(), p.allowed_source_address_prefixes.as_deref()),
                        ends,
                        status,
                    ]);
                }
            }
        }
        text.push_str(&format!("\nRequests ({}):\n", policy.properties.requests.len()));
        text.push_str(&requests.render());
    }
    output::emit(text.as_bytes())
}

fn emit_policy(ctx: &Ctx, policy: &JitNetworkAccessPolicy) -> anyhow::Result<()> {
    match ctx.output {
        OutputFormat::Json => output::json(policy),
        OutputFormat::Table => print_policy(policy, OffsetDateTime::now_utc()),
    }
}

async fn set(args: PolicySetArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let vm = ctx.settings.vm_id(&args.vm)?;
    let location = vm_location(&ctx, &vm).await?;
    // Without --policy, the machine's entry is edited where it already is: a
    // machine may be in only one policy, so "default" would be refused.
    let (id, existing) = policy_for_vm(&ctx, &vm, &location, args.policy.as_deref()).await?;
    let mut body = existing.as_ref().map(PolicyIn::from).unwrap_or_default();
    if let Some(cut) = args.cut_connections_on_revoke {
        body.properties.cut_connections_on_revoke = cut;
    }
    upsert_vm(
        &mut body,
        PolicyVmIn { id: vm.to_string(), ports: args.ports.iter().map(|p| p.to_rule()).collect(), public_ip_address: None },
    );
    let policy =
        ctx.client.put_policy(&id, &body, Some(&unchanged_since(existing.as_ref()))).await.map_err(|e| changed_meanwhile(e, &id))?;
    emit_policy(&ctx, &policy)
}

async fn enable(args: PolicyEnableArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let vms = args.vms.iter().map(|v| ctx.settings.vm_id(v)).collect::<Result<Vec<_>, UsageError>>()?;
    let body = EnableIn {
        virtual_machines: vms.iter().map(ToString::to_string).collect(),
        policy_name: args.policy.clone(),
        ports: if args.defaults { None } else { Some(args.ports.iter().map(|p| p.to_rule()).collect()) },
    };
    let out = ctx.client.enable(&body).await?;
    if ctx.output == OutputFormat::Json {
        return output::json(&out);
    }
    let wanted: Vec<String> = vms.iter().map(ToString::to_string).collect();
    let mut table = Table::new(&["VM", "POLICY", "RESOURCE GROUP", "LOCATION", "PORT", "PROTOCOL", "ALLOWED SOURCES", "MAX DURATION"]);
    for policy in &out.value {
        for vm in policy.properties.virtual_machines.iter().filter(|v| wanted.iter().any(|w| same_id(w, &v.id))) {
            for p in &vm.ports {
                let [number, protocol, from, max] = port_cells(p);
                table.row(vec![
                    output::short_name(&vm.id).to_owned(),
                    policy.name.clone(),
                    resource_group_of(policy),
                    policy.location.clone(),
                    number,
                    protocol,
                    from,
                    max,
                ]);
            }
        }
    }
    output::line(&format!("Enabled JIT on {} machine(s).", vms.len()))?;
    table.print_or("")
}

async fn show(args: PolicyNameArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let id = ctx.settings.policy_id(&args.name)?;
    let policy = ctx.client.get_policy(&id).await?;
    emit_policy(&ctx, &policy)
}

async fn list(args: PolicyListArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    // Only explicit flags narrow the list; bootstrap defaults do not.
    let scope = PolicyScope {
        subscription: ctx.settings.subscription()?.clone(),
        resource_group: args.conn.resource_group.clone(),
        location: args.conn.location.clone(),
    };
    let list = ctx.client.list_policies(&scope).await?;
    if ctx.output == OutputFormat::Json {
        return output::json(&list);
    }
    let mut table = Table::new(&["NAME", "RESOURCE GROUP", "LOCATION", "VMS", "PORTS", "REQUESTS"]);
    for p in &list.value {
        let vms = &p.properties.virtual_machines;
        let ports: Vec<String> = vms.iter().map(|v| format!("{}: {}", output::short_name(&v.id), port_list(&v.ports))).collect();
        table.row(vec![
            p.name.clone(),
            resource_group_of(p),
            p.location.clone(),
            vms.len().to_string(),
            ports.join("; "),
            p.properties.requests.len().to_string(),
        ]);
    }
    table.print_or("No JIT policies.")
}

async fn remove(args: PolicyNameArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let id = ctx.settings.policy_id(&args.name)?;
    let deleted = ctx.client.delete_policy(&id, None).await?;
    match ctx.output {
        OutputFormat::Json => output::json(&serde_json::json!({ "id": id.to_string(), "deleted": deleted })),
        OutputFormat::Table if deleted => {
            output::line(&format!("Deleted policy '{}' (resource group '{}', location '{}').", id.name, id.resource_group, id.location))
        }
        OutputFormat::Table => output::line(&format!(
            "Policy '{}' did not exist (resource group '{}', location '{}'); nothing to delete.",
            id.name, id.resource_group, id.location
        )),
    }
}

async fn remove_vm(args: PolicyRemoveVmArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let vm = ctx.settings.vm_id(&args.vm)?;
    let location = vm_location(&ctx, &vm).await?;
    let (id, policy) = policy_for_vm(&ctx, &vm, &location, args.policy.as_deref()).await?;
    let Some(policy) = policy else {
        anyhow::bail!(
            "VM {} is in no JIT policy in resource group '{}', location '{}'; nothing to remove",
            vm.name,
            vm.resource_group,
            location
        );
    };
    let mut body = PolicyIn::from(&policy);
    if !remove_vm_entry(&mut body, &vm.to_string()) {
        anyhow::bail!("VM {} is not in policy '{}'; nothing to remove", vm.name, id.name);
    }
    let expected = unchanged_since(Some(&policy));
    if body.properties.virtual_machines.is_empty() {
        // A policy needs at least one machine: the last one out deletes it.
        ctx.client.delete_policy(&id, Some(&expected)).await.map_err(|e| changed_meanwhile(e, &id))?;
        return match ctx.output {
            OutputFormat::Json => output::json(&serde_json::json!({ "id": id.to_string(), "deleted": true, "policy": null })),
            OutputFormat::Table => output::line(&format!(
                "Removed VM {} from policy '{}'; it was the last machine, so the policy was deleted.",
                vm.name, id.name
            )),
        };
    }
    let updated = ctx.client.put_policy(&id, &body, Some(&expected)).await.map_err(|e| changed_meanwhile(e, &id))?;
    match ctx.output {
        OutputFormat::Json => output::json(&serde_json::json!({ "id": id.to_string(), "deleted": false, "policy": updated })),
        OutputFormat::Table => output::line(&format!(
            "Removed VM {} from policy '{}'; {} machine(s) remain.",
            vm.name,
            id.name,
            updated.properties.virtual_machines.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use ajar_api::jit::{PolicyPropertiesIn, PortRuleIn};

    use super::*;

    fn entry(id: &str, port: i64, public_ip: Option<&str>) -> PolicyVmIn {
        PolicyVmIn {
            id: id.to_owned(),
            ports: vec![PortRuleIn {
                number: port,
                protocol: "TCP".into(),
                allowed_source_address_prefix: Some("*".into()),
                allowed_source_address_prefixes: None,
                max_request_access_duration: "PT3H".into(),
            }],
            public_ip_address: public_ip.map(str::to_owned),
        }
    }

    fn summary(put: &PolicyIn) -> Vec<String> {
        put.properties
            .virtual_machines
            .iter()
            .map(|v| {
                format!(
                    "{}:{}:{}",
                    v.id,
                    v.ports.iter().map(|p| p.number.to_string()).collect::<Vec<_>>().join(","),
                    v.public_ip_address.as_deref().unwrap_or("-")
                )
            })
            .collect()
    }

    #[test]
    fn read_modify_write_keeps_other_machines() {
        let mut put = PolicyIn {
            kind: Some("Basic".into()),
            properties: PolicyPropertiesIn {
                virtual_machines: vec![entry("/a", 22, Some("1.2.3.4")), entry("/b", 3389, None)],
                ..PolicyPropertiesIn::default()
            },
            ..PolicyIn::default()
        };
        upsert_vm(&mut put, entry("/A", 2222, None));
        assert_eq!(summary(&put), ["/A:2222:1.2.3.4", "/b:3389:-"]);
        upsert_vm(&mut put, entry("/c", 22, None));
        assert_eq!(summary(&put), ["/A:2222:1.2.3.4", "/b:3389:-", "/c:22:-"]);
        assert!(remove_vm_entry(&mut put, "/B"));
        assert!(!remove_vm_entry(&mut put, "/nope"));
        assert_eq!(summary(&put), ["/A:2222:1.2.3.4", "/c:22:-"]);
        let json = serde_json::to_value(&put).unwrap();
        assert_eq!(json["kind"], "Basic");
        assert_eq!(json["properties"]["virtualMachines"][0]["publicIpAddress"], "1.2.3.4");
    }

    #[test]
    fn sources_read_well() {
        assert_eq!(sources(Some("*"), None), "*");
        assert_eq!(sources(None, Some(&["10.0.0.0/8".into(), "192.0.2.7".into()])), "10.0.0.0/8;192.0.2.7");
        assert_eq!(sources(None, None), "-");
    }
}
