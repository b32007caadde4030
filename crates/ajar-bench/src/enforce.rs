//! `ajar-bench enforce`: how long one machine takes to apply N live grants as
//! one atomic nftables transaction, in a throwaway network namespace (root).

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use ajar_enforce::{DesiredState, Firewall, Grant, NftFirewall, Protected, Proto, Source};

#[derive(Args, Debug, Clone)]
pub struct EnforceArgs {
    /// Grant counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000,100000")]
    grants: Vec<u32>,
    /// Applies per count.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Internal: already inside the throwaway namespace; call `nft` directly, as an agent does.
    #[arg(long, hide = true)]
    inside: bool,
}

/// Deletes the namespace when dropped, also on error.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `n` grants for distinct, non-adjacent /32 sources in 10.0.0.0/8 on tcp/22, one hour each.
fn desired(n: u32) -> DesiredState {
    DesiredState {
        protected: vec![Protected { proto: Proto::Tcp, port: 22 }],
        grants: (0..n)
            .map(|i| Grant {
                id: format!("bench-{i}"),
                // Every other address, so that normalising cannot merge them into wider prefixes.
                source: Source::Net(std::net::IpAddr::from(Ipv4Addr::from(0x0a00_0000u32 + 2 * i)).into()),
                proto: Proto::Tcp,
                port: 22,
                timeout: Duration::from_secs(3600),
            })
            .collect(),
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Creates a throwaway namespace and runs this benchmark again inside it, so
/// that `nft` is called directly, as the agent on a machine calls it.
pub fn run(args: EnforceArgs) -> Result<()> {
    if args.inside {
        return measure(&args);
    }
    let ns = Netns(format!("ajar-bench-{}", std::process::id()));
    let added = Command::new("ip").args(["netns", "add", &ns.0]).status().context("running ip netns add (needs root and iproute2)")?;
    if !added.success() {
        bail!("ip netns add {} failed", ns.0);
    }
    let me = std::env::current_exe().context("finding this program")?;
    let counts: Vec<String> = args.grants.iter().map(ToString::to_string).collect();
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(me)
        .args(["enforce", "--inside", "--runs", &args.runs.to_string(), "--grants", &counts.join(",")])
        .status()
        .context("running the benchmark inside the namespace")?;
    if !status.success() {
        bail!("the benchmark inside the namespace failed");
    }
    Ok(())
}

fn measure(args: &EnforceArgs) -> Result<()> {
    let firewall = NftFirewall::new();
    println!("## Enforcement: applying live grants\n");
    println!(
        "- grants: distinct, non-adjacent /32 IPv4 sources on tcp/22 (one kernel set element each), one hour each; one `nft -j -f -` transaction replacing table `inet ajar`"
    );
    println!("- {} applies per count, in a fresh network namespace, `nft` called directly as the agent does\n", args.runs);
    println!("| live grants | median ms | max ms | normalise ms (median) |");
    println!("|---:|---:|---:|---:|");
    for &n in &args.grants {
        let state = desired(n);
        let mut applies = Vec::new();
        let mut normalise = Vec::new();
        for _ in 0..args.runs {
            let t = Instant::now();
            let elements = ajar_enforce::normalize::normalize(&state.grants);
            normalise.push(t.elapsed());
            drop(elements);
            let t = Instant::now();
            firewall.apply(&state).with_context(|| format!("applying {n} grants"))?;
            applies.push(t.elapsed());
        }
        applies.sort();
        normalise.sort();
        let median = applies[applies.len() / 2];
        let max = applies[applies.len() - 1];
        println!("| {n} | {:.1} | {:.1} | {:.1} |", millis(median), millis(max), millis(normalise[normalise.len() / 2]));
    }
    firewall.remove().context("removing the table")?;
    Ok(())
}
