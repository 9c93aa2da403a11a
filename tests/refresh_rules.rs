//! The emulator refuses the instance refreshes AWS refuses (tests/emulator/refresh_rules.py
//! cites each rule's page): AutoRollback on `$Latest`/`$Default`, on an SSM-parameter ImageId
//! or without a desired configuration, the healthy-percentage ranges and their gap,
//! checkpoint rules, a rollback AWS cannot do; and it applies a desired MixedInstancesPolicy
//! when a refresh succeeds. Each test also shows the accepted neighbour, so that a refusal
//! of everything would fail it.

mod e2e;
#[path = "support/mixed.rs"]
mod mixed;

use std::time::{Duration, Instant};

use asg_refresh_tests::Moto;
use aws_sdk_autoscaling::types::{DesiredConfiguration, RefreshPreferences};
use aws_sdk_ec2::types::RequestLaunchTemplateData;
use e2e::{fleet, set_tag, start_emulator};
use mixed::{mixed_policy, mixed_policy_of, spec, t3a_micro};

struct Setup {
    moto: Moto,
    config: aws_config::SdkConfig,
    template: String,
}

/// An emulator with group `g` on version 1 of a template with versions 1 and 2.
async fn setup() -> Setup {
    let (moto, config) = start_emulator().await;
    let template = fleet(&config, "g", &[]).await;
    Setup {
        moto,
        config,
        template,
    }
}

impl Setup {
    /// Starts a refresh of `g` to `version` of its template, as [`start`].
    async fn start_to(
        &self,
        version: &str,
        preferences: RefreshPreferences,
    ) -> Result<String, (String, String)> {
        let desired = desired(&self.template, version);
        start(&self.config, "g", Some(desired), preferences).await
    }

    /// Starts a refresh of `g` without a desired configuration, as [`start`].
    async fn start_bare(
        &self,
        preferences: RefreshPreferences,
    ) -> Result<String, (String, String)> {
        start(&self.config, "g", None, preferences).await
    }
}

fn desired(template: &str, version: &str) -> DesiredConfiguration {
    DesiredConfiguration::builder()
        .launch_template(spec(template, version))
        .build()
}

/// Starts a refresh of `asg`; the error's code and message when refused.
async fn start(
    config: &aws_config::SdkConfig,
    asg: &str,
    desired: Option<DesiredConfiguration>,
    preferences: RefreshPreferences,
) -> Result<String, (String, String)> {
    let out = aws_sdk_autoscaling::Client::new(config)
        .start_instance_refresh()
        .auto_scaling_group_name(asg)
        .set_desired_configuration(desired)
        .preferences(preferences)
        .send()
        .await;
    match out {
        Ok(out) => Ok(out.instance_refresh_id().unwrap_or_default().to_string()),
        Err(e) => {
            let service = e.into_service_error();
            Err((
                service.meta().code().unwrap_or_default().to_string(),
                service.meta().message().unwrap_or_default().to_string(),
            ))
        }
    }
}

fn refused(result: Result<String, (String, String)>, says: &str) {
    match result {
        Err((code, message)) => {
            assert_eq!(code, "ValidationError", "{message}");
            assert!(message.contains(says), "{message}");
        }
        Ok(id) => panic!("refresh {id} started; AWS refuses it ({says})"),
    }
}

async fn cancel(config: &aws_config::SdkConfig, asg: &str) {
    aws_sdk_autoscaling::Client::new(config)
        .cancel_instance_refresh()
        .auto_scaling_group_name(asg)
        .send()
        .await
        .unwrap();
    // Cancelling takes a moment in the time model; wait until another refresh may start.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let out = aws_sdk_autoscaling::Client::new(config)
            .describe_instance_refreshes()
            .auto_scaling_group_name(asg)
            .send()
            .await
            .unwrap();
        if out.instance_refreshes().iter().all(|r| {
            r.status()
                .is_some_and(|s| s.as_str() == "Cancelled" || s.as_str() == "Successful")
        }) {
            return;
        }
        assert!(Instant::now() < until, "the refresh of {asg} did not end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Rolls back the refresh of `asg`; AWS's message when refused.
async fn roll_back(autoscaling: &aws_sdk_autoscaling::Client, asg: &str) -> Result<(), String> {
    let sent = autoscaling
        .rollback_instance_refresh()
        .auto_scaling_group_name(asg);
    match sent.send().await {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .into_service_error()
            .meta()
            .message()
            .unwrap_or_default()
            .to_string()),
    }
}

/// Puts `asg` on launch template `template` at `version`.
async fn pin(config: &aws_config::SdkConfig, asg: &str, template: &str, version: &str) {
    aws_sdk_autoscaling::Client::new(config)
        .update_auto_scaling_group()
        .auto_scaling_group_name(asg)
        .launch_template(spec(template, version))
        .send()
        .await
        .unwrap();
}

/// No preferences set.
fn plain() -> RefreshPreferences {
    RefreshPreferences::builder().build()
}

fn rollback() -> RefreshPreferences {
    RefreshPreferences::builder().auto_rollback(true).build()
}

#[tokio::test]
async fn auto_rollback_needs_a_desired_configuration() {
    let s = setup().await;
    let without = s.start_bare(rollback()).await;
    refused(without, "without a desired configuration");
    s.start_to("2", rollback())
        .await
        .expect("numbered versions roll back");
}

#[tokio::test]
async fn auto_rollback_is_refused_on_latest_and_default() {
    let s = setup().await;
    for floating in ["$Latest", "$Default"] {
        refused(
            s.start_to(floating, rollback()).await,
            "$Latest or $Default",
        );
    }
    // The group's own version counts too.
    pin(&s.config, "g", &s.template, "$Latest").await;
    refused(s.start_to("2", rollback()).await, "$Latest or $Default");
    // Without AutoRollback the same refresh is fine.
    s.start_to("2", plain()).await.unwrap();
}

#[tokio::test]
async fn auto_rollback_is_refused_with_an_ssm_parameter_image() {
    let s = setup().await;
    let ec2 = aws_sdk_ec2::Client::new(&s.config);
    ec2.create_launch_template_version()
        .launch_template_id(&s.template)
        .source_version("1")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("resolve:ssm:/golden/ami")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let parameter = s.start_to("3", rollback()).await;
    refused(parameter, "Systems Manager parameter");
    let ami = s.start_to("2", rollback()).await;
    ami.expect("an AMI id rolls back");
}

#[tokio::test]
async fn healthy_percentages_keep_their_ranges_and_gap() {
    let s = setup().await;
    let prefs = |min: Option<i32>, max: Option<i32>| {
        RefreshPreferences::builder()
            .set_min_healthy_percentage(min)
            .set_max_healthy_percentage(max)
            .build()
    };
    for (min, max, says) in [
        (
            Some(101),
            None,
            "MinHealthyPercentage must be between 0 and 100",
        ),
        (
            Some(90),
            Some(99),
            "MaxHealthyPercentage must be between 100 and 200",
        ),
        (
            Some(90),
            Some(201),
            "MaxHealthyPercentage must be between 100 and 200",
        ),
        (None, Some(150), "MinHealthyPercentage must be specified"),
        (Some(50), Some(160), "cannot be greater than 100"),
    ] {
        refused(s.start_bare(prefs(min, max)).await, says);
    }
    s.start_bare(prefs(Some(60), Some(160)))
        .await
        .expect("a gap of exactly 100 is allowed");
}

#[tokio::test]
async fn checkpoints_ascend_and_a_delay_needs_them() {
    let s = setup().await;
    let delay_only = RefreshPreferences::builder().checkpoint_delay(60).build();
    let descending = RefreshPreferences::builder()
        .checkpoint_percentages(50)
        .checkpoint_percentages(20)
        .build();
    let too_long = RefreshPreferences::builder()
        .checkpoint_percentages(100)
        .checkpoint_delay(172_801)
        .build();
    for (preferences, says) in [
        (delay_only, "CheckpointDelay requires CheckpointPercentages"),
        (descending, "ascending order"),
        (too_long, "CheckpointDelay must be between 0 and 172800"),
    ] {
        refused(s.start_bare(preferences).await, says);
    }
    let fine = RefreshPreferences::builder()
        .checkpoint_percentages(50)
        .checkpoint_percentages(100)
        .checkpoint_delay(60)
        .build();
    s.start_bare(fine).await.unwrap();
}

#[tokio::test]
async fn skip_matching_without_a_desired_configuration_is_allowed_as_on_aws() {
    let s = setup().await;
    s.start_bare(RefreshPreferences::builder().skip_matching(true).build())
        .await
        .unwrap();
}

#[tokio::test]
async fn rollback_is_refused_when_the_group_was_on_latest() {
    let s = setup().await;
    let autoscaling = aws_sdk_autoscaling::Client::new(&s.config);
    set_tag(&s.config, "g", "emulator:refresh-seconds", "30").await;
    pin(&s.config, "g", &s.template, "$Latest").await;
    s.start_to("2", plain()).await.unwrap();
    let message = roll_back(&autoscaling, "g").await.unwrap_err();
    assert!(message.contains("$Latest or $Default"), "{message}");
    cancel(&s.config, "g").await;
    // Pinned to a numbered version, the same group rolls back.
    pin(&s.config, "g", &s.template, "1").await;
    s.start_to("2", plain()).await.unwrap();
    roll_back(&autoscaling, "g").await.unwrap();
    drop(s.moto);
}

#[tokio::test]
async fn a_successful_refresh_applies_the_desired_mixed_instances_policy() {
    let s = setup().await;
    let autoscaling = aws_sdk_autoscaling::Client::new(&s.config);
    let policy = |version: &str| mixed_policy(spec(&s.template, version), t3a_micro()).build();
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("spot")
        .mixed_instances_policy(policy("1"))
        .min_size(1)
        .max_size(2)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .send()
        .await
        .unwrap();
    set_tag(&s.config, "spot", "emulator:refresh-seconds", "1").await;
    let desired = DesiredConfiguration::builder()
        .mixed_instances_policy(policy("2"))
        .build();
    start(&s.config, "spot", Some(desired), rollback())
        .await
        .expect("a numbered mixed policy rolls back");
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let mixed = mixed_policy_of(&autoscaling, "spot").await;
        let spec = mixed
            .launch_template()
            .and_then(|lt| lt.launch_template_specification())
            .unwrap();
        if spec.version() == Some("2") {
            let types: Vec<&str> = mixed
                .launch_template()
                .unwrap()
                .overrides()
                .iter()
                .filter_map(|o| o.instance_type())
                .collect();
            assert_eq!(types, ["t3.micro", "t3a.micro"]);
            break;
        }
        assert!(
            Instant::now() < until,
            "the mixed group is still on {:?}",
            spec.version()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
