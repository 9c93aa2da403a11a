//! The refresher where a rollback races a start, on a mixed instances group, and on a
//! launch template version AWS made with a warning: the table and launch templates on
//! moto, instance refresh calls through aws-smithy-mocks.

mod common;

use aws_sdk_autoscaling::error::ErrorMetadata;
use aws_sdk_autoscaling::operation::cancel_instance_refresh::CancelInstanceRefreshOutput;
use aws_sdk_autoscaling::operation::rollback_instance_refresh::{
    RollbackInstanceRefreshError, RollbackInstanceRefreshOutput,
};
use aws_sdk_autoscaling::operation::start_instance_refresh::StartInstanceRefreshOutput;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, DesiredConfiguration, InstanceRefresh, InstanceRefreshStatus,
    InstancesDistribution,
};
use aws_sdk_autoscaling::Client as AutoScaling;
use aws_sdk_ec2::operation::create_launch_template_version::CreateLaunchTemplateVersionOutput;
use aws_sdk_ec2::types::{LaunchTemplateVersion, ValidationError, ValidationWarning};
use aws_sdk_ec2::Client as Ec2;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use common::mixed::{mixed_policy, spec, t3a_micro};
use common::mocks::{
    describes, describes_group, record, refresher, rolls_back, rolls_back_group, starts,
};
use common::{Emulator, NEW_AMI, OLD_AMI};
use generator::config::Refresh;
use generator::payload::{AsgStatus, InFlightResponse, RefreshPreferences};
use runtime::refresher::Refresher;
use runtime::store::{AsgRecord, StopAction};
use runtime::Error;

const ROLLOUT: &str = "r-1";

/// A default `[refresh]`'s preferences, with healthy percentages of 90 to 120.
fn preferences() -> RefreshPreferences {
    RefreshPreferences {
        min_healthy_percentage: 90,
        max_healthy_percentage: 120,
        ..RefreshPreferences::from(&Refresh::default())
    }
}

fn active(id: &str, template_id: &str, version: &str) -> Rule {
    let refresh = InstanceRefresh::builder()
        .instance_refresh_id(id)
        .status(InstanceRefreshStatus::InProgress)
        .percentage_complete(20)
        .desired_configuration(
            DesiredConfiguration::builder()
                .launch_template(spec(template_id, version))
                .build(),
        )
        .build();
    describes(vec![refresh])
}

async fn recorded(emulator: &Emulator, asg: &str, status: AsgStatus, template_id: Option<&str>) {
    let stored = AsgRecord {
        wave: Some(0),
        ami: Some(NEW_AMI.into()),
        launch_template_id: template_id.map(str::to_string),
        launch_template_version: template_id.map(|_| "2".to_string()),
        ..record(ROLLOUT, asg, status)
    };
    emulator.store().put(&stored).await.unwrap();
}

/// The rollback policy's pass over what [`ROLLOUT`] has in flight, with `client` as Auto
/// Scaling.
async fn roll_back_in_flight(emulator: &Emulator, client: AutoScaling) -> InFlightResponse {
    refresher(emulator, client)
        .in_flight(ROLLOUT, true)
        .await
        .unwrap()
}

/// The record of `asg` in [`ROLLOUT`].
async fn record_of(emulator: &Emulator, asg: &str) -> AsgRecord {
    emulator.store().get(ROLLOUT, asg).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_rollback_acts_on_the_refresh_of_a_start_that_had_not_recorded_it() {
    let emulator = Emulator::start().await;
    // The start made version 2 and started its refresh, but has not recorded its id yet.
    recorded(&emulator, "web", AsgStatus::Starting, Some("lt-0123")).await;
    let rollback = rolls_back_group("web", "refresh-7");
    let client = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&active("refresh-7", "lt-0123", "2"), &rollback]
    );
    let response = roll_back_in_flight(&emulator, client).await;
    assert_eq!(response.acted_on, ["web"]);
    assert_eq!(rollback.num_calls(), 1);
    let stored = record_of(&emulator, "web").await;
    assert_eq!(
        (stored.status.clone(), stored.refresh_id.as_deref()),
        (AsgStatus::RollbackInProgress, Some("refresh-7"))
    );
}

#[tokio::test]
async fn a_start_without_a_refresh_yet_is_marked_stopped_and_someone_elses_refresh_is_left_alone() {
    let emulator = Emulator::start().await;
    recorded(&emulator, "web", AsgStatus::Starting, Some("lt-0123")).await;
    let rollback = rolls_back("manual-1");
    // The refresh running on the group goes to version 1: not this rollout's.
    let client = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&active("manual-1", "lt-0123", "1"), &rollback]
    );
    let response = roll_back_in_flight(&emulator, client).await;
    assert!(response.acted_on.is_empty(), "{response:?}");
    assert_eq!(rollback.num_calls(), 0);
    let stored = record_of(&emulator, "web").await;
    assert_eq!(stored.status, AsgStatus::Cancelled);
    assert_eq!(
        stored.reason.as_deref(),
        Some("stopped by the failure policy before its refresh started")
    );
    assert_eq!(
        emulator.store().stop_requested(ROLLOUT).await.unwrap(),
        Some(StopAction::Rollback)
    );
}

#[tokio::test]
async fn a_start_that_records_its_refresh_after_the_rollback_listed_undoes_it() {
    let emulator = Emulator::start().await;
    let template = emulator.launch_template("web-lt", OLD_AMI).await;
    recorded(&emulator, "web", AsgStatus::Planned, None).await;
    // The failure policy runs first: nothing of `web` is in flight when it lists the records.
    let idle = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&active("none", "lt-x", "9")]
    );
    let listed = roll_back_in_flight(&emulator, idle).await;
    assert!(listed.acted_on.is_empty());
    // Then the start that was already running reaches StartInstanceRefresh.
    let group = AutoScalingGroup::builder()
        .auto_scaling_group_name("web")
        .launch_template(spec(&template, "1"))
        .build();
    let start = starts("refresh-late");
    let rollback = rolls_back("refresh-late");
    let cancel = mock!(AutoScaling::cancel_instance_refresh).then_output(|| {
        CancelInstanceRefreshOutput::builder()
            .instance_refresh_id("refresh-late")
            .build()
    });
    let client = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&describes_group(group), &start, &rollback, &cancel]
    );
    let error = refresher(&emulator, client)
        .start(ROLLOUT, "web", NEW_AMI, 0, &preferences())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::RefreshFailed(m) if m.contains("refresh-late rolled back")),
        "{error:?}"
    );
    assert_eq!(
        (start.num_calls(), rollback.num_calls(), cancel.num_calls()),
        (1, 1, 0)
    );
    let stored = record_of(&emulator, "web").await;
    assert_eq!(
        (stored.status.clone(), stored.refresh_id.as_deref()),
        (AsgStatus::RollbackInProgress, Some("refresh-late"))
    );
    // A re-run's plan clears the stop, and starts are ordinary again.
    emulator.store().clear_stop(ROLLOUT).await.unwrap();
    assert_eq!(
        emulator.store().stop_requested(ROLLOUT).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_mixed_instances_group_is_refreshed_with_its_policy_and_only_the_version_changed() {
    let emulator = Emulator::start().await;
    let template = emulator.launch_template("spot-lt", OLD_AMI).await;
    recorded(&emulator, "spot", AsgStatus::Planned, None).await;
    let policy = mixed_policy(spec(&template, "1"), t3a_micro().weighted_capacity("2"))
        .instances_distribution(
            InstancesDistribution::builder()
                .on_demand_base_capacity(0)
                .spot_allocation_strategy("price-capacity-optimized")
                .build(),
        )
        .build();
    let group = AutoScalingGroup::builder()
        .auto_scaling_group_name("spot")
        .mixed_instances_policy(policy.clone())
        .build();
    let expected = policy.clone();
    let template_id = template.clone();
    let start = mock!(AutoScaling::start_instance_refresh)
        .match_requests(move |r| {
            let Some(mixed) = r
                .desired_configuration()
                .and_then(|d| d.mixed_instances_policy())
            else {
                return false;
            };
            let lt = mixed.launch_template().unwrap();
            let spec = lt.launch_template_specification().unwrap();
            r.desired_configuration()
                .and_then(|d| d.launch_template())
                .is_none()
                && spec.launch_template_id() == Some(template_id.as_str())
                && spec.version() == Some("2")
                && lt.overrides() == expected.launch_template().unwrap().overrides()
                && mixed.instances_distribution() == expected.instances_distribution()
        })
        .then_output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("refresh-spot")
                .build()
        });
    let client = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&describes_group(group), &start]
    );
    let step = refresher(&emulator, client)
        .start(ROLLOUT, "spot", NEW_AMI, 0, &preferences())
        .await
        .unwrap();
    assert_eq!(
        (step.status.clone(), start.num_calls()),
        (AsgStatus::Pending, 1)
    );
}

#[tokio::test]
async fn a_version_made_with_a_warning_starts_no_refresh() {
    let emulator = Emulator::start().await;
    let template = emulator.launch_template("web-lt", OLD_AMI).await;
    recorded(&emulator, "web", AsgStatus::Planned, None).await;
    let group = AutoScalingGroup::builder()
        .auto_scaling_group_name("web")
        .launch_template(spec(&template, "1"))
        .build();
    let start = starts("never");
    let autoscaling = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&describes_group(group), &start]
    );
    // EC2 made version 2 but warns that its AMI does not exist.
    let versions = emulator
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&template)
        .versions("1")
        .send()
        .await
        .unwrap();
    let current = versions.launch_template_versions()[0].clone();
    let describe = mock!(Ec2::describe_launch_template_versions).then_output(move || {
        aws_sdk_ec2::operation::describe_launch_template_versions::DescribeLaunchTemplateVersionsOutput::builder()
            .launch_template_versions(current.clone())
            .build()
    });
    let template_id = template.clone();
    let create = mock!(Ec2::create_launch_template_version).then_output(move || {
        CreateLaunchTemplateVersionOutput::builder()
            .launch_template_version(
                LaunchTemplateVersion::builder()
                    .launch_template_id(template_id.clone())
                    .version_number(2)
                    .build(),
            )
            .warning(
                ValidationWarning::builder()
                    .errors(
                        ValidationError::builder()
                            .code("InvalidAMIID.NotFound")
                            .message("The image id does not exist")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &create]);
    let refresher = Refresher {
        autoscaling,
        ec2,
        sfn: emulator.sfn(),
        store: emulator.store(),
        clock: emulator.clock(),
    };
    let error = refresher
        .start(ROLLOUT, "web", NEW_AMI, 0, &preferences())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Aws(m) if m.contains("InvalidAMIID.NotFound") && m.contains("no refresh was started")),
        "{error:?}"
    );
    assert_eq!(start.num_calls(), 0);
}

/// A record with a refresh id, as `start` leaves it once the refresh is running.
async fn running(emulator: &Emulator, asg: &str, refresh: &str) {
    let stored = AsgRecord {
        wave: Some(0),
        refresh_id: Some(refresh.into()),
        launch_template_id: Some("lt-0123".into()),
        ..record(ROLLOUT, asg, AsgStatus::InProgress)
    };
    emulator.store().put(&stored).await.unwrap();
}

#[tokio::test]
async fn a_retried_rollback_asks_aws_once_per_group_and_still_counts_it_pending() {
    let emulator = Emulator::start().await;
    running(&emulator, "web", "refresh-1").await;
    running(&emulator, "api", "refresh-2").await;
    let rollback = rolls_back("r");
    let client = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, [&rollback]);
    let refresher = refresher(&emulator, client);
    let first = refresher.in_flight(ROLLOUT, true).await.unwrap();
    assert_eq!((first.pending, rollback.num_calls()), (2, 2));
    // The state machine retries the Task (a timeout after the work was done): AWS would
    // refuse a second rollback, so none is asked, and both are still waited for.
    let again = refresher.in_flight(ROLLOUT, true).await.unwrap();
    assert_eq!(rollback.num_calls(), 2, "no second RollbackInstanceRefresh");
    assert_eq!(again.pending, 2);
    assert!(again.refused.is_empty(), "{again:?}");
    let mut acted = again.acted_on.clone();
    acted.sort();
    assert_eq!(acted, ["api", "web"]);
}

#[tokio::test]
async fn a_throttled_group_is_retried_after_every_other_group_was_rolled_back() {
    let emulator = Emulator::start().await;
    for (asg, refresh) in [("a", "refresh-a"), ("b", "refresh-b"), ("c", "refresh-c")] {
        running(&emulator, asg, refresh).await;
    }
    let throttled = mock!(AutoScaling::rollback_instance_refresh)
        .match_requests(|r| r.auto_scaling_group_name() == Some("b"))
        .sequence()
        .error(|| {
            RollbackInstanceRefreshError::generic(
                ErrorMetadata::builder()
                    .code("Throttling")
                    .message("Rate exceeded")
                    .build(),
            )
        })
        // Every attempt the SDK makes on its own (standard retry: 3) is throttled.
        .times(3)
        .output(|| {
            RollbackInstanceRefreshOutput::builder()
                .instance_refresh_id("r")
                .build()
        })
        .build();
    let others = rolls_back("r");
    let client = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&throttled, &others]
    );
    let refresher = refresher(&emulator, client);
    let error = refresher.in_flight(ROLLOUT, true).await.unwrap_err();
    assert!(matches!(error, Error::Retryable(_)), "{error:?}");
    // The others were rolled back and recorded despite b's throttling.
    for asg in ["a", "c"] {
        let stored = record_of(&emulator, asg).await;
        assert_eq!(stored.status, AsgStatus::RollbackInProgress, "{asg}");
    }
    assert_eq!(others.num_calls(), 2);
    let retried = refresher.in_flight(ROLLOUT, true).await.unwrap();
    assert_eq!((retried.pending, others.num_calls()), (3, 2), "{retried:?}");
    assert_eq!(
        emulator
            .store()
            .get(ROLLOUT, "b")
            .await
            .unwrap()
            .unwrap()
            .status,
        AsgStatus::RollbackInProgress
    );
}
