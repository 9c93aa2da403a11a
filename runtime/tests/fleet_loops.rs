//! Every loop over the fleet that runs inside one Lambda invocation (the planner's
//! pre-checks, pins and records; the refresher's rollback, settle and finish), timed at
//! 2,000 ASGs on the extended emulator with an AWS-like latency on every call, against the
//! functions' default timeouts (`[lambda] planner_timeout_seconds` and `timeout_seconds`).
//! Ignored by default: the fleet takes minutes to create.
//! `cargo xtask bench --fleet-loops` runs it and prints the figures.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{DesiredConfiguration, LaunchTemplateSpecification};
use common::{plan_request, Emulator};
use generator::config::Strategy;
use generator::payload::{AsgStatus, Outcome, PlanRequest};
use runtime::refresher::Refresher;
use runtime::store::AsgRecord;
use serde_json::json;

const ROLLOUT: &str = "r-fleet-loops";
/// The default timeouts of the planner and of the refresher.
fn timeouts() -> (Duration, Duration) {
    let lambda = generator::config::LambdaSettings::default();
    (
        Duration::from_secs(lambda.planner_timeout_seconds.into()),
        Duration::from_secs(lambda.timeout_seconds.into()),
    )
}
/// Latency added to every call, per service: DynamoDB answers in single-digit
/// milliseconds inside a region; the query APIs of Auto Scaling, EC2, ELB and IAM take
/// tens of milliseconds. Slower than AWS usually is, so the figures err on the safe side.
const LATENCY_MS: [(&str, u64); 5] = [
    ("dynamodb", 10),
    ("autoscaling", 60),
    ("ec2", 60),
    ("elasticloadbalancing", 60),
    ("iam", 60),
];

fn fleet_size() -> usize {
    std::env::var("ASG_REFRESH_FLEET_LOOPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

fn set_latency(emulator: &Emulator, on: bool) {
    let rules: Vec<_> = LATENCY_MS
        .iter()
        .filter(|_| on)
        .map(|(service, ms)| json!({"service": service, "latency_ms": ms}))
        .collect();
    emulator.moto.set_faults(&json!({ "rules": rules }));
}

fn report(what: &str, took: Duration, timeout: Duration) {
    println!(
        "{what:<48} {:>7.1} s  {:>5.1}% of its {} s timeout",
        took.as_secs_f64(),
        took.as_secs_f64() * 100.0 / timeout.as_secs_f64(),
        timeout.as_secs()
    );
}

#[tokio::test]
#[ignore = "minutes of setup: run by `cargo xtask bench --fleet-loops`"]
async fn fleet_loops_fit_the_function_timeout() {
    let count = fleet_size();
    let (planner_timeout, refresher_timeout) = timeouts();
    let emulator = Emulator::start_extended().await;
    let ami = emulator.existing_ami().await;
    let began = Instant::now();
    for i in 0..count {
        let name = format!("fleet-{i:05}");
        // Each group behind its own target group, whose health the planner reads; each on
        // `$Latest`, which the planner pins to version 1 (auto_rollback below).
        let target_group = emulator.target_group(&format!("tg-{i:05}")).await;
        emulator
            .asg(
                &name,
                1,
                &[("fleet", "loops"), ("emulator:refresh-seconds", "86400")],
                std::slice::from_ref(&target_group),
            )
            .await;
    }
    println!(
        "created {count} ASGs in {:.0} s (not timed below)",
        began.elapsed().as_secs_f64()
    );
    println!(
        "latency per call: {}",
        LATENCY_MS
            .iter()
            .map(|(s, ms)| format!("{s} {ms} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    set_latency(&emulator, true);
    let planner = emulator.planner();
    let request = PlanRequest {
        strategy: Strategy::Window,
        batch_size: 100,
        auto_rollback: true,
        ..plan_request(ROLLOUT, &ami, &[], &[("fleet", "loops")])
    };
    let began = Instant::now();
    let plan = planner.handle(request).await.expect("plan");
    let took = began.elapsed();
    assert_eq!(plan.planned as usize, count, "every group is planned");
    report(
        &format!("planner, {count} ASGs (target health, pins)"),
        took,
        planner_timeout,
    );

    // Every group refreshing, as when a rollback policy fires on a window of the fleet.
    set_latency(&emulator, false);
    let store = emulator.store();
    let now = (emulator.clock())();
    for mut record in store.list(ROLLOUT).await.expect("list") {
        let started = emulator
            .autoscaling
            .start_instance_refresh()
            .auto_scaling_group_name(&record.asg)
            .desired_configuration(
                DesiredConfiguration::builder()
                    .launch_template(
                        LaunchTemplateSpecification::builder()
                            .launch_template_name(format!("{}-lt", record.asg))
                            .version("1")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("start refresh");
        record.refresh_id = started.instance_refresh_id().map(str::to_string);
        record.status = AsgStatus::InProgress;
        record.started_at = Some(now);
        record.updated_at = now;
        store.put(&record).await.expect("record");
    }
    set_latency(&emulator, true);
    let refresher = Refresher {
        autoscaling: emulator.autoscaling.clone(),
        ec2: emulator.ec2.clone(),
        sfn: emulator.sfn(),
        store: emulator.store(),
        clock: emulator.clock(),
    };
    let began = Instant::now();
    let rolled = refresher.in_flight(ROLLOUT, true).await.expect("rollback");
    report(
        &format!("refresher rollback, {count} in flight"),
        began.elapsed(),
        refresher_timeout,
    );
    assert_eq!(rolled.pending as usize, count, "{:?}", rolled.refused);

    let began = Instant::now();
    let settled = refresher.settle(ROLLOUT, 0).await.expect("settle");
    report(
        &format!("refresher settle_rollbacks, {count} rolling back"),
        began.elapsed(),
        refresher_timeout,
    );
    assert_eq!(settled.round, 1);

    let began = Instant::now();
    let finished = refresher
        .finish(ROLLOUT, Outcome::Failed, None)
        .await
        .expect("finish");
    report(
        &format!("refresher finish, {count} records"),
        began.elapsed(),
        refresher_timeout,
    );
    assert_eq!(finished.succeeded, 0);
    let records: Vec<AsgRecord> = store.list(ROLLOUT).await.expect("list");
    assert!(records.iter().all(|r| r.status != AsgStatus::Planned));
}
