//! JIT status per machine: what the portal's three tabs show.

use time::{Duration, OffsetDateTime};

use crate::agent::DesiredState;
use crate::ids::PolicyId;
use crate::initiate::Grant;
use crate::inventory::{EnforcementPoint, Vm};
use crate::policy::PortRule;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedReason {
    /// No host agent serves the machine: nothing could open or close its ports.
    NoEnforcementPoint,
    /// The agent runs, but nftables does not work on the machine.
    NftablesUnusable,
}

impl UnsupportedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnsupportedReason::NoEnforcementPoint => "NoEnforcementPoint",
            UnsupportedReason::NftablesUnusable => "NftablesUnusable",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            UnsupportedReason::NoEnforcementPoint => "no enforcement point: no ajar agent serves this machine yet",
            UnsupportedReason::NftablesUnusable => "the ajar agent runs, but nftables is unusable on this machine",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitState {
    Configured,
    NotConfigured,
    Unsupported(UnsupportedReason),
}

impl JitState {
    pub fn as_str(self) -> &'static str {
        match self {
            JitState::Configured => "Configured",
            JitState::NotConfigured => "NotConfigured",
            JitState::Unsupported(_) => "Unsupported",
        }
    }
}

/// A machine in a policy is Configured (even before an agent serves it: the
/// policy is kept, and its ports stay closed until then). Otherwise it is Not
/// configured if something could enforce JIT on it, else Unsupported.
pub fn jit_state(vm: &Vm, configured: bool) -> JitState {
    if configured {
        return JitState::Configured;
    }
    match &vm.enforcement {
        EnforcementPoint::None => JitState::Unsupported(UnsupportedReason::NoEnforcementPoint),
        EnforcementPoint::Agent(agent) if agent.nftables.is_err() => JitState::Unsupported(UnsupportedReason::NftablesUnusable),
        EnforcementPoint::Agent(_) => JitState::NotConfigured,
    }
}

/// The window of "approved requests in the last 7 days".
pub const RECENT_WINDOW: Duration = Duration::days(7);

pub fn recent_window_start(now: OffsetDateTime) -> OffsetDateTime {
    now - RECENT_WINDOW
}

/// Everything the status view shows about one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmJitStatus {
    pub vm: Vm,
    pub state: JitState,
    pub policy: Option<PolicyId>,
    pub ports: Vec<PortRule>,
    pub requests_last_7_days: u32,
    pub last_access: Option<OffsetDateTime>,
    pub last_user: Option<String>,
    /// Grants open now, with who asked for them.
    pub live: Vec<(String, Grant)>,
    /// What the machine's agent must enforce now.
    pub desired: DesiredState,
}
