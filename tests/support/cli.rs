//! `cargo xtask` as an operator runs it against the local stack on the extended emulator,
//! and the checks on what it printed: one home for the CLI test binaries (each includes
//! this file with `#[path]`, next to `mod e2e`).

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use asg_refresh_tests::{workspace_root, Moto};
use serde_json::Value;

use crate::e2e::{debug_binary, EXECUTION_DEADLINE};

/// `xtask <args> --env local --endpoint-url <emulator>` with the deployer's keys and stdin
/// not a terminal.
pub fn xtask_command(moto: &Moto, args: &[&str]) -> Command {
    let mut command = Command::new(debug_binary("xtask", "xtask"));
    command
        .args(args)
        .args(["--env", "local", "--endpoint-url", &moto.endpoint()])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("USER", "test-operator")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_SESSION_TOKEN")
        .current_dir(workspace_root())
        .stdin(Stdio::null());
    command
}

/// Runs [`xtask_command`] to its end.
pub fn xtask(moto: &Moto, args: &[&str]) -> Output {
    xtask_command(moto, args).output().expect("run xtask")
}

pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
pub fn assert_ok(output: &Output, moto: &Moto) {
    assert!(
        output.status.success(),
        "{}\nlambda logs:\n{}",
        text(output),
        moto.lambda_logs()
    );
}

#[track_caller]
pub fn assert_refused(output: &Output, says: &str) {
    assert!(
        !output.status.success(),
        "expected a refusal: {}",
        text(output)
    );
    assert!(
        stderr(output).contains(says),
        "stderr should say `{says}`: {}",
        text(output)
    );
}

/// `status --json` of a rollout (the newest when `rollout` is None).
pub fn status_json(moto: &Moto, rollout: Option<&str>) -> Value {
    let mut args = vec!["status", "--json"];
    if let Some(id) = rollout {
        args.extend(["--rollout", id]);
    }
    let output = xtask(moto, &args);
    assert_ok(&output, moto);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", text(&output)))
}

/// Reads `status --json` (bounded) until `done` holds.
pub fn wait_status(moto: &Moto, rollout: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + EXECUTION_DEADLINE;
    loop {
        let status = status_json(moto, Some(rollout));
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < until, "rollout {rollout}: {what} did not happen within {EXECUTION_DEADLINE:?}: {status:#}\nlambda logs:\n{}", moto.lambda_logs());
        std::thread::sleep(Duration::from_millis(500));
    }
}
