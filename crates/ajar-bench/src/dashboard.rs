//! `ajar-bench dashboard`: the dashboard's server time per page with thousands of machines.
//!
//! Starts `ajar serve`, seeds `--vms` machines through the API (half Configured with a policy each, a
//! quarter Not configured through agent enrolment, the rest Unsupported) and `--grants` live grants, signs
//! in to the dashboard with the admin token, then GETs each page `--samples` times in turn (after
//! `--warmup` rounds): the JIT page's tabs, a machine's page, the request and configure forms, the
//! activity log and the timeline. It reads the server's own `Server-Timing: app;dur=…` from each answer. Prints a
//! Markdown table: median and p99 of the server time and of the time the client saw.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::task::JoinSet;

use ajar_api::bootstrap;

use crate::{
    Api, Outcome, REQUEST_TIMEOUT, SEED_CONCURRENCY, Server, join_all, machine, new_histogram, read_bootstrap, record, seed, send,
};

#[derive(Args, Debug, Clone)]
pub struct DashboardArgs {
    /// The ajar binary to start as `PATH serve`.
    #[arg(long, value_name = "PATH")]
    server_bin: PathBuf,
    /// Machines in the inventory.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(4..=1_000_000))]
    vms: u64,
    /// Live grants (one initiate each, on Configured machines).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    grants: u64,
    /// Measured GETs of each page.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    samples: u32,
    /// Unmeasured rounds first.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    warmup: u32,
}

/// The server time from `Server-Timing: app;dur=12.34`.
fn server_ms(resp: &reqwest::Response) -> Option<f64> {
    let v = resp.headers().get("server-timing")?.to_str().ok()?;
    v.split(';').find_map(|p| p.trim().strip_prefix("dur=")).and_then(|d| d.parse().ok())
}

/// Signs in through the form, as a browser does; returns the session cookie's value.
async fn sign_in(client: &reqwest::Client, url: &str, token: &str) -> Result<String> {
    let form = client.get(format!("{url}/ui/signin")).send().await.context("GET /ui/signin")?;
    let cookie = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.split(';').next().and_then(|kv| kv.strip_prefix(&format!("{name}="))).map(str::to_owned))
    };
    let signin = cookie(&form, "ajar_signin").ok_or_else(|| anyhow!("the sign-in form set no ajar_signin cookie"))?;
    let html = form.text().await.context("reading the sign-in form")?;
    let marker = r#"name="csrf" value=""#;
    let csrf = html
        .find(marker)
        .map(|at| &html[at + marker.len()..])
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow!("the sign-in form has no CSRF field"))?;
    let resp = client
        .post(format!("{url}/ui/signin"))
        .header("cookie", format!("ajar_signin={signin}"))
        .form(&[("csrf", csrf), ("token", token)])
        .send()
        .await
        .context("POST /ui/signin")?;
    if resp.status() != reqwest::StatusCode::SEE_OTHER {
        bail!("sign-in answered HTTP {}", resp.status());
    }
    cookie(&resp, "ajar_session").ok_or_else(|| anyhow!("sign-in set no ajar_session cookie"))
}

/// Enrols agents for machines `agent0…agent{n-1}` with the join token (they become Not configured).
async fn enroll(api: &Arc<Api>, join_token: &str, n: u64) -> Result<()> {
    let mut set = JoinSet::new();
    let per = n.div_ceil(SEED_CONCURRENCY as u64);
    for w in 0..SEED_CONCURRENCY as u64 {
        let (api, join) = (Arc::clone(api), join_token.to_owned());
        set.spawn(async move {
            for i in (w * per)..((w + 1) * per).min(n) {
                let body = json!({"name": format!("agent{i}"), "osType": "Linux", "addresses": ["10.0.0.9"], "version": "0.1.0", "nftables": {"usable": true}});
                let req = api.client.post(format!("{}/ajar/v1/agents/enroll", api.url)).bearer_auth(&join).json(&body);
                if let Outcome::Status(e) | Outcome::Transport(e) = send(req, "enroll", |s| s.is_success()).await {
                    bail!("enrolling: {e}");
                }
            }
            Ok(())
        });
    }
    join_all(set, "an enrolment task").await.map(|_| ())
}

pub async fn run(args: DashboardArgs) -> Result<()> {
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let dir = tempfile::Builder::new().prefix("ajar-bench-").tempdir().context("creating a temporary directory")?;
    let data_dir = dir.path().join("data");
    let mut server = Server::start(&args.server_bin, &data_dir)?;
    let file = read_bootstrap(&data_dir.join(bootstrap::FILE_NAME))?;
    let boot = file.complete()?;
    let ca = std::fs::read(boot.ca).with_context(|| format!("reading the CA {}", boot.ca))?;
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).context("parsing the CA certificate")?)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .http1_only()
        .no_proxy()
        .build()
        .context("building the HTTPS client")?;
    let api = Arc::new(Api {
        client: client.clone(),
        url: server.url.clone(),
        sub: boot.subscription_id.to_owned(),
        rg: boot.resource_group.to_owned(),
        loc: boot.location.to_owned(),
        token: boot.admin_token.to_owned(),
    });

    let configured = args.vms / 2;
    let not_configured = args.vms / 4;
    let unsupported = args.vms - configured - not_configured;
    eprintln!("seeding {configured} Configured, {not_configured} Not configured and {unsupported} Unsupported machines ...");
    seed(&api, configured).await?;
    enroll(&api, boot.join_token, not_configured).await?;
    for i in (configured..configured + unsupported).collect::<Vec<_>>().chunks(SEED_CONCURRENCY) {
        let mut set = JoinSet::new();
        for &i in i {
            let api = Arc::clone(&api);
            set.spawn(async move {
                match send(api.put_vm(i), "PUT vm", |s| s.is_success()).await {
                    Outcome::Expected => Ok(()),
                    Outcome::Status(e) | Outcome::Transport(e) => Err(anyhow!("seeding: {e}")),
                }
            });
        }
        join_all(set, "a seeding task").await?;
    }
    let grants = args.grants.min(configured);
    eprintln!("opening {grants} grants ...");
    for i in 0..grants {
        if let Outcome::Status(e) | Outcome::Transport(e) = send(api.initiate(i), "initiate", |s| s.is_success()).await {
            bail!("initiating: {e}");
        }
    }
    server.check_alive()?;

    let session = sign_in(&client, &server.url, boot.admin_token).await?;
    let encode = |id: &str| percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string();
    let vm = encode(&api.vm_id(0));
    let pages = [
        ("JIT page, Configured tab".to_owned(), "/ui/jit?tab=configured".to_owned()),
        ("JIT page, Not configured tab".to_owned(), "/ui/jit?tab=notconfigured".to_owned()),
        ("JIT page, Unsupported tab".to_owned(), "/ui/jit?tab=unsupported".to_owned()),
        ("JIT page, filtered by name".to_owned(), "/ui/jit?tab=configured&name=vm42".to_owned()),
        ("a machine's page".to_owned(), format!("/ui/vm?id={vm}")),
        ("request access for 2 machines".to_owned(), format!("/ui/request?vm={vm}&vm={}", encode(&api.vm_id(1)))),
        ("edit a configuration".to_owned(), format!("/ui/configure?vm={vm}")),
        ("activity log, overall".to_owned(), "/ui/activity".to_owned()),
        ("activity log, one machine".to_owned(), format!("/ui/activity?vm={vm}")),
        ("timeline, a day".to_owned(), "/ui/timeline?range=day".to_owned()),
        ("timeline, a week".to_owned(), "/ui/timeline?range=week".to_owned()),
    ];
    let mut rows = Vec::new();
    for (name, path) in &pages {
        let (mut server_hist, mut client_hist) = (new_histogram()?, new_histogram()?);
        let mut bytes = 0;
        for round in 0..(args.warmup + args.samples) {
            let started = Instant::now();
            let resp = client
                .get(format!("{}{path}", server.url))
                .header("cookie", format!("ajar_session={session}"))
                .send()
                .await
                .with_context(|| format!("GET {path}"))?;
            if resp.status() != reqwest::StatusCode::OK {
                bail!("GET {path}: HTTP {}", resp.status());
            }
            let at_server = server_ms(&resp).ok_or_else(|| anyhow!("GET {path}: no Server-Timing header"))?;
            let body = resp.bytes().await.with_context(|| format!("reading GET {path}"))?;
            if round >= args.warmup {
                record(&mut client_hist, started.elapsed());
                record(&mut server_hist, Duration::from_secs_f64(at_server / 1000.0));
                bytes = body.len();
            }
        }
        rows.push((name.clone(), path.clone(), server_hist, client_hist, bytes));
    }
    server.check_alive()?;
    drop(server);

    let m = machine();
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut out = String::new();
    out.push_str("## Dashboard\n\n");
    out.push_str(&format!("- command: `{command_line}`\n"));
    out.push_str(&format!(
        "- machine: {} CPUs ({}), {:.1} GiB RAM{}\n",
        m.cpus,
        m.cpu_model,
        m.mem_gib,
        m.commit.map(|c| format!(", commit {c}")).unwrap_or_default()
    ));
    out.push_str(&format!(
        "- inventory: {} machines ({configured} Configured, {not_configured} Not configured, {unsupported} Unsupported), {grants} live grants\n",
        args.vms
    ));
    out.push_str(&format!(
        "- {} GETs per page after {} unmeasured, one after another, signed in as the admin\n\n",
        args.samples, args.warmup
    ));
    out.push_str("| page | server median (ms) | server p99 (ms) | client median (ms) | client p99 (ms) | HTML bytes |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for (name, path, s, c, bytes) in &rows {
        out.push_str(&format!(
            "| {name} (`{}`) | {:.1} | {:.1} | {:.1} | {:.1} | {bytes} |\n",
            path.split('?').next().unwrap_or(path),
            ms(s, 0.5),
            ms(s, 0.99),
            ms(c, 0.5),
            ms(c, 0.99)
        ));
    }
    println!("{out}");
    Ok(())
}
