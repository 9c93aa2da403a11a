//! The extended emulator evaluates every call made with a role's credentials against the
//! role's policies as `cargo xtask deploy` stored them (tests/emulator/iam_enforcement.py):
//! each rule refuses what AWS refuses, with the service's own error, and a permission removed
//! from the deployed roles fails the rollout naming it. Calls are made with credentials of the
//! deployed roles from STS AssumeRole, as the Lambdas and the state machine get them.

mod e2e;
#[path = "support/iam.rs"]
mod iam;
#[path = "support/dynamodb.rs"]
mod tables;

use asg_refresh_tests::Moto;
use aws_sdk_autoscaling::types::{DesiredConfiguration, LaunchTemplateSpecification, Tag};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::get_item::{GetItemError, GetItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::{
    LaunchTemplateIamInstanceProfileSpecificationRequest, LaunchTemplateTagSpecificationRequest,
    RequestLaunchTemplateData, ResourceType,
};
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use e2e::*;
use iam::roles_in_profiles;
use serde_json::{json, Value};

const LAMBDA_ROLE: &str = "asg-refresh-local-lambda";
const STATES_ROLE: &str = "asg-refresh-local-states";
const NEW_AMI: &str = "ami-0fedcba9876543210";

/// SDK config with credentials of `role` (STS AssumeRole, made with the deployer's keys).
async fn as_role(
    moto: &Moto,
    deployer: &aws_config::SdkConfig,
    role: &str,
) -> aws_config::SdkConfig {
    let assumed = aws_sdk_sts::Client::new(deployer)
        .assume_role()
        .role_arn(format!("arn:aws:iam::123456789012:role/{role}"))
        .role_session_name("iam-enforcement-test")
        .send()
        .await
        .expect("assume role");
    let c = assumed.credentials().expect("credentials");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "assumed",
        ))
        .load()
        .await
}

/// The error code and message of a refused call; panics when it succeeded.
#[track_caller]
fn refused<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    result: Result<T, E>,
    what: &str,
) -> (String, String) {
    match result {
        Ok(out) => panic!("{what} was allowed: {out:?}"),
        Err(e) => (
            e.code().unwrap_or_default().to_string(),
            e.message().unwrap_or_default().to_string(),
        ),
    }
}

/// Asserts that `result` (what `what` tried) was refused with AccessDenied naming `action`.
#[track_caller]
fn assert_denied<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    result: Result<T, E>,
    what: &str,
    action: &str,
) {
    let (code, message) = refused(result, what);
    assert_eq!(code, "AccessDenied", "{message}");
    assert!(
        message.contains(&format!("not authorized to perform: {action} on resource")),
        "{action}: {message}"
    );
}

/// The local stack deployed over the demo ASG `asg` (1 s refreshes), `action` removed from
/// the deployed `role`, and the rollout `rollout_id` of a new image run to its end.
async fn rollout_without(
    asg: &str,
    role: &str,
    action: &str,
    rollout_id: &str,
) -> (Moto, aws_config::SdkConfig, DescribeExecutionOutput) {
    let (moto, deployer) = start_emulator().await;
    demo_fleet(&deployer, &[(asg, "1")]).await;
    deploy_local(&moto, None);
    remove_actions(&deployer, role, &[action]).await;
    let image = new_image(&deployer).await;
    let execution = run_rollout(&moto, &deployer, rollout_id, &image).await;
    (moto, deployer, execution)
}

/// A new x86_64 image in the emulator (the planner checks that the AMI exists).
async fn new_image(config: &aws_config::SdkConfig) -> String {
    let out = aws_sdk_ec2::Client::new(config)
        .register_image()
        .name("iam-enforcement")
        .send()
        .await
        .expect("register image");
    out.image_id().expect("image id").to_string()
}

/// The role's inline policy (named after the role, as deploy puts it).
async fn role_policy(deployer: &aws_config::SdkConfig, role: &str) -> Value {
    let out = aws_sdk_iam::Client::new(deployer)
        .get_role_policy()
        .role_name(role)
        .policy_name(role)
        .send()
        .await
        .expect("get role policy");
    let document = out.policy_document();
    serde_json::from_str(document)
        .or_else(|_| {
            serde_json::from_str(
                &percent_encoding::percent_decode_str(document).decode_utf8_lossy(),
            )
        })
        .unwrap_or_else(|e| panic!("policy of {role} is not JSON ({e}): {document}"))
}

/// Replaces the role's inline policy with `policy`.
async fn put_role_policy(deployer: &aws_config::SdkConfig, role: &str, policy: &Value) {
    aws_sdk_iam::Client::new(deployer)
        .put_role_policy()
        .role_name(role)
        .policy_name(role)
        .policy_document(policy.to_string())
        .send()
        .await
        .expect("put role policy");
}

/// The deployed policy of `role` without the actions `drop` (statements left empty go).
async fn remove_actions(deployer: &aws_config::SdkConfig, role: &str, drop: &[&str]) {
    let mut policy = role_policy(deployer, role).await;
    let statements = policy["Statement"].as_array_mut().expect("statements");
    let mut removed = 0;
    statements.retain_mut(|statement| {
        let actions = match &statement["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            _ => return true,
        };
        let kept: Vec<String> = actions
            .iter()
            .filter(|a| !drop.contains(&a.as_str()))
            .cloned()
            .collect();
        removed += actions.len() - kept.len();
        statement["Action"] = json!(kept);
        !kept.is_empty()
    });
    assert_eq!(
        removed,
        drop.len(),
        "the deployed policy of {role} does not grant each of {drop:?}: {policy:#}"
    );
    put_role_policy(deployer, role, &policy).await;
}

async fn table(config: &aws_config::SdkConfig, name: &str) {
    let client = aws_sdk_dynamodb::Client::new(config);
    tables::create_table(&client, name, "rollout_id", None).await;
}

/// GetItem of the test key in `table`.
async fn get_item(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<GetItemOutput, SdkError<GetItemError>> {
    let request = dynamodb.get_item().table_name(table).set_key(Some(key()));
    request.send().await
}

fn key() -> std::collections::HashMap<String, AttributeValue> {
    [
        ("rollout_id".to_string(), AttributeValue::S("r".into())),
        ("asg".to_string(), AttributeValue::S("a".into())),
    ]
    .into()
}

fn denials(moto: &Moto) -> Vec<Value> {
    moto.iam_denials()["denials"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The deployed Lambda role reaches its own table and tagged groups, nothing else; each
/// service refuses with its own error; the deployer's keys are not checked.
#[tokio::test(flavor = "multi_thread")]
async fn the_deployed_lambda_role_reaches_its_table_and_tagged_groups_only() {
    let (moto, deployer) = start_emulator().await;
    demo_fleet(&deployer, &[("i-tagged", "5")]).await;
    fleet(&deployer, "i-other", &[("refresh-group", "other")]).await;
    deploy_local(&moto, None);
    table(&deployer, "someone-elses").await;
    let role = as_role(&moto, &deployer, LAMBDA_ROLE).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&role);

    // Action and resource: GetItem on the stack's table only; Scan is not granted at all.
    get_item(&dynamodb, TABLE)
        .await
        .expect("GetItem on the stack table");
    let (code, message) = refused(
        get_item(&dynamodb, "someone-elses").await,
        "GetItem elsewhere",
    );
    assert_eq!(code, "AccessDeniedException", "{message}");
    assert!(message.contains("dynamodb:GetItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/someone-elses"), "{message}");
    assert!(
        message.contains("assumed-role/asg-refresh-local-lambda/"),
        "{message}"
    );
    let (code, _) = refused(dynamodb.scan().table_name(TABLE).send().await, "Scan");
    assert_eq!(code, "AccessDeniedException");

    // aws:ResourceTag: StartInstanceRefresh on groups tagged refresh-group=demo only.
    let autoscaling = aws_sdk_autoscaling::Client::new(&role);
    let (code, message) = refused(
        autoscaling
            .start_instance_refresh()
            .auto_scaling_group_name("i-other")
            .send()
            .await,
        "refresh of an untagged group",
    );
    assert_eq!(code, "AccessDenied", "{message}");
    assert!(
        message.contains("autoscaling:StartInstanceRefresh"),
        "{message}"
    );
    autoscaling
        .start_instance_refresh()
        .auto_scaling_group_name("i-tagged")
        .send()
        .await
        .expect("refresh of a tagged group");

    // EC2 answers UnauthorizedOperation.
    let ec2 = aws_sdk_ec2::Client::new(&role);
    let (code, message) = refused(ec2.describe_instances().send().await, "DescribeInstances");
    assert_eq!(code, "UnauthorizedOperation", "{message}");

    // The deployer's own keys are not checked.
    aws_sdk_dynamodb::Client::new(&deployer)
        .scan()
        .table_name("someone-elses")
        .send()
        .await
        .expect("the deployer scans");
    let refusals: Vec<String> = denials(&moto)
        .iter()
        .map(|d| d["action"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        refusals,
        [
            "dynamodb:GetItem",
            "dynamodb:Scan",
            "autoscaling:StartInstanceRefresh",
            "ec2:DescribeInstances"
        ]
    );
}

/// An explicit Deny wins over any Allow, NotAction and NotResource cover everything but what
/// they name, and a condition on a key the request does not carry does not hold.
#[tokio::test(flavor = "multi_thread")]
async fn explicit_deny_not_action_and_missing_condition_keys() {
    let (moto, deployer) = start_emulator().await;
    deploy_local(&moto, None);
    let role = as_role(&moto, &deployer, LAMBDA_ROLE).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&role);
    dynamodb
        .query()
        .table_name(TABLE)
        .key_condition_expression("rollout_id = :r")
        .expression_attribute_values(":r", AttributeValue::S("r".into()))
        .send()
        .await
        .expect("Query before the deny");

    let mut policy = role_policy(&deployer, LAMBDA_ROLE).await;
    let statements = policy["Statement"].as_array_mut().unwrap();
    statements.push(json!({"Sid": "DenyAllButGetItem", "Effect": "Deny", "NotAction": ["dynamodb:GetItem"], "Resource": "arn:aws:dynamodb:*:*:table/*"}));
    statements.push(json!({"Sid": "DescribeIfTagged", "Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceTag/nope": "x"}}}));
    put_role_policy(&deployer, LAMBDA_ROLE, &policy).await;

    get_item(&dynamodb, TABLE)
        .await
        .expect("GetItem is outside the NotAction deny");
    let mut with_not_resource = policy.clone();
    with_not_resource["Statement"].as_array_mut().unwrap().push(
        json!({"Sid": "DenyGetItemOutsideElsewhere", "Effect": "Deny", "Action": "dynamodb:GetItem", "NotResource": "arn:aws:dynamodb:*:*:table/elsewhere"}),
    );
    put_role_policy(&deployer, LAMBDA_ROLE, &with_not_resource).await;
    let (_, message) = refused(
        get_item(&dynamodb, TABLE).await,
        "GetItem under a NotResource deny",
    );
    assert!(
        message.contains("with an explicit deny in an identity-based policy"),
        "{message}"
    );
    put_role_policy(&deployer, LAMBDA_ROLE, &policy).await;
    let query = dynamodb
        .query()
        .table_name(TABLE)
        .key_condition_expression("rollout_id = :r")
        .expression_attribute_values(":r", AttributeValue::S("r".into()))
        .send()
        .await;
    let (code, message) = refused(query, "Query under an explicit deny");
    assert_eq!(code, "AccessDeniedException");
    assert!(
        message.contains("with an explicit deny in an identity-based policy"),
        "{message}"
    );
    let described = aws_sdk_ec2::Client::new(&role)
        .describe_instances()
        .send()
        .await;
    let (code, message) = refused(
        described,
        "DescribeInstances with a condition on a key the request lacks",
    );
    assert_eq!(code, "UnauthorizedOperation");
    assert!(
        message
            .contains("because no identity-based policy allows the ec2:DescribeInstances action"),
        "{message}"
    );
}

/// A launch template with an instance profile and tags for its instances: StartInstanceRefresh
/// with it needs ec2:RunInstances, iam:PassRole on the profile's role for ec2.amazonaws.com,
/// and ec2:CreateTags with ec2:CreateAction=RunInstances; the rendered policy of a stack that
/// lists the role grants them, and removing each, or pointing its condition elsewhere, makes
/// AWS's refusal.
#[tokio::test(flavor = "multi_thread")]
async fn a_launch_template_needs_run_instances_pass_role_and_create_tags() {
    let (moto, deployer) = start_emulator().await;
    roles_in_profiles(
        &deployer,
        &[("app-role", "app-profile"), ("other-role", "other-profile")],
        "{}",
        None,
    )
    .await;
    let ec2 = aws_sdk_ec2::Client::new(&deployer);
    let mut templates = Vec::new();
    for profile in ["app-profile", "other-profile"] {
        let data = RequestLaunchTemplateData::builder()
            .image_id(NEW_AMI)
            .iam_instance_profile(
                LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .name(profile)
                    .build(),
            )
            .tag_specifications(
                LaunchTemplateTagSpecificationRequest::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("app")
                            .value("web")
                            .build(),
                    )
                    .build(),
            )
            .build();
        let out = ec2
            .create_launch_template()
            .launch_template_name(format!("{profile}-lt"))
            .launch_template_data(data)
            .send()
            .await
            .expect("template");
        templates.push(
            out.launch_template()
                .and_then(|t| t.launch_template_id())
                .unwrap()
                .to_string(),
        );
    }
    aws_sdk_autoscaling::Client::new(&deployer)
        .create_auto_scaling_group()
        .auto_scaling_group_name("i-app")
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(&templates[0])
                .version("1")
                .build(),
        )
        .min_size(1)
        .max_size(2)
        .availability_zones("us-east-1a")
        .tags(Tag::builder().key("refresh-group").value("demo").build())
        .send()
        .await
        .expect("group");
    deploy_local_variant(
        &moto,
        "instance-roles",
        &[(
            "instance_warmup = 0",
            "instance_warmup = 0\ninstance_roles = [\"app-role\"]",
        )],
    );
    let role = as_role(&moto, &deployer, LAMBDA_ROLE).await;
    let autoscaling = aws_sdk_autoscaling::Client::new(&role);
    let start = |template: &str| {
        let desired = DesiredConfiguration::builder()
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(template)
                    .version("1")
                    .build(),
            )
            .build();
        autoscaling
            .start_instance_refresh()
            .auto_scaling_group_name("i-app")
            .desired_configuration(desired)
            .send()
    };

    // The role of the other template's profile is not listed: no PassRole for it.
    let (code, message) = refused(
        start(&templates[1]).await,
        "a template whose role is not passable",
    );
    assert_eq!(code, "AccessDenied", "{message}");
    assert!(
        message.starts_with(&format!(
            "You are not authorized to use launch template: {}",
            templates[1]
        )),
        "{message}"
    );
    assert!(
        message.contains("iam:PassRole on resource: arn:aws:iam::123456789012:role/other-role"),
        "{message}"
    );

    // Each permission the rendered policy grants for the listed role, removed in turn.
    for action in ["iam:PassRole", "ec2:CreateTags", "ec2:RunInstances"] {
        let full = role_policy(&deployer, LAMBDA_ROLE).await;
        remove_actions(&deployer, LAMBDA_ROLE, &[action]).await;
        let started = start(&templates[0]).await;
        let without = format!("a refresh without {action}");
        assert_denied(started, &without, action);
        put_role_policy(&deployer, LAMBDA_ROLE, &full).await;
    }
    // Each condition the rendered policy puts on them, pointed elsewhere in turn.
    let conditions = [
        (
            "iam:PassRole",
            json!({"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}),
        ),
        (
            "ec2:CreateTags",
            json!({"StringEquals": {"ec2:CreateAction": "CreateVolume"}}),
        ),
        (
            "ec2:RunInstances",
            json!({"ArnLike": {"ec2:LaunchTemplate": "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-other"}}),
        ),
    ];
    for (action, condition) in conditions {
        let full = role_policy(&deployer, LAMBDA_ROLE).await;
        let mut changed = full.clone();
        let statement = changed["Statement"]
            .as_array_mut()
            .and_then(|all| {
                all.iter_mut().find(|s| {
                    s["Action"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == action))
                })
            })
            .unwrap_or_else(|| panic!("no statement grants {action}: {full:#}"));
        assert!(
            statement.get("Condition").is_some(),
            "the rendered policy puts no condition on {action}: {statement:#}"
        );
        statement["Condition"] = condition.clone();
        put_role_policy(&deployer, LAMBDA_ROLE, &changed).await;
        let started = start(&templates[0]).await;
        assert_denied(
            started,
            &format!("a refresh with {action} under {condition}"),
            action,
        );
        put_role_policy(&deployer, LAMBDA_ROLE, &full).await;
    }
    start(&templates[0])
        .await
        .expect("the rendered policy allows a refresh with the listed role's template");
}

/// A permission removed from the deployed Lambda role fails the rollout, and the failure
/// names the refused action.
#[tokio::test(flavor = "multi_thread")]
async fn a_permission_removed_from_the_lambda_role_fails_the_rollout_naming_it() {
    let (moto, deployer, execution) = rollout_without(
        "p-a",
        LAMBDA_ROLE,
        "ec2:CreateLaunchTemplateVersion",
        "iam-missing",
    )
    .await;
    assert_ne!(execution.status().as_str(), "SUCCEEDED", "{execution:?}");
    let items = rollout_items(&deployer, "iam-missing").await;
    let record = items.get("p-a").unwrap_or_else(|| {
        panic!(
            "no record of p-a: {items:?} {execution:?}\n{:#}",
            moto.iam_denials()
        )
    });
    assert_eq!(record.status, "Failed", "{items:?}");
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("ec2:CreateLaunchTemplateVersion")
            && reason.contains("UnauthorizedOperation"),
        "{items:?}"
    );
    let refused: Vec<Value> = denials(&moto);
    assert!(
        refused
            .iter()
            .all(|d| d["action"] == "ec2:CreateLaunchTemplateVersion")
            && refused.iter().any(|d| d["caller"]
                .as_str()
                .is_some_and(|c| c.ends_with("/asg-refresh-local-refresher"))),
        "{refused:#?}"
    );
    assert!(
        refresh_intervals(&moto).0.is_empty(),
        "a refresh started without its launch template version"
    );
}

/// The state machine calls the Lambdas as its own role: without lambda:InvokeFunction on the
/// planner the execution fails at its first Task and no refresh starts.
#[tokio::test(flavor = "multi_thread")]
async fn the_state_machine_role_must_allow_invoking_the_functions() {
    let (moto, _, execution) =
        rollout_without("s-a", STATES_ROLE, "lambda:InvokeFunction", "iam-states").await;
    assert_eq!(execution.status().as_str(), "FAILED", "{execution:?}");
    let refused = denials(&moto);
    assert!(!refused.is_empty(), "nothing was refused: {execution:?}");
    // The planner first; the failure path's own Task (the refresher) is refused as well.
    assert_eq!(
        refused[0]["resource"],
        format!("arn:aws:lambda:us-east-1:123456789012:function:{PLANNER_FUNCTION}"),
        "{refused:#?}"
    );
    for denial in &refused {
        assert_eq!(denial["action"], "lambda:InvokeFunction", "{refused:#?}");
        assert!(
            denial["caller"]
                .as_str()
                .is_some_and(|c| c.contains("assumed-role/asg-refresh-local-states/")),
            "{refused:#?}"
        );
    }
    assert!(refresh_intervals(&moto).0.is_empty());
}
