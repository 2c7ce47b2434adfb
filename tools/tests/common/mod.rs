//! Running the `quiver` binary from the tools' tests.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `quiver args…` (no backtraces, so messages are what a user sees).
pub fn quiver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver")).args(args).env("RUST_BACKTRACE", "0").output().expect("run quiver")
}

/// Runs a command that must succeed and returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let o = quiver(args);
    assert!(o.status.success(), "quiver {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}
