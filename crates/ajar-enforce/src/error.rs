use std::io;

/// Why enforcing failed. Each variant says what was being done; nft's own words are kept.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("{action}: could not run `{program}`: {source}")]
    Spawn {
        action: String,
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{action}: nft failed ({status}): {stderr}")]
    Nft { action: String, status: String, stderr: String },
    #[error("{action}: unexpected nft output: {detail}")]
    Output { action: String, detail: String },
}
