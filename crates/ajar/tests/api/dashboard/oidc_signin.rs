//! Dashboard sign-in through an OIDC issuer, end to end over real HTTPS: an identity provider runs in the
//! test on 127.0.0.1 with its own CA (trusted by the server through `caFile`), serves its keys, answers
//! `/authorize` with a code and `/token` with an ID token signed here, and checks what a real one checks:
//! the code, the redirect URI, the client and its secret, and that SHA-256 of the code verifier is the
//! code challenge `/authorize` received.
//!
//! The configured redirect URI is `https://localhost/ui/signin/oidc/callback`; the test's browser resolves
//! `localhost` to the server, as a DNS name or a proxy would in front of a real one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode, redirect};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use url::Url;

use super::{cookie_value, set_cookie};
use crate::common::{READER, Server};
use crate::oidc::Key;

const CLIENT_ID: &str = "ajar-dashboard";
const CLIENT_SECRET: &str = "dashboard-secret";
const REDIRECT_URI: &str = "https://localhost/ui/signin/oidc/callback";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
/// How long the identity provider's ID tokens last.
const ID_TOKEN_SECONDS: u64 = 600;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Who the next `/authorize` signs in, and what it gets wrong on purpose.
#[derive(Clone)]
struct Plan {
    sub: &'static str,
    name: &'static str,
    groups: Vec<&'static str>,
    /// Answer `error=access_denied` instead of a code.
    deny: bool,
    /// Put this nonce in the ID token instead of the one `/authorize` received.
    nonce: Option<&'static str>,
    /// Issue the ID token to this audience instead of the client.
    audience: Option<&'static str>,
}

fn user(sub: &'static str, name: &'static str, groups: &[&'static str]) -> Plan {
    Plan { sub, name, groups: groups.to_vec(), deny: false, nonce: None, audience: None }
}

/// What `/authorize` was asked for a code it issued.
struct Authorized {
    query: HashMap<String, String>,
    plan: Plan,
}

struct IdpState {
    issuer: String,
    key: Key,
    plan: Mutex<Plan>,
    codes: Mutex<HashMap<String, Authorized>>,
    /// Every `/authorize` query, in order.
    authorize_queries: Mutex<Vec<HashMap<String, String>>>,
    /// Every `/token` request: `Ok` if it was answered with an ID token, else why not.
    token_requests: Mutex<Vec<Result<(), String>>>,
}

/// The identity provider, on 127.0.0.1 over HTTPS; stopped on drop.
struct Idp {
    url: String,
    ca: PathBuf,
    state: Arc<IdpState>,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Idp {
    async fn start() -> Idp {
        let dir = tempfile::tempdir().unwrap();
        let tls = ajar_server::tls::ensure_self_signed(dir.path(), &[]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let state = Arc::new(IdpState {
            issuer: url.clone(),
            key: Key::new("idp-1"),
            plan: Mutex::new(user("alice", "Alice", &[])),
            codes: Mutex::default(),
            authorize_queries: Mutex::default(),
            token_requests: Mutex::default(),
        });
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/keys", get(keys))
            .with_state(Arc::clone(&state));
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        tokio::spawn(ajar_server::listener::serve_https(
            listener,
            tls.server_config,
            app,
            Default::default(),
            shutdown,
            Duration::from_secs(1),
        ));
        Idp { url, ca: tls.ca_pem_path, state, stop: Some(stop), _dir: dir }
    }

    fn plan(&self, plan: Plan) {
        *self.state.plan.lock().unwrap() = plan;
    }

    fn last_authorize(&self) -> HashMap<String, String> {
        self.state.authorize_queries.lock().unwrap().last().cloned().unwrap()
    }

    fn token_requests(&self) -> Vec<Result<(), String>> {
        self.state.token_requests.lock().unwrap().clone()
    }

    /// An issuer entry of the server's OIDC configuration for this provider, with sign-in.
    fn issuer_entry(&self, name: &str) -> Value {
        json!({
            "name": name,
            "issuer": self.url,
            "audience": "api://ajar",
            "jwksUri": format!("{}/keys", self.url),
            "caFile": self.ca,
            "signIn": {
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
                "authorizationEndpoint": format!("{}/authorize", self.url),
                "tokenEndpoint": format!("{}/token", self.url),
                "redirectUri": REDIRECT_URI,
                "scopes": ["openid", "profile", "groups"],
            },
        })
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn see_other(to: &str) -> Response {
    (AxumStatus::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

async fn authorize(State(idp): State<Arc<IdpState>>, Query(query): Query<HashMap<String, String>>) -> Response {
    idp.authorize_queries.lock().unwrap().push(query.clone());
    let plan = idp.plan.lock().unwrap().clone();
    let mut back = Url::parse(&query["redirect_uri"]).unwrap();
    if plan.deny {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user <b>declined</b>")
            .append_pair("state", &query["state"]);
    } else {
        let code = uuid::Uuid::new_v4().to_string();
        back.query_pairs_mut().append_pair("code", &code).append_pair("state", &query["state"]);
        idp.codes.lock().unwrap().insert(code, Authorized { query, plan });
    }
    see_other(back.as_str())
}

/// The token endpoint: the checks a real provider makes before it hands out tokens.
fn check_token_request(idp: &IdpState, form: &HashMap<String, String>) -> Result<Authorized, String> {
    let field = |name: &str| form.get(name).cloned().ok_or(format!("no {name}"));
    if field("grant_type")? != "authorization_code" {
        return Err("grant_type".into());
    }
    // A code is good once.
    let authorized = idp.codes.lock().unwrap().remove(&field("code")?).ok_or("unknown code")?;
    let asked = &authorized.query;
    if field("redirect_uri")? != asked["redirect_uri"] || asked["redirect_uri"] != REDIRECT_URI {
        return Err("redirect_uri differs".into());
    }
    if field("client_id")? != CLIENT_ID || asked["client_id"] != CLIENT_ID || field("client_secret")? != CLIENT_SECRET {
        return Err("client".into());
    }
    if asked["code_challenge_method"] != "S256" {
        return Err("code_challenge_method".into());
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier")?.as_bytes()));
    if challenge != asked["code_challenge"] {
        return Err("the code verifier does not match the code challenge".into());
    }
    Ok(authorized)
}

async fn token(State(idp): State<Arc<IdpState>>, axum::Form(form): axum::Form<HashMap<String, String>>) -> Response {
    let authorized = match check_token_request(&idp, &form) {
        Ok(authorized) => authorized,
        Err(why) => {
            idp.token_requests.lock().unwrap().push(Err(why));
            return (AxumStatus::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant", "error_description": "<i>nope</i>"})))
                .into_response();
        }
    };
    idp.token_requests.lock().unwrap().push(Ok(()));
    let plan = &authorized.plan;
    let now = now();
    let id_token = idp.key.sign(&json!({
        "iss": idp.issuer,
        "aud": plan.audience.unwrap_or(CLIENT_ID),
        "sub": plan.sub,
        "name": plan.name,
        "groups": plan.groups,
        "nonce": plan.nonce.map(str::to_owned).unwrap_or_else(|| authorized.query["nonce"].clone()),
        "iat": now,
        "exp": now + ID_TOKEN_SECONDS,
    }));
    axum::Json(json!({"access_token": "opaque", "token_type": "Bearer", "expires_in": ID_TOKEN_SECONDS, "id_token": id_token}))
        .into_response()
}

async fn keys(State(idp): State<Arc<IdpState>>) -> Response {
    axum::Json(json!({"keys": [idp.key.jwk]})).into_response()
}

/// A browser: trusts the server's and the provider's CAs, finds `localhost` at the server, follows no
/// redirects and keeps no cookies of its own; `from` is the address it appears to come from (through
/// the trusted proxy 127.0.0.1), so refusals count against an address of their own.
struct Browser<'a> {
    server: &'a Server,
    client: reqwest::Client,
    from: Option<String>,
}

/// A sign-in started and answered by the provider: where it sends the browser back, and the cookie that
/// binds the sign-in to the browser.
struct Started {
    callback: Url,
    binding: String,
}

fn max_age(set_cookie: &str) -> u64 {
    set_cookie.split(';').find_map(|a| a.trim().strip_prefix("Max-Age=")).unwrap().parse().unwrap()
}

impl<'a> Browser<'a> {
    fn new(server: &'a Server, idp: &Idp, from: Option<&str>) -> Browser<'a> {
        let server_addr: SocketAddr = server.url.strip_prefix("https://").unwrap().parse().unwrap();
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .resolve("localhost", server_addr)
            .redirect(redirect::Policy::none())
            .timeout(Duration::from_secs(20));
        for ca in [server.ca_path(), idp.ca.clone()] {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap());
        }
        Browser { server, client: builder.build().unwrap(), from: from.map(str::to_owned) }
    }

    async fn get(&self, url: &str, cookie: Option<String>) -> reqwest::Response {
        let mut req = self.client.get(url);
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        if let Some(from) = &self.from {
            req = req.header("x-forwarded-for", from);
        }
        req.send().await.unwrap()
    }

    /// Starts a sign-in with `label` and lets the provider answer.
    async fn start(&self, label: &str) -> Started {
        let resp = self.get(&format!("{}/ui/signin/oidc/{label}", self.server.url), None).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let binding = set_cookie(&resp, "ajar_oidc").expect("a cookie binding the sign-in to this browser");
        let authorize = resp.headers()[LOCATION].to_str().unwrap().to_owned();
        let resp = self.get(&authorize, None).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{authorize}");
        let callback = Url::parse(resp.headers()[LOCATION].to_str().unwrap()).unwrap();
        Started { callback, binding: cookie_value(&binding) }
    }

    /// Follows the provider's redirect back to the server, with `binding` as the browser's cookie.
    async fn callback(&self, callback: &Url, binding: Option<&str>) -> reqwest::Response {
        assert_eq!(callback.as_str().split('?').next(), Some(REDIRECT_URI), "the provider sends the browser to the configured URI");
        self.get(callback.as_str(), binding.map(|b| format!("ajar_oidc={b}"))).await
    }

    /// A dashboard page in the session `session`: the status and the body.
    async fn page(&self, path: &str, session: &str) -> (StatusCode, String) {
        let resp = self.get(&format!("{}{path}", self.server.url), Some(format!("ajar_session={session}"))).await;
        (resp.status(), resp.text().await.unwrap())
    }
}

/// A server trusting `idp` (with sign-in, labelled `corp`) and a second issuer (`ci`) without sign-in.
async fn server_with(idp: &Idp) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ci_keys = dir.path().join("ci-jwks.json");
    std::fs::write(&ci_keys, json!({"keys": [Key::new("ci-1").jwk]}).to_string()).unwrap();
    let ci = json!({"name": "ci", "issuer": "https://ci.example.test", "audience": "api://ajar", "jwksFile": ci_keys});
    let config = dir.path().join("oidc.json");
    std::fs::write(&config, json!({"issuers": [idp.issuer_entry("corp"), ci]}).to_string()).unwrap();
    let s = Server::start(&["--oidc-config", config.to_str().unwrap(), "--trusted-proxy", "127.0.0.1"]).await;
    // The server read everything it needs at start.
    drop(dir);
    s
}

/// Completes a sign-in as the provider's current plan: the session cookie's `Set-Cookie` and the page.
async fn sign_in(browser: &Browser<'_>) -> (String, String) {
    let started = browser.start("corp").await;
    let resp = browser.callback(&started.callback, Some(&started.binding)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let session = set_cookie(&resp, "ajar_session").expect("a session");
    let cleared = set_cookie(&resp, "ajar_oidc").expect("the binding cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    (session, resp.text().await.unwrap())
}

// Multi-threaded: starting the server blocks a thread while the provider must answer its key fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_opens_a_session_with_the_callers_roles() {
    let idp = Idp::start().await;
    let s = server_with(&idp).await;
    s.add_vm("web1", "Linux", &s.loc, "10.0.0.4").await;
    let (st, v) = s.call(Method::POST, "/ajar/v1/jit/enable", Some(json!({"virtualMachines": [s.vm_id("web1")]}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let browser = Browser::new(&s, &idp, None);

    // A button for the issuer with sign-in, none for the one without, beside the token form.
    let page = browser.get(&format!("{}/ui/signin", s.url), None).await.text().await.unwrap();
    assert!(page.contains(r#"<a class="signin-provider" href="/ui/signin/oidc/corp">Sign in with corp</a>"#), "{page}");
    assert!(!page.contains("Sign in with ci") && page.contains(r#"<label for="token">"#), "{page}");

    // The start: a state, a nonce and an S256 challenge for the configured client and redirect URI, and a
    // cookie binding them to this browser that the provider's cross-site redirect back carries.
    let resp = browser.get(&format!("{}/ui/signin/oidc/corp", s.url), None).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let binding = set_cookie(&resp, "ajar_oidc").unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/ui/signin", "Max-Age=600"] {
        assert!(binding.split(';').any(|a| a.trim() == attr), "{attr} in {binding}");
    }
    let authorize = Url::parse(resp.headers()[LOCATION].to_str().unwrap()).unwrap();
    assert_eq!(authorize.as_str().split('?').next().unwrap(), format!("{}/authorize", idp.url));
    let q: HashMap<String, String> = authorize.query_pairs().into_owned().collect();
    for (name, value) in [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid profile groups"),
        ("code_challenge_method", "S256"),
    ] {
        assert_eq!(q.get(name).map(String::as_str), Some(value), "{name} in {authorize}");
    }
    for random in ["state", "nonce"] {
        assert!(URL_SAFE_NO_PAD.decode(&q[random]).unwrap().len() >= 16, "{random} has at least 128 bits: {authorize}");
    }
    assert_eq!(URL_SAFE_NO_PAD.decode(&q["code_challenge"]).unwrap().len(), 32, "a SHA-256 challenge");
    assert!(!q.contains_key("client_secret") && !q.contains_key("code_verifier"), "{authorize}");

    // The full flow as bob, whose group may read: the provider checked the code verifier against the
    // challenge, and the session is no longer than the ID token.
    idp.plan(user("bob", "Bob", &["auditors"]));
    s.assign_role("group:corp/auditors", READER, &s.rg_scope()).await;
    let (session, page) = sign_in(&browser).await;
    assert_eq!(idp.token_requests(), [Ok(())]);
    assert_eq!(idp.last_authorize()["code_challenge_method"], "S256");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(session.split(';').any(|a| a.trim() == attr), "{attr} in {session}");
    }
    assert!((1..=ID_TOKEN_SECONDS).contains(&max_age(&session)), "{session}");
    assert!(page.contains(r#"<meta http-equiv="refresh" content="0; url=/ui/jit">"#) && !page.contains("<script"), "{page}");
    let bob = cookie_value(&session);
    let (st, jit) = browser.page("/ui/jit?tab=configured", &bob).await;
    assert_eq!(st, StatusCode::OK);
    assert!(jit.contains("Signed in as <strong>Bob</strong>") && jit.contains("web1"), "{jit}");
    assert!(!jit.contains("Request access") && !jit.contains(r#"type="checkbox""#), "a Reader is offered nothing to do: {jit}");

    // Alice is linked to a principal with a role of its own: that principal is who signs in, and it may
    // request access. Deleting it ends her session at the next request.
    let (st, v) = s
        .call(
            Method::POST,
            "/ajar/v1/principals",
            Some(json!({"name": "Alice L.", "kind": "user", "oidc": {"issuer": idp.url, "subject": "alice"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let alice_id = v["id"].as_str().unwrap().to_owned();
    s.assign_role(&alice_id, CONTRIBUTOR, &s.rg_scope()).await;
    idp.plan(user("alice", "Alice", &[]));
    let (session, _) = sign_in(&browser).await;
    let alice = cookie_value(&session);
    let (_, jit) = browser.page("/ui/jit?tab=configured", &alice).await;
    assert!(jit.contains("Signed in as <strong>Alice L.</strong>") && jit.contains("Request access"), "{jit}");
    let (st, v) = s.call(Method::DELETE, &format!("/ajar/v1/principals/{alice_id}"), None).await;
    assert!(st.is_success(), "{v}");
    let (st, _) = browser.page("/ui/jit", &alice).await;
    assert_eq!(st, StatusCode::SEE_OTHER, "the session of a deleted principal ends");
    let (st, _) = browser.page("/ui/jit", &bob).await;
    assert_eq!(st, StatusCode::OK, "other sessions go on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_refusals_open_no_session_and_are_on_record() {
    let idp = Idp::start().await;
    let s = server_with(&idp).await;
    let from = |n: u8| format!("198.51.100.{n}");

    // Each refusal comes from an address of its own, so none is slowed down by the others.
    let expect_refused = |resp: reqwest::Response, status: StatusCode, message: &'static str| async move {
        assert_eq!(resp.status(), status, "{message}");
        assert!(set_cookie(&resp, "ajar_session").is_none(), "no session: {message}");
        let page = resp.text().await.unwrap();
        assert!(page.contains(r#"<p class="error" role="alert">"#) && page.contains(message), "{message} in {page}");
        assert!(page.contains("Sign in with corp"), "the sign-in page, to start again: {page}");
    };

    // A state the server never issued.
    let b = Browser::new(&s, &idp, Some(&from(1)));
    let started = b.start("corp").await;
    let mut forged = started.callback.clone();
    let code = started.callback.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    forged.query_pairs_mut().clear().append_pair("code", &code).append_pair("state", "made-up-state");
    expect_refused(b.callback(&forged, Some(&started.binding)).await, StatusCode::BAD_REQUEST, "was not started by this server").await;

    // Without the cookie that binds it to the browser that started it (another browser, or a link).
    let b = Browser::new(&s, &idp, Some(&from(2)));
    let started = b.start("corp").await;
    expect_refused(b.callback(&started.callback, None).await, StatusCode::BAD_REQUEST, "started in another browser").await;
    let other = b.start("corp").await;
    expect_refused(b.callback(&started.callback, Some(&other.binding)).await, StatusCode::BAD_REQUEST, "started in another browser").await;

    // A replayed callback: the first signs in, the second is refused.
    let b = Browser::new(&s, &idp, Some(&from(3)));
    let started = b.start("corp").await;
    let first = b.callback(&started.callback, Some(&started.binding)).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(set_cookie(&first, "ajar_session").is_some());
    expect_refused(b.callback(&started.callback, Some(&started.binding)).await, StatusCode::BAD_REQUEST, "already finished").await;

    // A code the provider does not know: its token endpoint refuses.
    let b = Browser::new(&s, &idp, Some(&from(4)));
    let started = b.start("corp").await;
    let state = started.callback.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let mut wrong_code = started.callback.clone();
    wrong_code.query_pairs_mut().clear().append_pair("code", "not-a-code").append_pair("state", &state);
    let resp = b.callback(&wrong_code, Some(&started.binding)).await;
    expect_refused(resp, StatusCode::UNAUTHORIZED, "corp would not complete the sign-in (invalid_grant)").await;

    // The provider refuses the person: its words are not repeated, its error code is.
    idp.plan(Plan { deny: true, ..user("mallory", "Mallory", &[]) });
    let b = Browser::new(&s, &idp, Some(&from(5)));
    let started = b.start("corp").await;
    let resp = b.callback(&started.callback, Some(&started.binding)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let page = resp.text().await.unwrap();
    assert!(page.contains("corp did not sign you in: access was denied (access_denied)") && !page.contains("declined"), "{page}");

    // An ID token with another nonce (not issued for this sign-in), or for another client.
    idp.plan(Plan { nonce: Some("someone-elses-nonce"), ..user("mallory", "Mallory", &[]) });
    let b = Browser::new(&s, &idp, Some(&from(6)));
    let started = b.start("corp").await;
    expect_refused(b.callback(&started.callback, Some(&started.binding)).await, StatusCode::UNAUTHORIZED, "nonce is not the one").await;
    idp.plan(Plan { audience: Some("another-client"), ..user("mallory", "Mallory", &[]) });
    let b = Browser::new(&s, &idp, Some(&from(7)));
    let started = b.start("corp").await;
    let resp = b.callback(&started.callback, Some(&started.binding)).await;
    expect_refused(resp, StatusCode::UNAUTHORIZED, "audience (&#39;aud&#39;) does not include &#34;ajar-dashboard&#34;").await;

    // Every refusal is on record as a refused authentication, with its reason and the issuer.
    let log = s.activity("limit=50").await;
    let refusals: Vec<(String, String)> = log
        .iter()
        .filter(|e| e["operation"] == "Ajar/authenticate" && e["resourceId"] == "/ui/signin/oidc/callback")
        .map(|e| (e["callerAddress"].as_str().unwrap_or_default().to_owned(), e.to_string()))
        .collect();
    for (n, reason) in [
        (1, "unknown or already used state"),
        (2, "state not bound to this browser"),
        (3, "unknown or already used state"),
        (4, "invalid_grant"),
        (5, "the identity provider answered access_denied"),
        (6, "nonce"),
        (7, "aud"),
    ] {
        assert!(refusals.iter().any(|(addr, entry)| *addr == from(n) && entry.contains(reason)), "{reason} from {}: {refusals:?}", from(n));
    }
    assert_eq!(refusals.len(), 8, "{refusals:?}");
}

#[tokio::test]
async fn no_oidc_button_without_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("jwks.json");
    std::fs::write(&keys, json!({"keys": [Key::new("k1").jwk]}).to_string()).unwrap();
    let config = dir.path().join("oidc.json");
    let issuers =
        json!({"issuers": [{"name": "corp", "issuer": "https://login.example.test", "audience": "api://ajar", "jwksFile": keys}]});
    std::fs::write(&config, issuers.to_string()).unwrap();
    let s = Server::start(&["--oidc-config", config.to_str().unwrap()]).await;
    let (st, page, _) = s.send(Method::GET, "/ui/signin", None, None, "").await;
    let page = page.as_str().unwrap();
    assert_eq!(st, StatusCode::OK);
    assert!(!page.contains("Sign in with") && !page.contains("/ui/signin/oidc/") && page.contains(r#"<label for="token">"#), "{page}");
    let (st, page, _) = s.send(Method::GET, "/ui/signin/oidc/corp", None, None, "").await;
    let page = page.as_str().unwrap();
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(page.contains("No identity provider by that name offers sign-in here"), "{page}");
}
