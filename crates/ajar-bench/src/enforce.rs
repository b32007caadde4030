//! `ajar-bench enforce`: how long one machine takes to apply N live grants as
//! one atomic nftables transaction, and one gateway N live mappings, in a
//! throwaway network namespace (root).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use ajar_enforce::{Applied, DesiredState, Firewall, Grant, Mapping, NftFirewall, Protected, Proto, ServedPort, Source, change, ruleset};

#[derive(Args, Debug, Clone)]
pub struct EnforceArgs {
    /// Grant counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000,100000")]
    grants: Vec<u32>,
    /// Applies per count.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Live grant counts under which to measure one incremental change, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,10000,100000")]
    change_grants: Vec<u32>,
    /// Incremental changes per count (each adds one new grant).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=1000))]
    changes: u32,
    /// Live mapping counts to measure on one gateway, comma-separated (at most 10,000: one mapped port each
    /// in the default range 50000-59999).
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000", value_parser = clap::value_parser!(u32).range(0..=10_000))]
    mappings: Vec<u32>,
    /// Internal: already inside the throwaway namespace; apply as an agent does.
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
        ..DesiredState::default()
    }
}

/// Machines behind the benchmark's gateway, 10.1.0.1 … on tcp/22.
const GATEWAY_MACHINES: u32 = 100;

fn gateway_machine(i: u32) -> IpAddr {
    IpAddr::from(Ipv4Addr::from(0x0a01_0001u32 + i))
}

/// A gateway with `n` live mappings spread over [`GATEWAY_MACHINES`] machines, each from its own /32 source
/// (as in [`desired`]) on its own mapped port from 50000, one hour each.
fn gateway_desired(n: u32) -> DesiredState {
    DesiredState {
        protected: vec![Protected { proto: Proto::Tcp, port: 22 }],
        public: vec![IpAddr::from(Ipv4Addr::new(10, 0, 255, 1))],
        served: (0..GATEWAY_MACHINES).map(|m| ServedPort { address: gateway_machine(m), proto: Proto::Tcp, port: 22 }).collect(),
        mappings: (0..n).map(|i| mapping(i, 0x0a00_0000u32 + 2 * i, 50000 + i)).collect(),
        ..DesiredState::default()
    }
}

fn mapping(i: u32, source: u32, mapped_port: u32) -> Mapping {
    Mapping {
        id: format!("bench-{i}"),
        source: Source::Net(IpAddr::from(Ipv4Addr::from(source)).into()),
        proto: Proto::Tcp,
        mapped_port: u16::try_from(mapped_port).unwrap_or(u16::MAX),
        target: gateway_machine(i % GATEWAY_MACHINES),
        port: 22,
        timeout: Duration::from_secs(3600),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Creates a throwaway namespace and runs this benchmark again inside it, so
/// that nftables is reached as the agent on a machine reaches it.
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
    let join = |v: &[u32]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(me)
        .args(["enforce", "--inside", "--runs", &args.runs.to_string(), "--grants", &join(&args.grants)])
        .args(["--changes", &args.changes.to_string(), "--change-grants", &join(&args.change_grants), "--mappings", &join(&args.mappings)])
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
        "- grants: distinct, non-adjacent /32 IPv4 sources on tcp/22 (one kernel set element each), one hour each; one transaction replacing table `inet ajar`"
    );
    println!("- {} applies per count, in a fresh network namespace, through {} as the agent does\n", args.runs, firewall.describe());
    // The process holds the state and has built and sent its batch, as an agent holding N grants has.
    let (_, rss_before) = crate::memory_kib(std::process::id())?;
    println!(
        "- process memory before the first apply: RSS {:.1} MiB; after each count's applies, with its state still held: RSS and peak RSS\n",
        mib(rss_before)
    );
    println!("| live grants | median ms | max ms | normalise ms (median) | RSS MiB | peak RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|");
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
        let (hwm, rss) = crate::memory_kib(std::process::id())?;
        println!(
            "| {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            millis(median),
            millis(max),
            millis(normalise[normalise.len() / 2]),
            mib(rss),
            mib(hwm)
        );
        drop(state);
    }
    measure_changes(&firewall, args)?;
    measure_gateway(&firewall, args)?;
    firewall.remove().context("removing the table")?;
    Ok(())
}

/// The grant that the `i`-th change adds: a /32 in 11.0.0.0/8, apart from [`desired`]'s 10.0.0.0/8 ones.
fn extra_grant(i: u32) -> Grant {
    Grant {
        id: format!("change-{i}"),
        source: Source::Net(std::net::IpAddr::from(Ipv4Addr::from(0x0b00_0000u32 + 2 * i)).into()),
        proto: Proto::Tcp,
        port: 22,
        timeout: Duration::from_secs(3600),
    }
}

/// One incremental change (one new grant) on top of a table already holding N live grants, as the agent
/// makes it: `apply_change` from the state applied to the next (diff of both normalised states, then one
/// transaction with only the new element). Also the nft batch alone, to show where the time goes.
fn measure_changes(firewall: &NftFirewall, args: &EnforceArgs) -> Result<()> {
    println!("\n## Enforcement: one change on top of N live grants\n");
    println!(
        "- the table holds N grants (as above); each change adds one new /32 grant: `Firewall::apply_change` (normalise both states, diff, one transaction with the new element only)"
    );
    println!("- {} changes per count; \"diff\" is the pure part (normalise + diff), \"nft\" the batch alone\n", args.changes);
    println!("| live grants | change median ms | change max ms | diff ms (median) | nft ms (median) |");
    println!("|---:|---:|---:|---:|---:|");
    for &n in &args.change_grants {
        let mut from = desired(n);
        firewall.apply(&from).with_context(|| format!("applying {n} grants"))?;
        let (mut total, mut pure, mut batch) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..args.changes {
            let mut to = from.clone();
            to.grants.push(extra_grant(i));
            let t = Instant::now();
            let applied = firewall.apply_change(&from, &to).with_context(|| format!("change {i} on {n} grants"))?;
            total.push(t.elapsed());
            if !matches!(applied, Applied::Incremental { deleted: 0, added: 1 }) {
                bail!("change {i} on {n} grants was not one incremental add: {applied:?}");
            }
            // The same change's parts, timed apart: undo it (delete the element) and redo it as a bare batch.
            let t = Instant::now();
            let diff = change::diff(&from, &to).context("the protected set did not change")?;
            pure.push(t.elapsed());
            let undo = change::ElementDiff { deletes: diff.adds.iter().map(|e| e.key).collect(), adds: Vec::new(), ..Default::default() };
            firewall.apply_json("undoing the change", &ruleset::to_json(change::build(&undo)))?;
            let json = ruleset::to_json(change::build(&diff));
            let t = Instant::now();
            firewall.apply_json("redoing the change", &json)?;
            batch.push(t.elapsed());
            from = to;
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            millis(v[v.len() / 2])
        };
        let max = total.iter().max().copied().unwrap_or_default();
        println!("| {n} | {:.1} | {:.1} | {:.1} | {:.1} |", median(&mut total), millis(max), median(&mut pure), median(&mut batch));
    }
    Ok(())
}

/// A gateway applying N live mappings (the whole table, as after a restart or a drift repair), then one
/// more mapping on top of them through the incremental path its agent uses for a new grant.
fn measure_gateway(firewall: &NftFirewall, args: &EnforceArgs) -> Result<()> {
    println!("\n## Enforcement: live mappings on one gateway\n");
    println!(
        "- a gateway in front of {GATEWAY_MACHINES} machines (tcp/22 served on each); N mappings, each from its own /32 source on its own \
         mapped port (50000 + i) to one of the machines, one hour each: one address-map and one port-map element per mapping"
    );
    println!(
        "- full: `Firewall::apply` replacing table `inet ajar`, {} times per count; change: `apply_change` adding one more mapping, {} times\n",
        args.runs, args.changes
    );
    println!("| live mappings | full median ms | full max ms | change median ms | change max ms | RSS MiB | peak RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &args.mappings {
        let state = gateway_desired(n);
        let mut full = Vec::new();
        for _ in 0..args.runs {
            let t = Instant::now();
            firewall.apply(&state).with_context(|| format!("applying {n} mappings"))?;
            full.push(t.elapsed());
        }
        let mut from = state;
        let mut changes = Vec::new();
        for i in 0..args.changes {
            let mut to = from.clone();
            // Mapped ports past the live ones (the range wraps at 10,000 live mappings: reuse a low port of another
            // source, which is still a new element).
            to.mappings.push(mapping(n + i, 0x0b00_0000u32 + 2 * i, 50000 + (n + i) % 10_000));
            let t = Instant::now();
            firewall.apply_change(&from, &to).with_context(|| format!("change {i} on {n} mappings"))?;
            changes.push(t.elapsed());
            from = to;
        }
        full.sort();
        changes.sort();
        let (hwm, rss) = crate::memory_kib(std::process::id())?;
        println!(
            "| {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            millis(full[full.len() / 2]),
            millis(full[full.len() - 1]),
            millis(changes[changes.len() / 2]),
            millis(changes[changes.len() - 1]),
            mib(rss),
            mib(hwm)
        );
    }
    Ok(())
}
