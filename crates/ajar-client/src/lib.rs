//! A typed HTTPS client for ajar's API: the ARM JIT and VM operations
//! (api-version 2020-01-01), `Microsoft.Authorization` role definitions and
//! assignments (api-version 2022-04-01), and ajar's own `/ajar/v1` routes.
//!
//! The client trusts only the CA it is given (ajar's own, from
//! `bootstrap.json`), never the system roots, and sends the bearer token on
//! every request. List operations follow `nextLink` until the last page and
//! return every item in one list.
//!
//! Bodies and answers are `ajar-api`'s types, the ones the server parses and
//! renders; this crate declares no wire shape of its own.

mod identity;

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use ajar_api::activity::{ActivityList, ChainVerification};
use ajar_api::agent::{RevokeIn, RevokeOut};
use ajar_api::ajar_v1::{EnableIn, EnableOut, GatewayAssignmentIn, GatewayAssignmentOut, GatewayList, RecommendedPorts, VmStatusList};
use ajar_api::compute::{VirtualMachine, VirtualMachineIn, VirtualMachineList};
use ajar_api::jit::{
    InitiateIn, JitNetworkAccessPoliciesList, JitNetworkAccessPolicy, JitNetworkAccessRequest, PolicyIn, precondition_out,
};
use ajar_api::subscriptions::SubscriptionList;
use ajar_api::{API_VERSION, CloudError, CloudErrorBody};
use ajar_domain::gateway::GatewayName;
use ajar_domain::plans::Precondition;
use ajar_domain::{Location, PolicyId, ResourceGroup, SubscriptionId, VmId};

pub use identity::{Me, RoleResource, TokenExpiry, encode_query_value, odata_eq, requester_role_body, role_assignment_body, token_body};
pub use reqwest::Method;

/// How long to wait for a TCP connection and TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one whole request, so a stuck server cannot hang a script forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// A server that keeps handing out `nextLink`s is broken; stop rather than loop.
const MAX_PAGES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an ARM error body (`{"error":{...}}`).
    #[error("{}", api_message(.error))]
    Api { status: u16, error: CloudErrorBody },
    /// The server answered with an error status but no ARM error body.
    #[error("the server answered {status} {}{}", reason(*.status), body_hint(.body))]
    Http { status: u16, body: String },
    /// The request did not get an answer (connection, TLS, timeout). The
    /// message already carries the cause chain, so `cause` is not exposed as
    /// `source()` (that would print it twice).
    #[error("{context}: {}", transport_message(.cause))]
    Transport { context: String, cause: reqwest::Error },
    /// The answer was not what the API promises.
    #[error("{context}: {message}")]
    Decode { context: String, message: String },
    /// The client could not be set up (URL, CA certificate, token).
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The ARM error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn api_message(e: &CloudErrorBody) -> String {
    let mut s = format!("{}: {}", e.code, e.message);
    if let Some(t) = &e.target {
        s.push_str(&format!(" (at {t})"));
    }
    for d in &e.details {
        s.push_str(&format!("; {}", api_message(d)));
    }
    s
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")
}

fn body_hint(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let short: String = body.chars().take(200).collect();
    let short = short.replace(['\n', '\r'], " ");
    format!(": {short}")
}

/// reqwest's own message is terse ("error sending request for url (...)");
/// the cause chain says what actually went wrong (refused connection,
/// unknown CA, ...), so that is what is shown.
fn transport_message(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        // hyper's "client error (Connect)" only says which layer failed.
        if text.starts_with("client error (") {
            source = s.source();
            continue;
        }
        // Wrappers repeat their inner error's text; keep each piece once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.retain(|p| !text.contains(p.as_str()));
            parts.push(text);
        }
        source = s.source();
    }
    let mut msg = if parts.is_empty() { e.to_string() } else { parts.join(": ") };
    if e.is_timeout() {
        msg.push_str(" (timed out)");
    }
    if msg.contains("UnknownIssuer") {
        msg.push_str("; is the CA file (--ca, AJAR_CA or the bootstrap file's ca) the one of this server?");
    } else if msg.contains("NotValidForName") {
        msg.push_str(
            "; the server's certificate does not name this host: use the URL from bootstrap.json, or start the server with --san HOST",
        );
    }
    msg
}

// ------------------------------------------------------------------ queries

/// Filters of `GET /ajar/v1/subscriptions/{sub}/jitStatus`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusQuery {
    pub resource_group: Option<String>,
    pub location: Option<String>,
    /// `Configured`, `NotConfigured` or `Unsupported`.
    pub state: Option<String>,
}

/// Filters of `GET /ajar/v1/activity`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityQuery {
    /// A VM resource ID.
    pub vm: Option<String>,
    pub caller: Option<String>,
    /// RFC 3339, inclusive.
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    pub until: Option<String>,
    pub limit: Option<u32>,
}

impl ActivityQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let mut push = |k, v: &Option<String>| {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        };
        push("vm", &self.vm);
        push("caller", &self.caller);
        push("since", &self.since);
        push("until", &self.until);
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        q
    }
}

/// Where a policy list looks; picks one of the four list operations.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyScope {
    pub subscription: SubscriptionId,
    pub resource_group: Option<ResourceGroup>,
    pub location: Option<Location>,
}

impl PolicyScope {
    /// The path of the list operation for this scope.
    pub fn list_path(&self) -> String {
        let sub = &self.subscription;
        match (&self.resource_group, &self.location) {
            (None, None) => format!("/subscriptions/{sub}/providers/Microsoft.Security/jitNetworkAccessPolicies"),
            (None, Some(loc)) => format!("/subscriptions/{sub}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies"),
            (Some(rg), None) => format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Security/jitNetworkAccessPolicies"),
            (Some(rg), Some(loc)) => {
                format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies")
            }
        }
    }
}

/// A list answer: its items and the link to the next page.
trait Paged: DeserializeOwned {
    type Item;
    fn split(self) -> (Vec<Self::Item>, Option<String>);
    fn join(items: Vec<Self::Item>) -> Self;
}

impl Paged for JitNetworkAccessPoliciesList {
    type Item = JitNetworkAccessPolicy;
    fn split(self) -> (Vec<Self::Item>, Option<String>) {
        (self.value, self.next_link)
    }
    fn join(value: Vec<Self::Item>) -> Self {
        JitNetworkAccessPoliciesList { value, next_link: None }
    }
}

impl Paged for VirtualMachineList {
    type Item = VirtualMachine;
    fn split(self) -> (Vec<Self::Item>, Option<String>) {
        (self.value, self.next_link)
    }
    fn join(value: Vec<Self::Item>) -> Self {
        VirtualMachineList { value, next_link: None }
    }
}

impl Paged for VmStatusList {
    type Item = ajar_api::ajar_v1::VmStatusOut;
    fn split(self) -> (Vec<Self::Item>, Option<String>) {
        (self.value, self.next_link)
    }
    fn join(value: Vec<Self::Item>) -> Self {
        VmStatusList { value, next_link: None }
    }
}

// ------------------------------------------------------------------ the client

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The server's base URL, without a trailing slash.
    base: Url,
    auth: HeaderValue,
}

/// The base URL: https only (the token must never travel in clear), no query.
pub fn parse_server_url(server_url: &str) -> Result<Url, ClientError> {
    if !server_url.contains("://") {
        return Err(ClientError::Config(format!("server URL '{server_url}' is not https; write it as https://{}", server_url.trim())));
    }
    let url = Url::parse(server_url.trim())
        .map_err(|e| ClientError::Config(format!("server URL '{server_url}' is invalid: {e}; give one such as https://127.0.0.1:8443")))?;
    if url.scheme() != "https" {
        return Err(ClientError::Config(format!(
            "server URL '{server_url}' is not https; ajar only talks HTTPS (the token must not travel in clear), e.g. https://127.0.0.1:8443"
        )));
    }
    if url.host().is_none() {
        return Err(ClientError::Config(format!("server URL '{server_url}' names no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::Config(format!("server URL '{server_url}' must not have a query or fragment")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ClientError::Config(format!("server URL '{server_url}' must not carry credentials; use the token")));
    }
    Ok(url)
}

impl Client {
    /// A client for the server at `server_url` (https only) that trusts only
    /// the CA certificate(s) in `ca_pem` and authenticates with `token`.
    pub fn new(server_url: &str, token: &str, ca_pem: &[u8]) -> Result<Client, ClientError> {
        let base = parse_server_url(server_url)?;
        let token = token.trim();
        if token.is_empty() {
            return Err(ClientError::Config("the token is empty".to_owned()));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::Config("the token contains characters not allowed in an HTTP header".to_owned()))?;
        auth.set_sensitive(true);
        let certs = reqwest::Certificate::from_pem_bundle(ca_pem)
            .map_err(|e| ClientError::Config(format!("the CA certificate is not valid PEM: {}", transport_message(&e))))?;
        if certs.is_empty() {
            return Err(ClientError::Config("the CA file holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)".to_owned()));
        }
        let mut builder = reqwest::ClientBuilder::new()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .https_only(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // Below the server's keep-alive bound (10 s), so a connection it is about to close is not reused.
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            // Redirects would carry the token elsewhere; the API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ajar-client/", env!("CARGO_PKG_VERSION")));
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
        let http =
            builder.build().map_err(|e| ClientError::Config(format!("cannot set up the HTTPS client: {}", transport_message(&e))))?;
        Ok(Client { http, base, auth })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The absolute URL of `path_and_query` (starting with `/`) on this server,
    /// keeping any path prefix of the base URL.
    fn url(&self, path_and_query: &str) -> Result<Url, ClientError> {
        let prefix = self.base.path().trim_end_matches('/');
        let path_and_query = if path_and_query.starts_with('/') { path_and_query.to_owned() } else { format!("/{path_and_query}") };
        let mut url = self.base.clone();
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query.as_str(), None),
        };
        url.set_path(&format!("{prefix}{path}"));
        url.set_query(query);
        Ok(url)
    }

    fn arm_url(&self, path: &str, extra: &[(&str, String)]) -> Result<Url, ClientError> {
        let mut url = self.url(path)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", API_VERSION);
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn v1_url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ClientError> {
        let mut url = self.url(path)?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// A `nextLink` resolved against this server. Only its path and query are
    /// used: the token is never sent to another origin, and a server that
    /// names itself differently (its listen address vs. the URL we were
    /// given) still works.
    fn next_url(&self, link: &str, api_version: Option<&str>) -> Result<Url, ClientError> {
        let parsed = self.base.join(link).map_err(|e| ClientError::Decode {
            context: "following nextLink".to_owned(),
            message: format!("'{link}' is not a URL: {e}"),
        })?;
        let mut path_and_query = parsed.path().to_owned();
        let prefix = self.base.path().trim_end_matches('/');
        // A relative or absolute link already includes the base path prefix.
        if !prefix.is_empty()
            && let Some(rest) = path_and_query.strip_prefix(prefix)
        {
            path_and_query = rest.to_owned();
        }
        if let Some(q) = parsed.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let mut url = self.url(&path_and_query)?;
        if let Some(version) = api_version
            && !url.query_pairs().any(|(k, _)| k == "api-version")
        {
            url.query_pairs_mut().append_pair("api-version", version);
        }
        Ok(url)
    }

    async fn send(&self, method: Method, url: Url, body: Option<Vec<u8>>) -> Result<(u16, Vec<u8>), ClientError> {
        self.send_if(method, url, body, None).await
    }

    /// Sends a request, conditional on `expected` when given (`If-Match`, `If-None-Match`).
    async fn send_if(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        expected: Option<&Precondition>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let context = format!("{method} {}", &url[..url::Position::AfterPath]);
        let mut req = self.http.request(method, url).header(AUTHORIZATION, self.auth.clone()).header(ACCEPT, "application/json");
        if let Some(expected) = expected {
            let (name, value) = precondition_out(expected);
            req = req.header(name, value);
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req.send().await.map_err(|cause| ClientError::Transport { context: context.clone(), cause })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|cause| ClientError::Transport { context, cause })?;
        Ok((status, bytes.to_vec()))
    }

    /// Sends a request and returns the body of a success answer, or the error.
    async fn call(&self, method: Method, url: Url, body: Option<Vec<u8>>) -> Result<(u16, Vec<u8>), ClientError> {
        self.call_if(method, url, body, None).await
    }

    async fn call_if(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        expected: Option<&Precondition>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let (status, bytes) = self.send_if(method, url, body, expected).await?;
        if (200..300).contains(&status) {
            return Ok((status, bytes));
        }
        Err(error_from(status, &bytes))
    }

    async fn call_json<T: DeserializeOwned>(&self, method: Method, url: Url, body: Option<Vec<u8>>) -> Result<(u16, T), ClientError> {
        self.call_json_if(method, url, body, None).await
    }

    async fn call_json_if<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        expected: Option<&Precondition>,
    ) -> Result<(u16, T), ClientError> {
        let context = format!("{method} {}", url.path());
        let (status, bytes) = self.call_if(method, url, body, expected).await?;
        Ok((status, decode(&context, &bytes)?))
    }

    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, ClientError> {
        Ok(self.call_json(Method::GET, url, None).await?.1)
    }

    /// GETs every page of a list, following `nextLink` (with `api_version`
    /// added when the link lacks one).
    async fn get_all<L: Paged>(&self, first: Url, api_version: Option<&str>) -> Result<L, ClientError> {
        let mut items = Vec::new();
        let mut url = first;
        for _ in 0..MAX_PAGES {
            let page: L = self.get_json(url.clone()).await?;
            let (mut value, next) = page.split();
            items.append(&mut value);
            match next.filter(|n| !n.is_empty()) {
                Some(link) => {
                    let next_url = self.next_url(&link, api_version)?;
                    if next_url == url {
                        return Err(ClientError::Decode {
                            context: format!("GET {}", url.path()),
                            message: "the server's nextLink points at the same page again".to_owned(),
                        });
                    }
                    url = next_url;
                }
                None => return Ok(L::join(items)),
            }
        }
        Err(ClientError::Decode { context: format!("GET {}", url.path()), message: format!("gave up after {MAX_PAGES} pages") })
    }

    /// Any request, for tests and for routes without a method here:
    /// `path_and_query` starts with `/`; nothing is added to it (no api-version).
    /// Returns the status and the body whatever the status.
    pub async fn raw(&self, method: Method, path_and_query: &str, body: Option<Vec<u8>>) -> Result<(u16, Vec<u8>), ClientError> {
        let url = self.url(path_and_query)?;
        self.send(method, url, body).await
    }

    // -------------------------------------------------------------- ARM: subscriptions

    /// `GET /subscriptions`.
    pub async fn list_subscriptions(&self) -> Result<SubscriptionList, ClientError> {
        self.get_json(self.arm_url("/subscriptions", &[])?).await
    }

    // -------------------------------------------------------------- ARM: JIT policies

    /// The list operation for `scope` (one of the four), every page.
    pub async fn list_policies(&self, scope: &PolicyScope) -> Result<JitNetworkAccessPoliciesList, ClientError> {
        self.get_all(self.arm_url(&scope.list_path(), &[])?, Some(API_VERSION)).await
    }

    /// `JitNetworkAccessPolicies_List`: every policy of a subscription.
    pub async fn list_policies_in_subscription(&self, sub: &SubscriptionId) -> Result<JitNetworkAccessPoliciesList, ClientError> {
        self.list_policies(&PolicyScope { subscription: sub.clone(), resource_group: None, location: None }).await
    }

    /// `JitNetworkAccessPolicies_ListByRegion`.
    pub async fn list_policies_in_location(
        &self,
        sub: &SubscriptionId,
        loc: &Location,
    ) -> Result<JitNetworkAccessPoliciesList, ClientError> {
        self.list_policies(&PolicyScope { subscription: sub.clone(), resource_group: None, location: Some(loc.clone()) }).await
    }

    /// `JitNetworkAccessPolicies_ListByResourceGroup`.
    pub async fn list_policies_in_resource_group(
        &self,
        sub: &SubscriptionId,
        rg: &ResourceGroup,
    ) -> Result<JitNetworkAccessPoliciesList, ClientError> {
        self.list_policies(&PolicyScope { subscription: sub.clone(), resource_group: Some(rg.clone()), location: None }).await
    }

    /// `JitNetworkAccessPolicies_ListByResourceGroupAndRegion`.
    pub async fn list_policies_in_resource_group_and_location(
        &self,
        sub: &SubscriptionId,
        rg: &ResourceGroup,
        loc: &Location,
    ) -> Result<JitNetworkAccessPoliciesList, ClientError> {
        self.list_policies(&PolicyScope { subscription: sub.clone(), resource_group: Some(rg.clone()), location: Some(loc.clone()) }).await
    }

    /// `JitNetworkAccessPolicies_Get`.
    pub async fn get_policy(&self, id: &PolicyId) -> Result<JitNetworkAccessPolicy, ClientError> {
        self.get_json(self.arm_url(&id.to_string(), &[])?).await
    }

    /// Like [`Client::get_policy`], but `None` when the policy does not exist.
    pub async fn find_policy(&self, id: &PolicyId) -> Result<Option<JitNetworkAccessPolicy>, ClientError> {
        match self.get_policy(id).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `JitNetworkAccessPolicies_CreateOrUpdate`: replaces the whole policy, only if `expected`
    /// holds when given (else a 412 `PreconditionFailed`), e.g. [`ajar_api::jit::unchanged_since`]
    /// the policy the body was made from.
    pub async fn put_policy(
        &self,
        id: &PolicyId,
        body: &PolicyIn,
        expected: Option<&Precondition>,
    ) -> Result<JitNetworkAccessPolicy, ClientError> {
        let body = encode(body)?;
        Ok(self.call_json_if(Method::PUT, self.arm_url(&id.to_string(), &[])?, Some(body), expected).await?.1)
    }

    /// `JitNetworkAccessPolicies_Delete`, only if `expected` holds when given. True when something
    /// was deleted (200), false when there was nothing to delete (204).
    pub async fn delete_policy(&self, id: &PolicyId, expected: Option<&Precondition>) -> Result<bool, ClientError> {
        let (status, _) = self.call_if(Method::DELETE, self.arm_url(&id.to_string(), &[])?, None, expected).await?;
        Ok(status != 204)
    }

    /// `JitNetworkAccessPolicies_Initiate`: asks for access.
    pub async fn initiate(&self, id: &PolicyId, body: &InitiateIn) -> Result<JitNetworkAccessRequest, ClientError> {
        let body = encode(body)?;
        Ok(self.call_json(Method::POST, self.arm_url(&format!("{id}/initiate"), &[])?, Some(body)).await?.1)
    }

    /// `POST {policy}/revoke` (ajar's own, beyond Azure's API): ends the live
    /// grants of the ports named, at once.
    pub async fn revoke(&self, id: &PolicyId, body: &RevokeIn) -> Result<RevokeOut, ClientError> {
        let body = encode(body)?;
        Ok(self.call_json(Method::POST, self.arm_url(&format!("{id}/revoke"), &[])?, Some(body)).await?.1)
    }

    // -------------------------------------------------------------- ARM: VMs

    /// Every VM of a subscription.
    pub async fn list_vms(&self, sub: &SubscriptionId) -> Result<VirtualMachineList, ClientError> {
        self.get_all(self.arm_url(&format!("/subscriptions/{sub}/providers/Microsoft.Compute/virtualMachines"), &[])?, Some(API_VERSION))
            .await
    }

    /// Every VM of a resource group.
    pub async fn list_vms_in_resource_group(&self, sub: &SubscriptionId, rg: &ResourceGroup) -> Result<VirtualMachineList, ClientError> {
        self.get_all(
            self.arm_url(&format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines"), &[])?,
            Some(API_VERSION),
        )
        .await
    }

    pub async fn get_vm(&self, id: &VmId) -> Result<VirtualMachine, ClientError> {
        self.get_json(self.arm_url(&id.to_string(), &[])?).await
    }

    /// Creates or updates a VM. The flag is true when it was created (201).
    pub async fn put_vm(&self, id: &VmId, body: &VirtualMachineIn) -> Result<(VirtualMachine, bool), ClientError> {
        let body = encode(body)?;
        let (status, vm) = self.call_json(Method::PUT, self.arm_url(&id.to_string(), &[])?, Some(body)).await?;
        Ok((vm, status == 201))
    }

    /// Deletes a VM. True when something was deleted (200), false on 204.
    pub async fn delete_vm(&self, id: &VmId) -> Result<bool, ClientError> {
        let (status, _) = self.call(Method::DELETE, self.arm_url(&id.to_string(), &[])?, None).await?;
        Ok(status != 204)
    }

    // -------------------------------------------------------------- ajar's own

    /// `GET /ajar/v1/subscriptions/{sub}/jitStatus`, every page.
    pub async fn jit_status(&self, sub: &SubscriptionId, query: &StatusQuery) -> Result<VmStatusList, ClientError> {
        let mut q = Vec::new();
        if let Some(rg) = &query.resource_group {
            q.push(("resourceGroup", rg.clone()));
        }
        if let Some(loc) = &query.location {
            q.push(("location", loc.clone()));
        }
        if let Some(state) = &query.state {
            q.push(("state", state.clone()));
        }
        self.get_all(self.v1_url(&format!("/ajar/v1/subscriptions/{sub}/jitStatus"), &q)?, None).await
    }

    /// `GET /ajar/v1/gateways`.
    pub async fn gateways(&self) -> Result<GatewayList, ClientError> {
        self.get_json(self.v1_url("/ajar/v1/gateways", &[])?).await
    }

    /// `DELETE /ajar/v1/gateways/{name}`: whether there was one.
    pub async fn delete_gateway(&self, name: &GatewayName) -> Result<bool, ClientError> {
        let (status, _) = self.call(Method::DELETE, self.v1_url(&format!("/ajar/v1/gateways/{name}"), &[])?, None).await?;
        Ok(status != 204)
    }

    /// `POST /ajar/v1/gatewayAssignment`: puts a machine behind a gateway, or (`None`) takes it out.
    pub async fn set_gateway(&self, body: &GatewayAssignmentIn) -> Result<GatewayAssignmentOut, ClientError> {
        let body = encode(body)?;
        Ok(self.call_json(Method::POST, self.v1_url("/ajar/v1/gatewayAssignment", &[])?, Some(body)).await?.1)
    }

    /// `GET /ajar/v1/recommendedPorts`.
    pub async fn recommended_ports(&self) -> Result<RecommendedPorts, ClientError> {
        self.get_json(self.v1_url("/ajar/v1/recommendedPorts", &[])?).await
    }

    /// `POST /ajar/v1/jit/enable`.
    pub async fn enable(&self, body: &EnableIn) -> Result<EnableOut, ClientError> {
        let body = encode(body)?;
        Ok(self.call_json(Method::POST, self.v1_url("/ajar/v1/jit/enable", &[])?, Some(body)).await?.1)
    }

    /// `GET /ajar/v1/activity` as JSON.
    pub async fn activity(&self, query: &ActivityQuery) -> Result<ActivityList, ClientError> {
        let mut q = query.pairs();
        q.push(("format", "json".to_owned()));
        self.get_json(self.v1_url("/ajar/v1/activity", &q)?).await
    }

    /// `GET /ajar/v1/activity?format=csv`: the server's CSV bytes as they are.
    pub async fn activity_csv(&self, query: &ActivityQuery) -> Result<Vec<u8>, ClientError> {
        let mut q = query.pairs();
        q.push(("format", "csv".to_owned()));
        Ok(self.call(Method::GET, self.v1_url("/ajar/v1/activity", &q)?, None).await?.1)
    }

    /// `GET /ajar/v1/activity/verify`: whether the activity log's hash chain holds.
    pub async fn verify_activity(&self) -> Result<ChainVerification, ClientError> {
        self.get_json(self.v1_url("/ajar/v1/activity/verify", &[])?).await
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json(self.v1_url("/openapi.json", &[])?).await
    }

    /// `GET /healthz`: Ok when the server answers 2xx.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        self.call(Method::GET, self.v1_url("/healthz", &[])?, None).await.map(|_| ())
    }
}

fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body).map_err(|e| ClientError::Decode { context: "encoding the request body".to_owned(), message: e.to_string() })
}

fn decode<T: DeserializeOwned>(context: &str, bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ClientError::Decode { context: context.to_owned(), message: format!("unexpected answer: {e}") })
}

/// An error answer: the ARM error body when there is one, else the raw text.
pub fn error_from(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<CloudError>(body) {
        Ok(e) => ClientError::Api { status, error: e.error },
        Err(_) => ClientError::Http { status, body: String::from_utf8_lossy(body).into_owned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";

    fn client(base: &str) -> Client {
        Client { http: reqwest::Client::new(), base: Url::parse(base).unwrap(), auth: HeaderValue::from_static("Bearer t") }
    }

    #[test]
    fn refuses_plain_http_and_junk() {
        fn check(url: &str, why: &str) {
            let err = parse_server_url(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
        check("http://127.0.0.1:8443", "not https");
        check("127.0.0.1:8443", "not https");
        check("https://exa mple", "invalid");
        check("https://h/?x=1", "query");
        check("https://u:p@h/", "credentials");
        assert!(parse_server_url("https://127.0.0.1:8443").is_ok());
        assert!(Client::new("https://h", "tok", b"not pem").unwrap_err().to_string().contains("no PEM certificate"));
        assert!(Client::new("https://h", " ", b"").unwrap_err().to_string().contains("token is empty"));
    }

    #[test]
    fn builds_urls() {
        fn check(base: &str, path: &str, expected: &str) {
            assert_eq!(client(base).url(path).unwrap().as_str(), expected);
        }
        check("https://h:8443", "/healthz", "https://h:8443/healthz");
        check("https://h:8443/", "/a/b?x=1", "https://h:8443/a/b?x=1");
        check("https://h/prefix/", "/a", "https://h/prefix/a");
        let c = client("https://h:8443");
        assert_eq!(c.arm_url("/subscriptions", &[]).unwrap().as_str(), "https://h:8443/subscriptions?api-version=2020-01-01");
    }

    #[test]
    fn follows_next_links_on_this_server_only() {
        fn check(base: &str, link: &str, arm: bool, expected: &str) {
            let version = if arm { Some(API_VERSION) } else { None };
            assert_eq!(client(base).next_url(link, version).unwrap().as_str(), expected, "{link}");
        }
        check(
            "https://h:8443",
            "https://other:1/s/x?api-version=2020-01-01&$skipToken=2",
            true,
            "https://h:8443/s/x?api-version=2020-01-01&$skipToken=2",
        );
        check("https://h:8443", "/s/x?$skipToken=2", true, "https://h:8443/s/x?$skipToken=2&api-version=2020-01-01");
        check("https://h:8443", "/ajar/v1/x?$skipToken=2", false, "https://h:8443/ajar/v1/x?$skipToken=2");
        check("https://h/p", "https://h/p/s?$skipToken=2", false, "https://h/p/s?$skipToken=2");
    }

    #[test]
    fn scopes_pick_the_list_operation() {
        let sub: SubscriptionId = SUB.parse().unwrap();
        let rg: ResourceGroup = "rg1".parse().unwrap();
        let loc: Location = "local".parse().unwrap();
        let check = |rg: Option<&ResourceGroup>, loc: Option<&Location>, expected: &str| {
            let scope = PolicyScope { subscription: sub.clone(), resource_group: rg.cloned(), location: loc.cloned() };
            assert_eq!(scope.list_path(), format!("/subscriptions/{SUB}{expected}"));
        };
        check(None, None, "/providers/Microsoft.Security/jitNetworkAccessPolicies");
        check(None, Some(&loc), "/providers/Microsoft.Security/locations/local/jitNetworkAccessPolicies");
        check(Some(&rg), None, "/resourceGroups/rg1/providers/Microsoft.Security/jitNetworkAccessPolicies");
        check(Some(&rg), Some(&loc), "/resourceGroups/rg1/providers/Microsoft.Security/locations/local/jitNetworkAccessPolicies");
    }

    #[test]
    fn reads_error_bodies() {
        let e = error_from(400, br#"{"error":{"code":"InvalidInitiateInput","message":"port 80 is not configured","target":"virtualMachines[0].ports[0].number"}}"#);
        assert_eq!(e.to_string(), "InvalidInitiateInput: port 80 is not configured (at virtualMachines[0].ports[0].number)");
        assert_eq!(e.status(), Some(400));
        assert_eq!(e.code(), Some("InvalidInitiateInput"));
        let e = error_from(502, b"bad gateway\n");
        assert_eq!(e.to_string(), "the server answered 502 Bad Gateway: bad gateway");
        assert_eq!(e.code(), None);
    }

    #[test]
    fn serialises_bodies_in_camel_case() {
        let body = InitiateIn {
            virtual_machines: vec![ajar_api::jit::InitiateVmIn {
                id: "/x".into(),
                ports: vec![ajar_api::jit::InitiatePortIn {
                    number: 22,
                    duration: Some("PT1H".into()),
                    end_time_utc: None,
                    allowed_source_address_prefix: None,
                    allowed_source_address_prefixes: None,
                }],
            }],
            justification: None,
        };
        assert_eq!(serde_json::to_string(&body).unwrap(), r#"{"virtualMachines":[{"id":"/x","ports":[{"number":22,"duration":"PT1H"}]}]}"#);
        let loc: Location = "local".parse().unwrap();
        let vm = VirtualMachineIn::new(&loc, "Linux", vec!["10.0.0.4".into()]);
        assert_eq!(
            serde_json::to_string(&vm).unwrap(),
            r#"{"location":"local","properties":{"storageProfile":{"osDisk":{"osType":"Linux"}},"networkProfile":{"privateIPAddresses":["10.0.0.4"]}}}"#
        );
    }

    #[test]
    fn writes_a_policy_back_as_read() {
        let read: JitNetworkAccessPolicy = serde_json::from_value(serde_json::json!({
            "id": "/p", "name": "default", "type": "Microsoft.Security/locations/jitNetworkAccessPolicies", "kind": "Basic",
            "location": "local", "etag": "\"v7\"",
            "properties": {
                "virtualMachines": [{"id": "/vm", "ports": [{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*",
                    "maxRequestAccessDuration": "PT3H"}], "publicIpAddress": "1.2.3.4"}],
                "requests": [], "provisioningState": "Succeeded", "cutConnectionsOnRevoke": true
            }
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_value(PolicyIn::from(&read)).unwrap(),
            serde_json::json!({"kind": "Basic", "properties": {
                "virtualMachines": [{"id": "/vm", "ports": [{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*",
                    "maxRequestAccessDuration": "PT3H"}], "publicIpAddress": "1.2.3.4"}],
                "cutConnectionsOnRevoke": true
            }})
        );
        // The write is conditional on the version read; a policy not found must still be absent.
        let unchanged = ajar_api::jit::unchanged_since(Some(&read));
        assert_eq!(precondition_out(&unchanged), ("If-Match", "\"v7\"".to_owned()));
        assert_eq!(precondition_out(&ajar_api::jit::unchanged_since(None)), ("If-None-Match", "*".to_owned()));
    }
}
