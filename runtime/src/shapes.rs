//! The planner's checks of group shapes, before any launch template version is made:
//! groups AWS would refuse to refresh are left out with a reason (an SSM-parameter ImageId
//! under `auto_rollback`, an instance profile role the stack may not pass, per-override
//! launch templates), the AMI must exist, be available and suit every group's instance
//! types, groups on `$Latest`/`$Default` are pinned to the numbered version they run, and
//! groups outside the plan that follow `$Latest` of a template the rollout versions are
//! named as warnings. The AMI check is in `image_check.rs`.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_autoscaling::types::{
    LaunchTemplate, LaunchTemplateSpecification, MixedInstancesPolicy,
};
use generator::payload::PlanRequest;

use crate::error::{classify, Error};
use crate::fanout;
use crate::planner::{Candidate, Planner, TemplateSpec};

/// Most group names one message lists.
const NAMES_IN_MESSAGE: usize = 20;
/// The prefix of an ImageId that names an SSM parameter.
const SSM_PREFIX: &str = "resolve:ssm:";

/// A group the planner pinned from `$Latest`/`$Default` to a numbered version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub asg: String,
    pub from: String,
    pub version: String,
}

/// What [`Planner::prepare`] leaves for the rest of the plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prepared {
    pub pins: Vec<Pin>,
    pub warnings: Vec<String>,
}

/// What the planner reads of the launch template version a group runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateData {
    pub template_id: String,
    pub template_name: Option<String>,
    pub version_number: i64,
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    /// The instance profile's name (taken from its ARN when the template gives one).
    pub instance_profile: Option<String>,
}

/// An instance profile's role: its name and path.
#[derive(Debug, Clone, PartialEq)]
struct ProfileRole {
    name: String,
    path: String,
}

/// `$Latest` or `$Default`: versions AWS cannot roll back to.
pub fn is_floating(version: &str) -> bool {
    version == "$Latest" || version == "$Default"
}

/// The instance profile name in `arn:aws:iam::<account>:instance-profile/<path>/<name>`.
fn profile_name_of_arn(arn: &str) -> &str {
    arn.rsplit_once('/').map_or(arn, |(_, name)| name)
}

/// The group's mixed instances policy with the launch template version replaced (and the
/// template named by id): what pinning and the refresh's desired configuration carry.
pub fn with_version(
    policy: &MixedInstancesPolicy,
    template_id: &str,
    version: &str,
) -> MixedInstancesPolicy {
    let spec = LaunchTemplateSpecification::builder()
        .launch_template_id(template_id)
        .version(version)
        .build();
    let template = match policy.launch_template() {
        Some(lt) => LaunchTemplate::builder()
            .launch_template_specification(spec)
            .set_overrides(Some(lt.overrides().to_vec()))
            .build(),
        None => LaunchTemplate::builder()
            .launch_template_specification(spec)
            .build(),
    };
    let mut out = MixedInstancesPolicy::builder().launch_template(template);
    if let Some(distribution) = policy.instances_distribution() {
        out = out.instances_distribution(distribution.clone());
    }
    out.build()
}

/// Why a group's mixed instances policy cannot take a new version of its template: an
/// override with its own launch template or ImageId would keep the old image.
fn override_problem(candidate: &Candidate) -> Option<String> {
    let overrides = candidate.mixed.as_ref()?.launch_template()?.overrides();
    if overrides
        .iter()
        .any(|o| o.launch_template_specification().is_some())
    {
        return Some("its mixed instances policy gives some instance types their own launch template, which this rollout does not version".into());
    }
    if overrides.iter().any(|o| o.image_id().is_some()) {
        return Some("its mixed instances policy overrides the ImageId per instance type, which this rollout does not change".into());
    }
    None
}

/// The instance types a group launches: its overrides', else its template's.
pub(crate) fn instance_types(candidate: &Candidate, data: &TemplateData) -> Vec<String> {
    let overrides: Vec<String> = candidate
        .mixed
        .as_ref()
        .and_then(|m| m.launch_template())
        .map(|lt| {
            lt.overrides()
                .iter()
                .filter_map(|o| o.instance_type().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if overrides.is_empty() {
        data.instance_type.iter().cloned().collect()
    } else {
        overrides
    }
}

/// Names for a message: the first few, then how many more.
pub(crate) fn listed(names: &[String]) -> String {
    if names.len() <= NAMES_IN_MESSAGE {
        return names.join(", ");
    }
    format!(
        "{} and {} more",
        names[..NAMES_IN_MESSAGE].join(", "),
        names.len() - NAMES_IN_MESSAGE
    )
}

impl Planner {
    /// Runs every shape check on the eligible groups (moving those left out to `skipped`),
    /// checks the AMI, pins the groups on `$Latest`/`$Default` and lists the warnings.
    pub async fn prepare(
        &self,
        request: &PlanRequest,
        found: &BTreeMap<String, Candidate>,
        eligible: &mut Vec<String>,
        skipped: &mut Vec<(String, String)>,
    ) -> Result<Prepared, Error> {
        let (mut kept, shaped) = self
            .shape_checked(request, found, eligible, skipped)
            .await?;
        if !shaped.is_empty() {
            self.check_image(&request.ami, &shaped).await?;
        }
        let pins = self.pin_floating(&shaped, &mut kept, skipped).await?;
        *eligible = kept;
        let warnings = self.followers_of_latest(eligible, &shaped).await?;
        for pin in &pins {
            tracing::info!(asg = %pin.asg, from = %pin.from, version = %pin.version, "pinned to a numbered launch template version");
        }
        for warning in &warnings {
            tracing::warn!(rollout = %request.rollout_id, "{warning}");
        }
        Ok(Prepared { pins, warnings })
    }

    /// Reads the launch template version and instance profile role of each eligible group
    /// and sorts the groups (draining `eligible`): those AWS would refresh, in order, with
    /// their template data; the others go to `skipped` with why.
    async fn shape_checked<'a>(
        &self,
        request: &PlanRequest,
        found: &'a BTreeMap<String, Candidate>,
        eligible: &mut Vec<String>,
        skipped: &mut Vec<(String, String)>,
    ) -> Result<(Vec<String>, Vec<(&'a Candidate, TemplateData)>), Error> {
        let specs: BTreeSet<TemplateSpec> = eligible
            .iter()
            .filter_map(|asg| found.get(asg).and_then(|c| c.template.clone()))
            .collect();
        let templates = self.read_templates(specs.into_iter().collect()).await?;
        let profiles: BTreeSet<String> = templates
            .values()
            .filter_map(|t| t.as_ref().ok().and_then(|d| d.instance_profile.clone()))
            .collect();
        let roles = self.read_profiles(profiles.into_iter().collect()).await?;
        let mut kept = Vec::new();
        let mut shaped: Vec<(&Candidate, TemplateData)> = Vec::new();
        for asg in eligible.drain(..) {
            let Some(candidate) = found.get(&asg) else {
                continue;
            };
            let data = candidate
                .template
                .as_ref()
                .and_then(|spec| templates.get(spec));
            let reason = match data {
                None => Some(
                    "has no launch template (launch configurations are not supported)".to_string(),
                ),
                Some(Err(reason)) => Some(reason.clone()),
                Some(Ok(data)) => self.shape_problem(request, candidate, data, &roles),
            };
            match (reason, data) {
                (Some(reason), _) => skipped.push((asg, reason)),
                (None, Some(Ok(data))) => {
                    shaped.push((candidate, data.clone()));
                    kept.push(asg);
                }
                (None, _) => skipped.push((asg, "its launch template could not be read".into())),
            }
        }
        Ok((kept, shaped))
    }

    /// Pins the groups on `$Latest`/`$Default` to the numbered version they run, side by side
    /// (bounded): one UpdateAutoScalingGroup per floating group. A group that cannot be
    /// pinned moves from `kept` to `skipped` with why; a retryable failure fails the plan.
    async fn pin_floating(
        &self,
        shaped: &[(&Candidate, TemplateData)],
        kept: &mut Vec<String>,
        skipped: &mut Vec<(String, String)>,
    ) -> Result<Vec<Pin>, Error> {
        let floating: Vec<(&Candidate, &TemplateData, &TemplateSpec)> = shaped
            .iter()
            .filter_map(|(c, d)| {
                c.template
                    .as_ref()
                    .filter(|s| is_floating(&s.version))
                    .map(|s| (*c, d, s))
            })
            .collect();
        let autoscaling = self.autoscaling.clone();
        let requests: Vec<(String, Option<MixedInstancesPolicy>, String, String)> = floating
            .iter()
            .map(|(c, d, _)| {
                (
                    c.name.clone(),
                    c.mixed.clone(),
                    d.template_id.clone(),
                    d.version_number.to_string(),
                )
            })
            .collect();
        let results = fanout::map_all(requests, move |(asg, mixed, template_id, version)| {
            pin(autoscaling.clone(), asg, mixed, template_id, version)
        })
        .await;
        let mut pins = Vec::new();
        for ((candidate, data, spec), result) in floating.into_iter().zip(results) {
            match result {
                Ok(()) => pins.push(Pin {
                    asg: candidate.name.clone(),
                    from: spec.version.clone(),
                    version: data.version_number.to_string(),
                }),
                Err(Error::Retryable(message)) => return Err(Error::Retryable(message)),
                Err(error) => {
                    kept.retain(|asg| asg != &candidate.name);
                    skipped.push((
                        candidate.name.clone(),
                        format!(
                            "could not pin it from {} to version {}: {error}",
                            spec.version, data.version_number
                        ),
                    ));
                }
            }
        }
        Ok(pins)
    }

    /// Records each pin on the group's planned record.
    pub async fn record_pins(&self, rollout_id: &str, pins: &[Pin]) -> Result<(), Error> {
        fanout::try_map_all(pins, |pin| {
            self.store
                .record_pin(rollout_id, &pin.asg, &pin.from, &pin.version)
        })
        .await?;
        Ok(())
    }

    /// Why a group whose template version was read cannot be refreshed, or None.
    fn shape_problem(
        &self,
        request: &PlanRequest,
        candidate: &Candidate,
        data: &TemplateData,
        roles: &BTreeMap<String, Result<Option<ProfileRole>, String>>,
    ) -> Option<String> {
        if let Some(problem) = override_problem(candidate) {
            return Some(problem);
        }
        if let Some(image) = data
            .image_id
            .as_deref()
            .filter(|i| i.starts_with(SSM_PREFIX))
        {
            if request.auto_rollback {
                return Some(format!(
                    "its launch template's ImageId is an SSM parameter ({image}) and AWS cannot roll such a group back: set [refresh] auto_rollback = false to refresh it without rollback"
                ));
            }
        }
        let profile = data.instance_profile.as_ref()?;
        match roles.get(profile) {
            Some(Ok(Some(role))) if request.instance_roles.contains(&role.name) && role.path == "/" => None,
            Some(Ok(Some(role))) if request.instance_roles.contains(&role.name) => Some(format!(
                "instance profile {profile} has role {} with path {}: [refresh] instance_roles covers roles without a path only",
                role.name, role.path
            )),
            Some(Ok(Some(role))) => Some(format!(
                "instance profile {profile} has role {}, which this stack may not pass to EC2: add it to [refresh] instance_roles and deploy",
                role.name
            )),
            Some(Ok(None)) => None,
            Some(Err(reason)) => Some(reason.clone()),
            None => Some(format!("instance profile {profile} could not be read")),
        }
    }

    /// The launch template version of each spec, or why it cannot be read.
    async fn read_templates(
        &self,
        specs: Vec<TemplateSpec>,
    ) -> Result<BTreeMap<TemplateSpec, Result<TemplateData, String>>, Error> {
        let ec2 = self.ec2.clone();
        let results =
            fanout::map_all(specs.clone(), move |spec| read_template(ec2.clone(), spec)).await;
        let mut out = BTreeMap::new();
        for (spec, result) in specs.into_iter().zip(results) {
            let result = match result {
                Ok(data) => Ok(data),
                Err(Error::Retryable(message)) => return Err(Error::Retryable(message)),
                Err(error) => Err(format!("its launch template could not be read: {error}")),
            };
            out.insert(spec, result);
        }
        Ok(out)
    }

    /// Each instance profile's role (None when it has none), or why it cannot be read.
    async fn read_profiles(
        &self,
        names: Vec<String>,
    ) -> Result<BTreeMap<String, Result<Option<ProfileRole>, String>>, Error> {
        let iam = self.iam.clone();
        let results = fanout::map_all(names.clone(), move |name| {
            let iam = iam.clone();
            async move {
                let out = iam
                    .get_instance_profile()
                    .instance_profile_name(&name)
                    .send()
                    .await;
                match out {
                    Ok(out) => {
                        Ok(out
                            .instance_profile()
                            .and_then(|p| p.roles().first())
                            .map(|r| ProfileRole {
                                name: r.role_name().to_string(),
                                path: r.path().to_string(),
                            }))
                    }
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_no_such_entity_exception()) =>
                    {
                        Err(Error::InvalidInput(format!(
                            "instance profile {name} does not exist"
                        )))
                    }
                    Err(e) => Err(classify(&format!("reading instance profile {name}"), e)),
                }
            }
        })
        .await;
        let mut out = BTreeMap::new();
        for (name, result) in names.into_iter().zip(results) {
            let result = match result {
                Ok(role) => Ok(role),
                Err(Error::Retryable(message)) => return Err(Error::Retryable(message)),
                Err(error) => Err(error.to_string()),
            };
            out.insert(name, result);
        }
        Ok(out)
    }

    /// Groups this rollout does not refresh that follow `$Latest` of a template it
    /// versions: they launch the new AMI on scale-out as soon as the version exists.
    /// (`$Default` followers are safe: a new version does not change the default.)
    async fn followers_of_latest(
        &self,
        planned: &[String],
        shaped: &[(&Candidate, TemplateData)],
    ) -> Result<Vec<String>, Error> {
        let planned: BTreeSet<&String> = planned.iter().collect();
        let mut versioned: BTreeMap<String, String> = BTreeMap::new();
        for (_, data) in shaped.iter().filter(|(c, _)| planned.contains(&c.name)) {
            let label = data
                .template_name
                .clone()
                .unwrap_or_else(|| data.template_id.clone());
            versioned.insert(data.template_id.clone(), label.clone());
            if let Some(name) = &data.template_name {
                versioned.insert(name.clone(), label);
            }
        }
        if versioned.is_empty() {
            return Ok(Vec::new());
        }
        let mut pages = self
            .autoscaling
            .describe_auto_scaling_groups()
            .max_records(crate::planner::GROUPS_PER_PAGE)
            .into_paginator()
            .send();
        let mut warnings = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("listing Auto Scaling groups", e))?;
            for group in page.auto_scaling_groups() {
                let Some(name) = group.auto_scaling_group_name() else {
                    continue;
                };
                if planned.contains(&name.to_string()) {
                    continue;
                }
                let spec = group.launch_template().or_else(|| {
                    group
                        .mixed_instances_policy()
                        .and_then(|m| m.launch_template())
                        .and_then(|lt| lt.launch_template_specification())
                });
                let Some(spec) = spec.filter(|s| s.version() == Some("$Latest")) else {
                    continue;
                };
                let template = spec
                    .launch_template_id()
                    .or(spec.launch_template_name())
                    .and_then(|t| versioned.get(t));
                if let Some(template) = template {
                    warnings.push(format!(
                        "{name} is not refreshed by this rollout but follows $Latest of launch template {template}: it launches the new AMI on scale-out as soon as the rollout makes its version"
                    ));
                }
            }
        }
        Ok(warnings)
    }
}

/// Points the group at the numbered version its `$Latest`/`$Default` resolves to.
async fn pin(
    autoscaling: aws_sdk_autoscaling::Client,
    asg: String,
    mixed: Option<MixedInstancesPolicy>,
    template_id: String,
    version: String,
) -> Result<(), Error> {
    let mut update = autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&asg);
    update = match &mixed {
        Some(policy) => update.mixed_instances_policy(with_version(policy, &template_id, &version)),
        None => update.launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(&template_id)
                .version(&version)
                .build(),
        ),
    };
    update.send().await.map_err(|e| {
        classify(
            &format!("pinning {asg} to launch template version {version}"),
            e,
        )
    })?;
    Ok(())
}

/// Describes the launch template version a group runs.
async fn read_template(
    ec2: aws_sdk_ec2::Client,
    spec: TemplateSpec,
) -> Result<TemplateData, Error> {
    let mut describe = ec2
        .describe_launch_template_versions()
        .versions(&spec.version);
    describe = match (&spec.id, &spec.name) {
        (Some(id), _) => describe.launch_template_id(id),
        (None, Some(name)) => describe.launch_template_name(name),
        (None, None) => {
            return Err(Error::InvalidInput(
                "the launch template has neither id nor name".into(),
            ))
        }
    };
    let label = spec.id.clone().or(spec.name.clone()).unwrap_or_default();
    let out = describe.send().await.map_err(|e| {
        classify(
            &format!(
                "describing launch template {label} version {}",
                spec.version
            ),
            e,
        )
    })?;
    let version = out.launch_template_versions().first().ok_or_else(|| {
        Error::InvalidInput(format!(
            "launch template {label} has no version {}",
            spec.version
        ))
    })?;
    let data = version.launch_template_data();
    let profile = data.and_then(|d| d.iam_instance_profile());
    Ok(TemplateData {
        template_id: version
            .launch_template_id()
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Aws(format!("launch template {label} came back without an id"))
            })?,
        template_name: version.launch_template_name().map(str::to_string),
        version_number: version.version_number().ok_or_else(|| {
            Error::Aws(format!(
                "launch template {label} version {} has no number",
                spec.version
            ))
        })?,
        image_id: data.and_then(|d| d.image_id()).map(str::to_string),
        instance_type: data
            .and_then(|d| d.instance_type())
            .map(|t| t.as_str().to_string()),
        instance_profile: profile.and_then(|p| {
            p.name()
                .map(str::to_string)
                .or_else(|| p.arn().map(|a| profile_name_of_arn(a).to_string()))
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_autoscaling::types::{InstancesDistribution, LaunchTemplateOverrides};

    #[test]
    fn floating_versions_and_profile_names() {
        assert!(is_floating("$Latest") && is_floating("$Default") && !is_floating("3"));
        assert_eq!(
            profile_name_of_arn("arn:aws:iam::123456789012:instance-profile/team/web"),
            "web"
        );
        assert_eq!(
            profile_name_of_arn("arn:aws:iam::123456789012:instance-profile/web"),
            "web"
        );
    }

    #[test]
    fn only_the_template_version_of_a_mixed_policy_changes() {
        let policy = MixedInstancesPolicy::builder()
            .launch_template(
                LaunchTemplate::builder()
                    .launch_template_specification(
                        LaunchTemplateSpecification::builder()
                            .launch_template_name("spot")
                            .version("$Latest")
                            .build(),
                    )
                    .overrides(
                        LaunchTemplateOverrides::builder()
                            .instance_type("c6g.large")
                            .build(),
                    )
                    .overrides(
                        LaunchTemplateOverrides::builder()
                            .instance_type("c7g.large")
                            .weighted_capacity("2")
                            .build(),
                    )
                    .build(),
            )
            .instances_distribution(
                InstancesDistribution::builder()
                    .on_demand_base_capacity(1)
                    .spot_allocation_strategy("price-capacity-optimized")
                    .build(),
            )
            .build();
        let pinned = with_version(&policy, "lt-1", "7");
        let spec = pinned
            .launch_template()
            .and_then(|lt| lt.launch_template_specification())
            .unwrap();
        assert_eq!(
            (spec.launch_template_id(), spec.version()),
            (Some("lt-1"), Some("7"))
        );
        assert_eq!(
            pinned.launch_template().unwrap().overrides(),
            policy.launch_template().unwrap().overrides()
        );
        assert_eq!(
            pinned.instances_distribution(),
            policy.instances_distribution()
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let names: Vec<String> = (0..25).map(|i| format!("g{i}")).collect();
        assert!(listed(&names).ends_with("g19 and 5 more"));
        assert_eq!(listed(&names[..2]), "g0, g1");
    }
}
