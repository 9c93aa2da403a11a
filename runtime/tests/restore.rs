//! The rollback policy's restore (`rollback_scope`) on the progress table (moto), with the
//! instance refresh calls (which moto lacks) through aws-smithy-mocks.

mod common;

use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
use aws_sdk_autoscaling::operation::rollback_instance_refresh::RollbackInstanceRefreshError;
use aws_sdk_autoscaling::operation::start_instance_refresh::StartInstanceRefreshOutput;
use aws_sdk_autoscaling::types::error::ActiveInstanceRefreshNotFoundFault;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, InstanceRefresh, InstanceRefreshStatus, LaunchTemplateSpecification,
};
use aws_sdk_autoscaling::Client as AutoScaling;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use common::mocks::{describes_group, record, refresher};
use common::Emulator;
use generator::config::RollbackScope;
use generator::payload::{AsgStatus, RefresherRequest};
use runtime::store::AsgRecord;

const ROLLOUT: &str = "r-restore";

/// A group of wave 0 that the rollout moved from version 1 to 3 of `lt-1`.
fn refreshed(asg: &str, current: AsgStatus, refresh_id: &str) -> AsgRecord {
    AsgRecord {
        wave: Some(0),
        refresh_id: Some(refresh_id.into()),
        launch_template_id: Some("lt-1".into()),
        launch_template_version: Some("3".into()),
        previous_version: Some("1".into()),
        ..record(ROLLOUT, asg, current)
    }
}

/// A group whose refresh the table still shows InProgress but which ended Successful before
/// the rollback (RollbackInstanceRefresh: no active refresh) is restored like a group the
/// table already knew had finished.
#[tokio::test]
async fn a_refresh_that_finished_unseen_is_restored_too() {
    let emulator = Emulator::start().await;
    let store = emulator.store();
    store
        .put(&refreshed("done", AsgStatus::Successful, "refresh-done"))
        .await
        .unwrap();
    store
        .put(&refreshed("late", AsgStatus::InProgress, "refresh-late"))
        .await
        .unwrap();
    let refused = mock!(AutoScaling::rollback_instance_refresh)
        .match_requests(|r| r.auto_scaling_group_name() == Some("late"))
        .then_error(|| {
            RollbackInstanceRefreshError::ActiveInstanceRefreshNotFoundFault(
                ActiveInstanceRefreshNotFoundFault::builder()
                    .message("No in progress or pending Instance Refresh found")
                    .build(),
            )
        });
    let described = mock!(AutoScaling::describe_instance_refreshes)
        .match_requests(|r| r.auto_scaling_group_name() == Some("late"))
        .sequence()
        .output(|| {
            DescribeInstanceRefreshesOutput::builder()
                .instance_refreshes(
                    InstanceRefresh::builder()
                        .instance_refresh_id("refresh-late")
                        .auto_scaling_group_name("late")
                        .status(InstanceRefreshStatus::Successful)
                        .percentage_complete(100)
                        .build(),
                )
                .build()
        })
        .repeatedly()
        .build();
    let group = describes_group(
        AutoScalingGroup::builder()
            .auto_scaling_group_name("any")
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id("lt-1")
                    .version("3")
                    .build(),
            )
            .build(),
    );
    let restores = mock!(AutoScaling::start_instance_refresh)
        .match_requests(|r| {
            r.desired_configuration()
                .and_then(|d| d.launch_template())
                .is_some_and(|lt| {
                    lt.launch_template_id() == Some("lt-1") && lt.version() == Some("1")
                })
        })
        .sequence()
        .output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("restore")
                .build()
        })
        .repeatedly()
        .build();
    let client = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&refused, &described, &group, &restores]
    );
    let result = refresher(&emulator, client)
        .handle(RefresherRequest::Rollback {
            rollout_id: ROLLOUT.into(),
            scope: RollbackScope::Wave,
            preferences: None,
        })
        .await
        .unwrap();
    assert_eq!(result["pending"], 2, "{result}");
    assert_eq!(restores.num_calls(), 2, "{result}");
    for asg in ["done", "late"] {
        let stored = store.get(ROLLOUT, asg).await.unwrap().unwrap();
        assert_eq!(stored.status, AsgStatus::Restoring, "{asg}: {stored:?}");
        assert_eq!(stored.restore_refresh_id.as_deref(), Some("restore"));
        assert_eq!(
            stored.refresh_id.as_deref(),
            Some(format!("refresh-{asg}").as_str())
        );
    }
}
