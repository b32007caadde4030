use std::io;

/// Why enforcing failed. Each variant says what was being done; the tool's own words are kept.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("{action}: could not run `{program}`: {source}")]
    Spawn {
        action: String,
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{action}: `{program}` failed ({status}): {stderr}")]
    Failed { action: String, program: String, status: String, stderr: String },
    #[error("{action}: unexpected output: {detail}")]
    Output { action: String, detail: String },
}
