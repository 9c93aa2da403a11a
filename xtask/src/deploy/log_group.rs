//! The CloudWatch Logs group the state machine writes its execution logs to.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use generator::names::Stack;

use super::aws::{desired_tags, Clients, SdkResultExt};
use super::engine::{tags_differ, Resource};

/// The stack's log group (`/aws/vendedlogs/states/...`).
pub struct LogGroup {
    pub name: String,
}

impl LogGroup {
    pub fn new(stack: &Stack) -> Self {
        Self {
            name: stack.state_machine_log_group(),
        }
    }
}

/// The group as it exists.
pub struct Current {
    /// Without the `:*` suffix.
    pub arn: String,
    pub tags: BTreeMap<String, String>,
}

/// What can differ on a log group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Tags,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Tags => f.write_str("tags"),
        }
    }
}

impl Resource for LogGroup {
    type Current = Current;
    type Change = Change;

    fn kind(&self) -> &'static str {
        "log group"
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    async fn read(&self, clients: &Clients) -> anyhow::Result<Option<Current>> {
        let name = &self.name;
        let groups = clients
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .send()
            .await
            .ctx(format!("cannot list log group {name}"))?;
        let Some(group) = groups
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name.as_str()))
        else {
            return Ok(None);
        };
        let arn = group
            .log_group_arn()
            .map(str::to_string)
            .or_else(|| group.arn().map(|a| a.trim_end_matches(":*").to_string()))
            .unwrap_or_else(|| {
                clients
                    .stack
                    .state_machine_log_group_arn()
                    .trim_end_matches(":*")
                    .to_string()
            });
        let tags = clients
            .logs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .ctx(format!("cannot read the tags of log group {name}"))?;
        let tags = tags
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(Some(Current { arn, tags }))
    }

    fn tags(current: &Current) -> Option<&BTreeMap<String, String>> {
        Some(&current.tags)
    }

    fn diff(&self, stack: &Stack, current: &Current) -> Vec<Change> {
        if tags_differ(stack, &current.tags) {
            vec![Change::Tags]
        } else {
            Vec::new()
        }
    }

    async fn create(&self, clients: &Clients) -> anyhow::Result<()> {
        clients
            .logs
            .create_log_group()
            .log_group_name(&self.name)
            .set_tags(Some(tags(&clients.stack)))
            .send()
            .await
            .ctx(format!("cannot create log group {}", self.name))?;
        Ok(())
    }

    async fn update(
        &self,
        clients: &Clients,
        current: &Current,
        changes: &[Change],
    ) -> anyhow::Result<()> {
        if changes.contains(&Change::Tags) {
            clients
                .logs
                .tag_resource()
                .resource_arn(&current.arn)
                .set_tags(Some(tags(&clients.stack)))
                .send()
                .await
                .ctx(format!("cannot tag log group {}", self.name))?;
        }
        Ok(())
    }

    async fn delete(&self, clients: &Clients, _current: &Current) -> anyhow::Result<()> {
        clients
            .logs
            .delete_log_group()
            .log_group_name(&self.name)
            .send()
            .await
            .ctx(format!("cannot delete log group {}", self.name))?;
        Ok(())
    }
}

fn tags(stack: &Stack) -> HashMap<String, String> {
    desired_tags(stack).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatchlogs::operation::create_log_group::CreateLogGroupOutput;
    use aws_sdk_cloudwatchlogs::operation::describe_log_groups::DescribeLogGroupsOutput;
    use aws_sdk_cloudwatchlogs::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_cloudwatchlogs::operation::tag_resource::TagResourceOutput;
    use aws_sdk_cloudwatchlogs::types::LogGroup as SdkLogGroup;
    use aws_sdk_cloudwatchlogs::Client;
    use aws_smithy_mocks::{mock, Rule};

    use super::super::engine::replay::{self, clients, mutating, OURS};
    use super::super::engine::{Planned, Step, Verb};
    use super::*;

    fn name() -> String {
        replay::stack().state_machine_log_group()
    }

    fn arn() -> String {
        format!("arn:aws:logs:us-east-1:123456789012:log-group:{}", name())
    }

    fn described(exists: bool) -> Rule {
        mock!(Client::describe_log_groups).then_output(move || {
            let groups = exists.then(|| {
                SdkLogGroup::builder()
                    .log_group_name(name())
                    .log_group_arn(arn())
                    .build()
            });
            DescribeLogGroupsOutput::builder()
                .set_log_groups(Some(groups.into_iter().collect()))
                .build()
        })
    }

    fn tagged(tags: &'static [(&'static str, &'static str)]) -> Rule {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(arn().as_str()))
            .then_output(move || {
                ListTagsForResourceOutput::builder()
                    .set_tags(Some(replay::tag_map(tags).into_iter().collect()))
                    .build()
            })
    }

    async fn plan(clients: &Clients) -> anyhow::Result<Planned<LogGroup>> {
        Planned::wanted(LogGroup::new(&clients.stack), clients).await
    }

    #[tokio::test]
    async fn creates_a_missing_group_with_the_stacks_tags() {
        let create = mock!(Client::create_log_group)
            .match_requests(|r| {
                r.log_group_name() == Some(name().as_str())
                    && r.tags().cloned().unwrap_or_default()
                        == replay::tag_map(OURS).into_iter().collect()
            })
            .then_output(|| CreateLogGroupOutput::builder().build());
        let clients = clients(&[&described(false), &create]);
        let planned = plan(&clients).await.unwrap();
        assert_eq!(planned.verb(), Verb::Create);
        planned.apply(&clients).await.unwrap();
        assert_eq!(create.num_calls(), 1);
        assert_eq!(mutating(&clients), 1);
    }

    #[tokio::test]
    async fn retags_a_group_whose_tags_drifted_and_changes_nothing_else() {
        let retag = mock!(Client::tag_resource)
            .match_requests(|r| r.resource_arn() == Some(arn().as_str()))
            .then_output(|| TagResourceOutput::builder().build());
        let clients = clients(&[
            &described(true),
            &tagged(&[("asg-refresh:stack", "local")]),
            &retag,
        ]);
        let planned = plan(&clients).await.unwrap();
        assert_eq!(
            (planned.verb(), planned.detail().as_str()),
            (Verb::Update, "tags")
        );
        planned.apply(&clients).await.unwrap();
        assert_eq!(retag.num_calls(), 1);
        assert_eq!(mutating(&clients), 1);
    }

    #[tokio::test]
    async fn an_up_to_date_group_makes_no_request() {
        let clients = clients(&[&described(true), &tagged(OURS)]);
        let planned = plan(&clients).await.unwrap();
        assert_eq!(planned.verb(), Verb::Unchanged);
        planned.apply(&clients).await.unwrap();
        assert_eq!(mutating(&clients), 0);
    }

    #[tokio::test]
    async fn a_group_without_the_stack_tag_is_refused() {
        let clients = clients(&[&described(true), &tagged(&[("team", "db")])]);
        let error = plan(&clients).await.err().expect("refused");
        assert!(
            error.to_string().contains("refusing to take it over"),
            "{error}"
        );
        assert_eq!(mutating(&clients), 0);
    }
}
