//! The planner with ordered groups (`[[targets.group]]`) against moto: waves per group at
//! each group's batch size and never mixing groups, each wave recorded with its group and
//! batch size, the canary as the first group's first wave, and the plan errors (an ASG two
//! groups select, a group that selects none, a canary outside the first group).

mod common;

use std::collections::BTreeMap;

use common::{plan_request, target_spec, Emulator};
use generator::config::Strategy;
use generator::groups::GroupSpec;
use generator::payload::{AsgStatus, PlanRequest, PlanResponse};
use runtime::wave_store;
use runtime::Error;

fn group(name: &str, batch_size: u32, asgs: &[&str], tags: &[(&str, &str)]) -> GroupSpec {
    GroupSpec {
        name: name.into(),
        targets: target_spec(asgs, tags),
        batch_size,
    }
}

fn request(
    ami: &str,
    rollout_id: &str,
    groups: Vec<GroupSpec>,
    canary: &[&str],
    strategy: Strategy,
) -> PlanRequest {
    PlanRequest {
        groups,
        canary: canary.iter().map(|s| s.to_string()).collect(),
        strategy,
        batch_size: 3,
        ..plan_request(rollout_id, ami, &[], &[])
    }
}

/// consul-1..3 by name, vault-1..4 by tag, a capacity-0 vault and an unrelated group.
async fn fleet(emulator: &Emulator) {
    for name in ["consul-1", "consul-2", "consul-3"] {
        emulator.asg(name, 1, &[], &[]).await;
    }
    for name in ["vault-1", "vault-2", "vault-3", "vault-4"] {
        emulator.asg(name, 1, &[("role", "vault")], &[]).await;
    }
    emulator
        .asg("vault-idle", 0, &[("role", "vault")], &[])
        .await;
    emulator.asg("other-1", 1, &[("role", "other")], &[]).await;
}

fn two_groups() -> Vec<GroupSpec> {
    vec![
        group("consul", 1, &["consul-1", "consul-2", "consul-3"], &[]),
        group("vault", 2, &[], &[("role", "vault")]),
    ]
}

/// A wave as the table holds it: its group, batch size and members.
type Wave = (Option<String>, Option<u32>, Vec<String>);

/// Plans `request`; the planner's answer and each wave it recorded.
async fn plan_and_read(emulator: &Emulator, request: PlanRequest) -> (PlanResponse, Vec<Wave>) {
    let rollout_id = request.rollout_id.clone();
    let plan = emulator.planner().handle(request).await.unwrap();
    let store = emulator.store();
    let mut waves = Vec::new();
    for wave in 0..plan.wave_count {
        let info = wave_store::wave_info(&store, &rollout_id, wave)
            .await
            .unwrap();
        let members = wave_store::wave_members(&store, &rollout_id, wave)
            .await
            .unwrap();
        waves.push((info.group, info.batch_size, members));
    }
    (plan, waves)
}

fn row(group: &str, size: u32, asgs: &[&str]) -> Wave {
    (
        Some(group.into()),
        Some(size),
        asgs.iter().map(|s| s.to_string()).collect(),
    )
}

#[tokio::test]
async fn batches_are_made_per_group_at_its_batch_size_and_recorded_with_it() {
    let (emulator, ami) = Emulator::with_fleet(fleet).await;
    let (plan, waves) = plan_and_read(
        &emulator,
        request(&ami, "r-g", two_groups(), &[], Strategy::Batches),
    )
    .await;
    assert_eq!(
        waves,
        vec![
            row("consul", 1, &["consul-1"]),
            row("consul", 1, &["consul-2"]),
            row("consul", 1, &["consul-3"]),
            row("vault", 2, &["vault-1", "vault-2"]),
            row("vault", 2, &["vault-3", "vault-4"]),
        ]
    );
    assert_eq!((plan.planned, plan.skipped), (7, 1));
    let records = emulator.store().list("r-g").await.unwrap();
    let by_name: BTreeMap<&str, &runtime::store::AsgRecord> =
        records.iter().map(|r| (r.asg.as_str(), r)).collect();
    assert!(!by_name.contains_key("other-1"), "{records:?}");
    assert_eq!(by_name["consul-2"].group.as_deref(), Some("consul"));
    assert_eq!(by_name["vault-4"].group.as_deref(), Some("vault"));
    assert_eq!(by_name["vault-4"].wave, Some(4));
    // A skipped ASG still says which group it belongs to.
    assert_eq!(by_name["vault-idle"].status, AsgStatus::Skipped);
    assert_eq!(by_name["vault-idle"].group.as_deref(), Some("vault"));
}

#[tokio::test]
async fn window_is_one_wave_per_group_after_the_canary() {
    let (emulator, ami) = Emulator::with_fleet(fleet).await;
    let (_, waves) = plan_and_read(
        &emulator,
        request(&ami, "r-w", two_groups(), &["consul-2"], Strategy::Window),
    )
    .await;
    assert_eq!(
        waves,
        vec![
            row("consul", 1, &["consul-2"]),
            row("consul", 1, &["consul-1", "consul-3"]),
            row("vault", 2, &["vault-1", "vault-2", "vault-3", "vault-4"]),
        ]
    );
    // The `wave` action's answer for the vault wave: its batch size feeds MaxConcurrencyPath.
    let info = wave_store::wave_info(&emulator.store(), "r-w", 2)
        .await
        .unwrap();
    assert_eq!((info.size, info.batch_size), (4, Some(2)));
}

#[tokio::test]
async fn plans_without_groups_record_no_group_and_the_rollout_batch_size() {
    let (emulator, ami) = Emulator::with_fleet(fleet).await;
    let (_, waves) = plan_and_read(
        &emulator,
        PlanRequest {
            batch_size: 2,
            ..plan_request("r-plain", &ami, &["consul-1", "consul-2", "consul-3"], &[])
        },
    )
    .await;
    assert_eq!(waves.len(), 2);
    assert!(
        waves
            .iter()
            .all(|(g, size, _)| g.is_none() && *size == Some(2)),
        "{waves:?}"
    );
}

/// Plans `request` (given the AMI) on a fresh fleet and checks that the plan fails with a
/// message holding `expected`; the emulator, for more checks.
async fn assert_plan_fails(request: impl FnOnce(&str) -> PlanRequest, expected: &str) -> Emulator {
    let (emulator, ami) = Emulator::with_fleet(fleet).await;
    match emulator.planner().handle(request(&ami)).await {
        Err(Error::InvalidInput(message)) => assert!(message.contains(expected), "{message}"),
        other => panic!("expected a plan error, got {other:?}"),
    }
    emulator
}

#[tokio::test]
async fn an_asg_two_groups_select_fails_the_plan_naming_both() {
    // vault-2 is named by the first group and carries the second group's tag.
    let groups = vec![
        group("consul", 1, &["consul-1", "vault-2"], &[]),
        group("vault", 2, &[], &[("role", "vault")]),
    ];
    let emulator = assert_plan_fails(
        |ami| request(ami, "r-o", groups, &[], Strategy::Batches),
        "`vault-2` is selected by groups `consul` and `vault`",
    )
    .await;
    // Nothing was planned.
    assert!(wave_store::wave_info(&emulator.store(), "r-o", 0)
        .await
        .is_err());
}

#[tokio::test]
async fn a_group_that_selects_no_asg_fails_the_plan_naming_it() {
    let groups = vec![
        group("consul", 1, &["consul-1"], &[]),
        group("nomad", 2, &["nomad-ghost"], &[("role", "nomad")]),
    ];
    assert_plan_fails(
        |ami| request(ami, "r-e", groups, &[], Strategy::Window),
        "group `nomad` matches no Auto Scaling group",
    )
    .await;
}

#[tokio::test]
async fn a_canary_found_in_a_later_group_fails_the_plan() {
    assert_plan_fails(
        |ami| request(ami, "r-c", two_groups(), &["vault-3"], Strategy::Batches),
        "canary `vault-3` is in group `vault`: canary ASGs must belong to the first group `consul`",
    )
    .await;
}

#[tokio::test]
async fn the_wave_limit_counts_every_groups_waves() {
    // consul 3 waves of 1, vault 2 waves of 2: 5 waves, one more than allowed.
    assert_plan_fails(
        |ami| PlanRequest {
            max_waves: 4,
            ..request(ami, "r-m", two_groups(), &[], Strategy::Batches)
        },
        "the plan has 5 waves but one execution fits at most 4",
    )
    .await;
}
