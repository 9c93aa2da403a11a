//! `cargo xtask rollout`, `status` and `approve` as an operator runs them: the real xtask
//! binary against the local stack deployed to the extended emulator, the real state
//! machine and Lambda binaries doing the work. Each test asserts on exit codes, on
//! `status --json` and on the emulator's refresh log; every wait is bounded.

#[path = "support/cli.rs"]
mod cli;
mod e2e;

use std::process::Stdio;
use std::time::Duration;

use cli::{
    asg, assert_ok, assert_prints, assert_refused, awaiting, execution_status, status_json, stderr,
    text, wait_status, xtask, xtask_command,
};
use e2e::*;
use serde_json::{json, Value};

const NEW_AMI: &str = "ami-0fedcba9876543210";
const OTHER_AMI: &str = "ami-0aaaaaaaaaaaaaaaa";

/// Bad input and a stack without rollouts are refused before any execution starts; a
/// rollout with `--wait` ends with exit 0, and `status` then tells what happened to
/// every ASG, skipped ones with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn rollout_wait_succeeds_and_status_reports_every_asg() {
    let (moto, config) = start_emulator().await;

    // Not deployed yet: every command says what to run first.
    assert_refused(&xtask(&moto, &["status"]), "cargo xtask deploy --env local");
    assert_refused(
        &xtask(&moto, &["rollout", "--ami", NEW_AMI]),
        "cargo xtask deploy --env local",
    );

    demo_fleet(&config, &[("c-a", "2"), ("c-b", "3"), ("c-zero", "1")]).await;
    set_capacity(&config, "c-zero", 0).await;
    deploy_local(&moto, None);

    let refusals: [(&[&str], &str); 4] = [
        (&["status"], "no rollout has run on stack `local` yet"),
        (&["rollout", "--ami", "ami-12345"], "--ami"),
        (&["rollout", "--ami", NEW_AMI, "--id", "has spaces"], "--id"),
        (
            &["rollout", "--resume", "never-ran"],
            "no rollout `never-ran` to resume",
        ),
    ];
    for (args, says) in refusals {
        assert_refused(&xtask(&moto, args), says);
    }
    assert!(
        executions(&config).await.is_empty(),
        "a refused command started an execution"
    );

    let output = xtask(
        &moto,
        &[
            "rollout",
            "--ami",
            NEW_AMI,
            "--id",
            "cli-ok",
            "--wait",
            "--interval",
            "1",
        ],
    );
    assert_prints(&output, &moto, "execution cli-ok SUCCEEDED");

    // The newest rollout is the default.
    let status = status_json(&moto, None);
    assert_eq!(status["rollout_id"], "cli-ok", "{status:#}");
    assert_eq!(execution_status(&status), "SUCCEEDED", "{status:#}");
    assert_eq!(status["summary"]["status"], "Succeeded", "{status:#}");
    assert_eq!(status["summary"]["ami"], NEW_AMI, "{status:#}");
    let totals = &status["totals"];
    assert_eq!(
        (
            totals["asgs"].as_u64(),
            totals["successful"].as_u64(),
            totals["skipped"].as_u64(),
            totals["failed"].as_u64()
        ),
        (Some(3), Some(2), Some(1), Some(0)),
        "{status:#}"
    );
    for name in ["c-a", "c-b"] {
        let record = asg(&status, name);
        assert_eq!(record["status"], "Successful", "{record:#}");
        assert_eq!(record["percentage"], 100, "{record:#}");
        assert_eq!(
            group_image(&config, name).await.as_deref(),
            Some(NEW_AMI),
            "{name}"
        );
    }
    let zero = asg(&status, "c-zero");
    assert_eq!(zero["status"], "Skipped", "{zero:#}");
    assert_eq!(zero["reason"], "desired capacity is 0", "{zero:#}");
    assert!(
        status["lock_holder"].is_null(),
        "the lock outlived the rollout: {status:#}"
    );

    // The table view says the same.
    let table = xtask(&moto, &["status", "--rollout", "cli-ok"]);
    assert_ok(&table, &moto);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("3 ASGs: 2 successful, 0 in flight, 0 failed, 0 waiting, 1 skipped"),
        "{table}"
    );
    assert!(table.contains("desired capacity is 0"), "{table}");

    // An id is used once; a succeeded rollout has nothing to resume.
    let refusals: [(&[&str], &str); 3] = [
        (
            &["rollout", "--ami", NEW_AMI, "--id", "cli-ok"],
            "already used",
        ),
        (&["rollout", "--resume", "cli-ok"], "already succeeded"),
        (&["status", "--rollout", "nope"], "has no rollout `nope`"),
    ];
    for (args, says) in refusals {
        assert_refused(&xtask(&moto, args), says);
    }
    assert_eq!(executions(&config).await, vec!["cli-ok".to_string()]);
}

/// A rollout with a failed ASG exits non-zero naming it; `--resume` after the cause is
/// fixed starts only that ASG again, as execution `<id>-2`, and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_rollout_exits_non_zero_and_resume_finishes_it() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("f-bad", "1"), ("f-ok", "1")]).await;
    set_tag(&config, "f-bad", "emulator:refresh-outcome", "Failed").await;
    deploy_local(&moto, None);

    let failed = xtask(
        &moto,
        &[
            "rollout",
            "--ami",
            NEW_AMI,
            "--id",
            "cli-fail",
            "--wait",
            "--interval",
            "1",
        ],
    );
    assert!(
        !failed.status.success(),
        "a rollout with a failed ASG exited 0: {}",
        text(&failed)
    );
    assert!(
        stderr(&failed).contains("rollout cli-fail FAILED"),
        "{}",
        text(&failed)
    );
    let status = status_json(&moto, Some("cli-fail"));
    assert_eq!(asg(&status, "f-bad")["status"], "Failed", "{status:#}");
    assert_eq!(asg(&status, "f-ok")["status"], "Successful", "{status:#}");

    set_tag(&config, "f-bad", "emulator:refresh-outcome", "Successful").await;
    let resumed = xtask(
        &moto,
        &[
            "rollout",
            "--resume",
            "cli-fail",
            "--wait",
            "--interval",
            "1",
        ],
    );
    assert_prints(&resumed, &moto, "execution cli-fail-2");
    let status = status_json(&moto, Some("cli-fail"));
    assert_eq!(execution_status(&status), "SUCCEEDED", "{status:#}");
    assert_eq!(status["execution"]["name"], "cli-fail-2", "{status:#}");
    assert_eq!(asg(&status, "f-bad")["status"], "Successful", "{status:#}");

    // f-ok was refreshed once; f-bad twice (the failure, then the re-run).
    let (intervals, _) = refresh_intervals(&moto);
    assert_eq!(intervals["f-ok"].len(), 1, "{intervals:?}");
    assert_eq!(intervals["f-bad"].len(), 2, "{intervals:?}");
    assert_eq!(
        group_image(&config, "f-bad").await.as_deref(),
        Some(NEW_AMI)
    );
}

/// With `approval = true` the rollout stops after each wave until `approve`; a second
/// rollout is refused meanwhile; `approve --reject` fails the rollout and the next wave
/// never starts.
#[tokio::test(flavor = "multi_thread")]
async fn approval_holds_the_next_wave_until_approved_and_reject_stops_the_rollout() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("a-1", "1"), ("a-2", "1")]).await;
    deploy_local_variant(
        &moto,
        "approval",
        &[
            ("strategy = \"window\"", "strategy = \"batches\""),
            ("batch_size = 3", "batch_size = 1\napproval = true"),
        ],
    );
    assert_refused(
        &xtask(&moto, &["approve"]),
        "no rollout is running on stack `local`",
    );

    let started = xtask(&moto, &["rollout", "--ami", NEW_AMI, "--id", "cli-approve"]);
    assert_ok(&started, &moto);
    let waiting = wait_status(&moto, "cli-approve", "waiting for approval", awaiting);
    assert_eq!(asg(&waiting, "a-1")["status"], "Successful", "{waiting:#}");
    assert_eq!(asg(&waiting, "a-2")["status"], "Planned", "{waiting:#}");
    assert_eq!(waiting["lock_holder"], "cli-approve", "{waiting:#}");
    let table = xtask(&moto, &["status"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("cargo xtask approve"),
        "{}",
        text(&table)
    );

    // While it waits, nothing else starts on the stack.
    assert_refused(
        &xtask(&moto, &["rollout", "--ami", OTHER_AMI, "--id", "cli-other"]),
        "rollout cli-approve is running",
    );
    let (intervals, _) = refresh_intervals(&moto);
    assert!(
        !intervals.contains_key("a-2"),
        "wave 2 started before its approval: {intervals:?}"
    );

    let approved = xtask(&moto, &["approve"]);
    assert_prints(&approved, &moto, "approved wave 2 of rollout cli-approve");
    let done = wait_status(&moto, "cli-approve", "the end", |s| {
        execution_status(s) != "RUNNING"
    });
    assert_eq!(execution_status(&done), "SUCCEEDED", "{done:#}");
    assert_eq!(asg(&done, "a-2")["status"], "Successful", "{done:#}");
    let approval = &done["approvals"][0];
    assert_eq!(
        (approval["status"].as_str(), approval["decided_by"].as_str()),
        (Some("Approved"), Some("test-operator")),
        "{done:#}"
    );
    assert_refused(
        &xtask(&moto, &["approve", "--rollout", "cli-approve"]),
        "is not waiting for an approval",
    );

    // The same fleet, another AMI: wave 1 refreshes, the operator rejects wave 2.
    assert_ok(
        &xtask(
            &moto,
            &["rollout", "--ami", OTHER_AMI, "--id", "cli-reject"],
        ),
        &moto,
    );
    wait_status(&moto, "cli-reject", "waiting for approval", awaiting);
    let rejected = xtask(&moto, &["approve", "--reject"]);
    assert_ok(&rejected, &moto);
    let done = wait_status(&moto, "cli-reject", "the end", |s| {
        execution_status(s) != "RUNNING"
    });
    assert_eq!(execution_status(&done), "FAILED", "{done:#}");
    assert_eq!(done["approvals"][0]["status"], "Rejected", "{done:#}");
    // This second rollout starts the first one's longest refresh first (runtime::history):
    // which group is in the rejected wave comes from the plan, not from the names.
    let (first, second) = if asg(&done, "a-1")["wave"] == 0 {
        ("a-1", "a-2")
    } else {
        ("a-2", "a-1")
    };
    assert_eq!(asg(&done, second)["wave"], 1, "{done:#}");
    assert_ne!(asg(&done, second)["status"], "Successful", "{done:#}");
    assert_eq!(
        group_image(&config, first).await.as_deref(),
        Some(OTHER_AMI)
    );
    assert_eq!(
        group_image(&config, second).await.as_deref(),
        Some(NEW_AMI),
        "the rejected wave changed {second}"
    );
    let (intervals, _) = refresh_intervals(&moto);
    assert_eq!(
        intervals[second].len(),
        1,
        "{second} refreshed again after the rejection: {intervals:?}"
    );
}

/// DynamoDB reads of the watchers throttled 30 % of the time, with an 8-second stretch where
/// every read is throttled: `rollout --wait` and `status --watch` say they retry, back off,
/// and follow the rollout to its end (before, the first read that failed after the SDK's own
/// retries ended the watch: "listing the rollout: ThrottlingException").
#[tokio::test(flavor = "multi_thread")]
async fn watchers_ride_out_throttled_reads() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("w-a", "20"), ("w-b", "24")]).await;
    deploy_local(&moto, None);
    // The planner checks that the AMI exists.
    let image = aws_sdk_ec2::Client::new(&config)
        .register_image()
        .name("throttled")
        .send()
        .await
        .expect("register image");
    let image = image.image_id().expect("image id").to_string();

    let spawn = |args: &[&str]| {
        xtask_command(&moto, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xtask")
    };
    let rollout = spawn(&[
        "rollout",
        "--ami",
        &image,
        "--id",
        "cli-throttled",
        "--wait",
        "--interval",
        "1",
    ]);
    // Throttle once the rollout has started (starting it is not a watcher's job).
    let started = || async {
        let names = executions(&config).await;
        names
            .iter()
            .any(|e| e == "cli-throttled")
            .then_some(())
            .ok_or(())
    };
    poll(
        Duration::from_secs(60),
        Duration::from_millis(200),
        started,
        |()| "the rollout did not start".to_string(),
    )
    .await;
    let watch = spawn(&[
        "status",
        "--rollout",
        "cli-throttled",
        "--watch",
        "--interval",
        "1",
    ]);
    let reads = json!(["GetItem", "Query", "Scan", "BatchGetItem"]);
    let throttle = |rate: f64| json!({"rules": [{"service": "dynamodb", "operations": reads, "rate": rate}], "seed": 7});
    moto.set_faults(&throttle(0.3));
    tokio::time::sleep(Duration::from_secs(4)).await;
    moto.set_faults(&throttle(1.0));
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = moto.faults();
    moto.set_faults(&throttle(0.3));

    let rollout = rollout.wait_with_output().expect("rollout --wait");
    let watch = watch.wait_with_output().expect("status --watch");
    let faults = moto.faults();
    moto.request("DELETE", "/emulator/faults", "")
        .expect("clear the faults");
    assert_ok(&rollout, &moto);
    assert_ok(&watch, &moto);
    let injected: u64 = faults["injected"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    assert!(injected > 0, "no read was throttled: {faults:#}");
    for output in [&rollout, &watch] {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("execution cli-throttled SUCCEEDED"),
            "{}",
            text(output)
        );
        let err = stderr(output);
        assert!(
            err.contains("ThrottlingException") && err.contains("transient, retrying in"),
            "{}\nfaults: {during:#}",
            text(output)
        );
        assert!(
            err.contains("reading rollout cli-throttled again after"),
            "{}",
            text(output)
        );
    }
    assert_eq!(
        execution_status(&status_json(&moto, Some("cli-throttled"))),
        "SUCCEEDED"
    );
}
