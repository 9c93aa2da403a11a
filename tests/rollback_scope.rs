//! `[rollout] rollback_scope` end to end: the local stack deployed to the extended emulator
//! with `on_failure = "rollback"`, a two-wave fleet whose second wave fails after one of its
//! groups already finished, and the real state machine and Lambdas. Each test reads the
//! groups' launch template version and image and their instances' images back from the
//! emulator (whose successful refreshes replace instances, as AWS's do), the rollout table,
//! the emulator's refresh log and `cargo xtask status`. Every wait is bounded.

mod e2e;

use std::process::{Command, Output, Stdio};

use asg_refresh_tests::{workspace_root, Moto};
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

/// `cargo xtask status --env local --rollout r-scope` against the emulator.
fn status(moto: &Moto) -> Output {
    Command::new(debug_binary("xtask", "xtask"))
        .args([
            "status",
            "--rollout",
            ROLLOUT,
            "--env",
            "local",
            "--endpoint-url",
        ])
        .arg(moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .expect("run xtask status")
}

/// Runs the rollout (it must fail) and returns the table.
async fn failed_rollout(
    moto: &Moto,
    config: &aws_config::SdkConfig,
) -> std::collections::BTreeMap<String, TableItem> {
    let execution = run_rollout(moto, config, ROLLOUT, NEW_AMI).await;
    assert_eq!(
        execution.status().as_str(),
        "FAILED",
        "{:?} {:?}\nrefresh log: {}\nlambda logs:\n{}",
        execution.error(),
        execution.cause(),
        moto.refresh_log(),
        moto.lambda_logs()
    );
    let items = rollout_items(config, ROLLOUT).await;
    for (asg, wave) in [("s-a", 0), ("s-b", 0), ("s-c", 0), ("s-d", 1), ("s-e", 1)] {
        assert_eq!(items[asg].wave, Some(wave), "{asg}: {:?}", items[asg]);
    }
    assert_eq!(items["s-d"].status, "Failed", "{:?}", items["s-d"]);
    assert_eq!(lock_holder(config).await, None, "the lock is released");
    items
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

/// Asserts the group is back on version 1 (OLD_AMI), its instances too, recorded as such,
/// after a second refresh that started once s-d had failed.
async fn assert_restored(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    items: &std::collections::BTreeMap<String, TableItem>,
    asg: &str,
) {
    assert_eq!(
        group_version(config, asg).await.as_deref(),
        Some("1"),
        "{asg}"
    );
    assert_eq!(
        group_image(config, asg).await.as_deref(),
        Some(OLD_AMI),
        "{asg}"
    );
    let images = instance_images(config, asg).await;
    assert!(images.iter().all(|i| i == OLD_AMI), "{asg}: {images:?}");
    let item = &items[asg];
    assert_eq!(item.status, "RolledBack", "{asg}: {item:?}");
    assert_eq!(
        item.reason.as_deref(),
        Some("restored to launch template version 1"),
        "{asg}: {item:?}"
    );
    let (intervals, _) = refresh_intervals(moto);
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
async fn assert_kept(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    items: &std::collections::BTreeMap<String, TableItem>,
    asg: &str,
) {
    assert_eq!(
        group_version(config, asg).await.as_deref(),
        Some("3"),
        "{asg}"
    );
    assert_eq!(
        group_image(config, asg).await.as_deref(),
        Some(NEW_AMI),
        "{asg}"
    );
    let images = instance_images(config, asg).await;
    assert!(images.iter().all(|i| i == NEW_AMI), "{asg}: {images:?}");
    assert_eq!(items[asg].status, "Successful", "{asg}: {:?}", items[asg]);
    let (intervals, _) = refresh_intervals(moto);
    assert_eq!(intervals[asg].len(), 1, "{asg}: {intervals:?}");
}

/// The default scope (`wave`): the failed wave's finished group s-e returns to version 1;
/// wave 0 keeps the new AMI; `status` and the summary say so.
#[tokio::test(flavor = "multi_thread")]
async fn a_wave_rollback_restores_the_failed_waves_finished_groups() {
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
    two_wave_fleet(&config).await;
    deploy_rollback(&moto, None);
    let items = failed_rollout(&moto, &config).await;
    assert_restored(&moto, &config, &items, "s-e").await;
    for asg in ["s-a", "s-b", "s-c"] {
        assert_kept(&moto, &config, &items, asg).await;
    }
    let message = items["#rollout"].message.clone().unwrap_or_default();
    assert!(
        message.contains("restored to their previous version: s-e"),
        "{message}"
    );
    let shown = status(&moto);
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{shown:?}");
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
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
    two_wave_fleet(&config).await;
    deploy_rollback(&moto, Some("rollout"));
    let items = failed_rollout(&moto, &config).await;
    for asg in ["s-a", "s-b", "s-c", "s-e"] {
        assert_restored(&moto, &config, &items, asg).await;
    }
}

/// `in-flight`: only what is in flight is rolled back; the finished s-e keeps the new AMI.
#[tokio::test(flavor = "multi_thread")]
async fn an_in_flight_rollback_leaves_finished_groups_alone() {
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
    two_wave_fleet(&config).await;
    deploy_rollback(&moto, Some("in-flight"));
    let items = failed_rollout(&moto, &config).await;
    for asg in ["s-a", "s-b", "s-c", "s-e"] {
        assert_kept(&moto, &config, &items, asg).await;
    }
}
