//! Running the kernel's command-line tools (`nft`, `conntrack`), directly or through a prefix such as
//! `ip netns exec NS` (how the tests drive a namespace). I/O.

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::EnforceError;

/// A program, run as `program prefix_args… <arguments>`.
#[derive(Debug, Clone)]
pub(crate) struct Tool {
    program: OsString,
    prefix_args: Vec<OsString>,
}

impl Tool {
    pub(crate) fn new(program: impl Into<OsString>, prefix_args: Vec<OsString>) -> Self {
        Tool { program: program.into(), prefix_args }
    }

    pub(crate) fn describe(&self) -> String {
        let mut parts = vec![self.program.to_string_lossy().into_owned()];
        parts.extend(self.prefix_args.iter().map(|a| a.to_string_lossy().into_owned()));
        parts.join(" ")
    }

    /// Runs the tool and returns its standard output; a non-zero exit is an error carrying its stderr.
    pub(crate) fn run(&self, action: &str, args: &[&str], stdin: Option<&str>) -> Result<String, EnforceError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix_args)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_err = |source| EnforceError::Spawn { action: action.into(), program: self.describe(), source };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        // Feed stdin from a thread so a large input cannot deadlock against the tool's output.
        let writer = match (stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => {
                let input = input.to_owned();
                Some(std::thread::spawn(move || pipe.write_all(input.as_bytes())))
            }
            _ => None,
        };
        let output = child.wait_with_output().map_err(spawn_err)?;
        let write_result = writer.map(|w| w.join());
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if !output.status.success() {
            return Err(EnforceError::Failed {
                action: action.into(),
                program: self.describe(),
                status: output.status.to_string(),
                stderr,
            });
        }
        match write_result {
            Some(Ok(Err(e))) => return Err(spawn_err(e)),
            Some(Err(_)) => return Err(EnforceError::Output { action: action.into(), detail: "stdin writer panicked".into() }),
            _ => {}
        }
        String::from_utf8(output.stdout).map_err(|e| EnforceError::Output { action: action.into(), detail: e.to_string() })
    }
}
