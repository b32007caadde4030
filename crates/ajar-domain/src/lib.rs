//! ajar's pure core: the vocabulary of just-in-time access and its rules.
//!
//! Everything here is a value or a pure function. There is no I/O, no clock (the
//! caller passes `now`), and no serialisation of wire formats: the API crate turns
//! JSON into these types and back, the store persists them.

pub mod access;
pub mod activity;
pub mod agent;
pub mod duration;
pub mod gateway;
pub mod history;
pub mod ids;
pub mod initiate;
pub mod inventory;
pub mod plans;
pub mod policy;
pub mod prefix;
pub mod problem;
pub mod status;
#[cfg(test)]
mod test_ids;

pub use duration::AccessDuration;
pub use ids::{Location, PolicyId, PolicyName, ResourceGroup, SubscriptionId, VmId, VmName};
pub use prefix::{SourcePrefix, Sources};
pub use problem::{ErrorCode, Problem};
