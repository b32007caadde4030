//! A real `ajar serve` in a temporary data directory, reached over HTTPS.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const API: &str = "api-version=2020-01-01";

pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    pub url: String,
    pub sub: String,
    pub rg: String,
    pub loc: String,
    pub token: String,
    client: reqwest::Client,
}

impl Server {
    pub async fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server {
            child: None,
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            url: String::new(),
            sub: String::new(),
            rg: String::new(),
            loc: String::new(),
            token: String::new(),
            client: reqwest::Client::new(),
        };
        server.launch();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The CA that signs the server's certificate, as bootstrap.json names it.
    pub fn ca_path(&self) -> PathBuf {
        let boot: Value = serde_json::from_slice(&std::fs::read(self.data_dir().join("bootstrap.json")).unwrap()).unwrap();
        PathBuf::from(boot["ca"].as_str().unwrap())
    }

    /// Everything the server wrote to stderr, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the process and waits (bounded) for its "listening on" line.
    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open the server log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ajar"))
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start ajar serve");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let url = ajar_lab::await_line(stdout, Duration::from_secs(30), |line| line.strip_prefix("listening on ").map(str::to_owned));
        self.url = url.expect("ajar serve did not start within 30 s");
        let boot: Value = serde_json::from_slice(&std::fs::read(self.data_dir().join("bootstrap.json")).unwrap()).unwrap();
        assert_eq!(boot["url"], self.url.as_str());
        self.sub = boot["subscriptionId"].as_str().unwrap().to_owned();
        self.rg = boot["resourceGroup"].as_str().unwrap().to_owned();
        self.loc = boot["location"].as_str().unwrap().to_owned();
        self.token = boot["adminToken"].as_str().unwrap().to_owned();
        let ca = std::fs::read(boot["ca"].as_str().unwrap()).unwrap();
        self.client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(20))
            // Below the server's keep-alive bound (10 s), so a connection it is about to close is not reused.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("ajar serve did not stop within 15 s of SIGTERM");
        }
    }

    /// Kills the server without warning (SIGKILL).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn relaunch(&mut self) {
        self.launch();
    }

    pub fn vm_id(&self, name: &str) -> String {
        format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{name}", self.sub, self.rg)
    }

    pub fn policy_path(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Security/locations/{}/jitNetworkAccessPolicies/{name}",
            self.sub, self.rg, self.loc
        )
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        self.send_with(method, path, token, body, content_type, &[]).await
    }

    /// As [`Server::send`], with extra request headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let url = if path.starts_with("https://") { path.to_owned() } else { format!("{}{path}", self.url) };
        let mut req = self.client.request(method, url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", content_type).body(b);
        }
        let resp = req.send().await.expect("request failed");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value, headers)
    }

    /// A handle that can make calls from another task.
    pub fn client_clone(&self) -> Caller {
        Caller { client: self.client.clone(), url: self.url.clone() }
    }

    /// An authenticated JSON call as the admin.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (s, v, _) = self.send(method, path, Some(&self.token), body.map(|b| serde_json::to_vec(&b).unwrap()), "application/json").await;
        (s, v)
    }

    pub async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    pub async fn add_vm(&self, name: &str, os: &str, location: &str, address: &str) {
        self.add_vm_in(&self.rg, name, os, location, address).await;
    }

    /// As [`Server::add_vm`], in resource group `rg`.
    pub async fn add_vm_in(&self, rg: &str, name: &str, os: &str, location: &str, address: &str) {
        let path = format!("/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}?{API}", self.sub);
        let body = json!({"location": location, "properties": {"storageProfile": {"osDisk": {"osType": os}}, "networkProfile": {"privateIPAddresses": [address]}}});
        let (s, v) = self.call(Method::PUT, &path, Some(body)).await;
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "add vm {name}: {s} {v}");
    }

    /// Enrols an agent for machine `name` (Linux, 10.0.0.4) with the join token; `usable` says whether
    /// its nftables works. The machine becomes Not configured (or Unsupported if not usable).
    pub async fn enroll_agent(&self, name: &str, usable: bool) -> (StatusCode, Value) {
        let nftables = if usable { json!({"usable": true}) } else { json!({"usable": false, "reason": "nft: Operation not permitted"}) };
        let body = json!({"name": name, "osType": "Linux", "addresses": ["10.0.0.4"], "version": "0.1.0", "nftables": nftables});
        self.enroll(&body).await
    }

    /// Enrols the agent of gateway `name` with the join token: its public addresses and, if given, its
    /// mapped-port range (`FIRST-LAST`).
    pub async fn enroll_gateway(&self, name: &str, public: &[&str], mapped_ports: Option<&str>) -> (StatusCode, Value) {
        let mut gateway = json!({"publicAddresses": public});
        if let Some(range) = mapped_ports {
            gateway["mappedPorts"] = json!(range);
        }
        let body = json!({"name": name, "osType": "Linux", "version": "0.1.0", "nftables": {"usable": true}, "gateway": gateway});
        self.enroll(&body).await
    }

    /// `POST /ajar/v1/agents/enroll` with the join token.
    pub async fn enroll(&self, body: &Value) -> (StatusCode, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let (st, v, _) = self.send(Method::POST, "/ajar/v1/agents/enroll", Some(&self.join_token()), Some(body), "application/json").await;
        (st, v)
    }

    /// Puts machine `vm` behind gateway `gateway` (`None`: takes it out).
    pub async fn set_gateway(&self, vm: &str, gateway: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::POST, "/ajar/v1/gatewayAssignment", Some(json!({"virtualMachineId": self.vm_id(vm), "gateway": gateway}))).await
    }

    /// A new user `name` holding the built-in or custom role `role` (its GUID) at `scope` (`/subscriptions/…`,
    /// optionally with `/resourceGroups/…`): its principal ID and an API token.
    pub async fn principal_with_role(&self, name: &str, role: &str, scope: &str) -> (String, String) {
        let (id, token) = self.principal(name).await;
        self.assign_role(&id, role, scope).await;
        (id, token)
    }

    /// A new user `name` with no role: its principal ID and an API token.
    pub async fn principal(&self, name: &str) -> (String, String) {
        let (st, v) = self.call(Method::POST, "/ajar/v1/principals", Some(json!({"name": name, "kind": "user"}))).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (st, v) = self.call(Method::POST, &format!("/ajar/v1/principals/{id}/tokens"), Some(json!({"name": "web"}))).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        (id, v["token"].as_str().unwrap().to_owned())
    }

    /// Assigns role `role` (its GUID) to `principal` at `scope` (empty for the root scope `/`).
    pub async fn assign_role(&self, principal: &str, role: &str, scope: &str) {
        let path = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{}?api-version=2022-04-01", uuid::Uuid::new_v4());
        let body = json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{role}"), "principalId": principal}});
        let (st, v) = self.call(Method::PUT, &path, Some(body)).await;
        assert_eq!(st, StatusCode::CREATED, "{path}: {v}");
    }

    /// The scope of the default resource group.
    pub fn rg_scope(&self) -> String {
        format!("/subscriptions/{}/resourceGroups/{}", self.sub, self.rg)
    }

    pub fn join_token(&self) -> String {
        let boot: Value = serde_json::from_slice(&std::fs::read(self.data_dir().join("bootstrap.json")).unwrap()).unwrap();
        boot["joinToken"].as_str().unwrap().to_owned()
    }

    pub async fn put_policy(&self, name: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, &format!("{}?{API}", self.policy_path(name)), Some(body)).await
    }

    pub async fn initiate(&self, name: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("{}/initiate?{API}", self.policy_path(name)), Some(body)).await
    }

    pub async fn activity(&self, query: &str) -> Vec<Value> {
        self.get(&format!("/ajar/v1/activity?{query}")).await["value"].as_array().unwrap().clone()
    }

    /// Reads the store's own record of a grant's status, bypassing the API.
    pub fn stored_statuses(&self) -> Vec<(String, String)> {
        let db =
            rusqlite::Connection::open_with_flags(self.data_dir().join("ajar.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut stmt = db.prepare("SELECT status, reason FROM grants ORDER BY request_seq").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A server holding vm1 (Linux, 10.0.0.4) and vm2 (Windows), with policy
/// "default" on vm1: 22/TCP from 10.0.0.0/8 for up to PT1H, 3389/* from * for up to PT3H.
pub async fn with_policy(args: &[&str]) -> Server {
    let s = Server::start(args).await;
    s.add_vm("vm1", "Linux", &s.loc, "10.0.0.4").await;
    s.add_vm("vm2", "Windows", &s.loc, "10.0.0.5").await;
    let (status, v) = s.put_policy("default", standard_policy(&s)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    s
}

/// The built-in Reader role.
pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

pub fn standard_policy(s: &Server) -> Value {
    json!({"kind": "Basic", "properties": {"virtualMachines": [{"id": s.vm_id("vm1"), "ports": [
        {"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "10.0.0.0/8", "maxRequestAccessDuration": "PT1H"},
        {"number": 3389, "protocol": "*", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"}
    ]}]}})
}

/// Sets the JSON value at a `/`-separated pointer, creating nothing: the parent must exist.
pub fn set(v: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = v.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}"));
    match target {
        Value::Object(m) => {
            if new.is_null() {
                m.remove(key);
            } else {
                m.insert(key.to_owned(), new);
            }
        }
        Value::Array(a) => a[key.parse::<usize>().unwrap()] = new,
        _ => panic!("{parent} is not a container"),
    }
}

/// Calls the server from a spawned task.
pub struct Caller {
    client: reqwest::Client,
    url: String,
}

impl Caller {
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let resp = self.client.get(format!("{}{path}", self.url)).bearer_auth(token).send().await.expect("request failed");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }
}
