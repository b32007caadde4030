//! Integration tests of the control plane: a real `ajar serve` over HTTPS on a
//! real SQLite file, one per test; the dashboard also in headless Chromium (`browser.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The browser scenarios are long `json!` literals.
#![recursion_limit = "256"]

mod access;
mod agents;
mod authorization;
mod browser;
mod case_insensitive;
mod cli;
mod common;
mod contract;
mod dashboard;
mod durability;
mod exhaustion;
mod gateways;
mod lifecycle;
mod oidc;
mod schemathesis;
mod validation;
mod writes;
