//! A rule violation, named by code, with the offending field and a message a
//! person can act on. The API crate renders it as an ARM error body.

use std::fmt;

use crate::ids::VmId;

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
    /// The resource changed since the version the caller named (`If-Match`): ARM's code, answered 412.
    PreconditionFailed,
    /// No gateway of that name is enrolled.
    GatewayNotFound,
    /// A gateway's enrolment is malformed (its public addresses or port range).
    InvalidGateway,
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
            ErrorCode::PreconditionFailed => "PreconditionFailed",
            ErrorCode::GatewayNotFound => "GatewayNotFound",
            ErrorCode::InvalidGateway => "InvalidGateway",
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

/// A field of an input, in the domain's vocabulary. `ajar-api` spells each in the wire's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    // The ARM resource envelope.
    Name,
    Location,
    Properties,
    Type,
    // Policies and access requests.
    VirtualMachines,
    Id,
    Ports,
    Number,
    Protocol,
    AllowedSourceAddressPrefix,
    AllowedSourceAddressPrefixes,
    MaxRequestAccessDuration,
    PublicIpAddress,
    Duration,
    EndTimeUtc,
    Justification,
    // Role definitions and assignments.
    RoleName,
    Permissions,
    Actions,
    NotActions,
    AssignableScopes,
    PrincipalId,
    RoleDefinitionId,
    Scope,
    // Principals and tokens.
    Oidc,
    Issuer,
    Subject,
    Expires,
}

/// One step of a [`Target`]: a field, or a position in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Field(Field),
    At(usize),
}

/// Where in an input a problem is: the path from the input's top to the field, so a user can find it
/// (`ajar-api` renders `properties.virtualMachines[0].ports[1].number`) and the dashboard can put the
/// message next to its form field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target(Vec<Step>);

impl Target {
    pub fn of(field: Field) -> Target {
        Target(vec![Step::Field(field)])
    }

    /// This path continued by `field`.
    pub fn field(&self, field: Field) -> Target {
        self.then(Step::Field(field))
    }

    /// This path continued by position `index` of a list.
    pub fn at(&self, index: usize) -> Target {
        self.then(Step::At(index))
    }

    fn then(&self, step: Step) -> Target {
        let mut steps = Vec::with_capacity(self.0.len() + 1);
        steps.extend_from_slice(&self.0);
        steps.push(step);
        Target(steps)
    }

    pub fn steps(&self) -> &[Step] {
        &self.0
    }

    /// The same path with its first steps dropped, if it starts with `prefix`.
    pub fn strip_prefix(&self, prefix: &[Step]) -> Option<&[Step]> {
        self.0.strip_prefix(prefix)
    }
}

impl fmt::Display for Target {
    /// For logs and test failures; the API's spelling is `ajar-api`'s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Field(field) if i == 0 => write!(f, "{field:?}")?,
                Step::Field(field) => write!(f, ".{field:?}")?,
                Step::At(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// One refused input: why (`code`), where (`target`), a message a person can act on, and the machine it
/// concerns when it concerns one, so an answer about several machines names the one refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: ErrorCode,
    pub target: Option<Target>,
    pub message: String,
    pub machine: Option<Box<VmId>>,
}

impl Problem {
    pub fn new(code: ErrorCode, target: impl Into<Option<Target>>, message: impl Into<String>) -> Self {
        Problem { code, target: target.into(), message: message.into(), machine: None }
    }

    pub fn at(code: ErrorCode, target: Target, message: impl Into<String>) -> Self {
        Problem::new(code, Some(target), message)
    }

    /// The same problem, about `machine`.
    pub fn about(mut self, machine: &VmId) -> Self {
        self.machine = Some(Box::new(machine.clone()));
        self
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
