//! Rollouts end to end: `xtask deploy` of the local stack (or a variant of it) to the
//! extended emulator, fleets whose refreshes take chosen times or fail, and executions of
//! the deployed state machine driving the real Lambda binaries. Each test asserts on the
//! emulator's refresh log (what really started and ended, and when) and on the rollout
//! table, never on log text. Every wait is bounded; each test has its own emulator.

mod e2e;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use asg_refresh_tests::Moto;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use e2e::*;
use serde_json::json;

const NEW_AMI: &str = "ami-0fedcba9876543210";

fn assert_succeeded(execution: &DescribeExecutionOutput, moto: &Moto) {
    assert_execution(execution, "SUCCEEDED", moto);
}

/// Asserts that the execution failed.
fn assert_failed(execution: &DescribeExecutionOutput, moto: &Moto) {
    assert_execution(execution, "FAILED", moto);
}

/// Asserts that each ASG of the log refreshed exactly once, successfully.
fn assert_each_refreshed_once(intervals: &BTreeMap<String, Vec<Interval>>) {
    for asg in intervals.keys() {
        refreshed_once(intervals, asg);
    }
}

/// Asserts that the rollout's summary (`#rollout`) says `status` and the lock is released.
async fn assert_ended_unlocked(
    config: &aws_config::SdkConfig,
    items: &BTreeMap<String, TableItem>,
    status: &str,
) {
    assert_eq!(items["#rollout"].status, status, "{:?}", items["#rollout"]);
    assert_eq!(lock_holder(config).await, None, "the lock is released");
}

/// The ASG names of the log, sorted.
fn started(intervals: &BTreeMap<String, Vec<Interval>>) -> Vec<String> {
    intervals.keys().cloned().collect()
}

/// a. `strategy = "batches"` over a 14-name fleet: 12 eligible ASGs refreshing for 1 to 8 s,
/// one at capacity 0 and one named in `targets.asgs` that does not exist.
#[tokio::test(flavor = "multi_thread")]
async fn batches_refresh_every_eligible_asg_once_and_wave_after_wave() {
    let (moto, config) = start_emulator().await;
    // Waves are made from the sorted names: the slow refreshes share wave 1.
    let fleet_seconds = [
        ("b-01", "1"),
        ("b-02", "4"),
        ("b-03", "2"),
        ("b-04", "8"),
        ("b-05", "6"),
        ("b-06", "7"),
        ("b-07", "3"),
        ("b-08", "5"),
        ("b-09", "1"),
        ("b-10", "2"),
        ("b-11", "4"),
        ("b-12", "3"),
    ];
    demo_fleet(&config, &fleet_seconds).await;
    demo_fleet(&config, &[("b-zero", "1")]).await;
    set_capacity(&config, "b-zero", 0).await;
    deploy_local_variant(
        &moto,
        "batches",
        &[
            ("[targets]\n", "[targets]\nasgs = [\"b-ghost\"]\n"),
            ("strategy = \"window\"", "strategy = \"batches\""),
        ],
    );
    let execution = run_rollout(&moto, &config, "r-batches", NEW_AMI).await;
    assert_succeeded(&execution, &moto);

    let eligible: Vec<String> = fleet_seconds.iter().map(|(a, _)| a.to_string()).collect();
    let (intervals, now) = refresh_intervals(&moto);
    // Every eligible ASG refreshed exactly once, successfully; nothing else started.
    assert_eq!(started(&intervals), eligible, "{intervals:?}");
    assert_each_refreshed_once(&intervals);
    let most = max_in_flight(&intervals, now);
    assert!(
        most <= 3,
        "{most} refreshes in flight at once, batch_size is 3: {intervals:?}"
    );

    let items = rollout_items(&config, "r-batches").await;
    // Waves as the planner recorded them: 4 waves of 3, in name order.
    let mut waves: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for asg in &eligible {
        let item = items
            .get(asg)
            .unwrap_or_else(|| panic!("{asg} is not in the table: {items:?}"));
        assert_eq!(item.status, "Successful", "{asg}: {item:?}");
        assert_eq!(
            item.refresh_id.as_deref(),
            Some(intervals[asg][0].refresh_id.as_str()),
            "{asg}"
        );
        waves
            .entry(item.wave.unwrap_or_else(|| panic!("{asg} has no wave")))
            .or_default()
            .push(asg.clone());
    }
    let expected: Vec<Vec<String>> = eligible.chunks(3).map(|c| c.to_vec()).collect();
    assert_eq!(
        waves.values().cloned().collect::<Vec<_>>(),
        expected,
        "waves"
    );
    assert_eq!(waves.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
    // The barrier: no ASG of wave k+1 starts before every ASG of wave k has ended.
    let wave_list: Vec<&Vec<String>> = waves.values().collect();
    for pair in wave_list.windows(2) {
        let last_end = pair[0]
            .iter()
            .map(|a| intervals[a][0].end.expect("ended"))
            .fold(f64::MIN, f64::max);
        let first_start = pair[1]
            .iter()
            .map(|a| intervals[a][0].start)
            .fold(f64::MAX, f64::min);
        assert!(
            first_start >= last_end,
            "wave {:?} started at {first_start} before wave {:?} ended at {last_end}",
            pair[1],
            pair[0]
        );
    }
    // Each refreshed group now runs a launch template version with the new AMI.
    for asg in &eligible {
        assert_eq!(
            group_image(&config, asg).await.as_deref(),
            Some(NEW_AMI),
            "{asg}"
        );
    }
    // The capacity-0 and the missing ASG are skipped, saying why; neither was touched.
    let zero = &items["b-zero"];
    assert_eq!(zero.status, "Skipped", "{zero:?}");
    assert!(
        zero.reason
            .as_deref()
            .is_some_and(|r| r.contains("desired capacity is 0")),
        "{zero:?}"
    );
    assert_eq!(
        group_image(&config, "b-zero").await.as_deref(),
        Some(OLD_AMI)
    );
    let ghost = &items["b-ghost"];
    assert_eq!(ghost.status, "Skipped", "{ghost:?}");
    assert!(
        ghost
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("no Auto Scaling group has this name")),
        "{ghost:?}"
    );
    assert_ended_unlocked(&config, &items, "Succeeded").await;
}

/// b. `strategy = "window"` (envs/local.toml as is): when the 1 s refresh ends, the 4th ASG
/// starts at once, while the two 15 s refreshes still run.
#[tokio::test(flavor = "multi_thread")]
async fn window_starts_the_next_asg_as_soon_as_a_slot_frees() {
    let (moto, config) = start_emulator().await;
    demo_fleet(
        &config,
        &[
            ("w-a", "1"),
            ("w-b", "15"),
            ("w-c", "15"),
            ("w-d", "2"),
            ("w-e", "2"),
        ],
    )
    .await;
    deploy_local(&moto, None);
    let execution = run_rollout(&moto, &config, "r-window", NEW_AMI).await;
    assert_succeeded(&execution, &moto);

    let (intervals, now) = refresh_intervals(&moto);
    assert_eq!(started(&intervals), ["w-a", "w-b", "w-c", "w-d", "w-e"]);
    assert_each_refreshed_once(&intervals);
    let most = max_in_flight(&intervals, now);
    assert_eq!(
        most, 3,
        "the window holds batch_size (3) refreshes, no more and no fewer: {intervals:?}"
    );
    let one = |asg: &str| intervals[asg][0].clone();
    let mut order: Vec<(f64, &str)> = ["w-a", "w-b", "w-c", "w-d", "w-e"]
        .iter()
        .map(|a| (one(a).start, *a))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first_three: BTreeSet<&str> = order[..3].iter().map(|(_, a)| *a).collect();
    assert_eq!(
        first_three,
        BTreeSet::from(["w-a", "w-b", "w-c"]),
        "the window fills in name order: {order:?}"
    );
    assert_eq!(order[3].1, "w-d", "{order:?}");
    let fourth = one("w-d").start;
    let freed = one("w-a").end.expect("w-a ended");
    let long_end = one("w-b")
        .end
        .expect("ended")
        .min(one("w-c").end.expect("ended"));
    assert!(
        fourth >= freed,
        "w-d started at {fourth} before a slot freed at {freed}"
    );
    assert!(
        fourth < long_end,
        "w-d started at {fourth}, not before the 15 s refreshes ended at {long_end}: the window waited for the whole batch"
    );
    let items = rollout_items(&config, "r-window").await;
    for asg in ["w-a", "w-b", "w-c", "w-d", "w-e"] {
        assert_eq!(items[asg].status, "Successful", "{asg}: {:?}", items[asg]);
        assert_eq!(
            items[asg].wave,
            Some(0),
            "window: one wave; {asg}: {:?}",
            items[asg]
        );
    }
}

/// `failing` (refresh group "demo") whose refresh fails after 1 s, and the demo fleet
/// `others` (name and refresh seconds).
async fn failing_first_fleet(
    config: &aws_config::SdkConfig,
    failing: &str,
    others: &[(&str, &str)],
) {
    fleet(
        config,
        failing,
        &[
            ("refresh-group", "demo"),
            ("emulator:refresh-seconds", "1"),
            ("emulator:refresh-outcome", "Failed"),
        ],
    )
    .await;
    demo_fleet(config, others).await;
}

/// [`failing_first_fleet`], envs/local.toml deployed with batches and `on_failure`, and
/// the rollout `rollout_id` run to its end.
async fn failing_first_rollout(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    failing: &str,
    others: &[(&str, &str)],
    on_failure: &str,
    rollout_id: &str,
) -> DescribeExecutionOutput {
    failing_first_fleet(config, failing, others).await;
    deploy_local_variant(
        moto,
        rollout_id,
        &[
            ("strategy = \"window\"", "strategy = \"batches\""),
            (
                "on_failure = \"continue\"",
                &format!("on_failure = \"{on_failure}\""),
            ),
        ],
    );
    run_rollout(moto, config, rollout_id, NEW_AMI).await
}

/// c. `on_failure = "rollback"`: one ASG fails in 1 s while two others refresh for 60 s;
/// those two are rolled back, the execution fails and wave 1 never starts.
#[tokio::test(flavor = "multi_thread")]
async fn rollback_policy_rolls_back_what_is_in_flight_and_starts_nothing_more() {
    let (moto, config) = start_emulator().await;
    let others = &[("r-b", "60"), ("r-c", "60"), ("r-d", "1"), ("r-e", "1")];
    let execution =
        failing_first_rollout(&moto, &config, "r-a", others, "rollback", "r-rollback").await;
    assert_failed(&execution, &moto);
    assert_eq!(
        execution.error(),
        Some("RolloutFailed"),
        "{}",
        explain(&execution, &moto)
    );

    // The execution ends only once the rollbacks have (the emulator's 2 s).
    let (intervals, _) = refresh_intervals(&moto);
    assert_eq!(
        started(&intervals),
        ["r-a", "r-b", "r-c"],
        "nothing of wave 1 starts: {intervals:?}"
    );
    for asg in ["r-a", "r-b", "r-c"] {
        assert!(
            intervals[asg].iter().all(|i| i.end.is_some()),
            "{asg} still running when the execution ended: {intervals:?}"
        );
    }
    let failed = &intervals["r-a"];
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].status.as_deref(), Some("Failed"));
    assert_eq!(
        failed[0].rollback, None,
        "a failed refresh is not rolled back again"
    );
    for asg in ["r-b", "r-c"] {
        let list = &intervals[asg];
        assert_eq!(list.len(), 1, "{asg}: {list:?}");
        let refresh = &list[0];
        let rollback = refresh
            .rollback
            .unwrap_or_else(|| panic!("{asg} was not rolled back: {refresh:?}"));
        assert!(
            rollback >= failed[0].end.expect("ended"),
            "{asg} rolled back before r-a failed"
        );
        assert!(
            rollback < refresh.start + 60.0,
            "{asg} rolled back only after it would have ended"
        );
        assert_eq!(
            refresh.status.as_deref(),
            Some("RollbackSuccessful"),
            "{asg}: {refresh:?}"
        );
        assert_eq!(
            group_image(&config, asg).await.as_deref(),
            Some(OLD_AMI),
            "{asg} stays on the old image"
        );
    }

    let items = rollout_items(&config, "r-rollback").await;
    assert_eq!(items["r-a"].status, "Failed", "{:?}", items["r-a"]);
    for asg in ["r-b", "r-c"] {
        let item = &items[asg];
        // The execution waited for the rollback to end and recorded how it ended, keeping why.
        assert_eq!(item.status, "RollbackSuccessful", "{asg}: {item:?}");
        let reason = item.reason.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with("rolled back by the failure policy"),
            "{asg}: {item:?}"
        );
        assert_eq!(
            item.refresh_id.as_deref(),
            Some(intervals[asg][0].refresh_id.as_str()),
            "{asg}"
        );
    }
    for asg in ["r-d", "r-e"] {
        assert_eq!(
            items[asg].status, "Planned",
            "{asg} never started: {:?}",
            items[asg]
        );
        assert_eq!(items[asg].wave, Some(1), "{asg}: {:?}", items[asg]);
    }
    assert_ended_unlocked(&config, &items, "Failed").await;
}

/// d. A failed rollout (`on_failure = "stop"`) run again under the same rollout id, once the
/// failing ASG is fixed: only what is not yet refreshed starts, and the rollout succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_of_a_failed_rollout_starts_only_what_is_not_refreshed_yet() {
    let (moto, config) = start_emulator().await;
    let others = &[("d-b", "2"), ("d-c", "2"), ("d-d", "2"), ("d-e", "2")];
    let first = failing_first_rollout(&moto, &config, "d-a", others, "stop", "r-rerun").await;
    assert_failed(&first, &moto);
    assert_eq!(first.error(), Some("RolloutFailed"));
    let intervals =
        wait_refreshes_ended(&moto, &["d-a", "d-b", "d-c"], Duration::from_secs(30)).await;
    assert_eq!(
        started(&intervals),
        ["d-a", "d-b", "d-c"],
        "wave 1 must not start after wave 0 failed"
    );
    let done_in_first: BTreeSet<String> = intervals
        .iter()
        .filter(|(_, list)| {
            list.iter()
                .any(|i| i.status.as_deref() == Some("Successful"))
        })
        .map(|(asg, _)| asg.clone())
        .collect();
    assert_eq!(
        done_in_first,
        BTreeSet::from(["d-b".to_string(), "d-c".to_string()])
    );
    let items = rollout_items(&config, "r-rerun").await;
    assert_eq!(items["d-a"].status, "Failed", "{:?}", items["d-a"]);

    // Fix d-a, then run the same rollout again under a new execution name.
    set_tag(&config, "d-a", "emulator:refresh-outcome", "Successful").await;
    let (_, second_began) = refresh_intervals(&moto);
    let second = run_rollout_as(&moto, &config, "r-rerun-2", "r-rerun", NEW_AMI).await;
    assert_succeeded(&second, &moto);

    let (intervals, _) = refresh_intervals(&moto);
    let started_in_second: BTreeSet<&str> = intervals
        .iter()
        .filter(|(_, list)| list.iter().any(|i| i.start > second_began))
        .map(|(asg, _)| asg.as_str())
        .collect();
    assert_eq!(
        started_in_second,
        BTreeSet::from(["d-a", "d-d", "d-e"]),
        "the re-run starts only what is not refreshed yet: {intervals:?}"
    );
    for asg in ["d-b", "d-c", "d-d", "d-e"] {
        assert_eq!(
            intervals[asg].len(),
            1,
            "{asg} refreshed once in all: {:?}",
            intervals[asg]
        );
    }
    let a = &intervals["d-a"];
    assert_eq!(
        a.iter().map(|i| i.status.as_deref()).collect::<Vec<_>>(),
        [Some("Failed"), Some("Successful")],
        "d-a: failed, then refreshed by the re-run: {a:?}"
    );
    let items = rollout_items(&config, "r-rerun").await;
    for asg in ["d-a", "d-b", "d-c", "d-d", "d-e"] {
        assert_eq!(items[asg].status, "Successful", "{asg}: {:?}", items[asg]);
        assert_eq!(
            group_image(&config, asg).await.as_deref(),
            Some(NEW_AMI),
            "{asg}"
        );
    }
    assert_eq!(
        items["d-a"].refresh_id.as_deref(),
        Some(a[1].refresh_id.as_str()),
        "the table follows the new refresh"
    );
    assert_ended_unlocked(&config, &items, "Succeeded").await;
}

/// e. While rollout A runs (20 s refreshes), rollout B of the same stack is refused with
/// RolloutLocked and starts nothing; A succeeds and releases the lock.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_rollout_is_refused_while_one_runs() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("l-a", "20"), ("l-b", "20")]).await;
    deploy_local(&moto, None);
    let a = start_rollout(&config, "r-lock-a", "r-lock-a", NEW_AMI).await;
    // Wait (bounded) until A holds the lock and both of its refreshes run.
    let a_runs = || async {
        let (intervals, _) = refresh_intervals(&moto);
        if intervals.len() == 2 && lock_holder(&config).await.as_deref() == Some("r-lock-a") {
            Ok(())
        } else {
            Err(intervals)
        }
    };
    poll(
        Duration::from_secs(60),
        Duration::from_millis(250),
        a_runs,
        |intervals| {
            format!(
                "rollout A did not start its refreshes within 60 s: {intervals:?}\n{}",
                moto.lambda_logs()
            )
        },
    )
    .await;
    let b = run_rollout(&moto, &config, "r-lock-b", NEW_AMI).await;
    assert_eq!(b.status().as_str(), "FAILED", "{}", explain(&b, &moto));
    assert_eq!(b.error(), Some("RolloutLocked"), "{}", explain(&b, &moto));
    let a_meanwhile = aws_sdk_sfn::Client::new(&config)
        .describe_execution()
        .execution_arn(&a)
        .send()
        .await
        .expect("describe A");
    assert_eq!(
        a_meanwhile.status().as_str(),
        "RUNNING",
        "B must have been refused while A ran"
    );
    assert!(
        rollout_items(&config, "r-lock-b").await.is_empty(),
        "B recorded nothing"
    );
    assert_eq!(
        lock_holder(&config).await.as_deref(),
        Some("r-lock-a"),
        "B leaves A's lock alone"
    );

    let a = wait_execution(&moto, &config, &a, EXECUTION_DEADLINE).await;
    assert_succeeded(&a, &moto);
    let (intervals, _) = refresh_intervals(&moto);
    assert_eq!(
        started(&intervals),
        ["l-a", "l-b"],
        "B starts no refresh: {intervals:?}"
    );
    let items = rollout_items(&config, "r-lock-a").await;
    for asg in ["l-a", "l-b"] {
        assert_eq!(intervals[asg].len(), 1, "{asg}: {:?}", intervals[asg]);
        assert_eq!(items[asg].status, "Successful", "{asg}: {:?}", items[asg]);
        assert_eq!(
            items[asg].refresh_id.as_deref(),
            Some(intervals[asg][0].refresh_id.as_str()),
            "{asg} was refreshed by A"
        );
    }
    assert_eq!(items["#rollout"].status, "Succeeded");
    assert_eq!(
        lock_holder(&config).await,
        None,
        "the #lock item is gone once A ended"
    );
}

/// f. The refresher's `start` invoked twice with the same event, as a Step Functions retry
/// would (one ASG one after the other, another twice at once): one refresh per ASG.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_start_adopts_the_refresh_it_already_started() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("f-a", "30"), ("f-b", "30")]).await;
    deploy_local(&moto, None);
    // The plan first, as the state machine's Plan state makes it.
    let (error, plan) = invoke(
        &config,
        PLANNER_FUNCTION,
        &json!({
            "rollout_id": "r-retry", "ami": NEW_AMI,
            "targets": {"asgs": ["f-a", "f-b"], "tags": {}},
            "canary": [], "strategy": "window", "batch_size": 3, "max_waves": 100
        }),
    )
    .await;
    assert_eq!(error, None, "plan: {plan}\n{}", moto.lambda_logs());
    // Counts only: the wave's names are in the table, each start names a position.
    assert_eq!(
        (plan["wave_count"].as_u64(), plan["planned"].as_u64()),
        (Some(1), Some(2)),
        "{plan}"
    );
    let start = |asg: &str| {
        let index = if asg == "f-a" { 0 } else { 1 };
        json!({
            "action": "start", "rollout_id": "r-retry", "wave": 0, "index": index, "ami": NEW_AMI,
            "preferences": {
                "min_healthy_percentage": 90, "max_healthy_percentage": 100, "instance_warmup": 0,
                "skip_matching": true, "auto_rollback": true, "alarms": [],
                "checkpoint_percentages": [], "checkpoint_delay": null
            }
        })
    };
    let first = invoke(&config, REFRESHER_FUNCTION, &start("f-a")).await;
    let retry = invoke(&config, REFRESHER_FUNCTION, &start("f-a")).await;
    let event = start("f-b");
    let (one, two) = tokio::join!(
        invoke(&config, REFRESHER_FUNCTION, &event),
        invoke(&config, REFRESHER_FUNCTION, &event)
    );
    let (intervals, _) = refresh_intervals(&moto);
    let items = rollout_items(&config, "r-retry").await;
    for (asg, responses) in [("f-a", [first, retry]), ("f-b", [one, two])] {
        let list = intervals
            .get(asg)
            .unwrap_or_else(|| panic!("{asg} never started: {intervals:?}"));
        assert_eq!(
            list.len(),
            1,
            "{asg}: one refresh, however often start runs: {list:?}"
        );
        for (error, response) in &responses {
            assert_eq!(*error, None, "{asg}: {response}\n{}", moto.lambda_logs());
            assert_eq!(response["asg"], asg, "{response}");
            assert_eq!(response["done"], false, "{response}");
            let status = response["status"].as_str().unwrap_or_default();
            assert!(
                ["Pending", "InProgress"].contains(&status),
                "{asg}: the running refresh, not {response}"
            );
        }
        assert_eq!(
            items[asg].refresh_id.as_deref(),
            Some(list[0].refresh_id.as_str()),
            "{asg}: the table records the one refresh: {:?}",
            items[asg]
        );
        assert!(
            ["Pending", "InProgress"].contains(&items[asg].status.as_str()),
            "{asg}: {:?}",
            items[asg]
        );
        // And one launch template version with the new AMI (fleet made versions 1 and 2).
        let versions = aws_sdk_ec2::Client::new(&config)
            .describe_launch_template_versions()
            .launch_template_name(format!("{asg}-lt"))
            .send()
            .await
            .expect("describe launch template versions");
        let numbers: Vec<i64> = versions
            .launch_template_versions()
            .iter()
            .filter_map(|v| v.version_number())
            .collect();
        assert_eq!(
            numbers.len(),
            3,
            "{asg}: one new launch template version, however often start runs: {numbers:?}"
        );
    }
}

/// g. The bounded-state shape with the real binaries: six ASGs with 120-character names (a
/// launch template name, `<asg>-lt`, takes at most 128) in one window wave. Every ASG is
/// refreshed once; no ASG name travels through the parent's states (`Plan` returns counts,
/// `SelectWave` positions), and each child reads its name from the table.
#[tokio::test(flavor = "multi_thread")]
async fn long_names_travel_through_the_table_not_the_state() {
    let (moto, config) = start_emulator().await;
    let names: Vec<String> = (0..6)
        .map(|i| {
            let head = format!("long-{i}-");
            format!("{head}{}", "n".repeat(120 - head.len()))
        })
        .collect();
    let fleet: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    demo_fleet(&config, &fleet).await;
    deploy_local(&moto, None);
    let execution = run_rollout(&moto, &config, "r-long", NEW_AMI).await;
    assert_succeeded(&execution, &moto);
    let (intervals, _) = refresh_intervals(&moto);
    assert_eq!(started(&intervals), names, "every ASG refreshed");
    for (asg, list) in &intervals {
        assert_eq!(list.len(), 1, "{asg}: {list:?}");
    }
    let items = rollout_items(&config, "r-long").await;
    for asg in &names {
        assert_eq!(items[asg].status, "Successful", "{asg}: {:?}", items[asg]);
    }
    // The parent's history: the inputs and outputs of its states hold no ASG name.
    let sfn = aws_sdk_sfn::Client::new(&config);
    let arn = execution.execution_arn();
    let mut token = None;
    let mut wave_items = Vec::new();
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(arn)
            .set_next_token(token)
            .send()
            .await
            .expect("history");
        for event in page.events() {
            let text = format!("{event:?}");
            for asg in &names {
                assert!(
                    !text.contains(asg.as_str()),
                    "the parent's history carries {asg}: {text}"
                );
            }
            if let Some(exited) = event
                .state_exited_event_details()
                .filter(|d| d.name() == "SelectWave")
            {
                let output: serde_json::Value =
                    serde_json::from_str(exited.output().unwrap_or("{}")).expect("JSON");
                wave_items.push(output["current"]["items"].clone());
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        wave_items,
        vec![json!([0, 1, 2, 3, 4, 5])],
        "one window wave of six positions"
    );
}
