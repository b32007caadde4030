//! The activity log's vocabulary: who did what to which resource, and how it ended.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::access::Scope;

/// Azure's action strings, used as operation names in the activity log and,
/// later, as permissions.
pub mod actions {
    pub const JIT_READ: &str = "Microsoft.Security/locations/jitNetworkAccessPolicies/read";
    pub const JIT_WRITE: &str = "Microsoft.Security/locations/jitNetworkAccessPolicies/write";
    pub const JIT_DELETE: &str = "Microsoft.Security/locations/jitNetworkAccessPolicies/delete";
    pub const JIT_INITIATE: &str = "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action";
    pub const VM_READ: &str = "Microsoft.Compute/virtualMachines/read";
    pub const VM_WRITE: &str = "Microsoft.Compute/virtualMachines/write";
    pub const VM_DELETE: &str = "Microsoft.Compute/virtualMachines/delete";
    pub const SUBSCRIPTIONS_READ: &str = "Microsoft.Resources/subscriptions/read";
    pub const RESOURCE_GROUPS_READ: &str = "Microsoft.Resources/subscriptions/resourceGroups/read";
    pub const NETWORK_INTERFACES_READ: &str = "Microsoft.Network/networkInterfaces/read";
    pub const PUBLIC_IP_ADDRESSES_READ: &str = "Microsoft.Network/publicIPAddresses/read";
    pub const SECURITY_POLICIES_READ: &str = "Microsoft.Security/policies/read";
    pub const SECURITY_PRICINGS_READ: &str = "Microsoft.Security/pricings/read";
    pub const ROLE_DEFINITIONS_READ: &str = "Microsoft.Authorization/roleDefinitions/read";
    pub const ROLE_DEFINITIONS_WRITE: &str = "Microsoft.Authorization/roleDefinitions/write";
    pub const ROLE_DEFINITIONS_DELETE: &str = "Microsoft.Authorization/roleDefinitions/delete";
    pub const ROLE_ASSIGNMENTS_READ: &str = "Microsoft.Authorization/roleAssignments/read";
    pub const ROLE_ASSIGNMENTS_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
    pub const ROLE_ASSIGNMENTS_DELETE: &str = "Microsoft.Authorization/roleAssignments/delete";
    pub const ACTIVITY_READ: &str = "Ajar/activityLog/read";
    /// ajar's own: ending a live grant early.
    pub const JIT_REVOKE: &str = "Ajar/jitNetworkAccessPolicies/revoke/action";
    /// ajar's own: the users, groups and service principals it knows, and their API tokens.
    pub const PRINCIPALS_READ: &str = "Ajar/principals/read";
    pub const PRINCIPALS_WRITE: &str = "Ajar/principals/write";
    pub const PRINCIPALS_DELETE: &str = "Ajar/principals/delete";
    pub const PRINCIPAL_TOKENS_READ: &str = "Ajar/principals/tokens/read";
    pub const PRINCIPAL_TOKENS_WRITE: &str = "Ajar/principals/tokens/write";
    pub const PRINCIPAL_TOKENS_DELETE: &str = "Ajar/principals/tokens/delete";
    /// ajar's own: the enrolled agents and their health.
    pub const AGENTS_READ: &str = "Ajar/agents/read";
    pub const AGENT_ENROLL: &str = "Ajar/agents/enroll/action";
    /// ajar's own: removing a gateway (and its agent).
    pub const GATEWAYS_DELETE: &str = "Ajar/gateways/delete";
    /// An agent found its table changed by hand and put it back.
    pub const AGENT_DRIFT_REPAIRED: &str = "Ajar/agents/driftRepaired/action";
    /// An agent cut the established connections of a grant revoked early.
    pub const AGENT_CONNECTIONS_CUT: &str = "Ajar/agents/connectionsCut/action";
    /// Authentication refused before any operation could be named.
    pub const AUTHENTICATE: &str = "Ajar/authenticate";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed { code: String },
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "Succeeded",
            Outcome::Failed { .. } => "Failed",
        }
    }

    pub fn error_code(&self) -> Option<&str> {
        match self {
            Outcome::Succeeded => None,
            Outcome::Failed { code } => Some(code),
        }
    }
}

/// What an operation is about, before it has run: enough to record its outcome
/// whichever way it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub operation: &'static str,
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    pub resource_id: String,
    pub caller: String,
    pub caller_addr: Option<IpAddr>,
    /// Keys of the machines the entry is about, so a machine's log also shows
    /// the policy changes and requests that concerned it. Empty: the entry is
    /// about `resource_id` alone.
    pub subjects: Vec<String>,
    /// What was asked, recorded whether or not it succeeded.
    pub details: Vec<(String, String)>,
}

impl Audit {
    pub fn detail(mut self, name: &str, value: impl Into<String>) -> Self {
        self.details.push((name.to_owned(), value.into()));
        self
    }
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEntry {
    pub seq: i64,
    pub time: OffsetDateTime,
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    pub resource_id: String,
    pub operation: String,
    pub caller: String,
    pub caller_addr: Option<IpAddr>,
    pub outcome: Outcome,
    /// Name/value pairs: ports, sources, end times, justification, error message.
    pub details: Vec<(String, String)>,
}

/// How an entry ended, as a filter of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    Succeeded,
    Failed,
}

impl ResultKind {
    pub const ALL: [ResultKind; 2] = [ResultKind::Succeeded, ResultKind::Failed];

    /// As [`Outcome::as_str`] writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultKind::Succeeded => "Succeeded",
            ResultKind::Failed => "Failed",
        }
    }

    /// `Succeeded` or `Failed`, in any case.
    pub fn parse(s: &str) -> Option<ResultKind> {
        ResultKind::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityQuery {
    /// Entries about this resource (a VM's key also finds the policy changes and
    /// requests that named it).
    pub resource_key: Option<String>,
    pub caller: Option<String>,
    /// Entries of this operation (an action string, exactly).
    pub operation: Option<String>,
    pub result: Option<ResultKind>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Entries older than this sequence number: the page after the entry that has it.
    pub before: Option<i64>,
    /// Entries newer than this sequence number: with `before`, a stretch of the log to search.
    pub after: Option<i64>,
    /// Only entries whose resource ID is one of these scopes or inside one; `None`: wherever.
    /// An empty list selects nothing.
    pub within: Option<Vec<Scope>>,
    pub limit: Option<usize>,
}
