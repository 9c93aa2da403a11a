//! `cargo xtask drift`: what differs from what the last rollout left. Every targeted ASG (the
//! stack's targets and each `[[targets.group]]`'s, resolved as the planner resolves them,
//! `runtime::planner::Planner::resolve_targets`) is
//! compared with its record in the newest rollout that refreshed at least one ASG: the launch
//! template version the rollout made and its AMI against the group's current version and that
//! version's AMI; and every instance of the group whose image is not the rollout's AMI is
//! listed (DescribeInstances). A table, or `--json`.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Args;
use generator::config::StackConfig;
use generator::names::Stack;
use generator::payload::TargetSpec;
use runtime::store::{AsgRecord, RolloutSummary, Store};
use serde::Serialize;

use crate::deploy::aws::{runtime, sdk_config, SdkResultExt};
use crate::env_file::{Endpoint, StackSelector};

#[derive(Args, Debug)]
pub struct DriftArgs {
    #[command(flatten)]
    pub stack: StackSelector,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// An instance still running another image than the rollout's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OldInstance {
    pub instance_id: String,
    pub ami: Option<String>,
}

/// One targeted ASG against the reference rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AsgDrift {
    pub asg: String,
    /// The launch template version the rollout left (None: it did not refresh this ASG).
    pub expected_version: Option<String>,
    pub expected_ami: String,
    pub current_version: Option<String>,
    pub current_ami: Option<String>,
    /// Why it differs, for people; empty when it does not.
    pub reasons: Vec<String>,
    pub instances_on_older_ami: Vec<OldInstance>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub stack: String,
    pub rollout_id: String,
    pub ami: String,
    /// ASGs that differ from what the rollout left, or run instances on an older AMI.
    pub drifted: Vec<AsgDrift>,
    /// ASGs as the rollout left them.
    pub in_sync: Vec<String>,
}

/// The group's launch template as it names it now.
pub(crate) struct Current {
    pub template_id: Option<String>,
    pub template_name: Option<String>,
    /// The version as the group names it (`$Default` when it names none).
    pub version: Option<String>,
    pub instances: Vec<String>,
}

impl DriftArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let (_, config) = self.stack.load()?;
        let report = runtime()?.block_on(report(&config, self.endpoint.url()))?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", render(&report));
        }
        Ok(())
    }
}

/// The newest rollout with at least one ASG refreshed (its summary, its records).
async fn reference(
    store: &Store,
    sfn: &aws_sdk_sfn::Client,
    stack: &Stack,
) -> anyhow::Result<Option<(RolloutSummary, Vec<AsgRecord>)>> {
    let mut pages = sfn
        .list_executions()
        .state_machine_arn(stack.state_machine_arn())
        .into_paginator()
        .items()
        .send();
    let mut executions = Vec::new();
    while let Some(item) = pages.next().await {
        match item {
            Ok(item) => executions.push(item),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_state_machine_does_not_exist()) =>
            {
                bail!(
                    "stack `{}` is not deployed (no state machine {}): run `cargo xtask deploy --env {}` first",
                    stack.env,
                    stack.state_machine(),
                    stack.env
                )
            }
            Err(e) => return Err(e).ctx("listing the rollouts"),
        }
    }
    executions.sort_by_key(|e| std::cmp::Reverse(e.start_date().secs()));
    let mut seen = std::collections::BTreeSet::new();
    for execution in executions {
        let described = sfn
            .describe_execution()
            .execution_arn(execution.execution_arn())
            .send()
            .await
            .ctx("reading a rollout's execution")?;
        let Some(id) = described
            .input()
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
            .and_then(|v| v["rollout_id"].as_str().map(str::to_string))
        else {
            continue;
        };
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(summary) = store.summary(&id).await? else {
            continue;
        };
        let records = store.list(&id).await?;
        if records.iter().any(|r| r.status.is_successful()) {
            return Ok(Some((summary, records)));
        }
    }
    Ok(None)
}

/// Compares every targeted ASG with the reference rollout.
pub async fn report(config: &StackConfig, endpoint_url: Option<&str>) -> anyhow::Result<Report> {
    let sdk = sdk_config(config, endpoint_url).await?;
    let stack = Stack::new(config);
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), stack.table());
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let Some((summary, records)) = reference(&store, &sfn, &stack).await? else {
        bail!(
            "no rollout has refreshed an ASG on stack `{}` yet, so there is nothing to compare with: start one with `cargo xtask rollout --env {} --ami <ami-id>`",
            stack.env,
            stack.env
        );
    };
    let planner = runtime::planner::Planner::new(&sdk, store.clone());
    let names = targeted(&planner, config).await?;
    let ec2 = &planner.ec2;
    let by_asg: BTreeMap<&str, &AsgRecord> = records.iter().map(|r| (r.asg.as_str(), r)).collect();
    let mut report = Report {
        stack: stack.env.clone(),
        rollout_id: summary.rollout_id.clone(),
        ami: summary.ami.clone(),
        drifted: Vec::new(),
        in_sync: Vec::new(),
    };
    let groups = current_groups(&planner.autoscaling, &names).await?;
    for name in names {
        let Some(current) = groups.get(&name) else {
            continue;
        };
        let (current_version, current_ami) = version_image(ec2, current).await?;
        let record = by_asg.get(name.as_str()).copied();
        let expected_version = record
            .filter(|r| r.status.is_successful())
            .and_then(|r| r.launch_template_version.clone());
        let old = older_instances(ec2, &current.instances, &summary.ami).await?;
        let reasons = reasons(
            &summary,
            record,
            current_version.as_deref(),
            current_ami.as_deref(),
            old.len(),
        );
        if reasons.is_empty() {
            report.in_sync.push(name);
        } else {
            report.drifted.push(AsgDrift {
                asg: name,
                expected_version,
                expected_ami: summary.ami.clone(),
                current_version,
                current_ami,
                reasons,
                instances_on_older_ami: old,
            });
        }
    }
    Ok(report)
}

/// The ASGs the stack targets now: its `[targets]` and, with `[[targets.group]]`, every
/// group's, resolved alike by the planner, in name order.
async fn targeted(
    planner: &runtime::planner::Planner,
    config: &StackConfig,
) -> anyhow::Result<Vec<String>> {
    let mut specs = Vec::new();
    if !config.targets.asgs.is_empty() || !config.targets.tags.is_empty() {
        specs.push(TargetSpec {
            asgs: config.targets.asgs.clone(),
            tags: config.targets.tags.clone(),
        });
    }
    specs.extend(config.targets.groups.iter().map(|g| TargetSpec {
        asgs: g.asgs.clone(),
        tags: g.tags.clone(),
    }));
    let mut found = BTreeMap::new();
    for targets in &specs {
        let (resolved, _missing) = planner
            .resolve_targets(targets)
            .await
            .map_err(|e| anyhow::anyhow!("resolving the targets: {e}"))?;
        found.extend(resolved);
    }
    Ok(found.into_keys().collect())
}

/// Why one ASG differs from what the reference rollout left (empty: it does not): not in
/// the rollout, not refreshed by it, on another launch template version than the refresh
/// left, launching another image, or running `older` instances on an older AMI.
fn reasons(
    summary: &RolloutSummary,
    record: Option<&AsgRecord>,
    current_version: Option<&str>,
    current_ami: Option<&str>,
    older: usize,
) -> Vec<String> {
    let mut reasons = Vec::new();
    match record {
        None => reasons.push(format!("not in rollout {}", summary.rollout_id)),
        Some(r) if !r.status.is_successful() => reasons.push(format!(
            "not refreshed by rollout {}: {}{}",
            summary.rollout_id,
            r.status,
            r.reason
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        )),
        Some(r) => {
            if let Some(expected) = r.launch_template_version.as_deref() {
                if current_version != Some(expected) {
                    reasons.push(format!(
                        "launch template version {} since the rollout left {expected}",
                        current_version.unwrap_or("unknown"),
                    ));
                }
            }
        }
    }
    if current_ami != Some(summary.ami.as_str()) {
        reasons.push(format!(
            "launches {} instead of {}",
            current_ami.unwrap_or("an unknown image"),
            summary.ami
        ));
    }
    if older > 0 {
        reasons.push(format!("{older} instance(s) on an older AMI"));
    }
    reasons
}

/// Each group's launch template (its own or its mixed instances policy's) and instances.
pub(crate) async fn current_groups(
    autoscaling: &aws_sdk_autoscaling::Client,
    names: &[String],
) -> anyhow::Result<BTreeMap<String, Current>> {
    let mut out = BTreeMap::new();
    for chunk in names.chunks(50) {
        let mut pages = autoscaling
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(chunk.to_vec()))
            .into_paginator()
            .items()
            .send();
        while let Some(group) = pages.next().await {
            let group = group.ctx("describing the targeted groups")?;
            let spec = group.launch_template().or_else(|| {
                group
                    .mixed_instances_policy()
                    .and_then(|m| m.launch_template())
                    .and_then(|lt| lt.launch_template_specification())
            });
            out.insert(
                group
                    .auto_scaling_group_name()
                    .unwrap_or_default()
                    .to_string(),
                Current {
                    template_id: spec.and_then(|s| s.launch_template_id().map(str::to_string)),
                    template_name: spec.and_then(|s| s.launch_template_name().map(str::to_string)),
                    version: spec.and_then(|s| s.version().map(str::to_string)),
                    instances: group
                        .instances()
                        .iter()
                        .filter_map(|i| i.instance_id().map(str::to_string))
                        .collect(),
                },
            );
        }
    }
    Ok(out)
}

/// The group's launch template version as a number (`$Latest`/`$Default` resolved) and its AMI.
pub(crate) async fn version_image(
    ec2: &aws_sdk_ec2::Client,
    current: &Current,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    if current.template_id.is_none() && current.template_name.is_none() {
        return Ok((None, None));
    }
    let out = ec2
        .describe_launch_template_versions()
        .set_launch_template_id(current.template_id.clone())
        .set_launch_template_name(if current.template_id.is_some() {
            None
        } else {
            current.template_name.clone()
        })
        .versions(current.version.as_deref().unwrap_or("$Default"))
        .send()
        .await
        .ctx("reading a launch template version")?;
    let Some(version) = out.launch_template_versions().first() else {
        return Ok((current.version.clone(), None));
    };
    Ok((
        version.version_number().map(|n| n.to_string()),
        version
            .launch_template_data()
            .and_then(|d| d.image_id())
            .map(str::to_string),
    ))
}

/// The instances whose image is not `ami`.
async fn older_instances(
    ec2: &aws_sdk_ec2::Client,
    ids: &[String],
    ami: &str,
) -> anyhow::Result<Vec<OldInstance>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(100) {
        let described = ec2
            .describe_instances()
            .set_instance_ids(Some(chunk.to_vec()))
            .send()
            .await
            .ctx("describing the groups' instances")?;
        for instance in described.reservations().iter().flat_map(|r| r.instances()) {
            if instance.image_id() != Some(ami) {
                out.push(OldInstance {
                    instance_id: instance.instance_id().unwrap_or_default().to_string(),
                    ami: instance.image_id().map(str::to_string),
                });
            }
        }
    }
    out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(out)
}

/// The report as a table.
pub fn render(report: &Report) -> String {
    let total = report.drifted.len() + report.in_sync.len();
    let mut out = format!(
        "stack `{}` against rollout {} ({}): {} of {total} targeted ASGs drifted\n",
        report.stack,
        report.rollout_id,
        report.ami,
        report.drifted.len()
    );
    if report.drifted.is_empty() {
        out.push_str("every targeted ASG is as the rollout left it\n");
        return out;
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    out.push_str(&format!(
        "{:<32} {:<30} {:<30} {}\n",
        "ASG", "expected (version / AMI)", "current (version / AMI)", "instances on older AMI"
    ));
    for asg in &report.drifted {
        let instances: Vec<String> = asg
            .instances_on_older_ami
            .iter()
            .map(|i| format!("{} ({})", i.instance_id, dash(&i.ami)))
            .collect();
        out.push_str(&format!(
            "{:<32} {:<30} {:<30} {}\n",
            asg.asg,
            format!("{} / {}", dash(&asg.expected_version), asg.expected_ami),
            format!(
                "{} / {}",
                dash(&asg.current_version),
                dash(&asg.current_ami)
            ),
            if instances.is_empty() {
                "-".to_string()
            } else {
                instances.join(", ")
            }
        ));
        out.push_str(&format!("{:<32} {}\n", "", asg.reasons.join("; ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use generator::payload::AsgStatus;

    use super::*;

    fn summary() -> RolloutSummary {
        RolloutSummary {
            rollout_id: "r-1".into(),
            ami: "ami-new".into(),
            ..RolloutSummary::default()
        }
    }

    fn record(status: AsgStatus, version: Option<&str>, reason: Option<&str>) -> AsgRecord {
        AsgRecord {
            asg: "web-1".into(),
            status,
            launch_template_version: version.map(str::to_string),
            reason: reason.map(str::to_string),
            ..AsgRecord::default()
        }
    }

    #[test]
    fn a_group_as_the_rollout_left_it_has_no_reason() {
        let refreshed = record(AsgStatus::Successful, Some("7"), None);
        let reasons = reasons(&summary(), Some(&refreshed), Some("7"), Some("ami-new"), 0);
        assert!(reasons.is_empty(), "{reasons:?}");
    }

    #[test]
    fn each_difference_is_a_reason_of_its_own() {
        let refreshed = record(AsgStatus::Successful, Some("7"), None);
        assert_eq!(
            reasons(&summary(), Some(&refreshed), Some("8"), Some("ami-old"), 2),
            [
                "launch template version 8 since the rollout left 7",
                "launches ami-old instead of ami-new",
                "2 instance(s) on an older AMI",
            ]
        );
        assert_eq!(
            reasons(&summary(), Some(&refreshed), None, None, 0),
            [
                "launch template version unknown since the rollout left 7",
                "launches an unknown image instead of ami-new",
            ]
        );
    }

    #[test]
    fn a_group_the_rollout_did_not_refresh_says_why() {
        assert_eq!(
            reasons(&summary(), None, Some("3"), Some("ami-new"), 0),
            ["not in rollout r-1"]
        );
        let skipped = record(AsgStatus::Skipped, None, Some("desired capacity is 0"));
        assert_eq!(
            reasons(&summary(), Some(&skipped), Some("3"), Some("ami-new"), 0),
            ["not refreshed by rollout r-1: Skipped (desired capacity is 0)"]
        );
        // A refresh that recorded no version: only the image is compared.
        let unversioned = record(AsgStatus::Successful, None, None);
        assert!(reasons(
            &summary(),
            Some(&unversioned),
            Some("3"),
            Some("ami-new"),
            0
        )
        .is_empty());
    }
}
