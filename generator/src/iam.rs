//! IAM trust and permission policies of the stack's two roles, rendered from the
//! minijinja templates in `templates/iam/`.

use minijinja::{context, Environment};
use serde_json::Value;

use crate::config::StackConfig;
use crate::names::Stack;

const TEMPLATES: [(&str, &str); 4] = [
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
];

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

/// Mutating actions for which AWS defines no resource type, so that `"Resource": "*"` is the
/// only way to allow them (Service Authorization Reference): log delivery, and answering a
/// task token (the token names the execution; the deployer answers approvals with it).
pub const STAR_ONLY_ACTIONS: [&str; 6] = [
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    "states:SendTaskFailure",
    "states:SendTaskSuccess",
];

/// Actions that change an ASG's refresh: allowed only on the stack's targets. The planner
/// pins targets on `$Latest`/`$Default` to a numbered version (UpdateAutoScalingGroup).
pub const REFRESH_ACTIONS: [&str; 4] = [
    "autoscaling:CancelInstanceRefresh",
    "autoscaling:RollbackInstanceRefresh",
    "autoscaling:StartInstanceRefresh",
    "autoscaling:UpdateAutoScalingGroup",
];

/// One rendered policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The role the document belongs to (`lambda` or `states`; `deployer` for the policy of
    /// whoever runs the commands, which no stack role carries).
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

/// Renders the four documents: each role's trust policy and permission policy.
pub fn documents(config: &StackConfig) -> Result<Vec<Document>, IamError> {
    let stack = Stack::new(config);
    let env = environment()?;
    let ec2_account = format!(
        "arn:{}:ec2:{}:{}:*",
        stack.partition, stack.region, stack.account
    );
    let ec2_images = format!("arn:{}:ec2:{}::image/*", stack.partition, stack.region);
    let ec2_snapshots = format!("arn:{}:ec2:{}::snapshot/*", stack.partition, stack.region);
    let ctx = context! {
        domain => stack.service_domain(),
        account => stack.account,
        state_machine_arn => stack.state_machine_arn(),
        executions_arns => stack.executions_arn_patterns(),
        express_arns => stack.express_arn_patterns(),
        map_runs_arn => stack.map_runs_arn_pattern(),
        function_arns => vec![
            stack.function_arn(&stack.planner_function()),
            stack.function_arn(&stack.refresher_function()),
        ],
        lambda_log_groups => [stack.planner_function(), stack.refresher_function()]
            .iter()
            .flat_map(|f| {
                let group = stack.lambda_log_group_arn(f);
                [group.clone(), format!("{group}:*")]
            })
            .collect::<Vec<_>>(),
        table_arn => stack.table_arn(),
        refresh_actions => REFRESH_ACTIONS,
        asg_arns => config.targets.asgs.iter().map(|a| stack.asg_arn(a)).collect::<Vec<_>>(),
        any_asg_arn => stack.asg_arn("*"),
        tags => config.targets.tags,
        launch_templates_arn => stack.launch_templates_arn_pattern(),
        ec2_account_resources => ec2_account,
        ec2_images => ec2_images,
        ec2_snapshots => ec2_snapshots,
        log_delivery_actions => LOG_DELIVERY_ACTIONS,
        instance_profiles_arn => format!("arn:{}:iam::{}:instance-profile/*", stack.partition, stack.account),
        instance_role_arns => config.refresh.instance_roles.iter().map(|r| stack.role_arn(r)).collect::<Vec<_>>(),
    };
    let mut out = Vec::new();
    for (name, _) in TEMPLATES {
        let json = render(&env, name, &ctx)?;
        let (role, rest) = name
            .split_once('.')
            .expect("template names are role.kind.json");
        let kind = rest.trim_end_matches(".json");
        let role_name = if role == "lambda" {
            stack.lambda_role()
        } else {
            stack.states_role()
        };
        out.push(Document {
            role: if role == "lambda" { "lambda" } else { "states" },
            kind: if kind == "trust" { "trust" } else { "policy" },
            file_name: format!("{role_name}.{kind}.json"),
            role_name,
            json,
        });
    }
    Ok(out)
}

/// The deployer's permission policy: every call `deploy`, `destroy`, `rollout`, `status` and
/// `approve` make, on this stack's resources only. No role of the stack carries it: attach it
/// to the person or CI role that runs those commands.
pub fn deployer_document(config: &StackConfig) -> Result<Document, IamError> {
    let stack = Stack::new(config);
    let env = environment()?;
    let function_arns = vec![
        stack.function_arn(&stack.planner_function()),
        stack.function_arn(&stack.refresher_function()),
    ];
    let log_group = stack.state_machine_log_group_arn();
    let ctx = context! {
        domain => stack.service_domain(),
        lambda_role_arn => stack.role_arn(&stack.lambda_role()),
        states_role_arn => stack.role_arn(&stack.states_role()),
        table_arn => stack.table_arn(),
        log_group_arns => [log_group.trim_end_matches(":*").to_string(), log_group.clone()],
        function_arns => function_arns,
        state_machine_arn => stack.state_machine_arn(),
        executions_arns => stack.executions_arn_patterns(),
        express_arns => stack.express_arn_patterns(),
        map_runs_arn => stack.map_runs_arn_pattern(),
        log_delivery_actions => LOG_DELIVERY_ACTIONS,
    };
    let (name, _) = DEPLOYER_TEMPLATE;
    Ok(Document {
        role: "deployer",
        kind: "policy",
        role_name: format!("{}-deployer", stack.prefix),
        file_name: DEPLOYER_FILE.to_string(),
        json: render(&env, name, &ctx)?,
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
