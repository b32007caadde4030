//! Putting a machine behind a gateway, or taking it out.

use crate::gateway::{Gateway, LiveMapping};
use crate::inventory::Vm;
use crate::problem::{ErrorCode, Problem};

/// Whether `vm` moves to `to` (a gateway, or none). Refused while grants through its current gateway
/// are live (the gateway holding their mappings would no longer be told to end them, and the new one
/// never opened them: revoke them first), and when `to` has no public address of a family the machine
/// has an address in (it could forward nothing). `false`: it is there already.
pub fn plan_set_gateway(vm: &Vm, to: Option<&Gateway>, live: &[LiveMapping]) -> Result<bool, Problem> {
    let current = vm.gateway.as_ref().map(|g| g.key());
    if current == to.map(|g| g.name.key()) {
        return Ok(false);
    }
    if let Some(first) = live.first() {
        return Err(Problem::new(
            ErrorCode::Conflict,
            None,
            format!(
                "virtual machine '{}' has {} live grant(s) through gateway '{}' (e.g. request {} on port {}); revoke them or let them end first",
                vm.id,
                live.len(),
                vm.gateway.as_ref().map(ToString::to_string).unwrap_or_default(),
                first.request_id,
                first.number
            ),
        )
        .about(&vm.id));
    }
    if let Some(gateway) = to
        && !vm.private_addresses.iter().any(|a| gateway.public.iter().any(|p| p.is_ipv4() == a.is_ipv4()))
    {
        let families = |v: &[std::net::IpAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return Err(Problem::new(
            ErrorCode::InvalidVirtualMachine,
            None,
            format!(
                "gateway '{}' (public {}) cannot forward to virtual machine '{}': the machine has no address of the same family ({}); give it one first (ajar vm add --address)",
                gateway.name,
                families(&gateway.public),
                vm.id,
                if vm.private_addresses.is_empty() { "none known".to_owned() } else { families(&vm.private_addresses) }
            ),
        )
        .about(&vm.id));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::DEFAULT_MAPPED_PORTS;
    use crate::inventory::{AgentInfo, EnforcementPoint, OsType};
    use crate::test_ids::{NOW, vm};

    fn machine(addresses: &[&str], gateway: Option<&str>) -> Vm {
        Vm {
            id: vm("db1"),
            location: "local".parse().unwrap(),
            os: OsType::Linux,
            private_addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            enforcement: EnforcementPoint::None,
            gateway: gateway.map(|g| g.parse().unwrap()),
        }
    }

    fn gateway(name: &str, public: &str) -> Gateway {
        Gateway {
            name: name.parse().unwrap(),
            public: vec![public.parse().unwrap()],
            mapped_ports: DEFAULT_MAPPED_PORTS,
            agent: AgentInfo { agent_id: "a".into(), version: "1".into(), nftables: Ok(()), last_seen: NOW, applied: None },
        }
    }

    #[test]
    fn assignments() {
        let gw = gateway("gw", "203.0.113.1");
        let live = [LiveMapping { request_id: "r1".into(), vm: vm("db1"), number: 22, mapped_port: 50022 }];
        let code = |r: Result<bool, Problem>| r.map_err(|p| p.code);
        assert_eq!(code(plan_set_gateway(&machine(&["10.0.3.2"], None), Some(&gw), &[])), Ok(true));
        assert_eq!(
            code(plan_set_gateway(&machine(&["10.0.3.2"], Some("GW")), Some(&gw), &live)),
            Ok(false),
            "no change, whatever the case"
        );
        assert_eq!(code(plan_set_gateway(&machine(&["10.0.3.2"], Some("gw")), None, &[])), Ok(true));
        assert_eq!(code(plan_set_gateway(&machine(&["10.0.3.2"], Some("gw")), None, &live)), Err(ErrorCode::Conflict));
        assert_eq!(code(plan_set_gateway(&machine(&["fd00::2"], None), Some(&gw), &[])), Err(ErrorCode::InvalidVirtualMachine));
        assert_eq!(code(plan_set_gateway(&machine(&[], None), Some(&gw), &[])), Err(ErrorCode::InvalidVirtualMachine));
    }
}
