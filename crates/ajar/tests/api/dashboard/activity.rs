//! The activity log pages and their CSV, the timeline of grants and the Configured tab's 7-day chart,
//! over real HTTPS against a real server: what they show, in which order, with which filters, and only
//! what the signed-in principal may read.

use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Ui, unescape};
use crate::common::{READER, Server, with_policy};

const JIT_REQUESTER: &str = "df903be8-ea06-4b3a-a014-28c820417985";
const INITIATE: &str = "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action";

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    Some(&text[from..from + text[from..].find(end)?])
}

/// An activity page's rows, top to bottom: (operation, resource ID, result).
fn rows(html: &str) -> Vec<(String, String, String)> {
    let Some(body) = between(html, "<tbody>", "</tbody>") else { return Vec::new() };
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            let operation = between(row, r#"<span class="muted small action">"#, "</span>").unwrap().to_owned();
            let resource = between(row, r#"<abbr title=""#, "\"").unwrap().to_owned();
            let result = if row.contains(r#"class="result ok""#) { "Succeeded" } else { "Failed" };
            (operation, resource, result.to_owned())
        })
        .collect()
}

/// The API's log for `query`, as the page's rows are: (operation, resource ID, result).
fn api_rows(entries: &[Value]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|e| (e["operation"].as_str().unwrap().into(), e["resourceId"].as_str().unwrap().into(), e["result"].as_str().unwrap().into()))
        .collect()
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap().get(0), Some("Time (UTC)"));
    reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect()
}

/// The dashboard's CSV download for `query`: its rows, after checking it is an attachment.
async fn ui_csv(ui: &Ui<'_>, query: &str) -> Vec<Vec<String>> {
    let resp = ui.get_response(&format!("/ui/activity.csv?{query}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    assert!(resp.headers()[CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
    csv_rows(&resp.text().await.unwrap())
}

/// The API's CSV export for `query`, read with `token`.
async fn api_csv(s: &Server, token: &str, query: &str) -> Vec<Vec<String>> {
    let (st, body, _) = s.send(Method::GET, &format!("/ajar/v1/activity?{query}&format=csv"), Some(token), None, "").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    csv_rows(body.as_str().unwrap())
}

/// A new principal holding `role` on resource group `rg`: its token.
async fn principal_with_role(s: &Server, name: &str, role: &str, rg: &str) -> String {
    s.principal_with_role(name, role, &format!("/subscriptions/{}/resourceGroups/{rg}", s.sub)).await.1
}

fn rdp(s: &Server, justification: &str) -> Value {
    json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [{"number": 3389, "duration": "PT1H"}]}], "justification": justification})
}

#[tokio::test]
async fn the_activity_log_newest_first_filtered_paged_and_as_csv() {
    let s = with_policy(&[]).await;
    assert_eq!(s.initiate("default", rdp(&s, "deploy, now")).await.0, StatusCode::ACCEPTED);
    let refused = json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [{"number": 80, "duration": "PT1H"}]}]});
    assert_eq!(s.initiate("default", refused).await.0, StatusCode::BAD_REQUEST);
    let ui = Ui::sign_in(&s, &s.token).await;

    // Everything, newest first, with its columns.
    let (st, html) = ui.get("/ui/activity").await;
    assert_eq!(st, StatusCode::OK);
    for column in ["Date (UTC)", "Time", "Operation", "Caller", "Result", "Source address", "Resource", "Subscription"] {
        assert!(html.contains(&format!(r#"<th scope="col">{column}</th>"#)), "{column}");
    }
    let all = rows(&html);
    assert_eq!(all, api_rows(&s.activity("").await), "the same entries as the API, in its order");
    assert_eq!(
        all[..2].iter().map(|(op, _, result)| (op.as_str(), result.as_str())).collect::<Vec<_>>(),
        [(INITIATE, "Failed"), (INITIATE, "Succeeded")],
        "newest first"
    );
    assert!(html.contains("Request JIT access") && html.contains("127.0.0.1") && html.contains(&s.sub), "{html}");
    assert!(html.contains("justification = deploy, now"), "the details are there");
    assert!(all.iter().any(|(_, r, _)| r == &s.vm_id("vm2")), "vm2's entry is in the overall log");

    // One machine's log, as its row's link on the JIT page asks for it.
    let vm1 = encode(&s.vm_id("vm1"));
    let (_, jit) = ui.get("/ui/jit?tab=configured").await;
    assert!(jit.contains(&format!("/ui/activity?vm={vm1}")), "the JIT page links to it");
    let (st, html) = ui.get(&format!("/ui/activity?vm={vm1}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("<h1>Activity log: vm1</h1>"), "{html}");
    let mine = rows(&html);
    assert_eq!(mine, api_rows(&s.activity(&format!("vm={vm1}")).await));
    assert_eq!(mine.len(), 4, "added, configured, requested, refused: {mine:?}");
    assert!(!mine.iter().any(|(_, r, _)| r == &s.vm_id("vm2")), "nothing about vm2");

    // Filters narrow it, and the CSV link keeps them.
    let (_, html) = ui.get(&format!("/ui/activity?vm={vm1}&result=Failed")).await;
    assert_eq!(rows(&html).iter().map(|(op, _, r)| (op.as_str(), r.as_str())).collect::<Vec<_>>(), [(INITIATE, "Failed")]);
    assert!(unescape(&html).contains(&format!(r#"href="/ui/activity.csv?vm={vm1}&result=Failed""#)), "{html}");
    let (_, html) = ui.get(&format!("/ui/activity?operation={}", encode(INITIATE))).await;
    assert_eq!(rows(&html).len(), 2);
    assert!(html.contains(r#"<option value="Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action" selected>"#));
    let (_, html) = ui.get("/ui/activity?caller=nobody").await;
    assert!(rows(&html).is_empty() && html.contains("No entries match."));
    let today = time::OffsetDateTime::now_utc().date();
    let (_, html) = ui.get(&format!("/ui/activity?since={}&until={}", today.next_day().unwrap(), today.next_day().unwrap())).await;
    assert!(rows(&html).is_empty(), "nothing tomorrow");
    let (_, html) = ui.get(&format!("/ui/activity?since={}&until={}", today.previous_day().unwrap(), today)).await;
    assert_eq!(rows(&html).len(), all.len(), "everything happened today");
    // A bad filter is named next to its field, and nothing is shown.
    let (st, html) = ui.get("/ui/activity?since=yesterday&vm=web1").await;
    let html = unescape(&html);
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(between(&html, r#"id="a-since-error" class="field-error">"#, "<").is_some_and(|e| e.contains("'yesterday'")), "{html}");
    assert!(html.contains(r#"id="a-vm-error""#) && rows(&html).is_empty(), "{html}");

    // The CSV download is the API's export of the same query.
    let csv = ui_csv(&ui, &format!("vm={vm1}")).await;
    assert_eq!(csv, api_csv(&s, &s.token, &format!("vm={vm1}")).await);
    assert_eq!(csv.len(), 4);
    let initiate = csv.iter().find(|r| r[4] == INITIATE && r[7] == "Succeeded").unwrap();
    let admin = s.get("/ajar/v1/me").await["name"].as_str().unwrap().to_owned();
    assert_eq!((initiate[5].as_str(), initiate[9].as_str()), (admin.as_str(), "deploy, now"), "caller and justification: {initiate:?}");
    let failed = ui_csv(&ui, &format!("vm={vm1}&result=Failed")).await;
    assert_eq!(failed, api_csv(&s, &s.token, &format!("vm={vm1}&result=Failed")).await);
    assert_eq!((failed.len(), failed[0][8].as_str()), (1, "InvalidInitiateInput"));
    assert_eq!(ui_csv(&ui, "").await, api_csv(&s, &s.token, "").await);
    // It needs a session, and a bad filter is refused.
    let anonymous = ui.client.get(format!("{}/ui/activity.csv", s.url)).send().await.unwrap();
    assert_eq!((anonymous.status(), anonymous.headers()[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/ui/signin"));
    assert_eq!(ui.get("/ui/activity.csv?result=maybe").await.0, StatusCode::BAD_REQUEST);

    // Pages of a hundred: "Older entries" continues where the page ended, and nothing is shown twice.
    for i in 0..110 {
        s.add_vm(&format!("bulk{i}"), "Linux", &s.loc, "10.0.1.1").await;
    }
    let everything = api_rows(&s.activity("limit=1000").await);
    let (_, first) = ui.get("/ui/activity").await;
    assert_eq!(rows(&first).len(), 100);
    assert!(!first.contains("Newest entries"));
    let at = first.find(r#"" rel="next">Older entries</a>"#).expect("an Older entries link");
    let older = unescape(&first[first[..at].rfind("href=\"").unwrap() + "href=\"".len()..at]);
    assert!(older.starts_with("/ui/activity?before="), "{older}");
    let (_, second) = ui.get(&older).await;
    assert!(second.contains("Newest entries") && !second.contains("Older entries"), "{second}");
    let paged: Vec<_> = rows(&first).into_iter().chain(rows(&second)).collect();
    assert_eq!(paged, everything);
}

#[tokio::test]
async fn a_principal_sees_only_the_activity_it_may_read() {
    let s = Server::start(&[]).await;
    s.add_vm_in("default", "web1", "Linux", &s.loc, "10.0.0.9").await;
    s.add_vm_in("other", "hidden1", "Linux", &s.loc, "10.0.0.9").await;
    let auditor = principal_with_role(&s, "auditor", READER, "default").await;
    let requester = principal_with_role(&s, "requester", JIT_REQUESTER, "default").await;

    let ui = Ui::sign_in(&s, &auditor).await;
    let (st, html) = ui.get("/ui/activity").await;
    assert_eq!(st, StatusCode::OK);
    let seen = rows(&html);
    let inside = format!("/subscriptions/{}/resourcegroups/default/", s.sub);
    assert!(seen.iter().any(|(op, r, _)| op == "Microsoft.Compute/virtualMachines/write" && r.ends_with("/web1")), "{seen:?}");
    assert!(seen.iter().all(|(_, r, _)| r.to_lowercase().starts_with(&inside)), "only its group: {seen:?}");
    assert!(!html.contains("hidden1"), "{html}");
    let everything = api_rows(&s.activity("").await);
    assert!(everything.iter().any(|(_, r, _)| r.ends_with("/hidden1")) && everything.len() > seen.len());
    // Its CSV holds the same entries, as the API gives them to it.
    let csv = ui_csv(&ui, "").await;
    assert_eq!(csv, api_csv(&s, &auditor, "").await);
    assert_eq!(csv.len(), seen.len());
    assert!(csv.iter().all(|r| r[3].to_lowercase().starts_with(&inside)), "{csv:?}");
    // Another group's machine has no log it may see.
    let hidden = encode(&format!("/subscriptions/{}/resourceGroups/other/providers/Microsoft.Compute/virtualMachines/hidden1", s.sub));
    let (st, html) = ui.get(&format!("/ui/activity?vm={hidden}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(rows(&html).is_empty() && html.contains("No entries match."));
    assert!(ui_csv(&ui, &format!("vm={hidden}")).await.is_empty());

    // Without the permission anywhere: refused, page and CSV alike, and on record.
    let ui = Ui::sign_in(&s, &requester).await;
    let (st, html) = ui.get("/ui/activity").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(html.contains("Refused") && html.contains("Ajar/activityLog/read") && !html.contains("<tbody>"), "{html}");
    assert_eq!(ui.get("/ui/activity.csv").await.0, StatusCode::FORBIDDEN);
    let denials: Vec<Value> = s
        .activity("operation=Ajar/activityLog/read&result=Failed")
        .await
        .into_iter()
        .filter(|e| e["caller"] == "requester" && e["errorCode"] == "AuthorizationFailed")
        .collect();
    assert_eq!(denials.len(), 2, "both refusals are logged");
}

#[tokio::test]
async fn the_timeline_shows_which_port_was_open_to_whom() {
    let s = with_policy(&[]).await;
    let admin = s.get("/ajar/v1/me").await["name"].as_str().unwrap().to_owned();
    assert_eq!(s.initiate("default", rdp(&s, "patching")).await.0, StatusCode::ACCEPTED);
    let ssh = json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [{"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "10.1.2.3"}]}]});
    let (st, v) = s.initiate("default", ssh).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let ui = Ui::sign_in(&s, &s.token).await;
    let today = time::OffsetDateTime::now_utc().date();

    for query in ["", "?range=day", "?range=week", &format!("?range=day&end={today}"), &format!("?range=week&end={today}")] {
        let (st, html) = ui.get(&format!("/ui/timeline{query}")).await;
        assert_eq!(st, StatusCode::OK, "{query}");
        let svg = between(&html, "<svg class=\"timeline\"", "</svg>").unwrap_or_else(|| panic!("{query}: a drawing in {html}"));
        let lanes: Vec<&str> =
            svg.split(r#"<text class="lane-label""#).skip(1).map(|l| between(l, "</title>", "</text>").unwrap()).collect();
        assert_eq!(lanes, ["vm1:22", "vm1:3389"], "{query}");
        assert!(svg.contains(&format!("<title>{admin} from 10.1.2.3 · vm1:22/TCP")), "{query}: who and from where: {svg}");
        assert!(svg.contains(r#"<rect class="bar live""#), "{query}");
        assert!(!svg.contains("style="), "the CSP forbids style attributes");
        let table = between(&html, "<tbody>", "</tbody>").unwrap();
        assert!(table.contains("3389/*") && table.contains("patching") && table.contains(&admin), "{query}: {table}");
    }
    let (st, html) = ui.get("/ui/timeline?range=day&end=2000-01-01").await;
    assert_eq!(st, StatusCode::OK);
    assert!(!html.contains("<svg class=\"timeline\"") && html.contains("No port you may see was open"), "{html}");
    let (st, html) = ui.get("/ui/timeline?range=month&end=someday").await;
    let html = unescape(&html);
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(html.contains(r#"id="t-range-error""#) && html.contains("'someday'"), "{html}");

    // Only machines the caller may read JIT at.
    let outsider = principal_with_role(&s, "outsider", READER, "other").await;
    let ui = Ui::sign_in(&s, &outsider).await;
    let (st, html) = ui.get("/ui/timeline?range=week").await;
    assert_eq!(st, StatusCode::OK);
    assert!(!html.contains("vm1") && html.contains("No port you may see was open"), "{html}");
}

#[tokio::test]
async fn the_configured_tab_charts_approved_requests_per_day() {
    let s = with_policy(&[]).await;
    assert_eq!(s.initiate("default", rdp(&s, "one")).await.0, StatusCode::ACCEPTED);
    assert_eq!(s.initiate("default", rdp(&s, "two")).await.0, StatusCode::ACCEPTED);
    let refused = json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [{"number": 80, "duration": "PT1H"}]}]});
    assert_eq!(s.initiate("default", refused).await.0, StatusCode::BAD_REQUEST);
    let ui = Ui::sign_in(&s, &s.token).await;
    let before = time::OffsetDateTime::now_utc().date();
    let (_, html) = ui.get("/ui/jit?tab=configured").await;
    let after = time::OffsetDateTime::now_utc().date();
    let cell = between(&html, r#"<td class="requests-7d">"#, "</td>").expect("the 7-day cell");
    let titles: Vec<&str> = cell.split("<title>").skip(1).map(|t| &t[..t.find("</title>").unwrap()]).collect();
    assert_eq!(titles.len(), 7, "{cell}");
    let last = titles[6];
    assert!([before, after].iter().any(|d| last == format!("{d}: 2 requests")), "today's bar: {last}");
    assert!(titles[..6].iter().all(|t| t.ends_with(": 0 requests")), "{titles:?}");
    assert!(cell.ends_with("</svg> 2"), "the total as text: {cell}");
    assert!(between(cell, r#"aria-label=""#, "\"").is_some_and(|l| l.ends_with(": 2")), "{cell}");
}
