//! The rollback policy's restore (`[rollout] rollback_scope`). RollbackInstanceRefresh acts
//! only on a refresh that is still in progress
//! (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RollbackInstanceRefresh.html>),
//! ("You can't roll it back after it's finished. You can, however, update your Auto Scaling
//! group again by starting a new instance refresh":
//! <https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-rollback.html>),
//! so a group this rollout already refreshed returns to the launch template version it had
//! before the rollout through a new StartInstanceRefresh whose DesiredConfiguration names
//! that version.
//!
//! `start` records that version (`previous_version`) the first time it refreshes a group;
//! the `rollback` action, after rolling back what is in flight, starts the restores of the
//! failed wave's finished groups (`wave`) or of every group the rollout refreshed
//! (`rollout`); `settle_rollbacks` follows them in the state machine's existing settle loop
//! and records `RolledBack` ("restored to launch template version N") or `RestoreFailed`.
//! Declared inside `refresher` (its private helpers are this module's too).

use aws_sdk_autoscaling::types::InstanceRefresh;
use generator::config::RollbackScope;
use generator::payload::{
    cap_names, AsgStatus, InFlightResponse, RefreshPreferences as Preferences,
};

use super::{refresh_status, running_and_ended, Refresher, TemplateRef};
use crate::error::Error;
use crate::fanout;
use crate::store::AsgRecord;

/// Whether the record is in the restore's hands: a start must not adopt the rollout's
/// earlier (finished) refresh of it as if the group were still on the new version.
pub(super) fn is_restore(current: &AsgStatus) -> bool {
    matches!(
        current,
        AsgStatus::Restoring | AsgStatus::RolledBack | AsgStatus::RestoreFailed
    )
}

/// The records `scope` returns to their previous version: groups whose refresh finished
/// (Successful) onto a version other than the one recorded before the rollout, of the failed
/// wave (`wave`: the last wave in which anything started) or of every wave (`rollout`).
pub(super) fn to_restore(records: &[AsgRecord], scope: RollbackScope) -> Vec<AsgRecord> {
    let failed_wave = records
        .iter()
        .filter(|r| !matches!(r.status, AsgStatus::Planned | AsgStatus::Skipped))
        .filter_map(|r| r.wave)
        .max();
    records
        .iter()
        .filter(|r| {
            let in_scope = match scope {
                RollbackScope::InFlight => false,
                RollbackScope::Wave => r.wave.is_some() && r.wave == failed_wave,
                RollbackScope::Rollout => true,
            };
            in_scope
                && r.status.is_successful()
                && r.refresh_id.is_some()
                && r.launch_template_id.is_some()
                && r.previous_version.is_some()
                && r.previous_version != r.launch_template_version
        })
        .cloned()
        .collect()
}

/// What the failed rollout's summary adds about restores (none: nothing was restored).
pub(super) fn note(records: &[AsgRecord]) -> Option<String> {
    let named = |wanted: AsgStatus| -> Vec<String> {
        records
            .iter()
            .filter(|r| r.status == wanted)
            .map(|r| r.asg.clone())
            .collect()
    };
    let mut out = String::new();
    for (wanted, what) in [
        (AsgStatus::RolledBack, "restored to their previous version"),
        (AsgStatus::Restoring, "still restoring"),
        (AsgStatus::RestoreFailed, "not restored"),
    ] {
        let names = named(wanted);
        if !names.is_empty() {
            out.push_str(&format!("; {what}: {}", cap_names(&names).join(", ")));
        }
    }
    (!out.is_empty()).then_some(out)
}

impl Refresher {
    /// Records on the record the numbered version the group is on now, the first time the
    /// rollout refreshes it (a re-run keeps the first). A group on `$Latest` or `$Default`
    /// is recorded with the number that alias names now.
    pub(super) async fn remember_previous(
        &self,
        record: &mut AsgRecord,
        template: &TemplateRef,
    ) -> Result<(), Error> {
        // A new refresh to the rollout's version: an earlier restore is history.
        record.restore_refresh_id = None;
        if record.previous_version.is_some() {
            return Ok(());
        }
        let version = if template.version.bytes().all(|b| b.is_ascii_digit()) {
            template.version.clone()
        } else if template.id.is_none() && template.name.is_none() {
            return Ok(());
        } else {
            let current = self.describe_version(&record.asg, template).await?;
            match current.and_then(|v| v.version_number()) {
                Some(number) => number.to_string(),
                None => return Ok(()),
            }
        };
        record.previous_version = Some(version);
        Ok(())
    }

    /// Starts the refreshes back to the previous version that `scope` asks for, and adds
    /// them to `response` (they are pending until `settle_restores` sees them end). A
    /// retried call counts the restores an earlier attempt started and starts no second one.
    pub(super) async fn restore(
        &self,
        rollout_id: &str,
        scope: RollbackScope,
        preferences: Option<&Preferences>,
        response: &mut InFlightResponse,
    ) -> Result<(), Error> {
        if scope == RollbackScope::InFlight {
            return Ok(());
        }
        let now = (self.clock)();
        let records = self.store.list(rollout_id).await?;
        let records = fanout::try_map_all(records, |record| self.catch_up(record, now)).await?;
        for record in &records {
            if record.status == AsgStatus::Restoring && record.restore_refresh_id.is_some() {
                response.acted_on.push(record.asg.clone());
                response.pending += 1;
            }
        }
        let todo = to_restore(&records, scope);
        let outcomes = fanout::map_all(todo, |record| {
            self.restore_one(rollout_id, record, preferences, now)
        })
        .await;
        let mut retry = None;
        for outcome in outcomes {
            match outcome {
                Ok(Ok(asg)) => {
                    response.acted_on.push(asg);
                    response.pending += 1;
                }
                Ok(Err(refused)) => response.refused.push(refused),
                Err(error @ Error::Retryable(_)) => retry = retry.or(Some(error)),
                Err(error) => return Err(error),
            }
        }
        tracing::info!(
            rollout = rollout_id,
            scope = scope.as_str(),
            pending = response.pending,
            "restores started"
        );
        match retry {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// A record the table still shows running (Pending, InProgress, Baking) after
    /// `in_flight`: AWS refused to roll its refresh back, which it does when the refresh
    /// has ended since the group was last checked. It is described again, so that one that
    /// ended Successful is recorded as such and restored with the others.
    async fn catch_up(&self, mut record: AsgRecord, now: i64) -> Result<AsgRecord, Error> {
        let stale = matches!(
            record.status,
            AsgStatus::Pending | AsgStatus::InProgress | AsgStatus::Baking
        );
        let Some(id) = record.refresh_id.clone().filter(|_| stale) else {
            return Ok(record);
        };
        if let Some(refresh) = self.describe_refresh(&record.asg, Some(&id)).await? {
            if refresh_status(&refresh).is_successful() {
                // The refusal `in_flight` recorded no longer says anything true.
                record.reason = None;
                self.apply(&mut record, &refresh, now);
                self.store.put(&record).await?;
                tracing::info!(asg = %record.asg, refresh = %id, "a refresh the rollback found running had finished");
            }
        }
        Ok(record)
    }

    /// Starts (or adopts, on a retry) one group's refresh back to its previous version;
    /// `Ok(Err(..))` when AWS refused it (recorded as `RestoreFailed`).
    async fn restore_one(
        &self,
        rollout_id: &str,
        mut record: AsgRecord,
        preferences: Option<&Preferences>,
        now: i64,
    ) -> Result<Result<String, String>, Error> {
        let asg = record.asg.clone();
        let (Some(template_id), Some(previous)) = (
            record.launch_template_id.clone(),
            record.previous_version.clone(),
        ) else {
            return Ok(Err(format!("{asg}: no previous version recorded")));
        };
        let ours = record.launch_template_version.clone().unwrap_or_default();
        let started = self
            .start_restore(rollout_id, &asg, &template_id, &previous, preferences)
            .await;
        match started {
            Ok(id) => {
                record.status = AsgStatus::Restoring;
                record.restore_refresh_id = Some(id.clone());
                record.percentage = None;
                record.reason = Some(format!(
                    "restoring launch template version {previous} (this rollout's was {ours}): the rollout failed"
                ));
                record.ended_at = None;
                record.updated_at = now;
                self.store.put(&record).await?;
                tracing::info!(asg, refresh = %id, version = %previous, "restoring the previous launch template version");
                Ok(Ok(asg))
            }
            Err(error @ Error::Retryable(_)) => Err(error),
            Err(error) => {
                record.status = AsgStatus::RestoreFailed;
                record.reason = Some(format!(
                    "could not restore launch template version {previous}: {error}"
                ));
                record.ended_at = Some(now);
                record.updated_at = now;
                self.store.put(&record).await?;
                Ok(Err(format!("{asg}: {error}")))
            }
        }
    }

    async fn start_restore(
        &self,
        rollout_id: &str,
        asg: &str,
        template_id: &str,
        previous: &str,
        preferences: Option<&Preferences>,
    ) -> Result<String, Error> {
        let template = self.template_of(asg).await?;
        self.start_refresh(
            rollout_id,
            asg,
            &template,
            (template_id, previous),
            preferences,
            &format!("restoring {asg}"),
        )
        .await
    }

    /// Describes every running restore and records where it is: the groups still
    /// restoring, and those whose restore ended.
    pub(super) async fn settle_restores(
        &self,
        rollout_id: &str,
        now: i64,
    ) -> Result<(Vec<String>, Vec<String>), Error> {
        let records = self.store.list(rollout_id).await?;
        let restoring = records
            .into_iter()
            .filter(|r| r.status == AsgStatus::Restoring && r.restore_refresh_id.is_some());
        let settled =
            fanout::try_map_all(restoring, |record| self.settle_restore(record, now)).await?;
        Ok(running_and_ended(settled))
    }

    async fn settle_restore(
        &self,
        mut record: AsgRecord,
        now: i64,
    ) -> Result<(String, bool), Error> {
        let asg = record.asg.clone();
        let id = record.restore_refresh_id.clone().unwrap_or_default();
        let previous = record.previous_version.clone().unwrap_or_default();
        let refresh = self.describe_refresh(&asg, Some(&id)).await?;
        let running = apply_restore(&mut record, refresh.as_ref(), &previous, now);
        self.store.put(&record).await?;
        Ok((asg, running))
    }
}

/// Copies a described restore into the record; whether it still runs.
fn apply_restore(
    record: &mut AsgRecord,
    refresh: Option<&InstanceRefresh>,
    previous: &str,
    now: i64,
) -> bool {
    record.updated_at = now;
    let Some(refresh) = refresh else {
        record.status = AsgStatus::RestoreFailed;
        record.reason = Some(format!(
            "the refresh back to launch template version {previous} is no longer listed"
        ));
        record.ended_at = Some(now);
        return false;
    };
    let current = refresh_status(refresh);
    record.percentage = refresh.percentage_complete().map(|p| p.max(0) as u32);
    if current.is_in_flight() {
        return true;
    }
    record.ended_at = refresh.end_time().map(|t| t.secs()).or(Some(now));
    if current.is_successful() {
        record.status = AsgStatus::RolledBack;
        record.reason = Some(format!("restored to launch template version {previous}"));
    } else {
        record.status = AsgStatus::RestoreFailed;
        record.reason = Some(format!(
            "the refresh back to launch template version {previous} ended {current}: {}",
            refresh.status_reason().unwrap_or("no reason given")
        ));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(asg: &str, wave: u32, current: AsgStatus, previous: Option<&str>) -> AsgRecord {
        AsgRecord {
            rollout_id: "r".into(),
            asg: asg.into(),
            wave: Some(wave),
            refresh_id: (current != AsgStatus::Planned).then(|| format!("refresh-{asg}")),
            status: current,
            launch_template_id: Some("lt-1".into()),
            launch_template_version: Some("2".into()),
            previous_version: previous.map(str::to_string),
            ..AsgRecord::default()
        }
    }

    fn names(records: Vec<AsgRecord>) -> Vec<String> {
        records.into_iter().map(|r| r.asg).collect()
    }

    #[test]
    fn each_scope_restores_its_finished_groups() {
        let records = vec![
            record("a", 0, AsgStatus::Successful, Some("1")),
            record("b", 0, AsgStatus::Successful, Some("1")),
            record("c", 1, AsgStatus::Successful, Some("1")),
            record("d", 1, AsgStatus::Failed, Some("1")),
            record("e", 1, AsgStatus::RollbackInProgress, Some("1")),
            // Already on the AMI before the rollout: nothing to restore.
            record("f", 1, AsgStatus::Successful, Some("2")),
            // Started before previous versions were recorded.
            record("g", 1, AsgStatus::Successful, None),
            record("h", 2, AsgStatus::Planned, None),
        ];
        assert!(to_restore(&records, RollbackScope::InFlight).is_empty());
        assert_eq!(names(to_restore(&records, RollbackScope::Wave)), ["c"]);
        assert_eq!(
            names(to_restore(&records, RollbackScope::Rollout)),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn a_restored_group_is_neither_restored_again_nor_adopted() {
        let records = vec![
            record("a", 0, AsgStatus::RolledBack, Some("1")),
            record("b", 0, AsgStatus::Restoring, Some("1")),
        ];
        assert!(to_restore(&records, RollbackScope::Rollout).is_empty());
        assert!(is_restore(&AsgStatus::RolledBack) && is_restore(&AsgStatus::Restoring));
        assert!(!is_restore(&AsgStatus::Successful));
        assert_eq!(
            note(&records).as_deref(),
            Some("; restored to their previous version: a; still restoring: b")
        );
    }

    #[test]
    fn a_restore_ends_rolled_back_or_failed() {
        let ended = |s: &str| {
            let refresh = InstanceRefresh::builder()
                .status(s.into())
                .status_reason("why")
                .build();
            let mut r = record("a", 0, AsgStatus::Restoring, Some("1"));
            let running = apply_restore(&mut r, Some(&refresh), "1", 7);
            (running, r.status, r.reason.unwrap_or_default())
        };
        assert_eq!(
            ended("Successful"),
            (
                false,
                AsgStatus::RolledBack,
                "restored to launch template version 1".to_string()
            )
        );
        assert!(ended("InProgress").0);
        let (running, failed, reason) = ended("Failed");
        assert!(!running);
        assert_eq!(failed, AsgStatus::RestoreFailed);
        assert!(reason.ends_with("ended Failed: why"), "{reason}");
        let mut r = record("a", 0, AsgStatus::Restoring, Some("1"));
        assert!(!apply_restore(&mut r, None, "1", 7));
        assert_eq!(r.status, AsgStatus::RestoreFailed);
    }
}
