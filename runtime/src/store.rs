//! The progress table: one item per ASG per rollout, the rollout's summary, approvals,
//! and the per-stack lock. DynamoDB is the source of truth for status and restarts.

use generator::names::table::{PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use generator::payload::{AsgStatus, Outcome};
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Serialize};

use crate::error::{classify, Error};

/// Sort key of the rollout's summary item.
pub const SUMMARY_KEY: &str = "#rollout";
/// Partition and sort key of the stack lock.
pub const LOCK_KEY: &str = "#lock";
/// Sort key prefix of approval items: `#approval#00003` waits to start wave 4.
pub const APPROVAL_PREFIX: &str = "#approval#";
/// Sort key of the item that says the failure policy is stopping the rollout.
pub const STOP_KEY: &str = "#stop";
/// Sort key of the item that says who aborted the rollout, when and why.
pub const ABORT_KEY: &str = "#abort";
/// Items expire this long after their last write (TTL attribute `expires_at`).
pub const RETENTION_SECONDS: i64 = 90 * 24 * 3600;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// One ASG of one rollout.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AsgRecord {
    pub rollout_id: String,
    pub asg: String,
    pub wave: Option<u32>,
    pub status: AsgStatus,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    pub ami: Option<String>,
    pub refresh_id: Option<String>,
    pub launch_template_id: Option<String>,
    pub launch_template_version: Option<String>,
    pub percentage: Option<u32>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub updated_at: i64,
    /// `$Latest` or `$Default` when the planner pinned the group to a numbered version
    /// (`pinned_version`) before any version was made, so that rollback stays possible.
    pub pinned_from: Option<String>,
    pub pinned_version: Option<String>,
    /// The ASG's group (`[[targets.group]]`), when the stack has groups.
    pub group: Option<String>,
    /// The numbered launch template version the group had when this rollout first started
    /// its refresh: what the rollback policy restores (`rollback_scope`).
    pub previous_version: Option<String>,
    /// The refresh that returns the group to `previous_version` (status `Restoring`).
    pub restore_refresh_id: Option<String>,
}

/// The status of a rollout's summary item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutStatus {
    #[default]
    Running,
    Succeeded,
    Failed,
    /// An operator aborted it (`cargo xtask abort`).
    Aborted,
}

impl RolloutStatus {
    /// The status as the table spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Running => "Running",
            RolloutStatus::Succeeded => "Succeeded",
            RolloutStatus::Failed => "Failed",
            RolloutStatus::Aborted => "Aborted",
        }
    }
}

impl std::fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Outcome> for RolloutStatus {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Succeeded => RolloutStatus::Succeeded,
            Outcome::Failed => RolloutStatus::Failed,
        }
    }
}

/// The status of an approval item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalStatus {
    /// Its wave waits for an operator.
    #[default]
    AwaitingApproval,
    Approved,
    Rejected,
}

impl ApprovalStatus {
    /// The status as the table spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::AwaitingApproval => "AwaitingApproval",
            ApprovalStatus::Approved => "Approved",
            ApprovalStatus::Rejected => "Rejected",
        }
    }
}

/// A status enum read back from the item's `status` attribute (the names its serde
/// derive spells); an unknown or missing one is an error, not a guess.
fn get_status<T: DeserializeOwned>(item: &Item, what: &str) -> Result<T, Error> {
    let text = get_s(item, "status").unwrap_or_default();
    T::deserialize(text.as_str().into_deserializer()).map_err(|_: serde::de::value::Error| {
        Error::Aws(format!(
            "the progress table holds {what} with an unknown status `{text}`"
        ))
    })
}

/// What the failure policy does to the refreshes still in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopAction {
    Rollback,
    Cancel,
}

impl StopAction {
    pub fn as_str(self) -> &'static str {
        match self {
            StopAction::Rollback => "rollback",
            StopAction::Cancel => "cancel",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "rollback" => Some(StopAction::Rollback),
            "cancel" => Some(StopAction::Cancel),
            _ => None,
        }
    }
}

pub(crate) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn get_s(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn get_n<T: std::str::FromStr>(item: &Item, key: &str) -> Option<T> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

impl AsgRecord {
    fn to_item(&self) -> Item {
        let mut item = new_item(&self.rollout_id, &self.asg, self.updated_at);
        item.insert("status".into(), s(self.status.as_str()));
        let strings = [
            ("reason", &self.reason),
            ("ami", &self.ami),
            ("refresh_id", &self.refresh_id),
            ("lt_id", &self.launch_template_id),
            ("lt_version", &self.launch_template_version),
            ("pinned_from", &self.pinned_from),
            ("pinned_version", &self.pinned_version),
            ("group", &self.group),
            ("previous_version", &self.previous_version),
            ("restore_refresh_id", &self.restore_refresh_id),
        ];
        for (key, value) in strings {
            if let Some(v) = value {
                item.insert(key.into(), s(v));
            }
        }
        if let Some(w) = self.wave {
            item.insert("wave".into(), n(w));
        }
        if let Some(p) = self.percentage {
            item.insert("percentage".into(), n(p));
        }
        for (key, value) in [("started_at", self.started_at), ("ended_at", self.ended_at)] {
            if let Some(v) = value {
                item.insert(key.into(), n(v));
            }
        }
        item
    }

    fn from_item(item: &Item) -> Self {
        Self {
            rollout_id: get_s(item, PARTITION_KEY).unwrap_or_default(),
            asg: get_s(item, SORT_KEY).unwrap_or_default(),
            wave: get_n(item, "wave"),
            status: get_s(item, "status").unwrap_or_default().into(),
            reason: get_s(item, "reason"),
            ami: get_s(item, "ami"),
            refresh_id: get_s(item, "refresh_id"),
            launch_template_id: get_s(item, "lt_id"),
            launch_template_version: get_s(item, "lt_version"),
            percentage: get_n(item, "percentage"),
            started_at: get_n(item, "started_at"),
            ended_at: get_n(item, "ended_at"),
            updated_at: get_n(item, "updated_at").unwrap_or_default(),
            pinned_from: get_s(item, "pinned_from"),
            pinned_version: get_s(item, "pinned_version"),
            group: get_s(item, "group"),
            previous_version: get_s(item, "previous_version"),
            restore_refresh_id: get_s(item, "restore_refresh_id"),
        }
    }
}

/// The rollout's summary item.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RolloutSummary {
    pub rollout_id: String,
    pub ami: String,
    pub status: RolloutStatus,
    pub planned: u32,
    pub skipped: u32,
    pub waves: u32,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub message: Option<String>,
    /// What the plan warns of: groups outside the targets that follow `$Latest` of a
    /// launch template the rollout versions (they launch the new AMI on scale-out).
    pub warnings: Vec<String>,
}

/// An operator's abort of a rollout (`cargo xtask abort`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Abort {
    pub rollout_id: String,
    /// Who aborted it (`$USER`).
    pub by: String,
    pub reason: Option<String>,
    /// What was done to the refreshes in flight.
    pub action: String,
    pub at: i64,
}

/// An operator approval the rollout waits for (or got): the wave after `wave` starts
/// when `task_token` is sent back to Step Functions.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Approval {
    pub rollout_id: String,
    /// The wave that ended; the approval starts `wave + 1`.
    pub wave: u32,
    pub status: ApprovalStatus,
    #[serde(skip)]
    pub task_token: String,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    pub updated_at: i64,
}

/// Access to the progress table.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    table: String,
}

fn is_conditional_failure<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// Whether a conditional write went through: false when its condition did not hold.
pub(crate) fn written<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    what: &str,
) -> Result<bool, Error>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(classify(what, e)),
    }
}

/// A new item of `rollout_id` under `sort_key`, written at `now`: its key, `updated_at`, and
/// when it expires (TTL, [`RETENTION_SECONDS`] later).
pub(crate) fn new_item(rollout_id: &str, sort_key: &str, now: i64) -> Item {
    Item::from([
        (PARTITION_KEY.to_string(), s(rollout_id)),
        (SORT_KEY.to_string(), s(sort_key)),
        ("updated_at".to_string(), n(now)),
        (TTL_ATTRIBUTE.to_string(), n(now + RETENTION_SECONDS)),
    ])
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The DynamoDB client, for the other modules that keep items in the table.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Takes the stack lock for `rollout_id` (again, if it already holds it).
    pub async fn acquire_lock(&self, rollout_id: &str, now: i64) -> Result<(), Error> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, s(LOCK_KEY))
            .item(SORT_KEY, s(LOCK_KEY))
            .item("holder", s(rollout_id))
            .item("acquired_at", n(now))
            .condition_expression("attribute_not_exists(holder) OR holder = :me")
            .expression_attribute_values(":me", s(rollout_id))
            .send()
            .await;
        if written(result, "taking the stack lock")? {
            return Ok(());
        }
        let holder = self
            .lock_holder()
            .await?
            .unwrap_or_else(|| "another rollout".into());
        Err(Error::Locked(format!(
            "rollout {holder} is running on this stack; a second rollout is refused until it ends"
        )))
    }

    /// The rollout holding the lock, if any.
    pub async fn lock_holder(&self) -> Result<Option<String>, Error> {
        let item = self.get_item(LOCK_KEY, LOCK_KEY).await?;
        Ok(item.and_then(|i| get_s(&i, "holder")))
    }

    /// Releases the lock if `rollout_id` holds it; returns whether it did.
    pub async fn release_lock(&self, rollout_id: &str) -> Result<bool, Error> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(LOCK_KEY))
            .key(SORT_KEY, s(LOCK_KEY))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(rollout_id))
            .send()
            .await;
        written(result, "releasing the stack lock")
    }

    async fn get_item(&self, rollout_id: &str, asg: &str) -> Result<Option<Item>, Error> {
        self.read_item(rollout_id, asg, "reading the progress table")
            .await
    }

    /// The item under (`partition`, `sort_key`), read consistently.
    pub(crate) async fn read_item(
        &self,
        partition: &str,
        sort_key: &str,
        what: &str,
    ) -> Result<Option<Item>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(partition))
            .key(SORT_KEY, s(sort_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(what, e))?;
        Ok(out.item)
    }

    pub async fn get(&self, rollout_id: &str, asg: &str) -> Result<Option<AsgRecord>, Error> {
        Ok(self
            .get_item(rollout_id, asg)
            .await?
            .map(|i| AsgRecord::from_item(&i)))
    }

    /// Writes a planned (or skipped) ASG unless the rollout already has it: re-planning
    /// never resets progress. Returns the existing record when there is one.
    pub async fn insert(&self, record: &AsgRecord) -> Result<Option<AsgRecord>, Error> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(record.to_item()))
            .condition_expression(format!("attribute_not_exists({SORT_KEY})"))
            .send()
            .await;
        if written(result, "recording the plan")? {
            return Ok(None);
        }
        self.get(&record.rollout_id, &record.asg).await
    }

    /// Overwrites a record.
    pub async fn put(&self, record: &AsgRecord) -> Result<(), Error> {
        self.put_item(record.to_item(), "recording progress").await
    }

    /// Writes (or overwrites) a whole item.
    async fn put_item(&self, item: Item, what: &str) -> Result<(), Error> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify(what, e))?;
        Ok(())
    }

    /// Writes `record` only if the stored refresh id is still `expected` (none: absent).
    /// Returns false when another writer got there first.
    pub async fn put_if_refresh(
        &self,
        record: &AsgRecord,
        expected: Option<&str>,
    ) -> Result<bool, Error> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(record.to_item()));
        request = match expected {
            None => request.condition_expression("attribute_not_exists(refresh_id)"),
            Some(id) => request
                .condition_expression("refresh_id = :expected")
                .expression_attribute_values(":expected", s(id)),
        };
        written(request.send().await, "recording the refresh")
    }

    /// Records on the ASG's planned record that the planner pinned it from `from`
    /// (`$Latest` or `$Default`) to `version`; an earlier run's pin is kept.
    pub async fn record_pin(
        &self,
        rollout_id: &str,
        asg: &str,
        from: &str,
        version: &str,
    ) -> Result<(), Error> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(rollout_id))
            .key(SORT_KEY, s(asg))
            .update_expression("SET pinned_from = if_not_exists(pinned_from, :from), pinned_version = if_not_exists(pinned_version, :version)")
            .condition_expression("attribute_exists(asg)")
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":version", s(version))
            .send()
            .await;
        if written(result, "recording the pinned version")? {
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "{asg} is not part of rollout {rollout_id}: cannot record its pin"
        )))
    }

    /// Says (before it lists the records) that the failure policy stops the rollout: a
    /// start still running reads it after it recorded its refresh and undoes that refresh.
    pub async fn request_stop(
        &self,
        rollout_id: &str,
        action: StopAction,
        now: i64,
    ) -> Result<(), Error> {
        let mut item = new_item(rollout_id, STOP_KEY, now);
        item.insert("action".into(), s(action.as_str()));
        self.put_item(item, "recording the stop").await
    }

    /// The stop the failure policy requested for this run of the rollout, if any.
    pub async fn stop_requested(&self, rollout_id: &str) -> Result<Option<StopAction>, Error> {
        let item = self.get_item(rollout_id, STOP_KEY).await?;
        Ok(item
            .and_then(|i| get_s(&i, "action"))
            .and_then(|a| StopAction::parse(&a)))
    }

    /// Forgets an earlier run's stop: a re-run of the rollout starts refreshes again.
    pub async fn clear_stop(&self, rollout_id: &str) -> Result<(), Error> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(rollout_id))
            .key(SORT_KEY, s(STOP_KEY))
            .send()
            .await
            .map_err(|e| classify("clearing the stop", e))?;
        Ok(())
    }

    /// Records who aborted the rollout, why, and what was done to its refreshes.
    pub async fn put_abort(&self, abort: &Abort) -> Result<(), Error> {
        let mut item = new_item(&abort.rollout_id, ABORT_KEY, abort.at);
        item.insert("by".into(), s(&abort.by));
        item.insert("action".into(), s(&abort.action));
        if let Some(reason) = &abort.reason {
            item.insert("reason".into(), s(reason));
        }
        self.put_item(item, "recording the abort").await
    }

    /// Ends an aborted rollout: its summary marked Aborted at `abort.at` with `message`, the
    /// abort recorded (who, why, what was done), the stack lock released. Returns whether
    /// this released the lock.
    pub async fn record_abort(&self, abort: &Abort, message: &str) -> Result<bool, Error> {
        let rollout_id = &abort.rollout_id;
        let mut summary = self.summary_or_new(rollout_id, abort.at).await?;
        summary.status = RolloutStatus::Aborted;
        summary.ended_at = Some(abort.at);
        summary.message = Some(generator::payload::cap_message(message));
        self.put_summary(&summary, abort.at).await?;
        self.put_abort(abort).await?;
        self.release_lock(rollout_id).await
    }

    /// The rollout's last abort, if an operator aborted it.
    pub async fn abort_of(&self, rollout_id: &str) -> Result<Option<Abort>, Error> {
        Ok(self.get_item(rollout_id, ABORT_KEY).await?.map(|i| Abort {
            rollout_id: rollout_id.to_string(),
            by: get_s(&i, "by").unwrap_or_default(),
            reason: get_s(&i, "reason"),
            action: get_s(&i, "action").unwrap_or_default(),
            at: get_n(&i, "updated_at").unwrap_or_default(),
        }))
    }

    /// Every ASG record of a rollout (not its summary or approvals).
    pub async fn list(&self, rollout_id: &str) -> Result<Vec<AsgRecord>, Error> {
        let items = self.query(rollout_id, None, "listing the rollout").await?;
        Ok(items
            .iter()
            .map(AsgRecord::from_item)
            .filter(|record| !record.asg.starts_with('#'))
            .collect())
    }

    /// Every item of `rollout_id` whose sort key starts with `prefix` (any, without one),
    /// read consistently, page after page.
    pub(crate) async fn query(
        &self,
        rollout_id: &str,
        prefix: Option<&str>,
        what: &str,
    ) -> Result<Vec<Item>, Error> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":r", s(rollout_id))
            .consistent_read(true);
        let request = match prefix {
            None => request.key_condition_expression(format!("{PARTITION_KEY} = :r")),
            Some(prefix) => request
                .key_condition_expression(format!(
                    "{PARTITION_KEY} = :r AND begins_with({SORT_KEY}, :p)"
                ))
                .expression_attribute_values(":p", s(prefix)),
        };
        let mut pages = request.into_paginator().items().send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(item.map_err(|e| classify(what, e))?);
        }
        Ok(out)
    }

    /// The rollout's summary, or a new one started at `now` when it has none yet (a rollout
    /// that ends, or is aborted, before its summary was written).
    pub async fn summary_or_new(
        &self,
        rollout_id: &str,
        now: i64,
    ) -> Result<RolloutSummary, Error> {
        Ok(self
            .summary(rollout_id)
            .await?
            .unwrap_or_else(|| RolloutSummary {
                rollout_id: rollout_id.to_string(),
                started_at: now,
                ..RolloutSummary::default()
            }))
    }

    pub async fn summary(&self, rollout_id: &str) -> Result<Option<RolloutSummary>, Error> {
        let Some(i) = self.get_item(rollout_id, SUMMARY_KEY).await? else {
            return Ok(None);
        };
        Ok(Some(RolloutSummary {
            rollout_id: rollout_id.to_string(),
            ami: get_s(&i, "ami").unwrap_or_default(),
            status: get_status(&i, "a rollout summary")?,
            planned: get_n(&i, "planned").unwrap_or_default(),
            skipped: get_n(&i, "skipped").unwrap_or_default(),
            waves: get_n(&i, "waves").unwrap_or_default(),
            started_at: get_n(&i, "started_at").unwrap_or_default(),
            ended_at: get_n(&i, "ended_at"),
            message: get_s(&i, "message"),
            warnings: i
                .get("warnings")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|w| w.as_s().ok().cloned()).collect())
                .unwrap_or_default(),
        }))
    }

    pub async fn put_summary(&self, summary: &RolloutSummary, now: i64) -> Result<(), Error> {
        let mut item = new_item(&summary.rollout_id, SUMMARY_KEY, now);
        item.insert("ami".into(), s(&summary.ami));
        item.insert("status".into(), s(summary.status.as_str()));
        item.insert("planned".into(), n(summary.planned));
        item.insert("skipped".into(), n(summary.skipped));
        item.insert("waves".into(), n(summary.waves));
        item.insert("started_at".into(), n(summary.started_at));
        if let Some(end) = summary.ended_at {
            item.insert("ended_at".into(), n(end));
        }
        if let Some(message) = &summary.message {
            item.insert("message".into(), s(message));
        }
        if !summary.warnings.is_empty() {
            item.insert(
                "warnings".into(),
                AttributeValue::L(summary.warnings.iter().map(|w| s(w)).collect()),
            );
        }
        self.put_item(item, "recording the rollout summary").await
    }

    /// Stores the task token an operator's approval of `wave + 1` will complete.
    pub async fn put_approval(
        &self,
        rollout_id: &str,
        wave: u32,
        task_token: &str,
        now: i64,
    ) -> Result<(), Error> {
        let mut item = new_item(rollout_id, &approval_key(wave), now);
        item.insert("wave".into(), n(wave));
        item.insert(
            "status".into(),
            s(ApprovalStatus::AwaitingApproval.as_str()),
        );
        item.insert("task_token".into(), s(task_token));
        self.put_item(item, "recording the approval request").await
    }

    /// Every approval item of a rollout, by wave.
    pub async fn approvals(&self, rollout_id: &str) -> Result<Vec<Approval>, Error> {
        let items = self
            .query(rollout_id, Some(APPROVAL_PREFIX), "listing the approvals")
            .await?;
        items
            .iter()
            .map(|i| {
                Ok(Approval {
                    rollout_id: rollout_id.to_string(),
                    wave: get_n(i, "wave").unwrap_or_default(),
                    status: get_status(i, "an approval")?,
                    task_token: get_s(i, "task_token").unwrap_or_default(),
                    decided_by: get_s(i, "decided_by"),
                    updated_at: get_n(i, "updated_at").unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Records an operator's decision (approved or rejected) on a waiting approval;
    /// false when it was not waiting any more (another operator decided first).
    pub async fn decide_approval(
        &self,
        rollout_id: &str,
        wave: u32,
        decision: ApprovalStatus,
        by: &str,
        now: i64,
    ) -> Result<bool, Error> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(rollout_id))
            .key(SORT_KEY, s(&approval_key(wave)))
            .update_expression("SET #s = :decision, decided_by = :by, updated_at = :now")
            .condition_expression("#s = :waiting")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":decision", s(decision.as_str()))
            .expression_attribute_values(":waiting", s(ApprovalStatus::AwaitingApproval.as_str()))
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        written(result, "recording the approval")
    }
}

/// Sort key of the approval that starts `wave + 1`.
fn approval_key(wave: u32) -> String {
    format!("{APPROVAL_PREFIX}{wave:05}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each status is written as its text and read back from it.
    fn check_items<T, const N: usize>(cases: [(T, &str); N], as_str: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned,
    {
        for (status, text) in cases {
            assert_eq!(as_str(status), text);
            assert_eq!(serde_json::to_value(status).unwrap(), text);
            let item = Item::from([("status".to_string(), s(text))]);
            assert_eq!(get_status::<T>(&item, "x").unwrap(), status);
        }
    }

    /// The table keeps the strings it always held: the e2e tests and `status --json` read them.
    #[test]
    fn statuses_keep_their_wire_strings() {
        let asg = [
            "Planned",
            "Skipped",
            "Starting",
            "Pending",
            "InProgress",
            "Baking",
            "Successful",
            "Failed",
            "Cancelling",
            "Cancelled",
            "RollbackInProgress",
            "RollbackSuccessful",
            "RollbackFailed",
            "TimedOut",
            "Restoring",
            "RolledBack",
            "RestoreFailed",
        ];
        for (status, text) in AsgStatus::KNOWN.into_iter().zip(asg) {
            let record = AsgRecord {
                status: status.clone(),
                ..AsgRecord::default()
            };
            let item = record.to_item();
            assert_eq!(get_s(&item, "status").as_deref(), Some(text));
            assert_eq!(AsgRecord::from_item(&item).status, status);
            assert_eq!(serde_json::to_value(&status).unwrap(), text);
        }
        // A status AWS adds later is kept as AWS spelled it.
        let later = AsgStatus::from("Paused");
        assert_eq!(later, AsgStatus::Other("Paused".into()));
        assert!(!later.is_in_flight() && !later.is_failed() && !later.is_successful());
        assert_eq!(serde_json::to_value(&later).unwrap(), "Paused");

        check_items(
            [
                (RolloutStatus::Running, "Running"),
                (RolloutStatus::Succeeded, "Succeeded"),
                (RolloutStatus::Failed, "Failed"),
                (RolloutStatus::Aborted, "Aborted"),
            ],
            RolloutStatus::as_str,
        );
        check_items(
            [
                (ApprovalStatus::AwaitingApproval, "AwaitingApproval"),
                (ApprovalStatus::Approved, "Approved"),
                (ApprovalStatus::Rejected, "Rejected"),
            ],
            ApprovalStatus::as_str,
        );
        let unknown = Item::from([("status".to_string(), s("Paused"))]);
        assert!(get_status::<RolloutStatus>(&unknown, "a summary").is_err());
        assert!(get_status::<ApprovalStatus>(&Item::new(), "an approval").is_err());
    }
}
