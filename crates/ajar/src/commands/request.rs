//! `ajar request VM --port N...`: ask for access (the Azure "initiate").

use std::net::IpAddr;

use time::OffsetDateTime;

use ajar_api::jit::{InitiateIn, InitiatePortIn, InitiateVmIn, JitNetworkAccessPolicyVirtualMachine, JitNetworkAccessRequest};
use ajar_api::wire_time;
use ajar_domain::gateway::{address_for, connect_to};
use ajar_domain::ids::arm_key;
use ajar_domain::prefix::SourcePrefix;

use super::Ctx;
use super::policy::{policy_holding_vm, sources};
use super::vm::find_status;
use crate::flags::RequestArgs;
use crate::output::{self, OutputFormat};
use crate::spec::{SourceArg, default_max, to_iso};

/// The initiate body for `ports`. Without `--for` or `--until`, each port
/// asks for its own maximum from the policy (`rules`); a port the policy does
/// not have asks for Azure's default, and the server says it is not
/// configured, naming the ports that are.
pub fn initiate_body(vm_id: &str, args: &RequestArgs, rules: Option<&JitNetworkAccessPolicyVirtualMachine>) -> InitiateIn {
    let mut numbers: Vec<u16> = Vec::new();
    for n in &args.ports {
        if !numbers.contains(n) {
            numbers.push(*n);
        }
    }
    let source = match args.from {
        SourceArg::MyIp => None,
        SourceArg::Prefix(p) => Some(p.to_string()),
    };
    let ports = numbers
        .into_iter()
        .map(|number| {
            let (duration, end_time_utc) = match (args.duration, args.until) {
                (Some(d), _) => (Some(to_iso(d)), None),
                (None, Some(t)) => (None, Some(wire_time::format(t))),
                (None, None) => {
                    let max = rules
                        .and_then(|r| r.ports.iter().find(|p| p.number == number))
                        .map(|p| p.max_request_access_duration.clone())
                        .unwrap_or_else(|| to_iso(default_max()));
                    (Some(max), None)
                }
            };
            InitiatePortIn {
                number: i64::from(number),
                duration,
                end_time_utc,
                allowed_source_address_prefix: source.clone(),
                allowed_source_address_prefixes: None,
            }
        })
        .collect();
    InitiateIn { virtual_machines: vec![InitiateVmIn { id: vm_id.to_owned(), ports }], justification: args.justification.clone() }
}

pub async fn run(args: RequestArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&args.conn)?;
    let vm = ctx.settings.vm_id(&args.vm)?;
    // Found through the JIT policies alone: a requester needs to read those, not the machine.
    let (policy_id, policy) = policy_holding_vm(&ctx, &vm, args.policy.as_deref()).await?;
    let vm_text = vm.to_string();
    let rules = policy.properties.virtual_machines.iter().find(|v| arm_key(&v.id) == vm.key());
    let body = initiate_body(&vm_text, &args, rules);
    let response = ctx.client.initiate(&policy_id, &body).await?;
    if ctx.output == OutputFormat::Json {
        return output::json(&response);
    }
    let status = find_status(&ctx, &vm, &policy.location).await;
    let address = status.as_ref().and_then(|s| s.connection.address.clone());
    // The gateway's addresses (an IPv6 client is told the IPv6 one), else the policy's publicIpAddress.
    let gateway: Vec<IpAddr> = match status.as_ref().and_then(|s| s.gateway.as_ref()) {
        Some(g) => g.public_addresses.iter().filter_map(|a| a.parse().ok()).collect(),
        None => rules.and_then(|r| r.public_ip_address.as_deref()).and_then(|a| a.parse().ok()).into_iter().collect(),
    };
    let mut text = describe(&response, rules, address.as_deref(), &gateway, OffsetDateTime::now_utc());
    // The grant is recorded, but only an agent opens the port: say so.
    if status.is_some_and(|s| s.enforcement == "none") {
        text.push_str(&format!("Note: no ajar agent serves {} yet; the port opens once one does.\n", args.vm));
    }
    output::emit(text.as_bytes())
}

/// What was opened, until when, and where to connect.
pub fn describe(
    response: &JitNetworkAccessRequest,
    rules: Option<&JitNetworkAccessPolicyVirtualMachine>,
    address: Option<&str>,
    gateway: &[IpAddr],
    now: OffsetDateTime,
) -> String {
    let mut text = String::new();
    for vm in &response.virtual_machines {
        let name = output::short_name(&vm.id);
        for p in &vm.ports {
            let protocol =
                rules.and_then(|r| r.ports.iter().find(|rule| rule.number == p.number)).map(|r| r.protocol.as_str()).unwrap_or("TCP");
            let until = match wire_time::parse(&p.end_time_utc) {
                Ok(t) => format!("{} ({})", output::short_time(t), output::relative(t, now)),
                Err(_) => p.end_time_utc.clone(),
            };
            let from = sources(p.allowed_source_address_prefix.as_deref(), p.allowed_source_address_prefixes.as_deref());
            let verb = if p.status == "Initiated" { "Opened".to_owned() } else { format!("Requested ({} {}):", p.status, p.status_reason) };
            text.push_str(&format!("{verb} port {}/{protocol} on {name} for {from} until {until}.\n", p.number));
            // A mapped port is on the gateway, the machine's port on the machine.
            let prefixes: Vec<SourcePrefix> = p
                .allowed_source_address_prefixes
                .iter()
                .flatten()
                .chain(&p.allowed_source_address_prefix)
                .filter_map(|s| s.parse().ok())
                .collect();
            match (p.mapped_port, address_for(gateway, &prefixes), address) {
                (Some(mapped), Some(ip), _) => {
                    text.push_str(&format!("  Connect to {} (through the gateway: firewall)\n", connect_to(ip, mapped)))
                }
                (None, _, Some(addr)) => text.push_str(&format!("  Connect to {}\n", host_port(addr, p.number))),
                _ => {}
            }
        }
    }
    if let Some(j) = &response.justification {
        text.push_str(&format!("Justification: {j}\n"));
    }
    text
}

/// `10.0.0.4:22`, or `[fd00::4]:22` for IPv6: as the server and the dashboard write it.
fn host_port(addr: &str, port: u16) -> String {
    match addr.parse() {
        Ok(ip) => connect_to(ip, port),
        // Not an address (the wire promises one): as it came, rather than nothing.
        Err(_) => format!("{addr}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use time::macros::datetime;

    use ajar_api::jit::{JitNetworkAccessPortRule, JitNetworkAccessRequestPort, JitNetworkAccessRequestVirtualMachine};

    use super::*;
    use crate::flags::{Cli, Command};

    fn args(extra: &[&str]) -> RequestArgs {
        let cli = Cli::try_parse_from(["ajar", "request", "web1"].iter().chain(extra)).unwrap();
        let Command::Request(r) = cli.command else { panic!("not request") };
        r
    }

    fn rules() -> JitNetworkAccessPolicyVirtualMachine {
        JitNetworkAccessPolicyVirtualMachine {
            id: "/vm".into(),
            ports: vec![JitNetworkAccessPortRule {
                number: 22,
                protocol: "TCP".into(),
                allowed_source_address_prefix: Some("*".into()),
                allowed_source_address_prefixes: None,
                max_request_access_duration: "PT1H".into(),
            }],
            public_ip_address: None,
        }
    }

    fn check(extra: &[&str], expected: serde_json::Value) {
        let body = initiate_body("/vm", &args(extra), Some(&rules()));
        assert_eq!(serde_json::to_value(&body).unwrap(), expected, "{extra:?}");
    }

    #[test]
    fn builds_initiate_bodies() {
        check(&["--port", "22"], serde_json::json!({"virtualMachines":[{"id":"/vm","ports":[{"number":22,"duration":"PT1H"}]}]}));
        check(
            &["--port", "22,3389,22", "--for", "30m", "--from", "10.0.0.0/8", "--justification", "fix"],
            serde_json::json!({"virtualMachines":[{"id":"/vm","ports":[
                {"number":22,"duration":"PT30M","allowedSourceAddressPrefix":"10.0.0.0/8"},
                {"number":3389,"duration":"PT30M","allowedSourceAddressPrefix":"10.0.0.0/8"}]}],"justification":"fix"}),
        );
        check(
            &["--port", "22", "--until", "2026-01-01T12:00:00Z"],
            serde_json::json!({"virtualMachines":[{"id":"/vm","ports":[{"number":22,"endTimeUtc":"2026-01-01T12:00:00.0000000Z"}]}]}),
        );
        check(&["--port", "80"], serde_json::json!({"virtualMachines":[{"id":"/vm","ports":[{"number":80,"duration":"PT3H"}]}]}));
    }

    #[test]
    fn describes_what_was_opened() {
        let response = JitNetworkAccessRequest {
            virtual_machines: vec![JitNetworkAccessRequestVirtualMachine {
                id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web1".into(),
                ports: vec![JitNetworkAccessRequestPort {
                    number: 22,
                    allowed_source_address_prefix: Some("203.0.113.7".into()),
                    allowed_source_address_prefixes: None,
                    end_time_utc: "2026-01-01T13:00:00.0000000Z".into(),
                    status: "Initiated".into(),
                    status_reason: "UserRequested".into(),
                    mapped_port: None,
                }],
            }],
            start_time_utc: "2026-01-01T12:00:00.0000000Z".into(),
            requestor: "admin".into(),
            justification: None,
        };
        let text = describe(&response, Some(&rules()), Some("10.0.0.4"), &[], datetime!(2026-01-01 12:00 UTC));
        assert_eq!(text, "Opened port 22/TCP on web1 for 203.0.113.7 until 2026-01-01 13:00:00Z (in 1h).\n  Connect to 10.0.0.4:22\n");
        assert_eq!(host_port("fd00::4", 22), "[fd00::4]:22");
        let mut through = response.clone();
        through.virtual_machines[0].ports[0].mapped_port = Some(50022);
        let gateway = ["203.0.113.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let text = describe(&through, Some(&rules()), Some("203.0.113.1"), &gateway, datetime!(2026-01-01 12:00 UTC));
        assert!(text.ends_with("  Connect to 203.0.113.1:50022 (through the gateway: firewall)\n"), "{text}");
        through.virtual_machines[0].ports[0].allowed_source_address_prefix = Some("2001:db8:7::7".into());
        let text = describe(&through, Some(&rules()), Some("203.0.113.1"), &gateway, datetime!(2026-01-01 12:00 UTC));
        assert!(
            text.ends_with("  Connect to [2001:db8::1]:50022 (through the gateway: firewall)\n"),
            "an IPv6 client is told the IPv6 address: {text}"
        );
    }
}
