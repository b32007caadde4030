//! Machines behind a gateway on the dashboard, over real HTTPS: the Configured tab, the request result and
//! the machine's page show the firewall marker and `publicAddress:mappedPort` (IPv6 in brackets), the
//! gateway's agent as online and in sync or not; a machine reached directly shows none of it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::request::{ask, form, post};
use super::{Ui, hidden_csrf};
use crate::common::Server;

/// What the gateway agent with `token` must enforce now: it reports that state applied.
async fn gateway_applies(s: &Server, token: &str) {
    let (st, desired, _) = s.send(Method::GET, "/ajar/v1/agent/desiredState", Some(token), None, "").await;
    assert_eq!(st, StatusCode::OK, "{desired}");
    let report = json!({"version": "0.1.0", "nftables": {"usable": true}, "appliedEtag": desired["etag"]});
    let (st, v, _) =
        s.send(Method::POST, "/ajar/v1/agent/report", Some(token), Some(serde_json::to_vec(&report).unwrap()), "application/json").await;
    assert!(st.is_success(), "{st} {v}");
}

/// The live grants of machine `name`, as the API's status shows them.
async fn live_grants(s: &Server, name: &str) -> Vec<Value> {
    let status = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub)).await;
    let vm = status["value"].as_array().unwrap().iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no {name} in {status}"));
    vm["liveGrants"].as_array().unwrap().clone()
}

/// The JIT page's row of machine `name`.
fn row<'h>(html: &'h str, name: &str) -> &'h str {
    let at = html.find(&format!(">{name}</a>")).unwrap_or_else(|| panic!("no row of {name} in {html}"));
    let start = html[..at].rfind("<tr>").unwrap();
    let end = at + html[at..].find("</tr>").unwrap();
    &html[start..end]
}

/// The request result's part about machine `name`: its heading and table.
fn opened<'h>(html: &'h str, name: &str) -> &'h str {
    let at = html.find(&format!(">{name}</a></h3>")).unwrap_or_else(|| panic!("no result for {name} in {html}"));
    let end = at + html[at..].find("</table>").unwrap();
    &html[at..end]
}

#[tokio::test]
async fn machines_behind_a_gateway_show_the_firewall_path_and_the_mapped_port() {
    let s = Server::start(&[]).await;
    s.add_vm("web1", "Linux", &s.loc, "10.0.0.4").await;
    s.add_vm("db1", "Linux", &s.loc, "10.0.3.2").await;
    s.add_vm("db6", "Linux", &s.loc, "fd00::6").await;
    let (st, enrolled) = s.enroll_gateway("gw1", &["2001:db8::1", "203.0.113.1"], None).await;
    assert_eq!(st, StatusCode::CREATED, "{enrolled}");
    let gw1 = enrolled["token"].as_str().unwrap().to_owned();
    assert_eq!(s.enroll_gateway("gw6", &["2001:db8::6"], None).await.0, StatusCode::CREATED);
    for (vm, gateway) in [("db1", "gw1"), ("db6", "gw6")] {
        let (st, v) = s.set_gateway(vm, Some(gateway)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let machines: Vec<String> = ["web1", "db1", "db6"].iter().map(|n| s.vm_id(n)).collect();
    let (st, v) = s.call(Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": machines}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    gateway_applies(&s, &gw1).await;
    let ui = Ui::sign_in(&s, &s.token).await;

    // Configured: the marker and the gateway's address on the machines behind one, nothing on web1.
    let (_, html) = ui.get("/ui/jit?tab=configured").await;
    let (web1, db1, db6) = (row(&html, "web1"), row(&html, "db1"), row(&html, "db6"));
    assert!(db1.contains(r#"<span class="badge firewall">Firewall: gw1</span> 203.0.113.1 → 10.0.3.2 : 22/TCP"#), "{db1}");
    assert!(db6.contains(r#"<span class="badge firewall">Firewall: gw6</span> 2001:db8::6 → fd00::6 : 22/TCP"#), "{db6}");
    assert!(web1.contains("<td>10.0.0.4 : 22/TCP</td>") && !web1.contains("Firewall") && !web1.contains("badge"), "{web1}");

    // The machine's page: the gateway, its addresses (the one to connect to first), its agent in sync.
    let (_, page) = ui.get(&format!("/ui/vm?id={}", s.vm_id("db1"))).await;
    for fact in [
        r#"<dt>Connection path</dt><dd><span class="badge firewall">Firewall: gw1</span> firewall: JIT ports are reached through gateway <strong>gw1</strong></dd>"#,
        "<dt>Gateway public addresses</dt><dd>203.0.113.1, 2001:db8::1</dd>",
        "<dt>Connect to</dt><dd>203.0.113.1, on the port mapped for each grant (from 50000-59999)</dd>",
        "<dt>Gateway agent</dt><dd>online, in sync</dd>",
    ] {
        assert!(page.contains(fact), "{fact} in {page}");
    }
    // The form says the machine is reached through its gateway.
    assert!(page.contains("10.0.3.2 · Firewall: gw1 (reached through the gateway)"), "{page}");
    let (_, page) = ui.get(&format!("/ui/vm?id={}", s.vm_id("web1"))).await;
    assert!(!page.contains("Connection path") && !page.contains("Firewall") && !page.contains("gateway"), "{page}");

    // One request for the three: the gateways' ports are the mapped ones on their addresses, web1's its own.
    let asks: Vec<_> = ["web1", "db1", "db6"].iter().map(|vm| ask(&s, vm, &["22"], None, "PT1H")).collect();
    let (st, result) = post(&ui, &form(Some(&hidden_csrf(&html)), &asks, "migrate")).await;
    assert_eq!(st, StatusCode::OK, "{result}");
    let (db1_grants, db6_grants) = (live_grants(&s, "db1").await, live_grants(&s, "db6").await);
    let (db1_to, db6_to) = (db1_grants[0]["connectTo"].as_str().unwrap(), db6_grants[0]["connectTo"].as_str().unwrap());
    let db1_port = db1_grants[0]["mappedPort"].as_u64().unwrap();
    assert_eq!(db1_to, format!("203.0.113.1:{db1_port}"), "{db1_grants:?}");
    assert!(db6_to.starts_with("[2001:db8::6]:5"), "{db6_grants:?}");
    let said = |to: &str, gw: &str| format!("Connect to <code>{to}</code> (through gateway {gw}, firewall)");
    assert!(opened(&result, "db1").contains(&said(db1_to, "gw1")), "{result}");
    assert!(opened(&result, "db6").contains(&said(db6_to, "gw6")), "{result}");
    let web1 = opened(&result, "web1");
    assert!(web1.contains("<td><code>ssh 10.0.0.4</code></td>") && !web1.contains("firewall") && !web1.contains("203.0.113.1"), "{web1}");

    // What is open now, where to connect: on the tab and on the machine's page, whose gateway has not
    // applied the grant yet, and then has.
    let (_, html) = ui.get("/ui/jit?tab=configured").await;
    assert!(row(&html, "db1").contains(&format!("22/TCP for admin at {db1_to}, <time")), "{html}");
    assert!(row(&html, "db6").contains(&format!("22/TCP for admin at {db6_to}, <time")), "{html}");
    assert!(row(&html, "web1").contains("22/TCP for admin, <time"), "{html}");
    let db1_page = format!("/ui/vm?id={}", s.vm_id("db1"));
    let (_, page) = ui.get(&db1_page).await;
    assert!(page.contains(&format!("<li>22/TCP for admin: connect to <code>{db1_to}</code>, <time")), "{page}");
    assert!(page.contains("<dt>Gateway agent</dt><dd>online, not in sync: it has not applied the latest changes yet</dd>"), "{page}");
    gateway_applies(&s, &gw1).await;
    let (_, page) = ui.get(&db1_page).await;
    assert!(page.contains("<dt>Gateway agent</dt><dd>online, in sync</dd>"), "{page}");
    let (_, page) = ui.get(&format!("/ui/vm?id={}", s.vm_id("web1"))).await;
    assert!(page.contains("<li>22/TCP for admin, <time") && !page.contains("connect to"), "{page}");
}
