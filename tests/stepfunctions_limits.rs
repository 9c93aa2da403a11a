//! The emulator's Step Functions quotas (tests/emulator/stepfunctions_limits.py): a state
//! over 256 KiB fails the execution with `States.DataLimitExceeded`, which a `States.ALL`
//! catcher does not see; an execution whose history passes its event limit fails, and a
//! Distributed Map child counts its own history. Each case has a twin just inside the limit
//! that succeeds, so the refusals are the limits' doing.
//! (<https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html>,
//! <https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html>)

mod e2e;
#[path = "support/sfn.rs"]
mod sfn;

use std::time::Duration;

use asg_refresh_tests::Moto;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use e2e::start_emulator;
use serde_json::{json, Value};

/// Runs `definition` with `input` to its end (bounded); returns the execution and its
/// history's event types.
async fn run(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    name: &str,
    definition: &Value,
    input: &Value,
) -> (DescribeExecutionOutput, Vec<String>) {
    let role = "arn:aws:iam::123456789012:role/limits";
    let deadline = Duration::from_secs(90);
    sfn::run_machine(moto, config, name, role, definition, input, deadline).await
}

/// Asserts that `execution` succeeded (`kinds`: its history's event types).
fn assert_succeeded(execution: &DescribeExecutionOutput, kinds: &[String]) {
    assert_eq!(
        execution.status().as_str(),
        "SUCCEEDED",
        "{kinds:?} {:?}",
        execution.cause()
    );
}

/// Asserts that `execution` failed with `error` (`kinds`: its history's event types).
fn assert_failed_with(execution: &DescribeExecutionOutput, kinds: &[String], error: &str) {
    assert_eq!(execution.status().as_str(), "FAILED", "{kinds:?}");
    assert_eq!(execution.error(), Some(error), "{:?}", execution.cause());
}

/// A Pass state that outputs `bytes` bytes.
fn oversized_output(bytes: usize) -> Value {
    json!({
        "StartAt": "Big",
        "States": {"Big": {"Type": "Pass", "Result": {"blob": "x".repeat(bytes)}, "End": true}}
    })
}

/// A Task whose parameters take `copies` times a 100 KiB string, caught by `States.ALL`. The
/// call itself is refused (ListStateMachines has no such parameters), which the catcher takes.
fn oversized_task(copies: usize) -> Value {
    let parameters: serde_json::Map<String, Value> = (0..copies)
        .map(|i| (format!("Copy{i}.$"), json!("$.blob")))
        .collect();
    json!({
        "StartAt": "Blob",
        "States": {
            "Blob": {"Type": "Pass", "Result": "y".repeat(100 * 1024), "ResultPath": "$.blob", "Next": "Call"},
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:sfn:listStateMachines",
                "Parameters": parameters,
                "ResultPath": null,
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": null, "Next": "Caught"}],
                "Next": "Done"
            },
            "Caught": {"Type": "Pass", "Result": "caught", "ResultPath": "$.caught", "OutputPath": "$.caught", "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_state_fails_the_execution_past_any_catcher() {
    let (moto, config) = start_emulator().await;
    let output = oversized_output(200 * 1024);
    let (fits, kinds) = run(&moto, &config, "fits", &output, &json!({})).await;
    assert_succeeded(&fits, &kinds);
    let output = oversized_output(300 * 1024);
    let (over, kinds) = run(&moto, &config, "over", &output, &json!({})).await;
    assert_failed_with(&over, &kinds, "States.DataLimitExceeded");
    // A Task's parameters past the limit: its States.ALL catcher does not see the failure,
    // though it does catch the call's own error when the parameters fit.
    let (caught, kinds) = run(&moto, &config, "task-fits", &oversized_task(2), &json!({})).await;
    assert_succeeded(&caught, &kinds);
    assert!(
        caught.output().unwrap_or_default().contains("caught"),
        "{kinds:?}"
    );
    let (uncaught, kinds) = run(&moto, &config, "task-over", &oversized_task(3), &json!({})).await;
    assert_failed_with(&uncaught, &kinds, "States.DataLimitExceeded");
}

/// Counts to `to` in a Pass and Choice loop: four events a round.
fn counting_loop(to: u32) -> Value {
    json!({
        "StartAt": "Start",
        "States": {
            "Start": {"Type": "Pass", "Result": 0, "ResultPath": "$.i", "Next": "Count"},
            "Count": {"Type": "Pass", "Parameters": {"i.$": "States.MathAdd($.i, 1)"}, "Next": "More"},
            "More": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.i", "NumericLessThan": to, "Next": "Count"}],
                "Default": "Done"
            },
            "Done": {"Type": "Succeed"}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_past_its_history_limit_fails() {
    let (moto, config) = start_emulator().await;
    // A limit of 100 events keeps the loop short; AWS's is 25,000.
    let limits: Value = serde_json::from_str(
        &moto
            .request("GET", "/emulator/stepfunctions-limits", "")
            .expect("limits"),
    )
    .unwrap();
    assert_eq!(limits["history_events"], 25_000, "AWS's limit by default");
    moto.request(
        "POST",
        "/emulator/stepfunctions-limits",
        r#"{"history_events": 100}"#,
    )
    .expect("set limits");
    let (short, kinds) = run(&moto, &config, "short", &counting_loop(20), &json!({})).await;
    assert_eq!(
        short.status().as_str(),
        "SUCCEEDED",
        "{} events: {:?}",
        kinds.len(),
        short.cause()
    );
    assert!(kinds.len() < 100, "{}", kinds.len());
    let (long, kinds) = run(&moto, &config, "long", &counting_loop(1000), &json!({})).await;
    assert_eq!(long.status().as_str(), "FAILED", "{} events", kinds.len());
    assert_eq!(long.error(), Some("States.Runtime"));
    assert!(
        long.cause().unwrap_or_default().contains("history reached"),
        "{:?}",
        long.cause()
    );
    assert!(
        kinds.len() <= 100,
        "the history stops at the limit: {} events",
        kinds.len()
    );
    assert_eq!(kinds.last().map(String::as_str), Some("ExecutionFailed"));
}

/// A Distributed Map over `$.items` (each item `{"i": 0}`) whose children run `states` from
/// `start_at`; a failed child fails it.
fn distributed_map(start_at: &str, states: Value) -> Value {
    json!({
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemSelector": {"i": 0},
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": start_at,
                    "States": states
                },
                "ToleratedFailureCount": 0,
                "ResultPath": null,
                "End": true
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_map_child_counts_its_own_history() {
    let (moto, config) = start_emulator().await;
    moto.request(
        "POST",
        "/emulator/stepfunctions-limits",
        r#"{"history_events": 100}"#,
    )
    .expect("set limits");
    let map = |to: u32| {
        let child = counting_loop(to);
        distributed_map(
            "Count",
            json!({
                "Count": child["States"]["Count"],
                "More": child["States"]["More"],
                "Done": {"Type": "Succeed", "OutputPath": null}
            }),
        )
    };
    // Eight children of 20 rounds each: 80 rounds in all, but each child fits its own 100.
    let items = json!({"items": [1, 2, 3, 4, 5, 6, 7, 8]});
    let (fits, kinds) = run(&moto, &config, "children-fit", &map(20), &items).await;
    assert_succeeded(&fits, &kinds);
    // Frames inside a child (here a Parallel branch) count toward that child, not the map run.
    let nested = distributed_map(
        "Branches",
        json!({
            "Branches": {"Type": "Parallel", "Branches": [counting_loop(15)], "OutputPath": null, "End": true}
        }),
    );
    let (fits, kinds) = run(
        &moto,
        &config,
        "nested-fit",
        &nested,
        &json!({"items": [1, 2, 3, 4]}),
    )
    .await;
    assert_succeeded(&fits, &kinds);
    // One child of 1,000 rounds passes its limit and fails; the wave fails with it.
    let (over, kinds) = run(
        &moto,
        &config,
        "child-over",
        &map(1000),
        &json!({"items": [1]}),
    )
    .await;
    assert_eq!(over.status().as_str(), "FAILED", "{kinds:?}");
    assert!(
        kinds.len() < 50,
        "the parent's history holds none of the child's: {kinds:?}"
    );
}
