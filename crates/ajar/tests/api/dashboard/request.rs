//! "Request access" over real HTTPS: one form for machines of several policies, the result with connect
//! hints and countdowns, a whole request refused for one bad machine with the error next to its field,
//! CSRF, a Reader refused, and the countdown script.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Ui, hidden_csrf};
use crate::common::{API, READER, Server};

/// web1 (10.0.0.4) in policy "p1": 22/TCP up to PT1H, 3389/* up to PT3H; db1 (10.0.0.5) in policy "p2":
/// 22/TCP up to PT2H; cache1 (10.0.0.6) in no policy. Every port allows any source.
async fn two_policies() -> Server {
    let s = Server::start(&[]).await;
    s.add_vm("web1", "Linux", &s.loc, "10.0.0.4").await;
    s.add_vm("db1", "Linux", &s.loc, "10.0.0.5").await;
    s.add_vm("cache1", "Linux", &s.loc, "10.0.0.6").await;
    let port = |n: u16, protocol: &str, max: &str| json!({"number": n, "protocol": protocol, "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": max});
    for (policy, vm, ports) in
        [("p1", "web1", vec![port(22, "TCP", "PT1H"), port(3389, "*", "PT3H")]), ("p2", "db1", vec![port(22, "TCP", "PT2H")])]
    {
        let body = json!({"kind": "Basic", "properties": {"virtualMachines": [{"id": s.vm_id(vm), "ports": ports}]}});
        let (st, v) = s.put_policy(policy, body).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    s
}

/// What one machine's part of the form says.
pub(super) struct Ask<'a> {
    vm: String,
    ports: &'a [&'a str],
    /// `None`: My IP.
    range: Option<&'a str>,
    duration: &'a str,
}

pub(super) fn ask<'a>(s: &Server, vm: &str, ports: &'a [&'a str], range: Option<&'a str>, duration: &'a str) -> Ask<'a> {
    Ask { vm: s.vm_id(vm), ports, range, duration }
}

/// The form's fields as a browser posts them: the machines in order, then each one's fields by position.
pub(super) fn form(csrf: Option<&str>, asks: &[Ask<'_>], justification: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    if let Some(csrf) = csrf {
        fields.push(("csrf".to_owned(), csrf.to_owned()));
    }
    for a in asks {
        fields.push(("vm".to_owned(), a.vm.clone()));
    }
    for (i, a) in asks.iter().enumerate() {
        for p in a.ports {
            fields.push((format!("port.{i}"), (*p).to_owned()));
        }
        fields.push((format!("source.{i}"), if a.range.is_some() { "range" } else { "myip" }.to_owned()));
        fields.push((format!("range.{i}"), a.range.unwrap_or_default().to_owned()));
        fields.push((format!("duration.{i}"), a.duration.to_owned()));
    }
    fields.push(("justification".to_owned(), justification.to_owned()));
    fields
}

pub(super) async fn post(ui: &Ui<'_>, fields: &[(String, String)]) -> (StatusCode, String) {
    let fields: Vec<(&str, String)> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    ui.post("/ui/request", &fields).await
}

/// Machine `i`'s part of the request form.
fn section(html: &str, i: usize) -> &str {
    let start = html.find(&format!(r#"<fieldset class="machine" id="m{i}""#)).unwrap_or_else(|| panic!("no machine {i} in {html}"));
    let rest = &html[start..];
    let end = rest.find(&format!(r#"id="m{}""#, i + 1)).or_else(|| rest.find("</form>")).unwrap();
    &rest[..end]
}

/// The requests of policy `name`, as the API shows them.
async fn requests(s: &Server, name: &str) -> Vec<Value> {
    s.get(&format!("{}?{API}", s.policy_path(name))).await["properties"]["requests"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn one_request_opens_machines_of_two_policies() {
    let s = two_policies().await;
    let ui = Ui::sign_in(&s, &s.token).await;

    // The form: a fieldset per machine naming it, its configured ports with their maxima, My IP as the
    // server sees the caller, and time windows up to the machine's longest maximum.
    let (st, html) = ui.get(&format!("/ui/request?vm={}&vm={}", s.vm_id("web1"), s.vm_id("db1"))).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    let (web1, db1) = (section(&html, 0), section(&html, 1));
    assert!(web1.contains("<legend>web1</legend>") && db1.contains("<legend>db1</legend>"), "{html}");
    assert!(web1.contains("22/TCP (at most 1 hour)") && web1.contains("3389/* (at most 3 hours)"), "{web1}");
    assert!(web1.contains("My IP (127.0.0.1)") && db1.contains("My IP (127.0.0.1)"), "{html}");
    assert!(web1.contains(r#"value="PT3H""#) && !web1.contains(r#"value="PT6H""#), "{web1}");
    assert!(db1.contains(r#"value="PT2H""#) && !db1.contains(r#"value="PT3H""#), "{db1}");
    assert!(db1.contains(r#"<label for="m1-range">"#) && db1.contains(r#"<label for="m1-duration">"#), "labelled fields: {db1}");
    assert!(html.contains(r#"<label for="justification">"#), "{html}");

    // One post opens both, each policy's part with the same justification; db1 from the range chosen.
    let fields = form(
        Some(&hidden_csrf(&html)),
        &[ask(&s, "web1", &["22"], None, "PT1H"), ask(&s, "db1", &["22"], Some("127.0.0.0/8"), "PT2H")],
        "incident 42",
    );
    let (st, result) = post(&ui, &fields).await;
    assert_eq!(st, StatusCode::OK, "{result}");
    for (policy, source) in [("p1", "127.0.0.1"), ("p2", "127.0.0.0/8")] {
        let requests = requests(&s, policy).await;
        assert_eq!(requests.len(), 1, "{policy}: {requests:?}");
        assert_eq!(requests[0]["justification"], "incident 42", "{policy}: {requests:?}");
        let port = &requests[0]["virtualMachines"][0]["ports"][0];
        assert_eq!(
            (&port["number"], &port["allowedSourceAddressPrefix"], &port["status"]),
            (&json!(22), &json!(source), &json!("Initiated"))
        );
    }

    // The result: per machine what was opened, from where, until when, how to connect, with a countdown.
    assert!(result.contains("Ports opened") && result.contains("Justification: incident 42"), "{result}");
    for (vm, source, hint) in [("web1", "127.0.0.1", "ssh 10.0.0.4"), ("db1", "127.0.0.0/8", "ssh 10.0.0.5")] {
        let at = result.find(&format!(">{vm}</a></h3>")).unwrap_or_else(|| panic!("{vm} in {result}"));
        let part = &result[at..];
        let part = &part[..part.find("</table>").unwrap()];
        assert!(part.contains("<td>22/TCP</td>") && part.contains(&format!("<td>{source}</td>")), "{part}");
        assert!(part.contains(&format!("<code>{hint}</code>")), "{part}");
        assert!(part.contains(r#"<time class="countdown" datetime=""#) && part.contains(r#"aria-live="off">until "#), "{part}");
        assert!(part.contains(" UTC</td>"), "the end time in UTC: {part}");
    }
    assert!(!result.contains(r#"action="/ui/request""#), "no form to send again: {result}");

    // The JIT page's "Open now" and the machine's page count the grants down.
    let (_, jit) = ui.get("/ui/jit?tab=configured").await;
    let row = &jit[jit.find(">db1</a>").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("22/TCP for ") && row.contains(r#"<time class="countdown" datetime=""#), "{row}");
    let (_, vm_page) = ui.get(&format!("/ui/vm?id={}", s.vm_id("web1"))).await;
    assert!(vm_page.contains(r#"<time class="countdown" datetime=""#), "{vm_page}");
}

#[tokio::test]
async fn one_bad_machine_refuses_the_whole_request() {
    let s = two_policies().await;
    let ui = Ui::sign_in(&s, &s.token).await;
    let csrf = ui.csrf().await;
    let nothing_opened = || async {
        assert!(requests(&s, "p1").await.is_empty() && requests(&s, "p2").await.is_empty(), "nothing was opened");
        assert!(s.stored_statuses().is_empty(), "no grant stored");
    };

    // A time window above db1's maximum: web1's part was fine, yet nothing opens; the error is at db1's
    // time field, and the form comes back as it was sent.
    let web1_ok = || ask(&s, "web1", &["22", "3389"], None, "PT1H");
    let fields = form(Some(&csrf), &[web1_ok(), ask(&s, "db1", &["22"], Some("127.0.0.0/8"), "PT3H")], "too long");
    let (st, html) = post(&ui, &fields).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{html}");
    let db1 = section(&html, 1);
    assert!(
        db1.contains(r#"<select id="m1-duration" name="duration.1" aria-invalid="true" aria-describedby="m1-duration-error">"#),
        "{db1}"
    );
    let error = &db1[db1.find(r#"id="m1-duration-error">"#).expect("the error next to db1's time field")..];
    assert!(error.contains("at most PT2H"), "{error}");
    assert!(!section(&html, 0).contains("field-error"), "web1 had nothing wrong: {html}");
    assert!(html.contains("InvalidInitiateInput") && html.contains(r##"href="#m1-duration""##), "{html}");
    assert!(db1.contains(r#"value="127.0.0.0/8""#) && html.contains(">too long</textarea>"), "the form as it was sent: {html}");
    let web1 = section(&html, 0);
    assert!(web1.contains(r#"value="22" checked"#) && web1.contains(r#"value="3389" checked"#), "{web1}");
    nothing_opened().await;
    // The refusal is on record as the API's would be.
    let failed = s.activity("limit=50").await;
    assert!(
        failed.iter().any(|e| e["operation"] == "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action"
            && e["result"] == "Failed"
            && e["resourceId"].as_str().is_some_and(|r| r.ends_with("/p2"))),
        "{failed:?}"
    );

    // A port that is not configured.
    let fields = form(Some(&csrf), &[ask(&s, "web1", &["8080"], None, "PT1H"), ask(&s, "db1", &["22"], None, "PT1H")], "");
    let (st, html) = post(&ui, &fields).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{html}");
    let web1 = section(&html, 0);
    assert!(web1.contains(r#"<fieldset id="m0-ports" aria-describedby="m0-ports-error">"#), "{web1}");
    let error = &web1[web1.find(r#"id="m0-ports-error">"#).expect("the error at web1's ports")..];
    assert!(error.contains("port 8080 is not configured"), "{error}");
    nothing_opened().await;

    // A range that is not an address or CIDR, shown at db1's range field with the value sent.
    let fields = form(Some(&csrf), &[web1_ok(), ask(&s, "db1", &["22"], Some("10.0.0.1/8"), "PT1H")], "");
    let (st, html) = post(&ui, &fields).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{html}");
    let db1 = section(&html, 1);
    assert!(
        db1.contains(r#"<input id="m1-range" name="range.1" value="10.0.0.1/8""#)
            && db1.contains(r#"aria-invalid="true" aria-describedby="m1-source-error">"#),
        "{db1}"
    );
    let error = &db1[db1.find(r#"id="m1-source-error">"#).expect("the error at db1's range")..];
    assert!(error.contains("host bits set"), "{error}");
    nothing_opened().await;

    // Without this session's CSRF token: refused, nothing opened.
    for csrf in [None, Some("forged")] {
        let fields = form(csrf, &[web1_ok()], "");
        let (st, html) = post(&ui, &fields).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{html}");
        assert!(html.contains("CSRF"), "{html}");
    }
    nothing_opened().await;

    // Machines that cannot be requested are named with why, not dropped: no form for them.
    let hidden = format!("/subscriptions/{}/resourceGroups/nowhere/providers/Microsoft.Compute/virtualMachines/ghost", s.sub);
    let (st, html) = ui.get(&format!("/ui/request?vm={}&vm={}&vm={hidden}", s.vm_id("web1"), s.vm_id("cache1"))).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("JIT is not configured on this machine") && html.contains("Enable JIT on cache1"), "{html}");
    assert!(html.contains("There is no such machine that you may see.") && html.contains(r#"<legend>web1</legend>"#), "{html}");
    assert!(!html.contains("<legend>cache1</legend>"), "{html}");
    // Posting one of them anyway refuses the whole request.
    let fields = form(Some(&csrf), &[web1_ok(), ask(&s, "cache1", &["22"], None, "PT1H")], "");
    let (st, html) = post(&ui, &fields).await;
    assert_eq!(st, StatusCode::CONFLICT, "{html}");
    nothing_opened().await;
}

#[tokio::test]
async fn a_reader_gets_no_form_and_is_refused() {
    let s = two_policies().await;
    let (_, token) = s.principal_with_role("auditor", READER, &s.rg_scope()).await;
    let ui = Ui::sign_in(&s, &token).await;

    let (st, html) = ui.get(&format!("/ui/request?vm={}", s.vm_id("web1"))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{html}");
    assert!(
        html.contains("You may not request access to this machine") && !html.contains("<form method=\"post\" action=\"/ui/request\""),
        "{html}"
    );
    let (_, vm_page) = ui.get(&format!("/ui/vm?id={}", s.vm_id("web1"))).await;
    assert!(!vm_page.contains("Open ports"), "{vm_page}");

    // The server refuses anyway, as the API does, and records it.
    let fields = form(Some(&ui.csrf().await), &[ask(&s, "web1", &["22"], None, "PT1H")], "");
    let (st, html) = post(&ui, &fields).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("AuthorizationFailed"), "{html}");
    assert!(requests(&s, "p1").await.is_empty());
    let denied = s.activity("limit=50").await;
    assert!(
        denied
            .iter()
            .any(|e| e["caller"] == "auditor" && e["result"] == "Failed" && e["resourceId"].as_str().is_some_and(|r| r.ends_with("/p1"))),
        "{denied:?}"
    );
}

#[tokio::test]
async fn the_countdown_script_is_served_and_loaded() {
    let s = two_policies().await;
    let ui = Ui::sign_in(&s, &s.token).await;
    let resp = ui.get_response("/ui/static/ajar.js").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/javascript; charset=utf-8");
    let script = resp.text().await.unwrap();
    assert!(script.contains("time.countdown") && script.contains("ended"), "{script}");
    // Every page loads it from this server, and has no inline script (the CSP would refuse one).
    let (_, html) = ui.get("/ui/jit").await;
    assert!(html.contains(r#"<script src="/ui/static/ajar.js" defer></script>"#), "{html}");
    assert_eq!(html.matches("<script").count(), 1, "{html}");
}
