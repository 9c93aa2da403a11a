//! `cargo xtask abort` as an operator runs it: the real xtask binary against the local stack
//! deployed to the extended emulator, with the real state machine and Lambda binaries. An
//! abort with `--cancel` and one with `--rollback` leave no refresh running, release the lock
//! and show Aborted with who and why; `rollout --resume` then finishes the rollout. Bad input
//! (nothing to abort or approve, a rollout that ended, `--cancel` with `--rollback`) is
//! refused with a clear message and a non-zero exit, changing nothing. Every wait is bounded.

#[path = "support/cli.rs"]
mod cli;
mod e2e;
#[path = "support/refresh.rs"]
mod refresh;

use std::time::Duration;

use asg_refresh_tests::Moto;
use cli::{assert_ok, assert_refused, status_json, text, xtask};
use e2e::*;

const NEW_AMI: &str = "ami-0fedcba9876543210";
const FLEET: [&str; 5] = ["ab-a", "ab-b", "ab-c", "ab-d", "ab-e"];

/// The statuses of every instance refresh of the fleet, as the emulator describes them.
async fn refresh_statuses(config: &aws_config::SdkConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for asg in FLEET {
        for refresh in refresh::refreshes(config, asg, None).await {
            let status = refresh.status().map(|s| s.as_str()).unwrap_or("?");
            out.push((asg.to_string(), status.to_string()));
        }
    }
    out
}

/// Starts a rollout of 60 s refreshes (window of 3) and waits until three of them run.
async fn rollout_in_flight(moto: &Moto, config: &aws_config::SdkConfig, id: &str) {
    let fleet: Vec<(&str, &str)> = FLEET.iter().map(|a| (*a, "60")).collect();
    demo_fleet(config, &fleet).await;
    deploy_local(moto, None);
    let started = xtask(moto, &["rollout", "--ami", NEW_AMI, "--id", id]);
    assert_ok(&started, moto);
    let three_run = || async {
        let statuses = refresh_statuses(config).await;
        match statuses.iter().filter(|(_, s)| s == "InProgress").count() {
            3 => Ok(()),
            _ => Err(statuses),
        }
    };
    poll(
        Duration::from_secs(120),
        Duration::from_millis(250),
        three_run,
        |statuses| {
            format!(
                "three refreshes never ran at once: {statuses:?}\nlambda logs:\n{}",
                moto.lambda_logs()
            )
        },
    )
    .await;
}

/// Aborts `id` with `flag`; checks that nothing runs, the lock is free, the execution is
/// stopped and `status` says Aborted with who and why; then resumes it with 1 s refreshes
/// and checks that every group ends on the new AMI. Returns the abort's table.
async fn abort_then_resume(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    id: &str,
    flag: &str,
    ended_as: &str,
) {
    let aborted = xtask(moto, &["abort", flag, "--reason", "canary errors up 3%"]);
    assert_ok(&aborted, moto);
    let statuses = refresh_statuses(config).await;
    assert_eq!(
        statuses.len(),
        3,
        "three refreshes were started: {statuses:?}"
    );
    for (asg, status) in &statuses {
        assert_eq!(status, ended_as, "{asg}: {statuses:?}");
    }
    assert_eq!(lock_holder(config).await, None, "the lock is released");

    // Nothing starts afterwards, and the rollout stays aborted.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        refresh_statuses(config).await,
        statuses,
        "a refresh started after the abort"
    );
    let status = status_json(moto, Some(id));
    // AWS ends a stopped execution ABORTED (tests/emulator/stepfunctions_abort.py).
    let execution = &status["execution"];
    assert_eq!(execution["status"], "ABORTED", "{status:#}");
    assert_eq!(status["summary"]["status"], "Aborted", "{status:#}");
    assert_eq!(status["abort"]["by"], "test-operator", "{status:#}");
    assert_eq!(
        status["abort"]["reason"], "canary errors up 3%",
        "{status:#}"
    );
    assert_eq!(lock_holder(config).await, None, "the lock stays released");
    let shown = xtask(moto, &["status", "--rollout", id]);
    assert_ok(&shown, moto);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("aborted by test-operator") && shown.contains("canary errors up 3%"),
        "{shown}"
    );

    for asg in FLEET {
        set_tag(config, asg, "emulator:refresh-seconds", "1").await;
    }
    let resumed = xtask(
        moto,
        &["rollout", "--resume", id, "--wait", "--interval", "1"],
    );
    assert_ok(&resumed, moto);
    let status = status_json(moto, Some(id));
    assert_eq!(status["execution"]["status"], "SUCCEEDED", "{status:#}");
    for asg in FLEET {
        assert_eq!(
            group_image(config, asg).await.as_deref(),
            Some(NEW_AMI),
            "{asg}: {status:#}"
        );
    }
    assert!(
        status["abort"].is_null() || status["summary"]["status"] == "Succeeded",
        "{status:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_cancels_what_is_in_flight_and_resume_finishes_the_rollout() {
    let (moto, config) = start_emulator().await;
    rollout_in_flight(&moto, &config, "r-cancel").await;
    abort_then_resume(&moto, &config, "r-cancel", "--cancel", "Cancelled").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_rolls_back_what_is_in_flight_and_resume_finishes_the_rollout() {
    let (moto, config) = start_emulator().await;
    rollout_in_flight(&moto, &config, "r-rollback").await;
    abort_then_resume(
        &moto,
        &config,
        "r-rollback",
        "--rollback",
        "RollbackSuccessful",
    )
    .await;
}

/// Nothing running: abort and approve refuse; a rollout that ended cannot be aborted or
/// approved and keeps its summary; `--cancel` with `--rollback` is a usage error.
#[tokio::test(flavor = "multi_thread")]
async fn abort_and_approve_refuse_when_nothing_runs() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("ab-done", "1")]).await;
    deploy_local(&moto, None);

    let both = xtask(&moto, &["abort", "--cancel", "--rollback"]);
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));
    assert_refused(&both, "cannot be used with");

    assert_refused(
        &xtask(&moto, &["abort"]),
        "no rollout is running on stack `local`: nothing to abort",
    );
    assert_refused(
        &xtask(&moto, &["approve"]),
        "no rollout is running on stack `local`: nothing to approve",
    );

    let done = xtask(
        &moto,
        &[
            "rollout",
            "--ami",
            NEW_AMI,
            "--id",
            "r-done",
            "--wait",
            "--interval",
            "1",
        ],
    );
    assert_ok(&done, &moto);
    let before = status_json(&moto, Some("r-done"));
    assert_refused(
        &xtask(&moto, &["abort", "--rollout", "r-done", "--rollback"]),
        "rollout r-done is not running on stack `local`: nothing to abort",
    );
    assert_refused(
        &xtask(&moto, &["approve", "--rollout", "r-done"]),
        "rollout r-done is not waiting for an approval",
    );
    assert_refused(
        &xtask(&moto, &["abort", "--rollout", "r-unknown"]),
        "rollout r-unknown is not running on stack `local`",
    );
    let after = status_json(&moto, Some("r-done"));
    assert_eq!(after["summary"], before["summary"], "the summary changed");
    assert!(after["abort"].is_null(), "{after:#}");
    let (intervals, _) = refresh_intervals(&moto);
    assert_eq!(intervals["ab-done"].len(), 1, "{intervals:?}");
    assert_eq!(lock_holder(&config).await, None);
}
