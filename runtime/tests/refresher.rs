//! The refresher: launch template versions and the progress table on moto; instance
//! refresh calls (which moto lacks) through aws-smithy-mocks.

mod common;

use aws_sdk_autoscaling::error::ErrorMetadata;
use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
use aws_sdk_autoscaling::operation::describe_instance_refreshes::{
    DescribeInstanceRefreshesError, DescribeInstanceRefreshesOutput,
};
use aws_sdk_autoscaling::operation::start_instance_refresh::StartInstanceRefreshOutput;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, DesiredConfiguration, InstanceRefresh, InstanceRefreshStatus,
    LaunchTemplateSpecification,
};
use aws_sdk_autoscaling::Client as AutoScaling;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use common::mocks::{
    describes, no_autoscaling, record, refresher, rolls_back, rolls_back_group,
    start_refused_in_progress, starts,
};
use common::{Emulator, NEW_AMI, OLD_AMI};
use generator::config::Refresh;
use generator::payload::{
    AsgStatus, FinishResponse, Outcome, RefreshPreferences, RefresherRequest, StepResponse,
};
use runtime::refresher::Refresher;
use runtime::store::{AsgRecord, RolloutStatus};
use runtime::wave_store;
use runtime::Error;

const ROLLOUT: &str = "r-1";

fn preferences() -> RefreshPreferences {
    RefreshPreferences {
        min_healthy_percentage: 90,
        max_healthy_percentage: 120,
        instance_warmup: Some(60),
        alarms: vec!["db-high".into()],
        checkpoint_percentages: vec![50, 100],
        checkpoint_delay: Some(30),
        ..RefreshPreferences::from(&Refresh::default())
    }
}

/// DescribeAutoScalingGroups answering with `asg` on launch template `template_id`.
fn group(asg: &'static str, template_id: String) -> Rule {
    mock!(AutoScaling::describe_auto_scaling_groups)
        .sequence()
        .output(move || {
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(
                    AutoScalingGroup::builder()
                        .auto_scaling_group_name(asg)
                        .launch_template(
                            LaunchTemplateSpecification::builder()
                                .launch_template_id(template_id.clone())
                                .version("$Latest")
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
        .repeatedly()
        .build()
}

fn refresh(
    id: &str,
    status: InstanceRefreshStatus,
    pct: i32,
    template_id: &str,
    version: &str,
) -> InstanceRefresh {
    InstanceRefresh::builder()
        .instance_refresh_id(id)
        .status(status)
        .percentage_complete(pct)
        .status_reason("test")
        .desired_configuration(
            DesiredConfiguration::builder()
                .launch_template(
                    LaunchTemplateSpecification::builder()
                        .launch_template_id(template_id)
                        .version(version)
                        .build(),
                )
                .build(),
        )
        .build()
}

async fn planned(emulator: &Emulator, asg: &str) {
    emulator
        .store()
        .put(&AsgRecord {
            wave: Some(0),
            ami: Some(NEW_AMI.into()),
            ..record(ROLLOUT, asg, AsgStatus::Planned)
        })
        .await
        .unwrap();
}

/// The status recorded for `asg` in [`ROLLOUT`].
async fn status_of(emulator: &Emulator, asg: &str) -> AsgStatus {
    emulator
        .store()
        .get(ROLLOUT, asg)
        .await
        .unwrap()
        .unwrap()
        .status
}

/// The round and the pending count of a SettleRollbacks answer.
fn round_and_pending(settle: &serde_json::Value) -> (Option<u64>, Option<u64>) {
    (settle["round"].as_u64(), settle["pending"].as_u64())
}

/// SettleRollbacks for round `round` of the rollout, through the Lambda entry point.
async fn settle_rollbacks(refresher: &Refresher, round: u32) -> serde_json::Value {
    refresher
        .handle(RefresherRequest::SettleRollbacks {
            rollout_id: ROLLOUT.into(),
            round,
        })
        .await
        .unwrap()
}

async fn image_of(emulator: &Emulator, template_id: &str, version: &str) -> String {
    let out = emulator
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(template_id)
        .versions(version)
        .send()
        .await
        .unwrap();
    out.launch_template_versions()[0]
        .launch_template_data()
        .and_then(|d| d.image_id())
        .unwrap()
        .to_string()
}

/// An emulator where `web`, on a new launch template `web-lt` of `ami`, is planned in
/// wave 0 of [`ROLLOUT`]; with the template's id.
async fn web_planned(ami: &str) -> (Emulator, String) {
    let emulator = Emulator::start().await;
    let template = emulator.launch_template("web-lt", ami).await;
    planned(&emulator, "web").await;
    (emulator, template)
}

/// The refresher's start of `web` in wave 0 of [`ROLLOUT`] with [`preferences`].
async fn start_web(refresher: &Refresher) -> Result<StepResponse, Error> {
    refresher
        .start(ROLLOUT, "web", NEW_AMI, 0, &preferences())
        .await
}

/// How many versions the launch template `template_id` has.
async fn version_count(emulator: &Emulator, template_id: &str) -> usize {
    emulator
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(template_id)
        .send()
        .await
        .unwrap()
        .launch_template_versions()
        .len()
}

/// A DescribeInstanceRefreshes answer listing the refresh `id` to version 2 of the
/// launch template `lt` alone.
fn lt_refresh(
    id: &str,
    status: InstanceRefreshStatus,
    pct: i32,
) -> DescribeInstanceRefreshesOutput {
    DescribeInstanceRefreshesOutput::builder()
        .instance_refreshes(refresh(id, status, pct, "lt", "2"))
        .build()
}

/// The error of a check of `web` when DescribeInstanceRefreshes fails with `code`.
async fn check_refused(emulator: &Emulator, code: &'static str, message: &'static str) -> Error {
    let refused = mock!(AutoScaling::describe_instance_refreshes).then_error(move || {
        DescribeInstanceRefreshesError::generic(
            ErrorMetadata::builder().code(code).message(message).build(),
        )
    });
    let client = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, [&refused]);
    refresher(emulator, client)
        .check(ROLLOUT, "web", 30)
        .await
        .unwrap_err()
}

/// Records `asg` of [`ROLLOUT`] with `status`.
async fn put_record(emulator: &Emulator, asg: &str, status: AsgStatus) {
    emulator
        .store()
        .put(&record(ROLLOUT, asg, status))
        .await
        .unwrap();
}

/// The summary the refresher's finish of [`ROLLOUT`] writes for `outcome`, without a cause.
async fn finish(emulator: &Emulator, outcome: Outcome) -> FinishResponse {
    refresher(emulator, no_autoscaling())
        .finish(ROLLOUT, outcome, None)
        .await
        .unwrap()
}

#[tokio::test]
async fn start_makes_a_numbered_version_with_the_ami_and_starts_once() {
    let (emulator, template) = web_planned(OLD_AMI).await;
    let start = mock!(AutoScaling::start_instance_refresh)
        .match_requests(|req| {
            let lt = req
                .desired_configuration()
                .and_then(|d| d.launch_template());
            let prefs = req.preferences().unwrap();
            req.auto_scaling_group_name() == Some("web")
                && lt.and_then(|l| l.version()) == Some("2")
                && prefs.min_healthy_percentage() == Some(90)
                && prefs.auto_rollback() == Some(true)
                && prefs.checkpoint_percentages() == [50, 100]
                && prefs.alarm_specification().map(|a| a.alarms())
                    == Some(&["db-high".to_string()][..])
        })
        .then_output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("refresh-1")
                .build()
        });
    let ongoing = describes(vec![refresh(
        "refresh-1",
        InstanceRefreshStatus::InProgress,
        40,
        &template,
        "2",
    )]);
    let client = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&group("web", template.clone()), &start, &ongoing]
    );
    let refresher = refresher(&emulator, client);
    let step = start_web(&refresher).await.unwrap();
    assert_eq!(
        (step.status.clone(), step.done),
        (AsgStatus::Pending, false)
    );
    assert_eq!(start.num_calls(), 1);
    assert_eq!(image_of(&emulator, &template, "2").await, NEW_AMI);
    let record = emulator.store().get(ROLLOUT, "web").await.unwrap().unwrap();
    assert_eq!(record.refresh_id.as_deref(), Some("refresh-1"));
    assert_eq!(record.launch_template_version.as_deref(), Some("2"));
    assert_eq!(
        record.launch_template_id.as_deref(),
        Some(template.as_str())
    );
    // A retried start adopts the running refresh: no second version, no second refresh.
    let again = start_web(&refresher).await.unwrap();
    assert_eq!(
        (again.status.clone(), again.percentage, again.done),
        (AsgStatus::InProgress, Some(40), false)
    );
    assert_eq!(
        start.num_calls(),
        1,
        "a retried start never starts a second refresh"
    );
    assert_eq!(
        version_count(&emulator, &template).await,
        2,
        "no second launch template version"
    );
}

#[tokio::test]
async fn an_interrupted_start_adopts_the_refresh_it_made() {
    let (emulator, template) = web_planned(OLD_AMI).await;
    // The first attempt started the refresh but died before recording its id.
    let in_progress = start_refused_in_progress();
    let started = starts("refresh-9");
    let active = describes(vec![refresh(
        "refresh-9",
        InstanceRefreshStatus::InProgress,
        10,
        &template,
        "2",
    )]);
    let first = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&group("web", template.clone()), &started]
    );
    start_web(&refresher(&emulator, first)).await.unwrap();
    // Forget the id, as if the write after StartInstanceRefresh never happened.
    let store = emulator.store();
    let mut record = store.get(ROLLOUT, "web").await.unwrap().unwrap();
    record.refresh_id = None;
    record.status = AsgStatus::Starting;
    store.put(&record).await.unwrap();
    let retry = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&group("web", template.clone()), &in_progress, &active]
    );
    let step = start_web(&refresher(&emulator, retry)).await.unwrap();
    assert!(!step.done);
    assert_eq!(in_progress.num_calls(), 1);
    assert_eq!(
        store
            .get(ROLLOUT, "web")
            .await
            .unwrap()
            .unwrap()
            .refresh_id
            .as_deref(),
        Some("refresh-9")
    );
}

/// Auto Scaling where `web` (on `template_id`) refuses a start because the refresh
/// `manual-7` to version 1, started by hand, is in progress.
fn foreign_refresh_on_web(template_id: &str) -> AutoScaling {
    let in_progress = start_refused_in_progress();
    let foreign = describes(vec![refresh(
        "manual-7",
        InstanceRefreshStatus::InProgress,
        5,
        template_id,
        "1",
    )]);
    mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [
            &group("web", template_id.to_owned()),
            &in_progress,
            &foreign
        ]
    )
}

#[tokio::test]
async fn a_refresh_that_is_not_ours_is_a_clear_failure_naming_the_asg() {
    let (emulator, template) = web_planned(OLD_AMI).await;
    // Someone started a refresh to version 1 by hand.
    let client = foreign_refresh_on_web(&template);
    let error = start_web(&refresher(&emulator, client)).await.unwrap_err();
    match &error {
        Error::Conflict(message) => {
            assert!(
                message.starts_with("web: instance refresh manual-7"),
                "{message}"
            );
            assert!(message.contains("not started by rollout r-1"), "{message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let diagnostic: lambda_runtime::Diagnostic = error.into();
    assert_eq!(diagnostic.error_type, "RefreshConflict");
    // Through the Lambda entry point the failed start is also recorded, with why.
    let client = foreign_refresh_on_web(&template);
    // The event names a position of the plan's wave; the name is read from the table.
    wave_store::put_waves(&emulator.store(), ROLLOUT, &[vec!["web".to_string()]], 1)
        .await
        .unwrap();
    let event = RefresherRequest::Start {
        rollout_id: ROLLOUT.into(),
        wave: 0,
        index: 0,
        ami: NEW_AMI.into(),
        preferences: preferences(),
    };
    assert!(matches!(
        refresher(&emulator, client).handle(event).await,
        Err(Error::Conflict(_))
    ));
    let record = emulator.store().get(ROLLOUT, "web").await.unwrap().unwrap();
    assert_eq!(record.status, AsgStatus::Failed);
    assert!(
        record
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("could not start: web: instance refresh manual-7"),
        "{record:?}"
    );
}

#[tokio::test]
async fn start_reuses_a_version_that_already_has_the_ami() {
    let (emulator, template) = web_planned(NEW_AMI).await;
    let start = mock!(AutoScaling::start_instance_refresh)
        .match_requests(|req| {
            req.desired_configuration()
                .and_then(|d| d.launch_template())
                .and_then(|l| l.version())
                == Some("1")
        })
        .then_output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("refresh-1")
                .build()
        });
    let client = mock_client!(
        aws_sdk_autoscaling,
        RuleMode::MatchAny,
        [&group("web", template.clone()), &start]
    );
    start_web(&refresher(&emulator, client)).await.unwrap();
    assert_eq!(start.num_calls(), 1);
    assert_eq!(version_count(&emulator, &template).await, 1);
}

async fn started(emulator: &Emulator, asg: &str, refresh_id: &str) {
    emulator
        .store()
        .put(&AsgRecord {
            wave: Some(0),
            refresh_id: Some(refresh_id.into()),
            started_at: Some(emulator.now.load(std::sync::atomic::Ordering::SeqCst)),
            ..record(ROLLOUT, asg, AsgStatus::Pending)
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn check_records_progress_success_failure_and_timeout() {
    let emulator = Emulator::start().await;
    started(&emulator, "ok", "refresh-ok").await;
    started(&emulator, "bad", "refresh-bad").await;
    started(&emulator, "slow", "refresh-slow").await;
    let ok = mock!(AutoScaling::describe_instance_refreshes)
        .match_requests(|r| r.auto_scaling_group_name() == Some("ok"))
        .sequence()
        .output(|| lt_refresh("refresh-ok", InstanceRefreshStatus::InProgress, 50))
        .output(|| lt_refresh("refresh-ok", InstanceRefreshStatus::Successful, 100))
        .build();
    let bad = mock!(AutoScaling::describe_instance_refreshes)
        .match_requests(|r| r.auto_scaling_group_name() == Some("bad"))
        .then_output(|| lt_refresh("refresh-bad", InstanceRefreshStatus::RollbackSuccessful, 30));
    let slow = mock!(AutoScaling::describe_instance_refreshes)
        .match_requests(|r| r.auto_scaling_group_name() == Some("slow"))
        .sequence()
        .output(|| lt_refresh("refresh-slow", InstanceRefreshStatus::InProgress, 10))
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, [&ok, &bad, &slow]);
    let refresher = refresher(&emulator, client);
    let step = refresher.check(ROLLOUT, "ok", 30).await.unwrap();
    assert_eq!(
        (step.status.clone(), step.percentage, step.done),
        (AsgStatus::InProgress, Some(50), false)
    );
    let step = refresher.check(ROLLOUT, "ok", 30).await.unwrap();
    assert_eq!(
        (step.status.clone(), step.done),
        (AsgStatus::Successful, true)
    );
    let store = emulator.store();
    let record = store.get(ROLLOUT, "ok").await.unwrap().unwrap();
    assert_eq!(
        (record.status.clone(), record.percentage),
        (AsgStatus::Successful, Some(100))
    );
    assert!(record.ended_at.is_some());
    let failed = refresher.check(ROLLOUT, "bad", 30).await.unwrap_err();
    assert!(
        matches!(&failed, Error::RefreshFailed(m) if m.starts_with("bad: instance refresh refresh-bad ended RollbackSuccessful")),
        "{failed:?}"
    );
    assert_eq!(
        status_of(&emulator, "bad").await,
        AsgStatus::RollbackSuccessful
    );
    refresher.check(ROLLOUT, "slow", 30).await.unwrap();
    emulator.advance(31 * 60);
    let timed_out = refresher.check(ROLLOUT, "slow", 30).await.unwrap_err();
    assert!(
        matches!(&timed_out, Error::TimedOut(m) if m.contains("after 30 minutes")),
        "{timed_out:?}"
    );
    assert_eq!(status_of(&emulator, "slow").await, AsgStatus::TimedOut);
}

#[tokio::test]
async fn rollback_acts_on_in_flight_refreshes_and_finish_reports_and_unlocks() {
    let emulator = Emulator::start().await;
    let store = emulator.store();
    store.acquire_lock(ROLLOUT, 1).await.unwrap();
    started(&emulator, "flying", "refresh-1").await;
    let mut done = AsgRecord {
        refresh_id: Some("refresh-2".into()),
        ..record(ROLLOUT, "done", AsgStatus::Successful)
    };
    store.put(&done).await.unwrap();
    done.asg = "broken".into();
    done.status = AsgStatus::Failed;
    done.reason = Some("health checks failed".into());
    store.put(&done).await.unwrap();
    let rollback = rolls_back_group("flying", "refresh-1");
    let client = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, [&rollback]);
    let refresher = refresher(&emulator, client);
    let result = refresher
        .handle(RefresherRequest::Rollback {
            rollout_id: ROLLOUT.into(),
            scope: generator::config::RollbackScope::InFlight,
            preferences: None,
        })
        .await
        .unwrap();
    assert_eq!(result["acted_on"], serde_json::json!(["flying"]));
    assert_eq!(rollback.num_calls(), 1);
    assert_eq!(
        status_of(&emulator, "flying").await,
        AsgStatus::RollbackInProgress
    );
    assert_eq!(result["pending"], 1);

    // settle_rollbacks reads the rollback until it ends; only rollbacks are read.
    let reads = |status| {
        let rule = describes(vec![refresh("refresh-1", status, 40, "lt-1", "2")]);
        let client = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, [&rule]);
        (rule, self::refresher(&emulator, client))
    };
    let (rule, running) = reads(InstanceRefreshStatus::RollbackInProgress);
    let settle = settle_rollbacks(&running, 0).await;
    assert_eq!(round_and_pending(&settle), (Some(1), Some(1)), "{settle}");
    assert_eq!(settle["still_running"], serde_json::json!(["flying"]));
    assert_eq!(rule.num_calls(), 1, "only the rollback is described");
    let (_rule, ended) = reads(InstanceRefreshStatus::RollbackSuccessful);
    let settle = settle_rollbacks(&ended, 1).await;
    assert_eq!(round_and_pending(&settle), (Some(2), Some(0)), "{settle}");
    assert_eq!(settle["ended"], serde_json::json!(["flying"]));
    let flying = store.get(ROLLOUT, "flying").await.unwrap().unwrap();
    assert_eq!(flying.status, AsgStatus::RollbackSuccessful);
    assert_eq!(
        flying.reason.as_deref(),
        Some("rolled back by the failure policy; test"),
        "why it was rolled back stays"
    );
    assert!(flying.ended_at.is_some());

    let summary = refresher
        .finish(
            ROLLOUT,
            Outcome::Failed,
            Some(&serde_json::json!({"Error": "States.ExceedToleratedFailureThreshold"})),
        )
        .await
        .unwrap();
    assert_eq!(
        (summary.outcome, summary.succeeded, summary.failed),
        (Outcome::Failed, 1, 2)
    );
    assert!(
        summary
            .message
            .contains("broken (Failed: health checks failed)"),
        "{}",
        summary.message
    );
    assert!(
        summary
            .message
            .contains("flying (RollbackSuccessful: rolled back by the failure policy"),
        "{}",
        summary.message
    );
    assert_eq!(
        store.lock_holder().await.unwrap(),
        None,
        "finish releases the lock"
    );
    assert_eq!(
        store.summary(ROLLOUT).await.unwrap().unwrap().status,
        RolloutStatus::Failed
    );
}

#[tokio::test]
async fn finish_of_a_clean_rollout_succeeds_and_a_plan_failure_names_its_cause() {
    let emulator = Emulator::start().await;
    let store = emulator.store();
    store.acquire_lock(ROLLOUT, 1).await.unwrap();
    put_record(&emulator, "a", AsgStatus::Successful).await;
    put_record(&emulator, "b", AsgStatus::Skipped).await;
    let summary = finish(&emulator, Outcome::Succeeded).await;
    assert_eq!(
        (
            summary.outcome,
            summary.succeeded,
            summary.failed,
            summary.skipped
        ),
        (Outcome::Succeeded, 1, 0, 1)
    );
    assert_eq!(summary.message, "1 ASGs refreshed, 1 skipped");
    let cause = serde_json::json!({"Error": "InvalidInput", "Cause": "{\"errorType\":\"InvalidInput\",\"errorMessage\":\"the plan has 9 waves\"}"});
    let failed = refresher(&emulator, no_autoscaling())
        .finish("r-2", Outcome::Failed, Some(&cause))
        .await
        .unwrap();
    assert_eq!(failed.message, "rollout failed: the plan has 9 waves");
}

#[tokio::test]
async fn throttling_is_retryable_and_access_denied_is_not() {
    let emulator = Emulator::start().await;
    started(&emulator, "web", "refresh-1").await;
    for (code, message, retryable) in [
        ("Throttling", "Rate exceeded", true),
        ("AccessDenied", "no", false),
    ] {
        let error = check_refused(&emulator, code, message).await;
        let classified = if retryable {
            matches!(&error, Error::Retryable(m) if m.contains(code))
        } else {
            matches!(&error, Error::Aws(m) if m.contains(code))
        };
        assert!(classified, "{code}: {error:?}");
    }
}

#[tokio::test]
async fn rollback_also_reaches_a_timed_out_refresh() {
    let emulator = Emulator::start().await;
    started(&emulator, "slow", "refresh-1").await;
    let store = emulator.store();
    let mut record = store.get(ROLLOUT, "slow").await.unwrap().unwrap();
    record.status = AsgStatus::TimedOut;
    store.put(&record).await.unwrap();
    let rollback = rolls_back("refresh-1");
    let client = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, [&rollback]);
    let result = refresher(&emulator, client)
        .in_flight(ROLLOUT, true)
        .await
        .unwrap();
    assert_eq!(result.acted_on, vec!["slow"]);
    assert_eq!(rollback.num_calls(), 1);
}

#[tokio::test]
async fn a_stopped_rollout_names_what_is_still_running_and_never_started() {
    let emulator = Emulator::start().await;
    let store = emulator.store();
    store
        .put(&AsgRecord {
            reason: Some("health checks failed".into()),
            ..record(ROLLOUT, "b", AsgStatus::Failed)
        })
        .await
        .unwrap();
    put_record(&emulator, "c", AsgStatus::InProgress).await;
    put_record(&emulator, "d", AsgStatus::Planned).await;
    let summary = finish(&emulator, Outcome::Failed).await;
    assert_eq!(
        summary.message,
        "1 of 3 ASGs failed: b (Failed: health checks failed); still refreshing: c; not started: d"
    );
}

#[tokio::test]
async fn a_completed_rollout_with_an_unfinished_asg_is_not_a_success() {
    // A start that failed after its retries without recording a failure leaves `Planned`.
    let emulator = Emulator::start().await;
    put_record(&emulator, "a", AsgStatus::Successful).await;
    put_record(&emulator, "b", AsgStatus::Planned).await;
    let summary = finish(&emulator, Outcome::Succeeded).await;
    assert_eq!((summary.outcome, summary.failed), (Outcome::Failed, 1));
    assert!(
        summary
            .message
            .starts_with("1 of 2 ASGs failed: b (Planned)"),
        "{}",
        summary.message
    );
}

#[tokio::test]
async fn malformed_events_are_invalid_input() {
    let event = serde_json::json!({"action": "start", "rollout_id": "r-1"});
    let error = runtime::parse_event::<RefresherRequest>(event).unwrap_err();
    assert!(
        matches!(&error, Error::InvalidInput(m) if m.contains("missing field")),
        "{error:?}"
    );
    let event = serde_json::json!({"action": "explode", "rollout_id": "r-1"});
    assert!(matches!(
        runtime::parse_event::<RefresherRequest>(event),
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn every_action_refuses_a_malformed_rollout_id_before_any_call() {
    let emulator = Emulator::start().await;
    let refresher = refresher(&emulator, no_autoscaling());
    let id = || "r 1/../x".to_string();
    let actions = [
        RefresherRequest::Wave {
            rollout_id: id(),
            wave: 0,
        },
        RefresherRequest::Start {
            rollout_id: id(),
            wave: 0,
            index: 0,
            ami: NEW_AMI.into(),
            preferences: preferences(),
        },
        RefresherRequest::Check {
            rollout_id: id(),
            asg: "a".into(),
            timeout_minutes: 60,
        },
        RefresherRequest::AwaitRefresh {
            rollout_id: id(),
            asg: "a".into(),
            task_token: "token".into(),
        },
        RefresherRequest::CheckAlarms {
            rollout_id: id(),
            wave: 0,
            since: 0,
            alarms: Vec::new(),
        },
        RefresherRequest::SpendBudget {
            rollout_id: id(),
            wave: 0,
            index: 0,
            planned: 4,
            max_failures: generator::config::MaxFailures::Count(1),
        },
        RefresherRequest::AwaitApproval {
            rollout_id: id(),
            wave: 0,
            task_token: "token".into(),
        },
        RefresherRequest::Rollback {
            rollout_id: id(),
            scope: generator::config::RollbackScope::InFlight,
            preferences: None,
        },
        RefresherRequest::Cancel { rollout_id: id() },
        RefresherRequest::SettleRollbacks {
            rollout_id: id(),
            round: 0,
        },
        RefresherRequest::Finish {
            rollout_id: id(),
            outcome: Outcome::Succeeded,
            error: None,
        },
    ];
    for action in actions {
        let shown = format!("{action:?}");
        match refresher.handle(action).await {
            Err(Error::InvalidInput(message)) => assert!(
                message.contains("`r 1/../x` is not a rollout id"),
                "{shown}: {message}"
            ),
            other => panic!("{shown}: expected the id refused, got {other:?}"),
        }
    }
    // Nothing was written: no approval, no summary, no lock.
    assert!(emulator.store().list("r 1/../x").await.unwrap().is_empty());
    assert_eq!(emulator.store().lock_holder().await.unwrap(), None);
}
