//! `ajar agent`: validated flags → `AgentConfig` → `ajar_agent::run` until
//! SIGTERM or SIGINT; or `--uninstall`.

use std::sync::Arc;

use anyhow::Context;

use ajar_agent::{AgentConfig, GatewayConfig};
use ajar_enforce::NftFirewall;

use super::serve::{init_logging, shutdown_signal};
use crate::error::UsageError;
use crate::flags::AgentArgs;

fn required<T: Clone>(value: &Option<T>, flag: &str) -> Result<T, UsageError> {
    value.clone().ok_or_else(|| UsageError::new(format!("{flag} is required")))
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let firewall = NftFirewall::new();
    if args.uninstall {
        ajar_agent::uninstall(&firewall)?;
        println!("removed table inet ajar");
        return Ok(());
    }
    tracing::info!(through = %firewall.describe(), "enforcing with nftables");
    let ca = required(&args.ca, "--ca")?;
    let config = AgentConfig {
        server: required(&args.server, "--server")?,
        ca_pem: std::fs::read(&ca).with_context(|| format!("reading the CA certificate {}", ca.display()))?,
        join_token: args.join_token.clone(),
        name: required(&args.name, "--name")?,
        resource_group: args.resource_group.clone(),
        location: args.location.clone(),
        os_type: args.os.as_wire().to_owned(),
        state_dir: args.state_dir.clone(),
        gateway: args
            .gateway
            .then(|| GatewayConfig { public_addresses: args.public_address.clone(), mapped_ports: args.mapped_ports.clone() }),
    };
    ajar_agent::run(config, Arc::new(firewall), shutdown_signal()?).await
}
