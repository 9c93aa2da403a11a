//! `cargo xtask` as an operator runs it against the local stack (or a variant of it) on the
//! extended emulator, and the checks on what it printed: one home for the CLI test binaries
//! (each includes this file with `#[path]`, next to `mod e2e`).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use asg_refresh_tests::{workspace_root, Moto};
use serde_json::Value;

use crate::e2e::{debug_binary, EXECUTION_DEADLINE};

/// The stack a command is run on: envs/local.toml, or a variant of it written by the test.
#[derive(Debug, Clone, Copy)]
pub enum Stack<'a> {
    Local,
    Config(&'a Path),
}

impl<'a> Stack<'a> {
    /// The flags that name the stack.
    fn args(self) -> [&'a str; 2] {
        match self {
            Stack::Local => ["--env", "local"],
            Stack::Config(path) => ["--config", path.to_str().expect("utf-8 path")],
        }
    }
}

/// `xtask <args> --endpoint-url <emulator>` with the deployer's keys and stdin not a
/// terminal; `args` name the stack (`--env` or `--config`).
pub fn command(moto: &Moto, args: &[&str]) -> Command {
    let mut command = Command::new(debug_binary("xtask", "xtask"));
    command
        .args(args)
        .args(["--endpoint-url", &moto.endpoint()])
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

/// [`command`] on `stack`.
pub fn xtask_command_on(moto: &Moto, stack: Stack, args: &[&str]) -> Command {
    let mut command = command(moto, args);
    command.args(stack.args());
    command
}

/// [`command`] on the local stack (`--env local`).
pub fn xtask_command(moto: &Moto, args: &[&str]) -> Command {
    xtask_command_on(moto, Stack::Local, args)
}

/// Runs [`xtask_command_on`] to its end.
pub fn xtask_on(moto: &Moto, stack: Stack, args: &[&str]) -> Output {
    xtask_command_on(moto, stack, args)
        .output()
        .expect("run xtask")
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

/// Asserts that the command succeeded and said `says` on its standard output; returns that
/// output.
#[track_caller]
pub fn assert_prints(output: &Output, moto: &Moto, says: &str) -> String {
    assert_ok(output, moto);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        stdout.contains(says),
        "stdout should say `{says}`: {}",
        text(output)
    );
    stdout
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

/// `status --json` of a rollout (the newest when `rollout` is None) on the local stack.
pub fn status_json(moto: &Moto, rollout: Option<&str>) -> Value {
    status_json_on(moto, Stack::Local, rollout)
}

/// `status --json` of a rollout (the newest when `rollout` is None) on `stack`.
pub fn status_json_on(moto: &Moto, stack: Stack, rollout: Option<&str>) -> Value {
    let mut args = vec!["status", "--json"];
    if let Some(id) = rollout {
        args.extend(["--rollout", id]);
    }
    let output = xtask_on(moto, stack, &args);
    assert_ok(&output, moto);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", text(&output)))
}

/// Reads `status --json` of the local stack (bounded) until `done` holds.
pub fn wait_status(moto: &Moto, rollout: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_status_on(moto, Stack::Local, rollout, what, EXECUTION_DEADLINE, done)
}

/// Reads `status --json` of `stack` (at most `deadline`) until `done` holds.
pub fn wait_status_on(
    moto: &Moto,
    stack: Stack,
    rollout: &str,
    what: &str,
    deadline: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let until = Instant::now() + deadline;
    loop {
        let status = status_json_on(moto, stack, Some(rollout));
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < until, "rollout {rollout}: {what} did not happen within {deadline:?}: {status:#}\nlambda logs:\n{}", moto.lambda_logs());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The execution's status in a `status --json` (empty when it has none).
pub fn execution_status(status: &Value) -> &str {
    status["execution"]["status"].as_str().unwrap_or("")
}

/// Whether a `status --json` shows a wave awaiting approval.
pub fn awaiting(status: &Value) -> bool {
    status["approvals"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["status"] == "AwaitingApproval"))
}

/// The record of `asg` in a `status --json`.
pub fn asg<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["asgs"]
        .as_array()
        .and_then(|list| list.iter().find(|a| a["asg"] == name))
        .unwrap_or_else(|| panic!("{name} is not in the status: {status:#}"))
}
