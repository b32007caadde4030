//! Who may do what: `Microsoft.Authorization` role definitions and role
//! assignments (api-version 2022-04-01) at a scope, and ajar's own
//! principals, API tokens, requester role and `me` under `/ajar/v1`.
//!
//! Every name that goes into a path (a GUID, a principal or token ID) is one
//! percent-encoded segment, and the `$filter` value is percent-encoded (`%20`
//! for spaces, `%27` for quotes), so no input can change which resource a
//! request reaches.

use serde_json::Value;
use url::Url;

use ajar_api::authorization::{
    API_VERSION as AUTHORIZATION_API_VERSION, RoleAssignmentIn, RoleAssignmentList, RoleAssignmentOut, RoleDefinitionList,
    RoleDefinitionOut, role_definition_id,
};
use ajar_api::principals::{
    PrincipalIn, PrincipalList, PrincipalOut, RequesterRoleIn, TokenCreatedOut, TokenIn, TokenList, TokenRevokedOut,
};
use ajar_api::wire_time;
use ajar_domain::access::Scope;

use crate::{Client, ClientError, Method, Paged, decode, encode};

/// The provider segment between a scope and a role resource.
const PROVIDER: &str = "/providers/Microsoft.Authorization";

/// `GET /ajar/v1/me`: who the token is.
pub use ajar_api::principals::MeOut as Me;

/// When a new API token stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenExpiry {
    /// The server's default (90 days).
    Default,
    /// After this many days.
    InDays(i64),
    /// At this time.
    On(time::OffsetDateTime),
}

/// The two kinds of role resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleResource {
    Definitions,
    Assignments,
}

impl RoleResource {
    fn segment(self) -> &'static str {
        match self {
            RoleResource::Definitions => "roleDefinitions",
            RoleResource::Assignments => "roleAssignments",
        }
    }
}

/// `field eq 'value'` with OData's quoting (a quote is written twice).
pub fn odata_eq(field: &str, value: &str) -> String {
    format!("{field} eq '{}'", value.replace('\'', "''"))
}

/// Everything but RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes a query value so it survives any server's parser (`%20`, never `+`).
pub fn encode_query_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// The body of a role assignment PUT.
pub fn role_assignment_body(role_guid: &str, principal_id: &str) -> RoleAssignmentIn {
    RoleAssignmentIn::new(role_definition_id(role_guid, None), principal_id.to_owned())
}

/// The body of a token POST.
pub fn token_body(name: &str, expiry: &TokenExpiry) -> TokenIn {
    let (expires_in_days, expires_on) = match expiry {
        TokenExpiry::Default => (None, None),
        TokenExpiry::InDays(days) => (Some(*days), None),
        TokenExpiry::On(at) => (None, Some(Some(wire_time::format(*at)))),
    };
    TokenIn { name: name.to_owned(), expires_in_days, expires_on }
}

/// The body of a requester-role POST; only what is given is sent.
pub fn requester_role_body(name: Option<&str>, api_only: bool, scope: Option<&Scope>) -> RequesterRoleIn {
    RequesterRoleIn { name: name.map(str::to_owned), api_only, scope: scope.map(ToString::to_string) }
}

impl Paged for RoleDefinitionList {
    type Item = RoleDefinitionOut;
    fn split(self) -> (Vec<Self::Item>, Option<String>) {
        (self.value, self.next_link)
    }
    fn join(value: Vec<Self::Item>) -> Self {
        RoleDefinitionList { value, next_link: None }
    }
}

impl Paged for RoleAssignmentList {
    type Item = RoleAssignmentOut;
    fn split(self) -> (Vec<Self::Item>, Option<String>) {
        (self.value, self.next_link)
    }
    fn join(value: Vec<Self::Item>) -> Self {
        RoleAssignmentList { value, next_link: None }
    }
}

impl Paged for PrincipalList {
    type Item = PrincipalOut;
    fn split(self) -> (Vec<Self::Item>, Option<String>) {
        (self.value, self.next_link)
    }
    fn join(value: Vec<Self::Item>) -> Self {
        PrincipalList { value, next_link: None }
    }
}

fn push_segments(url: &mut Url, segments: &[&str]) -> Result<(), ClientError> {
    let shown = url.to_string();
    let mut path = url.path_segments_mut().map_err(|_| ClientError::Config(format!("'{shown}' cannot take a path")))?;
    path.pop_if_empty();
    for s in segments {
        path.push(s);
    }
    Ok(())
}

impl Client {
    /// `{scope}/providers/Microsoft.Authorization/{kind}[/{name}]?api-version=2022-04-01[&$filter=...]`.
    pub fn authorization_url(
        &self,
        scope: &Scope,
        kind: RoleResource,
        name: Option<&str>,
        filter: Option<&str>,
    ) -> Result<Url, ClientError> {
        let prefix = if scope.is_root() { String::new() } else { scope.to_string() };
        let mut url = self.url(&format!("{prefix}{PROVIDER}/{}", kind.segment()))?;
        if let Some(name) = name {
            push_segments(&mut url, &[name])?;
        }
        let mut query = format!("api-version={AUTHORIZATION_API_VERSION}");
        if let Some(filter) = filter {
            query.push_str("&$filter=");
            query.push_str(&encode_query_value(filter));
        }
        url.set_query(Some(&query));
        Ok(url)
    }

    /// `/ajar/v1/{segments...}`, each segment percent-encoded.
    pub fn v1_segments_url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.url("/ajar/v1")?;
        push_segments(&mut url, segments)?;
        Ok(url)
    }

    // -------------------------------------------------------------- role definitions

    /// Built-in and custom role definitions at `scope`, every page; only
    /// those named `role_name` when given (`$filter=roleName eq '...'`).
    pub async fn list_role_definitions(&self, scope: &Scope, role_name: Option<&str>) -> Result<RoleDefinitionList, ClientError> {
        let filter = role_name.map(|n| odata_eq("roleName", n));
        let url = self.authorization_url(scope, RoleResource::Definitions, None, filter.as_deref())?;
        self.get_all(url, Some(AUTHORIZATION_API_VERSION)).await
    }

    /// One role definition by its GUID.
    pub async fn get_role_definition(&self, scope: &Scope, id: &str) -> Result<RoleDefinitionOut, ClientError> {
        self.get_json(self.authorization_url(scope, RoleResource::Definitions, Some(id), None)?).await
    }

    /// Like [`Client::get_role_definition`], but `None` when there is no such role.
    pub async fn find_role_definition(&self, scope: &Scope, id: &str) -> Result<Option<RoleDefinitionOut>, ClientError> {
        match self.get_role_definition(scope, id).await {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces the custom role `id` from `body` (Azure's ARM
    /// shape or the role-file shape). The flag is true when it was created (201).
    pub async fn put_role_definition(&self, scope: &Scope, id: &str, body: &Value) -> Result<(RoleDefinitionOut, bool), ClientError> {
        let url = self.authorization_url(scope, RoleResource::Definitions, Some(id), None)?;
        let (status, role) = self.call_json(Method::PUT, url, Some(encode(body)?)).await?;
        Ok((role, status == 201))
    }

    /// Deletes the custom role `id`: the deleted definition (200), or `None`
    /// when there was nothing to delete (204).
    pub async fn delete_role_definition(&self, scope: &Scope, id: &str) -> Result<Option<RoleDefinitionOut>, ClientError> {
        let url = self.authorization_url(scope, RoleResource::Definitions, Some(id), None)?;
        self.delete_returning(url).await
    }

    // -------------------------------------------------------------- role assignments

    /// Role assignments at, above and below `scope`, every page; only those
    /// of `principal_id` when given (`$filter=principalId eq '...'`).
    pub async fn list_role_assignments(&self, scope: &Scope, principal_id: Option<&str>) -> Result<RoleAssignmentList, ClientError> {
        let filter = principal_id.map(|p| odata_eq("principalId", p));
        let url = self.authorization_url(scope, RoleResource::Assignments, None, filter.as_deref())?;
        self.get_all(url, Some(AUTHORIZATION_API_VERSION)).await
    }

    /// Assigns role `role_guid` to `principal_id` at `scope`, as assignment `name` (a GUID).
    pub async fn create_role_assignment(
        &self,
        scope: &Scope,
        name: &str,
        role_guid: &str,
        principal_id: &str,
    ) -> Result<RoleAssignmentOut, ClientError> {
        let url = self.authorization_url(scope, RoleResource::Assignments, Some(name), None)?;
        let body = encode(&role_assignment_body(role_guid, principal_id))?;
        Ok(self.call_json(Method::PUT, url, Some(body)).await?.1)
    }

    pub async fn get_role_assignment(&self, scope: &Scope, name: &str) -> Result<RoleAssignmentOut, ClientError> {
        self.get_json(self.authorization_url(scope, RoleResource::Assignments, Some(name), None)?).await
    }

    /// Deletes assignment `name` at `scope`: the deleted assignment (200), or
    /// `None` when there was nothing to delete (204).
    pub async fn delete_role_assignment(&self, scope: &Scope, name: &str) -> Result<Option<RoleAssignmentOut>, ClientError> {
        let url = self.authorization_url(scope, RoleResource::Assignments, Some(name), None)?;
        self.delete_returning(url).await
    }

    /// A DELETE whose 200 carries the deleted resource and whose 204 says there was none.
    async fn delete_returning<T: serde::de::DeserializeOwned>(&self, url: Url) -> Result<Option<T>, ClientError> {
        let context = format!("DELETE {}", url.path());
        let (status, bytes) = self.call(Method::DELETE, url, None).await?;
        if status == 204 || bytes.iter().all(u8::is_ascii_whitespace) { Ok(None) } else { Ok(Some(decode(&context, &bytes)?)) }
    }

    // -------------------------------------------------------------- ajar's identities

    /// `GET /ajar/v1/me`.
    pub async fn me(&self) -> Result<Me, ClientError> {
        self.get_json(self.v1_segments_url(&["me"])?).await
    }

    /// `GET /ajar/v1/principals`, every page.
    pub async fn list_principals(&self) -> Result<PrincipalList, ClientError> {
        self.get_all(self.v1_segments_url(&["principals"])?, None).await
    }

    /// `POST /ajar/v1/principals`.
    pub async fn create_principal(&self, body: &PrincipalIn) -> Result<PrincipalOut, ClientError> {
        let body = encode(body)?;
        Ok(self.call_json(Method::POST, self.v1_segments_url(&["principals"])?, Some(body)).await?.1)
    }

    pub async fn get_principal(&self, id: &str) -> Result<PrincipalOut, ClientError> {
        self.get_json(self.v1_segments_url(&["principals", id])?).await
    }

    /// `DELETE /ajar/v1/principals/{id}`. True when something was deleted
    /// (200), false when there was nothing to delete (204).
    pub async fn delete_principal(&self, id: &str) -> Result<bool, ClientError> {
        let (status, _) = self.call(Method::DELETE, self.v1_segments_url(&["principals", id])?, None).await?;
        Ok(status != 204)
    }

    /// A principal's API tokens (never their secrets).
    pub async fn list_tokens(&self, principal_id: &str) -> Result<TokenList, ClientError> {
        self.get_json(self.v1_segments_url(&["principals", principal_id, "tokens"])?).await
    }

    /// Makes an API token for `principal_id`; the answer holds its secret, this once.
    pub async fn create_token(&self, principal_id: &str, name: &str, expiry: &TokenExpiry) -> Result<TokenCreatedOut, ClientError> {
        let body = encode(&token_body(name, expiry))?;
        Ok(self.call_json(Method::POST, self.v1_segments_url(&["principals", principal_id, "tokens"])?, Some(body)).await?.1)
    }

    /// `DELETE /ajar/v1/tokens/{id}`.
    pub async fn revoke_token(&self, token_id: &str) -> Result<TokenRevokedOut, ClientError> {
        Ok(self.call_json(Method::DELETE, self.v1_segments_url(&["tokens", token_id])?, None).await?.1)
    }

    /// `POST /ajar/v1/roles/requester`: the custom least-privileged requester role.
    pub async fn create_requester_role(
        &self,
        name: Option<&str>,
        api_only: bool,
        scope: Option<&Scope>,
    ) -> Result<RoleDefinitionOut, ClientError> {
        let body = encode(&requester_role_body(name, api_only, scope))?;
        Ok(self.call_json(Method::POST, self.v1_segments_url(&["roles", "requester"])?, Some(body)).await?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;
    use time::macros::datetime;

    const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";
    const ROLE: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

    fn client() -> Client {
        Client { http: reqwest::Client::new(), base: Url::parse("https://h:8443").unwrap(), auth: HeaderValue::from_static("Bearer t") }
    }

    #[test]
    fn authorization_urls() {
        let c = client();
        let root = Scope::root();
        let sub: Scope = format!("/subscriptions/{SUB}").parse().unwrap();
        let vm: Scope =
            format!("/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/web1").parse().unwrap();
        let check = |scope: &Scope, kind, name, filter, expected: &str| {
            assert_eq!(c.authorization_url(scope, kind, name, filter).unwrap().as_str(), expected);
        };
        check(
            &root,
            RoleResource::Definitions,
            None,
            None,
            "https://h:8443/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01",
        );
        check(
            &sub,
            RoleResource::Definitions,
            Some(ROLE),
            None,
            &format!("https://h:8443/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{ROLE}?api-version=2022-04-01"),
        );
        check(
            &vm,
            RoleResource::Assignments,
            None,
            None,
            &format!(
                "https://h:8443/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/web1/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01"
            ),
        );
        // $filter: spaces and quotes encoded, the quote in the name doubled first.
        let filter = odata_eq("roleName", "O'Brien & co/ops");
        assert_eq!(filter, "roleName eq 'O''Brien & co/ops'");
        check(
            &root,
            RoleResource::Definitions,
            None,
            Some(&filter),
            "https://h:8443/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01&$filter=roleName%20eq%20%27O%27%27Brien%20%26%20co%2Fops%27",
        );
        // The server reads it back as it was meant.
        let url = c.authorization_url(&root, RoleResource::Definitions, None, Some(&filter)).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs, vec![("api-version".to_owned(), "2022-04-01".to_owned()), ("$filter".to_owned(), filter.clone())]);
        // A name is one segment, whatever it holds.
        check(
            &root,
            RoleResource::Assignments,
            Some("a/b?c#d"),
            None,
            "https://h:8443/providers/Microsoft.Authorization/roleAssignments/a%2Fb%3Fc%23d?api-version=2022-04-01",
        );
    }

    #[test]
    fn v1_urls_encode_segments() {
        let c = client();
        assert_eq!(c.v1_segments_url(&["me"]).unwrap().as_str(), "https://h:8443/ajar/v1/me");
        assert_eq!(
            c.v1_segments_url(&["principals", "a b/../c", "tokens"]).unwrap().as_str(),
            "https://h:8443/ajar/v1/principals/a%20b%2F..%2Fc/tokens"
        );
        let prefixed = Client { base: Url::parse("https://h/api/").unwrap(), ..client() };
        assert_eq!(prefixed.v1_segments_url(&["tokens", "t1"]).unwrap().as_str(), "https://h/api/ajar/v1/tokens/t1");
        // Later pages of a role list keep the authorization api-version.
        assert_eq!(
            c.next_url("/providers/Microsoft.Authorization/roleDefinitions?$skipToken=x", Some(AUTHORIZATION_API_VERSION))
                .unwrap()
                .as_str(),
            "https://h:8443/providers/Microsoft.Authorization/roleDefinitions?$skipToken=x&api-version=2022-04-01"
        );
    }

    #[test]
    fn bodies() {
        fn sent(body: &impl serde::Serialize) -> Value {
            serde_json::to_value(body).unwrap()
        }
        assert_eq!(
            sent(&role_assignment_body(ROLE, "p-1")),
            json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"), "principalId": "p-1"}})
        );
        assert_eq!(sent(&token_body("ci", &TokenExpiry::Default)), json!({"name": "ci"}));
        assert_eq!(sent(&token_body("ci", &TokenExpiry::InDays(30))), json!({"name": "ci", "expiresInDays": 30}));
        assert_eq!(
            sent(&token_body("ci", &TokenExpiry::On(datetime!(2026-12-31 23:59:59 UTC)))),
            json!({"name": "ci", "expiresOn": "2026-12-31T23:59:59.0000000Z"})
        );
        assert_eq!(sent(&requester_role_body(None, false, None)), json!({}));
        let sub: Scope = format!("/subscriptions/{SUB}").parse().unwrap();
        assert_eq!(
            sent(&requester_role_body(Some("Ops"), true, Some(&sub))),
            json!({"name": "Ops", "apiOnly": true, "scope": format!("/subscriptions/{SUB}")})
        );
        let me: Me =
            serde_json::from_value(json!({"id": "p-1", "name": "alice", "kind": "user", "principalIds": ["p-1"], "actionsAtRoot": []}))
                .unwrap();
        assert_eq!(me.principal_ids, vec!["p-1"]);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("a-Z_0.9~"), "a-Z_0.9~");
        assert_eq!(encode_query_value("x y+'é"), "x%20y%2B%27%C3%A9");
    }
}
