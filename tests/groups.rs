//! Ordered groups end to end (`[[targets.group]]`, issue 12): a variant of the local stack
//! with three "consul" ASGs at batch size 1, then four "vault" ASGs at batch size 2, rolled
//! out by the deployed state machine with each strategy. From the emulator's refresh log: no
//! vault refresh starts before every consul refresh has ended, never more than the group's
//! batch size in flight, every ASG refreshed once; from the table and `status`: each ASG's
//! group. Every wait is bounded; each test has its own emulator.

#[path = "support/cli.rs"]
mod cli;
mod e2e;

use std::collections::BTreeMap;

use cli::{asg, assert_ok, status_json, xtask};
use e2e::*;

const NEW_AMI: &str = "ami-0fedcba9876543210";

const CONSUL: [&str; 3] = ["consul-1", "consul-2", "consul-3"];
const VAULT: [&str; 4] = ["vault-1", "vault-2", "vault-3", "vault-4"];

/// The local stack's `[targets]` replaced by two ordered groups: consul by name, vault by tag.
const GROUPS: &str = r#"[[targets.group]]
name = "consul"
asgs = ["consul-1", "consul-2", "consul-3"]
batch_size = 1

[[targets.group]]
name = "vault"
tags = { "refresh-group" = "vault" }
batch_size = 2
"#;

/// The refreshes of `asgs` from the log (each must have exactly one, ended Successful).
fn refreshed_once_each<'a>(
    intervals: &'a BTreeMap<String, Vec<Interval>>,
    asgs: &[&str],
) -> Vec<&'a Interval> {
    asgs.iter()
        .map(|asg| refreshed_once(intervals, asg))
        .collect()
}

/// Most refreshes of `asgs` running at once.
fn most_in_flight(intervals: &BTreeMap<String, Vec<Interval>>, asgs: &[&str], now: f64) -> usize {
    let only: BTreeMap<String, Vec<Interval>> = intervals
        .iter()
        .filter(|(asg, _)| asgs.contains(&asg.as_str()))
        .map(|(asg, list)| (asg.clone(), list.clone()))
        .collect();
    max_in_flight(&only, now)
}

async fn two_groups_in_order(strategy: &str) {
    let (moto, config) = start_emulator().await;
    // Uneven refreshes, so that a barrier that let vault start early would show: consul-1 is
    // the slowest of its group.
    for (asg, seconds) in [("consul-1", "4"), ("consul-2", "1"), ("consul-3", "2")] {
        fleet(&config, asg, &[("emulator:refresh-seconds", seconds)]).await;
    }
    for (asg, seconds) in [
        ("vault-1", "3"),
        ("vault-2", "4"),
        ("vault-3", "3"),
        ("vault-4", "4"),
    ] {
        fleet(
            &config,
            asg,
            &[
                ("refresh-group", "vault"),
                ("emulator:refresh-seconds", seconds),
            ],
        )
        .await;
    }
    // An ASG of the local stack's own tag, which the groups do not select.
    demo_fleet(&config, &[("demo-1", "1")]).await;
    deploy_local_variant(
        &moto,
        &format!("groups-{strategy}"),
        &[
            (
                "[targets]\ntags = { \"refresh-group\" = \"demo\" }\n",
                GROUPS,
            ),
            (
                "strategy = \"window\"",
                &format!("strategy = \"{strategy}\""),
            ),
        ],
    );
    let rollout = format!("r-groups-{strategy}");
    let execution = run_rollout(&moto, &config, &rollout, NEW_AMI).await;
    assert_execution(&execution, "SUCCEEDED", &moto);

    let (intervals, now) = refresh_intervals(&moto);
    let consul = refreshed_once_each(&intervals, &CONSUL);
    let vault = refreshed_once_each(&intervals, &VAULT);
    assert!(
        !intervals.contains_key("demo-1"),
        "an ASG outside the groups was refreshed: {intervals:?}"
    );
    // The barrier between groups: every consul refresh ended before any vault one started.
    let consul_end = consul
        .iter()
        .map(|i| i.end.expect("ended"))
        .fold(f64::MIN, f64::max);
    let vault_start = vault.iter().map(|i| i.start).fold(f64::MAX, f64::min);
    assert!(
        consul_end <= vault_start,
        "a vault refresh started at {vault_start} before the last consul one ended at {consul_end}: {intervals:?}"
    );
    // Each group at its own batch size, and both sizes reached where they can be.
    assert_eq!(
        most_in_flight(&intervals, &CONSUL, now),
        1,
        "consul has batch_size 1: {intervals:?}"
    );
    assert_eq!(
        most_in_flight(&intervals, &VAULT, now),
        2,
        "vault has batch_size 2: {intervals:?}"
    );

    let items = rollout_items(&config, &rollout).await;
    let waves: Vec<Option<u32>> = CONSUL
        .iter()
        .chain(VAULT.iter())
        .map(|asg| items[*asg].wave)
        .collect();
    let expected = match strategy {
        // consul: three waves of 1; vault: two waves of 2.
        "batches" => [0, 1, 2, 3, 3, 4, 4],
        // One wave per group.
        _ => [0, 0, 0, 1, 1, 1, 1],
    };
    assert_eq!(
        waves,
        expected.iter().map(|w| Some(*w)).collect::<Vec<_>>(),
        "{items:?}"
    );

    // status says each ASG's group.
    let json = status_json(&moto, Some(&rollout));
    for (group, asgs) in [("consul", &CONSUL[..]), ("vault", &VAULT[..])] {
        for name in asgs {
            assert_eq!(asg(&json, name)["group"], group, "{json:#}");
        }
    }
    let shown = xtask(&moto, &["status", "--rollout", &rollout]);
    assert_ok(&shown, &moto);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("GROUP"), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains("vault-3"))
        .unwrap_or_else(|| panic!("no vault-3 row: {text}"));
    assert!(row.contains(" vault "), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_run_the_groups_in_order_at_their_batch_sizes() {
    two_groups_in_order("batches").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn window_runs_the_groups_in_order_at_their_batch_sizes() {
    two_groups_in_order("window").await;
}

/// A group that selects no ASG fails the plan naming the group: nothing starts, the lock is
/// released, and the execution and the rollout's summary say why.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_that_selects_nothing_fails_the_rollout_naming_it() {
    let (moto, config) = start_emulator().await;
    for asg in CONSUL {
        fleet(&config, asg, &[("emulator:refresh-seconds", "1")]).await;
    }
    let empty = GROUPS.replace(
        "\"refresh-group\" = \"vault\"",
        "\"refresh-group\" = \"nomad\"",
    );
    deploy_local_variant(
        &moto,
        "groups-empty",
        &[(
            "[targets]\ntags = { \"refresh-group\" = \"demo\" }\n",
            empty.as_str(),
        )],
    );
    let execution = run_rollout(&moto, &config, "r-groups-empty", NEW_AMI).await;
    assert_eq!(execution.status().as_str(), "FAILED", "{execution:?}");
    let says = "group `vault` matches no Auto Scaling group";
    assert!(
        execution.cause().unwrap_or_default().contains(says),
        "{:?}\nlambda logs:\n{}",
        execution.cause(),
        moto.lambda_logs()
    );
    let (intervals, _) = refresh_intervals(&moto);
    assert!(intervals.is_empty(), "nothing may start: {intervals:?}");
    assert_eq!(lock_holder(&config).await, None, "the lock is released");
    let items = rollout_items(&config, "r-groups-empty").await;
    let summary = items.get("#rollout").and_then(|i| i.message.clone());
    assert!(
        summary.as_deref().unwrap_or_default().contains(says),
        "{items:?}"
    );
}
