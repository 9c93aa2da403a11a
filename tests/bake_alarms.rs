//! The wave gate end to end (`[rollout] bake_minutes`, `wave_alarms`): the local stack deployed
//! to the extended emulator, its CloudWatch alarms set by the test (SetAlarmState), the real
//! state machine and Lambda binaries. The rollout bakes after each wave, goes on while the
//! alarms stay OK, and fails the wave whose alarm went to ALARM during the wave or its bake,
//! naming it; `cargo xtask rollout` refuses alarms that do not exist. Also the approval gate
//! `approval = "after-canary"`, which pauses once. Every wait is bounded.

#[path = "support/cli.rs"]
mod cli;
mod e2e;
#[path = "support/refresh.rs"]
mod refresh;

use std::path::{Path, PathBuf};
use std::time::Duration;

use asg_refresh_tests::Moto;
use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
use cli::{asg, assert_ok, assert_prints, awaiting, stderr, text, wait_status_on, xtask_on, Stack};
use e2e::*;

const NEW_AMI: &str = "ami-0fedcba9876543210";
/// The bake is `bake_minutes = 1`: a minute between a wave's end and the next wave.
const BAKE_SECONDS: f64 = 60.0;
/// Two bakes and three short waves, on a busy machine.
const GATE_DEADLINE: Duration = Duration::from_secs(360);

/// A metric alarm named `name`, in state OK (moto's initial state).
async fn alarm(config: &aws_config::SdkConfig, name: &str) {
    aws_sdk_cloudwatch::Client::new(config)
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("App")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
}

async fn set_alarm(config: &aws_config::SdkConfig, name: &str, state: StateValue) {
    aws_sdk_cloudwatch::Client::new(config)
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state)
        .state_reason("set by the test")
        .send()
        .await
        .expect("SetAlarmState");
}

/// Waits (bounded) until `asg`'s refresh has ended; returns its end (emulator seconds).
async fn refresh_ended(moto: &Moto, asg: &str) -> f64 {
    let intervals = wait_refreshes_ended(moto, &[asg], GATE_DEADLINE).await;
    intervals[asg][0].end.expect("ended")
}

/// Deploys the local stack in waves of `batch_size` ASGs, with `gate` (the failure policy and
/// the gate's keys) in place of `on_failure = "continue"` and the `extra` changes; the variant
/// is written to `dir`. Returns its file.
fn deploy_gate(
    moto: &Moto,
    dir: &Path,
    batch_size: u32,
    gate: &str,
    extra: &[(&str, &str)],
) -> PathBuf {
    let batches = format!("batch_size = {batch_size}");
    let mut replaces = vec![
        ("strategy = \"window\"", "strategy = \"batches\""),
        ("batch_size = 3", batches.as_str()),
        ("on_failure = \"continue\"", gate),
    ];
    replaces.extend_from_slice(extra);
    let path = local_variant(dir, "gate", &replaces);
    deploy_local(moto, Some(&path));
    path
}

/// `stop` on failure, a one-minute bake and `alarms` as wave_alarms.
fn stop_after_a_bake(alarms: &str) -> String {
    format!("on_failure = \"stop\"\nbake_minutes = 1\nwave_alarms = {alarms}")
}

/// An alarm that stays OK lets the rollout go on after a full bake; one that goes to ALARM
/// (and back to OK) during the next wave's bake fails that wave, names the alarm, and the
/// third wave never starts.
#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_during_the_bake_fails_the_wave_and_an_ok_alarm_lets_it_go_on() {
    let (moto, config) = start_emulator().await;
    alarm(&config, "gate-errors").await;
    alarm(&config, "gate-latency").await;
    demo_fleet(&config, &[("g-1", "1"), ("g-2", "1"), ("g-3", "1")]).await;
    let dir = tempfile_dir("gate");
    let gate = stop_after_a_bake("[\"gate-errors\", \"gate-latency\"]");
    let path = deploy_gate(&moto, &dir, 1, &gate, &[]);

    let arn = start_rollout(&config, "r-gate", "r-gate", NEW_AMI).await;
    // Wave 1 (g-1) ends and bakes with both alarms OK; wave 2 (g-2) starts only after the bake.
    let first_end = refresh_ended(&moto, "g-1").await;
    let second_end = refresh_ended(&moto, "g-2").await;
    // Wave 2's bake: gate-latency goes to ALARM and back to OK before the gate reads it. Its
    // state is OK again; its history says it went to ALARM during the bake.
    set_alarm(&config, "gate-latency", StateValue::Alarm).await;
    set_alarm(&config, "gate-latency", StateValue::Ok).await;
    let execution = wait_execution(&moto, &config, &arn, GATE_DEADLINE).await;
    let explain = explain(&execution, &moto);
    assert_execution(&execution, "FAILED", &moto);
    assert_eq!(execution.error(), Some("RolloutFailed"), "{explain}");

    let (intervals, _) = refresh_intervals(&moto);
    let second_start = intervals["g-2"][0].start;
    assert!(
        second_start >= first_end + BAKE_SECONDS - 1.0,
        "wave 2 started {:.1} s after wave 1 ended: the bake is {BAKE_SECONDS} s\n{explain}",
        second_start - first_end
    );
    assert!(
        !intervals.contains_key("g-3"),
        "wave 3 started after wave 2's alarm: {intervals:?}"
    );
    // The gate read the alarms only after wave 2's bake: the execution ended a bake after g-2.
    let (_, now) = refresh_intervals(&moto);
    assert!(
        now - second_end >= BAKE_SECONDS - 1.0,
        "the execution ended {:.1} s after wave 2 did: the bake is {BAKE_SECONDS} s\n{explain}",
        now - second_end
    );

    let items = rollout_items(&config, "r-gate").await;
    for asg in ["g-1", "g-2"] {
        assert_eq!(items[asg].status, "Successful", "{asg}: {:?}", items[asg]);
    }
    assert_eq!(items["g-3"].status, "Planned", "{:?}", items["g-3"]);
    let message = items["#rollout"].message.clone().unwrap_or_default();
    assert_eq!(
        items["#rollout"].status, "Failed",
        "{:?}",
        items["#rollout"]
    );
    assert!(
        message.contains("wave 2 failed its alarm gate: gate-latency went to ALARM"),
        "the summary names the alarm: {message}"
    );
    assert!(
        !message.contains("gate-errors"),
        "gate-errors stayed OK: {message}"
    );

    // `status` shows why.
    let status = xtask_on(
        &moto,
        Stack::Config(&path),
        &["status", "--rollout", "r-gate"],
    );
    assert_prints(&status, &moto, "gate-latency went to ALARM");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An alarm already in ALARM when the wave starts fails it at the gate even with no state
/// change in the window (the current state is read too).
#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_already_in_alarm_fails_the_first_wave() {
    let (moto, config) = start_emulator().await;
    alarm(&config, "gate-errors").await;
    set_alarm(&config, "gate-errors", StateValue::Alarm).await;
    demo_fleet(&config, &[("h-1", "1"), ("h-2", "1")]).await;
    let dir = tempfile_dir("gate-in-alarm");
    // No bake: the gate reads the alarms once, right after the wave.
    deploy_gate(
        &moto,
        &dir,
        1,
        "on_failure = \"stop\"\nwave_alarms = [\"gate-errors\"]",
        // Instance refresh's own bake, passed through to StartInstanceRefresh.
        &[("instance_warmup = 0", "instance_warmup = 0\nbake_time = 2")],
    );
    let execution = run_rollout(&moto, &config, "r-in-alarm", NEW_AMI).await;
    let described = refresh::refreshes(&config, "h-1", None).await;
    let refresh = &described[0];
    assert_eq!(
        refresh.preferences().and_then(|p| p.bake_time()),
        Some(2),
        "BakeTime reaches StartInstanceRefresh: {refresh:?}"
    );
    assert_execution(&execution, "FAILED", &moto);
    let (intervals, _) = refresh_intervals(&moto);
    assert_eq!(
        intervals.keys().collect::<Vec<_>>(),
        ["h-1"],
        "only wave 1 ran: {intervals:?}"
    );
    let items = rollout_items(&config, "r-in-alarm").await;
    let message = items["#rollout"].message.clone().unwrap_or_default();
    assert!(
        message.contains("wave 1 failed its alarm gate: gate-errors is in ALARM"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cargo xtask rollout` refuses wave_alarms that do not exist: a clear message naming them,
/// a non-zero exit, no execution started and the lock not taken.
#[tokio::test(flavor = "multi_thread")]
async fn rollout_refuses_unknown_wave_alarms_and_starts_nothing() {
    let (moto, config) = start_emulator().await;
    alarm(&config, "gate-errors").await;
    demo_fleet(&config, &[("u-1", "1")]).await;
    let dir = tempfile_dir("gate-unknown");
    let gate = stop_after_a_bake("[\"gate-errors\", \"gate-missing\", \"gate-gone\"]");
    let path = deploy_gate(&moto, &dir, 1, &gate, &[]);
    let output = xtask_on(
        &moto,
        Stack::Config(&path),
        &["rollout", "--ami", NEW_AMI, "--id", "r-unknown"],
    );
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = stderr(&output);
    assert!(
        stderr.contains("do not exist")
            && stderr.contains("gate-missing, gate-gone")
            && stderr.contains("nothing started"),
        "{}",
        text(&output)
    );
    assert!(!stderr.contains("gate-errors,"), "{}", text(&output));
    let executions = executions(&config).await;
    assert!(
        executions.is_empty(),
        "an execution started: {executions:?}"
    );
    assert_eq!(lock_holder(&config).await, None);
    assert!(refresh_intervals(&moto).0.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `on_failure = "rollback"` (rollback_scope `wave`, the default), a wave that fails its
/// alarm gate after every refresh of it succeeded has each of its groups refreshed back to the
/// launch template version it had before the rollout; the next wave never starts.
#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_during_the_bake_rolls_the_wave_back() {
    let (moto, config) = start_emulator().await;
    alarm(&config, "gate-errors").await;
    demo_fleet(&config, &[("k-1", "1"), ("k-2", "1"), ("k-3", "1")]).await;
    let dir = tempfile_dir("gate-rollback");
    deploy_gate(
        &moto,
        &dir,
        2,
        "on_failure = \"rollback\"\nbake_minutes = 1\nwave_alarms = [\"gate-errors\"]",
        &[],
    );
    let arn = start_rollout(&config, "r-gate-rb", "r-gate-rb", NEW_AMI).await;
    // Wave 1 is k-1 and k-2: once both refreshed, the alarm fires during the bake.
    let ended = refresh_ended(&moto, "k-1")
        .await
        .max(refresh_ended(&moto, "k-2").await);
    set_alarm(&config, "gate-errors", StateValue::Alarm).await;
    let execution = wait_execution(&moto, &config, &arn, GATE_DEADLINE).await;
    let explain = explain(&execution, &moto);
    assert_execution(&execution, "FAILED", &moto);
    let (intervals, _) = refresh_intervals(&moto);
    assert!(
        !intervals.contains_key("k-3"),
        "wave 2 started: {intervals:?}"
    );
    let items = rollout_items(&config, "r-gate-rb").await;
    for asg in ["k-1", "k-2"] {
        assert_eq!(
            group_image(&config, asg).await.as_deref(),
            Some(OLD_AMI),
            "{asg} is back on the old image\n{explain}"
        );
        let refreshes = &intervals[asg];
        assert_eq!(
            refreshes.len(),
            2,
            "{asg}: a refresh, then its restore: {refreshes:?}"
        );
        assert!(
            refreshes[1].start >= ended + BAKE_SECONDS - 1.0,
            "{asg} was restored before the bake ended: {refreshes:?}"
        );
        assert_eq!(items[asg].status, "RolledBack", "{asg}: {:?}", items[asg]);
    }
    let message = items["#rollout"].message.clone().unwrap_or_default();
    assert!(
        message.contains("wave 1 failed its alarm gate: gate-errors went to ALARM"),
        "{message}"
    );
    assert_eq!(lock_holder(&config).await, None, "the lock is released");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads `status --json` of `rollout` on the stack of `path` (bounded) until `done` holds.
fn wait_status(
    moto: &Moto,
    path: &Path,
    rollout: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_status_on(
        moto,
        Stack::Config(path),
        rollout,
        what,
        GATE_DEADLINE,
        done,
    )
}

/// `approval = "after-canary"`: the rollout pauses once, after the canary wave; approved, the
/// two later waves run without asking again.
#[tokio::test(flavor = "multi_thread")]
async fn after_canary_approval_pauses_once_after_the_canary_wave() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("c-1", "1"), ("c-2", "1"), ("c-3", "1")]).await;
    let dir = tempfile_dir("after-canary");
    let path = local_variant(
        &dir,
        "after-canary",
        &[
            ("strategy = \"window\"", "strategy = \"batches\""),
            (
                "batch_size = 3",
                "batch_size = 1\ncanary = [\"c-2\"]\napproval = \"after-canary\"",
            ),
        ],
    );
    deploy_local(&moto, Some(&path));
    let stack = Stack::Config(&path);
    let started = xtask_on(
        &moto,
        stack,
        &["rollout", "--ami", NEW_AMI, "--id", "r-canary"],
    );
    assert_ok(&started, &moto);
    let waiting = wait_status(&moto, &path, "r-canary", "the approval", awaiting);
    assert_eq!(asg(&waiting, "c-2")["status"], "Successful", "{waiting:#}");
    for name in ["c-1", "c-3"] {
        assert_eq!(asg(&waiting, name)["status"], "Planned", "{waiting:#}");
    }
    let approved = xtask_on(&moto, stack, &["approve"]);
    assert_ok(&approved, &moto);
    let done = wait_status(&moto, &path, "r-canary", "the end", |s| {
        s["execution"]["status"].as_str().unwrap_or("RUNNING") != "RUNNING"
    });
    assert_eq!(done["execution"]["status"], "SUCCEEDED", "{done:#}");
    for name in ["c-1", "c-2", "c-3"] {
        assert_eq!(asg(&done, name)["status"], "Successful", "{done:#}");
    }
    let approvals = done["approvals"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        approvals.len(),
        1,
        "one approval, after the canary: {done:#}"
    );
    assert_eq!(approvals[0]["status"], "Approved", "{done:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
