//! The completer and the store-token step (`completion = "events"`): the progress table on
//! moto, Step Functions' SendTaskSuccess and SendTaskFailure through aws-smithy-mocks.

mod common;

use aws_sdk_sfn::operation::send_task_failure::SendTaskFailureOutput;
use aws_sdk_sfn::operation::send_task_success::{SendTaskSuccessError, SendTaskSuccessOutput};
use aws_sdk_sfn::types::error::{InvalidToken, TaskTimedOut};
use aws_sdk_sfn::Client as Sfn;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use common::Emulator;
use generator::events::{InstanceRefreshEvent, RefreshEventDetail, RefreshEventKind};
use generator::payload::{errors, AsgStatus, RefresherRequest, StepResponse};
use runtime::completion::{wait_key, Completer, Handled};
use runtime::refresher::Refresher;
use runtime::store::AsgRecord;
use runtime::Error;
use serde_json::json;

const ROLLOUT: &str = "r-events";
const REFRESH: &str = "ab00cf8f-9126-4f3c-8010-dbb8cad6fb86";
const TOKEN: &str = "token-of-the-wait";

fn event(kind: RefreshEventKind, asg: &str, refresh_id: &str) -> InstanceRefreshEvent {
    InstanceRefreshEvent {
        id: "1".into(),
        detail_type: kind.detail_type().into(),
        source: "aws.autoscaling".into(),
        time: "2026-11-27T17:00:00Z".into(),
        detail: RefreshEventDetail {
            auto_scaling_group_name: asg.into(),
            instance_refresh_id: refresh_id.into(),
            checkpoint_percentage: None,
            checkpoint_delay: None,
        },
    }
}

/// `kind` of the refresh REFRESH of `web`.
fn web_event(kind: RefreshEventKind) -> InstanceRefreshEvent {
    event(kind, "web", REFRESH)
}

fn checkpoint(asg: &str, percentage: u32) -> InstanceRefreshEvent {
    let mut event = event(RefreshEventKind::CheckpointReached, asg, REFRESH);
    event.detail.checkpoint_percentage = Some(percentage);
    event
}

/// SendTaskSuccess answering every call, and SendTaskFailure the same.
fn accepting() -> (Rule, Rule) {
    (
        mock!(Sfn::send_task_success).then_output(|| SendTaskSuccessOutput::builder().build()),
        mock!(Sfn::send_task_failure).then_output(|| SendTaskFailureOutput::builder().build()),
    )
}

fn completer(emulator: &Emulator, rules: &[&Rule]) -> Completer {
    Completer {
        store: emulator.store(),
        sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, rules),
        clock: emulator.clock(),
    }
}

/// The rollout holds the lock; `asg` refreshes with REFRESH.
async fn refreshing(emulator: &Emulator, asg: &str) {
    let store = emulator.store();
    store.acquire_lock(ROLLOUT, 1).await.unwrap();
    store
        .put(&AsgRecord {
            rollout_id: ROLLOUT.into(),
            asg: asg.into(),
            wave: Some(0),
            status: AsgStatus::InProgress,
            refresh_id: Some(REFRESH.into()),
            percentage: Some(10),
            started_at: Some(1),
            updated_at: 1,
            ..AsgRecord::default()
        })
        .await
        .unwrap();
}

/// An emulator where the rollout holds the lock and `web` refreshes with REFRESH.
async fn web_refreshing() -> Emulator {
    let emulator = Emulator::start().await;
    refreshing(&emulator, "web").await;
    emulator
}

async fn record(emulator: &Emulator, asg: &str) -> AsgRecord {
    emulator.store().get(ROLLOUT, asg).await.unwrap().unwrap()
}

/// The completer's handling of `event`, which must not fail.
async fn handle(completer: &Completer, event: &InstanceRefreshEvent) -> Handled {
    completer.handle_event(event).await.unwrap()
}

/// Whether the table has an item of the rollout under `key`.
async fn is_recorded(emulator: &Emulator, key: &str) -> bool {
    emulator.store().get(ROLLOUT, key).await.unwrap().is_some()
}

fn answered(asg: &str, status: AsgStatus) -> Handled {
    Handled::Answered {
        asg: asg.into(),
        refresh_id: REFRESH.into(),
        status,
    }
}

#[tokio::test]
async fn a_succeeded_event_answers_the_stored_token_with_the_status() {
    let emulator = web_refreshing().await;
    let (success, failure) = accepting();
    let completer = completer(&emulator, &[&success, &failure]);
    let waiting = completer.store_token(ROLLOUT, "web", TOKEN).await.unwrap();
    assert_eq!(
        waiting,
        Handled::Waiting {
            asg: "web".into(),
            refresh_id: REFRESH.into()
        }
    );
    assert_eq!(success.num_calls(), 0, "nothing ended yet");
    let handled = handle(&completer, &web_event(RefreshEventKind::Succeeded)).await;
    assert_eq!(handled, answered("web", AsgStatus::Successful));
    assert_eq!((success.num_calls(), failure.num_calls()), (1, 0));
    let record = record(&emulator, "web").await;
    assert_eq!(record.status, AsgStatus::Successful);
    assert_eq!(record.percentage, Some(100));
    assert_eq!(record.ended_at, Some(1_800_000_000));
}

#[tokio::test]
async fn the_answer_is_what_the_state_machine_reads_and_carries_the_token() {
    let emulator = web_refreshing().await;
    let success = mock!(Sfn::send_task_success)
        .match_requests(|r| {
            r.task_token() == Some(TOKEN)
                && r.output().is_some_and(|o| {
                    serde_json::from_str::<StepResponse>(o).is_ok_and(|s| {
                        s.done && s.asg == "web" && s.status == AsgStatus::Successful
                    })
                })
        })
        .then_output(|| SendTaskSuccessOutput::builder().build());
    let completer = completer(&emulator, &[&success]);
    completer.store_token(ROLLOUT, "web", TOKEN).await.unwrap();
    handle(&completer, &web_event(RefreshEventKind::Succeeded)).await;
    assert_eq!(success.num_calls(), 1);
}

#[tokio::test]
async fn an_unsuccessful_end_fails_the_wait_with_refresh_ended() {
    for (kind, end) in [
        (RefreshEventKind::Failed, AsgStatus::Failed),
        (RefreshEventKind::Cancelled, AsgStatus::Cancelled),
        (
            RefreshEventKind::RollbackSucceeded,
            AsgStatus::RollbackSuccessful,
        ),
        (RefreshEventKind::RollbackFailed, AsgStatus::RollbackFailed),
    ] {
        let emulator = web_refreshing().await;
        let failure = mock!(Sfn::send_task_failure)
            .match_requests(|r| {
                r.task_token() == Some(TOKEN)
                    && r.error() == Some(errors::REFRESH_ENDED)
                    && r.cause().is_some_and(|c| c.contains(REFRESH))
            })
            .then_output(|| SendTaskFailureOutput::builder().build());
        let success =
            mock!(Sfn::send_task_success).then_output(|| SendTaskSuccessOutput::builder().build());
        let completer = completer(&emulator, &[&failure, &success]);
        completer.store_token(ROLLOUT, "web", TOKEN).await.unwrap();
        let handled = completer.handle_event(&web_event(kind)).await.unwrap();
        assert_eq!(handled, answered("web", end.clone()), "{kind:?}");
        assert_eq!(
            (failure.num_calls(), success.num_calls()),
            (1, 0),
            "{kind:?}"
        );
        let record = record(&emulator, "web").await;
        assert_eq!(record.status, end);
        assert!(
            record
                .reason
                .as_deref()
                .is_some_and(|r| r.contains(end.as_str())),
            "{record:?}"
        );
        assert!(record.status.is_failed());
    }
}

#[tokio::test]
async fn a_duplicate_event_is_answered_by_step_functions_refusing_the_closed_token() {
    let emulator = web_refreshing().await;
    // Step Functions closes a token at its first answer: "The task token has either expired
    // or the task associated with the token has already been closed" (TaskTimedOut, API
    // reference of SendTaskSuccess).
    let success = mock!(Sfn::send_task_success)
        .sequence()
        .output(|| SendTaskSuccessOutput::builder().build())
        .error(|| SendTaskSuccessError::TaskTimedOut(TaskTimedOut::builder().build()))
        .repeatedly()
        .build();
    let completer = completer(&emulator, &[&success]);
    completer.store_token(ROLLOUT, "web", TOKEN).await.unwrap();
    let succeeded = web_event(RefreshEventKind::Succeeded);
    assert_eq!(
        handle(&completer, &succeeded).await,
        answered("web", AsgStatus::Successful)
    );
    let ended_at = record(&emulator, "web").await.ended_at;
    emulator.advance(30);
    assert_eq!(
        handle(&completer, &succeeded).await,
        Handled::AlreadyAnswered {
            asg: "web".into(),
            refresh_id: REFRESH.into(),
            status: AsgStatus::Successful
        }
    );
    assert_eq!(success.num_calls(), 2);
    // The end is recorded once: the duplicate does not move it.
    assert_eq!(record(&emulator, "web").await.ended_at, ended_at);
}

#[tokio::test]
async fn a_token_already_used_is_not_an_error() {
    let emulator = web_refreshing().await;
    let success = mock!(Sfn::send_task_success)
        .then_error(|| SendTaskSuccessError::InvalidToken(InvalidToken::builder().build()));
    let completer = completer(&emulator, &[&success]);
    completer.store_token(ROLLOUT, "web", TOKEN).await.unwrap();
    let handled = handle(&completer, &web_event(RefreshEventKind::Succeeded)).await;
    assert!(
        matches!(handled, Handled::AlreadyAnswered { .. }),
        "{handled:?}"
    );
    // The table still says how the refresh ended.
    assert_eq!(record(&emulator, "web").await.status, AsgStatus::Successful);
}

#[tokio::test]
async fn a_throttled_answer_is_retryable_so_the_event_is_delivered_again() {
    let emulator = web_refreshing().await;
    let success = mock!(Sfn::send_task_success).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
            aws_smithy_types::body::SdkBody::from(
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            ),
        )
    });
    let completer = completer(&emulator, &[&success]);
    completer.store_token(ROLLOUT, "web", TOKEN).await.unwrap();
    let error = completer
        .handle_event(&web_event(RefreshEventKind::Succeeded))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Retryable(_)), "{error:?}");
}

#[tokio::test]
async fn events_of_groups_or_refreshes_the_rollout_lacks_are_ignored() {
    let emulator = Emulator::start().await;
    let (success, failure) = accepting();
    let completer = completer(&emulator, &[&success, &failure]);
    // No rollout holds the lock.
    let handled = handle(&completer, &web_event(RefreshEventKind::Succeeded)).await;
    assert!(
        matches!(&handled, Handled::Ignored { reason } if reason.contains("no rollout")),
        "{handled:?}"
    );
    refreshing(&emulator, "web").await;
    completer.store_token(ROLLOUT, "web", TOKEN).await.unwrap();
    // A group outside the rollout: nothing is written for it.
    let handled = handle(
        &completer,
        &event(RefreshEventKind::Succeeded, "other", REFRESH),
    )
    .await;
    assert!(
        matches!(&handled, Handled::Ignored { reason } if reason.contains("not part of rollout")),
        "{handled:?}"
    );
    assert!(!is_recorded(&emulator, "other").await);
    assert!(!is_recorded(&emulator, &wait_key("other")).await);
    // Another refresh of a group of the rollout (an older one, say).
    let handled = handle(
        &completer,
        &event(RefreshEventKind::Failed, "web", "older-refresh"),
    )
    .await;
    assert!(
        matches!(&handled, Handled::Ignored { reason } if reason.contains("older-refresh")),
        "{handled:?}"
    );
    // An event the completer does not act on.
    let mut baking = web_event(RefreshEventKind::Succeeded);
    baking.detail_type = "EC2 Auto Scaling Instance Refresh Started Baking".into();
    assert!(matches!(
        handle(&completer, &baking).await,
        Handled::Ignored { .. }
    ));
    assert_eq!((success.num_calls(), failure.num_calls()), (0, 0));
    assert_eq!(record(&emulator, "web").await.status, AsgStatus::InProgress);
}

#[tokio::test]
async fn an_end_recorded_before_the_token_is_answered_by_the_step_that_stores_it() {
    let emulator = web_refreshing().await;
    let (success, failure) = accepting();
    let completer = completer(&emulator, &[&success, &failure]);
    // The refresh ends (and its event is handled) before the child stored its token.
    let handled = handle(&completer, &web_event(RefreshEventKind::Succeeded)).await;
    assert_eq!(
        handled,
        Handled::Recorded {
            asg: "web".into(),
            refresh_id: REFRESH.into(),
            status: AsgStatus::Successful
        }
    );
    assert_eq!(success.num_calls(), 0, "no token to answer yet");
    assert_eq!(record(&emulator, "web").await.status, AsgStatus::Successful);
    // The store-token step finds it and answers its own token.
    let handled = completer.store_token(ROLLOUT, "web", TOKEN).await.unwrap();
    assert_eq!(handled, answered("web", AsgStatus::Successful));
    assert_eq!(success.num_calls(), 1);
}

#[tokio::test]
async fn an_event_before_the_refresh_id_was_recorded_is_kept_for_the_wait() {
    let emulator = Emulator::start().await;
    let store = emulator.store();
    store.acquire_lock(ROLLOUT, 1).await.unwrap();
    // The start has made the refresh but not yet recorded its id when the event comes.
    let mut starting = AsgRecord {
        rollout_id: ROLLOUT.into(),
        asg: "web".into(),
        status: AsgStatus::Starting,
        started_at: Some(1),
        updated_at: 1,
        ..AsgRecord::default()
    };
    store.put(&starting).await.unwrap();
    let (success, failure) = accepting();
    let completer = completer(&emulator, &[&success, &failure]);
    let handled = handle(&completer, &web_event(RefreshEventKind::Failed)).await;
    assert!(matches!(handled, Handled::Recorded { .. }), "{handled:?}");
    starting.refresh_id = Some(REFRESH.into());
    starting.status = AsgStatus::Pending;
    store.put(&starting).await.unwrap();
    let handled = completer.store_token(ROLLOUT, "web", TOKEN).await.unwrap();
    assert_eq!(handled, answered("web", AsgStatus::Failed));
    assert_eq!((success.num_calls(), failure.num_calls()), (0, 1));
    assert_eq!(record(&emulator, "web").await.status, AsgStatus::Failed);
}

#[tokio::test]
async fn token_and_event_racing_answer_exactly_once() {
    let emulator = Emulator::start().await;
    let (success, failure) = accepting();
    let completer = completer(&emulator, &[&success, &failure]);
    let groups: Vec<String> = (0..24).map(|i| format!("web-{i}")).collect();
    for asg in &groups {
        refreshing(&emulator, asg).await;
    }
    // Each group's event and token arrive at the same moment: whichever write is second
    // answers, so every token is answered once, never zero times.
    let races = groups.iter().map(|asg| {
        let completer = completer.clone();
        async move {
            let ended = event(RefreshEventKind::Succeeded, asg, REFRESH);
            let token = format!("token-{asg}");
            let (by_event, by_token) = tokio::join!(
                completer.handle_event(&ended),
                completer.store_token(ROLLOUT, asg, &token)
            );
            let answers = [by_event.unwrap(), by_token.unwrap()]
                .iter()
                .filter(|h| matches!(h, Handled::Answered { .. }))
                .count();
            (asg.clone(), answers)
        }
    });
    for (asg, answers) in futures_util::future::join_all(races).await {
        assert_eq!(answers, 1, "{asg}");
    }
    assert_eq!(success.num_calls(), groups.len());
}

#[tokio::test]
async fn checkpoints_record_progress_in_order_only_while_the_refresh_runs() {
    let emulator = web_refreshing().await;
    let (success, failure) = accepting();
    let completer = completer(&emulator, &[&success, &failure]);
    assert_eq!(
        handle(&completer, &checkpoint("web", 50)).await,
        Handled::Progress {
            asg: "web".into(),
            percentage: 50
        }
    );
    assert_eq!(record(&emulator, "web").await.percentage, Some(50));
    // A late checkpoint behind what is recorded changes nothing.
    assert!(matches!(
        handle(&completer, &checkpoint("web", 20)).await,
        Handled::Ignored { .. }
    ));
    assert_eq!(record(&emulator, "web").await.percentage, Some(50));
    // After the end, a checkpoint delivered late changes nothing either.
    handle(&completer, &web_event(RefreshEventKind::Succeeded)).await;
    handle(&completer, &checkpoint("web", 80)).await;
    let record = record(&emulator, "web").await;
    assert_eq!(
        (record.status.clone(), record.percentage),
        (AsgStatus::Successful, Some(100))
    );
    assert_eq!(success.num_calls(), 0, "no token was stored");
}

#[tokio::test]
async fn the_refresher_stores_the_token_for_the_state_machine() {
    let emulator = web_refreshing().await;
    let (success, failure) = accepting();
    let refresher = Refresher {
        autoscaling: aws_sdk_autoscaling::Client::new(&emulator.config),
        ec2: emulator.ec2.clone(),
        sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&success, &failure]),
        store: emulator.store(),
        clock: emulator.clock(),
    };
    let request: RefresherRequest = serde_json::from_value(json!({
        "action": "await_refresh",
        "rollout_id": ROLLOUT,
        "asg": "web",
        "task_token": TOKEN,
    }))
    .unwrap();
    let response = refresher.handle(request).await.unwrap();
    assert_eq!(response["outcome"], "waiting");
    // No refresh recorded: the wait cannot know what to wait for.
    let request = RefresherRequest::AwaitRefresh {
        rollout_id: ROLLOUT.into(),
        asg: "not-planned".into(),
        task_token: TOKEN.into(),
    };
    assert!(matches!(
        refresher.handle(request).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!((success.num_calls(), failure.num_calls()), (0, 0));
}

#[tokio::test]
async fn an_end_keeps_the_reason_the_failure_policy_recorded() {
    let emulator = web_refreshing().await;
    let mut rolling_back = record(&emulator, "web").await;
    rolling_back.status = AsgStatus::RollbackInProgress;
    rolling_back.reason = Some("rolled back by the failure policy".into());
    emulator.store().put(&rolling_back).await.unwrap();
    let (success, failure) = accepting();
    let completer = completer(&emulator, &[&success, &failure]);
    handle(&completer, &web_event(RefreshEventKind::RollbackSucceeded)).await;
    let record = record(&emulator, "web").await;
    assert_eq!(record.status, AsgStatus::RollbackSuccessful);
    assert_eq!(
        record.reason.as_deref(),
        Some("rolled back by the failure policy")
    );
}

#[tokio::test]
async fn a_started_event_says_the_refresh_runs_until_it_has_ended() {
    let emulator = web_refreshing().await;
    let mut pending = record(&emulator, "web").await;
    pending.status = AsgStatus::Pending;
    emulator.store().put(&pending).await.unwrap();
    let (success, failure) = accepting();
    let completer = completer(&emulator, &[&success, &failure]);
    let started = web_event(RefreshEventKind::Started);
    assert_eq!(
        handle(&completer, &started).await,
        Handled::Running { asg: "web".into() }
    );
    assert_eq!(record(&emulator, "web").await.status, AsgStatus::InProgress);
    // Delivered again after the end, it changes nothing.
    handle(&completer, &web_event(RefreshEventKind::Succeeded)).await;
    assert!(matches!(
        handle(&completer, &started).await,
        Handled::Ignored { .. }
    ));
    assert_eq!(record(&emulator, "web").await.status, AsgStatus::Successful);
}
