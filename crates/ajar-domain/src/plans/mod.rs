//! What each operation decides, before anything is stored.
//!
//! A store reads what a decision needs (the stored policy, the live grants it touches, who holds a
//! machine), hands it to one of these functions, and applies the plan it returns in one transaction,
//! or refuses with the [`Problem`](crate::Problem) and changes nothing. So every backend decides alike:
//! the rules live here, the backends only read and write.

pub mod access_request;
pub mod gateway_assignment;
pub mod identity;
pub mod policy_write;

use time::OffsetDateTime;

use crate::ids::{PolicyId, VmId};
use crate::initiate::{Grant, StatusReason};

/// A live grant as the store holds it: what a decision about it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveGrant {
    pub request_id: String,
    pub requestor: String,
    /// The policy the grant was made under.
    pub policy: PolicyId,
    pub start: OffsetDateTime,
    pub vm: VmId,
    pub grant: Grant,
}

impl LiveGrant {
    /// This grant, ended now for `reason`.
    pub fn end(&self, reason: StatusReason) -> GrantEnd {
        GrantEnd { request_id: self.request_id.clone(), vm: self.vm.clone(), port: self.grant.number, reason }
    }
}

/// A live grant to end now, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEnd {
    pub request_id: String,
    pub vm: VmId,
    pub port: u16,
    pub reason: StatusReason,
}

/// What a conditional write expects to be stored (HTTP `If-Match`, `If-None-Match: *`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Some version (`If-Match: *`).
    Exists,
    /// One of these versions, by entity tag.
    OneOf(Vec<String>),
    /// Nothing (`If-None-Match: *`): the write creates.
    Absent,
}

/// Refuses a write whose precondition does not hold for what is stored now (`current`: the stored
/// version's entity tag, `None` if nothing is stored). Without a precondition every write goes ahead,
/// as on Azure.
pub fn check_precondition(precondition: Option<&Precondition>, current: Option<&str>, what: &str) -> Result<(), crate::Problem> {
    let refuse = |message: String| Err(crate::Problem::new(crate::ErrorCode::PreconditionFailed, None, message));
    match (precondition, current) {
        (None, _) | (Some(Precondition::Exists), Some(_)) | (Some(Precondition::Absent), None) => Ok(()),
        (Some(Precondition::OneOf(tags)), Some(current)) if tags.iter().any(|t| t == current) => Ok(()),
        (Some(Precondition::Absent), Some(_)) => refuse(format!("{what} exists already (If-None-Match: *)")),
        (Some(_), None) => refuse(format!("{what} does not exist, so it cannot match If-Match; create it without If-Match")),
        (Some(Precondition::OneOf(_)), Some(current)) => refuse(format!(
            "{what} was changed since the version If-Match names (its etag now is \"{current}\", see GET); \
             read it again, apply your change to what it holds now, and send it with the new etag"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions() {
        let tags = |t: &[&str]| Precondition::OneOf(t.iter().map(|s| s.to_string()).collect());
        for (precondition, current) in [
            (None, None),
            (None, Some("a")),
            (Some(Precondition::Exists), Some("a")),
            (Some(tags(&["b", "a"])), Some("a")),
            (Some(Precondition::Absent), None),
        ] {
            assert!(check_precondition(precondition.as_ref(), current, "x").is_ok(), "{precondition:?} {current:?}");
        }
        for (precondition, current) in [
            (Precondition::Exists, None),
            (tags(&["a"]), None),
            (tags(&["b"]), Some("a")),
            (tags(&[]), Some("a")),
            (Precondition::Absent, Some("a")),
        ] {
            let p = check_precondition(Some(&precondition), current, "x").unwrap_err();
            assert_eq!(p.code, crate::ErrorCode::PreconditionFailed, "{precondition:?} {current:?}");
        }
    }
}
