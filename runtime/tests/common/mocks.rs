//! Auto Scaling answers for the refresher tests (moto has no instance refreshes), and the
//! refresher wired to the emulator with a mocked Auto Scaling client.

use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
use aws_sdk_autoscaling::operation::rollback_instance_refresh::RollbackInstanceRefreshOutput;
use aws_sdk_autoscaling::operation::start_instance_refresh::{
    StartInstanceRefreshError, StartInstanceRefreshOutput,
};
use aws_sdk_autoscaling::types::error::InstanceRefreshInProgressFault;
use aws_sdk_autoscaling::types::{AutoScalingGroup, InstanceRefresh};
use aws_sdk_autoscaling::Client as AutoScaling;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use generator::payload::AsgStatus;
use runtime::refresher::Refresher;
use runtime::store::AsgRecord;

use super::Emulator;

/// The refresher on the emulator's EC2, Step Functions and table, with `autoscaling`.
pub fn refresher(emulator: &Emulator, autoscaling: AutoScaling) -> Refresher {
    Refresher {
        autoscaling,
        ec2: emulator.ec2.clone(),
        sfn: emulator.sfn(),
        store: emulator.store(),
        clock: emulator.clock(),
    }
}

/// An Auto Scaling client with no answers: any call it receives fails the test.
pub fn no_autoscaling() -> AutoScaling {
    mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, Vec::<&Rule>::new())
}

/// DescribeAutoScalingGroups answering with `group`, however often it is called.
pub fn describes_group(group: AutoScalingGroup) -> Rule {
    mock!(AutoScaling::describe_auto_scaling_groups)
        .sequence()
        .output(move || {
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(group.clone())
                .build()
        })
        .repeatedly()
        .build()
}

/// DescribeInstanceRefreshes answering with `refreshes`, however often it is called.
pub fn describes(refreshes: Vec<InstanceRefresh>) -> Rule {
    mock!(AutoScaling::describe_instance_refreshes)
        .sequence()
        .output(move || {
            DescribeInstanceRefreshesOutput::builder()
                .set_instance_refreshes(Some(refreshes.clone()))
                .build()
        })
        .repeatedly()
        .build()
}

/// StartInstanceRefresh answering with the refresh `id`.
pub fn starts(id: &'static str) -> Rule {
    mock!(AutoScaling::start_instance_refresh).then_output(move || {
        StartInstanceRefreshOutput::builder()
            .instance_refresh_id(id)
            .build()
    })
}

/// StartInstanceRefresh refused because a refresh is already running on the group.
pub fn start_refused_in_progress() -> Rule {
    mock!(AutoScaling::start_instance_refresh).then_error(|| {
        StartInstanceRefreshError::InstanceRefreshInProgressFault(
            InstanceRefreshInProgressFault::builder()
                .message("busy")
                .build(),
        )
    })
}

/// RollbackInstanceRefresh answering with the refresh `id`.
pub fn rolls_back(id: &'static str) -> Rule {
    mock!(AutoScaling::rollback_instance_refresh).then_output(move || {
        RollbackInstanceRefreshOutput::builder()
            .instance_refresh_id(id)
            .build()
    })
}

/// RollbackInstanceRefresh of the group `asg` only, answering with the refresh `id`.
pub fn rolls_back_group(asg: &'static str, id: &'static str) -> Rule {
    mock!(AutoScaling::rollback_instance_refresh)
        .match_requests(move |r| r.auto_scaling_group_name() == Some(asg))
        .then_output(move || {
            RollbackInstanceRefreshOutput::builder()
                .instance_refresh_id(id)
                .build()
        })
}

/// The record of `asg` in `rollout` with `status`, updated at time 1, all else unset.
pub fn record(rollout: &str, asg: &str, status: AsgStatus) -> AsgRecord {
    AsgRecord {
        rollout_id: rollout.into(),
        asg: asg.into(),
        status,
        updated_at: 1,
        ..AsgRecord::default()
    }
}
