//! IAM roles in instance profiles, for the tests' launch templates: one way to make them for
//! the test binaries of every crate that needs them (each includes this file with `#[path]`).

/// Creates, for each `(role, profile)`, the role (trusting `trust`), the instance profile
/// (under `path` when given) and the role in that profile; panics when the emulator refuses.
pub async fn roles_in_profiles(
    config: &aws_config::SdkConfig,
    pairs: &[(&str, &str)],
    trust: &str,
    path: Option<&str>,
) {
    let iam = aws_sdk_iam::Client::new(config);
    for (role, profile) in pairs {
        iam.create_role()
            .role_name(*role)
            .assume_role_policy_document(trust)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create role {role}: {e:?}"));
        iam.create_instance_profile()
            .instance_profile_name(*profile)
            .set_path(path.map(str::to_string))
            .send()
            .await
            .unwrap_or_else(|e| panic!("create instance profile {profile}: {e:?}"));
        iam.add_role_to_instance_profile()
            .instance_profile_name(*profile)
            .role_name(*role)
            .send()
            .await
            .unwrap_or_else(|e| panic!("add {role} to {profile}: {e:?}"));
    }
}
