//! The dashboard over real HTTPS, at the HTTP level: sign-in, the session cookie's attributes, CSRF on
//! every form, the JIT page's tabs, and what a signed-in principal may see. (The browser tests drive
//! the same pages in Chromium.)

use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode, redirect};
use serde_json::json;

use crate::common::{API, READER, Server};

mod activity;
mod configure;
mod gateway;
mod oidc_signin;
mod request;

/// A signed-in browser session, for the dashboard's tests: requests carry its cookie, follow no
/// redirects, and trust only the server's CA.
pub struct Ui<'a> {
    pub server: &'a Server,
    pub client: reqwest::Client,
    pub session: String,
}

impl<'a> Ui<'a> {
    /// Signs in to `server` with `token`.
    pub async fn sign_in(server: &'a Server, token: &str) -> Ui<'a> {
        let client = browser(server);
        let session = sign_in(server, &client, token).await;
        Ui { server, client, session }
    }

    /// GETs `path` (with its query) in the session: the status and the body.
    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self.get_response(path).await;
        (resp.status(), resp.text().await.unwrap())
    }

    pub async fn get_response(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.server.url)).header("cookie", self.cookie()).send().await.unwrap()
    }

    /// POSTs `fields` as a form to `path` in the session (add `("csrf", …)` yourself): the status and the body.
    pub async fn post(&self, path: &str, fields: &[(&str, String)]) -> (StatusCode, String) {
        let resp =
            self.client.post(format!("{}{path}", self.server.url)).header("cookie", self.cookie()).form(fields).send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    /// The session's CSRF token, read from a page's form.
    pub async fn csrf(&self) -> String {
        let (_, html) = self.get("/ui/jit").await;
        hidden_csrf(&html)
    }

    fn cookie(&self) -> String {
        format!("ajar_session={}", self.session)
    }
}

/// A browser-like client that does not follow redirects and keeps no cookies of its own.
fn browser(s: &Server) -> reqwest::Client {
    let ca = std::fs::read(s.ca_path()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(redirect::Policy::none())
        // Below the server's keep-alive bound (10 s), so a connection it is about to close is not reused.
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap()
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned()
}

fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).find(|c| c.starts_with(&format!("{name}=")))
}

/// HTML's character references undone, to compare with plain text; `&` last, so nothing is undone twice.
fn unescape(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

pub fn hidden_csrf(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a CSRF field");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Signs in with `token`; returns the session cookie.
async fn sign_in(s: &Server, c: &reqwest::Client, token: &str) -> String {
    let form = c.get(format!("{}/ui/signin", s.url)).send().await.unwrap();
    let signin_cookie = set_cookie(&form, "ajar_signin").unwrap();
    let csrf = hidden_csrf(&form.text().await.unwrap());
    let resp = c
        .post(format!("{}/ui/signin", s.url))
        .header("cookie", format!("ajar_signin={}", cookie_value(&signin_cookie)))
        .form(&[("csrf", csrf.as_str()), ("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    cookie_value(&set_cookie(&resp, "ajar_session").unwrap())
}

#[tokio::test]
async fn signin_sessions_csrf_and_the_jit_page() {
    let s = Server::start(&[]).await;
    s.add_vm("web1", "Linux", &s.loc, "10.0.0.4").await;
    s.add_vm("db1", "Linux", &s.loc, "10.0.0.5").await;
    let (st, v) = s.call(Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": [s.vm_id("web1")]}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let c = browser(&s);

    // The form sets a double-submit cookie with the right attributes, matching its hidden field.
    let form = c.get(format!("{}/ui/signin", s.url)).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert_eq!(form.headers()["x-content-type-options"], "nosniff");
    assert!(form.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let signin_cookie = set_cookie(&form, "ajar_signin").unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(signin_cookie.contains(attr), "{signin_cookie}");
    }
    let html = form.text().await.unwrap();
    let csrf = hidden_csrf(&html);
    assert_eq!(csrf, cookie_value(&signin_cookie));
    assert!(html.contains(r#"<label for="token">"#), "labelled field");

    // A post without the cookie (another site's form) is refused; a bad token is refused and logged.
    let post = |cookie: Option<String>, csrf: String, token: &str| {
        let mut req = c.post(format!("{}/ui/signin", s.url)).form(&[("csrf", csrf), ("token", token.to_owned())]);
        if let Some(cookie) = cookie {
            req = req.header("cookie", format!("ajar_signin={cookie}"));
        }
        req.send()
    };
    let resp = post(None, csrf.clone(), &s.token).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post(Some(cookie_value(&signin_cookie)), csrf.clone(), "ajar_wrong").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("unknown, expired or revoked"));
    let refused = s.activity("limit=20").await;
    assert!(refused.iter().any(|e| e["operation"] == "Ajar/authenticate" && e["resourceId"] == "/ui/signin"), "{refused:?}");

    // The right token opens a session: a cookie the page's scripts cannot read, sent to this site only.
    let resp = post(Some(cookie_value(&signin_cookie)), csrf, &s.token).await.unwrap();
    assert_eq!((resp.status(), resp.headers()[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/ui/jit"));
    let session = set_cookie(&resp, "ajar_session").unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=28800", "Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    let session = cookie_value(&session);
    let jit = |tab: &'static str, session: String| {
        c.get(format!("{}/ui/jit?tab={tab}", s.url)).header("cookie", format!("ajar_session={session}")).send()
    };
    let page = jit("configured", session.clone()).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Just-in-time VM access") && html.contains("web1") && !html.contains("db1"), "{html}");
    for tab in [
        r#"Configured<span class="count" aria-label="1 machines">1</span>"#,
        r#"Unsupported<span class="count" aria-label="1 machines">1</span>"#,
    ] {
        assert!(html.contains(tab), "{tab} in {html}");
    }
    let html = jit("unsupported", session.clone()).await.unwrap().text().await.unwrap();
    assert!(html.contains("db1") && !html.contains(">web1<"), "{html}");

    // A machine's page, and "Connect": ports, "My IP", a time range up to the maximum, a justification.
    let vm_page =
        c.get(format!("{}/ui/vm?id={}", s.url, s.vm_id("web1"))).header("cookie", format!("ajar_session={session}")).send().await.unwrap();
    assert_eq!(vm_page.status(), StatusCode::OK);
    let vm_html = vm_page.text().await.unwrap();
    assert!(vm_html.contains("Open ports") && vm_html.contains("My IP (127.0.0.1)") && vm_html.contains(r#"value="PT3H""#), "{vm_html}");
    assert!(!vm_html.contains(r#"value="PT6H""#), "no longer than the port's maximum: {vm_html}");
    // Connect is the request form for this one machine, sent where every request goes.
    assert!(
        vm_html.contains(r#"action="/ui/request""#) && vm_html.contains(&format!(r#"name="vm" value="{}""#, s.vm_id("web1"))),
        "{vm_html}"
    );
    let open = |csrf: String, duration: &'static str| {
        c.post(format!("{}/ui/request", s.url))
            .header("cookie", format!("ajar_session={session}"))
            .form(&[
                ("csrf", csrf),
                ("vm", s.vm_id("web1")),
                ("port.0", "22".into()),
                ("source.0", "myip".into()),
                ("duration.0", duration.into()),
                ("justification", "deploy".into()),
            ])
            .send()
    };
    assert_eq!(open("forged".into(), "PT1H").await.unwrap().status(), StatusCode::FORBIDDEN);
    let refused = open(hidden_csrf(&vm_html), "PT5H").await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("InvalidInitiateInput"), "the server's validation is shown");
    let opened = open(hidden_csrf(&vm_html), "PT1H").await.unwrap();
    assert_eq!(opened.status(), StatusCode::OK);
    let opened = opened.text().await.unwrap();
    assert!(opened.contains("<td>22/TCP</td><td>127.0.0.1</td>") && opened.contains("<code>ssh 10.0.0.4</code>"), "{opened}");
    let policy = s.get(&format!("{}?{API}", s.policy_path("default"))).await;
    assert_eq!(policy["properties"]["requests"][0]["justification"], "deploy", "{policy}");

    // Without a session: to the sign-in page. Signing out needs the session's CSRF token.
    let resp = c.get(format!("{}/ui/jit", s.url)).send().await.unwrap();
    assert_eq!((resp.status(), resp.headers()[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/ui/signin"));
    let signout = |csrf: &str| {
        c.post(format!("{}/ui/signout", s.url)).header("cookie", format!("ajar_session={session}")).form(&[("csrf", csrf)]).send()
    };
    assert_eq!(signout("forged").await.unwrap().status(), StatusCode::FORBIDDEN);
    let csrf = hidden_csrf(&html);
    assert_eq!(signout(&csrf).await.unwrap().status(), StatusCode::SEE_OTHER);
    assert_eq!(jit("configured", session.clone()).await.unwrap().status(), StatusCode::SEE_OTHER, "the session is closed");
}

#[tokio::test]
async fn the_dashboard_shows_only_what_the_principal_may_read() {
    let s = Server::start(&[]).await;
    for (rg, vm) in [("default", "web1"), ("other", "hidden1")] {
        s.add_vm_in(rg, vm, "Linux", &s.loc, "10.0.0.4").await;
    }
    let (principal, token) = s.principal_with_role("auditor", READER, &s.rg_scope()).await;

    let ui = Ui::sign_in(&s, &token).await;
    let (_, html) = ui.get("/ui/jit?tab=unsupported").await;
    assert!(html.contains("Signed in as <strong>auditor</strong>") && html.contains("web1") && !html.contains("hidden1"), "{html}");
    // A Reader sees the machine but no way to open it, and the server refuses it anyway.
    let web1 = format!("/subscriptions/{}/resourceGroups/default/providers/Microsoft.Compute/virtualMachines/web1", s.sub);
    let (st, v) = s.call(Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": [web1]}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, html) = ui.get("/ui/jit?tab=configured").await;
    assert!(html.contains("web1") && !html.contains("Request access") && !html.contains(r#"type="checkbox""#), "{html}");
    let (_, vm_html) = ui.get(&format!("/ui/vm?id={web1}")).await;
    assert!(vm_html.contains("JIT configuration") && !vm_html.contains("Open ports"), "{vm_html}");
    let fields = [
        ("csrf", ui.csrf().await),
        ("vm", web1.clone()),
        ("port.0", "22".into()),
        ("source.0", "myip".into()),
        ("duration.0", "PT1H".into()),
    ];
    let (st, body) = ui.post("/ui/request", &fields).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(body.contains("AuthorizationFailed"));
    // A machine outside its scope does not exist for it.
    let hidden = format!("/subscriptions/{}/resourceGroups/other/providers/Microsoft.Compute/virtualMachines/hidden1", s.sub);
    assert_eq!(ui.get(&format!("/ui/vm?id={hidden}")).await.0, StatusCode::NOT_FOUND);
    // Revoking the token ends its session.
    let token_id = s.get(&format!("/ajar/v1/principals/{principal}/tokens")).await["value"][0]["id"].as_str().unwrap().to_owned();
    let (st, _) = s.call(Method::DELETE, &format!("/ajar/v1/tokens/{token_id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ui.get_response("/ui/jit").await.status(), StatusCode::SEE_OTHER);
}

/// A tab shows 100 machines a page, with the count of all and links to the neighbouring pages; the
/// counts on the tabs are of all machines, not of the page.
#[tokio::test]
async fn the_jit_page_is_paged() {
    let s = Server::start(&[]).await;
    let names: Vec<String> = (0..101).map(|i| format!("vm{i:03}")).collect();
    for name in &names {
        s.add_vm(name, "Linux", &s.loc, "10.0.0.4").await;
    }
    let ids: Vec<String> = names.iter().map(|n| s.vm_id(n)).collect();
    let (st, v) = s.call(Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": ids}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ui = Ui::sign_in(&s, &s.token).await;
    let (st, first) = ui.get("/ui/jit?tab=configured").await;
    assert_eq!(st, StatusCode::OK);
    assert!(first.contains(r#"Configured<span class="count" aria-label="101 machines">101</span>"#), "{first}");
    assert!(first.contains("1–100 of 101") && first.contains(">vm099<") && !first.contains(">vm100<"), "{first}");
    assert!(first.contains(r#"href="/ui/jit?tab=configured&#38;page=2" rel="next""#) && !first.contains(r#"rel="prev""#), "{first}");
    let (_, second) = ui.get("/ui/jit?tab=configured&page=2").await;
    assert!(second.contains("101–101 of 101") && second.contains(">vm100<") && !second.contains(">vm099<"), "{second}");
    assert!(second.contains(r#"rel="prev""#) && !second.contains(r#"rel="next""#), "{second}");
    // Past the end, or not a number: the nearest page there is.
    let (_, past) = ui.get("/ui/jit?tab=configured&page=9").await;
    assert!(past.contains("101–101 of 101"), "{past}");
    let (_, junk) = ui.get("/ui/jit?tab=configured&page=x").await;
    assert!(junk.contains("1–100 of 101"), "{junk}");
    // The filter narrows before paging, and the pager keeps it.
    let (_, filtered) = ui.get("/ui/jit?tab=configured&name=VM01").await;
    assert!(filtered.contains("1–10 of 10") && filtered.contains(">vm019<") && !filtered.contains(">vm020<"), "{filtered}");
}
