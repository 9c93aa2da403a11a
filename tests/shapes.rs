//! A fleet of every group shape, rolled out end to end with `auto_rollback = true`: the
//! local stack deployed (with `instance_roles = ["web-role"]`) to the extended emulator, which
//! refuses the refreshes AWS refuses, and an execution of the deployed state machine with the
//! real Lambda binaries. Asserts on the emulator's refresh log (which groups were refreshed to
//! what) and the rollout table (which were pinned, which were left out and why, the warning).

mod e2e;
#[path = "support/iam.rs"]
mod iam;
#[path = "support/mixed.rs"]
mod mixed;
#[path = "support/templates.rs"]
mod templates;

use std::collections::BTreeMap;

use asg_refresh_tests::Moto;
use aws_sdk_autoscaling::types::Tag;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::{
    LaunchTemplateIamInstanceProfileSpecificationRequest, RequestLaunchTemplateData,
};
use e2e::{
    assert_execution, assert_group_runs, deploy_local_variant, run_rollout, start_emulator,
    OLD_AMI, TABLE,
};
use iam::roles_in_profiles;
use mixed::{mixed_policy, mixed_policy_of, t3a_micro};
use serde_json::Value;

const NEW_AMI: &str = "ami-0fedcba9876543210";

/// A launch template of one version; returns its id.
async fn template(
    config: &aws_config::SdkConfig,
    name: &str,
    image: &str,
    profile: Option<&str>,
) -> String {
    let data = RequestLaunchTemplateData::builder()
        .image_id(image)
        .instance_type("t3.micro".into())
        .set_iam_instance_profile(profile.map(|p| {
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(p)
                .build()
        }))
        .build();
    templates::create(&aws_sdk_ec2::Client::new(config), name, data).await
}

fn tags(asg: &str, target: bool) -> Vec<Tag> {
    let tag = |k: &str, v: &str| {
        Tag::builder()
            .resource_id(asg)
            .resource_type("auto-scaling-group")
            .key(k)
            .value(v)
            .propagate_at_launch(false)
            .build()
    };
    let mut out = vec![tag("emulator:refresh-seconds", "1")];
    if target {
        out.push(tag("refresh-group", "demo"));
    }
    out
}

/// A group of one on `template` at `version` (or, with `mixed`, on a mixed instances
/// policy of two instance types); `target` puts it in local.toml's targets.
async fn group(
    config: &aws_config::SdkConfig,
    asg: &str,
    template: &str,
    version: &str,
    mixed: bool,
    target: bool,
) {
    let spec = mixed::spec(template, version);
    let mut create = aws_sdk_autoscaling::Client::new(config)
        .create_auto_scaling_group()
        .auto_scaling_group_name(asg)
        .min_size(1)
        .max_size(2)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .set_tags(Some(tags(asg, target)));
    create = if mixed {
        create.mixed_instances_policy(mixed_policy(spec, t3a_micro()).build())
    } else {
        create.launch_template(spec)
    };
    create
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {asg}: {e:?}"));
}

/// Each refresh start of the emulator's log: ASG -> its desired configuration.
fn desired_by_asg(moto: &Moto) -> BTreeMap<String, Value> {
    let log = moto.refresh_log();
    let mut out = BTreeMap::new();
    for event in log["events"]
        .as_array()
        .expect("log events")
        .iter()
        .filter(|e| e["event"] == "start")
    {
        let asg = event["asg"].as_str().expect("asg").to_string();
        assert!(
            out.insert(asg.clone(), event["desired"].clone()).is_none(),
            "{asg} refreshed twice: {log}"
        );
    }
    out
}

/// Every item of the rollout, as DynamoDB returns it.
async fn items(
    config: &aws_config::SdkConfig,
    rollout_id: &str,
) -> BTreeMap<String, BTreeMap<String, AttributeValue>> {
    let out = aws_sdk_dynamodb::Client::new(config)
        .query()
        .table_name(TABLE)
        .key_condition_expression("rollout_id = :r")
        .expression_attribute_values(":r", AttributeValue::S(rollout_id.into()))
        .send()
        .await
        .expect("query the table");
    out.items()
        .iter()
        .map(|i| {
            (
                i["asg"].as_s().cloned().unwrap_or_default(),
                i.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            )
        })
        .collect()
}

fn s(item: &BTreeMap<String, AttributeValue>, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_shape_is_pinned_refreshed_or_left_out_with_its_reason() {
    let (moto, config) = start_emulator().await;
    let ec2_trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let pairs = [("web-role", "web-profile"), ("api-role", "api-profile")];
    roles_in_profiles(&config, &pairs, ec2_trust, None).await;
    let numbered = template(&config, "numbered-lt", OLD_AMI, None).await;
    let latest = template(&config, "latest-lt", OLD_AMI, None).await;
    let default = template(&config, "default-lt", OLD_AMI, None).await;
    let listed = template(&config, "listed-lt", OLD_AMI, Some("web-profile")).await;
    let unlisted = template(&config, "unlisted-lt", OLD_AMI, Some("api-profile")).await;
    let spot = template(&config, "spot-lt", OLD_AMI, None).await;
    let ssm = template(&config, "ssm-lt", "resolve:ssm:/golden/ami", None).await;
    group(&config, "s-numbered", &numbered, "1", false, true).await;
    group(&config, "s-latest", &latest, "$Latest", false, true).await;
    group(&config, "s-default", &default, "$Default", false, true).await;
    group(&config, "s-listed", &listed, "$Latest", false, true).await;
    group(&config, "s-unlisted", &unlisted, "1", false, true).await;
    group(&config, "s-spot", &spot, "$Latest", true, true).await;
    group(&config, "s-ssm", &ssm, "1", false, true).await;
    // Outside the targets, on the $Latest of a template the rollout versions.
    group(&config, "other-latest", &latest, "$Latest", false, false).await;
    deploy_local_variant(
        &moto,
        "shapes",
        &[(
            "instance_warmup = 0",
            "instance_warmup = 0\nauto_rollback = true\ninstance_roles = [\"web-role\"]",
        )],
    );
    let execution = run_rollout(&moto, &config, "r-shapes", NEW_AMI).await;
    assert_execution(&execution, "SUCCEEDED", &moto);

    // Refreshed: every target AWS accepts, each to a new numbered version, none twice.
    let desired = desired_by_asg(&moto);
    let refreshed: Vec<&str> = desired.keys().map(String::as_str).collect();
    assert_eq!(
        refreshed,
        ["s-default", "s-latest", "s-listed", "s-numbered", "s-spot"],
        "{desired:?}"
    );
    for asg in ["s-default", "s-latest", "s-listed", "s-numbered"] {
        assert_eq!(
            desired[asg]["LaunchTemplate"]["Version"], "2",
            "{asg}: {}",
            desired[asg]
        );
        assert_group_runs(&config, asg, "2", NEW_AMI).await;
    }
    // The mixed group: its policy, its overrides, only the version changed.
    let mixed = &desired["s-spot"]["MixedInstancesPolicy"]["LaunchTemplate"];
    assert_eq!(
        mixed["LaunchTemplateSpecification"]["Version"], "2",
        "{}",
        desired["s-spot"]
    );
    assert_eq!(
        mixed["LaunchTemplateSpecification"]["LaunchTemplateId"],
        spot.as_str()
    );
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    let policy = mixed_policy_of(&autoscaling, "s-spot").await;
    let lt = policy.launch_template().unwrap();
    assert_eq!(
        lt.launch_template_specification().and_then(|s| s.version()),
        Some("2")
    );
    let types: Vec<&str> = lt
        .overrides()
        .iter()
        .filter_map(|o| o.instance_type())
        .collect();
    assert_eq!(types, ["t3.micro", "t3a.micro"]);

    // The table: pins, reasons, the warning.
    let items = items(&config, "r-shapes").await;
    let pin = |asg: &str| {
        (
            s(&items[asg], "pinned_from"),
            s(&items[asg], "pinned_version"),
        )
    };
    assert_eq!(pin("s-latest"), (Some("$Latest".into()), Some("1".into())));
    assert_eq!(
        pin("s-default"),
        (Some("$Default".into()), Some("1".into()))
    );
    assert_eq!(pin("s-listed"), (Some("$Latest".into()), Some("1".into())));
    assert_eq!(pin("s-spot"), (Some("$Latest".into()), Some("1".into())));
    assert_eq!(pin("s-numbered"), (None, None));
    for asg in ["s-numbered", "s-latest", "s-default", "s-listed", "s-spot"] {
        assert_eq!(
            s(&items[asg], "status").as_deref(),
            Some("Successful"),
            "{asg}: {:?}",
            items[asg]
        );
    }
    let reason = |asg: &str| s(&items[asg], "reason").unwrap_or_default();
    assert_eq!(
        s(&items["s-unlisted"], "status").as_deref(),
        Some("Skipped")
    );
    assert!(
        reason("s-unlisted").contains("role api-role")
            && reason("s-unlisted").contains("[refresh] instance_roles"),
        "{}",
        reason("s-unlisted")
    );
    assert_eq!(s(&items["s-ssm"], "status").as_deref(), Some("Skipped"));
    assert!(
        reason("s-ssm").contains("SSM parameter")
            && reason("s-ssm").contains("auto_rollback = false"),
        "{}",
        reason("s-ssm")
    );
    assert!(
        !items.contains_key("other-latest"),
        "groups outside the targets are not recorded"
    );
    let warnings: Vec<String> = items["#rollout"]
        .get("warnings")
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|w| w.as_s().ok().cloned()).collect())
        .unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("other-latest is not refreshed by this rollout but follows $Latest of launch template latest-lt"), "{warnings:?}");
    // Left alone: the group outside the targets still follows $Latest (now the new AMI, as
    // the warning says), the left-out groups keep their version and image.
    assert_group_runs(&config, "other-latest", "$Latest", NEW_AMI).await;
    assert_group_runs(&config, "s-unlisted", "1", OLD_AMI).await;
}
