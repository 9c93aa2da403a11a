//! Ends an ASG's wait for its instance refresh (`completion = "events"`): the child execution
//! waits on a task token that the refresher's `await_refresh` stores; the completer, invoked by
//! the EventBridge rule with EC2 Auto Scaling's instance-refresh events, answers it.
//!
//! The token and the event meet on one item per ASG of the rollout, the wait item
//! (`<rollout>`, `#wait#<asg>`), each side writing its half with one UpdateItem that returns
//! the whole item. DynamoDB applies writes to one item one at a time, so whichever of the two
//! writes comes second sees the other's half and answers the token: a refresh that ended
//! before its token was stored is answered by the step that stores it, and neither side can
//! miss the other. Both may answer the same token when events are duplicated or a step is
//! retried; Step Functions accepts the first answer and refuses the rest (TaskTimedOut,
//! InvalidToken, TaskDoesNotExist), which is taken as "already answered". Events are best
//! effort: a lost one is the state machine's to catch (its wait times out and checks once).
//!
//! Answers: SendTaskSuccess (a [`StepResponse`] with `done`) when the refresh succeeded;
//! SendTaskFailure `RefreshEnded` when it ended otherwise, after which the child checks the
//! refresh (DescribeInstanceRefreshes), records AWS's reason (events carry none) and fails
//! as polling would. The end is also recorded on the ASG's record, so the table is right
//! whatever becomes of the child. A Started event records that the refresh runs, a checkpoint
//! event its percentage (the table has no poll to tell it otherwise).

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::ReturnValue;
use aws_sdk_sfn::operation::send_task_failure::SendTaskFailureError;
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;
use aws_sdk_sfn::Client as Sfn;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use generator::events::{InstanceRefreshEvent, RefreshEventKind};
use generator::names::table::{PARTITION_KEY, SORT_KEY};
use generator::payload::{errors, AsgStatus, StepResponse};
use serde::Serialize;

use crate::error::{classify, Error};
use crate::store::{get_s, n, s, written, Item, Store, RETENTION_SECONDS};
use crate::Clock;

/// Sort key prefix of the wait items: `#wait#<asg>`.
pub const WAIT_PREFIX: &str = "#wait#";

/// The wait item's sort key for `asg`.
pub fn wait_key(asg: &str) -> String {
    format!("{WAIT_PREFIX}{asg}")
}

/// What one event or one stored token led to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Handled {
    /// Not for this stack's running rollout (no rollout, a group it lacks, another refresh,
    /// a kind of event the completer does not act on).
    Ignored { reason: String },
    /// The refresh started: the ASG's record says InProgress.
    Running { asg: String },
    /// A checkpoint: the ASG's progress was recorded.
    Progress { asg: String, percentage: u32 },
    /// The refresh's end was recorded; no token waits for it yet (the step that stores the
    /// token answers it).
    Recorded {
        asg: String,
        refresh_id: String,
        status: AsgStatus,
    },
    /// The token was stored; no end is recorded yet (the completer answers it).
    Waiting { asg: String, refresh_id: String },
    /// The token was answered.
    Answered {
        asg: String,
        refresh_id: String,
        status: AsgStatus,
    },
    /// Step Functions had already closed the token (answered before, or the wait is over).
    AlreadyAnswered {
        asg: String,
        refresh_id: String,
        status: AsgStatus,
    },
}

/// Answers waits: the completer's logic, and the store-token step the refresher runs.
#[derive(Clone)]
pub struct Completer {
    pub store: Store,
    pub sfn: Sfn,
    pub clock: Clock,
}

/// Statuses of a refresh still running, which an end may replace on the ASG's record.
const RUNNING: [AsgStatus; 5] = [
    AsgStatus::Pending,
    AsgStatus::InProgress,
    AsgStatus::Baking,
    AsgStatus::Cancelling,
    AsgStatus::RollbackInProgress,
];

/// The errors of SendTaskSuccess and SendTaskFailure, which refuse a closed token alike.
pub trait AnswerError {
    /// The token is closed: answered before, timed out, or its execution ended.
    fn is_closed_token(&self) -> bool;
}

impl AnswerError for SendTaskSuccessError {
    fn is_closed_token(&self) -> bool {
        self.is_task_timed_out() || self.is_invalid_token() || self.is_task_does_not_exist()
    }
}

impl AnswerError for SendTaskFailureError {
    fn is_closed_token(&self) -> bool {
        self.is_task_timed_out() || self.is_invalid_token() || self.is_task_does_not_exist()
    }
}

/// Whether Step Functions refused to answer a task token because it is closed.
pub fn is_closed_token<E: AnswerError>(error: &SdkError<E, HttpResponse>) -> bool {
    error.as_service_error().is_some_and(E::is_closed_token)
}

/// The condition that the record's status is one of [`RUNNING`] (`:r0` to `:r4`).
const STILL_RUNNING: &str = "#s IN (:r0, :r1, :r2, :r3, :r4)";

impl Completer {
    /// Handles one EventBridge event.
    pub async fn handle_event(&self, event: &InstanceRefreshEvent) -> Result<Handled, Error> {
        let ignored = |reason: String| Ok(Handled::Ignored { reason });
        let Some(kind) = event.kind() else {
            return ignored(format!(
                "`{}` from `{}` is not an instance-refresh event the completer acts on",
                event.detail_type, event.source
            ));
        };
        let asg = &event.detail.auto_scaling_group_name;
        let refresh_id = &event.detail.instance_refresh_id;
        // One rollout of a stack runs at a time, and it holds the stack lock.
        let Some(rollout_id) = self.store.lock_holder().await? else {
            return ignored(format!("{asg}: no rollout is running on this stack"));
        };
        let Some(record) = self.store.get(&rollout_id, asg).await? else {
            return ignored(format!("{asg} is not part of rollout {rollout_id}"));
        };
        if let Some(recorded) = &record.refresh_id {
            if recorded != refresh_id {
                return ignored(format!(
                    "{asg}: instance refresh {refresh_id} is not the one rollout {rollout_id} started ({recorded})"
                ));
            }
        }
        if kind == RefreshEventKind::Started {
            return self.started(&rollout_id, asg, refresh_id).await;
        }
        let Some(end) = kind.final_status() else {
            return self
                .checkpoint(&rollout_id, asg, refresh_id, event, kind)
                .await;
        };
        // The end first, on the wait item: if the token is already there, answer it.
        let item = self
            .update_wait(
                &rollout_id,
                asg,
                "SET event_refresh_id = :rid, event_status = :status, event_at = :now, updated_at = :now, expires_at = :expires",
                &[(":rid", refresh_id), (":status", end.as_str())],
            )
            .await?;
        let token = get_s(&item, "task_token")
            .filter(|_| get_s(&item, "token_refresh_id").as_deref() == Some(refresh_id));
        match token {
            Some(token) => {
                self.answer(&rollout_id, asg, refresh_id, &end, &token)
                    .await
            }
            None => {
                self.record_end(&rollout_id, asg, refresh_id, &end).await?;
                tracing::info!(asg, refresh = %refresh_id, status = %end, "recorded the end before its token was stored");
                Ok(Handled::Recorded {
                    asg: asg.clone(),
                    refresh_id: refresh_id.clone(),
                    status: end,
                })
            }
        }
    }

    /// Stores the token the ASG's child waits on; answers it at once when the refresh's end
    /// was recorded first.
    pub async fn store_token(
        &self,
        rollout_id: &str,
        asg: &str,
        task_token: &str,
    ) -> Result<Handled, Error> {
        if task_token.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{asg}: an empty task token cannot be answered"
            )));
        }
        let record = self.store.get(rollout_id, asg).await?.ok_or_else(|| {
            Error::InvalidInput(format!("{asg} is not part of rollout {rollout_id}"))
        })?;
        let refresh_id = record.refresh_id.clone().ok_or_else(|| {
            Error::InvalidInput(format!(
                "{asg}: no refresh recorded for rollout {rollout_id}; start runs first"
            ))
        })?;
        let item = self
            .update_wait(
                rollout_id,
                asg,
                "SET task_token = :token, token_refresh_id = :rid, token_at = :now, updated_at = :now, expires_at = :expires",
                &[(":token", task_token), (":rid", &refresh_id)],
            )
            .await?;
        let recorded_end = get_s(&item, "event_status")
            .filter(|_| get_s(&item, "event_refresh_id").as_deref() == Some(&refresh_id))
            .map(AsgStatus::from);
        // The end may also be on the record already (a check found it, or the completer).
        let end = recorded_end.or_else(|| {
            (record.status.is_successful() || record.status.is_failed())
                .then(|| record.status.clone())
        });
        match end {
            Some(end) => {
                self.answer(rollout_id, asg, &refresh_id, &end, task_token)
                    .await
            }
            None => {
                tracing::info!(asg, refresh = %refresh_id, "waiting for the refresh's event");
                Ok(Handled::Waiting {
                    asg: asg.to_string(),
                    refresh_id,
                })
            }
        }
    }

    /// One UpdateItem of the wait item; the whole item after it.
    async fn update_wait(
        &self,
        rollout_id: &str,
        asg: &str,
        expression: &str,
        values: &[(&str, &str)],
    ) -> Result<Item, Error> {
        let now = (self.clock)();
        let mut request = self
            .store
            .client()
            .update_item()
            .table_name(self.store.table())
            .key(PARTITION_KEY, s(rollout_id))
            .key(SORT_KEY, s(&wait_key(asg)))
            .update_expression(expression)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expires", n(now + RETENTION_SECONDS))
            .return_values(ReturnValue::AllNew);
        for (name, value) in values {
            request = request.expression_attribute_values(*name, s(value));
        }
        let out = request
            .send()
            .await
            .map_err(|e| classify(&format!("recording the wait of {asg}"), e))?;
        Ok(out.attributes.unwrap_or_default())
    }

    /// Records the refresh's end on the ASG's record, unless the record has moved on (an
    /// end already recorded, a timeout, another refresh).
    async fn record_end(
        &self,
        rollout_id: &str,
        asg: &str,
        refresh_id: &str,
        end: &AsgStatus,
    ) -> Result<bool, Error> {
        let now = (self.clock)();
        let successful = end.is_successful();
        let expression = if successful {
            "SET #s = :end, ended_at = :now, updated_at = :now, expires_at = :expires, percentage = :all REMOVE reason"
        } else {
            // A reason already recorded (the failure policy's rollback or cancel, say) says
            // more than the event, which has none: keep it.
            "SET #s = :end, ended_at = :now, updated_at = :now, expires_at = :expires, reason = if_not_exists(reason, :why)"
        };
        let request = self
            .update_running(rollout_id, asg, refresh_id)
            .update_expression(expression)
            .condition_expression(format!("refresh_id = :rid AND {STILL_RUNNING}"))
            .expression_attribute_values(":end", s(end.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expires", n(now + RETENTION_SECONDS));
        let request = if successful {
            request.expression_attribute_values(":all", n(100))
        } else {
            request.expression_attribute_values(
                ":why",
                s(&format!(
                    "instance refresh {refresh_id} ended {end} (EventBridge event; the check records AWS's reason)"
                )),
            )
        };
        written(request.send().await, &format!("recording the end of {asg}"))
    }

    /// Records the end and answers the token with it.
    async fn answer(
        &self,
        rollout_id: &str,
        asg: &str,
        refresh_id: &str,
        end: &AsgStatus,
        token: &str,
    ) -> Result<Handled, Error> {
        self.record_end(rollout_id, asg, refresh_id, end).await?;
        let answering = format!("answering the wait of {asg}");
        let sent = if end.is_successful() {
            let output = StepResponse {
                asg: asg.to_string(),
                status: end.clone(),
                percentage: Some(100),
                done: true,
                message: None,
            };
            let output = serde_json::to_string(&output)
                .map_err(|e| Error::Aws(format!("cannot encode the answer: {e}")))?;
            self.sfn
                .send_task_success()
                .task_token(token)
                .output(output)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| (is_closed_token(&e), classify(&answering, e)))
        } else {
            self.sfn
                .send_task_failure()
                .task_token(token)
                .error(errors::REFRESH_ENDED)
                .cause(format!("{asg}: instance refresh {refresh_id} ended {end}"))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| (is_closed_token(&e), classify(&answering, e)))
        };
        let (asg, refresh_id, end) = (asg.to_string(), refresh_id.to_string(), end.clone());
        match sent {
            Ok(()) => {
                tracing::info!(asg, refresh = %refresh_id, status = %end, "answered the wait");
                Ok(Handled::Answered {
                    asg,
                    refresh_id,
                    status: end,
                })
            }
            Err((true, error)) => {
                tracing::info!(asg, refresh = %refresh_id, %error, "the wait was already answered");
                Ok(Handled::AlreadyAnswered {
                    asg,
                    refresh_id,
                    status: end,
                })
            }
            Err((false, error)) => Err(error),
        }
    }

    /// Records that the refresh runs (Pending to InProgress), unless the record has moved on:
    /// a Started event delivered after the end changes nothing.
    async fn started(
        &self,
        rollout_id: &str,
        asg: &str,
        refresh_id: &str,
    ) -> Result<Handled, Error> {
        let result = self
            .update_record(rollout_id, asg, refresh_id)
            .update_expression("SET #s = :running, updated_at = :now")
            .condition_expression("refresh_id = :rid AND #s = :pending")
            .expression_attribute_values(":running", s(AsgStatus::InProgress.as_str()))
            .expression_attribute_values(":pending", s(AsgStatus::Pending.as_str()))
            .expression_attribute_values(":now", n((self.clock)()))
            .send()
            .await;
        if written(result, &format!("recording the start of {asg}"))? {
            return Ok(Handled::Running {
                asg: asg.to_string(),
            });
        }
        Ok(Handled::Ignored {
            reason: format!("{asg}: {refresh_id} is no longer pending"),
        })
    }

    /// Records a checkpoint's percentage on the ASG's record, if it is further than what is
    /// recorded and the refresh still runs (checkpoints may arrive late or out of order).
    async fn checkpoint(
        &self,
        rollout_id: &str,
        asg: &str,
        refresh_id: &str,
        event: &InstanceRefreshEvent,
        kind: RefreshEventKind,
    ) -> Result<Handled, Error> {
        let Some(percentage) = event.detail.checkpoint_percentage.filter(|p| *p <= 100) else {
            return Ok(Handled::Ignored {
                reason: format!("{asg}: a {kind:?} event without a percentage"),
            });
        };
        let now = (self.clock)();
        let result = self
            .update_running(rollout_id, asg, refresh_id)
            .update_expression("SET percentage = :p, updated_at = :now")
            .condition_expression(format!(
                "refresh_id = :rid AND {STILL_RUNNING} AND (attribute_not_exists(percentage) OR percentage < :p)"
            ))
            .expression_attribute_values(":p", n(percentage))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        if written(result, &format!("recording the progress of {asg}"))? {
            return Ok(Handled::Progress {
                asg: asg.to_string(),
                percentage,
            });
        }
        Ok(Handled::Ignored {
            reason: format!(
                "{asg}: checkpoint {percentage} % of {refresh_id} is behind what is recorded"
            ),
        })
    }

    /// An UpdateItem of the ASG's record whose expressions name its status `#s` and the
    /// refresh `:rid`.
    fn update_record(
        &self,
        rollout_id: &str,
        asg: &str,
        refresh_id: &str,
    ) -> UpdateItemFluentBuilder {
        self.store
            .client()
            .update_item()
            .table_name(self.store.table())
            .key(PARTITION_KEY, s(rollout_id))
            .key(SORT_KEY, s(asg))
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":rid", s(refresh_id))
    }

    /// [`Self::update_record`] whose condition also holds [`STILL_RUNNING`].
    fn update_running(
        &self,
        rollout_id: &str,
        asg: &str,
        refresh_id: &str,
    ) -> UpdateItemFluentBuilder {
        let mut request = self.update_record(rollout_id, asg, refresh_id);
        for (i, running) in RUNNING.iter().enumerate() {
            request = request.expression_attribute_values(format!(":r{i}"), s(running.as_str()));
        }
        request
    }
}
