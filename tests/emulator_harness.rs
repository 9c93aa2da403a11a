//! The extended emulator (`tests/emulator/server.py`) through the AWS SDK: instance
//! refreshes with their time model and failure injection, Lambda invocations that run
//! the refresher's real `bootstrap`, and a Step Functions execution that invokes it.
//! Every loop has a deadline.

mod e2e;
#[path = "support/refresh.rs"]
mod refresh;
#[path = "support/sfn.rs"]
mod sfn;
#[path = "support/dynamodb.rs"]
mod tables;

use std::time::{Duration, Instant};

use asg_refresh_tests::{workspace_root, Moto};
use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::types::InstanceRefresh;
use e2e::{
    assert_execution, deploy_local, fleet, function_zip, group_version, max_in_flight,
    refresh_intervals, rollout_items, run_rollout, start_emulator, tempfile_dir,
};
use refresh::{refreshes, start_refresh, FAILS_AFTER_1S};
use serde_json::{json, Value};

async fn start(config: &aws_config::SdkConfig, asg: &str, template_id: &str) -> String {
    start_refresh(config, asg, template_id, None).await
}

async fn describe(config: &aws_config::SdkConfig, asg: &str, id: &str) -> InstanceRefresh {
    let listed = refreshes(config, asg, Some(id)).await;
    listed.first().cloned().expect("the refresh is listed")
}

fn status(refresh: &InstanceRefresh) -> String {
    refresh
        .status()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default()
}

/// The statuses of a refresh that has not ended, nor been asked to stop.
const RUNNING: &[&str] = &["Pending", "InProgress"];

/// Polls (at most `seconds`) until the refresh reaches a status outside `in_flight`; returns every status
/// and percentage seen, in order.
async fn poll_until_done(
    config: &aws_config::SdkConfig,
    asg: &str,
    id: &str,
    in_flight: &[&str],
    seconds: u64,
) -> (InstanceRefresh, Vec<(String, i32)>) {
    let deadline = Duration::from_secs(seconds);
    let until = Instant::now() + deadline;
    let mut seen = Vec::new();
    loop {
        let refresh = describe(config, asg, id).await;
        let current = status(&refresh);
        seen.push((current.clone(), refresh.percentage_complete().unwrap_or(-1)));
        if !in_flight.contains(&current.as_str()) {
            return (refresh, seen);
        }
        assert!(
            Instant::now() < until,
            "{asg}: refresh {id} still {current} after {deadline:?}; seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asserts that a start on `asg` is refused with InstanceRefreshInProgress.
async fn assert_start_refused(config: &aws_config::SdkConfig, asg: &str) {
    let refused = aws_sdk_autoscaling::Client::new(config)
        .start_instance_refresh()
        .auto_scaling_group_name(asg)
        .send()
        .await
        .expect_err("a start while a refresh is active");
    assert!(
        refused
            .as_service_error()
            .is_some_and(|e| e.is_instance_refresh_in_progress_fault()),
        "expected InstanceRefreshInProgress, got {refused:?}"
    );
}

/// Asks Auto Scaling to roll back (`rollback`) or else to cancel the active refresh of
/// `asg`: the refresh id it answers with, or the error code it refuses with.
async fn stop_refresh(
    autoscaling: &aws_sdk_autoscaling::Client,
    asg: &str,
    rollback: bool,
) -> Result<Option<String>, Option<String>> {
    let answer = if rollback {
        let sent = autoscaling.rollback_instance_refresh();
        let sent = sent.auto_scaling_group_name(asg).send().await;
        sent.map(|out| out.instance_refresh_id().map(str::to_string))
            .map_err(|e| e.code().map(str::to_string))
    } else {
        let sent = autoscaling.cancel_instance_refresh();
        let sent = sent.auto_scaling_group_name(asg).send().await;
        sent.map(|out| out.instance_refresh_id().map(str::to_string))
            .map_err(|e| e.code().map(str::to_string))
    };
    answer
}

/// The log's events for one refresh, as (event, status) pairs.
fn logged(moto: &Moto, id: &str) -> Vec<(String, Option<String>)> {
    let log = moto.refresh_log();
    log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["refresh_id"] == id)
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The ASGs the refresh log shows a start of, in name order (once per start).
fn started(moto: &Moto) -> Vec<String> {
    let (intervals, _) = refresh_intervals(moto);
    intervals
        .into_iter()
        .flat_map(|(asg, runs)| vec![asg; runs.len()])
        .collect()
}

/// The log of a refresh stopped by `action` (rollback or cancel) that ended `end`.
fn stopped(action: &str, end: &str) -> Vec<(String, Option<String>)> {
    pairs(&[("start", None), (action, None), ("end", Some(end))])
}

fn pairs(items: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    items
        .iter()
        .map(|(e, s)| (e.to_string(), s.map(str::to_string)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_runs_pending_in_progress_successful_and_applies_the_version() {
    let (moto, config) = start_emulator().await;
    let template = fleet(&config, "web-1", &[("emulator:refresh-seconds", "3")]).await;
    let id = start(&config, "web-1", &template).await;

    // A second start while the first is active is refused with the typed error.
    assert_start_refused(&config, "web-1").await;

    let (done, seen) = poll_until_done(&config, "web-1", &id, RUNNING, 30).await;
    assert_eq!(status(&done), "Successful", "seen {seen:?}");
    assert_eq!(done.percentage_complete(), Some(100));
    assert!(done.end_time().is_some() && done.start_time().is_some());
    assert_eq!(seen[0].0, "Pending", "seen {seen:?}");
    assert!(
        seen.iter()
            .any(|(s, p)| s == "InProgress" && *p > 0 && *p < 100),
        "seen {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0].1 <= w[1].1),
        "percentage never goes down: {seen:?}"
    );
    let desired = done
        .desired_configuration()
        .and_then(|d| d.launch_template())
        .expect("desired configuration");
    assert_eq!(
        (desired.launch_template_id(), desired.version()),
        (Some(template.as_str()), Some("2"))
    );
    assert_eq!(group_version(&config, "web-1").await.as_deref(), Some("2"));

    // Nothing is active any more: a new start is accepted.
    let again = start(&config, "web-1", &template).await;
    assert_ne!(again, id);

    assert_eq!(
        logged(&moto, &id),
        pairs(&[("start", None), ("end", Some("Successful"))])
    );
    let log = moto.refresh_log();
    let events = log["events"].as_array().unwrap();
    let time_of = |event: &str| {
        let logged = events
            .iter()
            .find(|e| e["refresh_id"] == id && e["event"] == event);
        logged.unwrap()["t"].as_f64().unwrap()
    };
    let (start_t, end_t) = (time_of("start"), time_of("end"));
    assert!(
        (end_t - start_t - 3.0).abs() < 0.01,
        "ran {} s, tagged 3 s",
        end_t - start_t
    );
    assert_eq!(
        events.iter().filter(|e| e["event"] == "start").count(),
        2,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_outcome_failed_from_a_tag() {
    let (moto, config) = start_emulator().await;
    let template = fleet(&config, "api-1", &FAILS_AFTER_1S).await;
    let id = start(&config, "api-1", &template).await;
    let (done, seen) = poll_until_done(&config, "api-1", &id, RUNNING, 20).await;
    assert_eq!(status(&done), "Failed", "seen {seen:?}");
    assert!(done.status_reason().is_some_and(|r| !r.is_empty()));
    assert_eq!(
        group_version(&config, "api-1").await.as_deref(),
        Some("1"),
        "a failed refresh leaves the group as it was"
    );
    assert_eq!(
        logged(&moto, &id),
        pairs(&[("start", None), ("end", Some("Failed"))])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_and_cancel() {
    let (moto, config) = start_emulator().await;
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    let slow = [
        ("emulator:refresh-seconds", "60"),
        ("emulator:rollback-seconds", "1"),
        ("emulator:cancel-seconds", "1"),
    ];

    // Nothing active: both are refused with the typed error.
    let template = fleet(&config, "db-1", &slow).await;
    for rollback in [true, false] {
        assert_eq!(
            stop_refresh(&autoscaling, "db-1", rollback).await,
            Err(Some("ActiveInstanceRefreshNotFound".to_string())),
            "rollback {rollback}"
        );
    }

    let id = start(&config, "db-1", &template).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rolled = stop_refresh(&autoscaling, "db-1", true).await;
    assert_eq!(rolled, Ok(Some(id.clone())));
    let (done, seen) = poll_until_done(&config, "db-1", &id, &["RollbackInProgress"], 20).await;
    assert_eq!(status(&done), "RollbackSuccessful", "seen {seen:?}");
    assert_eq!(seen[0].0, "RollbackInProgress", "seen {seen:?}");
    assert!(done.rollback_details().is_some());
    assert_eq!(group_version(&config, "db-1").await.as_deref(), Some("1"));
    assert_eq!(
        logged(&moto, &id),
        stopped("rollback", "RollbackSuccessful")
    );

    let template = fleet(&config, "db-2", &slow).await;
    let id = start(&config, "db-2", &template).await;
    let cancelled = stop_refresh(&autoscaling, "db-2", false).await;
    assert_eq!(cancelled, Ok(Some(id.clone())));
    // Cancelling is still active: a new start is refused until it ends.
    assert_start_refused(&config, "db-2").await;
    let (done, seen) = poll_until_done(&config, "db-2", &id, &["Cancelling"], 20).await;
    assert_eq!(status(&done), "Cancelled", "seen {seen:?}");
    assert_eq!(logged(&moto, &id), stopped("cancel", "Cancelled"));
}

/// The debug refresher, stripped of debug info and zipped as `bootstrap`.
fn refresher_zip() -> Vec<u8> {
    function_zip("refresher")
}

/// A DynamoDB table shaped like the rollout table, and the refresher deployed with it.
async fn deploy_refresher(config: &aws_config::SdkConfig, table: &str) -> String {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    tables::create_table(&dynamodb, table, "rollout_id", Some("asg")).await;
    let role = aws_sdk_iam::Client::new(config)
        .create_role()
        .role_name("refresher")
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]}, "Action": "sts:AssumeRole"}]})
                .to_string(),
        )
        .send()
        .await
        .expect("create role");
    let role_arn = role.role().map(|r| r.arn().to_string()).expect("role arn");
    // The emulator checks every call the function (and a state machine with this role) makes
    // against the role's policies: grant what these tests use.
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
         "Resource": format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}")},
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:refresher"}
    ]});
    aws_sdk_iam::Client::new(config)
        .put_role_policy()
        .role_name("refresher")
        .policy_name("refresher")
        .policy_document(policy.to_string())
        .send()
        .await
        .expect("put role policy");
    use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
    let created = aws_sdk_lambda::Client::new(config)
        .create_function()
        .function_name("refresher")
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(&role_arn)
        .timeout(30)
        .code(
            FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(refresher_zip()))
                .build(),
        )
        .environment(
            Environment::builder()
                .variables("ASG_REFRESH_TABLE", table)
                .build(),
        )
        .send()
        .await
        .expect("create function");
    created.function_arn().expect("function arn").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_runs_the_refresher_bootstrap_against_the_emulator() {
    let (moto, config) = start_emulator().await;
    deploy_refresher(&config, "rollouts").await;
    let lambda = aws_sdk_lambda::Client::new(&config);
    // Three invocations: the first starts the process, the others reuse it.
    for run in 0..3 {
        let rollout = format!("r-{run}");
        let event = json!({"action": "await_approval", "rollout_id": rollout, "wave": 0, "task_token": format!("token-{run}")});
        let out = lambda
            .invoke()
            .function_name("refresher")
            .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
            .send()
            .await
            .expect("invoke");
        assert_eq!(
            out.function_error(),
            None,
            "payload: {:?}\nlambda output:\n{}",
            out.payload()
                .map(|p| String::from_utf8_lossy(p.as_ref()).to_string()),
            moto.lambda_logs()
        );
        let payload: Value =
            serde_json::from_slice(out.payload().expect("payload").as_ref()).expect("JSON payload");
        assert_eq!(payload, json!({"rollout_id": rollout, "awaiting_wave": 1}));
    }
    // The binary wrote through AWS_ENDPOINT_URL to the emulator's DynamoDB.
    let items = aws_sdk_dynamodb::Client::new(&config)
        .scan()
        .table_name("rollouts")
        .send()
        .await
        .expect("scan");
    let mut written: Vec<(String, String, String)> = items
        .items()
        .iter()
        .map(|item| {
            let s = |k: &str| {
                item.get(k)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default()
            };
            (s("rollout_id"), s("task_token"), s("status"))
        })
        .collect();
    written.sort();
    assert_eq!(
        written,
        (0..3)
            .map(|r| (
                format!("r-{r}"),
                format!("token-{r}"),
                "AwaitingApproval".to_string()
            ))
            .collect::<Vec<_>>()
    );

    // A handler error comes back as a Lambda function error with the runtime's payload.
    let out = lambda
        .invoke()
        .function_name("refresher")
        .payload(aws_sdk_lambda::primitives::Blob::new(
            r#"{"action":"bogus"}"#,
        ))
        .send()
        .await
        .expect("invoke");
    assert_eq!(out.function_error(), Some("Handled"));
    let payload: Value = serde_json::from_slice(out.payload().expect("payload").as_ref())
        .expect("JSON error payload");
    assert_eq!(payload["errorType"], "InvalidInput", "{payload}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_functions_execution_invokes_the_refresher() {
    let (moto, config) = start_emulator().await;
    let function_arn = deploy_refresher(&config, "rollouts").await;
    let definition = json!({
        "StartAt": "Approve",
        "States": {
            "Approve": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
                "ResultSelector": {"answer.$": "$.Payload"},
                "Next": "Done"
            },
            "Done": {"Type": "Succeed"}
        }
    });
    let input =
        json!({"action": "await_approval", "rollout_id": "sfn-1", "wave": 2, "task_token": "t"});
    let role = "arn:aws:iam::123456789012:role/refresher";
    let deadline = Duration::from_secs(60);
    let (described, kinds) = sfn::run_machine(
        &moto,
        &config,
        "approve",
        role,
        &definition,
        &input,
        deadline,
    )
    .await;
    eprintln!("execution history: {kinds:?}");
    assert_eq!(
        described.status().as_str(),
        "SUCCEEDED",
        "history {kinds:?}; output {:?}",
        described.output()
    );
    let output: Value =
        serde_json::from_str(described.output().expect("output")).expect("JSON output");
    assert_eq!(
        output,
        json!({"answer": {"rollout_id": "sfn-1", "awaiting_wave": 3}})
    );
    assert!(
        kinds.contains(&"LambdaFunctionSucceeded".to_string())
            || kinds.contains(&"TaskSucceeded".to_string()),
        "{kinds:?}"
    );
}

/// The whole job: `cargo xtask deploy` of envs/local.toml to the emulator, a fleet, and one
/// execution of the deployed state machine driving the real Lambda binaries.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_runs_end_to_end_with_the_deployed_state_machine() {
    const NEW_AMI: &str = "ami-0fedcba9876543210";
    let (moto, config) = start_emulator().await;
    // Four ASGs found by local.toml's tag, refreshing for 2 to 5 s, and one with capacity 0.
    let mut templates = Vec::new();
    for (asg, seconds) in [
        ("demo-a", "2"),
        ("demo-b", "4"),
        ("demo-c", "5"),
        ("demo-d", "3"),
    ] {
        let id = fleet(
            &config,
            asg,
            &[
                ("refresh-group", "demo"),
                ("emulator:refresh-seconds", seconds),
            ],
        )
        .await;
        templates.push((asg, id));
    }
    fleet(&config, "demo-zero", &[("refresh-group", "demo")]).await;
    aws_sdk_autoscaling::Client::new(&config)
        .update_auto_scaling_group()
        .auto_scaling_group_name("demo-zero")
        .min_size(0)
        .desired_capacity(0)
        .send()
        .await
        .expect("scale demo-zero to 0");
    deploy_local(&moto, None);
    let execution = run_rollout(&moto, &config, "r-e2e-1", NEW_AMI).await;
    assert_execution(&execution, "SUCCEEDED", &moto);
    // Every eligible ASG refreshed exactly once, never more than batch_size (3) at once.
    assert_eq!(started(&moto), ["demo-a", "demo-b", "demo-c", "demo-d"]);
    let (intervals, now) = refresh_intervals(&moto);
    let most = max_in_flight(&intervals, now);
    assert!(
        most <= 3,
        "{most} refreshes in flight at once, batch_size is 3"
    );
    assert_eq!(most, 3, "the window should fill its 3 slots");
    // Each group now runs a launch template version whose ImageId is the new AMI.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    for (asg, template) in &templates {
        let version = group_version(&config, asg).await.expect("a version");
        let described = ec2
            .describe_launch_template_versions()
            .launch_template_id(template)
            .versions(&version)
            .send()
            .await
            .expect("describe version");
        let image = described.launch_template_versions()[0]
            .launch_template_data()
            .and_then(|d| d.image_id())
            .map(str::to_string);
        assert_eq!(
            image.as_deref(),
            Some(NEW_AMI),
            "{asg} runs version {version}"
        );
    }
    // The table says what happened to each ASG.
    let items = rollout_items(&config, "r-e2e-1").await;
    let status_of = |asg: &str| items.get(asg).map(|item| item.status.clone());
    for asg in ["demo-a", "demo-b", "demo-c", "demo-d"] {
        assert_eq!(status_of(asg).as_deref(), Some("Successful"), "{asg}");
    }
    assert_eq!(status_of("demo-zero").as_deref(), Some("Skipped"));
    assert_eq!(status_of("#rollout").as_deref(), Some("Succeeded"));
}

/// `on_failure = "stop"` with waves of 2: a failed ASG in wave 0 fails the execution naming
/// it, and no ASG of wave 1 starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_asg_stops_later_waves_and_fails_the_execution_naming_it() {
    let (moto, config) = start_emulator().await;
    fleet(
        &config,
        "demo-a",
        &[
            ("refresh-group", "demo"),
            ("emulator:refresh-seconds", "2"),
            ("emulator:refresh-outcome", "Failed"),
        ],
    )
    .await;
    for asg in ["demo-b", "demo-c", "demo-d"] {
        fleet(
            &config,
            asg,
            &[("refresh-group", "demo"), ("emulator:refresh-seconds", "2")],
        )
        .await;
    }
    let dir = tempfile_dir("stop");
    let local = std::fs::read_to_string(workspace_root().join("envs/local.toml")).unwrap();
    let stop = local
        .replace("strategy = \"window\"", "strategy = \"batches\"")
        .replace("batch_size = 3", "batch_size = 2")
        .replace("on_failure = \"continue\"", "on_failure = \"stop\"");
    assert_ne!(
        stop, local,
        "envs/local.toml changed shape: update this test"
    );
    std::fs::write(dir.join("stop.toml"), stop).unwrap();
    deploy_local(&moto, Some(&dir.join("stop.toml")));
    let _ = std::fs::remove_dir_all(&dir);
    let execution = run_rollout(&moto, &config, "r-stop-1", "ami-0fedcba9876543210").await;
    assert_eq!(execution.status().as_str(), "FAILED");
    assert_eq!(execution.error(), Some("RolloutFailed"));
    let cause = execution.cause().unwrap_or_default();
    assert!(cause.contains("demo-a (Failed"), "{cause}");
    assert!(cause.contains("not started: demo-c, demo-d"), "{cause}");
    assert_eq!(
        started(&moto),
        ["demo-a", "demo-b"],
        "wave 1 must not start after wave 0 failed"
    );
}
