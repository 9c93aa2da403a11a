//! Names and ARNs of every resource of a stack, derived from its config alone.

use crate::config::StackConfig;

/// Tag every stack resource carries with the stack's name.
pub const STACK_TAG: &str = "asg-refresh:stack";
/// Tag every stack resource carries with `true`.
pub const MANAGED_TAG: &str = "asg-refresh:managed";

/// The progress table's key and attribute names: what deploy creates (xtask) and what the
/// Lambdas read and write (runtime) come from here.
pub mod table {
    /// Partition key (S): the rollout id, or `#lock` / `#stack` for the stack-wide items.
    pub const PARTITION_KEY: &str = "rollout_id";
    /// Sort key (S): the ASG's name, or `#rollout`, `#wave#...` and the like.
    pub const SORT_KEY: &str = "asg";
    /// The TTL attribute (epoch seconds).
    pub const TTL_ATTRIBUTE: &str = "expires_at";
}

/// The Lambdas' environment variables, set by deploy and read by the functions.
pub mod env {
    /// The progress table's name.
    pub const TABLE: &str = "ASG_REFRESH_TABLE";
    /// The topic to notify (`[notify]`); unset: no notifications.
    pub const NOTIFY_TOPIC: &str = "ASG_REFRESH_NOTIFY_TOPIC";
    /// The stack's name, for the commands a notification suggests.
    pub const STACK: &str = "ASG_REFRESH_STACK";
}

/// The stack's identity and the names and ARNs of its resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub env: String,
    pub partition: String,
    pub region: String,
    pub account: String,
    pub prefix: String,
}

impl Stack {
    pub fn new(config: &StackConfig) -> Self {
        Self {
            env: config.name.clone(),
            partition: partition_of(&config.region).to_string(),
            region: config.region.clone(),
            account: config.account_id.clone(),
            prefix: format!("asg-refresh-{}", config.name),
        }
    }

    /// Role the Lambdas run as.
    pub fn lambda_role(&self) -> String {
        format!("{}-lambda", self.prefix)
    }

    /// Role the state machine runs as.
    pub fn states_role(&self) -> String {
        format!("{}-states", self.prefix)
    }

    /// The progress table.
    pub fn table(&self) -> String {
        self.prefix.clone()
    }

    pub fn planner_function(&self) -> String {
        format!("{}-planner", self.prefix)
    }

    pub fn refresher_function(&self) -> String {
        format!("{}-refresher", self.prefix)
    }

    /// The function the EventBridge rule invokes with instance-refresh events: it completes
    /// the task token a child execution waits on (`completion = "events"`).
    pub fn completer_function(&self) -> String {
        format!("{}-completer", self.prefix)
    }

    /// Role the completer runs as: it reads and writes the table and answers task tokens,
    /// and nothing else (not the planner's and refresher's Auto Scaling and EC2 rights).
    pub fn completer_role(&self) -> String {
        format!("{}-completer", self.prefix)
    }

    /// The EventBridge rule (on the account's default event bus, where EC2 Auto Scaling
    /// sends its events) that matches instance-refresh events for the completer.
    pub fn events_rule(&self) -> String {
        format!("{}-refresh-events", self.prefix)
    }

    /// Rules on the default event bus have no bus name in their ARN
    /// (`arn:aws:events:<region>:<account>:rule/<name>`).
    pub fn events_rule_arn(&self) -> String {
        self.arn("events", &format!("rule/{}", self.events_rule()))
    }

    /// The Id of the rule's one target, the completer.
    pub fn events_target_id(&self) -> &'static str {
        "completer"
    }

    /// The StatementId of the completer's resource-based policy statement that lets
    /// `events.amazonaws.com` invoke it for the rule (lambda:AddPermission): named after
    /// the rule.
    pub fn completer_permission_statement(&self) -> String {
        self.events_rule()
    }

    pub fn state_machine(&self) -> String {
        self.prefix.clone()
    }

    /// Log group for the state machine's execution logs.
    pub fn state_machine_log_group(&self) -> String {
        format!("/aws/vendedlogs/states/{}", self.prefix)
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition, self.region, self.account
        )
    }

    pub fn role_arn(&self, role: &str) -> String {
        format!("arn:{}:iam::{}:role/{role}", self.partition, self.account)
    }

    pub fn function_arn(&self, function: &str) -> String {
        self.arn("lambda", &format!("function:{function}"))
    }

    pub fn table_arn(&self) -> String {
        self.arn("dynamodb", &format!("table/{}", self.table()))
    }

    pub fn state_machine_arn(&self) -> String {
        self.arn("states", &format!("stateMachine:{}", self.state_machine()))
    }

    /// Executions of the state machine and its Distributed Map child executions
    /// (`<machine>:<id>` and `<machine>/<map run>:<id>`), and no other machine's.
    pub fn executions_arn_patterns(&self) -> Vec<String> {
        let machine = self.state_machine();
        vec![
            self.arn("states", &format!("execution:{machine}:*")),
            self.arn("states", &format!("execution:{machine}/*:*")),
        ]
    }

    /// The same executions in their Express form (`express:<machine>:<id>:<express id>`).
    pub fn express_arn_patterns(&self) -> Vec<String> {
        let machine = self.state_machine();
        vec![
            self.arn("states", &format!("express:{machine}:*:*")),
            self.arn("states", &format!("express:{machine}/*:*:*")),
        ]
    }

    /// Map runs of the state machine's Distributed Map states.
    pub fn map_runs_arn_pattern(&self) -> String {
        self.arn("states", &format!("mapRun:{}/*:*", self.state_machine()))
    }

    /// A Lambda function's own log group (`/aws/lambda/<function>`).
    pub fn lambda_log_group_arn(&self, function: &str) -> String {
        self.arn("logs", &format!("log-group:/aws/lambda/{function}"))
    }

    pub fn state_machine_log_group_arn(&self) -> String {
        self.arn(
            "logs",
            &format!("log-group:{}:*", self.state_machine_log_group()),
        )
    }

    /// Any Auto Scaling group of the account in the region.
    pub fn asg_arn(&self, name: &str) -> String {
        self.arn(
            "autoscaling",
            &format!("autoScalingGroup:*:autoScalingGroupName/{name}"),
        )
    }

    /// Launch templates of the account in the region.
    pub fn launch_templates_arn_pattern(&self) -> String {
        self.arn("ec2", "launch-template/*")
    }

    /// Service principal host for the partition (`amazonaws.com`, or `amazonaws.com.cn`).
    pub fn service_domain(&self) -> &'static str {
        if self.partition == "aws-cn" {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        }
    }

    /// The SNS topic the stack creates with `[notify] create_topic = true`.
    pub fn notifications_topic(&self) -> String {
        format!("{}-notifications", self.prefix)
    }

    pub fn notifications_topic_arn(&self) -> String {
        self.arn("sns", &self.notifications_topic())
    }

    /// The topic rollouts publish to: the operator's (`sns_topic_arn`) or the stack's
    /// (`create_topic`); `None` without `[notify]`.
    pub fn notify_topic_arn(&self, config: &StackConfig) -> Option<String> {
        let notify = config.notify.as_ref()?;
        match &notify.sns_topic_arn {
            Some(arn) => Some(arn.clone()),
            None => notify.create_topic.then(|| self.notifications_topic_arn()),
        }
    }

    /// The account's default event bus in the region, where notifications go as events.
    pub fn default_event_bus_arn(&self) -> String {
        self.arn("events", "event-bus/default")
    }

    /// The tags every resource of the stack carries.
    pub fn tags(&self) -> Vec<(String, String)> {
        vec![
            (STACK_TAG.to_string(), self.env.clone()),
            (MANAGED_TAG.to_string(), "true".to_string()),
        ]
    }
}

/// The AWS partition a region belongs to.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_arns() {
        let config: StackConfig = toml::from_str(
            "name = \"prod\"\nregion = \"ap-south-1\"\naccount_id = \"111122223333\"\n[targets]\nasgs = [\"a\"]\n",
        )
        .unwrap();
        let stack = Stack::new(&config);
        assert_eq!(stack.lambda_role(), "asg-refresh-prod-lambda");
        assert_eq!(
            stack.function_arn(&stack.planner_function()),
            "arn:aws:lambda:ap-south-1:111122223333:function:asg-refresh-prod-planner"
        );
        assert_eq!(
            stack.table_arn(),
            "arn:aws:dynamodb:ap-south-1:111122223333:table/asg-refresh-prod"
        );
        assert_eq!(
            stack.state_machine_arn(),
            "arn:aws:states:ap-south-1:111122223333:stateMachine:asg-refresh-prod"
        );
        assert_eq!(stack.completer_function(), "asg-refresh-prod-completer");
        assert_eq!(stack.completer_role(), "asg-refresh-prod-completer");
        assert_eq!(
            stack.events_rule_arn(),
            "arn:aws:events:ap-south-1:111122223333:rule/asg-refresh-prod-refresh-events"
        );
        assert_eq!(
            stack.completer_permission_statement(),
            "asg-refresh-prod-refresh-events"
        );
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
    }
}
