//! Event-driven completion end to end (`[rollout] completion = "events"`): the local stack
//! deployed with the completer, its EventBridge rule and permission to the extended emulator,
//! which emits EC2 Auto Scaling's instance-refresh events and delivers them (best effort,
//! with the loss and delay a test sets) to the completer. Each test asserts on the refresh
//! log (each ASG refreshed exactly once), the rollout table and the emulator's statistics
//! (who called DescribeInstanceRefreshes for which ASG), never on log text or times alone.

mod e2e;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use asg_refresh_tests::Moto;
use e2e::fleet::{
    breaches, create_fleet, deploy_shape, run_rollout_measured, Completion, Figures, Rollout, Run,
    Shape, Strategy,
};
use e2e::{sdk_config, set_tag, REFRESHER_FUNCTION};
use serde_json::{json, Value};

const NEW_AMI: &str = "ami-0fedcba9876543210";
const COMPLETER_FUNCTION: &str = "asg-refresh-local-completer";
const SUCCEEDED: &str = "EC2 Auto Scaling Instance Refresh Succeeded";

/// An events stack: window of `batch_size`, `timeout_minutes` (the wait for an event times
/// out after a third of it, then checks once by polling).
fn shape(batch_size: u32, timeout_minutes: u32) -> Shape {
    Shape {
        completion: Completion::Events,
        strategy: Strategy::Window,
        batch_size,
        poll_seconds: 5,
        timeout_minutes,
    }
}

/// Makes the fleet, deploys `shape`, sets the event delivery and runs one rollout (at most
/// `seconds`), which must breach none of the checks.
async fn clean_rollout(
    moto: &Moto,
    groups: &[(String, f64)],
    shape: Shape,
    delivery: Value,
    seconds: u64,
) -> Run {
    let deadline = Duration::from_secs(seconds);
    let (run, figures) = rollout_failing(moto, groups, &[], shape, delivery, deadline).await;
    assert_clean(moto, &run, &figures);
    run
}

/// Makes the fleet (the refreshes of `failing` ending Failed), deploys `shape`, sets the
/// event delivery and runs one rollout.
async fn rollout_failing(
    moto: &Moto,
    groups: &[(String, f64)],
    failing: &[&str],
    shape: Shape,
    delivery: Value,
    deadline: Duration,
) -> (Run, Figures) {
    let config = sdk_config(moto).await;
    create_fleet(&config, groups, false).await;
    for asg in failing {
        set_tag(&config, asg, "emulator:refresh-outcome", "Failed").await;
    }
    deploy_shape(moto, &shape);
    moto.set_events(&delivery);
    moto.clear_stats();
    let rollout = Rollout {
        shape,
        fleet: groups,
        id: "r-events",
        ami: NEW_AMI,
    };
    let run = run_rollout_measured(moto, &config, &rollout, deadline, None).await;
    let figures = Figures::of(&run);
    (run, figures)
}

fn assert_clean(moto: &Moto, run: &Run, figures: &Figures) {
    let found = breaches(run, figures);
    assert!(
        found.is_empty(),
        "{found:#?}\nevents: {}\nlambda logs:\n{}",
        moto.events(),
        moto.lambda_logs()
    );
}

/// Asserts that each of `asgs` was described (checked) at least once; `why` it should be.
fn assert_each_checked(moto: &Moto, asgs: &[String], why: &str) {
    let described = describes(moto);
    for asg in asgs {
        assert!(
            described.get(asg).copied().unwrap_or(0) >= 1,
            "{asg} {why}: {described:?}"
        );
    }
}

/// DescribeInstanceRefreshes per ASG, whoever called it.
fn describes(moto: &Moto) -> BTreeMap<String, u64> {
    moto.stats()["by_asg"]["DescribeInstanceRefreshes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(asg, n)| (asg.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Calls of `operation` (`service:Operation`) made by the function `function` (its role's
/// session is named after it).
fn calls_by(moto: &Moto, function: &str, operation: &str) -> u64 {
    moto.stats()["by_caller"]
        .as_object()
        .expect("by_caller")
        .iter()
        .filter(|(caller, _)| caller.ends_with(&format!("/{function}")))
        .filter_map(|(_, calls)| calls[operation].as_u64())
        .sum()
}

/// The ASGs whose Succeeded event reached no target (dropped by the emulator's loss).
fn lost_successes(moto: &Moto) -> Vec<String> {
    let events = moto.events();
    let mut lost: Vec<String> = events["log"]
        .as_array()
        .expect("the events' log")
        .iter()
        .filter(|e| e["detail-type"] == SUCCEEDED)
        .filter(|e| {
            e["deliveries"]
                .as_array()
                .is_some_and(|d| !d.iter().any(|d| d["outcome"] == "delivered"))
        })
        .filter_map(|e| e["asg"].as_str().map(str::to_string))
        .collect();
    lost.sort();
    lost
}

fn groups(prefix: &str, seconds: &[f64]) -> Vec<(String, f64)> {
    seconds
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{prefix}-{i:02}"), *s))
        .collect()
}

/// With every event delivered, each child waits for its event instead of polling: refreshes
/// of 8 to 12 s under `poll_seconds = 5` would cost a poller two checks or more per ASG; here
/// no ASG is described more than once (the wait's own check of a refresh that already ended).
#[tokio::test(flavor = "multi_thread")]
async fn events_complete_each_asg_without_polling() {
    let moto = Moto::start_extended();
    let fleet = groups("ev", &[8.0, 12.0, 9.0, 11.0, 10.0, 8.5]);
    let delivery = json!({"delay_ms": 200, "seed": 1});
    clean_rollout(&moto, &fleet, shape(3, 10), delivery, 240).await;
    let described = describes(&moto);
    for (asg, _) in &fleet {
        let n = described.get(asg).copied().unwrap_or(0);
        assert!(
            n <= 1,
            "{asg} was described {n} times: the child polled ({described:?})"
        );
    }
    let answered = calls_by(&moto, COMPLETER_FUNCTION, "states:SendTaskSuccess");
    assert!(
        answered >= 1,
        "the completer answered the waits: {}",
        moto.stats()["by_caller"]
    );
    let events = moto.events();
    let delivered: u64 = events["by_rule"]
        .as_object()
        .expect("by_rule")
        .values()
        .filter_map(|r| r["delivered"].as_u64())
        .sum();
    assert!(
        delivered >= fleet.len() as u64,
        "every ASG's Succeeded event was delivered: {events}"
    );
}

/// 20 % of the events are lost (seeded): every ASG still completes, exactly once, those whose
/// Succeeded event was lost through the check after their wait timed out.
#[tokio::test(flavor = "multi_thread")]
async fn a_fifth_of_the_events_lost_still_completes_every_asg_once() {
    let moto = Moto::start_extended();
    let seconds: Vec<f64> = (0..12).map(|i| 1.0 + f64::from(i % 4)).collect();
    let fleet = groups("loss", &seconds);
    // timeout_minutes = 1: a wait times out after 20 s.
    let delivery = json!({"loss": 0.2, "seed": 7});
    clean_rollout(&moto, &fleet, shape(6, 1), delivery, 300).await;
    let lost = lost_successes(&moto);
    assert!(
        !lost.is_empty(),
        "seed 7 loses at least one Succeeded event: {}",
        moto.events()
    );
    assert_each_checked(&moto, &lost, "lost its event and was completed by a check");
}

/// Every event lost: each ASG completes, exactly once, through the check after its wait.
#[tokio::test(flavor = "multi_thread")]
async fn every_event_lost_still_completes_every_asg_once() {
    let moto = Moto::start_extended();
    let fleet = groups("dark", &[1.0, 2.0, 3.0, 2.0]);
    let delivery = json!({"loss": 1.0, "seed": 3});
    clean_rollout(&moto, &fleet, shape(4, 1), delivery, 240).await;
    assert_eq!(
        lost_successes(&moto).len(),
        fleet.len(),
        "{}",
        moto.events()
    );
    let every: Vec<String> = fleet.iter().map(|(asg, _)| asg.clone()).collect();
    assert_each_checked(&moto, &every, "lost its event");
}

/// The race: refreshes of 0 s end (and their Succeeded events go out) before the child has
/// stored its task token. Each child still completes, once, without waiting for its wait to
/// time out (200 s here): the token's store finds the end already recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_ended_before_its_token_was_stored_completes() {
    let moto = Moto::start_extended();
    let fleet = groups("race", &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let started = Instant::now();
    let delivery = json!({"seed": 5});
    let run = clean_rollout(&moto, &fleet, shape(3, 10), delivery, 240).await;
    // The store-token step found the end recorded and answered its own token.
    let by_refresher = calls_by(&moto, REFRESHER_FUNCTION, "states:SendTaskSuccess");
    eprintln!(
        "SendTaskSuccess: refresher {by_refresher}, completer {}",
        calls_by(&moto, COMPLETER_FUNCTION, "states:SendTaskSuccess")
    );
    assert!(
        by_refresher >= 1,
        "no refresh ended before its token was stored: {}",
        moto.stats()["by_caller"]
    );
    assert!(
        run.wall_seconds < 100.0,
        "the rollout took {:.0} s: a child waited for its wait to time out (200 s) ({:.0} s with the fleet and deploy)",
        run.wall_seconds,
        started.elapsed().as_secs_f64()
    );
}

/// A refresh that ends Failed on the events path: its Failed event reaches the completer,
/// which fails the child's wait (SendTaskFailure), and the one check after it records AWS's
/// reason; the child is never polled before that. `on_failure = "continue"` (envs/local.toml):
/// the other ASGs refresh once each and the execution fails for the one that did.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_refresh_fails_its_wait_through_its_event() {
    let moto = Moto::start_extended();
    let fleet = groups("fail", &[8.0, 9.0, 10.0, 8.5]);
    let failing = fleet[1].0.clone();
    let (run, _) = rollout_failing(
        &moto,
        &fleet,
        &[failing.as_str()],
        shape(2, 10),
        json!({"delay_ms": 200, "seed": 3}),
        Duration::from_secs(240),
    )
    .await;
    let logs = || {
        format!(
            "events: {}\nlambda logs:\n{}",
            moto.events(),
            moto.lambda_logs()
        )
    };
    assert_eq!(
        run.status,
        "FAILED",
        "{:?} {:?}\n{}",
        run.error,
        run.cause,
        logs()
    );
    for (asg, _) in &fleet {
        let refreshes = run.intervals.get(asg).map_or(0, Vec::len);
        assert_eq!(
            refreshes,
            1,
            "{asg} was refreshed {refreshes} times\n{}",
            logs()
        );
        let item = run.items.get(asg).expect("every ASG has its record");
        if *asg == failing {
            assert_eq!(item.status, "Failed", "{item:?}");
            assert!(
                item.reason.as_deref().is_some_and(|r| !r.is_empty()),
                "the check recorded AWS's reason: {item:?}"
            );
        } else {
            assert_eq!(item.status, "Successful", "{asg}: {item:?}");
        }
    }
    let failures = calls_by(&moto, COMPLETER_FUNCTION, "states:SendTaskFailure");
    assert!(
        failures >= 1,
        "the completer failed the wait: {}\n{}",
        moto.stats()["by_caller"],
        logs()
    );
    // Described once, by the check after the event: not polled while it ran.
    let described = describes(&moto).get(&failing).copied().unwrap_or(0);
    assert_eq!(described, 1, "{failing} was described {described} times");
}
