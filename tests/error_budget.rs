//! The error budget end to end (`[rollout] max_failures`): the local stack deployed to the
//! extended emulator with a sliding window of one and `on_failure = "stop"`, fleets whose
//! refreshes fail where the test says, and the real state machine and Lambdas. At the
//! boundary: `max_failures = 1` tolerates one failure (the rollout goes on to its end) and
//! stops at the second (later ASGs never start). Every wait is bounded.

mod e2e;

use std::collections::BTreeMap;

use asg_refresh_tests::Moto;
use e2e::*;

const NEW_AMI: &str = "ami-0fedcba9876543210";

/// `failing` ASGs whose refresh fails after 1 s, then `ok` ASGs refreshing in 1 s; all in the
/// local stack's target set.
async fn fleet_with_failures(config: &aws_config::SdkConfig, failing: &[&str], ok: &[&str]) {
    for asg in failing {
        fleet(
            config,
            asg,
            &[
                ("refresh-group", "demo"),
                ("emulator:refresh-seconds", "1"),
                ("emulator:refresh-outcome", "Failed"),
            ],
        )
        .await;
    }
    let ok: Vec<(&str, &str)> = ok.iter().map(|a| (*a, "1")).collect();
    demo_fleet(config, &ok).await;
}

/// The local stack as a window of one (ASGs in name order), stopping past `max_failures`.
fn deploy_budget(moto: &Moto, max_failures: &str) {
    deploy_local_variant(
        moto,
        "budget",
        &[
            ("batch_size = 3", "batch_size = 1"),
            (
                "on_failure = \"continue\"",
                &format!("on_failure = \"stop\"\nmax_failures = {max_failures}"),
            ),
        ],
    );
}

fn statuses(items: &BTreeMap<String, TableItem>, asgs: &[&str]) -> Vec<String> {
    asgs.iter().map(|a| items[*a].status.clone()).collect()
}

/// `max_failures = 1`, one ASG fails: the rollout goes on and refreshes every other ASG; it
/// ends with that one failure counted.
#[tokio::test(flavor = "multi_thread")]
async fn one_failure_within_a_budget_of_one_lets_the_rollout_go_on() {
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
    fleet_with_failures(&config, &["e-a"], &["e-b", "e-c", "e-d"]).await;
    deploy_budget(&moto, "1");
    let execution = run_rollout(&moto, &config, "r-budget-ok", NEW_AMI).await;
    let explain = format!(
        "{:?} {:?}\nrefresh log: {}\nlambda logs:\n{}",
        execution.error(),
        execution.cause(),
        moto.refresh_log(),
        moto.lambda_logs()
    );
    // Any failure fails the execution at its end; the budget only lets the rollout go on.
    assert_eq!(execution.status().as_str(), "FAILED", "{explain}");
    assert_eq!(execution.error(), Some("RolloutFailed"), "{explain}");
    let (intervals, _) = refresh_intervals(&moto);
    assert_eq!(
        intervals.keys().collect::<Vec<_>>(),
        ["e-a", "e-b", "e-c", "e-d"],
        "every ASG started after the tolerated failure: {explain}"
    );
    let items = rollout_items(&config, "r-budget-ok").await;
    assert_eq!(
        statuses(&items, &["e-a", "e-b", "e-c", "e-d"]),
        ["Failed", "Successful", "Successful", "Successful"],
        "{items:?}"
    );
    let message = items["#rollout"].message.clone().unwrap_or_default();
    assert!(message.starts_with("1 of 4 ASGs failed: e-a"), "{message}");
    assert!(!message.contains("not started"), "{message}");
    assert_eq!(lock_holder(&config).await, None);
}

/// `max_failures = 1`, two ASGs fail: the rollout stops at the second failure; the ASGs after
/// it never start.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_failure_past_a_budget_of_one_stops_the_rollout() {
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
    fleet_with_failures(&config, &["f-a", "f-b"], &["f-c", "f-d"]).await;
    deploy_budget(&moto, "1");
    let execution = run_rollout(&moto, &config, "r-budget-spent", NEW_AMI).await;
    let explain = format!(
        "{:?} {:?}\nrefresh log: {}\nlambda logs:\n{}",
        execution.error(),
        execution.cause(),
        moto.refresh_log(),
        moto.lambda_logs()
    );
    assert_eq!(execution.status().as_str(), "FAILED", "{explain}");
    let (intervals, _) = refresh_intervals(&moto);
    assert_eq!(
        intervals.keys().collect::<Vec<_>>(),
        ["f-a", "f-b"],
        "nothing starts after the second failure: {explain}"
    );
    let items = rollout_items(&config, "r-budget-spent").await;
    assert_eq!(
        statuses(&items, &["f-a", "f-b", "f-c", "f-d"]),
        ["Failed", "Failed", "Planned", "Planned"],
        "{items:?}"
    );
    let message = items["#rollout"].message.clone().unwrap_or_default();
    assert!(message.starts_with("2 of 4 ASGs failed"), "{message}");
    assert!(message.contains("not started: f-c, f-d"), "{message}");
    assert_eq!(lock_holder(&config).await, None);
}
