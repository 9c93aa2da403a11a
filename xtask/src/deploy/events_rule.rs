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
use aws_sdk_eventbridge::types::{RuleState, Tag, Target};
use generator::config::{Completion, StackConfig};
use serde_json::Value;

use super::aws::{check_owned, desired_tags, is_owned, tags_differ, Clients, SdkResultExt};
use super::Action;

/// The Lambda action EventBridge needs, and who it is granted to.
const INVOKE: &str = "lambda:InvokeFunction";
const PRINCIPAL: &str = "events.amazonaws.com";

/// What the stack wants on EventBridge.
#[derive(Debug, Clone)]
pub struct DesiredRule {
    /// Whether `completion = "events"`: otherwise nothing is wanted.
    pub wanted: bool,
    /// The event pattern, as PutRule's compact JSON string.
    pub pattern: String,
    pub description: String,
}

pub fn desired(config: &StackConfig) -> DesiredRule {
    let stack = generator::names::Stack::new(config);
    DesiredRule {
        wanted: config.rollout.completion == Completion::Events,
        pattern: generator::events::pattern_text(&generator::events::event_pattern(config)),
        description: format!(
            "Instance-refresh events for {} (asg-refresh stack {})",
            stack.completer_function(),
            stack.env
        ),
    }
}

/// One action per resource; `None` where the resource neither exists nor is wanted.
#[derive(Debug, Clone, Default)]
pub struct RulePlan {
    pub rule: Option<Action>,
    pub permission: Option<Action>,
    pub target: Option<Action>,
}

/// What exists of the rule: its pattern, state, description and tags.
struct CurrentRule {
    pattern: Option<Value>,
    enabled: bool,
    description: Option<String>,
    tags: BTreeMap<String, String>,
}

async fn current_rule(clients: &Clients) -> anyhow::Result<Option<CurrentRule>> {
    let name = clients.stack.events_rule();
    let rule = match clients.events.describe_rule().name(&name).send().await {
        Ok(rule) => rule,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None)
        }
        Err(error) => return Err(error).ctx(format!("cannot read rule {name}")),
    };
    let arn = rule
        .arn()
        .map(str::to_string)
        .unwrap_or_else(|| clients.stack.events_rule_arn());
    let tags = clients
        .events
        .list_tags_for_resource()
        .resource_arn(&arn)
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

/// True when the rule exists and carries this stack's tag; `None` when it does not exist.
pub async fn owned(clients: &Clients) -> anyhow::Result<Option<bool>> {
    Ok(current_rule(clients).await?.map(|rule| {
        is_owned(
            &clients.stack,
            rule.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }))
}

/// The completer's statement for the rule, if its policy has one.
async fn current_statement(clients: &Clients) -> anyhow::Result<Option<Value>> {
    let function = clients.stack.completer_function();
    let policy = match clients
        .lambda
        .get_policy()
        .function_name(&function)
        .send()
        .await
    {
        Ok(out) => out.policy().map(str::to_string).unwrap_or_default(),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None)
        }
        Err(error) => {
            return Err(error).ctx(format!("cannot read the resource policy of {function}"))
        }
    };
    let policy: Value = serde_json::from_str(&policy)
        .with_context(|| format!("the resource policy of {function} is not JSON: {policy}"))?;
    let sid = clients.stack.completer_permission_statement();
    Ok(policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["Sid"] == sid.as_str())
        .cloned())
}

/// The fields of a statement that differ from the one the stack wants.
fn statement_differs(clients: &Clients, statement: &Value) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::Array(items) if items.len() == 1 => items[0].clone(),
        other => other.clone(),
    };
    let mut fields = Vec::new();
    if statement["Effect"] != "Allow" || one(&statement["Action"]) != INVOKE {
        fields.push("action".to_string());
    }
    let principal = &statement["Principal"];
    if one(&principal["Service"]) != PRINCIPAL && *principal != PRINCIPAL {
        fields.push("principal".to_string());
    }
    let rule_arn = clients.stack.events_rule_arn();
    let conditions = statement["Condition"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let source_arn = conditions
        .get("ArnLike")
        .and_then(|c| c.get("AWS:SourceArn"))
        .map(one);
    if conditions.len() != 1 || source_arn.as_ref().and_then(Value::as_str) != Some(&rule_arn) {
        fields.push("source arn".to_string());
    }
    fields
}

/// Reads the rule, its target and the completer's statement and decides what to do with each.
/// `completer` is the completer function's action in this deploy (`None`: not wanted, and
/// gone or about to be deleted).
pub async fn plan(
    clients: &Clients,
    desired: &DesiredRule,
    completer: Option<&Action>,
) -> anyhow::Result<RulePlan> {
    let stack = &clients.stack;
    let name = stack.events_rule();
    let rule = current_rule(clients).await?;
    if let Some(rule) = &rule {
        let owned = is_owned(
            stack,
            rule.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if !owned && !desired.wanted {
            // Someone else's rule of that name: not this stack's to delete.
            return Ok(RulePlan::default());
        }
        check_owned(
            stack,
            "EventBridge rule",
            &name,
            rule.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
    }
    let target_arn = stack.function_arn(&stack.completer_function());
    let target = match &rule {
        Some(_) => clients
            .events
            .list_targets_by_rule()
            .rule(&name)
            .send()
            .await
            .ctx(format!("cannot list the targets of rule {name}"))?
            .targets()
            .iter()
            .find(|t| t.id() == stack.events_target_id())
            .map(|t| t.arn().to_string()),
        None => None,
    };
    // The statement lives on the completer: read it only where the function exists.
    let statement = match completer {
        Some(Action::Unchanged) | Some(Action::Update(_)) => current_statement(clients).await?,
        Some(Action::Delete) => current_statement(clients).await?,
        Some(Action::Create) | None => None,
    };
    if !desired.wanted {
        return Ok(RulePlan {
            rule: rule.as_ref().map(|_| Action::Delete),
            target: target.as_ref().map(|_| Action::Delete),
            permission: statement.as_ref().map(|_| Action::Delete),
        });
    }
    let rule_action = match &rule {
        None => Action::Create,
        Some(current) => {
            let mut fields = Vec::new();
            let pattern: Value = serde_json::from_str(&desired.pattern)
                .context("the generator's event pattern is not JSON")?;
            if current.pattern.as_ref() != Some(&pattern) {
                fields.push("event pattern".to_string());
            }
            if !current.enabled {
                fields.push("state".to_string());
            }
            if current.description.as_deref() != Some(desired.description.as_str()) {
                fields.push("description".to_string());
            }
            if tags_differ(stack, &current.tags) {
                fields.push("tags".to_string());
            }
            Action::from_fields(fields)
        }
    };
    let target_action = match target {
        None => Action::Create,
        Some(arn) if arn == target_arn => Action::Unchanged,
        Some(_) => Action::Update(vec!["arn".to_string()]),
    };
    let permission_action = match statement {
        None => Action::Create,
        Some(statement) => Action::from_fields(statement_differs(clients, &statement)),
    };
    Ok(RulePlan {
        rule: Some(rule_action),
        permission: Some(permission_action),
        target: Some(target_action),
    })
}

fn tags(clients: &Clients) -> anyhow::Result<Vec<Tag>> {
    desired_tags(&clients.stack)
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

/// Creates or updates the rule (PutRule replaces every field it is given).
pub async fn apply_rule(
    clients: &Clients,
    desired: &DesiredRule,
    action: &Action,
) -> anyhow::Result<()> {
    let name = clients.stack.events_rule();
    let has = |field: &str| matches!(action, Action::Update(f) if f.iter().any(|f| f == field));
    let put = match action {
        Action::Create => true,
        Action::Update(_) => has("event pattern") || has("state") || has("description"),
        Action::Unchanged | Action::Delete => false,
    };
    if put {
        let mut request = clients
            .events
            .put_rule()
            .name(&name)
            .event_pattern(&desired.pattern)
            .state(RuleState::Enabled)
            .description(&desired.description);
        if *action == Action::Create {
            request = request.set_tags(Some(tags(clients)?));
        }
        request
            .send()
            .await
            .ctx(format!("cannot put rule {name}"))?;
    }
    if has("tags") {
        clients
            .events
            .tag_resource()
            .resource_arn(clients.stack.events_rule_arn())
            .set_tags(Some(tags(clients)?))
            .send()
            .await
            .ctx(format!("cannot tag rule {name}"))?;
    }
    Ok(())
}

/// Grants events.amazonaws.com lambda:InvokeFunction on the completer for this rule only
/// (an update replaces the statement: remove, then add).
pub async fn apply_permission(clients: &Clients, action: &Action) -> anyhow::Result<()> {
    let function = clients.stack.completer_function();
    match action {
        Action::Unchanged | Action::Delete => return Ok(()),
        Action::Update(_) => remove_permission(clients).await?,
        Action::Create => {}
    }
    clients
        .lambda
        .add_permission()
        .function_name(&function)
        .statement_id(clients.stack.completer_permission_statement())
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

/// Points the rule's target at the completer.
pub async fn apply_target(clients: &Clients, action: &Action) -> anyhow::Result<()> {
    if matches!(action, Action::Unchanged | Action::Delete) {
        return Ok(());
    }
    let stack = &clients.stack;
    let name = stack.events_rule();
    let target = Target::builder()
        .id(stack.events_target_id())
        .arn(stack.function_arn(&stack.completer_function()))
        .build()
        .context("cannot build the rule's target")?;
    let out = clients
        .events
        .put_targets()
        .rule(&name)
        .targets(target)
        .send()
        .await
        .ctx(format!("cannot put the target of rule {name}"))?;
    // PutTargets answers 200 with per-target failures.
    if let Some(failed) = out.failed_entries().first() {
        bail!(
            "cannot put the target of rule {name}: {} ({})",
            failed.error_message().unwrap_or("no message"),
            failed.error_code().unwrap_or("no code")
        );
    }
    Ok(())
}

/// Removes the completer's statement for the rule.
pub async fn remove_permission(clients: &Clients) -> anyhow::Result<()> {
    let function = clients.stack.completer_function();
    let sid = clients.stack.completer_permission_statement();
    clients
        .lambda
        .remove_permission()
        .function_name(&function)
        .statement_id(&sid)
        .send()
        .await
        .ctx(format!("cannot remove statement {sid} of {function}"))?;
    Ok(())
}

/// Removes every target of the rule (a rule with targets cannot be deleted).
pub async fn remove_targets(clients: &Clients) -> anyhow::Result<()> {
    let name = clients.stack.events_rule();
    let targets = clients
        .events
        .list_targets_by_rule()
        .rule(&name)
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
        .rule(&name)
        .set_ids(Some(ids))
        .send()
        .await
        .ctx(format!("cannot remove the targets of rule {name}"))?;
    if let Some(failed) = out.failed_entries().first() {
        bail!(
            "cannot remove the targets of rule {name}: {} ({})",
            failed.error_message().unwrap_or("no message"),
            failed.error_code().unwrap_or("no code")
        );
    }
    Ok(())
}

/// Deletes the rule after removing its targets ("Before you can delete the rule, you must
/// remove all targets": <https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_DeleteRule.html>).
pub async fn delete_rule(clients: &Clients) -> anyhow::Result<()> {
    remove_targets(clients).await?;
    let name = clients.stack.events_rule();
    clients
        .events
        .delete_rule()
        .name(&name)
        .send()
        .await
        .ctx(format!("cannot delete rule {name}"))?;
    Ok(())
}
