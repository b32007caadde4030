//! The HTTP routes: Azure's ARM paths for ARM resources, `/ajar/v1` for ajar's
//! own operations, and the unauthenticated `/healthz` and `/openapi.json`.

mod agents;
mod ajar_v1;
mod dashboard;
mod gateways;
mod identity;
pub(crate) mod jit;
mod vms;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

use ajar_api::{API_VERSION, ApiError};
use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::{Audit, Outcome};
use ajar_domain::ids::Scope;
use ajar_domain::policy::Limits;
use ajar_domain::{Location, PolicyId, PolicyName, ResourceGroup, SubscriptionId, VmId, VmName};
use ajar_store::{ListQuery, PageRequest, Store};

use crate::access::Access;
use crate::auth::{self, Caller, OidcAuth};
use crate::config::ServeConfig;
use crate::http::{HttpError, HttpResult, Query, skip_token};

#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) access: Arc<Access>,
    pub(crate) oidc: Option<Arc<OidcAuth>>,
    limits: Limits,
    page_size: usize,
    max_body_bytes: usize,
    expiry_wake: Arc<crate::scheduler::ExpiryWake>,
    pub(crate) tokens: Arc<auth::TokenCache>,
    pub(crate) changes: Arc<crate::changes::ChangeHub>,
    pub(crate) throttle: Arc<crate::throttle::FailureThrottle>,
    pub(crate) sessions: Arc<crate::sessions::Sessions>,
    pub(crate) trusted_proxies: Arc<Vec<ipnet::IpNet>>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: &ServeConfig) -> Self {
        AppState {
            access: Arc::new(Access::new(Arc::clone(&store))),
            oidc: None,
            store,
            limits: config.limits,
            page_size: config.page_size,
            max_body_bytes: config.max_body_bytes,
            expiry_wake: Arc::default(),
            tokens: Arc::default(),
            changes: Arc::default(),
            throttle: Arc::default(),
            sessions: Arc::default(),
            trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        }
    }

    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// How routes tell the expiry scheduler of a grant that ends before it would look.
    pub fn expiry_wake(&self) -> Arc<crate::scheduler::ExpiryWake> {
        Arc::clone(&self.expiry_wake)
    }

    /// Trusts these OIDC issuers' tokens.
    pub fn with_oidc(mut self, oidc: OidcAuth) -> Self {
        self.oidc = Some(Arc::new(oidc));
        self
    }

    /// Whether the caller may do `action` at `scope`, without a record: for leaving out of a list what
    /// the caller may not see.
    pub(crate) async fn may(&self, caller: &Caller, action: &str, scope: &AccessScope) -> HttpResult<bool> {
        Ok(self.access.check(&caller.ids(), action, scope).await?.is_allowed())
    }

    /// Whether the caller may do `action` at `scope` or anywhere inside it.
    pub(crate) async fn may_below(&self, caller: &Caller, action: &str, scope: &AccessScope) -> HttpResult<bool> {
        Ok(self.access.index().await?.may_any_below(&caller.ids(), action, scope))
    }

    /// Checks the caller may do `audit.operation` at `scope`; a refusal is logged.
    async fn authorize(&self, caller: &Caller, scope: &AccessScope, audit: &Audit) -> HttpResult<()> {
        self.authorize_action(caller, audit.operation, scope, audit).await
    }

    /// Checks the caller may do `action` at `scope`, as part of the operation `audit` describes. A refusal
    /// is a 403 naming the action and scope, and is logged with both.
    pub(crate) async fn authorize_action(&self, caller: &Caller, action: &str, scope: &AccessScope, audit: &Audit) -> HttpResult<()> {
        if self.may(caller, action, scope).await? {
            return Ok(());
        }
        Err(self.refuse_action(caller, action, scope, audit.clone()).await)
    }

    /// A 403 naming `action` and `scope`, logged with both.
    async fn refuse_action(&self, caller: &Caller, action: &str, scope: &AccessScope, audit: Audit) -> HttpError {
        let scope = scope.to_string();
        let error = ajar_api::authorization::authorization_failed(&caller.principal.name, &caller.principal.id, action, &scope);
        let audit = audit.detail("deniedAction", action.to_owned()).detail("deniedScope", scope);
        self.refuse(audit, error).await
    }

    /// [`AppState::authorize_action`] for an operation that writes nothing (a read), logged as `action`
    /// on `scope` when refused.
    pub(crate) async fn authorize_read(&self, caller: &Caller, action: &'static str, scope: &AccessScope) -> HttpResult<()> {
        if self.may(caller, action, scope).await? {
            return Ok(());
        }
        Err(self.refuse_read(caller, action, scope).await)
    }

    /// The refusal of a read the caller is already known not to hold `action` for at `scope`: a 403, on
    /// record, as [`AppState::authorize_read`] answers it.
    pub(crate) async fn refuse_read(&self, caller: &Caller, action: &'static str, scope: &AccessScope) -> HttpError {
        let audit = scope_audit(caller, action, scope.to_string(), Some(scope));
        self.refuse_action(caller, action, scope, audit).await
    }

    /// Logs a failed attempt that never reached the store, and returns its error.
    async fn refuse(&self, audit: Audit, error: impl Into<HttpError>) -> HttpError {
        let error = error.into();
        let audit = audit.detail("error", error.0.body.message.clone());
        if let Err(e) = self.store.record(audit, Outcome::Failed { code: error.0.body.code.clone() }).await {
            tracing::error!(error = %e, "could not record a failed attempt");
        }
        error
    }
}

pub(crate) fn audit(
    caller: &Caller,
    operation: &'static str,
    resource_id: String,
    subscription: &SubscriptionId,
    resource_group: Option<&ResourceGroup>,
) -> Audit {
    Audit {
        subscription: Some(subscription.to_string()),
        resource_group: resource_group.map(ToString::to_string),
        ..caller_audit(caller, operation, resource_id)
    }
}

/// The record of `caller` doing `operation` on `resource_id`, filed under the subscription and resource
/// group of `within`, if any.
pub(crate) fn scope_audit(caller: &Caller, operation: &'static str, resource_id: String, within: Option<&AccessScope>) -> Audit {
    Audit {
        subscription: within.and_then(AccessScope::subscription).map(ToString::to_string),
        resource_group: within.and_then(AccessScope::resource_group).map(ToString::to_string),
        ..caller_audit(caller, operation, resource_id)
    }
}

/// The record of `caller` doing `operation` on `resource_id`, filed under no subscription.
pub(crate) fn caller_audit(caller: &Caller, operation: &'static str, resource_id: String) -> Audit {
    Audit {
        operation,
        subscription: None,
        resource_group: None,
        resource_id,
        caller: caller.principal.name.clone(),
        caller_addr: Some(caller.addr),
        subjects: Vec::new(),
        details: Vec::new(),
    }
}

fn path_part<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| ApiError::bad_request("InvalidResourceId", name, e.to_string()))
}

pub(crate) fn subscription(value: &str) -> Result<SubscriptionId, ApiError> {
    path_part("subscriptionId", value)
}

pub(crate) fn resource_group(value: &str) -> Result<ResourceGroup, ApiError> {
    path_part("resourceGroupName", value)
}

pub(crate) fn location(value: &str) -> Result<Location, ApiError> {
    path_part("ascLocation", value)
}

pub(crate) fn policy_id(sub: &str, rg: &str, loc: &str, name: &str) -> Result<PolicyId, ApiError> {
    Ok(PolicyId {
        subscription: subscription(sub)?,
        resource_group: resource_group(rg)?,
        location: location(loc)?,
        name: path_part::<PolicyName>("jitNetworkAccessPolicyName", name)?,
    })
}

pub(crate) fn vm_id(sub: &str, rg: &str, name: &str) -> Result<VmId, ApiError> {
    Ok(VmId { subscription: subscription(sub)?, resource_group: resource_group(rg)?, name: path_part::<VmName>("vmName", name)? })
}

/// 404 for a subscription this server does not hold.
pub(crate) async fn require_subscription(state: &AppState, id: &SubscriptionId) -> HttpResult<()> {
    if state.store.subscriptions().await?.iter().any(|s| s.id == *id) {
        Ok(())
    } else {
        Err(ApiError::new(404, "SubscriptionNotFound", format!("subscription '{id}' is not known to this server")).into())
    }
}

/// The scope of a list, from whichever of these the route's path (or query) names.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ScopeParams {
    pub(crate) sub: String,
    #[serde(default)]
    pub(crate) rg: Option<String>,
    #[serde(default)]
    pub(crate) loc: Option<String>,
}

impl AppState {
    /// Where the caller holds `action`: `None` for everywhere (it holds it at the root), else the
    /// outermost scopes it holds it at, perhaps none. A list selects in its query what lies inside
    /// them, so that a page is never short of what the caller may see.
    pub(crate) async fn readable_within(&self, caller: &Caller, action: &str) -> HttpResult<Option<Vec<AccessScope>>> {
        let scopes = self.access.index().await?.scopes_allowing(&caller.ids(), action);
        Ok(if scopes.iter().any(AccessScope::is_root) { None } else { Some(scopes) })
    }

    /// What every list does first: checks the scope exists and the caller may read something in it,
    /// and says which page, of what the caller may read there, to read.
    pub(crate) async fn listing(
        &self,
        caller: &Caller,
        action: &'static str,
        params: &ScopeParams,
        query: &Query,
    ) -> HttpResult<ListQuery> {
        let scope = Scope {
            subscription: subscription(&params.sub)?,
            resource_group: params.rg.as_deref().map(resource_group).transpose()?,
            location: params.loc.as_deref().map(location).transpose()?,
        };
        require_subscription(self, &scope.subscription).await?;
        // A caller with the permission somewhere inside the scope gets the items it may see; one without
        // it anywhere there is refused.
        let access_scope = match &scope.resource_group {
            Some(rg) => AccessScope::resource_group_scope(&scope.subscription, rg),
            None => AccessScope::subscription_scope(&scope.subscription),
        };
        if !self.may_below(caller, action, &access_scope).await? {
            return Err(self.refuse_read(caller, action, &access_scope).await);
        }
        let within = self.readable_within(caller, action).await?;
        Ok(ListQuery { scope, within, page: PageRequest { after: skip_token(query)?, size: self.page_size } })
    }
}

/// ARM requires `api-version` on every call, and ajar serves one per provider.
async fn require_api_version(req: Request, next: Next) -> Response {
    require_version(API_VERSION, req, next).await
}

async fn require_authorization_api_version(req: Request, next: Next) -> Response {
    require_version(ajar_api::authorization::API_VERSION, req, next).await
}

async fn require_version(expected: &'static str, req: Request, next: Next) -> Response {
    let version = req
        .uri()
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "api-version").map(|(_, v)| v.into_owned()));
    match version.as_deref() {
        Some(v) if v == expected => next.run(req).await,
        None => HttpError(ApiError::new(
            400,
            "MissingApiVersionParameter",
            format!("the api-version query parameter is required; add ?api-version={expected}"),
        ))
        .into_response(),
        Some(other) => HttpError(
            ApiError::new(
                400,
                "InvalidApiVersionParameter",
                format!("api-version '{other}' is not supported; the supported version is '{expected}'"),
            )
            .with_target(Some("api-version".into())),
        )
        .into_response(),
    }
}

/// ARM path segments are case-insensitive; axum's routes are not. Spell the
/// fixed segments canonically before routing.
fn canonical_path(mut req: Request) -> Request {
    const LITERALS: [&str; 11] = [
        "Microsoft.Authorization",
        "roleDefinitions",
        "roleAssignments",
        "subscriptions",
        "resourceGroups",
        "providers",
        "Microsoft.Security",
        "locations",
        "jitNetworkAccessPolicies",
        "Microsoft.Compute",
        "virtualMachines",
    ];
    let uri = req.uri();
    let path = uri.path();
    let fixed: Vec<&str> =
        path.split('/').map(|seg| LITERALS.iter().find(|l| l.eq_ignore_ascii_case(seg)).copied().unwrap_or(seg)).collect();
    let fixed = fixed.join("/");
    if fixed != path {
        let rebuilt = match uri.query() {
            Some(q) => format!("{fixed}?{q}"),
            None => fixed,
        };
        if let Ok(new_uri) = rebuilt.parse::<Uri>() {
            *req.uri_mut() = new_uri;
        }
    }
    req
}

async fn not_found(uri: Uri) -> HttpError {
    HttpError(ApiError::new(404, "NotFound", format!("no resource or operation at '{}'", uri.path())))
}

async fn method_not_allowed() -> HttpError {
    HttpError(ApiError::new(405, "MethodNotAllowed", "this resource does not support that HTTP method"))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn openapi() -> Response {
    match ajar_api::openapi::document() {
        Ok(doc) => ([(header::CONTENT_TYPE, "application/json")], doc.to_string()).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the embedded OpenAPI document is broken");
            HttpError(ApiError::internal()).into_response()
        }
    }
}

pub fn router(state: AppState) -> Router {
    const SUB: &str = "/subscriptions/{sub}";
    const RG: &str = "/subscriptions/{sub}/resourceGroups/{rg}";
    let jit = "providers/Microsoft.Security/jitNetworkAccessPolicies";
    let jit_loc = "providers/Microsoft.Security/locations/{loc}/jitNetworkAccessPolicies";
    let vms = "providers/Microsoft.Compute/virtualMachines";
    let arm = Router::new()
        .route("/subscriptions", get(vms::list_subscriptions))
        .route(&format!("{SUB}/{jit}"), get(jit::list))
        .route(&format!("{SUB}/{jit_loc}"), get(jit::list))
        .route(&format!("{RG}/{jit}"), get(jit::list))
        .route(&format!("{RG}/{jit_loc}"), get(jit::list))
        .route(&format!("{RG}/{jit_loc}/{{name}}"), get(jit::get_policy).put(jit::put_policy).delete(jit::delete_policy))
        .route(&format!("{RG}/{jit_loc}/{{name}}/{{action}}"), post(jit::action))
        .route(&format!("{SUB}/{vms}"), get(vms::list))
        .route(&format!("{RG}/{vms}"), get(vms::list))
        .route(&format!("{RG}/{vms}/{{name}}"), get(vms::get_vm).put(vms::put_vm).delete(vms::delete_vm))
        .layer(middleware::from_fn(require_api_version));
    // Role definitions and assignments at the root, a subscription, a resource group or a machine.
    let authz = "providers/Microsoft.Authorization/{kind}";
    let mut authorization = Router::new();
    for scope in ["", SUB, RG, &format!("{RG}/{vms}/{{vm}}")] {
        for path in [format!("{scope}/{authz}"), format!("{scope}/{authz}/{{item}}")] {
            authorization =
                authorization.route(&path, get(identity::authorization).put(identity::authorization).delete(identity::authorization));
        }
    }
    let authorization = authorization.layer(middleware::from_fn(require_authorization_api_version));
    let own = Router::new()
        .route("/ajar/v1/me", get(identity::me))
        .route("/ajar/v1/principals", get(identity::list_principals).post(identity::create_principal))
        .route("/ajar/v1/principals/{id}", get(identity::get_principal).delete(identity::delete_principal))
        .route("/ajar/v1/principals/{id}/tokens", get(identity::list_tokens).post(identity::create_token))
        .route("/ajar/v1/tokens/{id}", axum::routing::delete(identity::revoke_token))
        .route("/ajar/v1/roles/requester", post(identity::create_requester_role))
        .route("/ajar/v1/subscriptions/{sub}/jitStatus", get(ajar_v1::jit_status))
        .route("/ajar/v1/recommendedPorts", get(ajar_v1::recommended_ports))
        .route("/ajar/v1/jit/enable", post(ajar_v1::enable))
        .route("/ajar/v1/gateways", get(gateways::list))
        .route("/ajar/v1/gateways/{name}", get(gateways::get).delete(gateways::delete))
        .route("/ajar/v1/gatewayAssignment", post(gateways::assign))
        .route("/ajar/v1/activity", get(ajar_v1::activity))
        .route("/ajar/v1/activity/verify", get(ajar_v1::verify_activity));
    let authenticated = arm.merge(authorization).merge(own).layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    let agent = Router::new()
        .route("/ajar/v1/agent/desiredState", get(agents::desired_state))
        .route("/ajar/v1/agent/report", post(agents::report))
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate_agent));
    let body_limit = state.max_body_bytes();
    let ui = Router::new()
        .route("/", get(dashboard::root))
        .route("/ui", get(dashboard::root))
        .route("/ui/static/style.css", get(dashboard::style))
        .route("/ui/static/ajar.js", get(dashboard::script))
        .route("/ui/signin", get(dashboard::signin_form).post(dashboard::signin))
        .route("/ui/signin/oidc/callback", get(dashboard::oidc_callback))
        .route("/ui/signin/oidc/{label}", get(dashboard::oidc_start))
        .route("/ui/signout", post(dashboard::signout))
        .route("/ui/jit", get(dashboard::jit))
        .route("/ui/vm", get(dashboard::vm))
        .route("/ui/request", get(dashboard::request_form).post(dashboard::request))
        .route("/ui/configure", get(dashboard::configure).post(dashboard::configure_post))
        .route("/ui/configure/remove", post(dashboard::configure_remove))
        .route("/ui/activity", get(dashboard::activity))
        .route("/ui/activity.csv", get(dashboard::activity_csv))
        .route("/ui/timeline", get(dashboard::timeline));
    // Every dashboard answer carries its server time.
    let ui = ui.layer(middleware::from_fn(dashboard::server_timing));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .merge(ui)
        .route("/openapi.json", get(openapi))
        .route("/ajar/v1/agents/enroll", post(agents::enroll))
        .merge(authenticated)
        .merge(agent)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inside the body limit, which it reads from the request's extensions.
        .layer(middleware::from_fn(crate::http::read_body_first))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    Router::new().fallback_service(ServiceBuilder::new().map_request(canonical_path).service(app))
}

pub(crate) fn created_or_ok(outcome: ajar_store::PutOutcome) -> StatusCode {
    match outcome {
        ajar_store::PutOutcome::Created => StatusCode::CREATED,
        ajar_store::PutOutcome::Updated => StatusCode::OK,
    }
}
