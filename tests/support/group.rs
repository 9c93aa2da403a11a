//! An Auto Scaling group on a launch template with two versions, for the test binaries of
//! every crate that refresh one on the emulator (each includes this file with `#[path]`).

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_ec2::types::RequestLaunchTemplateData;

/// The image of launch template version 1.
pub const V1_AMI: &str = "ami-11111111";
/// The image of launch template version 2.
pub const V2_AMI: &str = "ami-22222222";

/// A launch template `<asg>-lt` with versions 1 ([`V1_AMI`], t3.micro) and 2 ([`V2_AMI`]),
/// and the group `asg` (1 to 2 instances, one wanted, in us-east-1a) on version 1 with the
/// given tags. Returns the template id.
pub async fn group_on_two_versions(
    config: &aws_config::SdkConfig,
    asg: &str,
    tags: &[(&str, &str)],
) -> String {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let autoscaling = aws_sdk_autoscaling::Client::new(config);
    let template = ec2
        .create_launch_template()
        .launch_template_name(format!("{asg}-lt"))
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(V1_AMI)
                .instance_type("t3.micro".into())
                .build(),
        )
        .send()
        .await
        .expect("create launch template");
    let id = template
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .expect("template id")
        .to_string();
    let version = ec2
        .create_launch_template_version()
        .launch_template_id(&id)
        .source_version("1")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(V2_AMI)
                .build(),
        )
        .send()
        .await
        .expect("create launch template version");
    assert_eq!(
        version
            .launch_template_version()
            .and_then(|v| v.version_number()),
        Some(2)
    );
    let mut create = autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(asg)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(&id)
                .version("1")
                .build(),
        )
        .min_size(1)
        .max_size(2)
        .desired_capacity(1)
        .availability_zones("us-east-1a");
    for (key, value) in tags {
        create = create.tags(Tag::builder().key(*key).value(*value).build());
    }
    create.send().await.expect("create auto scaling group");
    id
}
