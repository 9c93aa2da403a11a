//! IAM trust and permission policies of the stack's roles (the Lambdas', the state machine's
//! and, with `completion = "events"`, the completer's), rendered from the minijinja templates
//! in `templates/iam/`.

use minijinja::{context, Environment};
use serde_json::Value;

use crate::config::{Completion, StackConfig};
use crate::names::Stack;

const TEMPLATES: [(&str, &str); 5] = [
    (
        "lambda.trust.json",
        include_str!("../../templates/iam/lambda.trust.json.j2"),
    ),
    (
        "lambda.policy.json",
        include_str!("../../templates/iam/lambda.policy.json.j2"),
    ),
    (
        "states.trust.json",
        include_str!("../../templates/iam/states.trust.json.j2"),
    ),
    (
        "states.policy.json",
        include_str!("../../templates/iam/states.policy.json.j2"),
    ),
    (
        "completer.policy.json",
        include_str!("../../templates/iam/completer.policy.json.j2"),
    ),
];

/// The roles a stack has, each with its trust template and permission template: the
/// completer's only with `completion = "events"`. The completer is a Lambda: it has the
/// Lambda role's trust policy.
fn roles(config: &StackConfig) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut roles = vec![
        ("lambda", "lambda.trust.json", "lambda.policy.json"),
        ("states", "states.trust.json", "states.policy.json"),
    ];
    if config.rollout.completion == Completion::Events {
        roles.push(("completer", "lambda.trust.json", "completer.policy.json"));
    }
    roles
}

/// The deployer's permission policy (`iam/deployer.policy.json`): what a person or CI role
/// needs to run deploy, destroy, rollout, status and approve on the stack.
const DEPLOYER_TEMPLATE: (&str, &str) = (
    "deployer.policy.json",
    include_str!("../../templates/iam/deployer.policy.json.j2"),
);

/// The file name of the deployer's policy under `iam/`.
pub const DEPLOYER_FILE: &str = "deployer.policy.json";

/// What the state machine's own role needs so that CreateStateMachine and UpdateStateMachine
/// accept its logging configuration (Step Functions developer guide, "IAM policies for
/// logging to CloudWatch Logs"). CloudWatch Logs defines no resource type for them: `*`.
pub const LOG_DELIVERY_ACTIONS: [&str; 8] = [
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
];

/// Answering a task token: the token names the execution, and Step Functions defines no
/// resource type for these actions (the deployer answers approvals with them).
pub const TASK_TOKEN_ACTIONS: [&str; 2] = ["states:SendTaskFailure", "states:SendTaskSuccess"];

/// Whether AWS defines no resource type for `action`, so that `"Resource": "*"` is the only
/// way to allow it (Service Authorization Reference): log delivery, and answering a task
/// token.
pub fn is_star_only(action: &str) -> bool {
    LOG_DELIVERY_ACTIONS.contains(&action) || TASK_TOKEN_ACTIONS.contains(&action)
}

/// Actions that change an ASG's refresh: allowed only on the stack's targets. The planner
/// pins targets on `$Latest`/`$Default` to a numbered version (UpdateAutoScalingGroup).
pub const REFRESH_ACTIONS: [&str; 4] = [
    "autoscaling:CancelInstanceRefresh",
    "autoscaling:RollbackInstanceRefresh",
    "autoscaling:StartInstanceRefresh",
    "autoscaling:UpdateAutoScalingGroup",
];

/// The ARNs of `[rollout] wave_alarms`: DescribeAlarms and DescribeAlarmHistory take the
/// `alarm` resource type (Service Authorization Reference, Amazon CloudWatch), so the gate reads
/// exactly these alarms.
pub fn wave_alarm_arns(config: &StackConfig) -> Vec<String> {
    let stack = Stack::new(config);
    config
        .rollout
        .wave_alarms
        .iter()
        .map(|name| {
            format!(
                "arn:{}:cloudwatch:{}:{}:alarm:{name}",
                stack.partition, stack.region, stack.account
            )
        })
        .collect()
}

/// One rendered policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The role the document belongs to (`lambda`, `states` or `completer`; `deployer` for the
    /// policy of whoever runs the commands, which no stack role carries).
    pub role: &'static str,
    /// `trust` or `policy`.
    pub kind: &'static str,
    /// The IAM role's name, e.g. `asg-refresh-prod-lambda`.
    pub role_name: String,
    /// File name under `iam/`, e.g. `asg-refresh-prod-lambda.policy.json`.
    pub file_name: String,
    pub json: Value,
}

impl Document {
    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(&self.json).expect("json values serialise");
        out.push('\n');
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error("template {name}: {source}")]
    Template {
        name: &'static str,
        #[source]
        source: minijinja::Error,
    },
    #[error("template {name} did not render valid JSON: {source}")]
    Json {
        name: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The template environment with every IAM template.
fn environment() -> Result<Environment<'static>, IamError> {
    let mut env = Environment::new();
    // Values are quoted explicitly with `tojson`; no automatic JSON escaping.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    for (name, source) in TEMPLATES.into_iter().chain([DEPLOYER_TEMPLATE]) {
        env.add_template(name, source)
            .map_err(|source| IamError::Template { name, source })?;
    }
    Ok(env)
}

/// Renders one template to JSON.
fn render(
    env: &Environment<'_>,
    name: &'static str,
    ctx: &minijinja::Value,
) -> Result<Value, IamError> {
    let text = env
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|source| IamError::Template { name, source })?;
    serde_json::from_str(&text).map_err(|source| IamError::Json { name, source })
}

/// Renders each role's trust policy and permission policy: the Lambda role's and the state
/// machine role's, then (with `completion = "events"`) the completer role's.
pub fn documents(config: &StackConfig) -> Result<Vec<Document>, IamError> {
    let stack = Stack::new(config);
    let env = environment()?;
    let ec2_account = format!(
        "arn:{}:ec2:{}:{}:*",
        stack.partition, stack.region, stack.account
    );
    let ec2_images = format!("arn:{}:ec2:{}::image/*", stack.partition, stack.region);
    let ec2_snapshots = format!("arn:{}:ec2:{}::snapshot/*", stack.partition, stack.region);
    let log_groups = |functions: &[String]| {
        functions
            .iter()
            .flat_map(|f| {
                let group = stack.lambda_log_group_arn(f);
                [group.clone(), format!("{group}:*")]
            })
            .collect::<Vec<_>>()
    };
    let events = config.rollout.completion == Completion::Events;
    // The state machine invokes only the planner and the refresher; EventBridge invokes the
    // completer (through the function's resource policy, not a role).
    let function_arns = vec![
        stack.function_arn(&stack.planner_function()),
        stack.function_arn(&stack.refresher_function()),
    ];
    let ctx = context! {
        domain => stack.service_domain(),
        account => stack.account,
        state_machine_arn => stack.state_machine_arn(),
        executions_arns => stack.executions_arn_patterns(),
        express_arns => stack.express_arn_patterns(),
        map_runs_arn => stack.map_runs_arn_pattern(),
        function_arns => function_arns,
        lambda_log_groups => log_groups(&[stack.planner_function(), stack.refresher_function()]),
        completer_log_groups => log_groups(&[stack.completer_function()]),
        answers_tokens => events,
        table_arn => stack.table_arn(),
        refresh_actions => REFRESH_ACTIONS,
        asg_arns => crate::groups::all_names(config).map(|a| stack.asg_arn(a)).collect::<Vec<_>>(),
        group_tag_sets => crate::groups::tag_sets(config),
        any_asg_arn => stack.asg_arn("*"),
        tags => config.targets.tags,
        launch_templates_arn => stack.launch_templates_arn_pattern(),
        ec2_account_resources => ec2_account,
        ec2_images => ec2_images,
        ec2_snapshots => ec2_snapshots,
        log_delivery_actions => LOG_DELIVERY_ACTIONS,
        instance_profiles_arn => format!("arn:{}:iam::{}:instance-profile/*", stack.partition, stack.account),
        instance_role_arns => config.refresh.instance_roles.iter().map(|r| stack.role_arn(r)).collect::<Vec<_>>(),
        wave_alarm_arns => wave_alarm_arns(config),
    };
    let mut out = Vec::new();
    for (role, trust, policy) in roles(config) {
        let role_name = match role {
            "lambda" => stack.lambda_role(),
            "states" => stack.states_role(),
            _ => stack.completer_role(),
        };
        for (kind, template) in [("trust", trust), ("policy", policy)] {
            out.push(Document {
                role,
                kind,
                file_name: format!("{role_name}.{kind}.json"),
                role_name: role_name.clone(),
                json: render(&env, template, &ctx)?,
            });
        }
    }
    if let Some(topic) = stack.notify_topic_arn(config) {
        for document in out
            .iter_mut()
            .filter(|d| d.role == "lambda" && d.kind == "policy")
        {
            push_statements(&mut document.json, notify_statements(&stack, &topic));
        }
    }
    Ok(out)
}

/// The source notifications carry on the default event bus.
pub const NOTIFY_EVENT_SOURCE: &str = "asg-refresh";

/// What the planner and refresher need to notify (`[notify]`): Publish on that one topic, and
/// PutEvents on the default bus only for events whose source is `asg-refresh` (EventBridge
/// supplies `events:source` on PutEvents: "Actions, resources, and condition keys for the
/// Custom Event Bus", <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-custom-bus-access-actions.html>,
/// and the Service Authorization Reference for Amazon EventBridge). A KMS-encrypted topic of
/// the operator's also needs kms:GenerateDataKey and kms:Decrypt on its key: not granted.
fn notify_statements(stack: &Stack, topic: &str) -> Vec<Value> {
    vec![
        serde_json::json!({
            "Sid": "PublishNotifications",
            "Effect": "Allow",
            "Action": "sns:Publish",
            "Resource": topic,
        }),
        serde_json::json!({
            "Sid": "PutNotificationEvents",
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": stack.default_event_bus_arn(),
            "Condition": {"StringEquals": {"events:source": NOTIFY_EVENT_SOURCE}},
        }),
    ]
}

/// The deployer's rights on the stack's own topic (`create_topic`): whatever `[notify]` says
/// now, deploy deletes a topic the stack no longer wants and destroy deletes it.
fn deployer_topic_statement(stack: &Stack) -> Value {
    serde_json::json!({
        "Sid": "NotificationsTopic",
        "Effect": "Allow",
        "Action": [
            "sns:CreateTopic",
            "sns:DeleteTopic",
            "sns:GetTopicAttributes",
            "sns:ListTagsForResource",
            "sns:TagResource",
        ],
        "Resource": stack.notifications_topic_arn(),
    })
}

/// What `cargo xtask drift` reads besides the table and the executions: the targeted groups,
/// their launch template versions and their instances. These Describe actions support no
/// resource-level permission (Service Authorization Reference, Amazon EC2 Auto Scaling and
/// Amazon EC2): `*`, read-only.
fn deployer_drift_statement() -> Value {
    serde_json::json!({
        "Sid": "DriftReads",
        "Effect": "Allow",
        "Action": [
            "autoscaling:DescribeAutoScalingGroups",
            "ec2:DescribeInstances",
            "ec2:DescribeLaunchTemplateVersions",
        ],
        "Resource": "*",
    })
}

/// What `cargo xtask abort` does with the operator's credentials (it runs the refresher's own
/// in-flight and settle steps in-process, xtask/src/rollout/abort.rs): stop the execution;
/// record the abort and the stop request and release the lock (PutItem, DeleteItem: the
/// ProgressTable statement has the reads and UpdateItem); cancel or roll back the refreshes
/// in flight, on the stack's groups only, scoped as the Lambda role's refresh rights are
/// (RollbackInstanceRefresh names no launch template: its only parameter is the group,
/// <https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RollbackInstanceRefresh.html>);
/// and read them (DescribeInstanceRefreshes supports no resource-level permission: `*`).
fn deployer_abort_statements(config: &StackConfig, stack: &Stack) -> Vec<Value> {
    const ACTIONS: [&str; 2] = [
        "autoscaling:CancelInstanceRefresh",
        "autoscaling:RollbackInstanceRefresh",
    ];
    let mut out = vec![
        serde_json::json!({
            "Sid": "AbortExecutions",
            "Effect": "Allow",
            "Action": "states:StopExecution",
            "Resource": stack.executions_arn_patterns(),
        }),
        serde_json::json!({
            "Sid": "AbortRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:DeleteItem", "dynamodb:PutItem"],
            "Resource": stack.table_arn(),
        }),
        serde_json::json!({
            "Sid": "AbortReadsRefreshes",
            "Effect": "Allow",
            "Action": "autoscaling:DescribeInstanceRefreshes",
            "Resource": "*",
        }),
    ];
    let named: Vec<String> = crate::groups::all_names(config)
        .map(|a| stack.asg_arn(a))
        .collect();
    if !named.is_empty() {
        out.push(serde_json::json!({
            "Sid": "AbortRefreshesOfNamedGroups",
            "Effect": "Allow",
            "Action": ACTIONS,
            "Resource": named,
        }));
    }
    let tag_sets = std::iter::once(&config.targets.tags)
        .filter(|tags| !tags.is_empty())
        .chain(crate::groups::tag_sets(config));
    for (index, tags) in tag_sets.enumerate() {
        let condition: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, v)| (format!("aws:ResourceTag/{k}"), Value::from(v.as_str())))
            .collect();
        out.push(serde_json::json!({
            "Sid": format!("AbortRefreshesOfTaggedGroups{}", index + 1),
            "Effect": "Allow",
            "Action": ACTIONS,
            "Resource": stack.asg_arn("*"),
            "Condition": {"StringEquals": condition},
        }));
    }
    out
}

fn push_statements(document: &mut Value, statements: Vec<Value>) {
    if let Some(list) = document["Statement"].as_array_mut() {
        list.extend(statements);
    }
}

/// The deployer's permission policy: every call `deploy`, `destroy`, `rollout`, `status`,
/// `approve`, `abort` and `drift` make, on this stack's resources only. No role of the stack carries it: attach it
/// to the person or CI role that runs those commands.
pub fn deployer_document(config: &StackConfig) -> Result<Document, IamError> {
    let stack = Stack::new(config);
    let env = environment()?;
    // Every function and role the stack may have, whatever `completion` says now: deploy
    // deletes the completer, its role and the rule when a stack switches to "poll", and
    // destroy deletes them.
    let function_arns = vec![
        stack.function_arn(&stack.planner_function()),
        stack.function_arn(&stack.refresher_function()),
        stack.function_arn(&stack.completer_function()),
    ];
    let lambda_role_arns = vec![
        stack.role_arn(&stack.lambda_role()),
        stack.role_arn(&stack.completer_role()),
    ];
    let mut role_arns = lambda_role_arns.clone();
    role_arns.insert(1, stack.role_arn(&stack.states_role()));
    let log_group = stack.state_machine_log_group_arn();
    let ctx = context! {
        domain => stack.service_domain(),
        role_arns => role_arns,
        lambda_role_arns => lambda_role_arns,
        states_role_arn => stack.role_arn(&stack.states_role()),
        completer_arn => stack.function_arn(&stack.completer_function()),
        events_rule_arn => stack.events_rule_arn(),
        table_arn => stack.table_arn(),
        log_group_arns => [log_group.trim_end_matches(":*").to_string(), log_group.clone()],
        function_arns => function_arns,
        state_machine_arn => stack.state_machine_arn(),
        executions_arns => stack.executions_arn_patterns(),
        express_arns => stack.express_arn_patterns(),
        map_runs_arn => stack.map_runs_arn_pattern(),
        log_delivery_actions => LOG_DELIVERY_ACTIONS,
        wave_alarm_arns => wave_alarm_arns(config),
    };
    let (name, _) = DEPLOYER_TEMPLATE;
    let mut json = render(&env, name, &ctx)?;
    push_statements(
        &mut json,
        vec![deployer_topic_statement(&stack), deployer_drift_statement()],
    );
    push_statements(&mut json, deployer_abort_statements(config, &stack));
    Ok(Document {
        role: "deployer",
        kind: "policy",
        role_name: format!("{}-deployer", stack.prefix),
        file_name: DEPLOYER_FILE.to_string(),
        json,
    })
}

/// A trust policy as the resource policy it is: each statement gets the role as its
/// `Resource`, so that identity-policy linters (parliament) can audit it.
pub fn trust_as_resource_policy(trust: &Value, role_arn: &str) -> Value {
    let mut out = trust.clone();
    if let Some(statements) = out["Statement"].as_array_mut() {
        for statement in statements {
            if let Some(map) = statement.as_object_mut() {
                map.insert("Resource".into(), Value::String(role_arn.to_string()));
            }
        }
    }
    out
}

/// Every (action, resource) pair of Allow statements, for least-privilege checks.
pub fn allowed(document: &Value) -> Vec<(String, String)> {
    let as_list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut out = Vec::new();
    for statement in document["Statement"].as_array().into_iter().flatten() {
        if statement["Effect"] != "Allow" {
            continue;
        }
        for action in as_list(&statement["Action"]) {
            for resource in as_list(&statement["Resource"]) {
                out.push((action.clone(), resource));
            }
        }
    }
    out
}
