//! `ajar-bench authz`: the cost of the authorization decision itself, in
//! process, with no server, store or network.
//!
//! Builds `--roles` custom roles (action lists drawn from the catalog, with
//! wildcards and, for some, notActions) next to the built-ins, and
//! `--assignments` role assignments spread over `--principals` principals
//! (users and groups) at root, subscription, resource-group and VM scopes,
//! with a heavy tail of principals holding many assignments. Then it times:
//!
//! - (a) `AccessIndex::new` over all of them: what the server pays once each
//!   time a write to principals, tokens, roles or assignments moves the store's
//!   access version;
//! - (b) `AccessIndex::check` for `--checks` random decisions (a user with 1–3
//!   of its groups, a catalog action, a random VM as scope), each timed alone;
//! - (c) the server's cached path as it runs per request when the access
//!   version has not moved: the version read, an `RwLock` read of the cached
//!   index, an `Arc` clone and the check;
//! - (d) (c) plus what `authorize_action` adds around it: parsing the scope
//!   string and collecting the caller's principal IDs;
//! - (e) (d) on two threads at once, sharing the lock, as two request workers do.
//!
//! Every decision is timed with `Instant` into an HDR histogram in ns; the
//! timer's own cost (two `Instant::now()` with nothing between) is reported
//! as the first row and is included in every other row.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ajar_domain::access::{AccessIndex, CATALOG, RoleAssignment, RoleDefinition, Scope, builtin_roles};
use anyhow::{Context, Result, anyhow};
use clap::Args;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The built-in roles' GUIDs that custom assignments also draw on.
const OWNER_ID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const READER_ID: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const JIT_REQUESTER_ID: &str = "df903be8-ea06-4b3a-a014-28c820417985";

/// Wildcard action patterns a realistic custom role uses; each matches some catalog action.
const WILDCARDS: &[&str] = &[
    "*/read",
    "Microsoft.Security/*",
    "Microsoft.Security/*/read",
    "Microsoft.Security/locations/jitNetworkAccessPolicies/*",
    "Microsoft.Network/*/read",
    "Microsoft.Compute/*",
    "Microsoft.Compute/virtualMachines/*",
    "Microsoft.Authorization/*/read",
    "Microsoft.Resources/*/read",
    "Ajar/activityLog/*",
    "Ajar/*/read",
    "Ajar/jitNetworkAccessPolicies/*",
];

/// notActions some custom roles carry.
const NOT_ACTIONS: &[&str] = &[
    "Microsoft.Security/*/delete",
    "Microsoft.Compute/virtualMachines/delete",
    "Ajar/principals/tokens/*",
    "Microsoft.Authorization/*/write",
    "Microsoft.Security/locations/jitNetworkAccessPolicies/write",
];

#[derive(Args, Debug, Clone)]
pub struct AuthzArgs {
    /// Custom roles (besides the built-ins).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    roles: u32,
    /// Role assignments.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    assignments: u32,
    /// Principals the assignments name; a tenth of them are groups.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    principals: u32,
    /// The most assignments one principal holds (the heavy tail).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_per_principal: u32,
    /// Timed decisions in (b), (c) and (d); (e) runs this many on each thread.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    checks: u64,
    /// Index rebuilds to time in (a); the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rebuilds: u32,
    /// Seed of the random data and decisions, so that runs are comparable.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Subscriptions × resource groups × VMs of the synthetic estate (4 × 25 × 100 = 10,000 VMs).
const SUBSCRIPTIONS: u32 = 4;
const GROUPS_PER_SUB: u32 = 25;
const VMS_PER_GROUP: u32 = 100;

fn subscription_id(s: u32) -> String {
    format!("{s:08x}-5b5b-4000-8000-000000000000")
}

fn rg_scope(s: u32, g: u32) -> String {
    format!("/subscriptions/{}/resourceGroups/rg-{g:02}", subscription_id(s))
}

fn vm_scope(s: u32, g: u32, v: u32) -> String {
    format!("{}/providers/Microsoft.Compute/virtualMachines/vm-{v:03}", rg_scope(s, g))
}

/// A GUID for the `i`th custom role of the benchmark (never a built-in's).
pub(crate) fn custom_role_guid(i: u32) -> String {
    format!("{i:08x}-be0c-4a11-8000-00000000b0b0")
}

/// A GUID for the `i`th role assignment of the benchmark.
pub(crate) fn assignment_guid(i: u32) -> String {
    format!("{i:08x}-a551-4a11-8000-00000000a0a0")
}

/// A custom role's actions and notActions: 2–10 patterns, about a third of
/// them wildcards; a quarter of the roles carry 1–2 notActions.
pub(crate) fn custom_role_actions(rng: &mut StdRng) -> (Vec<String>, Vec<String>) {
    let count = rng.gen_range(2..=10);
    let mut actions: Vec<String> = Vec::with_capacity(count);
    while actions.len() < count {
        let pattern =
            if rng.gen_bool(0.3) { WILDCARDS[rng.gen_range(0..WILDCARDS.len())] } else { CATALOG[rng.gen_range(0..CATALOG.len())].0 };
        if !actions.iter().any(|a| a == pattern) {
            actions.push(pattern.to_owned());
        }
    }
    let not_actions = if rng.gen_bool(0.25) {
        let k = rng.gen_range(1..=2);
        let mut picked: Vec<&str> = NOT_ACTIONS.choose_multiple(rng, k).copied().collect();
        picked.sort_unstable();
        picked.into_iter().map(str::to_owned).collect()
    } else {
        Vec::new()
    };
    (actions, not_actions)
}

/// How many assignments each principal gets: at least one each, the rest
/// drawn with weight ∝ 1/(rank + 10), so a few principals hold many (capped
/// at `max`) and most hold one to three. Sums to `total` (if `n · max` allows).
pub(crate) fn assignments_per_principal(rng: &mut StdRng, n: usize, total: usize, max: usize) -> Vec<usize> {
    let mut counts = vec![0usize; n];
    let mut left = total;
    for c in counts.iter_mut() {
        if left == 0 {
            break;
        }
        *c = 1;
        left -= 1;
    }
    if left == 0 || n == 0 {
        return counts;
    }
    let weights: Vec<f64> = (0..n).map(|r| 1.0 / (r as f64 + 10.0)).collect();
    let sum: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(n);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / sum;
        cumulative.push(acc);
    }
    let capacity: usize = counts.iter().map(|c| max.saturating_sub(*c)).sum();
    let mut left = left.min(capacity);
    while left > 0 {
        let x: f64 = rng.r#gen();
        let rank = cumulative.partition_point(|c| *c < x).min(n - 1);
        if counts[rank] < max {
            counts[rank] += 1;
            left -= 1;
        }
    }
    counts
}

/// The synthetic data: roles (built-ins first), assignments, and who the users and groups are.
struct Estate {
    roles: Vec<RoleDefinition>,
    assignments: Vec<RoleAssignment>,
    users: Vec<String>,
    groups: Vec<String>,
    vms: Vec<String>,
    /// Assignments per principal: max, and the share of principals with more than 10.
    max_per_principal: usize,
    over_ten: usize,
    /// How many assignments sit at each level: root, subscription, resource group, VM.
    levels: [usize; 4],
    not_action_roles: usize,
    wildcard_patterns: usize,
    patterns: usize,
}

fn estate(args: &AuthzArgs, rng: &mut StdRng) -> Result<Estate> {
    let mut roles = builtin_roles();
    let mut custom_subs = Vec::new(); // None: assignable at "/"; Some(s): within subscription s.
    let (mut not_action_roles, mut wildcard_patterns, mut patterns) = (0, 0, 0);
    for i in 0..args.roles {
        let (actions, not_actions) = custom_role_actions(rng);
        let sub = if rng.gen_bool(0.2) { None } else { Some(rng.gen_range(0..SUBSCRIPTIONS)) };
        let scope: Scope = match sub {
            None => Scope::root(),
            Some(s) => format!("/subscriptions/{}", subscription_id(s)).parse().context("a subscription scope")?,
        };
        not_action_roles += usize::from(!not_actions.is_empty());
        patterns += actions.len() + not_actions.len();
        wildcard_patterns += actions.iter().chain(&not_actions).filter(|p| p.contains('*')).count();
        let role =
            RoleDefinition::custom(custom_role_guid(i), format!("Bench role {i:04}"), String::new(), actions, not_actions, vec![scope])
                .map_err(|p| anyhow!("custom role {i} is invalid: {p}"))?;
        roles.push(role);
        custom_subs.push(sub);
    }

    let n = args.principals as usize;
    let group_count = (n / 10).max(1);
    let groups: Vec<String> = (0..group_count).map(|g| format!("group:team-{g:04}")).collect();
    let users: Vec<String> = (0..n - group_count).map(|u| format!("{u:08x}-0000-4000-8000-00000000cafe")).collect();
    let mut principals: Vec<&String> = users.iter().chain(&groups).collect();
    principals.shuffle(rng);
    let counts = assignments_per_principal(rng, n, args.assignments as usize, args.max_per_principal as usize);

    let vms: Vec<String> = (0..SUBSCRIPTIONS)
        .flat_map(|s| (0..GROUPS_PER_SUB).flat_map(move |g| (0..VMS_PER_GROUP).map(move |v| vm_scope(s, g, v))))
        .collect();
    let builtin_choices = [OWNER_ID, READER_ID, JIT_REQUESTER_ID, READER_ID, JIT_REQUESTER_ID];
    let mut assignments = Vec::with_capacity(args.assignments as usize);
    let mut levels = [0usize; 4];
    for (principal, count) in principals.iter().zip(&counts) {
        for _ in 0..*count {
            // 15 % built-ins, the rest custom.
            let (role_id, sub) = if rng.gen_bool(0.15) {
                (builtin_choices[rng.gen_range(0..builtin_choices.len())].to_owned(), None)
            } else {
                let r = rng.gen_range(0..args.roles);
                (custom_role_guid(r), custom_subs[r as usize])
            };
            // Level: root 1 %, subscription 9 %, resource group 40 %, VM 50 % (root only where assignable).
            let x: f64 = rng.r#gen();
            let level = if x < 0.01 && sub.is_none() {
                0
            } else if x < 0.10 {
                1
            } else if x < 0.50 {
                2
            } else {
                3
            };
            let s = sub.unwrap_or_else(|| rng.gen_range(0..SUBSCRIPTIONS));
            let (g, v) = (rng.gen_range(0..GROUPS_PER_SUB), rng.gen_range(0..VMS_PER_GROUP));
            let scope = match level {
                0 => "/".to_owned(),
                1 => format!("/subscriptions/{}", subscription_id(s)),
                2 => rg_scope(s, g),
                _ => vm_scope(s, g, v),
            };
            levels[level] += 1;
            let id = assignment_guid(u32::try_from(assignments.len()).unwrap_or(u32::MAX));
            let scope: Scope = scope.parse().with_context(|| format!("scope {scope}"))?;
            assignments.push(RoleAssignment { id, principal_id: (*principal).clone(), role_id, scope });
        }
    }
    Ok(Estate {
        roles,
        assignments,
        users,
        groups,
        vms,
        max_per_principal: counts.iter().copied().max().unwrap_or(0),
        over_ten: counts.iter().filter(|c| **c > 10).count(),
        levels,
        not_action_roles,
        wildcard_patterns,
        patterns,
    })
}

/// One random decision, drawn before timing: indices into the estate.
#[derive(Clone, Copy)]
struct Query {
    user: u32,
    groups: [u32; 3],
    group_count: u8,
    action: u8,
    vm: u32,
}

fn queries(rng: &mut StdRng, e: &Estate, n: usize) -> Vec<Query> {
    (0..n)
        .map(|_| Query {
            user: rng.gen_range(0..e.users.len() as u32),
            groups: [0; 3].map(|_| rng.gen_range(0..e.groups.len() as u32)),
            group_count: rng.gen_range(1..=3),
            action: rng.gen_range(0..CATALOG.len() as u8),
            vm: rng.gen_range(0..e.vms.len() as u32),
        })
        .collect()
}

/// Distinct random decisions cycled through; large enough that the working
/// set is not one cache line, small enough not to measure memory bandwidth.
const QUERY_POOL: usize = 65_536;

fn new_histogram() -> Result<Histogram<u64>> {
    // 1 ns .. 10 s.
    Histogram::new_with_bounds(1, 10_000_000_000, 3).context("creating a histogram")
}

fn record(hist: &mut Histogram<u64>, elapsed: Duration) {
    let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    hist.saturating_record(ns.max(1));
}

/// What the server keeps: the index and the access version it was built at.
type Cached = RwLock<Option<(u64, Arc<AccessIndex>)>>;

/// The server's `Access::index` when the version has not moved: version read,
/// lock read, compare, `Arc` clone.
fn cached_index(cache: &Cached, version: &AtomicU64) -> Option<Arc<AccessIndex>> {
    let v = version.load(Ordering::SeqCst);
    let guard = cache.read().ok()?;
    let (cached_v, index) = guard.as_ref()?;
    (*cached_v == v).then(|| Arc::clone(index))
}

struct Row {
    name: String,
    hist: Histogram<u64>,
    allowed: Option<(u64, u64)>,
}

/// Times `f(query)` for `count` queries cycling through `pool`; `f` returns
/// whether the decision was allowed.
fn time_checks(count: u64, pool: &[Query], mut f: impl FnMut(&Query) -> Result<bool>) -> Result<(Histogram<u64>, u64)> {
    let mut hist = new_histogram()?;
    let mut allowed = 0u64;
    for q in pool.iter().cycle().take(usize::try_from(count).unwrap_or(usize::MAX)) {
        let t = Instant::now();
        let ok = f(q)?;
        let elapsed = t.elapsed();
        record(&mut hist, elapsed);
        allowed += u64::from(black_box(ok));
    }
    Ok((hist, allowed))
}

fn principal_ids<'a>(e: &'a Estate, q: &Query, buf: &mut [&'a str; 4]) -> usize {
    buf[0] = &e.users[q.user as usize];
    let n = usize::from(q.group_count);
    for (slot, g) in buf[1..=n].iter_mut().zip(q.groups) {
        *slot = &e.groups[g as usize];
    }
    n + 1
}

pub fn run(args: AuthzArgs) -> Result<()> {
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let mut rng = StdRng::seed_from_u64(args.seed);
    eprintln!("building {} custom roles and {} assignments over {} principals ...", args.roles, args.assignments, args.principals);
    let e = estate(&args, &mut rng)?;
    let vm_scopes: Vec<Scope> = e.vms.iter().map(|s| s.parse::<Scope>().with_context(|| format!("scope {s}"))).collect::<Result<_>>()?;
    let pool = queries(&mut rng, &e, QUERY_POOL);

    // (a) rebuilds.
    eprintln!("(a) {} index rebuilds ...", args.rebuilds);
    let mut builds = Vec::new();
    let mut index = AccessIndex::default();
    for _ in 0..args.rebuilds {
        let t = Instant::now();
        index = black_box(AccessIndex::new(&e.roles, &e.assignments));
        builds.push(t.elapsed());
    }
    builds.sort_unstable();
    let build_median = builds[builds.len() / 2];
    let build_min = builds[0];
    let build_max = builds[builds.len() - 1];

    let mut rows = Vec::new();

    // The timer alone.
    let (hist, _) = time_checks(args.checks, &pool, |q| Ok(black_box(q.vm) != u32::MAX))?;
    rows.push(Row { name: "timer only (two `Instant::now()`)".into(), hist, allowed: None });

    // (b) the decision.
    eprintln!("(b) {} checks ...", args.checks);
    let (hist, allowed) = time_checks(args.checks, &pool, |q| {
        let mut buf = [""; 4];
        let n = principal_ids(&e, q, &mut buf);
        Ok(index.check(&buf[..n], CATALOG[usize::from(q.action)].0, &vm_scopes[q.vm as usize]).is_allowed())
    })?;
    rows.push(Row { name: "(b) `AccessIndex::check`".into(), hist, allowed: Some((allowed, args.checks)) });

    // (b') the heaviest caller: the user holding the most assignments, with its three busiest groups.
    let heavy_user = e.users.iter().enumerate().max_by_key(|(_, u)| e.assignments.iter().filter(|a| &a.principal_id == *u).count());
    let mut groups_by_load: Vec<(usize, usize)> =
        e.groups.iter().enumerate().map(|(i, g)| (e.assignments.iter().filter(|a| &a.principal_id == g).count(), i)).collect();
    groups_by_load.sort_unstable_by(|a, b| b.cmp(a));
    if let Some((u, user)) = heavy_user {
        let heavy: Vec<Query> = pool
            .iter()
            .map(|q| Query {
                user: u as u32,
                groups: [0, 1, 2].map(|k| groups_by_load.get(k).map_or(0, |(_, i)| *i as u32)),
                group_count: 3,
                ..*q
            })
            .collect();
        let (hist, allowed) = time_checks(args.checks, &heavy, |q| {
            let mut buf = [""; 4];
            let n = principal_ids(&e, q, &mut buf);
            Ok(index.check(&buf[..n], CATALOG[usize::from(q.action)].0, &vm_scopes[q.vm as usize]).is_allowed())
        })?;
        let grants = e
            .assignments
            .iter()
            .filter(|a| &a.principal_id == user || groups_by_load.iter().take(3).any(|(_, i)| e.groups[*i] == a.principal_id))
            .count();
        rows.push(Row {
            name: format!("(b′) `check`, heaviest caller ({grants} assignments with its groups)"),
            hist,
            allowed: Some((allowed, args.checks)),
        });
    }

    // (c) the server's cached path.
    eprintln!("(c) cached path ...");
    let version = AtomicU64::new(7);
    let cache: Cached = RwLock::new(Some((7, Arc::new(index))));
    let (hist, allowed) = time_checks(args.checks, &pool, |q| {
        let index = cached_index(&cache, &version).ok_or_else(|| anyhow!("the cached index went missing"))?;
        let mut buf = [""; 4];
        let n = principal_ids(&e, q, &mut buf);
        Ok(index.check(&buf[..n], CATALOG[usize::from(q.action)].0, &vm_scopes[q.vm as usize]).is_allowed())
    })?;
    rows.push(Row { name: "(c) version + `RwLock` read + `Arc` clone + `check`".into(), hist, allowed: Some((allowed, args.checks)) });

    // (d) as `authorize_action` runs it: the scope arrives as a string, the caller's IDs as a Vec.
    eprintln!("(d) cached path with scope parse ...");
    let authorize = |q: &Query| -> Result<bool> {
        let scope: Scope = e.vms[q.vm as usize].parse().context("parsing a scope")?;
        let mut buf = [""; 4];
        let n = principal_ids(&e, q, &mut buf);
        let ids: Vec<&str> = buf[..n].to_vec();
        let index = cached_index(&cache, &version).ok_or_else(|| anyhow!("the cached index went missing"))?;
        Ok(index.check(&ids, CATALOG[usize::from(q.action)].0, &scope).is_allowed())
    };
    let (hist, allowed) = time_checks(args.checks, &pool, authorize)?;
    rows.push(Row { name: "(d) (c) + scope parse + caller IDs `Vec`".into(), hist, allowed: Some((allowed, args.checks)) });

    // (e) (d) on two threads at once.
    eprintln!("(e) two threads ...");
    let halves: Vec<Vec<Query>> = vec![pool.clone(), pool.iter().rev().copied().collect()];
    let results: Vec<Result<(Histogram<u64>, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = halves.iter().map(|p| s.spawn(|| time_checks(args.checks, p, authorize))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a timing thread panicked")))).collect()
    });
    let mut hist = new_histogram()?;
    let mut allowed = 0;
    for r in results {
        let (h, a) = r?;
        hist.add(&h).context("merging histograms")?;
        allowed += a;
    }
    rows.push(Row { name: "(e) (d) on 2 threads at once".into(), hist, allowed: Some((allowed, 2 * args.checks)) });

    // Report.
    let m = crate::machine();
    let mut out = String::new();
    out.push_str("## Authorization decision (in process)\n\n");
    out.push_str(&format!("- command: `{command_line}`\n"));
    out.push_str(&format!("- machine: {} CPUs, {}, {:.1} GiB RAM\n", m.cpus, m.cpu_model, m.mem_gib));
    if let Some(c) = &m.commit {
        out.push_str(&format!("- ajar commit: {c}\n"));
    }
    out.push_str(&format!(
        "- roles: {} custom + {} built-in; {} patterns, {} with a wildcard; {} roles with notActions\n",
        args.roles,
        e.roles.len() - args.roles as usize,
        e.patterns,
        e.wildcard_patterns,
        e.not_action_roles
    ));
    out.push_str(&format!(
        "- assignments: {} over {} principals ({} users, {} groups); per principal max {}, {} principals with more than 10; at root {}, subscription {}, resource group {}, VM {}\n",
        e.assignments.len(),
        args.principals,
        e.users.len(),
        e.groups.len(),
        e.max_per_principal,
        e.over_ten,
        e.levels[0],
        e.levels[1],
        e.levels[2],
        e.levels[3]
    ));
    out.push_str(&format!(
        "- decisions: a random user with 1–3 random groups, a random catalog action ({}), a random VM of {} as scope; {} distinct, cycled\n",
        CATALOG.len(),
        e.vms.len(),
        QUERY_POOL
    ));
    out.push_str(&format!(
        "- (a) `AccessIndex::new` over all roles and assignments, {} runs: median {:.2} ms (min {:.2}, max {:.2})\n\n",
        builds.len(),
        build_median.as_secs_f64() * 1e3,
        build_min.as_secs_f64() * 1e3,
        build_max.as_secs_f64() * 1e3
    ));
    out.push_str("| measurement | decisions | allowed | p50 µs | p99 µs | p99.9 µs | max µs |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for r in &rows {
        let allowed = match r.allowed {
            Some((a, n)) if n > 0 => format!("{:.1} %", 100.0 * a as f64 / n as f64),
            _ => "–".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.1} |\n",
            r.name,
            r.hist.len(),
            allowed,
            us(&r.hist, 0.5),
            us(&r.hist, 0.99),
            us(&r.hist, 0.999),
            r.hist.max() as f64 / 1000.0
        ));
    }
    print!("{out}");
    Ok(())
}
