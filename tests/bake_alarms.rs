//! The wave gate end to end (`[rollout] bake_minutes`, `wave_alarms`): the local stack deployed
//! to the extended emulator, its CloudWatch alarms set by the test (SetAlarmState), the real
//! state machine and Lambda binaries. The rollout bakes after each wave, goes on while the
//! alarms stay OK, and fails the wave whose alarm went to ALARM during the wave or its bake,
//! naming it; `cargo xtask rollout` refuses alarms that do not exist. Also the approval gate
//! `approval = "after-canary"`, which pauses once. Every wait is bounded.

mod e2e;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use asg_refresh_tests::{workspace_root, Moto};
use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
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
    let until = Instant::now() + GATE_DEADLINE;
    loop {
        let (intervals, _) = refresh_intervals(moto);
        if let Some(end) = intervals
            .get(asg)
            .and_then(|l| l.first())
            .and_then(|i| i.end)
        {
            return end;
        }
        assert!(
            Instant::now() < until,
            "{asg}'s refresh did not end: {intervals:?}\nlambda logs:\n{}",
            moto.lambda_logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The local stack with three waves of one ASG, `stop` on failure, a one-minute bake and
/// `alarms` as wave_alarms.
fn gate_variant(dir: &Path, alarms: &str) -> std::path::PathBuf {
    local_variant(
        dir,
        "gate",
        &[
            ("strategy = \"window\"", "strategy = \"batches\""),
            ("batch_size = 3", "batch_size = 1"),
            (
                "on_failure = \"continue\"",
                &format!("on_failure = \"stop\"\nbake_minutes = 1\nwave_alarms = {alarms}"),
            ),
        ],
    )
}

fn xtask(moto: &Moto, args: &[&str]) -> Output {
    Command::new(debug_binary("xtask", "xtask"))
        .args(args)
        .args(["--endpoint-url", &moto.endpoint()])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .expect("run xtask")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// An alarm that stays OK lets the rollout go on after a full bake; one that goes to ALARM
/// (and back to OK) during the next wave's bake fails that wave, names the alarm, and the
/// third wave never starts.
#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_during_the_bake_fails_the_wave_and_an_ok_alarm_lets_it_go_on() {
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
    alarm(&config, "gate-errors").await;
    alarm(&config, "gate-latency").await;
    demo_fleet(&config, &[("g-1", "1"), ("g-2", "1"), ("g-3", "1")]).await;
    let dir = tempfile_dir("gate");
    let path = gate_variant(&dir, "[\"gate-errors\", \"gate-latency\"]");
    deploy_local(&moto, Some(&path));

    let arn = start_rollout(&config, "r-gate", "r-gate", NEW_AMI).await;
    // Wave 1 (g-1) ends and bakes with both alarms OK; wave 2 (g-2) starts only after the bake.
    let first_end = refresh_ended(&moto, "g-1").await;
    let second_end = refresh_ended(&moto, "g-2").await;
    // Wave 2's bake: gate-latency goes to ALARM and back to OK before the gate reads it. Its
    // state is OK again; its history says it went to ALARM during the bake.
    set_alarm(&config, "gate-latency", StateValue::Alarm).await;
    set_alarm(&config, "gate-latency", StateValue::Ok).await;
    let execution = wait_execution(&moto, &config, &arn, GATE_DEADLINE).await;
    let explain = format!(
        "status {:?} error {:?} cause {:?}\nrefresh log: {}\nlambda logs:\n{}",
        execution.status(),
        execution.error(),
        execution.cause(),
        moto.refresh_log(),
        moto.lambda_logs()
    );
    assert_eq!(execution.status().as_str(), "FAILED", "{explain}");
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
    let status = xtask(
        &moto,
        &[
            "status",
            "--config",
            path.to_str().unwrap(),
            "--rollout",
            "r-gate",
        ],
    );
    assert!(status.status.success(), "{}", text(&status));
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("gate-latency went to ALARM"),
        "status does not show the alarm: {}",
        text(&status)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An alarm already in ALARM when the wave starts fails it at the gate even with no state
/// change in the window (the current state is read too).
#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_already_in_alarm_fails_the_first_wave() {
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
    alarm(&config, "gate-errors").await;
    set_alarm(&config, "gate-errors", StateValue::Alarm).await;
    demo_fleet(&config, &[("h-1", "1"), ("h-2", "1")]).await;
    let dir = tempfile_dir("gate-in-alarm");
    // No bake: the gate reads the alarms once, right after the wave.
    let path = local_variant(
        &dir,
        "gate",
        &[
            ("strategy = \"window\"", "strategy = \"batches\""),
            ("batch_size = 3", "batch_size = 1"),
            (
                "on_failure = \"continue\"",
                "on_failure = \"stop\"\nwave_alarms = [\"gate-errors\"]",
            ),
            // Instance refresh's own bake, passed through to StartInstanceRefresh.
            ("instance_warmup = 0", "instance_warmup = 0\nbake_time = 2"),
        ],
    );
    deploy_local(&moto, Some(&path));
    let execution = run_rollout(&moto, &config, "r-in-alarm", NEW_AMI).await;
    let described = aws_sdk_autoscaling::Client::new(&config)
        .describe_instance_refreshes()
        .auto_scaling_group_name("h-1")
        .send()
        .await
        .expect("DescribeInstanceRefreshes");
    let refresh = &described.instance_refreshes()[0];
    assert_eq!(
        refresh.preferences().and_then(|p| p.bake_time()),
        Some(2),
        "BakeTime reaches StartInstanceRefresh: {refresh:?}"
    );
    assert_eq!(
        execution.status().as_str(),
        "FAILED",
        "{:?} {:?}\n{}",
        execution.error(),
        execution.cause(),
        moto.lambda_logs()
    );
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
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
    alarm(&config, "gate-errors").await;
    demo_fleet(&config, &[("u-1", "1")]).await;
    let dir = tempfile_dir("gate-unknown");
    let path = gate_variant(&dir, "[\"gate-errors\", \"gate-missing\", \"gate-gone\"]");
    deploy_local(&moto, Some(&path));
    let output = xtask(
        &moto,
        &[
            "rollout",
            "--config",
            path.to_str().unwrap(),
            "--ami",
            NEW_AMI,
            "--id",
            "r-unknown",
        ],
    );
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("do not exist")
            && stderr.contains("gate-missing, gate-gone")
            && stderr.contains("nothing started"),
        "{}",
        text(&output)
    );
    assert!(!stderr.contains("gate-errors,"), "{}", text(&output));
    let executions = aws_sdk_sfn::Client::new(&config)
        .list_executions()
        .state_machine_arn(STATE_MACHINE_ARN)
        .send()
        .await
        .expect("ListExecutions");
    assert!(
        executions.executions().is_empty(),
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
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
    alarm(&config, "gate-errors").await;
    demo_fleet(&config, &[("k-1", "1"), ("k-2", "1"), ("k-3", "1")]).await;
    let dir = tempfile_dir("gate-rollback");
    let path = local_variant(
        &dir,
        "gate",
        &[
            ("strategy = \"window\"", "strategy = \"batches\""),
            ("batch_size = 3", "batch_size = 2"),
            (
                "on_failure = \"continue\"",
                "on_failure = \"rollback\"\nbake_minutes = 1\nwave_alarms = [\"gate-errors\"]",
            ),
        ],
    );
    deploy_local(&moto, Some(&path));
    let arn = start_rollout(&config, "r-gate-rb", "r-gate-rb", NEW_AMI).await;
    // Wave 1 is k-1 and k-2: once both refreshed, the alarm fires during the bake.
    let ended = refresh_ended(&moto, "k-1")
        .await
        .max(refresh_ended(&moto, "k-2").await);
    set_alarm(&config, "gate-errors", StateValue::Alarm).await;
    let execution = wait_execution(&moto, &config, &arn, GATE_DEADLINE).await;
    let explain = format!(
        "status {:?} error {:?} cause {:?}\nrefresh log: {}\nlambda logs:\n{}",
        execution.status(),
        execution.error(),
        execution.cause(),
        moto.refresh_log(),
        moto.lambda_logs()
    );
    assert_eq!(execution.status().as_str(), "FAILED", "{explain}");
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

/// `status --json` of `rollout` on the stack of `path`.
fn status_json(moto: &Moto, path: &Path, rollout: &str) -> serde_json::Value {
    let output = xtask(
        moto,
        &[
            "status",
            "--json",
            "--config",
            path.to_str().unwrap(),
            "--rollout",
            rollout,
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)))
}

/// Reads `status --json` (bounded) until `done` holds.
fn wait_status(
    moto: &Moto,
    path: &Path,
    rollout: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + GATE_DEADLINE;
    loop {
        let status = status_json(moto, path, rollout);
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < until,
            "{rollout}: {status:#}\nlambda logs:\n{}",
            moto.lambda_logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn asg_status<'a>(status: &'a serde_json::Value, name: &str) -> &'a str {
    status["asgs"]
        .as_array()
        .and_then(|l| l.iter().find(|a| a["asg"] == name))
        .and_then(|a| a["status"].as_str())
        .unwrap_or_else(|| panic!("{name} is not in the status: {status:#}"))
}

/// `approval = "after-canary"`: the rollout pauses once, after the canary wave; approved, the
/// two later waves run without asking again.
#[tokio::test(flavor = "multi_thread")]
async fn after_canary_approval_pauses_once_after_the_canary_wave() {
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
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
    let p = path.to_str().unwrap();
    let started = xtask(
        &moto,
        &[
            "rollout", "--config", p, "--ami", NEW_AMI, "--id", "r-canary",
        ],
    );
    assert!(started.status.success(), "{}", text(&started));
    let awaiting = |s: &serde_json::Value| {
        s["approvals"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["status"] == "AwaitingApproval"))
    };
    let waiting = wait_status(&moto, &path, "r-canary", awaiting);
    assert_eq!(asg_status(&waiting, "c-2"), "Successful", "{waiting:#}");
    for asg in ["c-1", "c-3"] {
        assert_eq!(asg_status(&waiting, asg), "Planned", "{waiting:#}");
    }
    let approved = xtask(&moto, &["approve", "--config", p]);
    assert!(approved.status.success(), "{}", text(&approved));
    let done = wait_status(&moto, &path, "r-canary", |s| {
        s["execution"]["status"].as_str().unwrap_or("RUNNING") != "RUNNING"
    });
    assert_eq!(done["execution"]["status"], "SUCCEEDED", "{done:#}");
    for asg in ["c-1", "c-2", "c-3"] {
        assert_eq!(asg_status(&done, asg), "Successful", "{done:#}");
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
