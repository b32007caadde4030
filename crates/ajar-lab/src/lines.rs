//! Waiting for a line from a child process's output.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Reads `output` to its end on a thread of its own (so the child never blocks
/// on a full pipe) and returns the first line `pick` turns into a value, or
/// `None` if none comes within `limit`.
pub fn await_line<T: Send + 'static>(
    output: impl Read + Send + 'static,
    limit: Duration,
    pick: impl Fn(&str) -> Option<T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut found = false;
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if !found && let Some(value) = pick(&line) {
                found = true;
                let _ = tx.send(value);
            }
        }
    });
    rx.recv_timeout(limit).ok()
}
