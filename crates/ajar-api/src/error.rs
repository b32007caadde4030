//! ARM's error body (`CloudError`) and the HTTP status that goes with it.

use ajar_domain::problem::{Field, Step, Target};
use ajar_domain::{ErrorCode, Problem};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudError {
    pub error: CloudErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudErrorBody {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub details: Vec<CloudErrorBody>,
}

/// An error answer: status, code, message and the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub body: CloudErrorBody,
    /// The domain's problem this answer renders, if it renders one: the machine it concerns and its
    /// field as a path, for callers in the process (the dashboard puts it next to its form field).
    pub cause: Option<Box<Problem>>,
}

/// A field's name as the wire spells it.
fn field_name(field: Field) -> &'static str {
    match field {
        Field::Name => "name",
        Field::Location => "location",
        Field::Properties => "properties",
        Field::Type => "type",
        Field::VirtualMachines => "virtualMachines",
        Field::Id => "id",
        Field::Ports => "ports",
        Field::Number => "number",
        Field::Protocol => "protocol",
        Field::AllowedSourceAddressPrefix => "allowedSourceAddressPrefix",
        Field::AllowedSourceAddressPrefixes => "allowedSourceAddressPrefixes",
        Field::MaxRequestAccessDuration => "maxRequestAccessDuration",
        Field::PublicIpAddress => "publicIpAddress",
        Field::Duration => "duration",
        Field::EndTimeUtc => "endTimeUtc",
        Field::Justification => "justification",
        Field::RoleName => "roleName",
        Field::Permissions => "permissions",
        Field::Actions => "actions",
        Field::NotActions => "notActions",
        Field::AssignableScopes => "assignableScopes",
        Field::PrincipalId => "principalId",
        Field::RoleDefinitionId => "roleDefinitionId",
        Field::Scope => "scope",
        Field::Oidc => "oidc",
        Field::Issuer => "issuer",
        Field::Subject => "subject",
        Field::Expires => "expires",
    }
}

/// A target as the path of a JSON body's field: `properties.virtualMachines[0].ports[1].number`.
pub fn render_target(target: &Target) -> String {
    let mut out = String::new();
    for step in target.steps() {
        match step {
            Step::Field(field) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(field_name(*field));
            }
            Step::At(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: CloudErrorBody { code: code.to_owned(), message: message.into(), target: None, details: Vec::new() },
            cause: None,
        }
    }

    pub fn with_target(mut self, target: Option<String>) -> Self {
        self.body.target = target;
        self
    }

    pub fn bad_request(code: &str, target: &str, message: impl Into<String>) -> Self {
        ApiError::new(400, code, message).with_target(Some(target.to_owned()))
    }

    /// 409: the resource exists, or its state forbids the operation.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(409, code, message)
    }

    /// 404 with ARM's code for the kind of resource that is missing.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(404, code, message)
    }

    pub fn internal() -> Self {
        ApiError::new(500, "InternalServerError", "the server failed to complete the operation; see its log")
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&CloudError { error: self.body.clone() })
            .unwrap_or_else(|_| b"{\"error\":{\"code\":\"InternalServerError\",\"message\":\"\"}}".to_vec())
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        let status = if p.code.is_not_found() {
            404
        } else if p.code.is_conflict() {
            409
        } else if p.code == ErrorCode::PreconditionFailed {
            412
        } else {
            400
        };
        let code = match p.code {
            // ARM's generic name for a missing resource of another provider.
            ErrorCode::VirtualMachineNotFound if status == 404 => "ResourceNotFound",
            other => other.as_str(),
        };
        let target = p.target.as_ref().map(render_target);
        ApiError { cause: Some(Box::new(p.clone())), ..ApiError::new(status, code, p.message).with_target(target) }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.body.code, self.body.message)?;
        if let Some(t) = &self.body.target {
            write!(f, " (at {t})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}
