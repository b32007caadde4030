//! ajar's own identities (`/ajar/v1/principals`, `/ajar/v1/tokens`) and the
//! least-privileged requester role (`/ajar/v1/roles/requester`). camelCase
//! JSON; unknown fields are refused.
//!
//! Decisions:
//! - a principal is a `user` or a `service`; Azure's `principalType` for them
//!   is `User` and `ServicePrincipal`;
//! - an API token always expires: by default [`DEFAULT_TOKEN_DAYS`] days after
//!   it is made, or after `expiresInDays` (1 to [`MAX_EXPIRES_IN_DAYS`]), or at
//!   `expiresOn` (in the future, at most [`MAX_TOKEN_LIFETIME_DAYS`] days
//!   ahead); giving both fields, or `"expiresOn": null`, is refused;
//! - the requester role defaults to all of the requester's actions, assignable
//!   at the server's default subscription, named [`DEFAULT_REQUESTER_NAME`]
//!   ([`DEFAULT_API_REQUESTER_NAME`] with `apiOnly`): the built-in requester
//!   already has Azure's script's default name, and names are unique.

use serde::{Deserialize, Deserializer, Serialize};
use time::{Duration, OffsetDateTime};

use ajar_domain::access::{RoleDefinition, Scope, requester_role};
use ajar_domain::problem::{Field, Step};

use crate::{ApiError, wire_time};

/// Longest principal or token name, in characters.
pub const MAX_NAME: usize = 128;
/// Longest OIDC issuer, in characters.
pub const MAX_ISSUER: usize = 2048;
/// Longest OIDC subject, in characters (OpenID Connect's limit for `sub`).
pub const MAX_SUBJECT: usize = 255;
/// A token's life when the body says nothing.
pub const DEFAULT_TOKEN_DAYS: i64 = 90;
/// The largest `expiresInDays`.
pub const MAX_EXPIRES_IN_DAYS: i64 = 365;
/// The furthest `expiresOn`, in days from now: two years.
pub const MAX_TOKEN_LIFETIME_DAYS: i64 = 730;
pub const DEFAULT_REQUESTER_NAME: &str = "JIT Network Access Requester (custom)";
pub const DEFAULT_API_REQUESTER_NAME: &str = "JIT Network Access Requester (API only)";

const CODE: &str = "InvalidRequestContent";

fn bad(target: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(CODE, target, message)
}

/// A display name: 1 to `max` characters, not blank, no control characters.
fn check_text(target: &str, what: &str, s: &str, max: usize) -> Result<(), ApiError> {
    let len = s.chars().count();
    if s.trim().is_empty() {
        Err(bad(target, format!("the {what} must not be empty")))
    } else if len > max {
        Err(bad(target, format!("the {what} is {len} characters long; at most {max} are allowed")))
    } else if s.chars().any(char::is_control) {
        Err(bad(target, format!("the {what} must not contain control characters")))
    } else {
        Ok(())
    }
}

/// Parses an optional body: nothing at all counts as `{}`.
fn parse_optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { crate::parse_body(body) }
}

// ------------------------------------------------------------------ principals

pub use ajar_domain::access::PrincipalKind;

/// Azure's `principalType` in role assignments.
pub fn principal_type(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::User => "User",
        PrincipalKind::Service => "ServicePrincipal",
    }
}

/// The OpenID Connect identity a principal signs in as: the token's `iss` and `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcLink {
    pub issuer: String,
    pub subject: String,
}

/// `POST /ajar/v1/principals`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrincipalIn {
    pub name: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcLink>,
}

/// A principal's own fields, as created and as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalFields {
    pub name: String,
    pub kind: PrincipalKind,
    pub oidc: Option<OidcLink>,
}

pub fn principal_in(body: &[u8]) -> Result<PrincipalFields, ApiError> {
    let input: PrincipalIn = crate::parse_body(body)?;
    check_text("name", "name", &input.name, MAX_NAME)?;
    let kind: PrincipalKind = input.kind.parse().map_err(|e: String| bad("kind", e))?;
    if let Some(oidc) = &input.oidc {
        check_text("oidc.issuer", "issuer", &oidc.issuer, MAX_ISSUER)?;
        if oidc.issuer.chars().any(char::is_whitespace) {
            return Err(bad("oidc.issuer", "the issuer is a URL such as https://login.example.com and has no spaces"));
        }
        check_text("oidc.subject", "subject", &oidc.subject, MAX_SUBJECT)?;
    }
    Ok(PrincipalFields { name: input.name, kind, oidc: input.oidc })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalOut {
    pub id: String,
    pub name: String,
    /// `user` or `service`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub oidc: Option<OidcLink>,
    pub created_on: String,
    /// How many of its API tokens are live (neither revoked nor expired).
    pub tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalList {
    pub value: Vec<PrincipalOut>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_link: Option<String>,
}

pub fn principal_out(id: &str, fields: &PrincipalFields, created_on: OffsetDateTime, live_tokens: u64) -> PrincipalOut {
    PrincipalOut {
        id: id.to_owned(),
        name: fields.name.clone(),
        kind: fields.kind.as_str().to_owned(),
        oidc: fields.oidc.clone(),
        created_on: wire_time::format(created_on),
        tokens: live_tokens,
    }
}

// ------------------------------------------------------------------ tokens

/// Keeps `"field": null` apart from a missing field: `Some(None)` for null.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /ajar/v1/principals/{id}/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenIn {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<i64>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub expires_on: Option<Option<String>>,
}

/// A token to make: its name and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub expires_on: OffsetDateTime,
}

/// Reads a token request made at `now`; see the module's decisions for expiry.
pub fn token_in(body: &[u8], now: OffsetDateTime) -> Result<NewToken, ApiError> {
    let input: TokenIn = crate::parse_body(body)?;
    check_text("name", "name", &input.name, MAX_NAME)?;
    let expires_on = match (input.expires_in_days, input.expires_on) {
        (Some(_), Some(_)) => return Err(bad("expiresOn", "give either expiresInDays or expiresOn, not both")),
        (None, None) => now + Duration::days(DEFAULT_TOKEN_DAYS),
        (Some(days), None) => {
            if !(1..=MAX_EXPIRES_IN_DAYS).contains(&days) {
                return Err(bad("expiresInDays", format!("expiresInDays is {days}; give 1 to {MAX_EXPIRES_IN_DAYS}")));
            }
            now + Duration::days(days)
        }
        (None, Some(None)) => {
            return Err(bad(
                "expiresOn",
                format!(
                    "tokens always expire: give a date-time at most {MAX_TOKEN_LIFETIME_DAYS} days ahead, or leave expiresOn out for {DEFAULT_TOKEN_DAYS} days"
                ),
            ));
        }
        (None, Some(Some(at))) => {
            let at = wire_time::parse(&at).map_err(|e| bad("expiresOn", e))?;
            if at <= now {
                return Err(bad("expiresOn", format!("{} is not in the future", wire_time::format(at))));
            }
            if at > now + Duration::days(MAX_TOKEN_LIFETIME_DAYS) {
                return Err(bad(
                    "expiresOn",
                    format!("{} is more than {MAX_TOKEN_LIFETIME_DAYS} days ahead; a token lives at most two years", wire_time::format(at)),
                ));
            }
            at
        }
    };
    Ok(NewToken { name: input.name, expires_on })
}

/// A token as stored: everything but the secret, which only its hash keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub principal_id: String,
    pub created_on: OffsetDateTime,
    /// `None` only for the bootstrap tokens, which live until revoked.
    pub expires_on: Option<OffsetDateTime>,
    pub revoked_on: Option<OffsetDateTime>,
}

/// A token in a list: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenOut {
    pub id: String,
    pub name: String,
    pub principal_id: String,
    pub created_on: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revoked_on: Option<String>,
}

/// The answer to creating a token: the secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreatedOut {
    pub id: String,
    pub name: String,
    pub principal_id: String,
    pub created_on: String,
    pub expires_on: String,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenList {
    pub value: Vec<TokenOut>,
}

/// `DELETE /ajar/v1/tokens/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevokedOut {
    pub revoked: bool,
}

pub fn token_out(t: &TokenInfo) -> TokenOut {
    TokenOut {
        id: t.id.clone(),
        name: t.name.clone(),
        principal_id: t.principal_id.clone(),
        created_on: wire_time::format(t.created_on),
        expires_on: t.expires_on.map(wire_time::format),
        revoked_on: t.revoked_on.map(wire_time::format),
    }
}

pub fn token_created_out(t: &TokenInfo, secret: &str) -> TokenCreatedOut {
    let TokenOut { id, name, principal_id, created_on, expires_on, .. } = token_out(t);
    TokenCreatedOut { id, name, principal_id, created_on, expires_on: expires_on.unwrap_or_default(), token: secret.to_owned() }
}

/// `GET /ajar/v1/me`: who the caller's token says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeOut {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// The IDs role assignments may name for this caller: its own, and its groups.
    pub principal_ids: Vec<String>,
    /// What the caller may do at the root scope (every action ajar checks).
    pub actions_at_root: Vec<String>,
}

// ------------------------------------------------------------------ requester role

/// `POST /ajar/v1/roles/requester`, the equivalent of Azure's
/// `Set-JitLeastPrivilegedRole.ps1`. Every field is optional; an empty body is `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequesterRoleIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Leave out what only the portal's VM blade needs (reading machines and networks).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequesterRoleRequest {
    pub name: String,
    pub api_only: bool,
    /// `None`: the server's default subscription.
    pub scope: Option<Scope>,
}

pub fn requester_role_in(body: &[u8]) -> Result<RequesterRoleRequest, ApiError> {
    let input: RequesterRoleIn = parse_optional_body(body)?;
    let name = match input.name {
        Some(name) => {
            check_text("name", "name", &name, MAX_NAME)?;
            name
        }
        None if input.api_only => DEFAULT_API_REQUESTER_NAME.to_owned(),
        None => DEFAULT_REQUESTER_NAME.to_owned(),
    };
    let scope = input
        .scope
        .map(|s| s.parse::<Scope>().map_err(|e| ApiError::bad_request("InvalidResourceId", "scope", e.to_string())))
        .transpose()?;
    Ok(RequesterRoleRequest { name, api_only: input.api_only, scope })
}

impl RequesterRoleRequest {
    /// The custom role with GUID `id`, assignable at the request's scope or
    /// else at `default_scope`, validated as any custom role; a problem names
    /// this body's field (`name`, `scope`).
    pub fn to_role(&self, default_scope: &Scope, id: String) -> Result<RoleDefinition, ApiError> {
        let scope = self.scope.clone().unwrap_or_else(|| default_scope.clone());
        let role = requester_role(&self.name, self.api_only, scope, id);
        ajar_domain::access::validate_custom_role(&role).map_err(|p| {
            let target = p.target.as_ref().map(|t| match t.steps() {
                [Step::Field(Field::Properties), Step::Field(Field::RoleName)] => "name".to_owned(),
                [Step::Field(Field::Properties), Step::Field(Field::AssignableScopes)] => "scope".to_owned(),
                _ => crate::render_target(t),
            });
            ApiError::from(p).with_target(target)
        })?;
        Ok(role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
    const SUB: &str = "20ff7fc3-e762-44dd-bd96-b71116dcdc23";

    fn check_error<T: std::fmt::Debug>(got: Result<T, ApiError>, code: &str, target: &str, msg: &str, what: &str) {
        match got {
            Err(e) => {
                assert_eq!((e.status, e.body.code.as_str(), e.body.target.as_deref()), (400, code, Some(target)), "{what}: {e}");
                assert!(e.body.message.contains(msg), "{what}: {e}");
            }
            Ok(v) => panic!("{what}: expected {code} at {target}, got {v:?}"),
        }
    }

    #[test]
    fn principals() {
        let oidc = || OidcLink { issuer: "https://login.example.com".into(), subject: "00u1abcd".into() };
        let good: Vec<(Value, PrincipalFields)> = vec![
            (json!({"name": "alice", "kind": "user"}), PrincipalFields { name: "alice".into(), kind: PrincipalKind::User, oidc: None }),
            (
                json!({"name": "Alice Smith", "kind": "user", "oidc": {"issuer": "https://login.example.com", "subject": "00u1abcd"}}),
                PrincipalFields { name: "Alice Smith".into(), kind: PrincipalKind::User, oidc: Some(oidc()) },
            ),
            (
                json!({"name": "ci-pipeline", "kind": "service", "oidc": null}),
                PrincipalFields { name: "ci-pipeline".into(), kind: PrincipalKind::Service, oidc: None },
            ),
            (
                json!({"name": "é".repeat(128), "kind": "user"}),
                PrincipalFields { name: "é".repeat(128), kind: PrincipalKind::User, oidc: None },
            ),
        ];
        for (body, expected) in good {
            assert_eq!(principal_in(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}")), expected, "{body}");
        }
        let bad: Vec<(Value, &str, &str, &str)> = vec![
            (json!({"name": "", "kind": "user"}), "InvalidRequestContent", "name", "must not be empty"),
            (json!({"name": "   ", "kind": "user"}), "InvalidRequestContent", "name", "must not be empty"),
            (json!({"name": "x".repeat(129), "kind": "user"}), "InvalidRequestContent", "name", "129 characters long; at most 128"),
            (json!({"name": "a\tb", "kind": "user"}), "InvalidRequestContent", "name", "control characters"),
            (json!({"name": "a", "kind": "User"}), "InvalidRequestContent", "kind", "is not 'user' or 'service'"),
            (json!({"name": "a", "kind": "group"}), "InvalidRequestContent", "kind", "is not 'user' or 'service'"),
            (json!({"name": "a"}), "InvalidRequestContent", ".", "missing field `kind`"),
            (
                json!({"name": "a", "kind": "user", "oidc": {"issuer": "", "subject": "s"}}),
                "InvalidRequestContent",
                "oidc.issuer",
                "must not be empty",
            ),
            (
                json!({"name": "a", "kind": "user", "oidc": {"issuer": "https://a b", "subject": "s"}}),
                "InvalidRequestContent",
                "oidc.issuer",
                "no spaces",
            ),
            (
                json!({"name": "a", "kind": "user", "oidc": {"issuer": "https://a", "subject": "s".repeat(256)}}),
                "InvalidRequestContent",
                "oidc.subject",
                "at most 255",
            ),
            (
                json!({"name": "a", "kind": "user", "oidc": {"issuer": "https://a"}}),
                "InvalidRequestContent",
                "oidc",
                "missing field `subject`",
            ),
            (
                json!({"name": "a", "kind": "user", "oidc": {"issuer": "https://a", "subject": "s", "audience": "x"}}),
                "InvalidRequestContent",
                "oidc.audience",
                "unknown field",
            ),
            (json!({"name": "a", "kind": "user", "email": "a@example.com"}), "InvalidRequestContent", "email", "unknown field"),
        ];
        for (body, code, target, msg) in bad {
            let got = principal_in(body.to_string().as_bytes());
            // A missing top-level field has no path.
            if target == "." {
                let e = got.unwrap_err();
                assert_eq!((e.status, e.body.code.as_str(), e.body.target.as_deref()), (400, code, None), "{body}");
                assert!(e.body.message.contains(msg), "{body}: {e}");
            } else {
                check_error(got, code, target, msg, &body.to_string());
            }
        }
        let fields = PrincipalFields { name: "Alice".into(), kind: PrincipalKind::User, oidc: Some(oidc()) };
        let out = principal_out("p-1", &fields, NOW, 2);
        assert_eq!(
            serde_json::to_value(PrincipalList { value: vec![out], next_link: None }).unwrap(),
            json!({"value": [{
                "id": "p-1",
                "name": "Alice",
                "kind": "user",
                "oidc": {"issuer": "https://login.example.com", "subject": "00u1abcd"},
                "createdOn": "2026-03-01T12:00:00.0000000Z",
                "tokens": 2
            }]})
        );
        let service = PrincipalFields { name: "ci".into(), kind: PrincipalKind::Service, oidc: None };
        assert!(serde_json::to_value(principal_out("p-2", &service, NOW, 0)).unwrap().get("oidc").is_none());
        assert_eq!((principal_type(PrincipalKind::User), principal_type(PrincipalKind::Service)), ("User", "ServicePrincipal"));
    }

    #[test]
    fn tokens() {
        let good: Vec<(Value, NewToken)> = vec![
            (json!({"name": "laptop"}), NewToken { name: "laptop".into(), expires_on: datetime!(2026-05-30 12:00 UTC) }),
            (json!({"name": "ci", "expiresInDays": 1}), NewToken { name: "ci".into(), expires_on: datetime!(2026-03-02 12:00 UTC) }),
            (json!({"name": "ci", "expiresInDays": 365}), NewToken { name: "ci".into(), expires_on: datetime!(2027-03-01 12:00 UTC) }),
            (
                json!({"name": "ci", "expiresOn": "2026-12-31T23:59:59Z"}),
                NewToken { name: "ci".into(), expires_on: datetime!(2026-12-31 23:59:59 UTC) },
            ),
            (
                json!({"name": "ci", "expiresOn": "2028-02-29T12:00:00+00:00"}),
                NewToken { name: "ci".into(), expires_on: datetime!(2028-02-29 12:00 UTC) },
            ),
        ];
        for (body, expected) in good {
            assert_eq!(token_in(body.to_string().as_bytes(), NOW).unwrap_or_else(|e| panic!("{body}: {e}")), expected, "{body}");
        }
        let bad: Vec<(Value, &str, &str)> = vec![
            (json!({"name": "ci", "expiresInDays": 30, "expiresOn": "2026-12-31T00:00:00Z"}), "expiresOn", "not both"),
            (json!({"name": "ci", "expiresInDays": 0}), "expiresInDays", "give 1 to 365"),
            (json!({"name": "ci", "expiresInDays": -5}), "expiresInDays", "give 1 to 365"),
            (json!({"name": "ci", "expiresInDays": 366}), "expiresInDays", "give 1 to 365"),
            (json!({"name": "ci", "expiresInDays": 1.5}), "expiresInDays", "invalid type"),
            (json!({"name": "ci", "expiresOn": null}), "expiresOn", "tokens always expire"),
            (json!({"name": "ci", "expiresOn": "next year"}), "expiresOn", "not an RFC 3339 date-time"),
            (json!({"name": "ci", "expiresOn": "2026-03-01T12:00:00Z"}), "expiresOn", "not in the future"),
            (json!({"name": "ci", "expiresOn": "2028-03-01T12:00:01Z"}), "expiresOn", "more than 730 days ahead"),
            (json!({"name": "", "expiresInDays": 1}), "name", "must not be empty"),
            (json!({"name": "ci", "expiresIn": 1}), "expiresIn", "unknown field"),
            (json!({"name": "ci", "scope": "/"}), "scope", "unknown field"),
        ];
        for (body, target, msg) in bad {
            check_error(token_in(body.to_string().as_bytes(), NOW), "InvalidRequestContent", target, msg, &body.to_string());
        }
        let info = TokenInfo {
            id: "t-1".into(),
            name: "laptop".into(),
            principal_id: "p-1".into(),
            created_on: NOW,
            expires_on: Some(datetime!(2026-05-30 12:00 UTC)),
            revoked_on: None,
        };
        let listed = json!({
            "id": "t-1",
            "name": "laptop",
            "principalId": "p-1",
            "createdOn": "2026-03-01T12:00:00.0000000Z",
            "expiresOn": "2026-05-30T12:00:00.0000000Z"
        });
        assert_eq!(serde_json::to_value(TokenList { value: vec![token_out(&info)] }).unwrap(), json!({"value": [listed.clone()]}));
        let mut created = listed;
        created["token"] = json!("ajr_secret");
        assert_eq!(serde_json::to_value(token_created_out(&info, "ajr_secret")).unwrap(), created);
        assert_eq!(serde_json::to_value(TokenRevokedOut { revoked: true }).unwrap(), json!({"revoked": true}));
    }

    #[test]
    fn requester_role() {
        let sub: Scope = format!("/subscriptions/{SUB}").parse().unwrap();
        let rg: Scope = format!("/subscriptions/{SUB}/resourceGroups/rg").parse().unwrap();
        let good: Vec<(&[u8], RequesterRoleRequest)> = vec![
            (b"", RequesterRoleRequest { name: DEFAULT_REQUESTER_NAME.into(), api_only: false, scope: None }),
            (b"{}", RequesterRoleRequest { name: DEFAULT_REQUESTER_NAME.into(), api_only: false, scope: None }),
            (br#"{"apiOnly": true}"#, RequesterRoleRequest { name: DEFAULT_API_REQUESTER_NAME.into(), api_only: true, scope: None }),
            (
                br#"{"name": "Ops requester", "scope": "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/rg"}"#,
                RequesterRoleRequest { name: "Ops requester".into(), api_only: false, scope: Some(rg.clone()) },
            ),
        ];
        for (body, expected) in good {
            let what = String::from_utf8_lossy(body);
            assert_eq!(requester_role_in(body).unwrap_or_else(|e| panic!("{what}: {e}")), expected, "{what}");
        }
        let bad: Vec<(&[u8], &str, &str, &str)> = vec![
            (br#"{"name": ""}"#, "InvalidRequestContent", "name", "must not be empty"),
            (br#"{"scope": "subscriptions/x"}"#, "InvalidResourceId", "scope", "must start with '/'"),
            (br#"{"apiOnly": "yes"}"#, "InvalidRequestContent", "apiOnly", "invalid type"),
            (br#"{"roleName": "x"}"#, "InvalidRequestContent", "roleName", "unknown field"),
        ];
        for (body, code, target, msg) in bad {
            check_error(requester_role_in(body), code, target, msg, &String::from_utf8_lossy(body));
        }
        let id = "0f4b5b0e-9b0e-4a57-9d6b-0f0c7a1f2b3c".to_owned();
        // Defaults: the server's scope, every requester action.
        let role = requester_role_in(b"{}").unwrap().to_role(&sub, id.clone()).unwrap();
        assert_eq!((role.name.as_str(), role.assignable_scopes.clone()), (DEFAULT_REQUESTER_NAME, vec![sub.clone()]));
        assert!(role.actions.iter().any(|a| a == "Microsoft.Compute/virtualMachines/read"));
        let api = requester_role_in(br#"{"apiOnly": true, "scope": "/"}"#).unwrap().to_role(&sub, id.clone()).unwrap();
        assert_eq!(api.assignable_scopes, vec![Scope::root()]);
        assert!(!api.actions.iter().any(|a| a == "Microsoft.Compute/virtualMachines/read"));
        // The built-in's name is taken; the problem names this body's field.
        let clash = requester_role_in(br#"{"name": "JIT Network Access Requester"}"#).unwrap().to_role(&sub, id);
        check_error(clash, "InvalidRoleDefinition", "name", "built-in role", "built-in name");
    }
}
