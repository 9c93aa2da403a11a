//! The SNS topic rollouts notify (`[notify]`): with `create_topic = true` the stack's own
//! `asg-refresh-<env>-notifications`, tagged like the rest, created by deploy, deleted by
//! destroy (and by a deploy once the stack no longer wants it); with `sns_topic_arn` the
//! operator's topic, which deploy only checks exists. The planner and the refresher learn the
//! topic (and the stack's name, for the commands they suggest) from their environment.

use std::collections::BTreeMap;

use anyhow::bail;
use aws_sdk_sns::types::Tag;
use generator::config::StackConfig;

use super::aws::{check_owned, desired_tags, is_owned, tags_differ, Clients, SdkResultExt};
use super::functions::DesiredFunction;
use super::Action;

/// The Lambdas' variables naming the topic and the stack.
pub use generator::names::env::{NOTIFY_TOPIC as TOPIC_VARIABLE, STACK as STACK_VARIABLE};

/// What deploy does about the topic.
pub struct TopicPlan {
    pub sns: aws_sdk_sns::Client,
    /// The stack's own topic: `Create`, `Update(tags)`, `Unchanged`, or `Delete` when the
    /// stack no longer wants it; `None` when there is nothing to do (no topic of the stack's
    /// and none wanted, or an operator's topic).
    pub action: Option<Action>,
}

/// Adds the topic and the stack's name to the planner's and the refresher's environment
/// when the stack notifies; without `[notify]` the functions are left as they are.
pub fn with_environment(
    config: &StackConfig,
    mut functions: Vec<DesiredFunction>,
) -> Vec<DesiredFunction> {
    let stack = generator::names::Stack::new(config);
    let Some(topic) = stack.notify_topic_arn(config) else {
        return functions;
    };
    let notifying = [stack.planner_function(), stack.refresher_function()];
    for function in functions.iter_mut().filter(|f| notifying.contains(&f.name)) {
        function
            .environment
            .insert(TOPIC_VARIABLE.to_string(), topic.clone());
        function
            .environment
            .insert(STACK_VARIABLE.to_string(), config.name.clone());
    }
    functions
}

/// The tags of the topic at `arn`, or `None` when it does not exist.
async fn current(
    sns: &aws_sdk_sns::Client,
    arn: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    match sns.get_topic_attributes().topic_arn(arn).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).ctx(format!("cannot read topic {arn}")),
    }
    let tags = sns
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .ctx(format!("cannot read the tags of topic {arn}"))?;
    Ok(Some(
        tags.tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
    ))
}

/// Reads the stack's topic (and an operator's topic: it must exist) and decides.
pub async fn plan(
    clients: &Clients,
    config: &StackConfig,
    sns: aws_sdk_sns::Client,
) -> anyhow::Result<TopicPlan> {
    let stack = &clients.stack;
    let own = stack.notifications_topic_arn();
    let notify = config.notify.as_ref();
    if let Some(arn) = notify.and_then(|n| n.sns_topic_arn.as_deref()) {
        if current(&sns, arn).await?.is_none() {
            bail!("notify.sns_topic_arn: topic {arn} does not exist: create it first, or set create_topic = true instead");
        }
    }
    let wanted = notify.is_some_and(|n| n.create_topic);
    let action = match (current(&sns, &own).await?, wanted) {
        (None, true) => Some(Action::Create),
        (None, false) => None,
        (Some(tags), true) => {
            check_owned(
                stack,
                "sns topic",
                &own,
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )?;
            Some(if tags_differ(stack, &tags) {
                Action::Update(vec!["tags".to_string()])
            } else {
                Action::Unchanged
            })
        }
        // A topic of that name that is not this stack's is left alone.
        (Some(tags), false) => is_owned(stack, tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .then_some(Action::Delete),
    };
    Ok(TopicPlan { sns, action })
}

fn tags(clients: &Clients) -> anyhow::Result<Vec<Tag>> {
    desired_tags(&clients.stack)
        .into_iter()
        .map(|(k, v)| Ok(Tag::builder().key(k).value(v).build()?))
        .collect()
}

pub async fn apply(clients: &Clients, plan: &TopicPlan, action: &Action) -> anyhow::Result<()> {
    let stack = &clients.stack;
    let name = stack.notifications_topic();
    match action {
        Action::Create => {
            plan.sns
                .create_topic()
                .name(&name)
                .set_tags(Some(tags(clients)?))
                .send()
                .await
                .ctx(format!("cannot create topic {name}"))?;
        }
        Action::Update(_) => {
            plan.sns
                .tag_resource()
                .resource_arn(stack.notifications_topic_arn())
                .set_tags(Some(tags(clients)?))
                .send()
                .await
                .ctx(format!("cannot tag topic {name}"))?;
        }
        Action::Delete => delete(clients, &plan.sns).await?,
        Action::Unchanged => {}
    }
    Ok(())
}

/// Whether the stack's topic exists (`None`: it does not) and carries the stack's tag.
pub async fn owned(clients: &Clients, sns: &aws_sdk_sns::Client) -> anyhow::Result<Option<bool>> {
    Ok(current(sns, &clients.stack.notifications_topic_arn())
        .await?
        .map(|tags| {
            is_owned(
                &clients.stack,
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
        }))
}

pub async fn delete(clients: &Clients, sns: &aws_sdk_sns::Client) -> anyhow::Result<()> {
    let arn = clients.stack.notifications_topic_arn();
    sns.delete_topic()
        .topic_arn(&arn)
        .send()
        .await
        .ctx(format!("cannot delete topic {arn}"))?;
    Ok(())
}
