//! `ajar revoke VM --port N...`: end access early (ajar's `revoke`, beyond Azure's API).

use ajar_api::agent::{RevokeIn, RevokePortIn, RevokeVmIn};

use super::Ctx;
use super::policy::{policy_for_vm, vm_location};
use crate::flags::RevokeArgs;
use crate::output::{self, OutputFormat};

/// The ports named, each once, in the order given.
fn unique(ports: &[u16]) -> Vec<u16> {
    let mut numbers: Vec<u16> = Vec::new();
    for n in ports {
        if !numbers.contains(n) {
            numbers.push(*n);
        }
    }
    numbers
}

pub fn revoke_body(vm_id: &str, ports: &[u16]) -> RevokeIn {
    RevokeIn {
        virtual_machines: vec![RevokeVmIn {
            id: vm_id.to_owned(),
            ports: unique(ports).into_iter().map(|number| RevokePortIn { number }).collect(),
        }],
    }
}

/// `revoked 1 grant(s) on web1 ports 22, 3389`.
pub fn describe(revoked: u64, vm_name: &str, ports: &[u16]) -> String {
    let list: Vec<String> = unique(ports).iter().map(ToString::to_string).collect();
    format!("revoked {revoked} grant(s) on {vm_name} ports {}\n", list.join(", "))
}

pub async fn run(args: RevokeArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let vm = ctx.settings.vm_id(&args.vm)?;
    let location = vm_location(&ctx, &vm).await?;
    let (policy_id, policy) = policy_for_vm(&ctx, &vm, &location, args.policy.as_deref()).await?;
    if policy.is_none() && args.policy.is_none() {
        anyhow::bail!(
            "VM {} is not configured for JIT: no policy in resource group '{}', location '{}' lists it, so it has no grants to revoke",
            vm.name,
            vm.resource_group,
            location
        );
    }
    let body = revoke_body(&vm.to_string(), &args.ports);
    let response = ctx.client.revoke(&policy_id, &body).await?;
    if ctx.output == OutputFormat::Json {
        return output::json(&response);
    }
    output::emit(describe(response.revoked, &vm.name.to_string(), &args.ports).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_body_and_the_line() {
        let body = revoke_body("/vm", &[22, 3389, 22]);
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"virtualMachines":[{"id":"/vm","ports":[{"number":22},{"number":3389}]}]})
        );
        assert_eq!(describe(2, "web1", &[22, 3389, 22]), "revoked 2 grant(s) on web1 ports 22, 3389\n");
    }
}
