//! `cargo xtask drift` end to end: the local stack on the extended emulator (whose successful
//! refreshes replace a group's instances, as AWS's do), a rollout stopped by a failure in its
//! second wave, then drift lists the ASGs it did not refresh and their instances on the old
//! AMI, and not the one it refreshed; before any rollout it refuses with a clear message.

#[path = "support/cli.rs"]
mod cli;
mod e2e;

use std::process::Output;

use asg_refresh_tests::{workspace_root, Moto};
use cli::{assert_prints, text, xtask};
use e2e::*;
use serde_json::Value;

const NEW_AMI: &str = "ami-0fedcba9876543210";

fn drift(moto: &Moto, args: &[&str]) -> Output {
    xtask(moto, &[&["drift"], args].concat())
}

/// Waves of one ASG, `on_failure = "stop"`: a-1 refreshes, f-bad fails, z-3 never starts.
#[tokio::test(flavor = "multi_thread")]
async fn drift_after_a_partial_rollout_lists_what_it_did_not_refresh() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("a-1", "1"), ("f-bad", "1"), ("z-3", "1")]).await;
    set_tag(&config, "f-bad", "emulator:refresh-outcome", "Failed").await;
    let undeployed = drift(&moto, &[]);
    assert!(
        !undeployed.status.success()
            && String::from_utf8_lossy(&undeployed.stderr)
                .contains("stack `local` is not deployed"),
        "{}",
        text(&undeployed)
    );
    deploy_local_variant(
        &moto,
        "drift",
        &[
            ("strategy = \"window\"", "strategy = \"batches\""),
            ("batch_size = 3", "batch_size = 1"),
            ("on_failure = \"continue\"", "on_failure = \"stop\""),
        ],
    );

    let before = drift(&moto, &[]);
    assert!(!before.status.success(), "{}", text(&before));
    assert!(
        String::from_utf8_lossy(&before.stderr)
            .contains("no rollout has refreshed an ASG on stack `local` yet"),
        "{}",
        text(&before)
    );

    let done = run_rollout(&moto, &config, "d-partial", NEW_AMI).await;
    assert_eq!(done.status().as_str(), "FAILED", "{done:?}");
    assert_eq!(group_image(&config, "a-1").await.as_deref(), Some(NEW_AMI));

    let json = drift(&moto, &["--json"]);
    assert!(json.status.success(), "{}", text(&json));
    let report: Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("drift --json is not JSON ({e}): {}", text(&json)));
    assert_eq!(report["rollout_id"], "d-partial", "{report:#}");
    assert_eq!(report["ami"], NEW_AMI, "{report:#}");
    assert_eq!(report["in_sync"], serde_json::json!(["a-1"]), "{report:#}");
    let drifted = report["drifted"].as_array().expect("drifted");
    let names: Vec<&str> = drifted.iter().filter_map(|d| d["asg"].as_str()).collect();
    assert_eq!(names, ["f-bad", "z-3"], "{report:#}");
    for asg in drifted {
        assert_eq!(asg["current_ami"], OLD_AMI, "{asg:#}");
        assert_eq!(asg["current_version"], "1", "{asg:#}");
        assert_eq!(asg["expected_version"], Value::Null, "{asg:#}");
        let instances = asg["instances_on_older_ami"].as_array().expect("instances");
        assert_eq!(instances.len(), 1, "{asg:#}");
        assert_eq!(instances[0]["ami"], OLD_AMI, "{asg:#}");
        assert!(
            instances[0]["instance_id"]
                .as_str()
                .is_some_and(|i| i.starts_with("i-")),
            "{asg:#}"
        );
    }
    assert!(
        drifted[0]["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("not refreshed by rollout d-partial: Failed")),
        "{report:#}"
    );

    let table = drift(&moto, &[]);
    let stdout = assert_prints(&table, &moto, "2 of 3 targeted ASGs drifted");
    let rows: Vec<&str> = stdout.lines().skip(2).collect();
    assert!(
        rows.iter().any(|l| l.starts_with("f-bad ")) && rows.iter().any(|l| l.starts_with("z-3 ")),
        "{}",
        text(&table)
    );
    assert!(
        !rows.iter().any(|l| l.starts_with("a-1 ")),
        "a-1 was refreshed: {}",
        text(&table)
    );
}

/// Whoever runs `drift` may read the groups, their launch template versions and instances.
#[test]
fn the_deployer_policy_allows_what_drift_reads() {
    let config = generator::config::load(&workspace_root().join("envs/local.toml")).expect("local");
    let deployer = generator::iam::deployer_document(&config).expect("deployer");
    let allowed = generator::iam::allowed(&deployer.json);
    for action in [
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:DescribeInstances",
        "ec2:DescribeLaunchTemplateVersions",
        "states:ListExecutions",
        "states:DescribeExecution",
        "dynamodb:Query",
    ] {
        assert!(
            allowed.iter().any(|(a, _)| a == action),
            "{action} is not allowed: {:#}",
            deployer.json
        );
    }
}
