//! Least privilege of the rendered IAM documents: scoped ARNs, no `*` on a mutating
//! action, confused-deputy guards in trust policies, targets honoured.

use std::path::Path;

use generator::config::{self, StackConfig};
use generator::iam::{allowed, documents, trust_as_resource_policy, Document};
use serde_json::{json, Value};

fn config(targets: &str, extra: &str) -> StackConfig {
    let text = format!(
        "name = \"prod\"\nregion = \"ap-south-1\"\naccount_id = \"444455556666\"\n[targets]\n{targets}\n{extra}"
    );
    config::parse(&text, Path::new("prod.toml")).expect("valid test config")
}

fn doc<'a>(docs: &'a [Document], role: &str, kind: &str) -> &'a Value {
    &docs.iter().find(|d| d.role == role && d.kind == kind).expect("document exists").json
}

/// Read-only by name: Describe*, Get*, List*.
fn is_read_only(action: &str) -> bool {
    let verb = action.split(':').nth(1).unwrap_or_default();
    ["Describe", "Get", "List"].iter().any(|p| verb.starts_with(p))
}

#[test]
fn no_star_resource_on_a_mutating_action() {
    for cfg in [
        config("asgs = [\"a\", \"b\"]", ""),
        config("tags = { \"group\" = \"web\" }", ""),
        config("asgs = [\"a\"]\ntags = { \"group\" = \"web\" }", "[refresh]\ninstance_roles = [\"web-role\"]"),
    ] {
        for d in documents(&cfg).unwrap().iter().filter(|d| d.kind == "policy") {
            for (action, resource) in allowed(&d.json) {
                if resource == "*" {
                    assert!(is_read_only(&action), "{}: {action} on *", d.file_name);
                } else {
                    assert!(
                        resource.contains(":444455556666:") || resource.contains("::image/"),
                        "{}: {action} on {resource} is not scoped to the account",
                        d.file_name
                    );
                }
            }
        }
    }
}

#[test]
fn refresh_actions_only_on_named_or_tagged_groups() {
    let docs = documents(&config("asgs = [\"orders-asg\"]\ntags = { \"group\" = \"web\" }", "")).unwrap();
    let policy = doc(&docs, "lambda", "policy");
    let statements = policy["Statement"].as_array().unwrap();
    let named = statements.iter().find(|s| s["Sid"] == "RefreshNamedGroups").unwrap();
    assert_eq!(
        named["Resource"],
        json!(["arn:aws:autoscaling:ap-south-1:444455556666:autoScalingGroup:*:autoScalingGroupName/orders-asg"])
    );
    let tagged = statements.iter().find(|s| s["Sid"] == "RefreshTaggedGroups").unwrap();
    assert_eq!(tagged["Condition"], json!({"StringEquals": {"aws:ResourceTag/group": "web"}}));
    // With names only, no statement reaches other groups by tag.
    let docs = documents(&config("asgs = [\"orders-asg\"]", "")).unwrap();
    let statements = doc(&docs, "lambda", "policy")["Statement"].as_array().unwrap().clone();
    assert!(!statements.iter().any(|s| s["Sid"] == "RefreshTaggedGroups"));
    assert!(!statements.iter().any(|s| s["Sid"] == "PassInstanceRoles"));
}

#[test]
fn trust_policies_guard_against_confused_deputies() {
    let docs = documents(&config("asgs = [\"a\"]", "")).unwrap();
    let lambda = &doc(&docs, "lambda", "trust")["Statement"][0];
    assert_eq!(lambda["Principal"], json!({"Service": "lambda.amazonaws.com"}));
    assert_eq!(lambda["Action"], "sts:AssumeRole");
    assert_eq!(lambda["Condition"]["StringEquals"]["aws:SourceAccount"], "444455556666");
    let states = &doc(&docs, "states", "trust")["Statement"][0];
    assert_eq!(states["Principal"], json!({"Service": "states.amazonaws.com"}));
    assert_eq!(states["Condition"]["StringEquals"]["aws:SourceAccount"], "444455556666");
    assert_eq!(
        states["Condition"]["ArnLike"]["aws:SourceArn"],
        "arn:aws:states:ap-south-1:444455556666:stateMachine:asg-refresh-prod"
    );
}

#[test]
fn state_machine_role_invokes_only_the_stack_functions() {
    let docs = documents(&config("asgs = [\"a\"]", "")).unwrap();
    let invoked: Vec<String> = allowed(doc(&docs, "states", "policy"))
        .into_iter()
        .filter(|(a, _)| a == "lambda:InvokeFunction")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        invoked,
        vec![
            "arn:aws:lambda:ap-south-1:444455556666:function:asg-refresh-prod-planner",
            "arn:aws:lambda:ap-south-1:444455556666:function:asg-refresh-prod-planner:*",
            "arn:aws:lambda:ap-south-1:444455556666:function:asg-refresh-prod-refresher",
            "arn:aws:lambda:ap-south-1:444455556666:function:asg-refresh-prod-refresher:*",
        ]
    );
    // Child executions of this machine only, never a machine whose name merely starts the same.
    for (action, resource) in allowed(doc(&docs, "states", "policy")) {
        if action.starts_with("states:") && resource.contains(":execution:") {
            assert!(
                resource.contains(":execution:asg-refresh-prod:") || resource.contains(":execution:asg-refresh-prod/"),
                "{action} on {resource}"
            );
        }
    }
}

#[test]
fn instance_roles_are_passed_only_to_ec2() {
    let docs = documents(&config("asgs = [\"a\"]", "[refresh]\ninstance_roles = [\"web-role\"]")).unwrap();
    let statements = doc(&docs, "lambda", "policy")["Statement"].as_array().unwrap().clone();
    let pass = statements.iter().find(|s| s["Sid"] == "PassInstanceRoles").unwrap();
    assert_eq!(pass["Resource"], json!(["arn:aws:iam::444455556666:role/web-role"]));
    assert_eq!(pass["Condition"]["StringEquals"]["iam:PassedToService"], "ec2.amazonaws.com");
}

#[test]
fn china_regions_use_their_partition() {
    let text = "name = \"cn\"\nregion = \"cn-north-1\"\naccount_id = \"444455556666\"\n[targets]\nasgs = [\"a\"]\n";
    let docs = documents(&config::parse(text, Path::new("cn.toml")).unwrap()).unwrap();
    let trust = &doc(&docs, "lambda", "trust")["Statement"][0];
    assert_eq!(trust["Principal"]["Service"], "lambda.amazonaws.com.cn");
    for (_, resource) in allowed(doc(&docs, "lambda", "policy")) {
        assert!(resource == "*" || resource.starts_with("arn:aws-cn:"), "{resource}");
    }
}

#[test]
fn trust_as_resource_policy_adds_the_role() {
    let docs = documents(&config("asgs = [\"a\"]", "")).unwrap();
    let trust = doc(&docs, "states", "trust");
    let converted = trust_as_resource_policy(trust, "arn:aws:iam::444455556666:role/asg-refresh-prod-states");
    assert_eq!(converted["Statement"][0]["Resource"], "arn:aws:iam::444455556666:role/asg-refresh-prod-states");
    assert_eq!(converted["Statement"][0]["Principal"], trust["Statement"][0]["Principal"]);
}
