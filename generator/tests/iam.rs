//! Least privilege of the rendered IAM documents: scoped ARNs, no `*` on a mutating
//! action, confused-deputy guards in trust policies, targets honoured.

use std::path::Path;

use generator::config::{self, StackConfig};
use generator::iam::{
    allowed, deployer_document, documents, is_star_only, trust_as_resource_policy, Document,
    LOG_DELIVERY_ACTIONS,
};
use serde_json::{json, Value};

fn config(targets: &str, extra: &str) -> StackConfig {
    let text = format!(
        "name = \"prod\"\nregion = \"ap-south-1\"\naccount_id = \"444455556666\"\n[targets]\n{targets}\n{extra}"
    );
    config::parse(&text, Path::new("prod.toml")).expect("valid test config")
}

fn doc<'a>(docs: &'a [Document], role: &str, kind: &str) -> &'a Value {
    &docs
        .iter()
        .find(|d| d.role == role && d.kind == kind)
        .expect("document exists")
        .json
}

/// The statements of `role`'s policy.
fn statements_of(docs: &[Document], role: &str) -> Vec<Value> {
    doc(docs, role, "policy")["Statement"]
        .as_array()
        .unwrap()
        .clone()
}

/// The statement `sid` of `statements`; panics when there is none.
fn by_sid<'a>(statements: &'a [Value], sid: &str) -> &'a Value {
    statements
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid}"))
}

/// Read-only by name: Describe*, Get*, List*.
fn is_read_only(action: &str) -> bool {
    let verb = action.split(':').nth(1).unwrap_or_default();
    ["Describe", "Get", "List"]
        .iter()
        .any(|p| verb.starts_with(p))
}

#[test]
fn no_star_resource_on_a_mutating_action() {
    for cfg in [
        config("asgs = [\"a\", \"b\"]", ""),
        config("tags = { \"group\" = \"web\" }", ""),
        config(
            "asgs = [\"a\"]\ntags = { \"group\" = \"web\" }",
            "[refresh]\ninstance_roles = [\"web-role\"]",
        ),
    ] {
        let mut policies: Vec<Document> = documents(&cfg)
            .unwrap()
            .into_iter()
            .filter(|d| d.kind == "policy")
            .collect();
        policies.push(deployer_document(&cfg).unwrap());
        for d in &policies {
            for (action, resource) in allowed(&d.json) {
                if resource == "*" {
                    // Only where AWS defines no resource type for the action.
                    assert!(
                        is_read_only(&action) || is_star_only(&action),
                        "{}: {action} on *",
                        d.file_name
                    );
                } else {
                    assert!(
                        resource.contains(":444455556666:")
                            || resource.contains("::image/")
                            || resource.contains("::snapshot/"),
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
    let docs = documents(&config(
        "asgs = [\"orders-asg\"]\ntags = { \"group\" = \"web\" }",
        "",
    ))
    .unwrap();
    let policy = doc(&docs, "lambda", "policy");
    let statements = policy["Statement"].as_array().unwrap();
    let named = by_sid(statements, "RefreshNamedGroups");
    assert_eq!(
        named["Resource"],
        json!(["arn:aws:autoscaling:ap-south-1:444455556666:autoScalingGroup:*:autoScalingGroupName/orders-asg"])
    );
    let tagged = by_sid(statements, "RefreshTaggedGroups");
    assert_eq!(
        tagged["Condition"],
        json!({"StringEquals": {"aws:ResourceTag/group": "web"}})
    );
    // With names only, no statement reaches other groups by tag.
    let docs = documents(&config("asgs = [\"orders-asg\"]", "")).unwrap();
    let statements = statements_of(&docs, "lambda");
    assert!(!statements.iter().any(|s| s["Sid"] == "RefreshTaggedGroups"));
    assert!(!statements.iter().any(|s| s["Sid"] == "PassInstanceRoles"));
}

#[test]
fn trust_policies_guard_against_confused_deputies() {
    let docs = documents(&config("asgs = [\"a\"]", "")).unwrap();
    let lambda = &doc(&docs, "lambda", "trust")["Statement"][0];
    assert_eq!(
        lambda["Principal"],
        json!({"Service": "lambda.amazonaws.com"})
    );
    assert_eq!(lambda["Action"], "sts:AssumeRole");
    assert_eq!(
        lambda["Condition"]["StringEquals"]["aws:SourceAccount"],
        "444455556666"
    );
    let states = &doc(&docs, "states", "trust")["Statement"][0];
    assert_eq!(
        states["Principal"],
        json!({"Service": "states.amazonaws.com"})
    );
    assert_eq!(
        states["Condition"]["StringEquals"]["aws:SourceAccount"],
        "444455556666"
    );
    // The machine, its executions and its Distributed Map child executions, which run under
    // the same role; no other machine, not even one whose name starts the same.
    assert_eq!(
        states["Condition"]["ArnLike"]["aws:SourceArn"],
        json!([
            "arn:aws:states:ap-south-1:444455556666:stateMachine:asg-refresh-prod",
            "arn:aws:states:ap-south-1:444455556666:execution:asg-refresh-prod:*",
            "arn:aws:states:ap-south-1:444455556666:execution:asg-refresh-prod/*:*"
        ])
    );
}

#[test]
fn state_machine_role_may_deliver_its_logs() {
    // Without these on "*", CreateStateMachine and UpdateStateMachine with a logging
    // configuration are refused: "The state machine IAM Role is not authorized to access the
    // Log Destination".
    let docs = documents(&config("asgs = [\"a\"]", "")).unwrap();
    let granted = allowed(doc(&docs, "states", "policy"));
    for action in [
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    ] {
        assert!(LOG_DELIVERY_ACTIONS.contains(&action), "{action}");
        assert!(
            granted.contains(&(action.to_string(), "*".to_string())),
            "{action} on * is missing"
        );
    }
    // The Lambdas' role gets none of them.
    let lambda = allowed(doc(&docs, "lambda", "policy"));
    assert!(!lambda
        .iter()
        .any(|(a, _)| LOG_DELIVERY_ACTIONS.contains(&a.as_str()) && a != "logs:DescribeLogGroups"));
}

#[test]
fn run_instances_only_through_a_launch_template_of_the_account() {
    let docs = documents(&config("asgs = [\"a\"]", "")).unwrap();
    let statements = statements_of(&docs, "lambda");
    let run: Vec<&Value> = statements
        .iter()
        .filter(|s| {
            s["Action"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("ec2:RunInstances")))
        })
        .collect();
    assert_eq!(run.len(), 1, "one statement allows RunInstances");
    assert_eq!(
        run[0]["Condition"],
        json!({"ArnLike": {"ec2:LaunchTemplate": "arn:aws:ec2:ap-south-1:444455556666:launch-template/*"}})
    );
    // Not IsLaunchTemplateResource: a group's subnets are not the template's, and AWS would
    // refuse the refresh.
    assert!(!run[0]["Condition"]
        .to_string()
        .contains("IsLaunchTemplateResource"));
    let versions = by_sid(&statements, "NewLaunchTemplateVersions");
    assert_eq!(
        versions["Resource"],
        "arn:aws:ec2:ap-south-1:444455556666:launch-template/*"
    );
}

#[test]
fn deployer_policy_covers_the_commands_on_this_stack_only() {
    let cfg = config("asgs = [\"a\"]", "");
    let deployer = deployer_document(&cfg).unwrap();
    assert_eq!(deployer.file_name, "deployer.policy.json");
    let granted = allowed(&deployer.json);
    let has = |action: &str, resource: &str| {
        granted.contains(&(action.to_string(), resource.to_string()))
    };
    let account = "arn:aws:states:ap-south-1:444455556666";
    // Deploy and destroy.
    for role in ["asg-refresh-prod-lambda", "asg-refresh-prod-states"] {
        let arn = format!("arn:aws:iam::444455556666:role/{role}");
        for action in [
            "iam:CreateRole",
            "iam:PutRolePolicy",
            "iam:UpdateAssumeRolePolicy",
            "iam:DeleteRole",
        ] {
            assert!(has(action, &arn), "{action} on {arn}");
        }
    }
    assert!(has(
        "dynamodb:UpdateContinuousBackups",
        "arn:aws:dynamodb:ap-south-1:444455556666:table/asg-refresh-prod"
    ));
    assert!(has(
        "lambda:UpdateFunctionCode",
        "arn:aws:lambda:ap-south-1:444455556666:function:asg-refresh-prod-planner"
    ));
    assert!(has(
        "states:CreateStateMachine",
        &format!("{account}:stateMachine:asg-refresh-prod")
    ));
    // Rollout, status and approve.
    assert!(has(
        "states:StartExecution",
        &format!("{account}:stateMachine:asg-refresh-prod")
    ));
    assert!(has(
        "states:DescribeExecution",
        &format!("{account}:execution:asg-refresh-prod:*")
    ));
    assert!(has("states:SendTaskSuccess", "*"));
    assert!(has(
        "dynamodb:Query",
        "arn:aws:dynamodb:ap-south-1:444455556666:table/asg-refresh-prod"
    ));
    // Each role is passed only to the service that runs as it.
    let statements = deployer.json["Statement"].as_array().unwrap();
    for (sid, service) in [
        ("PassLambdaRoles", "lambda.amazonaws.com"),
        ("PassStateMachineRole", "states.amazonaws.com"),
    ] {
        let pass = by_sid(statements, sid);
        assert_eq!(
            pass["Condition"]["StringEquals"]["iam:PassedToService"],
            service
        );
    }
    // Abort: stop the execution, record and release the lock, cancel or roll back the
    // refreshes of the stack's own groups only.
    assert!(has(
        "states:StopExecution",
        &format!("{account}:execution:asg-refresh-prod:*")
    ));
    assert!(has(
        "dynamodb:DeleteItem",
        "arn:aws:dynamodb:ap-south-1:444455556666:table/asg-refresh-prod"
    ));
    for (action, resource) in &granted {
        if action == "autoscaling:CancelInstanceRefresh"
            || action == "autoscaling:RollbackInstanceRefresh"
        {
            assert!(
                resource.contains(":autoScalingGroup:")
                    && !resource.ends_with("autoScalingGroupName/*")
                    || by_condition_only(statements, action),
                "{action} on {resource}"
            );
        }
    }
    // Nothing of another stack: every ARN names this stack's resources (or its target groups).
    for (action, resource) in &granted {
        assert!(
            resource == "*"
                || resource.contains("asg-refresh-prod")
                || resource.contains(":autoScalingGroup:"),
            "{action} on {resource}"
        );
    }
}

/// Whether every statement granting `action` on all groups limits it with a tag condition.
fn by_condition_only(statements: &[serde_json::Value], action: &str) -> bool {
    statements
        .iter()
        .filter(|st| {
            st["Action"] == action
                || st["Action"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == action))
        })
        .filter(|st| {
            st["Resource"]
                .as_str()
                .is_some_and(|r| r.ends_with("autoScalingGroupName/*"))
        })
        .all(|st| st["Condition"]["StringEquals"].is_object())
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
                resource.contains(":execution:asg-refresh-prod:")
                    || resource.contains(":execution:asg-refresh-prod/"),
                "{action} on {resource}"
            );
        }
    }
}

#[test]
fn instance_roles_are_passed_only_to_ec2() {
    let docs = documents(&config(
        "asgs = [\"a\"]",
        "[refresh]\ninstance_roles = [\"web-role\"]",
    ))
    .unwrap();
    let statements = statements_of(&docs, "lambda");
    let pass = by_sid(&statements, "PassInstanceRoles");
    assert_eq!(
        pass["Resource"],
        json!(["arn:aws:iam::444455556666:role/web-role"])
    );
    assert_eq!(
        pass["Condition"]["StringEquals"]["iam:PassedToService"],
        "ec2.amazonaws.com"
    );
}

#[test]
fn china_regions_use_their_partition() {
    let text = "name = \"cn\"\nregion = \"cn-north-1\"\naccount_id = \"444455556666\"\n[targets]\nasgs = [\"a\"]\n";
    let docs = documents(&config::parse(text, Path::new("cn.toml")).unwrap()).unwrap();
    let trust = &doc(&docs, "lambda", "trust")["Statement"][0];
    assert_eq!(trust["Principal"]["Service"], "lambda.amazonaws.com.cn");
    let resources: Vec<String> = allowed(doc(&docs, "lambda", "policy"))
        .into_iter()
        .map(|(_, resource)| resource)
        .collect();
    assert!(
        resources
            .iter()
            .all(|r| r == "*" || r.starts_with("arn:aws-cn:")),
        "{resources:?}"
    );
}

#[test]
fn trust_as_resource_policy_adds_the_role() {
    let docs = documents(&config("asgs = [\"a\"]", "")).unwrap();
    let trust = doc(&docs, "states", "trust");
    let converted = trust_as_resource_policy(
        trust,
        "arn:aws:iam::444455556666:role/asg-refresh-prod-states",
    );
    assert_eq!(
        converted["Statement"][0]["Resource"],
        "arn:aws:iam::444455556666:role/asg-refresh-prod-states"
    );
    assert_eq!(
        converted["Statement"][0]["Principal"],
        trust["Statement"][0]["Principal"]
    );
}

#[test]
fn completer_role_exists_only_with_events_and_answers_tokens_without_touching_the_fleet() {
    let events = documents(&config("asgs = [\"a\"]", "")).unwrap();
    let roles: Vec<(&str, &str)> = events.iter().map(|d| (d.role, d.kind)).collect();
    assert_eq!(
        roles,
        [
            ("lambda", "trust"),
            ("lambda", "policy"),
            ("states", "trust"),
            ("states", "policy"),
            ("completer", "trust"),
            ("completer", "policy"),
        ]
    );
    let completer = doc(&events, "completer", "policy");
    let mut granted = allowed(completer);
    granted.sort();
    let table = "arn:aws:dynamodb:ap-south-1:444455556666:table/asg-refresh-prod";
    let log_group =
        "arn:aws:logs:ap-south-1:444455556666:log-group:/aws/lambda/asg-refresh-prod-completer";
    let mut expected: Vec<(String, String)> = vec![
        ("dynamodb:GetItem".into(), table.into()),
        ("dynamodb:UpdateItem".into(), table.into()),
        ("states:SendTaskFailure".into(), "*".into()),
        ("states:SendTaskSuccess".into(), "*".into()),
    ];
    for action in [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    ] {
        expected.push((action.into(), log_group.into()));
        expected.push((action.into(), format!("{log_group}:*")));
    }
    expected.sort();
    assert_eq!(granted, expected);
    // It is a Lambda: the Lambda role's trust policy, with its confused-deputy guard.
    assert_eq!(
        doc(&events, "completer", "trust"),
        doc(&events, "lambda", "trust")
    );
    // The refresher answers a token whose event came first: only with events.
    let answers = |docs: &[Document]| {
        allowed(doc(docs, "lambda", "policy"))
            .iter()
            .any(|(a, r)| a == "states:SendTaskSuccess" && r == "*")
    };
    assert!(answers(&events));
    let poll = documents(&config(
        "asgs = [\"a\"]",
        "[rollout]\ncompletion = \"poll\"",
    ))
    .unwrap();
    assert_eq!(poll.len(), 4);
    assert!(!answers(&poll));
}

#[test]
fn deployer_manages_the_rule_and_the_completer_of_this_stack() {
    for extra in ["", "[rollout]\ncompletion = \"poll\""] {
        let deployer = deployer_document(&config("asgs = [\"a\"]", extra)).unwrap();
        let granted = allowed(&deployer.json);
        let has = |action: &str, resource: &str| {
            granted.iter().any(|(a, r)| a == action && r == resource)
        };
        let rule = "arn:aws:events:ap-south-1:444455556666:rule/asg-refresh-prod-refresh-events";
        for action in [
            "events:PutRule",
            "events:PutTargets",
            "events:DeleteRule",
            "events:RemoveTargets",
        ] {
            assert!(has(action, rule), "{action}");
        }
        let completer =
            "arn:aws:lambda:ap-south-1:444455556666:function:asg-refresh-prod-completer";
        assert!(has("lambda:AddPermission", completer));
        assert!(has("lambda:CreateFunction", completer));
        assert!(has(
            "iam:PassRole",
            "arn:aws:iam::444455556666:role/asg-refresh-prod-completer"
        ));
        for (action, resource) in &granted {
            if action.starts_with("events:") {
                assert_eq!(resource, rule, "{action}");
            }
        }
    }
}
