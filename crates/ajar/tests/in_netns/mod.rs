//! The `ajar` binary run inside a lab namespace, for the end-to-end tests: the server, an agent and the
//! CLI against that server, with their files in one directory (`server/`, `agent/`, `server.log`,
//! `agent.log`). Every wait is bounded.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use ajar_lab::Netns;

/// How long the server may take to say it is listening.
pub const START: Duration = Duration::from_secs(30);
/// How long one CLI call may take.
const CLI_LIMIT: Duration = Duration::from_secs(30);

/// `ajar`, to be run inside `ns`.
pub fn ajar(ns: &Netns) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_ajar")]);
    cmd
}

pub fn log_file(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap()
}

pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("server")
}

pub fn bootstrap(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data_dir(dir).join("bootstrap.json")).unwrap()).unwrap()
}

/// Starts `ajar serve` inside `ns` on `listen` and waits for its `listening on` line; returns the server
/// and its URL, which bootstrap.json names too.
pub fn serve(ns: &Netns, dir: &Path, listen: &str) -> (Child, String) {
    let mut child = ajar(ns)
        .args(["serve", "--data-dir"])
        .arg(data_dir(dir))
        .args(["--listen", listen])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(&dir.join("server.log")))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let url = ajar_lab::await_line(stdout, START, |line| line.strip_prefix("listening on ").map(|u| u.trim().to_owned()));
    let url = url.unwrap_or_else(|| panic!("the server did not say `listening on` within {START:?}"));
    assert_eq!(bootstrap(dir)["url"], url.as_str(), "bootstrap.json names the server's URL");
    (child, url)
}

/// Starts `ajar agent` inside `ns` against the server at `url`, enrolling with the join token the first
/// time, with `args` added (its name, `--gateway …`).
pub fn spawn_agent(ns: &Netns, dir: &Path, url: &str, args: &[&str]) -> Child {
    let b = bootstrap(dir);
    ajar(ns)
        .args(["agent", "--server", url, "--ca", b["ca"].as_str().unwrap(), "--join-token", b["joinToken"].as_str().unwrap()])
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("agent"))
        .stdin(Stdio::null())
        .stdout(log_file(&dir.join("agent.log")))
        .stderr(log_file(&dir.join("agent.log")))
        .spawn()
        .unwrap()
}

/// Runs `ajar ARGS` inside `ns` against the server; returns (exit code, stdout, stderr).
pub fn cli(ns: &Netns, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = ajar(ns);
    cmd.args(args).env("AJAR_BOOTSTRAP", data_dir(dir).join("bootstrap.json"));
    let out = ajar_lab::run_bounded(&mut cmd, None, CLI_LIMIT).unwrap_or_else(|e| panic!("ajar {args:?}: {e}"));
    (out.code.unwrap_or(-1), out.stdout, out.stderr)
}

/// `ajar ARGS --output json`, which must succeed; its JSON.
pub fn cli_json(ns: &Netns, dir: &Path, args: &[&str]) -> Value {
    let all: Vec<&str> = args.iter().copied().chain(["--output", "json"]).collect();
    let (code, stdout, stderr) = cli(ns, dir, &all);
    assert_eq!(code, 0, "ajar {all:?}\nstdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("ajar {all:?}: not JSON ({e}): {stdout}"))
}

/// The last lines of the server's and the agent's logs, for a failure's message.
pub fn logs(dir: &Path) -> String {
    let mut text = String::new();
    for name in ["server.log", "agent.log"] {
        let log = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        text.push_str(&format!("--- {name} (last lines)\n"));
        for line in tail.into_iter().rev() {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}
