//! Notifications (`[notify]`): the planner and the refresher tell people what a rollout does
//! (started, wave done, waiting for approval, failed, finished) with an SNS Publish to the
//! stack's topic and the same as an EventBridge event on the account's default bus (source
//! `asg-refresh`), so that teams can route them anywhere.
//!
//! A notification never fails or retries the rollout step that sends it: a failed send is
//! logged and counted, and the step goes on. Delivery is at least once per step, not exactly
//! once: a step the state machine retries (or a re-run of the rollout) may send its
//! notification again, so consumers should key on (`rollout_id`, `event`, `wave`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;
use generator::payload::{cap_message, cap_names, FinishResponse, Outcome, MAX_NAMES_LISTED};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use crate::store::{AsgRecord, Store};
use crate::{fanout, wave_store};

/// Environment variables naming the topic to publish to (unset: no notifications at all)
/// and the stack (for the commands a notification suggests).
pub use generator::names::env::{NOTIFY_TOPIC as TOPIC_ENV, STACK as STACK_ENV};
/// The `source` of every event this project puts on the default bus (the IAM condition's).
pub const SOURCE: &str = generator::iam::NOTIFY_EVENT_SOURCE;
/// Most time one notification may take (both calls with their retries): a slow SNS or
/// EventBridge never holds a rollout step for long.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// SNS subjects are under 100 ASCII characters, without line breaks
/// (<https://docs.aws.amazon.com/sns/latest/api/API_Publish.html>).
const MAX_SUBJECT_CHARS: usize = 99;

/// What a notification tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RolloutStarted,
    WaveDone,
    AwaitingApproval,
    RolloutFailed,
    RolloutFinished,
}

impl Kind {
    /// The `event_type` message attribute and the detail's `event`.
    pub fn event_type(self) -> &'static str {
        match self {
            Kind::RolloutStarted => "rollout-started",
            Kind::WaveDone => "wave-done",
            Kind::AwaitingApproval => "awaiting-approval",
            Kind::RolloutFailed => "rollout-failed",
            Kind::RolloutFinished => "rollout-finished",
        }
    }

    /// The EventBridge `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            Kind::RolloutStarted => "Rollout Started",
            Kind::WaveDone => "Rollout Wave Done",
            Kind::AwaitingApproval => "Rollout Awaiting Approval",
            Kind::RolloutFailed => "Rollout Failed",
            Kind::RolloutFinished => "Rollout Finished",
        }
    }
}

/// One notification: a subject and plain-text body for people (SNS), and the same facts as
/// JSON (the event's detail).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub kind: Kind,
    pub subject: String,
    pub body: String,
    pub detail: Value,
}

fn subject(stack: &str, text: &str) -> String {
    let full = format!("asg-refresh {stack}: {text}");
    full.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_SUBJECT_CHARS)
        .collect()
}

fn detail(kind: Kind, stack: &str, rollout_id: &str, facts: Value) -> Value {
    let mut detail = json!({"stack": stack, "rollout_id": rollout_id, "event": kind.event_type()});
    if let (Some(out), Value::Object(facts)) = (detail.as_object_mut(), facts) {
        out.extend(facts);
    }
    detail
}

/// What an SDK error says, with its causes.
fn said<E: std::error::Error>(error: E) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(error).to_string()
}

/// The command that approves the wave after the one that ended.
pub fn approve_command(stack: &str, rollout_id: &str) -> String {
    format!("cargo xtask approve --env {stack} --rollout {rollout_id}")
}

impl Notification {
    /// A notification of `kind`: its subject says `about`; the body is capped; the detail
    /// carries the stack, the rollout and the event, then `facts`.
    fn new(
        kind: Kind,
        stack: &str,
        rollout_id: &str,
        about: &str,
        body: &str,
        facts: Value,
    ) -> Self {
        Self {
            kind,
            subject: subject(stack, about),
            body: cap_message(body),
            detail: detail(kind, stack, rollout_id, facts),
        }
    }

    /// The planner planned the rollout: its AMI, the ASGs it will refresh and its waves.
    pub fn started(
        stack: &str,
        rollout_id: &str,
        ami: &str,
        waves: &[&[String]],
        skipped: u32,
    ) -> Self {
        let planned: Vec<String> = waves.iter().flat_map(|w| w.iter().cloned()).collect();
        let kind = Kind::RolloutStarted;
        let listed = cap_names(&planned);
        let mut body = format!(
            "Rollout {rollout_id} of {ami} started on stack {stack}: {} ASGs in {} waves, {skipped} skipped.\n",
            planned.len(),
            waves.len()
        );
        for (i, wave) in waves.iter().enumerate().take(MAX_NAMES_LISTED) {
            body.push_str(&format!(
                "wave {} of {}: {}\n",
                i + 1,
                waves.len(),
                cap_names(wave).join(", ")
            ));
        }
        if waves.len() > MAX_NAMES_LISTED {
            body.push_str(&format!(
                "and {} more waves\n",
                waves.len() - MAX_NAMES_LISTED
            ));
        }
        body.push_str(&format!(
            "Follow it with: cargo xtask status --env {stack} --rollout {rollout_id} --watch\n"
        ));
        let facts = json!({
            "ami": ami,
            "planned": planned.len(),
            "skipped": skipped,
            "waves": waves.len(),
            "asgs": listed,
        });
        let about = format!("rollout {rollout_id} started");
        Self::new(kind, stack, rollout_id, &about, &body, facts)
    }

    /// Wave `wave` (0-based) of `waves` ended: each of its ASGs with its status.
    pub fn wave_done(
        stack: &str,
        rollout_id: &str,
        wave: u32,
        waves: u32,
        records: &[AsgRecord],
    ) -> Self {
        let kind = Kind::WaveDone;
        let succeeded = records.iter().filter(|r| r.status.is_successful()).count();
        let failed = records.len() - succeeded;
        let mut body = format!(
            "Rollout {rollout_id} on stack {stack}: wave {} of {waves} done, {succeeded} of {} ASGs refreshed.\n",
            wave + 1,
            records.len()
        );
        let results: Vec<Value> = records
            .iter()
            .take(MAX_NAMES_LISTED)
            .map(|r| json!({"asg": r.asg, "status": r.status, "reason": r.reason}))
            .collect();
        for r in records.iter().take(MAX_NAMES_LISTED) {
            match &r.reason {
                Some(reason) => body.push_str(&format!("  {}: {} ({reason})\n", r.asg, r.status)),
                None => body.push_str(&format!("  {}: {}\n", r.asg, r.status)),
            }
        }
        if records.len() > MAX_NAMES_LISTED {
            body.push_str(&format!(
                "  and {} more\n",
                records.len() - MAX_NAMES_LISTED
            ));
        }
        let facts = json!({
            "wave": wave + 1,
            "waves": waves,
            "succeeded": succeeded,
            "failed": failed,
            "results": results,
        });
        let about = format!("rollout {rollout_id} wave {} of {waves} done", wave + 1);
        Self::new(kind, stack, rollout_id, &about, &body, facts)
    }

    /// Wave `wave` (0-based) ended and the next waits for an operator.
    pub fn awaiting_approval(stack: &str, rollout_id: &str, wave: u32, waves: u32) -> Self {
        let kind = Kind::AwaitingApproval;
        let command = approve_command(stack, rollout_id);
        let body = format!(
            "Rollout {rollout_id} on stack {stack}: wave {} of {waves} is done and wave {} waits for approval.\n\
             Approve it with:\n  {command}\nor stop the rollout with:\n  {command} --reject\n",
            wave + 1,
            wave + 2
        );
        let facts =
            json!({"wave": wave + 1, "next_wave": wave + 2, "waves": waves, "command": command});
        let about = format!(
            "rollout {rollout_id} waits for approval of wave {}",
            wave + 2
        );
        Self::new(kind, stack, rollout_id, &about, &body, facts)
    }

    /// The rollout ended: `RolloutFailed` with the reasons, or `RolloutFinished` with the totals.
    pub fn finished(stack: &str, response: &FinishResponse) -> Self {
        let rollout_id = &response.rollout_id;
        let (kind, what) = match response.outcome {
            Outcome::Succeeded => (Kind::RolloutFinished, "finished"),
            Outcome::Failed => (Kind::RolloutFailed, "failed"),
        };
        let body = format!(
            "Rollout {rollout_id} on stack {stack} {what}: {} refreshed, {} failed, {} skipped.\n{}\n\
             Details: cargo xtask status --env {stack} --rollout {rollout_id}\n",
            response.succeeded, response.failed, response.skipped, response.message
        );
        let facts = json!({
            "succeeded": response.succeeded,
            "failed": response.failed,
            "skipped": response.skipped,
            "message": response.message,
        });
        let about = format!("rollout {rollout_id} {what}");
        Self::new(kind, stack, rollout_id, &about, &body, facts)
    }
}

/// Sends notifications to one topic and the default event bus.
pub struct Notifier {
    pub stack: String,
    pub topic_arn: String,
    pub sns: aws_sdk_sns::Client,
    pub events: aws_sdk_eventbridge::Client,
    failures: AtomicU64,
}

static NOTIFIER: OnceCell<Option<Notifier>> = OnceCell::const_new();

/// The process's notifier, built once from the environment; `None` when the stack has no
/// `[notify]` (then nothing is sent and no client is made).
pub async fn notifier() -> Option<&'static Notifier> {
    NOTIFIER
        .get_or_init(|| async {
            let topic = std::env::var(TOPIC_ENV).ok().filter(|t| !t.is_empty())?;
            let stack = std::env::var(STACK_ENV).unwrap_or_default();
            let config = crate::clients::sdk_config().await;
            Some(Notifier::new(stack, topic, &config))
        })
        .await
        .as_ref()
}

impl Notifier {
    pub fn new(stack: String, topic_arn: String, config: &aws_config::SdkConfig) -> Self {
        Self {
            stack,
            topic_arn,
            sns: aws_sdk_sns::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            failures: AtomicU64::new(0),
        }
    }

    /// Notifications this process failed to send (either channel).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Publishes to the topic and puts the event; a failure of either is logged and counted,
    /// never returned.
    pub async fn send(&self, notification: &Notification) {
        let rollout = notification.detail["rollout_id"]
            .as_str()
            .unwrap_or_default();
        let event = notification.kind.event_type();
        let (sns, events) = tokio::join!(
            tokio::time::timeout(SEND_TIMEOUT, self.publish(notification)),
            tokio::time::timeout(SEND_TIMEOUT, self.put_event(notification)),
        );
        for (channel, result) in [("sns", sns), ("eventbridge", events)] {
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error,
                Err(_) => format!("no answer within {} s", SEND_TIMEOUT.as_secs()),
            };
            let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                rollout,
                event,
                channel,
                error,
                notification_failures = failures,
                "notification not sent; the rollout goes on"
            );
        }
    }

    async fn publish(&self, notification: &Notification) -> Result<(), String> {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(notification.kind.event_type())
            .build()
            .map_err(|e| e.to_string())?;
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&notification.subject)
            .message(&notification.body)
            .message_attributes("event_type", attribute)
            .send()
            .await
            .map(|_| ())
            .map_err(said)
    }

    async fn put_event(&self, notification: &Notification) -> Result<(), String> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(notification.kind.detail_type())
            .detail(notification.detail.to_string())
            .build();
        let out = self
            .events
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(said)?;
        if out.failed_entry_count() > 0 {
            let why = out
                .entries()
                .iter()
                .filter_map(|e| e.error_message().or(e.error_code()))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(format!("the event was refused: {why}"));
        }
        Ok(())
    }

    /// Tells that wave `wave` (0-based) of `waves` ended, with each of its ASGs' records.
    /// Reading them is best effort too.
    pub async fn wave_done(&self, store: &Store, rollout_id: &str, wave: u32, waves: u32) {
        let records = match wave_records(store, rollout_id, wave).await {
            Ok(records) => records,
            Err(error) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(rollout = rollout_id, wave, error = %error, notification_failures = failures, "cannot read the wave for its notification");
                return;
            }
        };
        self.send(&Notification::wave_done(
            &self.stack,
            rollout_id,
            wave,
            waves,
            &records,
        ))
        .await;
    }
}

/// Before wave `wave` starts (the refresher's `wave` action): the wave before it is done,
/// unless `await_approval` already said so.
pub async fn before_wave(store: &Store, rollout_id: &str, wave: u32) {
    let Some(notifier) = notifier().await else {
        return;
    };
    let Some(previous) = wave.checked_sub(1) else {
        return;
    };
    let told = store
        .approvals(rollout_id)
        .await
        .is_ok_and(|approvals| approvals.iter().any(|a| a.wave == previous));
    if !told {
        let waves = wave_count(store, rollout_id).await;
        notifier.wave_done(store, rollout_id, previous, waves).await;
    }
}

/// The rollout waits for an operator after wave `wave`: that wave is done, and the message
/// says which command approves the next.
pub async fn awaiting_approval(store: &Store, rollout_id: &str, wave: u32) {
    let Some(notifier) = notifier().await else {
        return;
    };
    let waves = wave_count(store, rollout_id).await;
    notifier.wave_done(store, rollout_id, wave, waves).await;
    notifier
        .send(&Notification::awaiting_approval(
            &notifier.stack,
            rollout_id,
            wave,
            waves,
        ))
        .await;
}

/// The rollout ended: a successful one's last wave is done too, then the totals (or the
/// reasons it failed).
pub async fn finished(store: &Store, response: &FinishResponse) {
    let Some(notifier) = notifier().await else {
        return;
    };
    if response.outcome == Outcome::Succeeded {
        let waves = wave_count(store, &response.rollout_id).await;
        if let Some(last) = waves.checked_sub(1) {
            notifier
                .wave_done(store, &response.rollout_id, last, waves)
                .await;
        }
    }
    notifier
        .send(&Notification::finished(&notifier.stack, response))
        .await;
}

/// The records of a wave's ASGs, in wave order.
async fn wave_records(
    store: &Store,
    rollout_id: &str,
    wave: u32,
) -> Result<Vec<AsgRecord>, crate::Error> {
    let names = wave_store::wave_members(store, rollout_id, wave).await?;
    let records = fanout::try_map_all(&names, |asg| store.get(rollout_id, asg)).await?;
    Ok(records.into_iter().flatten().collect())
}

/// How many waves the rollout's plan has (its summary), 0 when unknown.
pub async fn wave_count(store: &Store, rollout_id: &str) -> u32 {
    store
        .summary(rollout_id)
        .await
        .ok()
        .flatten()
        .map_or(0, |s| s.waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_short_ascii() {
        let long = "r".repeat(80);
        let n = Notification::awaiting_approval("prod", &long, 0, 3);
        assert!(n.subject.len() <= MAX_SUBJECT_CHARS, "{}", n.subject);
        assert!(n.subject.is_ascii());
        assert!(n
            .body
            .contains(&format!("cargo xtask approve --env prod --rollout {long}")));
        assert_eq!(n.detail["next_wave"], 2);
    }

    #[test]
    fn finished_says_failed_with_the_reasons() {
        let response = FinishResponse {
            rollout_id: "r1".into(),
            outcome: Outcome::Failed,
            succeeded: 2,
            failed: 1,
            skipped: 0,
            message: "1 of 3 ASGs failed: web-3 (Failed: instances unhealthy)".into(),
        };
        let n = Notification::finished("prod", &response);
        assert_eq!(n.kind, Kind::RolloutFailed);
        assert!(
            n.body.contains("web-3 (Failed: instances unhealthy)"),
            "{}",
            n.body
        );
        assert_eq!(
            (n.detail["event"].as_str(), n.detail["failed"].as_u64()),
            (Some("rollout-failed"), Some(1))
        );
    }

    #[test]
    fn started_lists_waves_capped() {
        let waves: Vec<Vec<String>> = (0..30)
            .map(|w| vec![format!("asg-{w}-a"), format!("asg-{w}-b")])
            .collect();
        let slices: Vec<&[String]> = waves.iter().map(|w| w.as_slice()).collect();
        let n = Notification::started("prod", "r1", "ami-12345678", &slices, 4);
        assert!(
            n.body.contains("60 ASGs in 30 waves, 4 skipped"),
            "{}",
            n.body
        );
        assert!(
            n.body.contains("wave 1 of 30: asg-0-a, asg-0-b"),
            "{}",
            n.body
        );
        assert!(n.body.contains("and 10 more waves"), "{}", n.body);
        assert_eq!(n.detail["planned"], 60);
        assert_eq!(
            n.detail["asgs"].as_array().map(Vec::len),
            Some(MAX_NAMES_LISTED + 1)
        );
    }
}
