//! The planner on group shapes AWS refuses or the rollout used to mishandle, against moto:
//! `$Latest`/`$Default` targets pinned (and recorded) before any version is made, groups
//! outside the plan that follow `$Latest` named as warnings, SSM-parameter images left out
//! under auto rollback, instance profile roles checked against `instance_roles`, mixed
//! instances groups planned, and a bad AMI failing the plan before anything changes.

mod common;
#[path = "../../tests/support/iam.rs"]
mod iam;

use std::collections::BTreeMap;

use aws_sdk_autoscaling::operation::create_auto_scaling_group::builders::CreateAutoScalingGroupFluentBuilder;
use aws_sdk_autoscaling::types::MixedInstancesPolicy;
use aws_sdk_ec2::types::{
    LaunchTemplateIamInstanceProfileSpecificationRequest, RequestLaunchTemplateData,
};
use common::mixed::{mixed_policy, mixed_policy_of, spec, t3a_micro};
use common::{plan_request, Emulator};
use generator::payload::{AsgStatus, PlanRequest};
use iam::roles_in_profiles;
use runtime::planner::Planner;
use runtime::store::AsgRecord;
use runtime::Error;

fn request(
    ami: &str,
    rollout_id: &str,
    asgs: &[&str],
    auto_rollback: bool,
    instance_roles: &[&str],
) -> PlanRequest {
    PlanRequest {
        auto_rollback,
        instance_roles: instance_roles.iter().map(|s| s.to_string()).collect(),
        ..plan_request(rollout_id, ami, asgs, &[])
    }
}

fn planner(emulator: &Emulator) -> Planner {
    emulator.planner()
}

/// A launch template of `ami` and `instance_type`, with an instance profile when given;
/// returns its id.
async fn template(
    emulator: &Emulator,
    name: &str,
    ami: &str,
    instance_type: &str,
    profile: Option<LaunchTemplateIamInstanceProfileSpecificationRequest>,
) -> String {
    let data = RequestLaunchTemplateData::builder()
        .image_id(ami)
        .instance_type(instance_type.into())
        .set_iam_instance_profile(profile)
        .build();
    emulator.launch_template_of(name, data).await
}

/// The request creating the group `name` of one instance in us-east-1a; the caller adds
/// what it runs.
fn one_instance(emulator: &Emulator, name: &str) -> CreateAutoScalingGroupFluentBuilder {
    emulator
        .autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(0)
        .max_size(2)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
}

/// An emulator with an AMI that exists and a launch template of it for each `(name,
/// instance type)`, without an instance profile.
async fn with_templates<const N: usize>(
    named: [(&str, &str); N],
) -> (Emulator, String, [String; N]) {
    let emulator = Emulator::start().await;
    let ami = emulator.existing_ami().await;
    let mut ids = Vec::with_capacity(N);
    for (name, instance_type) in named {
        ids.push(template(&emulator, name, &ami, instance_type, None).await);
    }
    let ids = ids.try_into().expect("one id per template");
    (emulator, ami, ids)
}

/// A group of one instance on `template` at `version`.
async fn group(emulator: &Emulator, name: &str, template: &str, version: &str) {
    one_instance(emulator, name)
        .launch_template(spec(template, version))
        .send()
        .await
        .expect("create group");
}

fn mixed(
    template: &str,
    version: &str,
    own_template_for_second: Option<&str>,
) -> MixedInstancesPolicy {
    let mut second = t3a_micro();
    if let Some(other) = own_template_for_second {
        second = second.launch_template_specification(spec(other, "1"));
    }
    mixed_policy(spec(template, version), second).build()
}

async fn mixed_group(emulator: &Emulator, name: &str, policy: MixedInstancesPolicy) {
    one_instance(emulator, name)
        .mixed_instances_policy(policy)
        .send()
        .await
        .expect("create mixed group");
}

/// The launch template version a group runs (its own, or its mixed policy's).
async fn version_of(emulator: &Emulator, asg: &str) -> String {
    let out = emulator
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .unwrap();
    let group = &out.auto_scaling_groups()[0];
    let own = group.launch_template();
    let policy = group
        .mixed_instances_policy()
        .and_then(|m| m.launch_template());
    let spec = own.or(policy.and_then(|lt| lt.launch_template_specification()));
    spec.unwrap().version().unwrap_or_default().to_string()
}

async fn records(emulator: &Emulator, rollout_id: &str) -> BTreeMap<String, AsgRecord> {
    emulator
        .store()
        .list(rollout_id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.asg.clone(), r))
        .collect()
}

#[tokio::test]
async fn floating_targets_are_pinned_and_latest_followers_are_named() {
    let emulator = Emulator::start().await;
    let ami = emulator.existing_ami().await;
    let web = template(&emulator, "web-lt", &ami, "t3.micro", None).await;
    group(&emulator, "web-latest", &web, "$Latest").await;
    group(&emulator, "web-default", &web, "$Default").await;
    group(&emulator, "web-numbered", &web, "1").await;
    // Outside the targets: only the $Latest follower launches a new version on scale-out.
    group(&emulator, "batch-latest", &web, "$Latest").await;
    group(&emulator, "batch-default", &web, "$Default").await;
    let plan = planner(&emulator)
        .handle(request(
            &ami,
            "r-1",
            &["web-latest", "web-default", "web-numbered"],
            true,
            &[],
        ))
        .await
        .unwrap();
    assert_eq!((plan.planned, plan.skipped), (3, 0));
    for asg in ["web-latest", "web-default", "web-numbered"] {
        assert_eq!(
            version_of(&emulator, asg).await,
            "1",
            "{asg} runs a numbered version before any version is made"
        );
    }
    assert_eq!(
        version_of(&emulator, "batch-latest").await,
        "$Latest",
        "groups outside the targets are left alone"
    );
    let records = records(&emulator, "r-1").await;
    let pin = |asg: &str| {
        (
            records[asg].pinned_from.clone(),
            records[asg].pinned_version.clone(),
        )
    };
    assert_eq!(
        pin("web-latest"),
        (Some("$Latest".into()), Some("1".into()))
    );
    assert_eq!(
        pin("web-default"),
        (Some("$Default".into()), Some("1".into()))
    );
    assert_eq!(pin("web-numbered"), (None, None));
    let summary = emulator.store().summary("r-1").await.unwrap().unwrap();
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    assert!(summary.warnings[0].starts_with("batch-latest is not refreshed by this rollout but follows $Latest of launch template web-lt"), "{:?}", summary.warnings);
}

#[tokio::test]
async fn ssm_parameter_images_are_left_out_under_auto_rollback_only() {
    let emulator = Emulator::start().await;
    let ami = emulator.existing_ami().await;
    let ssm = template(
        &emulator,
        "ssm-lt",
        "resolve:ssm:/golden/ami",
        "t3.micro",
        None,
    )
    .await;
    group(&emulator, "ssm", &ssm, "1").await;
    let planner = planner(&emulator);
    let plan = planner
        .handle(request(&ami, "r-1", &["ssm"], true, &[]))
        .await
        .unwrap();
    assert_eq!((plan.planned, plan.skipped), (0, 1));
    let record = &records(&emulator, "r-1").await["ssm"];
    assert_eq!(record.status, AsgStatus::Skipped);
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("SSM parameter (resolve:ssm:/golden/ami)")
            && reason.contains("auto_rollback = false"),
        "{reason}"
    );
    assert!(emulator.store().release_lock("r-1").await.unwrap());
    let plan = planner
        .handle(request(&ami, "r-2", &["ssm"], false, &[]))
        .await
        .unwrap();
    assert_eq!(
        (plan.planned, plan.skipped),
        (1, 0),
        "without auto rollback AWS refreshes it"
    );
}

#[tokio::test]
async fn instance_profile_roles_must_be_listed_and_unlisted_groups_are_not_pinned() {
    let emulator = Emulator::start().await;
    let ami = emulator.existing_ami().await;
    roles_in_profiles(
        &emulator.config,
        &[("web-role", "web-profile"), ("api-role", "api-profile")],
        "{}",
        Some("/team/"),
    )
    .await;
    let by_name = LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
        .name("web-profile")
        .build();
    let by_arn = LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
        .arn("arn:aws:iam::123456789012:instance-profile/team/api-profile")
        .build();
    let web = template(&emulator, "web-lt", &ami, "t3.micro", Some(by_name)).await;
    let api = template(&emulator, "api-lt", &ami, "t3.micro", Some(by_arn)).await;
    group(&emulator, "web", &web, "$Latest").await;
    group(&emulator, "api", &api, "$Latest").await;
    let plan = planner(&emulator)
        .handle(request(&ami, "r-1", &["web", "api"], true, &["web-role"]))
        .await
        .unwrap();
    assert_eq!((plan.planned, plan.skipped), (1, 1));
    let records = records(&emulator, "r-1").await;
    assert_eq!(records["web"].status, AsgStatus::Planned);
    let reason = records["api"].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("role api-role") && reason.contains("add it to [refresh] instance_roles"),
        "{reason}"
    );
    assert_eq!(version_of(&emulator, "web").await, "1");
    assert_eq!(
        version_of(&emulator, "api").await,
        "$Latest",
        "a group left out is not pinned (AWS would refuse the pass of its role)"
    );
}

#[tokio::test]
async fn mixed_instances_groups_are_planned_and_pinned_unless_overrides_bring_their_own_template() {
    let named = [("spot-lt", "t3.micro"), ("other-lt", "t3a.micro")];
    let (emulator, ami, [spot, other]) = with_templates(named).await;
    mixed_group(&emulator, "spot", mixed(&spot, "$Latest", None)).await;
    mixed_group(&emulator, "spot-split", mixed(&spot, "1", Some(&other))).await;
    let plan = planner(&emulator)
        .handle(request(&ami, "r-1", &["spot", "spot-split"], true, &[]))
        .await
        .unwrap();
    assert_eq!((plan.planned, plan.skipped), (1, 1));
    let records = records(&emulator, "r-1").await;
    assert_eq!(records["spot"].status, AsgStatus::Planned);
    assert_eq!(records["spot"].pinned_from.as_deref(), Some("$Latest"));
    assert_eq!(version_of(&emulator, "spot").await, "1");
    let policy = mixed_policy_of(&emulator.autoscaling, "spot").await;
    let overrides: Vec<&str> = policy
        .launch_template()
        .map(|lt| {
            lt.overrides()
                .iter()
                .filter_map(|o| o.instance_type())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        overrides,
        ["t3.micro", "t3a.micro"],
        "pinning keeps the overrides"
    );
    let reason = records["spot-split"].reason.clone().unwrap_or_default();
    assert!(reason.contains("their own launch template"), "{reason}");
}

#[tokio::test]
async fn a_bad_ami_fails_the_plan_before_anything_is_pinned() {
    let named = [("x86-lt", "t3.micro"), ("arm-lt", "t4g.micro")];
    let (emulator, ami, [x86, arm]) = with_templates(named).await;
    group(&emulator, "x86", &x86, "$Latest").await;
    group(&emulator, "arm", &arm, "$Latest").await;
    let planner = planner(&emulator);
    let missing = planner
        .handle(request("ami-0ddddddddddddddd0", "r-1", &["x86"], true, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, Error::InvalidInput(m) if m.contains("AMI ami-0ddddddddddddddd0 does not exist")),
        "{missing:?}"
    );
    assert!(emulator.store().release_lock("r-1").await.unwrap());
    let mismatch = planner
        .handle(request(&ami, "r-2", &["x86", "arm"], true, &[]))
        .await
        .unwrap_err();
    match &mismatch {
        Error::InvalidInput(m) => {
            assert!(m.contains(&format!("AMI {ami} is x86_64")), "{m}");
            assert!(m.contains("arm (t4g.micro)") && !m.contains("x86 ("), "{m}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    for asg in ["x86", "arm"] {
        assert_eq!(
            version_of(&emulator, asg).await,
            "$Latest",
            "{asg} is not pinned by a plan that failed"
        );
    }
}

#[tokio::test]
async fn an_image_that_is_not_available_fails_the_plan() {
    let emulator = Emulator::start_extended().await;
    let pending = "ami-0cccccccccccccccc";
    emulator
        .moto
        .request(
            "POST",
            "/emulator/images",
            &format!(r#"{{"ImageId":"{pending}","Architecture":"x86_64","State":"pending"}}"#),
        )
        .expect("register a pending image");
    let ready = "ami-0fedcba9876543210";
    let web = template(&emulator, "web-lt", ready, "t3.micro", None).await;
    group(&emulator, "web", &web, "$Latest").await;
    let planner = planner(&emulator);
    let refused = planner
        .handle(request(pending, "r-1", &["web"], true, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::InvalidInput(m) if m.contains(&format!("AMI {pending} is pending, not available"))),
        "{refused:?}"
    );
    assert_eq!(version_of(&emulator, "web").await, "$Latest");
    assert!(emulator.store().release_lock("r-1").await.unwrap());
    let plan = planner
        .handle(request(ready, "r-2", &["web"], true, &[]))
        .await
        .unwrap();
    assert_eq!(
        plan.planned, 1,
        "an available image of the right architecture plans"
    );
}
