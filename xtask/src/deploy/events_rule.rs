//! The EventBridge side of `completion = "events"`: the rule on the default event bus with the
//! generator's event pattern, its one target (the completer) and the completer's resource-based
//! policy statement that lets events.amazonaws.com invoke it for that rule only. With
//! `completion = "poll"` none of them is wanted: what an earlier deploy made is deleted.
//!
//! EventBridge needs that permission to invoke a Lambda target; without it the rule matches
//! and the invocation fails (`FailedInvocations`):
//! <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-lambda-permissions>.
//! PutRule ignores `Tags` when the rule exists already ("If you are updating an existing rule,
//! any tags you specify in the PutRule operation are ignored"), so tags are fixed with
//! TagResource: <https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html>.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use aws_sdk_eventbridge::types::{RuleState, Tag, Target as SdkTarget};
use generator::config::{Completion, StackConfig};
use generator::names::Stack;
use serde_json::Value;

use super::aws::{desired_tags, Clients, SdkResultExt};
use super::engine::{changes, differing, tags_differ, Absent, Found, Planned, Resource, Step};

/// The Lambda action EventBridge needs, and who it is granted to.
const INVOKE: &str = "lambda:InvokeFunction";
const PRINCIPAL: &str = "events.amazonaws.com";

/// What the stack wants on EventBridge.
#[derive(Debug, Clone)]
pub struct DesiredRule {
    /// Whether `completion = "events"`: otherwise nothing is wanted.
    pub wanted: bool,
    /// The event pattern (PutRule gets its compact JSON string).
    pub pattern: Value,
    pub description: String,
}

pub fn desired(config: &StackConfig) -> DesiredRule {
    let stack = Stack::new(config);
    DesiredRule {
        wanted: config.rollout.completion == Completion::Events,
        pattern: generator::events::event_pattern(config),
        description: format!(
            "Instance-refresh events for {} (asg-refresh stack {})",
            stack.completer_function(),
            stack.env
        ),
    }
}

/// The deploy's steps for the rule, the completer's permission and the rule's target.
#[derive(Default)]
pub struct EventSteps {
    /// With `completion = "events"`: the rule, the permission, the target, in apply order.
    pub apply: Vec<Box<dyn Step>>,
    /// Otherwise what an earlier deploy made, in removal order: the target, the rule, the
    /// permission.
    pub remove: Vec<Box<dyn Step>>,
}

/// Reads the rule, its target and the completer's statement and decides what to do with each.
/// `completer_exists`: whether the completer function exists in this deploy (wanted and
/// there, or left over to delete): its statement is read only then.
pub async fn plan(
    clients: &Clients,
    desired: DesiredRule,
    completer_exists: bool,
) -> anyhow::Result<EventSteps> {
    let stack = &clients.stack;
    let permission = Permission::new(stack, completer_exists);
    if desired.wanted {
        let rule = Planned::wanted(Rule::new(stack, desired), clients).await?;
        let target = Target::new(stack, rule.current.is_some());
        let target = Planned::wanted(target, clients).await?;
        let permission = Planned::wanted(permission, clients).await?;
        return Ok(EventSteps {
            apply: vec![Box::new(rule), Box::new(permission), Box::new(target)],
            remove: Vec::new(),
        });
    }
    let rule = Planned::absent(Rule::new(stack, desired), clients).await?;
    let rule_exists = match &rule {
        // Someone else's rule of that name: not this stack's to delete, nor its target.
        Absent::NotOurs { .. } => return Ok(EventSteps::default()),
        Absent::Missing => false,
        Absent::Doomed(_) => true,
    };
    let target = Planned::absent(Target::new(stack, rule_exists), clients).await?;
    let permission = Planned::absent(permission, clients).await?;
    // Neither the target nor the permission has tags of its own: never `NotOurs`.
    let mut not_ours = Vec::new();
    let remove = [
        target.into_step(&mut not_ours),
        rule.into_step(&mut not_ours),
        permission.into_step(&mut not_ours),
    ];
    Ok(EventSteps {
        apply: Vec::new(),
        remove: remove.into_iter().flatten().collect(),
    })
}

fn tags(stack: &Stack) -> anyhow::Result<Vec<Tag>> {
    desired_tags(stack)
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .context("cannot build an EventBridge tag")
        })
        .collect()
}

/// Fails on the first of PutTargets' or RemoveTargets' per-target failures (both answer 200
/// with them).
fn no_failed_entry(what: &str, failed: Option<(Option<&str>, Option<&str>)>) -> anyhow::Result<()> {
    if let Some((message, code)) = failed {
        bail!(
            "{what}: {} ({})",
            message.unwrap_or("no message"),
            code.unwrap_or("no code")
        );
    }
    Ok(())
}

/// The stack's EventBridge rule on the default bus.
pub struct Rule {
    name: String,
    arn: String,
    desired: DesiredRule,
}

impl Rule {
    pub fn new(stack: &Stack, desired: DesiredRule) -> Self {
        Self {
            name: stack.events_rule(),
            arn: stack.events_rule_arn(),
            desired,
        }
    }

    /// PutRule with every field the stack sets (it replaces them all); `tags` only on create.
    async fn put(&self, clients: &Clients, tags: Option<Vec<Tag>>) -> anyhow::Result<()> {
        clients
            .events
            .put_rule()
            .name(&self.name)
            .event_pattern(generator::events::pattern_text(&self.desired.pattern))
            .state(RuleState::Enabled)
            .description(&self.desired.description)
            .set_tags(tags)
            .send()
            .await
            .ctx(format!("cannot put rule {}", self.name))?;
        Ok(())
    }
}

/// What exists of the rule: its pattern, state, description and tags.
pub struct CurrentRule {
    pub pattern: Option<Value>,
    pub enabled: bool,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
}

changes! {
    /// What can differ on the rule.
    pub enum RuleChange {
        EventPattern => "event pattern",
        State => "state",
        Description => "description",
        Tags => "tags",
    }
}

impl Resource for Rule {
    type Current = CurrentRule;
    type Change = RuleChange;

    fn kind(&self) -> &'static str {
        "eventbridge rule"
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn refused_as(&self) -> String {
        format!("EventBridge rule {}", self.name)
    }

    async fn read(&self, clients: &Clients) -> anyhow::Result<Option<CurrentRule>> {
        let name = &self.name;
        let rule = clients.events.describe_rule().name(name).send().await;
        let Some(rule) = rule.found(
            |e| e.is_resource_not_found_exception(),
            format!("cannot read rule {name}"),
        )?
        else {
            return Ok(None);
        };
        let arn = rule.arn().unwrap_or(&self.arn);
        let tags = clients
            .events
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .ctx(format!("cannot read the tags of rule {name}"))?;
        Ok(Some(CurrentRule {
            pattern: rule
                .event_pattern()
                .and_then(|p| serde_json::from_str(p).ok()),
            enabled: rule.state() == Some(&RuleState::Enabled),
            description: rule.description().map(str::to_string),
            tags: tags
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
        }))
    }

    fn tags(current: &CurrentRule) -> Option<&BTreeMap<String, String>> {
        Some(&current.tags)
    }

    fn diff(&self, stack: &Stack, current: &CurrentRule) -> Vec<RuleChange> {
        let desired = &self.desired;
        differing([
            (
                RuleChange::EventPattern,
                current.pattern.as_ref() == Some(&desired.pattern),
            ),
            (RuleChange::State, current.enabled),
            (
                RuleChange::Description,
                current.description.as_deref() == Some(desired.description.as_str()),
            ),
            (RuleChange::Tags, !tags_differ(stack, &current.tags)),
        ])
    }

    async fn create(&self, clients: &Clients) -> anyhow::Result<()> {
        self.put(clients, Some(tags(&clients.stack)?)).await
    }

    /// PutRule ignores tags on an existing rule: TagResource fixes them.
    async fn update(
        &self,
        clients: &Clients,
        _current: &CurrentRule,
        changes: &[RuleChange],
    ) -> anyhow::Result<()> {
        if changes.iter().any(|c| *c != RuleChange::Tags) {
            self.put(clients, None).await?;
        }
        if changes.contains(&RuleChange::Tags) {
            clients
                .events
                .tag_resource()
                .resource_arn(&self.arn)
                .set_tags(Some(tags(&clients.stack)?))
                .send()
                .await
                .ctx(format!("cannot tag rule {}", self.name))?;
        }
        Ok(())
    }

    /// Deletes the rule after removing its targets ("Before you can delete the rule, you must
    /// remove all targets": <https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_DeleteRule.html>).
    async fn delete(&self, clients: &Clients, _current: &CurrentRule) -> anyhow::Result<()> {
        remove_targets(clients, &self.name).await?;
        clients
            .events
            .delete_rule()
            .name(&self.name)
            .send()
            .await
            .ctx(format!("cannot delete rule {}", self.name))?;
        Ok(())
    }
}

/// Removes every target of rule `name` (a rule with targets cannot be deleted).
async fn remove_targets(clients: &Clients, name: &str) -> anyhow::Result<()> {
    let targets = clients
        .events
        .list_targets_by_rule()
        .rule(name)
        .send()
        .await
        .ctx(format!("cannot list the targets of rule {name}"))?;
    let ids: Vec<String> = targets
        .targets()
        .iter()
        .map(|t| t.id().to_string())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let out = clients
        .events
        .remove_targets()
        .rule(name)
        .set_ids(Some(ids))
        .send()
        .await
        .ctx(format!("cannot remove the targets of rule {name}"))?;
    no_failed_entry(
        &format!("cannot remove the targets of rule {name}"),
        out.failed_entries()
            .first()
            .map(|f| (f.error_message(), f.error_code())),
    )
}

/// The completer's resource-based policy statement that lets events.amazonaws.com invoke it
/// for the rule only.
pub struct Permission {
    function: String,
    sid: String,
    /// Whether the completer exists in this deploy: the statement lives on it.
    function_exists: bool,
}

impl Permission {
    pub fn new(stack: &Stack, function_exists: bool) -> Self {
        Self {
            function: stack.completer_function(),
            sid: stack.completer_permission_statement(),
            function_exists,
        }
    }

    async fn add(&self, clients: &Clients) -> anyhow::Result<()> {
        let function = &self.function;
        clients
            .lambda
            .add_permission()
            .function_name(function)
            .statement_id(&self.sid)
            .action(INVOKE)
            .principal(PRINCIPAL)
            .source_arn(clients.stack.events_rule_arn())
            .send()
            .await
            .ctx(format!(
                "cannot let EventBridge invoke {function} for rule {}",
                clients.stack.events_rule()
            ))?;
        Ok(())
    }
}

changes! {
    /// What can differ on the statement.
    pub enum PermissionChange {
        Action => "action",
        Principal => "principal",
        SourceArn => "source arn",
    }
}

impl Resource for Permission {
    /// The statement, as the function's policy has it.
    type Current = Value;
    type Change = PermissionChange;

    fn kind(&self) -> &'static str {
        "lambda permission"
    }

    fn name(&self) -> String {
        format!("{}/{}", self.function, self.sid)
    }

    async fn read(&self, clients: &Clients) -> anyhow::Result<Option<Value>> {
        if !self.function_exists {
            return Ok(None);
        }
        let function = &self.function;
        let policy = clients
            .lambda
            .get_policy()
            .function_name(function)
            .send()
            .await;
        let Some(policy) = policy.found(
            |e| e.is_resource_not_found_exception(),
            format!("cannot read the resource policy of {function}"),
        )?
        else {
            return Ok(None);
        };
        let policy = policy.policy().unwrap_or_default();
        let policy: Value = serde_json::from_str(policy)
            .with_context(|| format!("the resource policy of {function} is not JSON: {policy}"))?;
        Ok(policy["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["Sid"] == self.sid.as_str())
            .cloned())
    }

    fn tags(_current: &Value) -> Option<&BTreeMap<String, String>> {
        None
    }

    fn diff(&self, stack: &Stack, statement: &Value) -> Vec<PermissionChange> {
        let one = |v: &Value| match v {
            Value::Array(items) if items.len() == 1 => items[0].clone(),
            other => other.clone(),
        };
        let principal = &statement["Principal"];
        let conditions = statement["Condition"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let source_arn = conditions
            .get("ArnLike")
            .and_then(|c| c.get("AWS:SourceArn"))
            .map(one);
        let rule_arn = stack.events_rule_arn();
        differing([
            (
                PermissionChange::Action,
                statement["Effect"] == "Allow" && one(&statement["Action"]) == INVOKE,
            ),
            (
                PermissionChange::Principal,
                one(&principal["Service"]) == PRINCIPAL || *principal == PRINCIPAL,
            ),
            (
                PermissionChange::SourceArn,
                conditions.len() == 1
                    && source_arn.as_ref().and_then(Value::as_str) == Some(&rule_arn),
            ),
        ])
    }

    async fn create(&self, clients: &Clients) -> anyhow::Result<()> {
        self.add(clients).await
    }

    /// A statement is replaced: removed, then added.
    async fn update(
        &self,
        clients: &Clients,
        current: &Value,
        _changes: &[PermissionChange],
    ) -> anyhow::Result<()> {
        self.delete(clients, current).await?;
        self.add(clients).await
    }

    async fn delete(&self, clients: &Clients, _current: &Value) -> anyhow::Result<()> {
        let (function, sid) = (&self.function, &self.sid);
        clients
            .lambda
            .remove_permission()
            .function_name(function)
            .statement_id(sid)
            .send()
            .await
            .ctx(format!("cannot remove statement {sid} of {function}"))?;
        Ok(())
    }
}

/// The rule's one target: the completer.
pub struct Target {
    rule: String,
    id: &'static str,
    /// Whether the rule exists: its targets are read only then.
    rule_exists: bool,
}

impl Target {
    pub fn new(stack: &Stack, rule_exists: bool) -> Self {
        Self {
            rule: stack.events_rule(),
            id: stack.events_target_id(),
            rule_exists,
        }
    }

    /// Points the target at the completer.
    async fn put(&self, clients: &Clients) -> anyhow::Result<()> {
        let stack = &clients.stack;
        let name = &self.rule;
        let target = SdkTarget::builder()
            .id(self.id)
            .arn(stack.function_arn(&stack.completer_function()))
            .build()
            .context("cannot build the rule's target")?;
        let out = clients
            .events
            .put_targets()
            .rule(name)
            .targets(target)
            .send()
            .await
            .ctx(format!("cannot put the target of rule {name}"))?;
        no_failed_entry(
            &format!("cannot put the target of rule {name}"),
            out.failed_entries()
                .first()
                .map(|f| (f.error_message(), f.error_code())),
        )
    }
}

changes! {
    /// What can differ on the target.
    pub enum TargetChange {
        /// It points at something else than the completer.
        Arn => "arn",
    }
}

impl Resource for Target {
    /// The ARN it points at.
    type Current = String;
    type Change = TargetChange;

    fn kind(&self) -> &'static str {
        "rule target"
    }

    fn name(&self) -> String {
        format!("{}/{}", self.rule, self.id)
    }

    async fn read(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        if !self.rule_exists {
            return Ok(None);
        }
        let name = &self.rule;
        Ok(clients
            .events
            .list_targets_by_rule()
            .rule(name)
            .send()
            .await
            .ctx(format!("cannot list the targets of rule {name}"))?
            .targets()
            .iter()
            .find(|t| t.id() == self.id)
            .map(|t| t.arn().to_string()))
    }

    fn tags(_current: &String) -> Option<&BTreeMap<String, String>> {
        None
    }

    fn diff(&self, stack: &Stack, arn: &String) -> Vec<TargetChange> {
        differing([(
            TargetChange::Arn,
            *arn == stack.function_arn(&stack.completer_function()),
        )])
    }

    async fn create(&self, clients: &Clients) -> anyhow::Result<()> {
        self.put(clients).await
    }

    async fn update(
        &self,
        clients: &Clients,
        _current: &String,
        _changes: &[TargetChange],
    ) -> anyhow::Result<()> {
        self.put(clients).await
    }

    /// Removes every target of the rule, as deleting the rule needs.
    async fn delete(&self, clients: &Clients, _current: &String) -> anyhow::Result<()> {
        remove_targets(clients, &self.rule).await
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_eventbridge::operation::delete_rule::DeleteRuleOutput;
    use aws_sdk_eventbridge::operation::describe_rule::{DescribeRuleError, DescribeRuleOutput};
    use aws_sdk_eventbridge::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_eventbridge::operation::list_targets_by_rule::ListTargetsByRuleOutput;
    use aws_sdk_eventbridge::operation::put_rule::PutRuleOutput;
    use aws_sdk_eventbridge::operation::put_targets::PutTargetsOutput;
    use aws_sdk_eventbridge::operation::remove_targets::RemoveTargetsOutput;
    use aws_sdk_eventbridge::types::error::ResourceNotFoundException;
    use aws_sdk_eventbridge::Client as Events;
    use aws_sdk_lambda::operation::add_permission::AddPermissionOutput;
    use aws_sdk_lambda::operation::get_policy::GetPolicyOutput;
    use aws_sdk_lambda::operation::remove_permission::RemovePermissionOutput;
    use aws_sdk_lambda::Client as Lambda;
    use aws_smithy_mocks::{mock, Rule as Mock};
    use serde_json::json;

    use super::super::engine::replay::{self, clients, mutating, OURS};
    use super::super::engine::{Planned, Verb};
    use super::super::replay_apply::{converged, said};
    use super::*;

    const DESCRIPTION: &str = "an old description";

    fn stack() -> Stack {
        replay::stack()
    }

    fn wanted() -> DesiredRule {
        DesiredRule {
            wanted: true,
            ..desired(&replay::config())
        }
    }

    fn completer_arn() -> String {
        stack().function_arn(&stack().completer_function())
    }

    /// DescribeRule's answer: the rule as `wanted()` has it, or with another description.
    fn described(exists: bool, description: &'static str) -> Mock {
        let rule = mock!(Events::describe_rule)
            .match_requests(|r| r.name() == Some(stack().events_rule().as_str()));
        if !exists {
            return rule.then_error(|| {
                DescribeRuleError::ResourceNotFoundException(
                    ResourceNotFoundException::builder().build(),
                )
            });
        }
        rule.then_output(move || {
            let desired = wanted();
            DescribeRuleOutput::builder()
                .name(stack().events_rule())
                .arn(stack().events_rule_arn())
                .event_pattern(generator::events::pattern_text(&desired.pattern))
                .state(RuleState::Enabled)
                .description(if description.is_empty() {
                    desired.description
                } else {
                    description.to_string()
                })
                .build()
        })
    }

    fn tagged(tags: &'static [(&'static str, &'static str)]) -> Mock {
        mock!(Events::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(stack().events_rule_arn().as_str()))
            .then_output(move || {
                let tags = tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap());
                ListTagsForResourceOutput::builder()
                    .set_tags(Some(tags.collect()))
                    .build()
            })
    }

    fn targets(arn: fn() -> String) -> Mock {
        mock!(Events::list_targets_by_rule)
            .match_requests(|r| r.rule() == Some(stack().events_rule().as_str()))
            .then_output(move || {
                let target = SdkTarget::builder()
                    .id(stack().events_target_id())
                    .arn(arn())
                    .build()
                    .unwrap();
                ListTargetsByRuleOutput::builder().targets(target).build()
            })
    }

    fn other_arn() -> String {
        stack().function_arn("someone-else")
    }

    /// GetPolicy's answer: the completer's statement for the rule, with `source` as its
    /// source ARN.
    fn policy(source: fn() -> String) -> Mock {
        mock!(Lambda::get_policy)
            .match_requests(|r| r.function_name() == Some(stack().completer_function().as_str()))
            .then_output(move || {
                let statement = json!({
                    "Sid": stack().completer_permission_statement(),
                    "Effect": "Allow",
                    "Principal": {"Service": PRINCIPAL},
                    "Action": INVOKE,
                    "Resource": completer_arn(),
                    "Condition": {"ArnLike": {"AWS:SourceArn": source()}},
                });
                let policy = json!({"Version": "2012-10-17", "Statement": [statement]});
                GetPolicyOutput::builder()
                    .policy(policy.to_string())
                    .build()
            })
    }

    /// PutTargets of the completer as the rule's target.
    fn put_target() -> Mock {
        mock!(Events::put_targets)
            .match_requests(|r| r.targets().first().map(|t| t.arn()) == Some(&completer_arn()))
            .then_output(|| PutTargetsOutput::builder().build())
    }

    fn rule_arn() -> String {
        stack().events_rule_arn()
    }

    async fn rule(clients: &Clients) -> anyhow::Result<Planned<Rule>> {
        Planned::wanted(Rule::new(&clients.stack, wanted()), clients).await
    }

    #[tokio::test]
    async fn creates_a_missing_rule_with_its_pattern_and_tags() {
        let put = mock!(Events::put_rule)
            .match_requests(|r| {
                r.event_pattern() == Some(&generator::events::pattern_text(&wanted().pattern))
                    && r.state() == Some(&RuleState::Enabled)
                    && r.tags().len() == OURS.len()
            })
            .then_output(|| PutRuleOutput::builder().build());
        let clients = clients(&[&described(false, ""), &put]);
        assert_eq!(
            converged(Rule::new(&clients.stack, wanted()), &clients).await,
            said(Verb::Create, "", 1)
        );
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_changed_description_is_one_put_rule_without_tags() {
        let put = mock!(Events::put_rule)
            .match_requests(|r| {
                r.description() == Some(wanted().description.as_str()) && r.tags().is_empty()
            })
            .then_output(|| PutRuleOutput::builder().build());
        let clients = clients(&[&described(true, DESCRIPTION), &tagged(OURS), &put]);
        assert_eq!(
            converged(Rule::new(&clients.stack, wanted()), &clients).await,
            said(Verb::Update, "description", 1)
        );
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_up_to_date_rule_makes_no_request() {
        let clients = clients(&[&described(true, ""), &tagged(OURS)]);
        assert_eq!(
            converged(Rule::new(&clients.stack, wanted()), &clients).await,
            said(Verb::Unchanged, "", 0)
        );
    }

    #[tokio::test]
    async fn a_rule_without_the_stack_tag_is_refused() {
        let clients = clients(&[&described(true, ""), &tagged(&[("team", "ops")])]);
        let error = rule(&clients).await.err().expect("refused");
        assert_eq!(
            error.to_string(),
            format!(
                "EventBridge rule {} exists and is not tagged asg-refresh:stack=local: refusing to take it over",
                stack().events_rule()
            )
        );
        assert_eq!(mutating(&clients), 0);
    }

    #[tokio::test]
    async fn a_missing_permission_is_added_without_reading_a_new_function() {
        let add = mock!(Lambda::add_permission)
            .match_requests(|r| {
                r.source_arn() == Some(rule_arn().as_str())
                    && r.principal() == Some(PRINCIPAL)
                    && r.action() == Some(INVOKE)
            })
            .then_output(|| AddPermissionOutput::builder().build());
        // No GetPolicy rule: reading the policy of a function being created would panic.
        let clients = clients(&[&add]);
        assert_eq!(
            converged(Permission::new(&clients.stack, false), &clients).await,
            said(Verb::Create, "", 1)
        );
        assert_eq!(add.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_permission_for_another_source_is_replaced() {
        let remove = mock!(Lambda::remove_permission)
            .then_output(|| RemovePermissionOutput::builder().build());
        let add =
            mock!(Lambda::add_permission).then_output(|| AddPermissionOutput::builder().build());
        let clients = clients(&[&policy(other_arn), &remove, &add]);
        // A statement cannot be edited: removed, then added.
        assert_eq!(
            converged(Permission::new(&clients.stack, true), &clients).await,
            said(Verb::Update, "source arn", 2)
        );
        assert_eq!((remove.num_calls(), add.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn an_up_to_date_permission_makes_no_request() {
        let clients = clients(&[&policy(rule_arn)]);
        assert_eq!(
            converged(Permission::new(&clients.stack, true), &clients).await,
            said(Verb::Unchanged, "", 0)
        );
    }

    #[tokio::test]
    async fn a_missing_target_is_put_without_listing_a_new_rule() {
        let put = put_target();
        let clients = clients(&[&put]);
        assert_eq!(
            converged(Target::new(&clients.stack, false), &clients).await,
            said(Verb::Create, "", 1)
        );
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_target_at_another_function_is_put_once() {
        let put = put_target();
        let clients = clients(&[&targets(other_arn), &put]);
        assert_eq!(
            converged(Target::new(&clients.stack, true), &clients).await,
            said(Verb::Update, "arn", 1)
        );
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_up_to_date_target_makes_no_request() {
        let clients = clients(&[&targets(completer_arn)]);
        assert_eq!(
            converged(Target::new(&clients.stack, true), &clients).await,
            said(Verb::Unchanged, "", 0)
        );
    }

    #[tokio::test]
    async fn an_unwanted_rule_goes_target_first_then_rule_then_permission() {
        let remove =
            mock!(Events::remove_targets).then_output(|| RemoveTargetsOutput::builder().build());
        let delete = mock!(Events::delete_rule).then_output(|| DeleteRuleOutput::builder().build());
        let unpermit = mock!(Lambda::remove_permission)
            .then_output(|| RemovePermissionOutput::builder().build());
        let clients = clients(&[
            &described(true, ""),
            &tagged(OURS),
            &targets(completer_arn),
            &policy(rule_arn),
            &remove,
            &delete,
            &unpermit,
        ]);
        let desired = DesiredRule {
            wanted: false,
            ..wanted()
        };
        let steps = plan(&clients, desired, true).await.unwrap();
        assert!(steps.apply.is_empty());
        let removals: Vec<(&str, Verb)> =
            steps.remove.iter().map(|s| (s.kind(), s.verb())).collect();
        assert_eq!(
            removals,
            [
                ("rule target", Verb::Delete),
                ("eventbridge rule", Verb::Delete),
                ("lambda permission", Verb::Delete)
            ]
        );
        for step in &steps.remove {
            step.apply(&clients).await.unwrap();
        }
        // The rule's delete lists its targets again (the emulator's are gone by then; these
        // replayed ones are not, so they are removed twice).
        assert_eq!(
            (remove.num_calls(), delete.num_calls(), unpermit.num_calls()),
            (2, 1, 1)
        );
    }

    #[tokio::test]
    async fn an_unwanted_rule_that_is_not_ours_is_left_alone_with_its_target() {
        // No ListTargetsByRule nor GetPolicy rule: reading either would panic.
        let clients = clients(&[&described(true, ""), &tagged(&[("team", "ops")])]);
        let desired = DesiredRule {
            wanted: false,
            ..wanted()
        };
        let steps = plan(&clients, desired, true).await.unwrap();
        assert!(steps.apply.is_empty() && steps.remove.is_empty());
        assert_eq!(mutating(&clients), 0);
    }
}
