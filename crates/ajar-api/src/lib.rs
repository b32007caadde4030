//! The wire formats of ajar's API, and the only crate that knows them: the ARM
//! JSON of `Microsoft.Security/jitNetworkAccessPolicies` (api-version
//! 2020-01-01) and of the VM inventory, ajar's own JSON under `/ajar/v1`, the
//! activity log's CSV, the OpenAPI document, and `bootstrap.json`. Request
//! bodies are one type each, which the server parses and the client sends.
//! Everything here converts between bytes and domain types; no I/O.

pub mod activity;
pub mod agent;
pub mod ajar_v1;
pub mod authorization;
pub mod bootstrap;
pub mod compute;
pub mod error;
pub mod jit;
pub mod openapi;
pub mod principals;
pub mod subscriptions;
pub mod wire_time;

pub use error::{ApiError, CloudError, CloudErrorBody, render_target};

/// The api-version of the JIT API (and of everything else ajar serves, except
/// `Microsoft.Authorization`, which has [`authorization::API_VERSION`]).
pub const API_VERSION: &str = "2020-01-01";

/// Parses a JSON body, naming the offending field on failure.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let target = if path == "." || path.is_empty() { None } else { Some(path) };
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON: {inner}")
        } else {
            format!("the body does not have the expected shape: {inner}")
        };
        ApiError::new(400, "InvalidRequestContent", message).with_target(target)
    })
}
