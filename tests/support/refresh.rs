//! Instance refreshes on the extended emulator through the SDK, for the test binaries that
//! drive them directly (each includes this file with `#[path]`).

#![allow(dead_code)]

use aws_sdk_autoscaling::types::{
    DesiredConfiguration, InstanceRefresh, LaunchTemplateSpecification, RefreshPreferences,
};

/// The group tags that make the emulator end a refresh Failed after one second.
pub const FAILS_AFTER_1S: [(&str, &str); 2] = [
    ("emulator:refresh-seconds", "1"),
    ("emulator:refresh-outcome", "Failed"),
];

/// Starts a refresh of `asg` to version 2 of the launch template `template_id`, with
/// `preferences` when given; returns its id.
pub async fn start_refresh(
    config: &aws_config::SdkConfig,
    asg: &str,
    template_id: &str,
    preferences: Option<RefreshPreferences>,
) -> String {
    let template = LaunchTemplateSpecification::builder()
        .launch_template_id(template_id)
        .version("2")
        .build();
    aws_sdk_autoscaling::Client::new(config)
        .start_instance_refresh()
        .auto_scaling_group_name(asg)
        .desired_configuration(
            DesiredConfiguration::builder()
                .launch_template(template)
                .build(),
        )
        .set_preferences(preferences)
        .send()
        .await
        .unwrap_or_else(|e| panic!("start instance refresh of {asg}: {e:?}"))
        .instance_refresh_id()
        .expect("refresh id")
        .to_string()
}

/// The refreshes of `asg` as DescribeInstanceRefreshes lists them (newest first); with `id`,
/// only that one.
pub async fn refreshes(
    config: &aws_config::SdkConfig,
    asg: &str,
    id: Option<&str>,
) -> Vec<InstanceRefresh> {
    aws_sdk_autoscaling::Client::new(config)
        .describe_instance_refreshes()
        .auto_scaling_group_name(asg)
        .set_instance_refresh_ids(id.map(|id| vec![id.to_string()]))
        .send()
        .await
        .expect("describe instance refreshes")
        .instance_refreshes()
        .to_vec()
}
