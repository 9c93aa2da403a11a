//! The refresher: starts an ASG's instance refresh on a new launch template version
//! (adopting one it already started), checks it, stores the task token a child waits on for
//! its refresh's event (`completion = "events"`), cancels or rolls back what is in flight,
//! records approvals, and finishes the rollout.

use aws_sdk_autoscaling::types::{
    AlarmSpecification, DesiredConfiguration, InstanceRefresh, InstanceRefreshStatus,
    LaunchTemplate, LaunchTemplateSpecification, MixedInstancesPolicy, RefreshPreferences,
};
use aws_sdk_ec2::types::{LaunchTemplateVersion, RequestLaunchTemplateData};
use generator::payload::{
    cap_message, cap_names, AsgStatus, FinishResponse, InFlightResponse, Outcome,
    RefreshPreferences as Preferences, RefresherRequest, SettleResponse, StepResponse,
    WaveResponse, MAX_NAMES_LISTED,
};
use serde_json::Value;

use crate::completion::Completer;
use crate::error::{classify, Error};
use crate::fanout;
use crate::lambda::to_json;
use crate::store::{AsgRecord, RolloutStatus, StopAction, Store};
use crate::wave_store;
use crate::{validate_ami, validate_rollout_id, Clock};

/// Restoring finished groups to their previous version (`rollback_scope`).
#[path = "restore.rs"]
mod restore;

/// What the refresher needs: clients built once per process, and the clock.
pub struct Refresher {
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
    /// Answers a wait whose refresh's end was recorded before its token (`await_refresh`).
    pub sfn: aws_sdk_sfn::Client,
    pub store: Store,
    pub clock: Clock,
}

/// What `in_flight` did to one group.
enum Stopped {
    /// Rolled back or cancelled (now or by an earlier attempt): pending until it settles.
    Acted(String),
    /// AWS refused (the group and why).
    Refused(String, String),
    /// Nothing was running.
    NotRunning,
}

/// The launch template an ASG uses (its own, or its mixed instances policy's).
#[derive(Debug, Clone, PartialEq)]
struct TemplateRef {
    id: Option<String>,
    name: Option<String>,
    version: String,
    /// The group's mixed instances policy: the refresh carries it with only the launch
    /// template version changed.
    mixed: Option<MixedInstancesPolicy>,
}

/// The desired configuration that moves the group to `version` of `template_id`.
fn desired_configuration(
    template: &TemplateRef,
    template_id: &str,
    version: &str,
) -> DesiredConfiguration {
    let spec = LaunchTemplateSpecification::builder()
        .launch_template_id(template_id)
        .version(version)
        .build();
    match &template.mixed {
        Some(policy) => {
            let lt = policy.launch_template();
            let mut mixed = MixedInstancesPolicy::builder().launch_template(
                LaunchTemplate::builder()
                    .launch_template_specification(spec)
                    .set_overrides(lt.map(|lt| lt.overrides().to_vec()))
                    .build(),
            );
            if let Some(distribution) = policy.instances_distribution() {
                mixed = mixed.instances_distribution(distribution.clone());
            }
            DesiredConfiguration::builder()
                .mixed_instances_policy(mixed.build())
                .build()
        }
        None => DesiredConfiguration::builder()
            .launch_template(spec)
            .build(),
    }
}

/// The launch template (id, version) a refresh's desired configuration moves to.
fn desired_template(refresh: &InstanceRefresh) -> Option<(&str, &str)> {
    let desired = refresh.desired_configuration()?;
    let spec = desired.launch_template().or_else(|| {
        desired
            .mixed_instances_policy()
            .and_then(|m| m.launch_template())
            .and_then(|lt| lt.launch_template_specification())
    })?;
    Some((
        spec.launch_template_id().unwrap_or_default(),
        spec.version().unwrap_or_default(),
    ))
}

fn step(asg: &str, record: &AsgRecord, done: bool) -> StepResponse {
    StepResponse {
        asg: asg.to_string(),
        status: record.status.clone(),
        percentage: record.percentage,
        done,
        message: record.reason.clone(),
    }
}

/// A stable ClientToken (at most 64 characters) for this rollout's version of a template.
fn client_token(rollout_id: &str, asg: &str) -> String {
    // FNV-1a: stable across processes and releases, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in rollout_id.bytes().chain([0]).chain(asg.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let prefix: String = rollout_id.chars().take(40).collect();
    format!("asg-refresh-{prefix}-{hash:016x}")
}

impl Refresher {
    /// The refresher with its clients built from `config`, on `store`, on the system clock.
    pub fn new(config: &aws_config::SdkConfig, store: Store) -> Self {
        Self {
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            sfn: aws_sdk_sfn::Client::new(config),
            store,
            clock: crate::system_clock(),
        }
    }

    pub async fn handle(&self, request: RefresherRequest) -> Result<Value, Error> {
        // Every action names its rollout, and the id goes into table keys and client tokens.
        validate_rollout_id(request.rollout_id())?;
        match request {
            RefresherRequest::Wave { rollout_id, wave } => {
                to_json(&self.wave_items(rollout_id, wave).await?)
            }
            RefresherRequest::SpendBudget {
                rollout_id,
                wave,
                index,
                planned,
                max_failures,
            } => {
                crate::budget::spend(&self.store, &rollout_id, wave, index, planned, max_failures)
                    .await
            }
            RefresherRequest::CheckAlarms {
                rollout_id,
                wave,
                since,
                alarms,
            } => {
                let now = (self.clock)();
                to_json(&crate::alarms::check(&rollout_id, wave, since, now, &alarms).await?)
            }
            RefresherRequest::Start {
                rollout_id,
                wave,
                index,
                ami,
                preferences,
            } => {
                validate_ami(&ami)?;
                to_json(
                    &self
                        .start_member(&rollout_id, wave, index, &ami, &preferences)
                        .await?,
                )
            }
            RefresherRequest::Check {
                rollout_id,
                asg,
                timeout_minutes,
            } => to_json(&self.check(&rollout_id, &asg, timeout_minutes).await?),
            RefresherRequest::AwaitRefresh {
                rollout_id,
                asg,
                task_token,
            } => to_json(
                &self
                    .completer()
                    .store_token(&rollout_id, &asg, &task_token)
                    .await?,
            ),
            RefresherRequest::AwaitApproval {
                rollout_id,
                wave,
                task_token,
            } => self.await_approval(rollout_id, wave, &task_token).await,
            RefresherRequest::Rollback {
                rollout_id,
                scope,
                preferences,
            } => {
                let mut response = self.in_flight(&rollout_id, true).await?;
                self.restore(&rollout_id, scope, preferences.as_ref(), &mut response)
                    .await?;
                to_json(&response.bounded())
            }
            RefresherRequest::Cancel { rollout_id } => {
                to_json(&self.in_flight(&rollout_id, false).await?.bounded())
            }
            RefresherRequest::SettleRollbacks { rollout_id, round } => {
                to_json(&self.settle(&rollout_id, round).await?.bounded())
            }
            RefresherRequest::Finish {
                rollout_id,
                outcome,
                error,
            } => {
                let response = self.finish(&rollout_id, outcome, error.as_ref()).await?;
                #[cfg(feature = "notify")]
                crate::notify::finished(&self.store, &response).await;
                to_json(&response)
            }
        }
    }

    /// The `wave` action: the positions of the wave's ASGs for its Map, with the wave's group
    /// and batch size (they feed the Map's MaxConcurrencyPath).
    async fn wave_items(&self, rollout_id: String, wave: u32) -> Result<WaveResponse, Error> {
        let info = wave_store::wave_info(&self.store, &rollout_id, wave).await?;
        #[cfg(feature = "notify")]
        crate::notify::before_wave(&self.store, &rollout_id, wave).await;
        Ok(WaveResponse {
            rollout_id,
            wave,
            items: (0..info.size).collect(),
            started_at: (self.clock)(),
            max_concurrency: info.batch_size,
            group: info.group,
        })
    }

    /// The `start` action: starts the refresh of the ASG at position `index` of `wave` (the
    /// child knows its position; the name is in the table). A start that fails is recorded
    /// on the ASG's record.
    async fn start_member(
        &self,
        rollout_id: &str,
        wave: u32,
        index: u32,
        ami: &str,
        preferences: &Preferences,
    ) -> Result<StepResponse, Error> {
        let asg = wave_store::wave_member(&self.store, rollout_id, wave, index).await?;
        let started = self.start(rollout_id, &asg, ami, wave, preferences).await;
        if let Err(error) = &started {
            self.record_start_failure(rollout_id, &asg, error).await;
        }
        started
    }

    /// The completer on this refresher's clients, table and clock (`await_refresh`).
    fn completer(&self) -> Completer {
        Completer {
            store: self.store.clone(),
            sfn: self.sfn.clone(),
            clock: self.clock.clone(),
        }
    }

    /// The `await_approval` action: stores the task token an operator's approval answers.
    async fn await_approval(
        &self,
        rollout_id: String,
        wave: u32,
        task_token: &str,
    ) -> Result<Value, Error> {
        self.store
            .put_approval(&rollout_id, wave, task_token, (self.clock)())
            .await?;
        #[cfg(feature = "notify")]
        crate::notify::awaiting_approval(&self.store, &rollout_id, wave).await;
        Ok(serde_json::json!({"rollout_id": rollout_id, "awaiting_wave": wave + 1}))
    }

    /// Starts (or adopts) the ASG's refresh to `ami`.
    pub async fn start(
        &self,
        rollout_id: &str,
        asg: &str,
        ami: &str,
        wave: u32,
        preferences: &Preferences,
    ) -> Result<StepResponse, Error> {
        let now = (self.clock)();
        let mut record = self
            .store
            .get(rollout_id, asg)
            .await?
            .unwrap_or_else(|| AsgRecord {
                rollout_id: rollout_id.to_string(),
                asg: asg.to_string(),
                wave: Some(wave),
                status: AsgStatus::Planned,
                updated_at: now,
                ..AsgRecord::default()
            });
        if record.status.is_successful() {
            return Ok(step(asg, &record, true));
        }
        if let Some(adopted) = self.adopt_recorded(&mut record, now).await? {
            return Ok(adopted);
        }
        let previous_refresh = record.refresh_id.clone();
        let template = self.template_of(asg).await?;
        let (template_id, version) = self
            .record_starting(&mut record, &template, ami, wave, now)
            .await?;
        let refresh_id = self
            .start_refresh(
                rollout_id,
                asg,
                &template,
                (&template_id, &version),
                Some(preferences),
                &format!("starting the instance refresh of {asg}"),
            )
            .await?;
        record.refresh_id = Some(refresh_id.clone());
        record.status = AsgStatus::Pending;
        if !self
            .store
            .put_if_refresh(&record, previous_refresh.as_deref())
            .await?
        {
            // A concurrent start recorded its refresh first: report that one.
            let winner = self.store.get(rollout_id, asg).await?.unwrap_or(record);
            return Ok(step(asg, &winner, false));
        }
        tracing::info!(asg, refresh = %refresh_id, version = %version, "started instance refresh");
        // The failure policy writes its stop before it lists the records: if it listed
        // them before this refresh was recorded, the stop is visible now, and this start
        // undoes its own refresh (a rollback never misses a refresh that started late).
        if let Some(action) = self.store.stop_requested(rollout_id).await? {
            return self.undo(&mut record, action).await;
        }
        Ok(step(asg, &record, false))
    }

    /// A retried or re-run start adopts the refresh this rollout already started, while it
    /// runs or once it succeeded (not a restore's: that one moves the group back).
    async fn adopt_recorded(
        &self,
        record: &mut AsgRecord,
        now: i64,
    ) -> Result<Option<StepResponse>, Error> {
        let Some(id) = record
            .refresh_id
            .clone()
            .filter(|_| !restore::is_restore(&record.status))
        else {
            return Ok(None);
        };
        let asg = record.asg.clone();
        let Some(refresh) = self.describe_refresh(&asg, Some(&id)).await? else {
            return Ok(None);
        };
        let current = refresh_status(&refresh);
        if !(current.is_in_flight() || current.is_successful()) {
            return Ok(None);
        }
        self.apply(record, &refresh, now);
        self.store.put(record).await?;
        tracing::info!(asg, refresh = %id, status = %current, "adopted the refresh this rollout started");
        Ok(Some(step(&asg, record, current.is_successful())))
    }

    /// Makes (or reuses) the launch template version with `ami` and records the group
    /// `Starting` on it; the template id and version.
    async fn record_starting(
        &self,
        record: &mut AsgRecord,
        template: &TemplateRef,
        ami: &str,
        wave: u32,
        now: i64,
    ) -> Result<(String, String), Error> {
        self.remember_previous(record, template).await?;
        // Reuse the version an interrupted start already made; otherwise make one.
        let (template_id, version) =
            match (&record.launch_template_id, &record.launch_template_version) {
                (Some(id), Some(version))
                    if record.status == AsgStatus::Starting
                        && record.ami.as_deref() == Some(ami) =>
                {
                    (id.clone(), version.clone())
                }
                _ => {
                    self.ensure_version(&record.rollout_id, &record.asg, template, ami)
                        .await?
                }
            };
        record.ami = Some(ami.to_string());
        record.wave = record.wave.or(Some(wave));
        record.launch_template_id = Some(template_id.clone());
        record.launch_template_version = Some(version.clone());
        record.status = AsgStatus::Starting;
        record.reason = None;
        record.percentage = None;
        record.started_at = Some(now);
        record.ended_at = None;
        record.updated_at = now;
        self.store.put(record).await?;
        Ok((template_id, version))
    }

    /// StartInstanceRefresh of `asg` to `target` (a launch template id and version), with
    /// `preferences` (none: AWS's defaults); the refresh's id. When a refresh is already in
    /// progress, adopts it if it moves to the same version (an interrupted attempt of this
    /// call started it). `what` names the call in errors.
    async fn start_refresh(
        &self,
        rollout_id: &str,
        asg: &str,
        template: &TemplateRef,
        (template_id, version): (&str, &str),
        preferences: Option<&Preferences>,
        what: &str,
    ) -> Result<String, Error> {
        let started = self
            .autoscaling
            .start_instance_refresh()
            .auto_scaling_group_name(asg)
            .desired_configuration(desired_configuration(template, template_id, version))
            .set_preferences(preferences.map(build_preferences))
            .send()
            .await;
        match started {
            Ok(out) => Ok(out.instance_refresh_id().unwrap_or_default().to_string()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_instance_refresh_in_progress_fault()) =>
            {
                self.adopt_in_progress(rollout_id, asg, template_id, version)
                    .await
            }
            Err(e) => Err(classify(what, e)),
        }
    }

    /// Asks AWS to roll back (or cancel) the ASG's refresh; the status it is in now.
    async fn stop_refresh(&self, asg: &str, action: StopAction) -> Result<AsgStatus, Error> {
        match action {
            StopAction::Rollback => self
                .autoscaling
                .rollback_instance_refresh()
                .auto_scaling_group_name(asg)
                .send()
                .await
                .map(|_| AsgStatus::RollbackInProgress)
                .map_err(|e| classify(&format!("rolling back {asg}"), e)),
            StopAction::Cancel => self
                .autoscaling
                .cancel_instance_refresh()
                .auto_scaling_group_name(asg)
                .send()
                .await
                .map(|_| AsgStatus::Cancelling)
                .map_err(|e| classify(&format!("cancelling {asg}"), e)),
        }
    }

    /// Rolls back (or cancels) the refresh a start made after the rollout stopped, and
    /// records it where `settle` finds it.
    async fn undo(
        &self,
        record: &mut AsgRecord,
        action: StopAction,
    ) -> Result<StepResponse, Error> {
        let asg = record.asg.clone();
        let id = record.refresh_id.clone().unwrap_or_default();
        let result = self.stop_refresh(&asg, action).await;
        let now = (self.clock)();
        match result {
            Ok(new_status) => record.status = new_status,
            Err(Error::Retryable(message)) => return Err(Error::Retryable(message)),
            // The failure policy may have acted on it already: record where it is.
            Err(error) => match self.describe_refresh(&asg, Some(&id)).await? {
                Some(refresh)
                    if !matches!(
                        refresh_status(&refresh),
                        AsgStatus::Pending | AsgStatus::InProgress | AsgStatus::Baking
                    ) =>
                {
                    self.apply(record, &refresh, now)
                }
                _ => return Err(error),
            },
        }
        let verb = if action == StopAction::Rollback {
            "rolled back"
        } else {
            "cancelled"
        };
        record.reason = Some(format!(
            "{verb} by the failure policy: the rollout stopped while this refresh started"
        ));
        record.updated_at = now;
        self.store.put(record).await?;
        tracing::info!(asg, refresh = %id, ?action, "undid a refresh that started after the rollout stopped");
        Err(Error::RefreshFailed(format!(
            "{asg}: instance refresh {id} {verb}: the rollout stopped while it started"
        )))
    }

    /// Records why a start failed for good (a retryable error will be retried), so the
    /// summary and `status` can say it. Best effort: the error itself is what matters.
    async fn record_start_failure(&self, rollout_id: &str, asg: &str, error: &Error) {
        if matches!(error, Error::Retryable(_)) {
            return;
        }
        let Ok(Some(mut record)) = self.store.get(rollout_id, asg).await else {
            return;
        };
        if record.status.is_in_flight() && record.status != AsgStatus::Starting {
            return;
        }
        record.status = AsgStatus::Failed;
        record.reason = Some(format!("could not start: {error}"));
        record.ended_at = Some((self.clock)());
        record.updated_at = (self.clock)();
        if let Err(e) = self.store.put(&record).await {
            tracing::warn!(asg, error = %e, "could not record the failed start");
        }
    }

    /// The refresh already running on `asg`, if it is the one this rollout would start.
    async fn adopt_in_progress(
        &self,
        rollout_id: &str,
        asg: &str,
        template_id: &str,
        version: &str,
    ) -> Result<String, Error> {
        let Some(active) = self.describe_refresh(asg, None).await? else {
            return Err(Error::Retryable(format!(
                "{asg}: a refresh was reported in progress but none is listed"
            )));
        };
        let desired = desired_template(&active);
        let id = active.instance_refresh_id().unwrap_or_default().to_string();
        if desired == Some((template_id, version)) {
            tracing::info!(asg, refresh = %id, "adopted a refresh started by an interrupted attempt");
            return Ok(id);
        }
        Err(Error::Conflict(format!(
            "{asg}: instance refresh {id} ({}) is in progress and was not started by rollout {rollout_id}; let it finish or cancel it, then re-run",
            refresh_status(&active)
        )))
    }

    /// Describes, records and gates the ASG's refresh.
    pub async fn check(
        &self,
        rollout_id: &str,
        asg: &str,
        timeout_minutes: u32,
    ) -> Result<StepResponse, Error> {
        let now = (self.clock)();
        let mut record = self.store.get(rollout_id, asg).await?.ok_or_else(|| {
            Error::InvalidInput(format!("{asg} is not part of rollout {rollout_id}"))
        })?;
        if record.status.is_successful() {
            return Ok(step(asg, &record, true));
        }
        let id = record.refresh_id.clone().ok_or_else(|| {
            Error::InvalidInput(format!(
                "{asg}: no refresh recorded for rollout {rollout_id}; start runs first"
            ))
        })?;
        let refresh = self
            .describe_refresh(asg, Some(&id))
            .await?
            .ok_or_else(|| Error::Aws(format!("{asg}: instance refresh {id} is not listed")))?;
        self.apply(&mut record, &refresh, now);
        let current = record.status.clone();
        if current.is_successful() {
            self.store.put(&record).await?;
            return Ok(step(asg, &record, true));
        }
        if current.is_failed() {
            self.store.put(&record).await?;
            let reason = record
                .reason
                .clone()
                .unwrap_or_else(|| "no reason given".into());
            return Err(Error::RefreshFailed(format!(
                "{asg}: instance refresh {id} ended {current}: {reason}"
            )));
        }
        let elapsed = now - record.started_at.unwrap_or(now);
        if elapsed > i64::from(timeout_minutes) * 60 {
            record.status = AsgStatus::TimedOut;
            record.reason = Some(format!("still {current} after {timeout_minutes} minutes"));
            record.ended_at = Some(now);
            self.store.put(&record).await?;
            return Err(Error::TimedOut(format!(
                "{asg}: instance refresh {id} still {current} after {timeout_minutes} minutes"
            )));
        }
        self.store.put(&record).await?;
        Ok(step(asg, &record, false))
    }

    /// Rolls back (or cancels) every refresh of the rollout that is still in flight, a few
    /// groups at a time ([`fanout`]). A throttled or failed call on one group does not stop
    /// the others: every group is handled and recorded, then a retryable error is returned
    /// so that the state machine retries, and the retry skips what this attempt undid.
    pub async fn in_flight(
        &self,
        rollout_id: &str,
        rollback: bool,
    ) -> Result<InFlightResponse, Error> {
        let now = (self.clock)();
        let action = if rollback {
            StopAction::Rollback
        } else {
            StopAction::Cancel
        };
        // Written before the records are read: a start that records its refresh after this
        // read sees the stop and undoes that refresh itself (see `start`).
        self.store.request_stop(rollout_id, action, now).await?;
        let records = self.store.list(rollout_id).await?;
        let outcomes = fanout::map_all(records, |record| {
            self.stop_one(rollout_id, record, rollback, now)
        })
        .await;
        let mut acted_on = Vec::new();
        let mut refused = Vec::new();
        let mut retry = None;
        for outcome in outcomes {
            match outcome {
                Ok(Stopped::Acted(asg)) => acted_on.push(asg),
                Ok(Stopped::Refused(asg, error)) => refused.push(format!("{asg}: {error}")),
                Ok(Stopped::NotRunning) => {}
                Err(error @ Error::Retryable(_)) => retry = retry.or(Some(error)),
                Err(error) => return Err(error),
            }
        }
        if let Some(error) = retry {
            return Err(error);
        }
        tracing::info!(
            rollout = rollout_id,
            acted_on = acted_on.len(),
            refused = refused.len(),
            rollback,
            "in-flight refreshes handled"
        );
        let pending = acted_on.len() as u32;
        Ok(InFlightResponse {
            rollout_id: rollout_id.to_string(),
            acted_on,
            refused,
            pending,
        })
    }

    /// Rolls back or cancels one group's refresh and records what happened.
    async fn stop_one(
        &self,
        rollout_id: &str,
        mut record: AsgRecord,
        rollback: bool,
        now: i64,
    ) -> Result<Stopped, Error> {
        let asg = record.asg.clone();
        // Already undone by an earlier attempt of this call (a retry): still pending, not
        // asked again (AWS would refuse it: no refresh is Pending or InProgress any more).
        if record.status.is_being_undone() {
            return Ok(if record.refresh_id.is_some() {
                Stopped::Acted(asg)
            } else {
                Stopped::NotRunning
            });
        }
        // A timed-out refresh is still running at AWS: it is in flight for this purpose.
        let running = record.status.is_in_flight() || record.status == AsgStatus::TimedOut;
        if running && record.refresh_id.is_none() && record.status == AsgStatus::Starting {
            self.adopt_starting(rollout_id, &mut record, now).await?;
        }
        if !running || record.refresh_id.is_none() {
            return Ok(Stopped::NotRunning);
        }
        let action = if rollback {
            StopAction::Rollback
        } else {
            StopAction::Cancel
        };
        let result = self.stop_refresh(&asg, action).await;
        let stopped = match result {
            Ok(new_status) => {
                record.status = new_status;
                record.reason = Some(
                    if rollback {
                        "rolled back by the failure policy"
                    } else {
                        "cancelled"
                    }
                    .into(),
                );
                Stopped::Acted(asg)
            }
            Err(error @ Error::Retryable(_)) => return Err(error),
            Err(error) => {
                record.reason = Some(error.to_string());
                Stopped::Refused(asg, error.to_string())
            }
        };
        record.updated_at = now;
        self.store.put(&record).await?;
        Ok(stopped)
    }

    /// A record still `Starting` without a refresh id: its start made the version but had
    /// not recorded a refresh when the rollout stopped. Takes the group's active refresh
    /// when it moves to this record's version; otherwise marks the record stopped, unless
    /// the start records its refresh first (then that refresh is the one to act on).
    async fn adopt_starting(
        &self,
        rollout_id: &str,
        record: &mut AsgRecord,
        now: i64,
    ) -> Result<(), Error> {
        let asg = record.asg.clone();
        if let Some(active) = self.describe_refresh(&asg, None).await? {
            let ours = record
                .launch_template_id
                .as_deref()
                .zip(record.launch_template_version.as_deref());
            if ours.is_some() && desired_template(&active) == ours {
                record.refresh_id = active.instance_refresh_id().map(str::to_string);
                tracing::info!(asg, refresh = ?record.refresh_id, "found the refresh of a start that had not recorded it");
                return Ok(());
            }
        }
        let mut stopped = record.clone();
        stopped.status = AsgStatus::Cancelled;
        stopped.reason = Some("stopped by the failure policy before its refresh started".into());
        stopped.ended_at = Some(now);
        stopped.updated_at = now;
        if self.store.put_if_refresh(&stopped, None).await? {
            *record = stopped;
            return Ok(());
        }
        if let Some(current) = self.store.get(rollout_id, &asg).await? {
            *record = current;
        }
        Ok(())
    }

    /// Describes every rollback (or cancel) `in_flight` requested and records where it is,
    /// so the table ends with RollbackSuccessful, RollbackFailed or Cancelled rather than
    /// the status of the request.
    pub async fn settle(&self, rollout_id: &str, round: u32) -> Result<SettleResponse, Error> {
        let now = (self.clock)();
        let records = self.store.list(rollout_id).await?;
        let undoing = records
            .into_iter()
            .filter(|r| r.status.is_being_undone() && r.refresh_id.is_some());
        let settled = fanout::try_map_all(undoing, |record| self.settle_one(record, now)).await?;
        let (mut still_running, mut ended) = running_and_ended(settled);
        let (restoring, restored) = self.settle_restores(rollout_id, now).await?;
        still_running.extend(restoring);
        ended.extend(restored);
        tracing::info!(
            rollout = rollout_id,
            round,
            still_running = still_running.len(),
            ended = ended.len(),
            "rollbacks settled"
        );
        Ok(SettleResponse {
            rollout_id: rollout_id.to_string(),
            round: round + 1,
            pending: still_running.len() as u32,
            still_running,
            ended,
        })
    }

    /// Describes one rollback (or cancel) and records it; the group, and whether it is
    /// still running.
    async fn settle_one(&self, mut record: AsgRecord, now: i64) -> Result<(String, bool), Error> {
        let asg = record.asg.clone();
        let id = record.refresh_id.clone().unwrap_or_default();
        let listed = match self.describe_refresh(&asg, Some(&id)).await? {
            Some(refresh) => {
                // Keep why it was rolled back (what `in_flight` wrote, before any
                // `; `); add what AWS says of the rollback now.
                let why = record
                    .reason
                    .take()
                    .map(|r| r.split("; ").next().unwrap_or_default().to_string());
                self.apply(&mut record, &refresh, now);
                record.reason = match (why, record.reason.take()) {
                    (Some(why), Some(said)) if said != why => Some(format!("{why}; {said}")),
                    (why, said) => why.or(said),
                };
                true
            }
            None => {
                record.reason = Some(format!("instance refresh {id} is no longer listed"));
                record.updated_at = now;
                false
            }
        };
        let running = listed && record.status.is_in_flight();
        self.store.put(&record).await?;
        Ok((asg, running))
    }

    /// Writes the rollout's summary and releases the lock.
    pub async fn finish(
        &self,
        rollout_id: &str,
        outcome: Outcome,
        error: Option<&Value>,
    ) -> Result<FinishResponse, Error> {
        let now = (self.clock)();
        let records = self.store.list(rollout_id).await?;
        let succeeded = records.iter().filter(|r| r.status.is_successful()).count() as u32;
        let skipped = records
            .iter()
            .filter(|r| r.status == AsgStatus::Skipped)
            .count() as u32;
        let failed = failed_records(&records, outcome);
        let outcome = if failed.is_empty() {
            outcome
        } else {
            Outcome::Failed
        };
        let message = finish_message(&records, &failed, outcome, error, succeeded, skipped);
        let mut summary = self.store.summary_or_new(rollout_id, now).await?;
        summary.status = RolloutStatus::from(outcome);
        summary.ended_at = Some(now);
        summary.message = Some(message.clone());
        self.store.put_summary(&summary, now).await?;
        let released = self.store.release_lock(rollout_id).await?;
        tracing::info!(
            rollout = rollout_id,
            ?outcome,
            succeeded,
            failed = failed.len(),
            skipped,
            released,
            "finished"
        );
        Ok(FinishResponse {
            rollout_id: rollout_id.to_string(),
            outcome,
            succeeded,
            failed: failed.len() as u32,
            skipped,
            message,
        })
    }

    /// Copies a described refresh into the record.
    fn apply(&self, record: &mut AsgRecord, refresh: &InstanceRefresh, now: i64) {
        record.status = refresh_status(refresh);
        record.percentage = refresh.percentage_complete().map(|p| p.max(0) as u32);
        record.reason = refresh
            .status_reason()
            .map(str::to_string)
            .or(record.reason.take());
        if let Some(id) = refresh.instance_refresh_id() {
            record.refresh_id = Some(id.to_string());
        }
        if !record.status.is_in_flight() {
            record.ended_at = refresh.end_time().map(|t| t.secs()).or(Some(now));
        }
        record.updated_at = now;
    }

    /// The refresh `id` of the ASG, or (no id) the newest one still in flight.
    async fn describe_refresh(
        &self,
        asg: &str,
        id: Option<&str>,
    ) -> Result<Option<InstanceRefresh>, Error> {
        let mut request = self
            .autoscaling
            .describe_instance_refreshes()
            .auto_scaling_group_name(asg);
        if let Some(id) = id {
            request = request.instance_refresh_ids(id);
        }
        let out = request
            .send()
            .await
            .map_err(|e| classify(&format!("describing the instance refreshes of {asg}"), e))?;
        let refreshes = out.instance_refreshes();
        Ok(match id {
            Some(id) => refreshes
                .iter()
                .find(|r| r.instance_refresh_id() == Some(id))
                .cloned(),
            None => refreshes
                .iter()
                .find(|r| refresh_status(r).is_in_flight())
                .cloned(),
        })
    }

    async fn template_of(&self, asg: &str) -> Result<TemplateRef, Error> {
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(asg)
            .send()
            .await
            .map_err(|e| classify(&format!("describing {asg}"), e))?;
        let group = out
            .auto_scaling_groups()
            .first()
            .ok_or_else(|| Error::Aws(format!("{asg}: the Auto Scaling group no longer exists")))?;
        let mixed = group.mixed_instances_policy().cloned();
        let lt = group
            .launch_template()
            .or_else(|| {
                mixed
                    .as_ref()
                    .and_then(|m| m.launch_template())
                    .and_then(|lt| lt.launch_template_specification())
            })
            .ok_or_else(|| {
                Error::Aws(format!(
                    "{asg}: has no launch template to put the new AMI in"
                ))
            })?;
        Ok(TemplateRef {
            id: lt.launch_template_id().map(str::to_string),
            name: lt.launch_template_name().map(str::to_string),
            version: lt.version().unwrap_or("$Default").to_string(),
            mixed,
        })
    }

    /// The launch template version the group names (`$Latest`, `$Default` or a number), as
    /// DescribeLaunchTemplateVersions gives it (none: not found).
    async fn describe_version(
        &self,
        asg: &str,
        template: &TemplateRef,
    ) -> Result<Option<LaunchTemplateVersion>, Error> {
        let describe = self
            .ec2
            .describe_launch_template_versions()
            .versions(&template.version);
        let describe = match (&template.id, &template.name) {
            (Some(id), _) => describe.launch_template_id(id),
            (None, Some(name)) => describe.launch_template_name(name),
            (None, None) => {
                return Err(Error::Aws(format!(
                    "{asg}: launch template has neither id nor name"
                )))
            }
        };
        let out = describe
            .send()
            .await
            .map_err(|e| classify(&format!("describing the launch template of {asg}"), e))?;
        Ok(out.launch_template_versions().first().cloned())
    }

    /// A numbered launch template version with `ami`: the current one when it already
    /// has it, else a new version made from the current with only ImageId changed.
    async fn ensure_version(
        &self,
        rollout_id: &str,
        asg: &str,
        template: &TemplateRef,
        ami: &str,
    ) -> Result<(String, String), Error> {
        let current = self.describe_version(asg, template).await?.ok_or_else(|| {
            Error::Aws(format!(
                "{asg}: launch template version {} not found",
                template.version
            ))
        })?;
        let template_id = current
            .launch_template_id()
            .map(str::to_string)
            .ok_or_else(|| Error::Aws(format!("{asg}: launch template without an id")))?;
        let number = current.version_number().unwrap_or(1);
        if current.launch_template_data().and_then(|d| d.image_id()) == Some(ami) {
            return Ok((template_id, number.to_string()));
        }
        let created = self
            .ec2
            .create_launch_template_version()
            .launch_template_id(&template_id)
            .source_version(number.to_string())
            .client_token(client_token(rollout_id, asg))
            .version_description(format!("asg-refresh {rollout_id}: {ami}"))
            .launch_template_data(RequestLaunchTemplateData::builder().image_id(ami).build())
            .send()
            .await
            .map_err(|e| classify(&format!("creating a launch template version for {asg}"), e))?;
        // AWS makes the version even when its parameters are not valid (an AMI that does
        // not exist, say) and says so only in `Warning`: such a version must not launch.
        if let Some(warning) = created.warning().filter(|w| !w.errors().is_empty()) {
            let problems: Vec<String> = warning
                .errors()
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.code().unwrap_or("Warning"),
                        e.message().unwrap_or_default()
                    )
                })
                .collect();
            return Err(Error::Aws(format!(
                "{asg}: the new launch template version of {template_id} is not valid, so no refresh was started: {}",
                problems.join("; ")
            )));
        }
        let version = created
            .launch_template_version()
            .and_then(|v| v.version_number())
            .ok_or_else(|| {
                Error::Aws(format!(
                    "{asg}: the new launch template version has no number"
                ))
            })?;
        tracing::info!(asg, template = %template_id, from = number, to = version, ami, "created launch template version");
        Ok((template_id, version.to_string()))
    }
}

/// A described refresh's status (Pending when AWS gives none yet).
fn refresh_status(refresh: &InstanceRefresh) -> AsgStatus {
    refresh.status().map_or(AsgStatus::Pending, asg_status)
}

/// The table's status for an instance refresh status; one this version does not know is
/// kept as AWS spelled it.
pub fn asg_status(status: &InstanceRefreshStatus) -> AsgStatus {
    match status {
        InstanceRefreshStatus::Pending => AsgStatus::Pending,
        InstanceRefreshStatus::InProgress => AsgStatus::InProgress,
        InstanceRefreshStatus::Baking => AsgStatus::Baking,
        InstanceRefreshStatus::Successful => AsgStatus::Successful,
        InstanceRefreshStatus::Failed => AsgStatus::Failed,
        InstanceRefreshStatus::Cancelling => AsgStatus::Cancelling,
        InstanceRefreshStatus::Cancelled => AsgStatus::Cancelled,
        InstanceRefreshStatus::RollbackInProgress => AsgStatus::RollbackInProgress,
        InstanceRefreshStatus::RollbackSuccessful => AsgStatus::RollbackSuccessful,
        InstanceRefreshStatus::RollbackFailed => AsgStatus::RollbackFailed,
        other => AsgStatus::Other(other.as_str().to_string()),
    }
}

/// The ASGs that count as failed when the rollout ends with `outcome`: every failure, the
/// rollbacks of a failed rollout, and after every wave ran (Succeeded) anything neither
/// refreshed nor skipped, even if no failure was recorded: the rollout must not pass for a
/// success.
fn failed_records(records: &[AsgRecord], outcome: Outcome) -> Vec<&AsgRecord> {
    records
        .iter()
        .filter(|r| {
            r.status.is_failed()
                || (outcome == Outcome::Failed && r.status.is_rollback())
                || (outcome == Outcome::Succeeded
                    && !r.status.is_successful()
                    && r.status != AsgStatus::Skipped)
        })
        .collect()
}

/// The summary's one line: the failed ASGs with why, or the rollout's cause, or the
/// counts; a failed rollout also says what it left running, what it never started and
/// what it restored. Every list and the message are capped: the summary travels through
/// the state machine (256 KiB at most) whatever the fleet size; the table has every ASG.
fn finish_message(
    records: &[AsgRecord],
    failed: &[&AsgRecord],
    outcome: Outcome,
    error: Option<&Value>,
    succeeded: u32,
    skipped: u32,
) -> String {
    let mut message = if !failed.is_empty() {
        let mut described: Vec<String> = failed
            .iter()
            .take(MAX_NAMES_LISTED)
            .map(|r| match &r.reason {
                Some(reason) => format!("{} ({}: {reason})", r.asg, r.status),
                None => format!("{} ({})", r.asg, r.status),
            })
            .collect();
        if failed.len() > MAX_NAMES_LISTED {
            described.push(format!("and {} more", failed.len() - MAX_NAMES_LISTED));
        }
        format!(
            "{} of {} ASGs failed: {}",
            failed.len(),
            records.len() - skipped as usize,
            described.join("; ")
        )
    } else if outcome == Outcome::Failed {
        let cause = error
            .and_then(|e| e.get("Cause").or_else(|| e.get("Error")))
            .and_then(Value::as_str)
            .map(cause_message)
            .unwrap_or_else(|| "no cause recorded".into());
        format!("rollout failed: {cause}")
    } else {
        format!("{succeeded} ASGs refreshed, {skipped} skipped")
    };
    if outcome == Outcome::Failed {
        let names = |filter: &dyn Fn(&AsgRecord) -> bool| -> Vec<String> {
            records
                .iter()
                .filter(|r| filter(r))
                .map(|r| r.asg.clone())
                .collect()
        };
        let still_running = names(&|r| r.status.is_in_flight() && !r.status.is_rollback());
        let not_started = names(&|r| r.status == AsgStatus::Planned);
        for (what, names) in [
            ("still refreshing", still_running),
            ("not started", not_started),
        ] {
            if !names.is_empty() {
                message.push_str(&format!("; {what}: {}", cap_names(&names).join(", ")));
            }
        }
        if let Some(note) = restore::note(records) {
            message.push_str(&note);
        }
    }
    cap_message(&message)
}

/// The groups still running, and those that ended, of (group, still running) pairs.
fn running_and_ended(settled: Vec<(String, bool)>) -> (Vec<String>, Vec<String>) {
    let (running, ended): (Vec<_>, Vec<_>) = settled.into_iter().partition(|(_, running)| *running);
    let names = |pairs: Vec<(String, bool)>| pairs.into_iter().map(|(asg, _)| asg).collect();
    (names(running), names(ended))
}

/// The human part of a Step Functions error cause (Lambda causes are JSON with `errorMessage`).
fn cause_message(cause: &str) -> String {
    serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| cause.to_string())
}

fn build_preferences(p: &Preferences) -> RefreshPreferences {
    let mut builder = RefreshPreferences::builder()
        .min_healthy_percentage(p.min_healthy_percentage as i32)
        .max_healthy_percentage(p.max_healthy_percentage as i32)
        .skip_matching(p.skip_matching)
        .auto_rollback(p.auto_rollback);
    if let Some(warmup) = p.instance_warmup {
        builder = builder.instance_warmup(warmup as i32);
    }
    if !p.alarms.is_empty() {
        builder = builder.alarm_specification(
            AlarmSpecification::builder()
                .set_alarms(Some(p.alarms.clone()))
                .build(),
        );
    }
    if !p.checkpoint_percentages.is_empty() {
        builder = builder.set_checkpoint_percentages(Some(
            p.checkpoint_percentages.iter().map(|c| *c as i32).collect(),
        ));
    }
    if let Some(delay) = p.checkpoint_delay {
        builder = builder.checkpoint_delay(delay as i32);
    }
    if let Some(bake) = p.bake_time {
        builder = builder.bake_time(bake as i32);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instance refresh status the SDK knows is recorded as AWS spells it, as the
    /// matching [`AsgStatus`] (not as an unknown one).
    #[test]
    fn instance_refresh_statuses_map_to_the_same_names() {
        for status in InstanceRefreshStatus::values() {
            let recorded = asg_status(&InstanceRefreshStatus::from(*status));
            assert_eq!(recorded.as_str(), *status);
            assert!(
                !matches!(recorded, AsgStatus::Other(_)),
                "{status} is not mapped"
            );
        }
        let later = asg_status(&InstanceRefreshStatus::from("Paused"));
        assert_eq!(later, AsgStatus::Other("Paused".into()));
        let none = InstanceRefresh::builder().build();
        assert_eq!(refresh_status(&none), AsgStatus::Pending);
    }
}
