//! The `xtask` binary as the xtask test binaries run it (each declares `mod support;`): one
//! home for the command's environment and for the checks on how a run ended.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use asg_refresh_tests::workspace_root;
use aws_sdk_iam::config::Credentials;

/// The keys the emulator accepts from anyone.
pub fn test_credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "test")
}

/// `xtask <args>` from the workspace root with stdin not a terminal, and with an environment
/// that is only the caller's: the steps every command below shares.
fn bare(args: &[impl AsRef<OsStr>]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null());
    command
}

/// `xtask <args>` signing with the emulator's test keys (see [`xtask_signed`]).
pub fn xtask(args: &[impl AsRef<OsStr>]) -> Command {
    xtask_signed(args, &test_credentials())
}

/// `xtask <args>` signing with `credentials` (their session token too, when they have one),
/// and with none of the caller's AWS profile, endpoint or session token.
pub fn xtask_signed(args: &[impl AsRef<OsStr>], credentials: &Credentials) -> Command {
    let mut command = bare(args);
    command
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL");
    match credentials.session_token() {
        Some(token) => command.env("AWS_SESSION_TOKEN", token),
        None => command.env_remove("AWS_SESSION_TOKEN"),
    };
    command
}

/// `xtask <args>` with no AWS credentials wherever the SDK looks for them: PATH is the only
/// variable kept, HOME is `home`, the config and credentials files do not exist and instance
/// metadata is off.
pub fn xtask_without_credentials(args: &[impl AsRef<OsStr>], home: &Path) -> Command {
    let mut command = bare(args);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

/// Runs `command` to its end.
pub fn run(command: &mut Command) -> Output {
    command.output().expect("run xtask")
}

/// A run's standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts that the run succeeded, showing what it printed if not.
#[track_caller]
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "xtask failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The standard error of a run that must have failed.
#[track_caller]
pub fn failure_stderr(output: &Output) -> String {
    assert!(!output.status.success(), "the command succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that what began at `started` ended within `limit` seconds; `context` (what the
/// run printed, say) is shown if it did not.
#[track_caller]
pub fn assert_quick(started: Instant, limit: u64, context: &str) {
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(limit),
        "took {took:?}, more than {limit} s:\n{context}"
    );
}
