//! Grants over time: which ports on which machines were open, to whom, from when until when. What a
//! timeline of access shows an auditor.

use time::OffsetDateTime;

use crate::ids::VmId;
use crate::initiate::{Grant, GrantStatus, StatusReason};

/// One grant of one request, with when it started and, if it was revoked early, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSpan {
    pub request_id: String,
    pub requestor: String,
    pub justification: Option<String>,
    pub start: OffsetDateTime,
    pub vm: VmId,
    /// As stored: its planned end, status and reason.
    pub grant: Grant,
    /// When it was revoked before its end (by its requestor, an administrator, a newer request or a
    /// policy change). `None` if it ran to its end, is still live, or was revoked before ajar kept the time.
    pub revoked: Option<OffsetDateTime>,
}

/// How a grant's access ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanState {
    /// Open now.
    Live,
    Expired,
    Revoked,
    /// Replaced by a newer request for the same machine and port.
    Superseded,
}

impl SpanState {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanState::Live => "live",
            SpanState::Expired => "expired",
            SpanState::Revoked => "revoked",
            SpanState::Superseded => "superseded",
        }
    }
}

impl GrantSpan {
    /// When access ended: the revocation time if it came first, else the planned end. A grant
    /// revoked early whose revocation time was not kept is taken to have run to its end.
    pub fn closed(&self) -> OffsetDateTime {
        match self.revoked {
            Some(t) if t < self.grant.end => t.max(self.start),
            _ => self.grant.end,
        }
    }

    /// Its state as of `now`: the clock, not the bookkeeping, decides that a live grant has expired.
    pub fn state_at(&self, now: OffsetDateTime) -> SpanState {
        match self.grant.status_at(now) {
            (GrantStatus::Initiated, _) => SpanState::Live,
            (GrantStatus::Revoked, StatusReason::Expired) => SpanState::Expired,
            (GrantStatus::Revoked, StatusReason::UserRequested) => SpanState::Revoked,
            (GrantStatus::Revoked, StatusReason::NewerRequestInitiated) => SpanState::Superseded,
        }
    }

    /// Where the access it gave ends as of `now`: `now` for a live grant (its end is still to come
    /// and may yet be brought forward), else when it closed.
    pub fn until(&self, now: OffsetDateTime) -> OffsetDateTime {
        match self.state_at(now) {
            SpanState::Live => now,
            _ => self.closed(),
        }
    }
}

/// The grants a window of time saw, newest first; `cut` when there were more than asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantHistory {
    pub spans: Vec<GrantSpan>,
    pub cut: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sources;
    use crate::policy::Protocol;
    use time::macros::datetime;

    fn span(status: GrantStatus, reason: StatusReason, revoked: Option<OffsetDateTime>) -> GrantSpan {
        GrantSpan {
            request_id: "r".into(),
            requestor: "alice".into(),
            justification: None,
            start: datetime!(2026-01-01 10:00 UTC),
            vm: "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
                .parse()
                .unwrap(),
            grant: Grant {
                number: 22,
                protocol: Protocol::Tcp,
                sources: Sources::One("*".parse().unwrap()),
                end: datetime!(2026-01-01 12:00 UTC),
                status,
                reason,
                mapped_port: None,
            },
            revoked,
        }
    }

    #[test]
    fn a_span_ends_at_its_revocation_its_end_or_now() {
        let at = |h: u8| datetime!(2026-01-01 00:00 UTC) + time::Duration::hours(h.into());
        let live = span(GrantStatus::Initiated, StatusReason::UserRequested, None);
        assert_eq!((live.state_at(at(11)), live.until(at(11))), (SpanState::Live, at(11)));
        assert_eq!((live.state_at(at(13)), live.until(at(13))), (SpanState::Expired, at(12)), "expired by the clock");
        let revoked = span(GrantStatus::Revoked, StatusReason::UserRequested, Some(at(11)));
        assert_eq!((revoked.state_at(at(13)), revoked.until(at(13))), (SpanState::Revoked, at(11)));
        let superseded = span(GrantStatus::Revoked, StatusReason::NewerRequestInitiated, Some(at(10)));
        assert_eq!((superseded.state_at(at(13)), superseded.closed()), (SpanState::Superseded, at(10)));
        let unknown = span(GrantStatus::Revoked, StatusReason::UserRequested, None);
        assert_eq!(unknown.closed(), at(12), "no revocation time kept: its planned end");
        let late = span(GrantStatus::Revoked, StatusReason::Expired, Some(at(14)));
        assert_eq!(late.closed(), at(12), "never past its end");
    }
}
