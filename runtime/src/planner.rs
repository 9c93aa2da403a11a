//! The planner: resolves targets from names and tags, runs the pre-checks (missing,
//! capacity 0, unhealthy or empty target groups), orders the canary first, splits into
//! waves (group after group with `[[targets.group]]`, see [`generator::groups`]), records
//! the plan and takes the stack lock.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter, MixedInstancesPolicy};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use generator::payload::{AsgStatus, PlanRequest, PlanResponse, TargetSpec};
use generator::waves;

use crate::error::{classify, Error};
use crate::fanout;
use crate::history;
use crate::store::{AsgRecord, RolloutStatus, RolloutSummary, Store};
use crate::wave_store;
use crate::{validate_ami, validate_rollout_id, Clock};

/// Most groups one page of DescribeAutoScalingGroups holds.
pub(crate) const GROUPS_PER_PAGE: i32 = 100;

/// Most names DescribeAutoScalingGroups accepts in one call.
const NAMES_PER_CALL: usize = 50;

/// What the planner needs: clients built once per process, and the clock.
pub struct Planner {
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// Launch template versions, the AMI and instance types.
    pub ec2: aws_sdk_ec2::Client,
    /// Instance profiles, for the roles a refresh passes to EC2.
    pub iam: aws_sdk_iam::Client,
    pub store: Store,
    pub clock: Clock,
}

/// An ASG found by name or tag, as the pre-checks see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub desired_capacity: i32,
    pub target_groups: Vec<String>,
    pub has_launch_template: bool,
    /// The launch template the group launches from (its own, or its mixed instances
    /// policy's), as the group names it.
    pub template: Option<TemplateSpec>,
    /// The group's mixed instances policy, when it has one (Spot fleets).
    pub mixed: Option<MixedInstancesPolicy>,
}

/// A launch template as a group refers to it: by id or name, and a version that may be
/// `$Latest` or `$Default`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TemplateSpec {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: String,
}

impl Candidate {
    fn from_group(group: &AutoScalingGroup) -> Option<Self> {
        let mixed = group.mixed_instances_policy().cloned();
        let spec = group.launch_template().or_else(|| {
            mixed
                .as_ref()
                .and_then(|m| m.launch_template())
                .and_then(|lt| lt.launch_template_specification())
        });
        let template = spec
            .filter(|lt| lt.launch_template_id().is_some() || lt.launch_template_name().is_some())
            .map(|lt| TemplateSpec {
                id: lt.launch_template_id().map(str::to_string),
                name: lt.launch_template_name().map(str::to_string),
                version: lt.version().unwrap_or("$Default").to_string(),
            });
        Some(Self {
            name: group.auto_scaling_group_name()?.to_string(),
            desired_capacity: group.desired_capacity().unwrap_or_default(),
            target_groups: group.target_group_arns().to_vec(),
            has_launch_template: template.is_some(),
            template,
            mixed,
        })
    }
}

impl Planner {
    /// The planner with its clients built from `config`, on `store`, on the system clock.
    pub fn new(config: &aws_config::SdkConfig, store: Store) -> Self {
        Self {
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            store,
            clock: crate::system_clock(),
        }
    }

    pub async fn handle(&self, request: PlanRequest) -> Result<PlanResponse, Error> {
        validate_rollout_id(&request.rollout_id)?;
        validate_ami(&request.ami)?;
        if request.batch_size == 0 {
            return Err(Error::InvalidInput("batch_size must be at least 1".into()));
        }
        let now = (self.clock)();
        self.store.acquire_lock(&request.rollout_id, now).await?;
        // A re-run starts refreshes again: forget an earlier run's stop.
        self.store.clear_stop(&request.rollout_id).await?;
        // With groups, which group each ASG found belongs to (by index).
        let (found, missing, group_of) = if request.groups.is_empty() {
            let (found, missing) = self.resolve(&request).await?;
            (found, missing, BTreeMap::new())
        } else {
            self.resolve_groups(&request).await?
        };
        let (mut eligible, mut skipped) = self.pre_checks(&found, &missing).await?;
        // A re-run leaves out what an earlier run of this rollout already refreshed.
        let already_done = self.already_refreshed(&request.rollout_id).await?;
        eligible.retain(|asg| !already_done.contains(asg));
        // Before any version is made: leave out what AWS would refuse, check the AMI, pin
        // groups on `$Latest`/`$Default` to numbered versions (crate::shapes).
        let prepared = self
            .prepare(&request, &found, &mut eligible, &mut skipped)
            .await?;
        // Canary first, then the longest refreshes of the previous rollout first, then by
        // name: the same fleet and history always give the same plan (crate::history).
        let durations = history::previous_durations(&self.store, &request.rollout_id).await?;
        history::longest_first(&mut eligible, &durations);
        let plan_waves = split_waves(&request, &eligible, &group_of);
        let wave_count = plan_waves.len() as u64;
        if wave_count > request.max_waves {
            return Err(Error::InvalidInput(format!(
                "the plan has {wave_count} waves but one execution fits at most {}: raise batch_size or use strategy = \"window\"",
                request.max_waves
            )));
        }
        let records = plan_records(&request, &plan_waves, &skipped, &group_of, now);
        let planned: u32 = plan_waves.iter().map(|w| w.asgs.len() as u32).sum();
        let summary = RolloutSummary {
            rollout_id: request.rollout_id.clone(),
            ami: request.ami.clone(),
            status: RolloutStatus::Running,
            planned,
            skipped: skipped.len() as u32,
            waves: plan_waves.len() as u32,
            started_at: now,
            ended_at: None,
            message: None,
            warnings: prepared.warnings.clone(),
        };
        self.record_plan(&records, &prepared, &plan_waves, summary, now)
            .await?;
        tracing::info!(
            rollout = %request.rollout_id,
            planned,
            skipped = skipped.len(),
            already_done = already_done.len(),
            waves = plan_waves.len(),
            "planned"
        );
        notify_started(&request, &plan_waves, skipped.len() as u32).await;
        Ok(PlanResponse {
            rollout_id: request.rollout_id,
            wave_count: plan_waves.len() as u32,
            last_wave: plan_waves.len() as i64 - 1,
            planned,
            skipped: skipped.len() as u32,
            missing: missing.len() as u32,
        })
    }

    /// Runs the pre-checks on every ASG found: those that pass, and those skipped (with
    /// why), the names that found no ASG first.
    async fn pre_checks(
        &self,
        found: &BTreeMap<String, Candidate>,
        missing: &[String],
    ) -> Result<(Vec<String>, Vec<(String, String)>), Error> {
        let mut eligible = Vec::new();
        let mut skipped: Vec<(String, String)> = missing
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    "no Auto Scaling group has this name".to_string(),
                )
            })
            .collect();
        let checks = fanout::try_map_all(found.values(), |candidate| async move {
            self.pre_check(candidate)
                .await
                .map(|reason| (candidate.name.clone(), reason))
        })
        .await?;
        for (name, reason) in checks {
            match reason {
                None => eligible.push(name),
                Some(reason) => skipped.push((name, reason)),
            }
        }
        Ok((eligible, skipped))
    }

    /// The ASGs an earlier run of this rollout refreshed.
    async fn already_refreshed(&self, rollout_id: &str) -> Result<BTreeSet<String>, Error> {
        Ok(self
            .store
            .list(rollout_id)
            .await?
            .into_iter()
            .filter(|r| r.status.is_successful())
            .map(|r| r.asg)
            .collect())
    }

    /// Writes the plan: each ASG's record (an existing one keeps its progress: a failed ASG
    /// is retried by start), the pins, the waves and the summary (a re-run keeps when the
    /// rollout first started).
    async fn record_plan(
        &self,
        records: &[AsgRecord],
        prepared: &crate::shapes::Prepared,
        plan_waves: &[waves::Wave],
        mut summary: RolloutSummary,
        now: i64,
    ) -> Result<(), Error> {
        let rollout_id = summary.rollout_id.clone();
        fanout::try_map_all(records, |record| self.store.insert(record)).await?;
        self.record_pins(&rollout_id, &prepared.pins).await?;
        // The waves live in the table: the state machine gets counts, each wave's Map
        // positions, and each child its ASG's name from here (crate::wave_store).
        wave_store::put_plan(&self.store, &rollout_id, plan_waves, now).await?;
        if let Some(earlier) = self.store.summary(&rollout_id).await? {
            summary.started_at = earlier.started_at;
        }
        self.store.put_summary(&summary, now).await
    }

    /// ASGs named explicitly plus those carrying every tag; names that do not exist.
    pub async fn resolve(
        &self,
        request: &PlanRequest,
    ) -> Result<(BTreeMap<String, Candidate>, Vec<String>), Error> {
        self.resolve_targets(&request.targets).await
    }

    /// Each group's ASGs ([`Self::resolve_targets`]), and the group (index) of each. An ASG
    /// two groups select, a group that selects no ASG, and a canary outside the first group
    /// are errors naming them (see [`generator::groups`]).
    #[allow(clippy::type_complexity)]
    pub async fn resolve_groups(
        &self,
        request: &PlanRequest,
    ) -> Result<
        (
            BTreeMap<String, Candidate>,
            Vec<String>,
            BTreeMap<String, usize>,
        ),
        Error,
    > {
        let mut found = BTreeMap::new();
        let mut missing = Vec::new();
        let mut group_of: BTreeMap<String, usize> = BTreeMap::new();
        for (i, group) in request.groups.iter().enumerate() {
            let (group_found, group_missing) = self.resolve_targets(&group.targets).await?;
            if group_found.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "group `{}` matches no Auto Scaling group: none of its {} name(s) exists and no group carries its tags",
                    group.name,
                    group.targets.asgs.len()
                )));
            }
            for (name, candidate) in group_found {
                if let Some(other) = group_of.insert(name.clone(), i) {
                    return Err(Error::InvalidInput(format!(
                        "`{name}` is selected by groups `{}` and `{}`: an ASG belongs to one group (change the names or tags of one of them)",
                        request.groups[other].name, group.name
                    )));
                }
                found.insert(name, candidate);
            }
            missing.extend(group_missing);
        }
        for name in &request.canary {
            if let Some(i) = group_of.get(name).filter(|i| **i != 0) {
                return Err(Error::InvalidInput(format!(
                    "canary `{name}` is in group `{}`: canary ASGs must belong to the first group `{}`",
                    request.groups[*i].name, request.groups[0].name
                )));
            }
        }
        Ok((found, missing, group_of))
    }

    /// ASGs named in `targets` plus those carrying every tag; names that do not exist.
    pub async fn resolve_targets(
        &self,
        targets: &TargetSpec,
    ) -> Result<(BTreeMap<String, Candidate>, Vec<String>), Error> {
        let mut found = BTreeMap::new();
        for chunk in targets.asgs.chunks(NAMES_PER_CALL) {
            let groups = self.describe(Some(chunk.to_vec()), Vec::new()).await?;
            for group in groups {
                found.insert(group.name.clone(), group);
            }
        }
        let missing: Vec<String> = targets
            .asgs
            .iter()
            .filter(|name| !found.contains_key(*name))
            .cloned()
            .collect();
        if !targets.tags.is_empty() {
            let filters = targets
                .tags
                .iter()
                .map(|(key, value)| {
                    Filter::builder()
                        .name(format!("tag:{key}"))
                        .values(value)
                        .build()
                })
                .collect();
            for group in self.describe(None, filters).await? {
                found.insert(group.name.clone(), group);
            }
        }
        Ok((found, missing))
    }

    async fn describe(
        &self,
        names: Option<Vec<String>>,
        filters: Vec<Filter>,
    ) -> Result<Vec<Candidate>, Error> {
        // 100 groups a page, the most AWS gives (the default is 50): half the calls at 2,000 groups.
        let mut request = self
            .autoscaling
            .describe_auto_scaling_groups()
            .max_records(GROUPS_PER_PAGE)
            .set_auto_scaling_group_names(names);
        if !filters.is_empty() {
            request = request.set_filters(Some(filters));
        }
        let mut pages = request.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("describing Auto Scaling groups", e))?;
            out.extend(
                page.auto_scaling_groups()
                    .iter()
                    .filter_map(Candidate::from_group),
            );
        }
        Ok(out)
    }

    /// Why an ASG cannot be refreshed now, or None when it can.
    pub async fn pre_check(&self, candidate: &Candidate) -> Result<Option<String>, Error> {
        if candidate.desired_capacity == 0 {
            return Ok(Some("desired capacity is 0".into()));
        }
        if !candidate.has_launch_template {
            return Ok(Some(
                "has no launch template (launch configurations are not supported)".into(),
            ));
        }
        for arn in &candidate.target_groups {
            let health = self
                .elb
                .describe_target_health()
                .target_group_arn(arn)
                .send()
                .await
                .map_err(|e| classify(&format!("describing target health of {arn}"), e))?;
            let targets = health.target_health_descriptions();
            if targets.is_empty() {
                return Ok(Some(format!(
                    "target group {} has no registered targets",
                    short_arn(arn)
                )));
            }
            let unhealthy = targets
                .iter()
                .filter(|t| {
                    t.target_health().and_then(|h| h.state())
                        != Some(&TargetHealthStateEnum::Healthy)
                })
                .count();
            if unhealthy > 0 {
                return Ok(Some(format!(
                    "target group {}: {unhealthy} of {} targets are not healthy",
                    short_arn(arn),
                    targets.len()
                )));
            }
        }
        Ok(None)
    }
}

/// `targetgroup/name/id` from a target group ARN, for messages.
fn short_arn(arn: &str) -> &str {
    arn.rsplit_once(':').map_or(arn, |(_, tail)| tail)
}

/// The waves of the plan: `eligible` (in order) split by the strategy, or group after
/// group when the stack has groups (`group_of`: each ASG's group by index).
fn split_waves(
    request: &PlanRequest,
    eligible: &[String],
    group_of: &BTreeMap<String, usize>,
) -> Vec<waves::Wave> {
    if request.groups.is_empty() {
        return waves::split(
            eligible,
            &request.canary,
            request.strategy,
            request.batch_size,
        )
        .into_iter()
        .map(|asgs| waves::Wave {
            asgs,
            group: None,
            batch_size: request.batch_size,
        })
        .collect();
    }
    let members: Vec<waves::GroupMembers> = request
        .groups
        .iter()
        .enumerate()
        .map(|(i, group)| waves::GroupMembers {
            name: group.name.clone(),
            batch_size: group.batch_size,
            asgs: eligible
                .iter()
                .filter(|asg| group_of.get(*asg) == Some(&i))
                .cloned()
                .collect(),
        })
        .collect();
    waves::split_groups(&members, &request.canary, request.strategy)
}

/// One record per planned ASG (with its wave and group), then one per skipped ASG (with
/// why, and its group when it has one).
fn plan_records(
    request: &PlanRequest,
    plan_waves: &[waves::Wave],
    skipped: &[(String, String)],
    group_of: &BTreeMap<String, usize>,
    now: i64,
) -> Vec<AsgRecord> {
    let record = |asg: &str, status: AsgStatus| AsgRecord {
        rollout_id: request.rollout_id.clone(),
        asg: asg.to_string(),
        status,
        ami: Some(request.ami.clone()),
        updated_at: now,
        ..AsgRecord::default()
    };
    let planned = plan_waves.iter().enumerate().flat_map(|(index, wave)| {
        wave.asgs.iter().map(move |asg| AsgRecord {
            wave: Some(index as u32),
            group: wave.group.clone(),
            ..record(asg, AsgStatus::Planned)
        })
    });
    let skipped = skipped.iter().map(|(asg, reason)| AsgRecord {
        reason: Some(reason.clone()),
        group: group_of
            .get(asg)
            .and_then(|i| request.groups.get(*i))
            .map(|g| g.name.clone()),
        ..record(asg, AsgStatus::Skipped)
    });
    planned.chain(skipped).collect()
}

/// Says the rollout started, with its waves (`[notify]`): best effort, never fails the
/// plan (crate::notify).
async fn notify_started(request: &PlanRequest, plan_waves: &[waves::Wave], skipped: u32) {
    if let Some(notifier) = crate::notify::notifier().await {
        let waves: Vec<&[String]> = plan_waves.iter().map(|w| w.asgs.as_slice()).collect();
        let started = crate::notify::Notification::started(
            &notifier.stack,
            &request.rollout_id,
            &request.ami,
            &waves,
            skipped,
        );
        notifier.send(&started).await;
    }
}
