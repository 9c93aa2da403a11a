//! Creating a launch template in the emulator, for the test binaries of every crate that
//! makes their own (included with `#[path]`).

use aws_sdk_ec2::types::RequestLaunchTemplateData;

/// Creates the launch template `name` with `data`; returns its id.
pub async fn create(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
    data: RequestLaunchTemplateData,
) -> String {
    ec2.create_launch_template()
        .launch_template_name(name)
        .launch_template_data(data)
        .send()
        .await
        .expect("create launch template")
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .expect("template id")
        .to_string()
}
