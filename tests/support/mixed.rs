//! The mixed instances policy the tests give their groups: one launch template, overridden
//! with t3.micro and a second type (t3a.micro unless the caller builds it otherwise).
//! Included with `#[path]` by test binaries of more than one crate; each uses a part.

#![allow(dead_code)]

use aws_sdk_autoscaling::types::builders::{
    LaunchTemplateOverridesBuilder, MixedInstancesPolicyBuilder,
};
use aws_sdk_autoscaling::types::{
    LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification, MixedInstancesPolicy,
};

/// Launch template `template_id` at `version`.
pub fn spec(template_id: &str, version: &str) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .launch_template_id(template_id)
        .version(version)
        .build()
}

/// The t3a.micro override, for callers to add to.
pub fn t3a_micro() -> LaunchTemplateOverridesBuilder {
    LaunchTemplateOverrides::builder().instance_type("t3a.micro")
}

/// A policy on `spec` with a t3.micro override and then `second`.
pub fn mixed_policy(
    spec: LaunchTemplateSpecification,
    second: LaunchTemplateOverridesBuilder,
) -> MixedInstancesPolicyBuilder {
    MixedInstancesPolicy::builder().launch_template(
        LaunchTemplate::builder()
            .launch_template_specification(spec)
            .overrides(
                LaunchTemplateOverrides::builder()
                    .instance_type("t3.micro")
                    .build(),
            )
            .overrides(second.build())
            .build(),
    )
}

/// The mixed instances policy the group `asg` has now; panics when it has none.
pub async fn mixed_policy_of(
    autoscaling: &aws_sdk_autoscaling::Client,
    asg: &str,
) -> MixedInstancesPolicy {
    let described = autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe {asg}: {e:?}"));
    described.auto_scaling_groups()[0]
        .mixed_instances_policy()
        .cloned()
        .unwrap_or_else(|| panic!("{asg} is still a mixed group"))
}
