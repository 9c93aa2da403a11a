//! The planner against moto: names and tags, missing and skipped ASGs with reasons,
//! canary first, both strategies, the plan recorded without resetting progress, the lock.

mod common;

use std::collections::BTreeMap;

use common::{plan_request, Emulator};
use generator::config::Strategy;
use generator::payload::{AsgStatus, PlanRequest};
use runtime::planner::Planner;
use runtime::store::RolloutStatus;
use runtime::wave_store;
use runtime::Error;

fn request(
    ami: &str,
    rollout_id: &str,
    asgs: &[&str],
    tags: &[(&str, &str)],
    canary: &[&str],
    strategy: Strategy,
    batch_size: u32,
) -> PlanRequest {
    PlanRequest {
        canary: canary.iter().map(|s| s.to_string()).collect(),
        strategy,
        batch_size,
        ..plan_request(rollout_id, ami, asgs, tags)
    }
}

/// A plan of `rollout_id` over the ASGs tagged `group=web`.
fn by_tag(
    ami: &str,
    rollout_id: &str,
    canary: &[&str],
    strategy: Strategy,
    batch_size: u32,
) -> PlanRequest {
    request(
        ami,
        rollout_id,
        &[],
        &[("group", "web")],
        canary,
        strategy,
        batch_size,
    )
}

/// A plan of `rollout_id` over `api-1` alone, in batches of 2.
fn api_1(ami: &str, rollout_id: &str) -> PlanRequest {
    request(ami, rollout_id, &["api-1"], &[], &[], Strategy::Batches, 2)
}

/// The plan's waves as the table holds them (the response has counts only).
async fn waves(emulator: &Emulator, rollout_id: &str, count: u32) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for wave in 0..count {
        out.push(
            wave_store::wave_members(&emulator.store(), rollout_id, wave)
                .await
                .unwrap(),
        );
    }
    out
}

fn planner(emulator: &Emulator) -> Planner {
    emulator.planner()
}

/// The ASG `name` of `capacity` instances tagged `group=web`, registered in a target group
/// of its own name; returns the target group.
async fn web_behind_its_target_group(emulator: &Emulator, name: &str, capacity: i32) -> String {
    let target_group = emulator.target_group(name).await;
    emulator
        .asg(
            name,
            capacity,
            &[("group", "web")],
            std::slice::from_ref(&target_group),
        )
        .await;
    target_group
}

/// web-1..4 by tag, api-1 by name (canary), a capacity-0 group, an unhealthy one, an
/// empty target group, and a name that does not exist.
async fn fleet(emulator: &Emulator) {
    for name in ["web-1", "web-2", "web-3", "web-4"] {
        emulator.asg(name, 1, &[("group", "web")], &[]).await;
    }
    let healthy = emulator.target_group("api-healthy").await;
    emulator.asg("api-1", 2, &[], &[healthy]).await;
    emulator.asg("web-idle", 0, &[("group", "web")], &[]).await;
    let sick = web_behind_its_target_group(emulator, "web-sick", 2).await;
    let sick_targets = emulator.targets(&sick).await;
    emulator
        .ec2
        .stop_instances()
        .instance_ids(&sick_targets[0])
        .send()
        .await
        .unwrap();
    let empty = web_behind_its_target_group(emulator, "web-empty", 1).await;
    let mut deregister = emulator.elb.deregister_targets().target_group_arn(&empty);
    for id in emulator.targets(&empty).await {
        deregister = deregister.targets(
            aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                .id(id)
                .build(),
        );
    }
    deregister.send().await.unwrap();
    emulator.asg("other-1", 1, &[("group", "batch")], &[]).await;
}

#[tokio::test]
async fn plans_names_and_tags_with_prechecks_and_canary_first() {
    let (emulator, ami) = Emulator::with_fleet(fleet).await;
    let names = ["api-1", "ghost"];
    let both = request(
        &ami,
        "r-1",
        &names,
        &[("group", "web")],
        &["api-1"],
        Strategy::Batches,
        2,
    );
    let plan = planner(&emulator).handle(both).await.unwrap();
    assert_eq!(
        waves(&emulator, "r-1", plan.wave_count).await,
        vec![
            vec!["api-1"],
            vec!["web-1", "web-2"],
            vec!["web-3", "web-4"]
        ]
    );
    assert_eq!(
        (
            plan.wave_count,
            plan.last_wave,
            plan.planned,
            plan.skipped,
            plan.missing
        ),
        (3, 2, 5, 4, 1)
    );
    let records = emulator.store().list("r-1").await.unwrap();
    let by_name: BTreeMap<&str, &runtime::store::AsgRecord> =
        records.iter().map(|r| (r.asg.as_str(), r)).collect();
    assert!(
        !by_name.contains_key("other-1"),
        "ASGs outside the targets are not recorded"
    );
    let reason = |asg: &str| by_name[asg].reason.clone().unwrap_or_default();
    assert_eq!(by_name["web-idle"].status, AsgStatus::Skipped);
    assert_eq!(reason("web-idle"), "desired capacity is 0");
    assert!(
        reason("web-sick").contains("1 of 2 targets are not healthy"),
        "{}",
        reason("web-sick")
    );
    assert!(
        reason("web-empty").contains("has no registered targets"),
        "{}",
        reason("web-empty")
    );
    assert_eq!(reason("ghost"), "no Auto Scaling group has this name");
    assert_eq!(by_name["web-3"].status, AsgStatus::Planned);
    assert_eq!(by_name["web-3"].wave, Some(2));
    assert_eq!(by_name["api-1"].ami.as_deref(), Some(ami.as_str()));
    let summary = emulator.store().summary("r-1").await.unwrap().unwrap();
    assert_eq!(
        (
            summary.status,
            summary.planned,
            summary.skipped,
            summary.waves
        ),
        (RolloutStatus::Running, 5, 4, 3)
    );
}

#[tokio::test]
async fn window_strategy_makes_one_wave_after_the_canary() {
    let (emulator, ami) = Emulator::with_fleet(fleet).await;
    let plan = planner(&emulator)
        .handle(by_tag(&ami, "r-w", &["web-2"], Strategy::Window, 2))
        .await
        .unwrap();
    assert_eq!(
        waves(&emulator, "r-w", plan.wave_count).await,
        vec![vec!["web-2"], vec!["web-1", "web-3", "web-4"]]
    );
    assert_eq!(plan.missing, 0);
}

#[tokio::test]
async fn the_previous_rollouts_longest_refreshes_start_first() {
    let (emulator, ami) = Emulator::with_fleet(fleet).await;
    let planner = planner(&emulator);
    let req = |id: &str| by_tag(&ami, id, &["web-2"], Strategy::Window, 2);
    let first = planner.handle(req("r-a")).await.unwrap();
    // No history: name order.
    assert_eq!(
        waves(&emulator, "r-a", first.wave_count).await,
        vec![vec!["web-2"], vec!["web-1", "web-3", "web-4"]]
    );
    let store = emulator.store();
    // r-a's refreshes took 60, 600 and 300 s; web-4's failed, so it has no duration.
    for (asg, seconds, outcome) in [
        ("web-1", 60, AsgStatus::Successful),
        ("web-3", 600, AsgStatus::Successful),
        ("web-4", 300, AsgStatus::Failed),
        ("web-2", 30, AsgStatus::Successful),
    ] {
        let mut record = store.get("r-a", asg).await.unwrap().unwrap();
        record.status = outcome;
        record.started_at = Some(1_000);
        record.ended_at = Some(1_000 + seconds);
        store.put(&record).await.unwrap();
    }
    assert!(store.release_lock("r-a").await.unwrap());
    let second = planner.handle(req("r-b")).await.unwrap();
    // The canary stays first; then no history (web-4), 600 s, 60 s.
    let expected = vec![vec!["web-2"], vec!["web-4", "web-3", "web-1"]];
    assert_eq!(waves(&emulator, "r-b", second.wave_count).await, expected);
    // Planning r-b again (a resume) still orders by r-a, not by r-b's own records.
    let again = planner.handle(req("r-b")).await.unwrap();
    assert_eq!(waves(&emulator, "r-b", again.wave_count).await, expected);
}

#[tokio::test]
async fn a_second_rollout_is_refused_while_one_holds_the_lock() {
    let (emulator, ami) = Emulator::with_fleet(fleet).await;
    let planner = planner(&emulator);
    planner.handle(api_1(&ami, "r-1")).await.unwrap();
    let refused = planner.handle(api_1(&ami, "r-2")).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Locked(m) if m.contains("r-1")),
        "{refused:?}"
    );
    // The holder may re-plan (a retried or resumed execution).
    planner.handle(api_1(&ami, "r-1")).await.unwrap();
    assert!(emulator.store().release_lock("r-1").await.unwrap());
    planner.handle(api_1(&ami, "r-2")).await.unwrap();
}

#[tokio::test]
async fn replanning_never_resets_progress_and_leaves_out_what_is_done() {
    let (emulator, ami) = Emulator::with_fleet(fleet).await;
    let planner = planner(&emulator);
    let req = by_tag(&ami, "r-1", &[], Strategy::Batches, 3);
    planner.handle(req.clone()).await.unwrap();
    let store = emulator.store();
    let mut done = store.get("r-1", "web-2").await.unwrap().unwrap();
    done.status = AsgStatus::Successful;
    done.refresh_id = Some("refresh-1".into());
    store.put(&done).await.unwrap();
    let mut failed = store.get("r-1", "web-3").await.unwrap().unwrap();
    failed.status = AsgStatus::Failed;
    store.put(&failed).await.unwrap();
    let again = planner.handle(req).await.unwrap();
    assert_eq!(again.wave_count, 1);
    assert_eq!(
        waves(&emulator, "r-1", again.wave_count).await,
        vec![vec!["web-1", "web-3", "web-4"]]
    );
    // The first plan's second wave and its positions are left over, never read: the new
    // size bounds what a reader sees.
    assert_eq!(wave_store::wave_size(&store, "r-1", 0).await.unwrap(), 3);
    assert_eq!(
        store.get("r-1", "web-2").await.unwrap().unwrap().status,
        AsgStatus::Successful
    );
    assert_eq!(
        store.get("r-1", "web-3").await.unwrap().unwrap().status,
        AsgStatus::Failed
    );
}

#[tokio::test]
async fn bad_input_is_not_retryable() {
    let emulator = Emulator::start().await;
    let ami = emulator.existing_ami().await;
    let planner = planner(&emulator);
    let mut bad = request(&ami, "r-1", &["a"], &[], &[], Strategy::Batches, 2);
    bad.ami = "ami-nothex".into();
    assert!(matches!(
        planner.handle(bad).await,
        Err(Error::InvalidInput(_))
    ));
    let bad = request(&ami, "no spaces", &["a"], &[], &[], Strategy::Batches, 2);
    assert!(matches!(
        planner.handle(bad).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn too_many_waves_for_one_execution_is_refused() {
    let (emulator, ami) = Emulator::with_fleet(fleet).await;
    let mut req = by_tag(&ami, "r-1", &[], Strategy::Batches, 1);
    req.max_waves = 3;
    let refused = planner(&emulator).handle(req).await.unwrap_err();
    assert!(
        matches!(&refused, Error::InvalidInput(m) if m.contains("4 waves")),
        "{refused:?}"
    );
}
