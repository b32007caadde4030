//! Browser tests: a real `ajar serve` over HTTPS, driven by headless Chromium through
//! `tests/browser/drive.mjs` (Playwright). The server's own CA is trusted by the browser; certificate
//! checks stay on.
//!
//! Needs `node` (20 or later), `certutil` (libnss3-tools), `/usr/bin/chromium` and
//! `npm ci` run in `tests/browser/`. With `CI=true` a missing one fails the test; elsewhere it prints
//! `skipping: needs …` and passes.
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::common::Server;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole scenario: starting Chromium, every step, closing it.
const DRIVE_LIMIT: Duration = Duration::from_secs(90);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// True if the browser tests can run. Otherwise fails with `CI=true`, or prints `skipping: needs …`.
fn preflight() -> bool {
    let mut missing = Vec::new();
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let major = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok());
            if major.is_none_or(|m| m < 20) {
                missing.push(format!("Node.js 20 or later (found {version})"));
            }
        }
        _ => missing.push("`node` on PATH".to_owned()),
    }
    if !browser_dir().join("node_modules/playwright-core/package.json").is_file() {
        missing.push(format!("`npm ci` in {}", browser_dir().display()));
    }
    if !Path::new(CHROMIUM).is_file() {
        missing.push(format!("{CHROMIUM} (Debian package chromium)"));
    }
    if Command::new("certutil").arg("-H").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        missing.push("`certutil` on PATH (Debian package libnss3-tools)".to_owned());
    }
    ajar_lab::run_or_skip("browser tests", &missing)
}

/// `target/browser-screenshots/<test>/`, emptied.
fn screenshot_dir(test: &str) -> PathBuf {
    // CARGO_BIN_EXE_ajar is <target>/<profile>/ajar.
    let target = Path::new(env!("CARGO_BIN_EXE_ajar")).parent().and_then(Path::parent).unwrap();
    let dir = target.join("browser-screenshots").join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `steps` against `server` in Chromium through drive.mjs, trusting `ca`, screenshots into `out`.
/// Returns the driver's exit status (`None` if it outlived [`DRIVE_LIMIT`] and was killed) and output.
fn run_scenario(server: &Server, ca: &Path, out: &Path, steps: Value) -> (Option<ExitStatus>, String) {
    let scenario = json!({"baseUrl": server.url, "caFile": ca, "outDir": out, "steps": steps});
    let work = server.dir.path();
    let file = work.join("scenario.json");
    fs::write(&file, serde_json::to_vec_pretty(&scenario).unwrap()).unwrap();
    let (stdout, stderr) = (work.join("drive.stdout"), work.join("drive.stderr"));
    let started = Instant::now();
    // A process group of its own, so Chromium goes with the driver on a timeout.
    let mut child = Command::new("node")
        .arg(browser_dir().join("drive.mjs"))
        .arg(&file)
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .process_group(0)
        .spawn()
        .expect("start node");
    let group = Pid::from_raw(i32::try_from(child.id()).unwrap());
    let status = wait_bounded(&mut child, DRIVE_LIMIT);
    if status.is_none() {
        let _ = killpg(group, Signal::SIGTERM);
        if wait_bounded(&mut child, Duration::from_secs(5)).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    // Whatever the driver left behind (nothing, normally).
    let _ = killpg(group, Signal::SIGKILL);
    let output = format!(
        "--- drive.mjs stdout\n{}--- drive.mjs stderr\n{}",
        fs::read_to_string(&stdout).unwrap_or_default(),
        fs::read_to_string(&stderr).unwrap_or_default()
    );
    eprintln!("{output}--- {:.1} s", started.elapsed().as_secs_f64());
    (status, output)
}

/// As [`run_scenario`] with the server's own CA; panics with the driver's output unless every step passed.
fn drive(server: &Server, out: &Path, steps: Value) {
    match run_scenario(server, &server.ca_path(), out, steps) {
        (Some(s), _) if s.success() => {}
        (Some(s), output) => panic!("browser scenario failed ({s}); screenshots in {}\n{output}", out.display()),
        (None, output) => panic!("browser scenario did not finish within {} s\n{output}", DRIVE_LIMIT.as_secs()),
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn assert_png(path: &Path) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 100, "{} is not a PNG", path.display());
}

#[tokio::test]
async fn healthz_and_openapi_in_chromium() {
    if !preflight() {
        return;
    }
    let server = Server::start(&[]).await;
    let out = screenshot_dir("healthz_and_openapi_in_chromium");
    drive(
        &server,
        &out,
        json!([
            {"goto": "/healthz"},
            {"expectText": "ok"},
            {"screenshot": "healthz"},
            {"goto": "/openapi.json"},
            {"expectText": "jitNetworkAccessPolicies"},
            // The document is thousands of lines long: capturing it whole is slow and says no more.
            {"screenshot": "openapi", "fullPage": false},
        ]),
    );
    assert_png(&out.join("healthz.png"));
    assert_png(&out.join("openapi.png"));
}

/// The browser really checks the certificate: with a CA the server's certificate does not chain to,
/// the first page fails.
#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    if !preflight() {
        return;
    }
    let server = Server::start(&[]).await;
    let out = screenshot_dir("a_certificate_from_another_ca_is_refused");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "not the ajar CA");
    let other_ca = server.dir.path().join("other-ca.pem");
    fs::write(&other_ca, params.self_signed(&key).unwrap().pem()).unwrap();
    let (status, output) = run_scenario(&server, &other_ca, &out, json!([{"goto": "/healthz"}, {"expectText": "ok"}]));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{output}");
    assert!(output.contains("step 1 (goto \"/healthz\") failed") && output.contains("ERR_CERT_AUTHORITY_INVALID"), "{output}");
}

/// The dashboard in Chromium: sign in, the three tabs with the right machines, Connect on a machine's
/// page with a justification and the live grant, a form post without the CSRF token refused, a machine
/// behind a gateway opened and reached at the gateway's address on its mapped port, a narrow
/// window, and a Reader who finds no way to change anything.
#[tokio::test]
async fn dashboard_in_chromium() {
    if !preflight() {
        return;
    }
    let s = Server::start(&[]).await;
    s.add_vm("web1", "Linux", &s.loc, "10.0.0.4").await;
    s.add_vm("legacy1", "Linux", &s.loc, "10.0.0.9").await;
    let (st, v) = s.enroll_agent("app1", true).await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{v}");
    let (st, v) = s.call(reqwest::Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": [s.vm_id("web1")]}))).await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    // db1 behind gateway gw1, in a policy of its own: reached at the gateway's address on a mapped port.
    s.add_vm("db1", "Linux", &s.loc, "10.0.3.2").await;
    assert_eq!(s.enroll_gateway("gw1", &["203.0.113.1"], None).await.0, reqwest::StatusCode::CREATED);
    assert_eq!(s.set_gateway("db1", Some("gw1")).await.0, reqwest::StatusCode::OK);
    let db1_rules = json!({"id": s.vm_id("db1"), "ports": [{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT1H"}]});
    let (st, v) = s.put_policy("gateways", json!({"kind": "Basic", "properties": {"virtualMachines": [db1_rules]}})).await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    // With nothing else mapped on gw1, the port the server allocates is the allocator's first choice.
    let db1_vm: ajar_domain::VmId = s.vm_id("db1").parse().unwrap();
    let mapped = ajar_domain::gateway::allocate(ajar_domain::gateway::DEFAULT_MAPPED_PORTS, &Default::default(), &db1_vm, 22).unwrap();
    let (_, reader_token) = s.principal_with_role("auditor", crate::common::READER, &format!("/subscriptions/{}", s.sub)).await;
    let web1 = s.vm_id("web1");
    let db1 = s.vm_id("db1");
    let out = screenshot_dir("dashboard_in_chromium");
    drive(
        &s,
        &out,
        json!([
            {"goto": "/ui/jit"},
            {"expectText": "Sign in to ajar"},
            {"screenshot": "signin"},
            {"fill": "#token", "value": s.token},
            {"press": "#token", "key": "Enter"},
            {"expectText": "Just-in-time VM access"},
            {"expectText": "web1"},
            {"expectNoText": "app1"},
            {"screenshot": "jit-configured"},
            {"click": ".tabs a:has-text('Not configured')"},
            {"expectText": "app1"},
            {"expectNoText": "legacy1"},
            {"screenshot": "jit-not-configured"},
            {"click": ".tabs a:has-text('Unsupported')"},
            {"expectText": "legacy1"},
            {"expectText": "no enforcement point"},
            {"screenshot": "jit-unsupported"},
            {"goto": format!("/ui/vm?id={web1}")},
            {"expectText": "JIT configuration"},
            {"screenshot": "vm"},
            {"check": "#m0-port-22"},
            {"select": "#m0-duration", "value": "PT1H"},
            {"fill": "#justification", "value": "patch the web tier"},
            {"click": "button:has-text('Open ports')"},
            {"expectText": "Ports opened"},
            {"expectText": "22/TCP\t127.0.0.1"},
            {"expectText": "ssh 10.0.0.4"},
            // The live countdown: the script replaced "until …" with the time left.
            {"expectText": " left"},
            {"screenshot": "vm-opened"},
            {"submitForm": "/ui/request", "fields": {"vm": s.vm_id("web1"), "port.0": "22", "source.0": "myip", "duration.0": "PT1H"}, "status": 403},
            {"expectText": "CSRF token"},
            {"screenshot": "csrf-refused"},
            // A machine behind a gateway: its page names the firewall path, the result where to connect.
            {"goto": format!("/ui/vm?id={db1}")},
            {"expectText": "Firewall: gw1"},
            {"expectText": "Connection path"},
            {"screenshot": "vm-gateway"},
            {"check": "#m0-port-22"},
            {"click": "button:has-text('Open ports')"},
            {"expectText": "Ports opened"},
            {"expectText": format!("Connect to 203.0.113.1:{mapped} (through gateway gw1, firewall)")},
            {"expectNoText": "ssh 10.0.3.2"},
            {"screenshot": "gateway-opened"},
            // Enable JIT with the defaults on a Not configured machine, chosen on its tab.
            {"goto": "/ui/jit?tab=notconfigured"},
            {"check": "input[aria-label='Select app1']"},
            {"click": "button:has-text('Enable JIT on selected machines')"},
            {"expectText": "5986"},
            {"screenshot": "configure-defaults"},
            {"click": "button:has-text('Save')"},
            {"expectText": "JIT enabled on app1"},
            {"screenshot": "configure-done"},
            // Customise: a port added to web1's configuration.
            {"goto": format!("/ui/configure?vm={web1}")},
            {"click": "button:has-text('Add a port')"},
            {"fill": "#number-1", "value": "8443"},
            {"select": "#protocol-1", "value": "UDP"},
            {"fill": "#sources-1", "value": "10.0.0.0/24"},
            {"fill": "#max-1", "value": "PT1H"},
            {"screenshot": "configure-custom"},
            {"click": "button:has-text('Save')"},
            {"expectText": "8443"},
            {"screenshot": "configure-custom-done"},
            // Several machines at once: the request form has a section for each.
            {"goto": "/ui/jit"},
            {"check": "input[aria-label='Select app1']"},
            {"check": "input[aria-label='Select web1']"},
            {"click": "button:has-text('Request access')"},
            {"expectText": "app1"},
            {"expectText": "8443/UDP"},
            {"screenshot": "request-two-machines"},
            // The machine's activity log from its row's menu, and its CSV.
            {"goto": "/ui/jit"},
            {"click": "tr:has-text('web1') a:has-text('Activity log')"},
            {"expectText": "Request JIT access"},
            {"expectText": "Create or update JIT policy"},
            {"screenshot": "activity-web1"},
            {"download": "a:has-text('Download as CSV')", "saveAs": "activity-web1.csv"},
            {"click": "nav.main-nav a:has-text('Activity log')"},
            {"expectText": "Enrol agent"},
            {"screenshot": "activity"},
            {"click": "nav.main-nav a:has-text('Timeline')"},
            {"expectText": "web1:22"},
            {"screenshot": "timeline"},
            {"viewport": {"width": 420, "height": 800}},
            {"goto": "/ui/jit"},
            {"expectText": "web1"},
            // Secondary columns give way; what is open and the row's actions stay (hidden text is not in
            // the page's visible text).
            {"expectText": "Open now"},
            {"expectText": "Edit"},
            {"expectNoText": "Last user"},
            {"screenshot": "jit-narrow"},
            {"viewport": {"width": 1280, "height": 800}},
            {"click": "button:has-text('Sign out')"},
            {"expectText": "Sign in to ajar"},
            {"fill": "#token", "value": reader_token},
            {"click": "button:has-text('Sign in')"},
            {"expectText": "Signed in as auditor"},
            {"expectText": "web1"},
            {"expectNone": "main form[method=post], main input[type=checkbox]"},
            {"expectNoText": "Request access"},
            {"screenshot": "reader-jit"},
            {"goto": format!("/ui/vm?id={web1}")},
            {"expectText": "JIT configuration"},
            {"expectNone": "main form[method=post]"},
            {"screenshot": "reader-vm"},
        ]),
    );
    for shot in [
        "signin",
        "jit-configured",
        "jit-not-configured",
        "jit-unsupported",
        "vm",
        "vm-opened",
        "csrf-refused",
        "vm-gateway",
        "gateway-opened",
        "jit-narrow",
        "reader-jit",
        "reader-vm",
    ] {
        assert_png(&out.join(format!("{shot}.png")));
    }
    // What the browser did is what the server recorded.
    let policy = s.get(&format!("{}?{}", s.policy_path("default"), crate::common::API)).await;
    assert_eq!(policy["properties"]["requests"][0]["justification"], "patch the web tier", "{policy}");
    let web1_ports = &policy["properties"]["virtualMachines"][0]["ports"];
    assert!(
        web1_ports.as_array().unwrap().iter().any(|p| p["number"] == 8443
            && p["protocol"] == "UDP"
            && p["allowedSourceAddressPrefix"] == "10.0.0.0/24"
            && p["maxRequestAccessDuration"] == "PT1H"),
        "{policy}"
    );
    // The CSV the browser downloaded is the API's export for the same machine, with the request in it.
    let downloaded = fs::read(out.join("activity-web1.csv")).unwrap();
    let (st, api_csv, _) = s.send(reqwest::Method::GET, &format!("/ajar/v1/activity?format=csv&vm={web1}"), Some(&s.token), None, "").await;
    assert_eq!(st, reqwest::StatusCode::OK);
    let rows = |bytes: &[u8]| -> Vec<Vec<String>> {
        csv::Reader::from_reader(bytes).records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect()
    };
    let browser_rows = rows(&downloaded);
    assert_eq!(browser_rows, rows(api_csv.as_str().unwrap().as_bytes()), "the dashboard's CSV is the API's");
    assert!(
        browser_rows.iter().any(|r| r[4].ends_with("initiate/action") && r[5] == "admin" && r[9] == "patch the web tier"),
        "{browser_rows:?}"
    );
    let status = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus?state=Configured", s.sub)).await;
    assert!(status["value"].as_array().unwrap().iter().any(|v| v["id"].as_str().unwrap().ends_with("/app1")), "{status}");
    // The address the browser was told is the one the API gives.
    let db1_status = status["value"].as_array().unwrap().iter().find(|v| v["name"] == "db1").unwrap();
    assert_eq!(db1_status["liveGrants"][0]["connectTo"], format!("203.0.113.1:{mapped}"), "{db1_status}");
}
