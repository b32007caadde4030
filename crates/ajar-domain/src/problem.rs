//! A rule violation, named by code, with the offending field and a message a
//! person can act on. The API crate renders it as an ARM error body.

use std::fmt;

/// Why something was refused. Each code is stable: scripts match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidPolicy,
    InvalidInitiateInput,
    InvalidVirtualMachine,
    InvalidResourceId,
    InvalidRoleDefinition,
    PolicyNotFound,
    VirtualMachineNotFound,
    SubscriptionNotFound,
    VirtualMachineInAnotherPolicy,
    VirtualMachineInUse,
    Conflict,
    /// A principal's name or OIDC link is malformed.
    InvalidPrincipal,
    /// A principal with this name, or linked to this OIDC identity, exists already.
    PrincipalExists,
    /// The principal named in the request does not exist.
    PrincipalNotFound,
    /// The operation would leave no principal holding Owner at `/`.
    LastOwner,
    /// A token's label or expiry is malformed.
    InvalidToken,
    /// Another custom role has this name (Azure's code).
    RoleDefinitionWithSameNameExists,
    /// The role definition named in the request does not exist (Azure's code).
    RoleDefinitionDoesNotExist,
    /// The role is still assigned somewhere (Azure's code).
    RoleDefinitionHasAssignments,
    /// A role assignment's ID or fields are malformed.
    InvalidRoleAssignment,
    /// The role is not assignable at the requested scope.
    ScopeNotAssignable,
    /// The principal already holds this role at this scope (Azure's code).
    RoleAssignmentExists,
    /// An assignment with this ID exists with other properties; assignments cannot be changed (Azure's code).
    RoleAssignmentUpdateNotPermitted,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidPolicy => "InvalidPolicy",
            ErrorCode::InvalidInitiateInput => "InvalidInitiateInput",
            ErrorCode::InvalidVirtualMachine => "InvalidVirtualMachine",
            ErrorCode::InvalidResourceId => "InvalidResourceId",
            ErrorCode::InvalidRoleDefinition => "InvalidRoleDefinition",
            ErrorCode::PolicyNotFound => "PolicyNotFound",
            ErrorCode::VirtualMachineNotFound => "VirtualMachineNotFound",
            ErrorCode::SubscriptionNotFound => "SubscriptionNotFound",
            ErrorCode::VirtualMachineInAnotherPolicy => "VirtualMachineInAnotherPolicy",
            ErrorCode::VirtualMachineInUse => "VirtualMachineInUse",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::InvalidPrincipal => "InvalidPrincipal",
            ErrorCode::PrincipalExists => "PrincipalExists",
            ErrorCode::PrincipalNotFound => "PrincipalNotFound",
            ErrorCode::LastOwner => "LastOwner",
            ErrorCode::InvalidToken => "InvalidToken",
            ErrorCode::RoleDefinitionWithSameNameExists => "RoleDefinitionWithSameNameExists",
            ErrorCode::RoleDefinitionDoesNotExist => "RoleDefinitionDoesNotExist",
            ErrorCode::RoleDefinitionHasAssignments => "RoleDefinitionHasAssignments",
            ErrorCode::InvalidRoleAssignment => "InvalidRoleAssignment",
            ErrorCode::ScopeNotAssignable => "ScopeNotAssignable",
            ErrorCode::RoleAssignmentExists => "RoleAssignmentExists",
            ErrorCode::RoleAssignmentUpdateNotPermitted => "RoleAssignmentUpdateNotPermitted",
        }
    }

    /// Not-found codes are answered 404, conflicts 409, the rest 400.
    /// `PrincipalNotFound` and `RoleDefinitionDoesNotExist` name something in
    /// a request body (as on Azure, 400); a route whose path names the missing
    /// thing answers 404 itself.
    pub fn is_not_found(self) -> bool {
        matches!(self, ErrorCode::PolicyNotFound | ErrorCode::SubscriptionNotFound)
    }

    pub fn is_conflict(self) -> bool {
        matches!(
            self,
            ErrorCode::VirtualMachineInUse
                | ErrorCode::Conflict
                | ErrorCode::PrincipalExists
                | ErrorCode::LastOwner
                | ErrorCode::RoleDefinitionWithSameNameExists
                | ErrorCode::RoleDefinitionHasAssignments
                | ErrorCode::RoleAssignmentExists
                | ErrorCode::RoleAssignmentUpdateNotPermitted
        )
    }
}

/// One refused input. `target` is the path of the field in the API's own terms
/// (`properties.virtualMachines[0].ports[1].number`), so a user can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: ErrorCode,
    pub target: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(code: ErrorCode, target: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        Problem { code, target: target.into(), message: message.into() }
    }

    pub fn at(code: ErrorCode, target: &str, message: impl Into<String>) -> Self {
        Problem::new(code, Some(target.to_owned()), message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Some(t) => write!(f, "{}: {} ({t})", self.code.as_str(), self.message),
            None => write!(f, "{}: {}", self.code.as_str(), self.message),
        }
    }
}

impl std::error::Error for Problem {}
