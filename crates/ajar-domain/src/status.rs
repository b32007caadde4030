//! JIT status per machine: what the portal's three tabs show.

use time::{Date, Duration, OffsetDateTime, UtcOffset};

use crate::agent::DesiredState;
use crate::gateway::Gateway;
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
/// configured if something could enforce JIT on it (its host agent with working nftables, or a
/// gateway in front of it), else Unsupported.
pub fn jit_state(vm: &Vm, configured: bool) -> JitState {
    if configured {
        return JitState::Configured;
    }
    if vm.gateway.is_some() {
        return JitState::NotConfigured;
    }
    match &vm.enforcement {
        EnforcementPoint::None => JitState::Unsupported(UnsupportedReason::NoEnforcementPoint),
        EnforcementPoint::Agent(agent) if agent.nftables.is_err() => JitState::Unsupported(UnsupportedReason::NftablesUnusable),
        EnforcementPoint::Agent(_) => JitState::NotConfigured,
    }
}

/// How many days "approved requests in the last 7 days" covers: today (UTC) and the six before it.
pub const RECENT_DAYS: usize = 7;

/// The start of the window of "approved requests in the last 7 days": midnight UTC six days before
/// today, so the window is made of whole days that a chart can show one by one.
pub fn recent_window_start(now: OffsetDateTime) -> OffsetDateTime {
    let today = now.to_offset(UtcOffset::UTC).date().midnight().assume_utc();
    today - Duration::days(RECENT_DAYS as i64 - 1)
}

/// The days of the window, oldest first, each with a count of zero.
pub fn recent_days(now: OffsetDateTime) -> [(Date, u32); RECENT_DAYS] {
    let first = recent_window_start(now).date();
    std::array::from_fn(|i| (first + Duration::days(i as i64), 0))
}

/// Everything the status view shows about one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmJitStatus {
    pub vm: Vm,
    pub state: JitState,
    pub policy: Option<PolicyId>,
    pub ports: Vec<PortRule>,
    /// Approved requests per day (UTC) of the last [`RECENT_DAYS`], oldest first; the last is today.
    pub requests_by_day: [(Date, u32); RECENT_DAYS],
    pub last_access: Option<OffsetDateTime>,
    pub last_user: Option<String>,
    /// Grants open now, with who asked for them.
    pub live: Vec<(String, Grant)>,
    /// What the machine's agent must enforce now.
    pub desired: DesiredState,
    /// The gateway in front of the machine, if any: the path a requester connects through.
    pub gateway: Option<GatewayStatus>,
}

/// A machine's gateway as its status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayStatus {
    pub gateway: Gateway,
    /// The etag of what the gateway must enforce now, to compare with what its agent applied.
    pub desired_etag: String,
}

impl GatewayStatus {
    pub fn in_sync(&self) -> bool {
        self.gateway.agent.applied.as_deref() == Some(self.desired_etag.as_str())
    }
}

impl VmJitStatus {
    /// Approved requests of the last [`RECENT_DAYS`]: the sum of `requests_by_day`.
    pub fn requests_last_7_days(&self) -> u32 {
        self.requests_by_day.iter().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn the_recent_window_is_whole_utc_days_ending_today() {
        let now = datetime!(2026-03-10 00:30 +02:00);
        assert_eq!(recent_window_start(now), datetime!(2026-03-03 00:00 UTC), "22:30 UTC on the 9th: the 9th is today");
        let days = recent_days(now);
        assert_eq!(days[0], (date!(2026 - 03 - 03), 0));
        assert_eq!(days[RECENT_DAYS - 1], (date!(2026 - 03 - 09), 0));
        assert!(days.windows(2).all(|w| w[1].0 == w[0].0.next_day().unwrap()));
    }
}
