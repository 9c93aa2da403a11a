//! The events the state machine sends the Lambdas and what they return. The state
//! machine's Parameters are checked against these types, so the two cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Strategy;

/// Error names the Lambdas return and the state machine retries or catches.
pub mod errors {
    /// Throttling or a transient fault: the state machine retries with backoff.
    pub const RETRYABLE: &str = "Retryable";
    /// Another rollout of the same stack holds the lock.
    pub const ROLLOUT_LOCKED: &str = "RolloutLocked";
    /// An ASG's instance refresh ended without success.
    pub const REFRESH_FAILED: &str = "RefreshFailed";
    /// `completion = "events"`: the refresh's event says it ended without success (Failed,
    /// Cancelled, Rollback Succeeded or Rollback Failed). The completer answers the child's
    /// wait with it (SendTaskFailure); the child then checks the refresh once
    /// (DescribeInstanceRefreshes), which records AWS's reason (events carry none) and fails
    /// with [`REFRESH_FAILED`] as polling does.
    pub const REFRESH_ENDED: &str = "RefreshEnded";
    /// An ASG's refresh ran past `timeout_minutes`.
    pub const REFRESH_TIMED_OUT: &str = "RefreshTimedOut";
    /// An instance refresh not started by this rollout is running on the ASG.
    pub const REFRESH_CONFLICT: &str = "RefreshConflict";
    /// The event does not match the types below: a bug or a hand-made event, never retried.
    pub const INVALID_INPUT: &str = "InvalidInput";
    /// A `wave_alarms` alarm went to ALARM during the wave or its bake (or is in ALARM): the
    /// wave fails and the failure policy applies.
    pub const WAVE_ALARM: &str = "WaveAlarm";
    /// One more ASG failed than `[rollout] max_failures` tolerates: the child fails, its wave
    /// fails, and the failure policy applies.
    pub const ERROR_BUDGET_SPENT: &str = "ErrorBudgetSpent";
    /// The rollout ended with failures (the execution's error).
    pub const ROLLOUT_FAILED: &str = "RolloutFailed";
    /// Errors of the Lambda service itself that are safe to retry
    /// (<https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html>).
    pub const LAMBDA_TRANSIENT: [&str; 5] = [
        "Lambda.ClientExecutionTimeoutException",
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    ];
    /// An invocation that did not finish: the function crashed or ran out of memory or
    /// time (`Lambda.Unknown`, `Sandbox.Timedout`), or the Task's `TimeoutSeconds` passed
    /// (`States.Timeout`). Retried a few times: every action is safe to run again.
    pub const LAMBDA_UNFINISHED: [&str; 3] =
        ["Lambda.Unknown", "Sandbox.Timedout", "States.Timeout"];
    /// The same, for a Task whose timeout is an answer (nobody approved in time).
    pub const LAMBDA_UNFINISHED_NO_TIMEOUT: [&str; 2] = ["Lambda.Unknown", "Sandbox.Timedout"];
}

/// The input a rollout execution starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionInput {
    pub rollout_id: String,
    pub ami: String,
}

/// Target selection as the planner receives it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub asgs: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// Planner event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub rollout_id: String,
    pub ami: String,
    pub targets: TargetSpec,
    pub canary: Vec<String>,
    pub strategy: Strategy,
    pub batch_size: u32,
    /// Most waves one execution can walk under the history limit: a plan with more is refused.
    pub max_waves: u64,
    /// `[refresh] auto_rollback`: a group AWS cannot roll back (its ImageId is an SSM
    /// parameter) is left out when it is on.
    #[serde(default)]
    pub auto_rollback: bool,
    /// `[refresh] instance_roles`: a group whose launch template's instance profile has a
    /// role not listed here is left out (the Lambda may pass only these roles).
    #[serde(default)]
    pub instance_roles: Vec<String>,
    /// `[[targets.group]]`, in order: when given, `targets` is empty and each group is
    /// planned into waves of its own batch size, after the group before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<crate::groups::GroupSpec>,
}

/// Planner result: counts only. The waves themselves are in the progress table (each
/// wave's size and one item per position), so no state carries a list of ASGs and every
/// payload stays small whatever the fleet size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanResponse {
    pub rollout_id: String,
    pub wave_count: u32,
    /// Index of the last wave (`-1` when there is none).
    pub last_wave: i64,
    /// ASGs that will be refreshed.
    pub planned: u32,
    /// ASGs skipped by the pre-checks, with reasons recorded in the table.
    pub skipped: u32,
    /// How many explicit names do not exist (each is recorded as skipped, saying so).
    pub missing: u32,
}

/// What the refresher's `wave` action returns: the positions of one wave's ASGs, which
/// the wave's Map iterates over (each child reads its ASG's name from the table).
/// Positions are numbers, so even a window of 5,000 ASGs takes about 24 KiB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaveResponse {
    pub rollout_id: String,
    pub wave: u32,
    /// `0..size`: one Map item per ASG of the wave.
    pub items: Vec<u32>,
    /// When the wave was selected (Unix seconds): the alarm gate reads alarm history from here.
    #[serde(default)]
    pub started_at: i64,
    /// The wave's concurrency (its group's batch size, or `batch_size`): the wave's Map
    /// reads it with `MaxConcurrencyPath` when the stack has groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// The group the wave belongs to (`[[targets.group]]`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Longest message (summary, reason) a Lambda returns or records, in bytes: far under the
/// 256 KiB Step Functions allows a state, whatever the fleet size.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Most ASG names a response lists; the rest are counted.
pub const MAX_NAMES_LISTED: usize = 20;

/// `message` cut to [`MAX_MESSAGE_BYTES`] on a character boundary, saying how much was cut.
pub fn cap_message(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE_BYTES - 64;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... ({} more bytes: see the table)",
        &message[..end],
        message.len() - end
    )
}

/// The first [`MAX_NAMES_LISTED`] names, then how many more there are.
pub fn cap_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names.iter().take(MAX_NAMES_LISTED).cloned().collect();
    if names.len() > MAX_NAMES_LISTED {
        out.push(format!("and {} more", names.len() - MAX_NAMES_LISTED));
    }
    out
}

/// StartInstanceRefresh preferences, from the `[refresh]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshPreferences {
    pub min_healthy_percentage: u32,
    pub max_healthy_percentage: u32,
    pub instance_warmup: Option<u32>,
    pub skip_matching: bool,
    pub auto_rollback: bool,
    pub alarms: Vec<String>,
    pub checkpoint_percentages: Vec<u32>,
    pub checkpoint_delay: Option<u32>,
    /// BakeTime: seconds the refresh waits after its last replacement before it is complete.
    #[serde(default)]
    pub bake_time: Option<u32>,
}

/// Refresher events, one per action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum RefresherRequest {
    /// The positions of a wave's ASGs, for the wave's Map to iterate over.
    Wave { rollout_id: String, wave: u32 },
    /// Create the launch template version with the new AMI and start the refresh of the
    /// ASG at position `index` of `wave` (its name is read from the table).
    Start {
        rollout_id: String,
        wave: u32,
        index: u32,
        ami: String,
        preferences: RefreshPreferences,
    },
    /// Describe the refresh, record it, say whether it has ended.
    Check {
        rollout_id: String,
        asg: String,
        timeout_minutes: u32,
    },
    /// `completion = "events"`: store the task token the ASG's child waits on, with the
    /// refresh it waits for; when that refresh's end was already recorded (its event came
    /// before the token), answer the token at once. The completer answers it otherwise.
    AwaitRefresh {
        rollout_id: String,
        asg: String,
        task_token: String,
    },
    /// The wave gate after a wave and its bake: fails with [`errors::WAVE_ALARM`] naming every
    /// alarm of `alarms` that went to ALARM since `since` (Unix seconds, the wave's start) or
    /// is in ALARM now.
    CheckAlarms {
        rollout_id: String,
        wave: u32,
        since: i64,
        alarms: Vec<String>,
    },
    /// `[rollout] max_failures`: the ASG at position `index` of `wave` failed; count it against
    /// the budget (`max_failures` of `planned` ASGs). Within the budget its child ends as
    /// absorbed; past it, fails with [`errors::ERROR_BUDGET_SPENT`].
    SpendBudget {
        rollout_id: String,
        wave: u32,
        index: u32,
        planned: u32,
        max_failures: crate::config::MaxFailures,
    },
    /// Store the task token and wait for an operator to approve the next wave.
    AwaitApproval {
        rollout_id: String,
        wave: u32,
        task_token: String,
    },
    /// Roll back every refresh of the rollout that is still in flight; with `scope` `wave`
    /// or `rollout`, also start a refresh back to the previous launch template version of
    /// each group of the failed wave (or of the rollout) that already finished, with
    /// `preferences` (see `runtime::refresher`'s restore module).
    Rollback {
        rollout_id: String,
        #[serde(default = "in_flight_scope")]
        scope: crate::config::RollbackScope,
        #[serde(default)]
        preferences: Option<RefreshPreferences>,
    },
    /// Cancel every refresh of the rollout that is still in flight (replaced instances stay).
    Cancel { rollout_id: String },
    /// Describe every rollback or cancel the failure policy requested, record where each
    /// is, and say how many still run (`round` counts the calls, for the bounded loop).
    SettleRollbacks { rollout_id: String, round: u32 },
    /// Release the lock and write the rollout summary.
    Finish {
        rollout_id: String,
        outcome: Outcome,
        #[serde(default)]
        error: Option<Value>,
    },
}

impl RefresherRequest {
    /// The rollout the action is for: every action names one.
    pub fn rollout_id(&self) -> &str {
        match self {
            RefresherRequest::Wave { rollout_id, .. }
            | RefresherRequest::Start { rollout_id, .. }
            | RefresherRequest::Check { rollout_id, .. }
            | RefresherRequest::AwaitRefresh { rollout_id, .. }
            | RefresherRequest::CheckAlarms { rollout_id, .. }
            | RefresherRequest::SpendBudget { rollout_id, .. }
            | RefresherRequest::AwaitApproval { rollout_id, .. }
            | RefresherRequest::Rollback { rollout_id, .. }
            | RefresherRequest::Cancel { rollout_id }
            | RefresherRequest::SettleRollbacks { rollout_id, .. }
            | RefresherRequest::Finish { rollout_id, .. } => rollout_id,
        }
    }
}

/// A rollback event without `scope` (from a state machine rendered before it existed)
/// rolls back only what is in flight, as it did then.
fn in_flight_scope() -> crate::config::RollbackScope {
    crate::config::RollbackScope::InFlight
}

impl From<&crate::config::Refresh> for RefreshPreferences {
    fn from(r: &crate::config::Refresh) -> Self {
        Self {
            min_healthy_percentage: r.min_healthy_percentage,
            max_healthy_percentage: r.max_healthy_percentage,
            instance_warmup: r.instance_warmup,
            skip_matching: r.skip_matching,
            auto_rollback: r.auto_rollback,
            alarms: r.alarms.clone(),
            checkpoint_percentages: r.checkpoint_percentages.clone(),
            checkpoint_delay: r.checkpoint_delay,
            bake_time: r.bake_time,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// What `start` and `check` return for one ASG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResponse {
    pub asg: String,
    /// The ASG's status once the step ran.
    pub status: AsgStatus,
    pub percentage: Option<u32>,
    /// True when nothing more is to be done for this ASG.
    pub done: bool,
    pub message: Option<String>,
}

/// What `rollback` and `cancel` return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlightResponse {
    pub rollout_id: String,
    /// ASGs whose refresh was rolled back or cancelled.
    pub acted_on: Vec<String>,
    /// ASGs where that was refused, with why.
    pub refused: Vec<String>,
    /// How many of them still run (`acted_on`'s length): the state machine waits for them.
    pub pending: u32,
}

/// What `settle_rollbacks` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettleResponse {
    pub rollout_id: String,
    /// The call's `round` plus one.
    pub round: u32,
    /// How many rollbacks or cancels still run.
    pub pending: u32,
    /// ASGs whose rollback or cancel still runs.
    pub still_running: Vec<String>,
    /// ASGs whose rollback or cancel has ended (or whose refresh is no longer listed).
    pub ended: Vec<String>,
}

impl InFlightResponse {
    /// The response with its lists cut to [`MAX_NAMES_LISTED`] names each (`pending`
    /// still counts them all): the Task result must fit 256 KiB at any fleet size.
    pub fn bounded(mut self) -> Self {
        self.acted_on = cap_names(&self.acted_on);
        self.refused = cap_names(&self.refused)
            .iter()
            .map(|r| cap_message(r))
            .collect();
        self
    }
}

impl SettleResponse {
    /// The response with its lists cut to [`MAX_NAMES_LISTED`] names each (`pending`
    /// still counts them all).
    pub fn bounded(mut self) -> Self {
        self.still_running = cap_names(&self.still_running);
        self.ended = cap_names(&self.ended);
        self
    }
}

/// What `check_alarms` returns when no alarm went to ALARM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmsResponse {
    pub rollout_id: String,
    pub wave: u32,
    /// How many alarms were read.
    pub checked: u32,
}

/// What `finish` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishResponse {
    pub rollout_id: String,
    pub outcome: Outcome,
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
    /// One line for people, naming failed ASGs.
    pub message: String,
}

/// The status recorded per ASG (the table's `status`, [`StepResponse::status`]): this
/// project's own and the instance refresh statuses, spelled as DescribeInstanceRefreshes
/// spells them. It travels as that plain string (serde), so the table's attribute values
/// and the Lambdas' responses keep their wording.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum AsgStatus {
    /// Planned, not started yet.
    #[default]
    Planned,
    /// Left out by the planner's pre-checks (the reason is recorded).
    Skipped,
    /// Launch template version made, refresh being started.
    Starting,
    Pending,
    InProgress,
    Baking,
    Successful,
    Failed,
    Cancelling,
    Cancelled,
    RollbackInProgress,
    RollbackSuccessful,
    RollbackFailed,
    /// Past `timeout_minutes` while still running.
    TimedOut,
    /// Finished, then refreshed back to its previous launch template version by the
    /// rollback policy (`rollback_scope` `wave` or `rollout`): that refresh is running.
    Restoring,
    /// Back on the launch template version it had before the rollout.
    RolledBack,
    /// The refresh back to the previous version could not start or did not succeed.
    RestoreFailed,
    /// An instance refresh status this version does not know (AWS adds some), as AWS
    /// spelled it: neither in flight, failed nor successful.
    Other(String),
}

impl AsgStatus {
    /// Every status but [`AsgStatus::Other`].
    pub const KNOWN: [AsgStatus; 17] = [
        AsgStatus::Planned,
        AsgStatus::Skipped,
        AsgStatus::Starting,
        AsgStatus::Pending,
        AsgStatus::InProgress,
        AsgStatus::Baking,
        AsgStatus::Successful,
        AsgStatus::Failed,
        AsgStatus::Cancelling,
        AsgStatus::Cancelled,
        AsgStatus::RollbackInProgress,
        AsgStatus::RollbackSuccessful,
        AsgStatus::RollbackFailed,
        AsgStatus::TimedOut,
        AsgStatus::Restoring,
        AsgStatus::RolledBack,
        AsgStatus::RestoreFailed,
    ];

    /// The status as the table and the responses spell it.
    pub fn as_str(&self) -> &str {
        match self {
            AsgStatus::Planned => "Planned",
            AsgStatus::Skipped => "Skipped",
            AsgStatus::Starting => "Starting",
            AsgStatus::Pending => "Pending",
            AsgStatus::InProgress => "InProgress",
            AsgStatus::Baking => "Baking",
            AsgStatus::Successful => "Successful",
            AsgStatus::Failed => "Failed",
            AsgStatus::Cancelling => "Cancelling",
            AsgStatus::Cancelled => "Cancelled",
            AsgStatus::RollbackInProgress => "RollbackInProgress",
            AsgStatus::RollbackSuccessful => "RollbackSuccessful",
            AsgStatus::RollbackFailed => "RollbackFailed",
            AsgStatus::TimedOut => "TimedOut",
            AsgStatus::Restoring => "Restoring",
            AsgStatus::RolledBack => "RolledBack",
            AsgStatus::RestoreFailed => "RestoreFailed",
            AsgStatus::Other(other) => other,
        }
    }

    /// The refresh is still running (or being started, cancelled or rolled back).
    pub fn is_in_flight(&self) -> bool {
        matches!(
            self,
            AsgStatus::Starting
                | AsgStatus::Pending
                | AsgStatus::InProgress
                | AsgStatus::Baking
                | AsgStatus::Cancelling
                | AsgStatus::RollbackInProgress
        )
    }

    /// The ASG ended without success.
    pub fn is_failed(&self) -> bool {
        matches!(
            self,
            AsgStatus::Failed
                | AsgStatus::Cancelled
                | AsgStatus::RollbackSuccessful
                | AsgStatus::RollbackFailed
                | AsgStatus::TimedOut
        )
    }

    pub fn is_successful(&self) -> bool {
        *self == AsgStatus::Successful
    }

    /// A rollback of the refresh runs or ended (`Rollback*`).
    pub fn is_rollback(&self) -> bool {
        matches!(
            self,
            AsgStatus::RollbackInProgress
                | AsgStatus::RollbackSuccessful
                | AsgStatus::RollbackFailed
        )
    }

    /// The failure policy asked AWS to undo the refresh and it has not settled yet.
    pub fn is_being_undone(&self) -> bool {
        matches!(self, AsgStatus::RollbackInProgress | AsgStatus::Cancelling)
    }
}

impl From<&str> for AsgStatus {
    fn from(text: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|s| s.as_str() == text)
            .unwrap_or_else(|| AsgStatus::Other(text.to_string()))
    }
}

impl From<String> for AsgStatus {
    fn from(text: String) -> Self {
        AsgStatus::from(text.as_str())
    }
}

impl From<AsgStatus> for String {
    fn from(status: AsgStatus) -> Self {
        status.as_str().to_string()
    }
}

impl std::fmt::Display for AsgStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
