//! Enabling, editing and removing JIT from the dashboard, over real HTTPS, checked through the API: the
//! form as a browser would send it, field errors next to their fields, all or nothing, CSRF, and a
//! Reader who is offered nothing and refused anyway.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Ui, unescape};
use crate::common::{API, READER, Server};

/// Enrols a host agent for `name` (Linux, nftables usable): the machine is then Not configured.
async fn enrol(s: &Server, name: &str) {
    let (st, v) = s.enroll_agent(name, true).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

/// The machine's JIT state as the API reports it.
async fn state_of(s: &Server, name: &str) -> String {
    let v = s.get(&format!("/ajar/v1/subscriptions/{}/jitStatus", s.sub)).await;
    let found = v["value"].as_array().unwrap().iter().find(|m| m["id"].as_str().unwrap().ends_with(&format!("/{name}"))).cloned();
    found.unwrap_or_else(|| panic!("{name} in {v}"))["state"].as_str().unwrap().to_owned()
}

/// The policy's ports of `vm` as "number/protocol from sources max duration", or `None` without the policy.
async fn ports_of(s: &Server, policy: &str, vm: &str) -> Option<Vec<String>> {
    let (st, v) = s.call(Method::GET, &format!("{}?{API}", s.policy_path(policy)), None).await;
    if st == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(st, StatusCode::OK, "{v}");
    let machine = v["properties"]["virtualMachines"].as_array().unwrap().iter().find(|m| m["id"] == s.vm_id(vm))?.clone();
    let ports = machine["ports"].as_array().unwrap().iter().map(|p| {
        let from = match (&p["allowedSourceAddressPrefix"], &p["allowedSourceAddressPrefixes"]) {
            (Value::String(one), _) => one.clone(),
            (_, Value::Array(list)) => list.iter().map(|x| x.as_str().unwrap()).collect::<Vec<_>>().join(","),
            other => panic!("no sources: {other:?}"),
        };
        format!("{}/{} from {from} max {}", p["number"], p["protocol"].as_str().unwrap(), p["maxRequestAccessDuration"].as_str().unwrap())
    });
    Some(ports.collect())
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(unescape(&tag[at..at + tag[at..].find('"')?]))
}

fn has_flag(tag: &str, flag: &str) -> bool {
    tag.split([' ', '>']).any(|w| w == flag)
}

/// The fields a browser sends from the page's form that posts to `action`: its inputs (checkboxes only
/// when ticked) and each select's chosen option, in document order. Buttons are left to the caller.
fn form_fields(html: &str, action: &str) -> Vec<(String, String)> {
    let start = html.find(&format!(r#"action="{action}""#)).unwrap_or_else(|| panic!("a form posting to {action} in {html}"));
    let form = &html[start..start + html[start..].find("</form>").unwrap()];
    let mut fields = Vec::new();
    let mut rest = form;
    while let Some(at) = rest.find('<') {
        rest = &rest[at..];
        let tag = &rest[..=rest.find('>').unwrap()];
        if tag.starts_with("<input") {
            let kind = attr(tag, "type").unwrap_or_else(|| "text".into());
            if let Some(name) = attr(tag, "name")
                && (kind != "checkbox" || has_flag(tag, "checked"))
            {
                fields.push((name, attr(tag, "value").unwrap_or_default()));
            }
        } else if tag.starts_with("<select") {
            let body = &rest[..rest.find("</select>").unwrap()];
            let options: Vec<&str> = body.split("<option").skip(1).collect();
            let chosen = options.iter().find(|o| has_flag(o.split('>').next().unwrap(), "selected")).or(options.first()).unwrap();
            fields.push((attr(tag, "name").unwrap(), attr(&format!(" {chosen}"), "value").unwrap()));
        }
        rest = &rest[1..];
    }
    fields
}

/// Sets the `nth` (from 0) field called `name`.
fn set(fields: &mut [(String, String)], name: &str, nth: usize, value: &str) {
    let field = fields.iter_mut().filter(|(k, _)| k == name).nth(nth).unwrap_or_else(|| panic!("field {name} #{nth}"));
    field.1 = value.to_owned();
}

/// Unticks row `row`'s "Keep".
fn drop_row(fields: &mut Vec<(String, String)>, row: usize) {
    let before = fields.len();
    fields.retain(|(k, v)| !(k == "keep" && *v == row.to_string()));
    assert_eq!(fields.len(), before - 1, "row {row} was kept");
}

async fn submit(ui: &Ui<'_>, fields: &[(String, String)], action: &str) -> (StatusCode, String) {
    let mut sent: Vec<(&str, String)> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    sent.push(("action", action.to_owned()));
    ui.post("/ui/configure", &sent).await
}

/// The text of the element with this `id`.
fn text_of<'h>(html: &'h str, id: &str) -> &'h str {
    let at = html.find(&format!(r#"id="{id}">"#)).unwrap_or_else(|| panic!("#{id} in {html}"));
    let rest = &html[at + id.len() + 6..];
    &rest[..rest.find('<').unwrap()]
}

fn query(s: &Server, names: &[&str]) -> String {
    names.iter().map(|n| format!("vm={}", s.vm_id(n))).collect::<Vec<_>>().join("&")
}

/// A policy "default" holding vm1 (22/TCP from 10.0.0.0/8 max PT1H, 3389/* from * max PT3H) and vm2.
async fn two_machine_policy(s: &Server) {
    s.add_vm("vm1", "Linux", &s.loc, "10.0.0.4").await;
    s.add_vm("vm2", "Windows", &s.loc, "10.0.0.5").await;
    let (st, v) = s
        .put_policy(
            "default",
            json!({"kind": "Basic", "properties": {"virtualMachines": [
                {"id": s.vm_id("vm1"), "ports": [
                    {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "10.0.0.0/8", "maxRequestAccessDuration": "PT1H"},
                    {"number": 3389, "protocol": "*", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}]},
                {"id": s.vm_id("vm2"), "ports": [
                    {"number": 3389, "protocol": "TCP", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}]}
            ]}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

const RECOMMENDED: [&str; 4] =
    ["22/TCP from * max PT3H", "3389/TCP from * max PT3H", "5985/TCP from * max PT3H", "5986/TCP from * max PT3H"];

#[tokio::test]
async fn enabling_with_the_defaults_configures_several_machines_at_once() {
    let s = Server::start(&[]).await;
    enrol(&s, "web1").await;
    enrol(&s, "web2").await;
    s.add_vm("bare1", "Linux", &s.loc, "10.0.0.7").await;
    s.add_vm("set1", "Linux", &s.loc, "10.0.0.8").await;
    let (st, v) = s.call(Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": [s.vm_id("set1")]}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ui = Ui::sign_in(&s, &s.token).await;

    // The selection of the Not configured tab: the two machines, the recommended ports with their defaults,
    // and a note for each machine the form leaves out.
    let (st, html) = ui.get(&format!("/ui/configure?{}", query(&s, &["web1", "web2", "bare1", "set1"]))).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("Enable JIT on 2 machines"), "{html}");
    for legend in ["SSH (22)", "RDP (3389)", "WinRM (HTTP) (5985)", "WinRM (HTTPS) (5986)"] {
        assert!(html.contains(&format!("<legend>{legend}</legend>")), "{legend} in {html}");
    }
    for field in ["keep-0", "number-0", "protocol-0", "sources-0", "max-0", "number-3"] {
        assert!(html.contains(&format!(r#"<label for="{field}""#)), "labelled {field}");
    }
    assert!(html.contains("JIT cannot be enabled: no enforcement point"), "bare1 is unsupported: {html}");
    assert!(html.contains("JIT is already configured on it.") && html.contains("Edit its configuration"), "set1: {html}");
    let fields = form_fields(&html, "/ui/configure");
    let vms: Vec<&str> = fields.iter().filter(|(k, _)| k == "vm").map(|(_, v)| v.as_str()).collect();
    assert_eq!(vms, [s.vm_id("web1"), s.vm_id("web2")]);

    // "Save" as it is: the one-click path.
    let (st, done) = submit(&ui, &fields, "save").await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert!(done.contains("JIT enabled on 2 machines") && done.contains("22/TCP from * for at most PT3H"), "{done}");
    for vm in ["web1", "web2"] {
        assert_eq!(state_of(&s, vm).await, "Configured");
        assert_eq!(ports_of(&s, "default", vm).await.unwrap(), RECOMMENDED, "{vm}");
    }
    assert_eq!(state_of(&s, "bare1").await, "Unsupported");
    let entries = s.activity("limit=5").await;
    let enable = entries.iter().find(|e| e["operation"] == "Microsoft.Security/locations/jitNetworkAccessPolicies/write").unwrap();
    assert_eq!(enable["result"], "Succeeded", "{enable}");
    assert!(enable.to_string().contains("web1 web2"), "the record names both: {enable}");

    // Again (a reloaded post): they are configured now; nothing changes.
    let (st, again) = submit(&ui, &fields, "save").await;
    assert_eq!(st, StatusCode::CONFLICT, "{again}");
    assert!(again.contains("JIT is already configured on web1") && again.contains("Nothing was changed"), "{again}");
}

#[tokio::test]
async fn custom_ports_are_stored_as_typed() {
    let s = Server::start(&[]).await;
    enrol(&s, "web1").await;
    let ui = Ui::sign_in(&s, &s.token).await;
    let (_, html) = ui.get(&format!("/ui/configure?{}", query(&s, &["web1"]))).await;
    assert!(html.contains("Enable JIT on web1"), "{html}");
    let mut fields = form_fields(&html, "/ui/configure");
    set(&mut fields, "sources", 0, "192.168.1.0/24, 2001:db8::/32");

    // "Add a port": one more row, and what was typed stays.
    let (st, html) = submit(&ui, &fields, "add").await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("<legend>New port</legend>") && html.contains(r#"id="number-4""#), "{html}");
    assert!(html.contains(r#"value="192.168.1.0/24, 2001:db8::/32""#), "typed sources kept: {html}");
    let mut fields = form_fields(&html, "/ui/configure");
    set(&mut fields, "number", 4, "8443");
    set(&mut fields, "protocol", 4, "UDP");
    set(&mut fields, "sources", 4, "10.0.0.0/24");
    set(&mut fields, "max", 4, "PT1H");
    drop_row(&mut fields, 1);

    let (st, done) = submit(&ui, &fields, "save").await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert!(done.contains("8443/UDP from 10.0.0.0/24 for at most PT1H"), "{done}");
    assert_eq!(
        ports_of(&s, "default", "web1").await.unwrap(),
        [
            "22/TCP from 192.168.1.0/24,2001:db8::/32 max PT3H",
            "5985/TCP from * max PT3H",
            "5986/TCP from * max PT3H",
            "8443/UDP from 10.0.0.0/24 max PT1H"
        ]
    );
}

#[tokio::test]
async fn editing_replaces_one_machines_ports_and_leaves_the_others() {
    let s = Server::start(&[]).await;
    two_machine_policy(&s).await;
    // A grant open on the port about to be removed ends with it.
    let port = json!({"number": 3389, "duration": "PT1H", "allowedSourceAddressPrefix": "10.1.1.1"});
    let (st, v) = s.initiate("default", json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [port]}]})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let ui = Ui::sign_in(&s, &s.token).await;

    let (_, page) = ui.get(&format!("/ui/vm?id={}", s.vm_id("vm1"))).await;
    assert!(page.contains("Edit configuration") && page.contains("Remove JIT"), "{page}");
    let (st, html) = ui.get(&format!("/ui/configure?{}", query(&s, &["vm1"]))).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("Edit JIT configuration of vm1") && html.contains("Remove JIT from vm1"), "{html}");
    let mut fields = form_fields(&html, "/ui/configure");
    let shown: Vec<String> = ["number", "protocol", "sources", "max"]
        .iter()
        .flat_map(|name| fields.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(shown, ["22", "3389", "TCP", "*", "10.0.0.0/8", "*", "PT1H", "PT3H"], "the machine's ports as they are");
    assert!(fields.contains(&("mode".into(), "edit".into())));

    drop_row(&mut fields, 1);
    set(&mut fields, "max", 0, "PT2H");
    let (st, done) = submit(&ui, &fields, "save").await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert!(done.contains("JIT configuration of vm1 saved") && done.contains("1 open grant(s)"), "{done}");
    assert_eq!(ports_of(&s, "default", "vm1").await.unwrap(), ["22/TCP from 10.0.0.0/8 max PT2H"]);
    assert_eq!(ports_of(&s, "default", "vm2").await.unwrap(), ["3389/TCP from * max PT3H"], "vm2 untouched");
    assert_eq!(s.stored_statuses(), [("Revoked".to_owned(), "UserRequested".to_owned())]);

    // The last port cannot go this way: that is "Remove JIT".
    let (_, html) = ui.get(&format!("/ui/configure?{}", query(&s, &["vm1"]))).await;
    let mut fields = form_fields(&html, "/ui/configure");
    drop_row(&mut fields, 0);
    let (st, refused) = submit(&ui, &fields, "save").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.contains("Keep at least one port"), "{refused}");
    assert_eq!(ports_of(&s, "default", "vm1").await.unwrap(), ["22/TCP from 10.0.0.0/8 max PT2H"]);
}

#[tokio::test]
async fn two_editors_cannot_overwrite_each_other() {
    let s = Server::start(&[]).await;
    two_machine_policy(&s).await;
    let (alice, bob) = (Ui::sign_in(&s, &s.token).await, Ui::sign_in(&s, &s.token).await);
    let edit = format!("/ui/configure?{}", query(&s, &["vm1"]));
    let (_, html) = alice.get(&edit).await;
    let mut alices = form_fields(&html, "/ui/configure");
    let (_, html) = bob.get(&edit).await;
    let mut bobs = form_fields(&html, "/ui/configure");
    assert!(alices.iter().any(|(k, v)| k == "etag" && !v.is_empty()), "the form carries the version it shows: {alices:?}");

    // Adding a row keeps the version the form was opened on.
    let (_, html) = submit(&alice, &alices, "add").await;
    let added = form_fields(&html, "/ui/configure");
    assert_eq!(added.iter().find(|(k, _)| k == "etag"), alices.iter().find(|(k, _)| k == "etag"));

    set(&mut alices, "max", 0, "PT30M");
    let (st, done) = submit(&alice, &alices, "save").await;
    assert_eq!(st, StatusCode::OK, "{done}");
    // Bob's form shows the version before Alice's: his save is refused, and the page shows what is
    // stored now.
    set(&mut bobs, "sources", 0, "10.9.0.0/16");
    let (st, refused) = submit(&bob, &bobs, "save").await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{refused}");
    assert!(refused.contains("changed by someone else after you opened this form; nothing was saved"), "{refused}");
    let shown = form_fields(&refused, "/ui/configure");
    assert!(shown.contains(&("max".into(), "PT30M".into())), "the form now holds Alice's edit: {shown:?}");
    assert_eq!(ports_of(&s, "default", "vm1").await.unwrap(), ["22/TCP from 10.0.0.0/8 max PT30M", "3389/* from * max PT3H"]);
    // From the form as it is now, Bob's change goes through.
    let mut again = shown;
    set(&mut again, "sources", 0, "10.9.0.0/16");
    let (st, done) = submit(&bob, &again, "save").await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(ports_of(&s, "default", "vm1").await.unwrap(), ["22/TCP from 10.9.0.0/16 max PT30M", "3389/* from * max PT3H"]);

    // Removing JIT is confirmed on a version too.
    let (_, confirm) = alice.post("/ui/configure/remove", &[("csrf", alice.csrf().await), ("vm", s.vm_id("vm2"))]).await;
    let confirmation = form_fields(&confirm, "/ui/configure/remove");
    let (_, html) = bob.get(&edit).await;
    let mut fields = form_fields(&html, "/ui/configure");
    set(&mut fields, "max", 0, "PT20M");
    assert_eq!(submit(&bob, &fields, "save").await.0, StatusCode::OK);
    let sent: Vec<(&str, String)> = confirmation.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let (st, page) = alice.post("/ui/configure/remove", &sent).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "{page}");
    assert!(ports_of(&s, "default", "vm2").await.is_some(), "vm2 is still guarded");
}

#[tokio::test]
async fn removing_jit_keeps_the_other_machines_and_deletes_the_last() {
    let s = Server::start(&[]).await;
    two_machine_policy(&s).await;
    let port = json!({"number": 22, "duration": "PT1H", "allowedSourceAddressPrefix": "10.1.1.1"});
    let (st, v) = s.initiate("default", json!({"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [port]}]})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let ui = Ui::sign_in(&s, &s.token).await;
    let csrf = ui.csrf().await;

    // The button asks first; asking changes nothing.
    let (st, confirm) = ui.post("/ui/configure/remove", &[("csrf", csrf.clone()), ("vm", s.vm_id("vm1"))]).await;
    assert_eq!(st, StatusCode::OK, "{confirm}");
    assert!(
        confirm.contains("Remove JIT from vm1?") && confirm.contains("22/TCP, 3389/*") && confirm.contains("other 1 machine"),
        "{confirm}"
    );
    assert!(confirm.contains("These grants end now") && confirm.contains("22/TCP for admin"), "{confirm}");
    let confirmed = form_fields(&confirm, "/ui/configure/remove");
    assert!(confirmed.contains(&("confirm".into(), "yes".into())), "{confirmed:?}");
    assert!(ports_of(&s, "default", "vm1").await.is_some(), "not removed yet");

    let sent: Vec<(&str, String)> = confirmed.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let (st, done) = ui.post("/ui/configure/remove", &sent).await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert!(done.contains("JIT removed from vm1") && done.contains("1 open grant(s) on it were ended"), "{done}");
    assert_eq!(s.stored_statuses(), [("Revoked".to_owned(), "UserRequested".to_owned())], "its grant ended with it");
    assert_eq!(ports_of(&s, "default", "vm1").await, None);
    assert_eq!(ports_of(&s, "default", "vm2").await.unwrap(), ["3389/TCP from * max PT3H"], "vm2 keeps its configuration");
    let (_, page) = ui.get(&format!("/ui/vm?id={}", s.vm_id("vm1"))).await;
    assert!(page.contains("JIT is not configured on this machine.") && !page.contains("Remove JIT"), "{page}");

    // The policy's last machine: the policy goes, as the API's DELETE.
    let (_, page) = ui.get(&format!("/ui/vm?id={}", s.vm_id("vm2"))).await;
    let (_, confirm) = ui
        .post(
            "/ui/configure/remove",
            &form_fields(&page, "/ui/configure/remove").iter().map(|(k, v)| (k.as_str(), v.clone())).collect::<Vec<_>>(),
        )
        .await;
    let sent: Vec<(String, String)> = form_fields(&confirm, "/ui/configure/remove");
    let (st, done) = ui.post("/ui/configure/remove", &sent.iter().map(|(k, v)| (k.as_str(), v.clone())).collect::<Vec<_>>()).await;
    assert_eq!(st, StatusCode::OK, "{done}");
    let (st, _) = s.call(Method::GET, &format!("{}?{API}", s.policy_path("default")), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "the policy is gone");
    let entries = s.activity("limit=3").await;
    assert_eq!(entries[0]["operation"], "Microsoft.Security/locations/jitNetworkAccessPolicies/delete", "{entries:?}");
    assert_eq!(entries[0]["result"], "Succeeded");

    // Again: nothing to remove.
    let (st, _) = ui.post("/ui/configure/remove", &sent.iter().map(|(k, v)| (k.as_str(), v.clone())).collect::<Vec<_>>()).await;
    assert_eq!(st, StatusCode::CONFLICT);
}

#[tokio::test]
async fn wrong_fields_are_shown_next_to_them_and_nothing_is_written() {
    let s = Server::start(&[]).await;
    enrol(&s, "web1").await;
    enrol(&s, "web2").await;
    let ui = Ui::sign_in(&s, &s.token).await;
    let (_, html) = ui.get(&format!("/ui/configure?{}", query(&s, &["web1", "web2"]))).await;
    let mut fields = form_fields(&html, "/ui/configure");
    set(&mut fields, "number", 0, "70000");
    set(&mut fields, "sources", 1, "10.0.0.0/33");

    let (st, page) = submit(&ui, &fields, "save").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{page}");
    assert!(text_of(&page, "number-0-error").contains("70000"), "{page}");
    assert!(text_of(&page, "sources-1-error").contains("10.0.0.0/33"), "{page}");
    assert!(page.contains(r#"aria-describedby="number-0-error""#), "the field points at its error");
    assert!(page.contains(r#"value="70000""#) && page.contains(r#"value="10.0.0.0/33""#), "as typed");
    assert!(!page.contains(r#"id="number-1-error""#) && !page.contains(r#"id="sources-0-error""#), "only where wrong");

    // The policy's own rules (a port twice, a maximum beyond the server's limit) land on their row too.
    let mut fields = form_fields(&page, "/ui/configure");
    set(&mut fields, "number", 0, "22");
    set(&mut fields, "sources", 1, "*");
    set(&mut fields, "number", 3, "22");
    let (st, page) = submit(&ui, &fields, "save").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{page}");
    assert!(text_of(&page, "number-3-error").contains("configured twice"), "{page}");
    let mut fields = form_fields(&page, "/ui/configure");
    set(&mut fields, "number", 3, "5986");
    set(&mut fields, "max", 2, "P2D");
    let (st, page) = submit(&ui, &fields, "save").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{page}");
    assert!(text_of(&page, "max-2-error").contains("outside the allowed range"), "{page}");

    for vm in ["web1", "web2"] {
        assert_eq!(state_of(&s, vm).await, "NotConfigured", "nothing written for {vm}");
    }
    assert_eq!(ports_of(&s, "default", "web1").await, None);

    // Corrected, it goes through.
    let mut fields = form_fields(&page, "/ui/configure");
    set(&mut fields, "max", 2, "PT3H");
    let (st, page) = submit(&ui, &fields, "save").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(ports_of(&s, "default", "web2").await.unwrap(), RECOMMENDED);
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_writes_nothing() {
    let s = Server::start(&[]).await;
    enrol(&s, "web1").await;
    two_machine_policy(&s).await;
    let ui = Ui::sign_in(&s, &s.token).await;
    let (_, html) = ui.get(&format!("/ui/configure?{}", query(&s, &["web1"]))).await;
    let fields = form_fields(&html, "/ui/configure");
    for csrf in [None, Some("forged")] {
        let mut sent: Vec<(String, String)> = fields.iter().filter(|(k, _)| k != "csrf").cloned().collect();
        if let Some(c) = csrf {
            sent.push(("csrf".into(), c.into()));
        }
        let (st, page) = submit(&ui, &sent, "save").await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
        assert!(page.contains("CSRF"), "{page}");
        let (st, _) = ui
            .post("/ui/configure/remove", &[("vm", s.vm_id("vm1")), ("confirm", "yes".into()), ("csrf", csrf.unwrap_or("").into())])
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    assert_eq!(state_of(&s, "web1").await, "NotConfigured");
    assert_eq!(ports_of(&s, "default", "vm1").await.unwrap().len(), 2, "vm1 still configured");
}

#[tokio::test]
async fn a_reader_is_offered_nothing_to_configure_and_is_refused() {
    let s = Server::start(&[]).await;
    enrol(&s, "web1").await;
    two_machine_policy(&s).await;
    let (_, token) = s.principal_with_role("auditor", READER, &s.rg_scope()).await;

    // What an Owner is offered, a Reader is not.
    let owner = Ui::sign_in(&s, &s.token).await;
    let (_, page) = owner.get(&format!("/ui/vm?id={}", s.vm_id("web1"))).await;
    assert!(page.contains(">Enable JIT</a>"), "{page}");
    let (_, enable_form) = owner.get(&format!("/ui/configure?{}", query(&s, &["web1"]))).await;
    let (_, edit_form) = owner.get(&format!("/ui/configure?{}", query(&s, &["vm1"]))).await;

    let ui = Ui::sign_in(&s, &token).await;
    let csrf = ui.csrf().await;
    let (_, page) = ui.get(&format!("/ui/vm?id={}", s.vm_id("web1"))).await;
    assert!(page.contains("JIT is not configured on this machine.") && !page.contains("Enable JIT"), "{page}");
    let (_, page) = ui.get(&format!("/ui/vm?id={}", s.vm_id("vm1"))).await;
    assert!(page.contains("JIT configuration") && !page.contains("Edit configuration") && !page.contains("Remove JIT"), "{page}");
    let (st, page) = ui.get(&format!("/ui/configure?{}", query(&s, &["web1", "vm1"]))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("you may not enable JIT on it") && page.contains("you may not change its JIT configuration"), "{page}");
    assert!(!page.contains(r#"name="number""#), "no form: {page}");

    // The forms an Owner was shown, posted in the Reader's session, are refused as the API refuses them.
    for form in [&enable_form, &edit_form] {
        let mut fields = form_fields(form, "/ui/configure");
        set(&mut fields, "csrf", 0, &csrf);
        let (st, page) = submit(&ui, &fields, "save").await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
        assert!(page.contains("AuthorizationFailed"), "{page}");
    }
    let (st, page) = ui.post("/ui/configure/remove", &[("csrf", csrf.clone()), ("vm", s.vm_id("vm1"))]).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "not even asked: {page}");
    let (st, page) = ui.post("/ui/configure/remove", &[("csrf", csrf), ("vm", s.vm_id("vm1")), ("confirm", "yes".into())]).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("AuthorizationFailed"), "{page}");

    assert_eq!(state_of(&s, "web1").await, "NotConfigured");
    assert_eq!(ports_of(&s, "default", "vm1").await.unwrap().len(), 2);
    assert_eq!(ports_of(&s, "default", "vm2").await.unwrap().len(), 1);
    let refusals: Vec<Value> = s
        .activity("caller=auditor")
        .await
        .into_iter()
        .filter(|e| e["result"] == "Failed" && e.to_string().contains("AuthorizationFailed"))
        .collect();
    assert_eq!(refusals.len(), 3, "each refusal is on record: {refusals:?}");
}
