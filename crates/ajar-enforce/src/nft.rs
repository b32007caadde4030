//! Applying and reading `inet ajar` (I/O).
//!
//! The batch is the `nftables` crate's typed JSON model. The agent runs it in-process through libnftables
//! (see [`crate::libnft`]) when the library loads, and otherwise as `nft -j -f -`, as the crate's
//! `helper::apply_ruleset` does. We spawn nft ourselves (see [`crate::command`]) rather than call the helper
//! because the helper does not capture nft's stderr (the error would lose nft's explanation) and always puts
//! `-j` first, which rules out running nft through a prefix such as `ip netns exec NS nft` (how the tests
//! drive a namespace).

use std::ffi::OsString;

use crate::change;
use crate::command::Tool;
use crate::desired::DesiredState;
use crate::error::EnforceError;
use crate::libnft::Libnft;
use crate::observed::ObservedTable;
use crate::ruleset::{self, TABLE};

/// Where enforcement happens.
pub trait Firewall {
    /// Makes the kernel's `inet ajar` exactly `desired`, in one atomic transaction. On error the previous
    /// table is unchanged.
    fn apply(&self, desired: &DesiredState) -> Result<(), EnforceError>;
    /// Goes from `from` (what was applied last) to `to`, in one atomic transaction. Both must carry timeouts
    /// computed at the same instant (see [`crate::change`]). Implementations may touch only the elements that
    /// changed; this default re-applies the whole table, which is always correct.
    fn apply_change(&self, from: &DesiredState, to: &DesiredState) -> Result<Applied, EnforceError> {
        let _ = from;
        self.apply(to)?;
        Ok(Applied::Full { why: "this firewall has no incremental path".into() })
    }
    /// Ok if the kernel can be reached through this firewall (with the privileges we have); otherwise why
    /// not, for "Unsupported: nftables unusable".
    fn usable(&self) -> Result<(), String>;
    /// Reads `inet ajar` (and nothing else); `Ok(None)` if it does not exist.
    fn read_own(&self) -> Result<Option<ObservedTable>, EnforceError>;
    /// Deletes `inet ajar` if it exists. No other table is touched.
    fn remove(&self) -> Result<(), EnforceError>;
}

/// How [`Firewall::apply_change`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Nothing to change; nft was not run.
    Unchanged,
    /// Only the changed elements, in one transaction. Counted as normalised elements: a mapping element is
    /// one, though it is written to both maps of its family.
    Incremental { deleted: usize, added: usize },
    /// The whole table was replaced, for the reason given.
    Full { why: String },
}

/// [`Firewall`] through nftables' JSON interface, in-process or by the `nft` binary.
#[derive(Debug, Clone)]
pub struct NftFirewall {
    nft: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Library(Libnft),
    /// With why [`NftFirewall::new`] did not use the library, for the operator.
    Binary(Tool, Option<String>),
}

impl Default for NftFirewall {
    fn default() -> Self {
        Self::new()
    }
}

impl NftFirewall {
    /// libnftables in this process (and so in its network namespace) if it loads, else `nft` from `PATH`.
    pub fn new() -> Self {
        match Libnft::new() {
            Ok(library) => NftFirewall { nft: Backend::Library(library) },
            Err(why) => NftFirewall { nft: Backend::Binary(Tool::new("nft", Vec::new()), Some(why)) },
        }
    }

    /// nft run as `program prefix_args… <nft arguments>`, e.g. `("ip", ["netns", "exec", "ns1", "nft"])`
    /// to act inside a network namespace.
    pub fn with_command<I, S>(program: impl Into<OsString>, prefix_args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let nft = Tool::new(program, prefix_args.into_iter().map(Into::into).collect());
        NftFirewall { nft: Backend::Binary(nft, None) }
    }

    /// How nftables is reached: `libnftables`, or the nft command line (and why not the library).
    pub fn describe(&self) -> String {
        match &self.nft {
            Backend::Library(_) => crate::libnft::NAME.into(),
            Backend::Binary(tool, None) => tool.describe(),
            Backend::Binary(tool, Some(why)) => format!("{} ({why})", tool.describe()),
        }
    }

    /// Runs a raw JSON batch (what `nft -j -f -` reads). Public for tests and tooling; the agent applies only
    /// what [`ruleset`] builds.
    pub fn apply_json(&self, action: &str, json: &str) -> Result<(), EnforceError> {
        match &self.nft {
            Backend::Library(library) => library.run(action, json).map(|_| ()),
            Backend::Binary(nft, _) => nft.run(action, &["-j", "-f", "-"], Some(json)).map(|_| ()),
        }
    }
}

impl Firewall for NftFirewall {
    fn apply(&self, desired: &DesiredState) -> Result<(), EnforceError> {
        let json = ruleset::to_json(ruleset::build(desired));
        self.apply_json("applying the desired state to table inet ajar", &json)
    }

    /// Incremental when only grants or mappings changed (see [`change::full_apply_reason`]); a full apply
    /// otherwise, and also when the
    /// incremental batch fails for any reason (the table is missing or was changed by hand, the kernel already
    /// expired an element being deleted, ...): the failed batch changed nothing, and a full apply is always
    /// right.
    fn apply_change(&self, from: &DesiredState, to: &DesiredState) -> Result<Applied, EnforceError> {
        if let Some(why) = change::full_apply_reason(from, to) {
            self.apply(to)?;
            return Ok(Applied::Full { why: why.into() });
        }
        let Some(diff) = change::diff(from, to) else {
            self.apply(to)?;
            return Ok(Applied::Full { why: "no element diff".into() });
        };
        if diff.is_empty() {
            return Ok(Applied::Unchanged);
        }
        let (deleted, added) = (diff.deletes.len() + diff.map_deletes.len(), diff.adds.len() + diff.map_adds.len());
        let json = ruleset::to_json(change::build(&diff));
        match self.apply_json("changing the grants and mappings in table inet ajar", &json) {
            Ok(()) => Ok(Applied::Incremental { deleted, added }),
            Err(e) => {
                self.apply(to)?;
                Ok(Applied::Full { why: e.to_string() })
            }
        }
    }

    fn usable(&self) -> Result<(), String> {
        if let Backend::Binary(nft, _) = &self.nft {
            nft.run("running nft --version", &["--version"], None).map_err(|e| e.to_string())?;
        }
        self.read_own().map(|_| ()).map_err(|e| e.to_string())
    }

    fn read_own(&self) -> Result<Option<ObservedTable>, EnforceError> {
        const ACTION: &str = "listing table inet ajar";
        let listed = match &self.nft {
            Backend::Library(library) => library.run(ACTION, &format!("list table inet {TABLE}")),
            Backend::Binary(nft, _) => nft.run(ACTION, &["-j", "list", "table", "inet", TABLE], None),
        };
        match listed {
            Ok(json) => ObservedTable::parse(&json).map(Some),
            Err(EnforceError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove(&self) -> Result<(), EnforceError> {
        self.apply_json("removing table inet ajar", &ruleset::to_json(ruleset::build_remove()))
    }
}
