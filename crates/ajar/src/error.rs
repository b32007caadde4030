//! The one error type the CLI adds: bad usage found after clap has parsed the
//! flags (a missing setting, a short name without a resource group, ...).
//! It exits 2, like clap's own errors; everything else exits 1.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
