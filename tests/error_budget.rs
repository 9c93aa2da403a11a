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

/// What a rollout under `max_failures = 1` did.
struct Outcome {
    /// The execution's error.
    error: Option<String>,
    /// The ASGs it started a refresh of, in name order.
    started: Vec<String>,
    /// The table's status of each ASG, `failing` then `ok`.
    statuses: Vec<String>,
    /// The summary's message.
    message: String,
    /// The whole table, for a failed assertion.
    items: BTreeMap<String, TableItem>,
    /// The execution, the refresh log and the Lambdas' logs, for a failed assertion.
    explain: String,
}

impl Outcome {
    /// Asserts that the rollout started exactly `started` (in name order) and left the table's
    /// ASGs (`failing` then `ok`) with `statuses`.
    #[track_caller]
    fn assert_ran(&self, started: &[&str], statuses: &[&str], what: &str) {
        assert_eq!(self.started, started, "{what}: {}", self.explain);
        assert_eq!(self.statuses, statuses, "{:?}", self.items);
    }
}

/// Runs rollout `rollout` of `failing` then `ok` ASGs (see [`fleet_with_failures`]) under
/// `max_failures = 1`; asserts that it failed (any failure fails the execution at its end)
/// and released the lock.
async fn budget_rollout(failing: &[&str], ok: &[&str], rollout: &str) -> Outcome {
    let (moto, config) = start_emulator().await;
    fleet_with_failures(&config, failing, ok).await;
    deploy_budget(&moto, "1");
    let execution = run_rollout(&moto, &config, rollout, NEW_AMI).await;
    let explain = explain(&execution, &moto);
    assert_execution(&execution, "FAILED", &moto);
    let (intervals, _) = refresh_intervals(&moto);
    let items = rollout_items(&config, rollout).await;
    let asgs = failing.iter().chain(ok);
    let outcome = Outcome {
        error: execution.error().map(str::to_string),
        started: intervals.into_keys().collect(),
        statuses: asgs.map(|a| items[*a].status.clone()).collect(),
        message: items["#rollout"].message.clone().unwrap_or_default(),
        explain,
        items,
    };
    assert_eq!(lock_holder(&config).await, None);
    outcome
}

/// `max_failures = 1`, one ASG fails: the rollout goes on and refreshes every other ASG; it
/// ends with that one failure counted.
#[tokio::test(flavor = "multi_thread")]
async fn one_failure_within_a_budget_of_one_lets_the_rollout_go_on() {
    let outcome = budget_rollout(&["e-a"], &["e-b", "e-c", "e-d"], "r-budget-ok").await;
    let explain = &outcome.explain;
    // The budget only lets the rollout go on.
    assert_eq!(outcome.error.as_deref(), Some("RolloutFailed"), "{explain}");
    outcome.assert_ran(
        &["e-a", "e-b", "e-c", "e-d"],
        &["Failed", "Successful", "Successful", "Successful"],
        "every ASG started after the tolerated failure",
    );
    let message = &outcome.message;
    assert!(message.starts_with("1 of 4 ASGs failed: e-a"), "{message}");
    assert!(!message.contains("not started"), "{message}");
}

/// `max_failures = 1`, two ASGs fail: the rollout stops at the second failure; the ASGs after
/// it never start.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_failure_past_a_budget_of_one_stops_the_rollout() {
    let outcome = budget_rollout(&["f-a", "f-b"], &["f-c", "f-d"], "r-budget-spent").await;
    outcome.assert_ran(
        &["f-a", "f-b"],
        &["Failed", "Failed", "Planned", "Planned"],
        "nothing starts after the second failure",
    );
    let message = &outcome.message;
    assert!(message.starts_with("2 of 4 ASGs failed"), "{message}");
    assert!(message.contains("not started: f-c, f-d"), "{message}");
}
