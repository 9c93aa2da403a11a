//! The SNS topic rollouts notify (`[notify]`): with `create_topic = true` the stack's own
//! `asg-refresh-<env>-notifications`, tagged like the rest, created by deploy, deleted by
//! destroy (and by a deploy once the stack no longer wants it); with `sns_topic_arn` the
//! operator's topic, which deploy only checks exists. The planner and the refresher learn the
//! topic (and the stack's name, for the commands they suggest) from their environment.

use std::collections::BTreeMap;

use anyhow::bail;
use aws_sdk_sns::types::Tag;
use generator::config::StackConfig;
use generator::names::Stack;

use super::aws::{desired_tags, Clients, SdkResultExt};
use super::engine::{changes, differing, tags_differ, Found, Resource};
use super::functions::DesiredFunction;

/// The Lambdas' variables naming the topic and the stack.
pub use generator::names::env::{NOTIFY_TOPIC as TOPIC_VARIABLE, STACK as STACK_VARIABLE};

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
    let attributes = sns.get_topic_attributes().topic_arn(arn).send().await;
    if attributes
        .found(
            |e| e.is_not_found_exception(),
            format!("cannot read topic {arn}"),
        )?
        .is_none()
    {
        return Ok(None);
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

/// Whether the stack wants a topic of its own (`create_topic = true`); otherwise a deploy
/// deletes the one an earlier deploy made.
pub fn wanted(config: &StackConfig) -> bool {
    config.notify.as_ref().is_some_and(|n| n.create_topic)
}

/// Fails when the operator's topic (`sns_topic_arn`) does not exist: deploy only checks it.
pub async fn check_operator_topic(clients: &Clients, config: &StackConfig) -> anyhow::Result<()> {
    let notify = config.notify.as_ref();
    if let Some(arn) = notify.and_then(|n| n.sns_topic_arn.as_deref()) {
        if current(&clients.sns, arn).await?.is_none() {
            bail!("notify.sns_topic_arn: topic {arn} does not exist: create it first, or set create_topic = true instead");
        }
    }
    Ok(())
}

/// The stack's own topic (`asg-refresh-<env>-notifications`).
pub struct Topic {
    pub name: String,
    pub arn: String,
}

impl Topic {
    pub fn new(stack: &Stack) -> Self {
        Self {
            name: stack.notifications_topic(),
            arn: stack.notifications_topic_arn(),
        }
    }
}

/// The topic as it exists: its tags.
pub struct Current {
    pub tags: BTreeMap<String, String>,
}

changes! {
    /// What can differ on the topic.
    pub enum Change {
        Tags => "tags",
    }
}

impl Resource for Topic {
    type Current = Current;
    type Change = Change;

    fn kind(&self) -> &'static str {
        "sns topic"
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn refused_as(&self) -> String {
        format!("sns topic {}", self.arn)
    }

    async fn read(&self, clients: &Clients) -> anyhow::Result<Option<Current>> {
        Ok(current(&clients.sns, &self.arn)
            .await?
            .map(|tags| Current { tags }))
    }

    fn tags(current: &Current) -> Option<&BTreeMap<String, String>> {
        Some(&current.tags)
    }

    fn diff(&self, stack: &Stack, current: &Current) -> Vec<Change> {
        differing([(Change::Tags, !tags_differ(stack, &current.tags))])
    }

    async fn create(&self, clients: &Clients) -> anyhow::Result<()> {
        clients
            .sns
            .create_topic()
            .name(&self.name)
            .set_tags(Some(tags(&clients.stack)?))
            .send()
            .await
            .ctx(format!("cannot create topic {}", self.name))?;
        Ok(())
    }

    async fn update(
        &self,
        clients: &Clients,
        _current: &Current,
        changes: &[Change],
    ) -> anyhow::Result<()> {
        if changes.contains(&Change::Tags) {
            clients
                .sns
                .tag_resource()
                .resource_arn(&self.arn)
                .set_tags(Some(tags(&clients.stack)?))
                .send()
                .await
                .ctx(format!("cannot tag topic {}", self.name))?;
        }
        Ok(())
    }

    async fn delete(&self, clients: &Clients, _current: &Current) -> anyhow::Result<()> {
        clients
            .sns
            .delete_topic()
            .topic_arn(&self.arn)
            .send()
            .await
            .ctx(format!("cannot delete topic {}", self.arn))?;
        Ok(())
    }
}

fn tags(stack: &Stack) -> anyhow::Result<Vec<Tag>> {
    desired_tags(stack)
        .into_iter()
        .map(|(k, v)| Ok(Tag::builder().key(k).value(v).build()?))
        .collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_sns::operation::create_topic::CreateTopicOutput;
    use aws_sdk_sns::operation::get_topic_attributes::{
        GetTopicAttributesError, GetTopicAttributesOutput,
    };
    use aws_sdk_sns::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_sns::operation::tag_resource::TagResourceOutput;
    use aws_sdk_sns::types::error::NotFoundException;
    use aws_sdk_sns::Client;
    use aws_smithy_mocks::{mock, Rule};

    use super::super::engine::replay::{self, clients, mutating, OURS};
    use super::super::engine::{Planned, Verb};
    use super::super::replay_apply::{converged, said};
    use super::*;

    fn arn() -> String {
        replay::stack().notifications_topic_arn()
    }

    fn found(exists: bool) -> Rule {
        let rule = mock!(Client::get_topic_attributes)
            .match_requests(|r| r.topic_arn() == Some(arn().as_str()));
        if exists {
            rule.then_output(|| GetTopicAttributesOutput::builder().build())
        } else {
            rule.then_error(|| {
                GetTopicAttributesError::NotFoundException(NotFoundException::builder().build())
            })
        }
    }

    fn tagged(tags: &'static [(&'static str, &'static str)]) -> Rule {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(arn().as_str()))
            .then_output(move || {
                let tags = tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap());
                ListTagsForResourceOutput::builder()
                    .set_tags(Some(tags.collect()))
                    .build()
            })
    }

    fn ours(tags: &[Tag]) -> bool {
        let tags: BTreeMap<String, String> = tags
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        tags == replay::tag_map(OURS)
    }

    async fn plan(clients: &Clients) -> anyhow::Result<Planned<Topic>> {
        Planned::wanted(Topic::new(&clients.stack), clients).await
    }

    #[tokio::test]
    async fn creates_a_missing_topic_with_the_stacks_tags() {
        let create = mock!(Client::create_topic)
            .match_requests(|r| {
                r.name() == Some(replay::stack().notifications_topic().as_str()) && ours(r.tags())
            })
            .then_output(|| CreateTopicOutput::builder().topic_arn(arn()).build());
        let clients = clients(&[&found(false), &create]);
        assert_eq!(
            converged(Topic::new(&clients.stack), &clients).await,
            said(Verb::Create, "", 1)
        );
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn retags_a_topic_whose_tags_drifted_and_changes_nothing_else() {
        let retag = mock!(Client::tag_resource)
            .match_requests(|r| r.resource_arn() == Some(arn().as_str()) && ours(r.tags()))
            .then_output(|| TagResourceOutput::builder().build());
        let clients = clients(&[
            &found(true),
            &tagged(&[("asg-refresh:stack", "local")]),
            &retag,
        ]);
        assert_eq!(
            converged(Topic::new(&clients.stack), &clients).await,
            said(Verb::Update, "tags", 1)
        );
        assert_eq!(retag.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_up_to_date_topic_makes_no_request() {
        let clients = clients(&[&found(true), &tagged(OURS)]);
        assert_eq!(
            converged(Topic::new(&clients.stack), &clients).await,
            said(Verb::Unchanged, "", 0)
        );
    }

    #[tokio::test]
    async fn a_topic_without_the_stack_tag_is_refused_by_its_arn() {
        let clients = clients(&[&found(true), &tagged(&[("team", "ops")])]);
        let error = plan(&clients).await.err().expect("refused");
        assert_eq!(
            error.to_string(),
            format!(
                "sns topic {} exists and is not tagged asg-refresh:stack=local: refusing to take it over",
                arn()
            )
        );
        assert_eq!(mutating(&clients), 0);
    }

    #[tokio::test]
    async fn a_topic_the_stack_no_longer_wants_is_deleted_unless_it_is_not_ours() {
        let delete = mock!(Client::delete_topic)
            .match_requests(|r| r.topic_arn() == Some(arn().as_str()))
            .then_output(|| {
                aws_sdk_sns::operation::delete_topic::DeleteTopicOutput::builder().build()
            });
        let clients = clients(&[&found(true), &tagged(OURS), &delete]);
        let mut skipped = Vec::new();
        let step = Planned::absent(Topic::new(&clients.stack), &clients)
            .await
            .unwrap()
            .into_step(&mut skipped)
            .expect("a delete step");
        assert_eq!(step.verb(), Verb::Delete);
        step.apply(&clients).await.unwrap();
        assert_eq!((delete.num_calls(), mutating(&clients)), (1, 1));

        let clients =
            super::super::engine::replay::clients(&[&found(true), &tagged(&[("team", "ops")])]);
        let step = Planned::absent(Topic::new(&clients.stack), &clients)
            .await
            .unwrap()
            .into_step(&mut skipped);
        assert!(step.is_none());
        assert_eq!(
            skipped,
            [("sns topic", clients.stack.notifications_topic())]
        );
    }
}
