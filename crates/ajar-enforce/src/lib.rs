//! The host agent's enforcement: which ports are JIT-protected and which grants are live, turned into one
//! nftables table, `inet ajar`, applied atomically. On a gateway the same table also translates each live
//! mapping (`public:mapped_port` → `machine:port`, for the grant's sources) and keeps the machines' served
//! ports closed to everything else (see the gateway section of [`ruleset`]).
//!
//! - [`desired`]: what to enforce, as data (pure).
//! - [`normalize`]: grants and mappings → non-overlapping set and map elements, longest timeout wins (pure).
//! - [`ruleset`]: the table as one `nftables` batch (pure).
//! - [`change`]: one state to the next as element deletes and adds only, when the protected ports, public
//!   addresses and served ports are the same (pure).
//! - [`observed`]: the table as read back, and [`drifted`] (pure).
//! - [`nft`]: the [`Firewall`] trait and [`NftFirewall`], which runs the JSON batches through libnftables
//!   in-process, or `nft -j` where the library does not load (I/O).
//! - [`conntrack`]: which tracked connections a revoke cuts (pure), and [`Conntrack`], which cuts them (I/O).
//!
//! Invariants: ajar names no nftables table but `inet ajar`; expiry is enforced by the kernel through
//! per-element timeouts, not by a timer in the agent; established connections outlive their grant
//! (`ct state established,related accept`, and on a gateway conntrack's translation), as with Azure's NSG
//! rules.

pub mod change;
mod command;
pub mod conntrack;
pub mod desired;
mod error;
mod libnft;
pub mod nft;
pub mod normalize;
pub mod observed;
pub mod ruleset;

pub use conntrack::{Conntrack, Cut};
pub use desired::{DesiredState, Grant, L4, Mapping, Protected, Proto, ServedPort, Source};
pub use error::EnforceError;
pub use nft::{Applied, Firewall, NftFirewall};
pub use observed::{ObservedTable, drift_reasons, drifted};
