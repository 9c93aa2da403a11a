//! `[rollout] rollback_scope` end to end: the local stack deployed to the extended emulator
//! with `on_failure = "rollback"`, a two-wave fleet whose second wave fails after one of its
//! groups already finished, and the real state machine and Lambdas. Each test reads the
//! groups' launch template version and image and their instances' images back from the
//! emulator (whose successful refreshes replace instances, as AWS's do), the rollout table,
//! the emulator's refresh log and `cargo xtask status`. Every wait is bounded.

#[path = "support/cli.rs"]
mod cli;
mod e2e;

use std::collections::BTreeMap;

use asg_refresh_tests::Moto;
use cli::{assert_ok, xtask};
use e2e::*;

const NEW_AMI: &str = "ami-0fedcba9876543210";
const ROLLOUT: &str = "r-scope";

/// Wave 0: s-a, s-b, s-c (1 s refreshes that succeed); wave 1: s-d (fails after 8 s) and
/// s-e (succeeds in 1 s, so its child records Successful before s-d's failure is seen).
/// Every group starts on launch template version 1 (OLD_AMI); the rollout makes version 3.
async fn two_wave_fleet(config: &aws_config::SdkConfig) {
    demo_fleet(
        config,
        &[("s-a", "1"), ("s-b", "1"), ("s-c", "1"), ("s-e", "1")],
    )
    .await;
    fleet(
        config,
        "s-d",
        &[
            ("refresh-group", "demo"),
            ("emulator:refresh-seconds", "8"),
            ("emulator:refresh-outcome", "Failed"),
        ],
    )
    .await;
}

/// Deploys envs/local.toml with batches of 3, `on_failure = "rollback"` and `scope` (none:
/// the default).
fn deploy_rollback(moto: &Moto, scope: Option<&str>) {
    let policy = match scope {
        Some(scope) => format!("on_failure = \"rollback\"\nrollback_scope = \"{scope}\""),
        None => "on_failure = \"rollback\"".to_string(),
    };
    deploy_local_variant(
        moto,
        &format!("scope-{}", scope.unwrap_or("default")),
        &[
            ("strategy = \"window\"", "strategy = \"batches\""),
            ("on_failure = \"continue\"", &policy),
        ],
    );
}

/// A rollout that failed: its emulator, the SDK's config for it and its table.
struct Failed {
    moto: Moto,
    config: aws_config::SdkConfig,
    items: BTreeMap<String, TableItem>,
}

/// On an emulator of its own, the two-wave fleet and the stack at rollback `scope` (see
/// [`deploy_rollback`]); runs the rollout (it must fail).
async fn failed_rollout(scope: Option<&str>) -> Failed {
    let (moto, config) = start_emulator().await;
    two_wave_fleet(&config).await;
    deploy_rollback(&moto, scope);
    let execution = run_rollout(&moto, &config, ROLLOUT, NEW_AMI).await;
    assert_execution(&execution, "FAILED", &moto);
    let items = rollout_items(&config, ROLLOUT).await;
    for (asg, wave) in [("s-a", 0), ("s-b", 0), ("s-c", 0), ("s-d", 1), ("s-e", 1)] {
        assert_eq!(items[asg].wave, Some(wave), "{asg}: {:?}", items[asg]);
    }
    assert_eq!(items["s-d"].status, "Failed", "{:?}", items["s-d"]);
    assert_eq!(lock_holder(&config).await, None, "the lock is released");
    Failed {
        moto,
        config,
        items,
    }
}

/// The image of each instance of the group (DescribeAutoScalingGroups, DescribeInstances).
async fn instance_images(config: &aws_config::SdkConfig, asg: &str) -> Vec<String> {
    let groups = aws_sdk_autoscaling::Client::new(config)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe {asg}: {e:?}"));
    let ids: Vec<String> = groups
        .auto_scaling_groups()
        .iter()
        .flat_map(|g| g.instances())
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    assert!(!ids.is_empty(), "{asg} has no instance");
    let described = aws_sdk_ec2::Client::new(config)
        .describe_instances()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe the instances of {asg}: {e:?}"));
    described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.image_id().map(str::to_string))
        .collect()
}

/// Asserts the group runs launch template `version` with `ami`, and its instances `ami` too.
async fn assert_runs(config: &aws_config::SdkConfig, asg: &str, version: &str, ami: &str) {
    assert_group_runs(config, asg, version, ami).await;
    let images = instance_images(config, asg).await;
    assert!(images.iter().all(|i| i == ami), "{asg}: {images:?}");
}

/// Asserts the group is back on version 1 (OLD_AMI), its instances too, recorded as such,
/// after a second refresh that started once s-d had failed.
async fn assert_restored(failed: &Failed, asg: &str) {
    assert_runs(&failed.config, asg, "1", OLD_AMI).await;
    let item = &failed.items[asg];
    assert_eq!(item.status, "RolledBack", "{asg}: {item:?}");
    assert_eq!(
        item.reason.as_deref(),
        Some("restored to launch template version 1"),
        "{asg}: {item:?}"
    );
    let (intervals, _) = refresh_intervals(&failed.moto);
    let refreshes = &intervals[asg];
    assert_eq!(
        refreshes.len(),
        2,
        "{asg}: a refresh, then its restore: {refreshes:?}"
    );
    assert_eq!(refreshes[0].status.as_deref(), Some("Successful"), "{asg}");
    assert_eq!(refreshes[1].status.as_deref(), Some("Successful"), "{asg}");
    let failed_at = intervals["s-d"][0].end.expect("s-d ended");
    assert!(
        refreshes[1].start >= failed_at,
        "{asg}: restored before the wave failed: {intervals:?}"
    );
}

/// Asserts the group kept the rollout's version (3, NEW_AMI), its instances too, and was
/// refreshed once.
async fn assert_kept(failed: &Failed, asg: &str) {
    assert_runs(&failed.config, asg, "3", NEW_AMI).await;
    let item = &failed.items[asg];
    assert_eq!(item.status, "Successful", "{asg}: {item:?}");
    let (intervals, _) = refresh_intervals(&failed.moto);
    assert_eq!(intervals[asg].len(), 1, "{asg}: {intervals:?}");
}

/// The default scope (`wave`): the failed wave's finished group s-e returns to version 1;
/// wave 0 keeps the new AMI; `status` and the summary say so.
#[tokio::test(flavor = "multi_thread")]
async fn a_wave_rollback_restores_the_failed_waves_finished_groups() {
    let failed = failed_rollout(None).await;
    assert_restored(&failed, "s-e").await;
    for asg in ["s-a", "s-b", "s-c"] {
        assert_kept(&failed, asg).await;
    }
    let message = failed.items["#rollout"].message.clone().unwrap_or_default();
    assert!(
        message.contains("restored to their previous version: s-e"),
        "{message}"
    );
    let shown = xtask(&failed.moto, &["status", "--rollout", ROLLOUT]);
    assert_ok(&shown, &failed.moto);
    let stdout = String::from_utf8_lossy(&shown.stdout);
    let row = stdout
        .lines()
        .find(|l| l.contains("s-e"))
        .unwrap_or_else(|| panic!("no s-e row:\n{stdout}"));
    assert!(
        row.contains("RolledBack") && row.contains("restored to launch template version 1"),
        "{stdout}"
    );
    assert!(stdout.contains("1 rolled back"), "{stdout}");
}

/// `rollout`: every group the rollout refreshed returns to version 1, wave 0's too.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_rollback_restores_earlier_waves_too() {
    let failed = failed_rollout(Some("rollout")).await;
    for asg in ["s-a", "s-b", "s-c", "s-e"] {
        assert_restored(&failed, asg).await;
    }
}

/// `in-flight`: only what is in flight is rolled back; the finished s-e keeps the new AMI.
#[tokio::test(flavor = "multi_thread")]
async fn an_in_flight_rollback_leaves_finished_groups_alone() {
    let failed = failed_rollout(Some("in-flight")).await;
    for asg in ["s-a", "s-b", "s-c", "s-e"] {
        assert_kept(&failed, asg).await;
    }
}
