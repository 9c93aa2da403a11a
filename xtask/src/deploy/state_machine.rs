//! The Standard state machine: the definition `render` writes, its role, and logging to the
//! stack's log group (level ALL, without execution data).

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::operation::describe_state_machine::DescribeStateMachineOutput;
use aws_sdk_sfn::types::{
    CloudWatchLogsLogGroup, LogDestination, LogLevel, LoggingConfiguration, StateMachineType, Tag,
};
use generator::config::StackConfig;
use generator::names::Stack;
use serde_json::Value;

use super::aws::{desired_tags, Clients, SdkResultExt};
use super::engine::{changes, differing, tags_differ, Found, Resource};
use super::refusal::{self, RoleChanges, RoleWait, StatesRefusal, ROLE_PROPAGATION};

/// The state machine as the stack wants it.
#[derive(Debug, Clone)]
pub struct DesiredStateMachine {
    pub definition: String,
    pub role_arn: String,
}

pub fn desired(config: &StackConfig) -> DesiredStateMachine {
    let stack = Stack::new(config);
    DesiredStateMachine {
        definition: generator::rollout::build(config).to_json(),
        role_arn: stack.role_arn(&stack.states_role()),
    }
}

fn logging(stack: &Stack) -> LoggingConfiguration {
    LoggingConfiguration::builder()
        .level(LogLevel::All)
        .include_execution_data(false)
        .destinations(
            LogDestination::builder()
                .cloud_watch_logs_log_group(
                    CloudWatchLogsLogGroup::builder()
                        .log_group_arn(stack.state_machine_log_group_arn())
                        .build(),
                )
                .build(),
        )
        .build()
}

/// The stack's Standard state machine.
pub struct StateMachine {
    name: String,
    arn: String,
    /// `None` when the stack is destroyed: it is only read and deleted.
    desired: Option<DesiredStateMachine>,
    /// What this deploy did to the machine's role: a refusal that propagation explains is
    /// retried (bounded), any other fails at once.
    states_role: RoleChanges,
}

impl StateMachine {
    pub fn new(stack: &Stack, desired: DesiredStateMachine, states_role: RoleChanges) -> Self {
        Self {
            name: stack.state_machine(),
            arn: stack.state_machine_arn(),
            desired: Some(desired),
            states_role,
        }
    }

    /// The machine as destroy sees it (see [`Planned::absent`]).
    ///
    /// [`Planned::absent`]: super::engine::Planned::absent
    pub fn unwanted(stack: &Stack) -> Self {
        Self {
            name: stack.state_machine(),
            arn: stack.state_machine_arn(),
            desired: None,
            states_role: RoleChanges::default(),
        }
    }

    fn desired(&self) -> anyhow::Result<&DesiredStateMachine> {
        self.desired
            .as_ref()
            .with_context(|| format!("state machine {} is not wanted by the stack", self.name))
    }
}

/// The machine as DescribeStateMachine returned it, and its tags.
pub struct Current {
    pub machine: DescribeStateMachineOutput,
    pub tags: BTreeMap<String, String>,
}

changes! {
    /// What can differ on the machine.
    pub enum Change {
        Definition => "definition",
        Role => "role",
        Logging => "logging",
        Tags => "tags",
    }
}

/// The log group ARNs a logging configuration delivers to.
fn destinations(logging: &LoggingConfiguration) -> Vec<&str> {
    logging
        .destinations()
        .iter()
        .filter_map(|d| d.cloud_watch_logs_log_group()?.log_group_arn())
        .collect()
}

fn as_json(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

impl Resource for StateMachine {
    type Current = Current;
    type Change = Change;

    fn kind(&self) -> &'static str {
        "state machine"
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    async fn read(&self, clients: &Clients) -> anyhow::Result<Option<Current>> {
        let arn = &self.arn;
        let machine = clients.sfn.describe_state_machine().state_machine_arn(arn);
        let Some(machine) = machine.send().await.found(
            |e| e.is_state_machine_does_not_exist(),
            format!("cannot read state machine {arn}"),
        )?
        else {
            return Ok(None);
        };
        let tags = clients
            .sfn
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .ctx(format!("cannot read the tags of {arn}"))?;
        let tags = tags
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect();
        Ok(Some(Current { machine, tags }))
    }

    fn tags(current: &Current) -> Option<&BTreeMap<String, String>> {
        Some(&current.tags)
    }

    /// The type cannot change in place.
    fn check(&self, current: &Current) -> anyhow::Result<()> {
        let kind = current.machine.r#type();
        if kind != &StateMachineType::Standard {
            bail!(
                "state machine {} is {}, not STANDARD: the type cannot change in place; destroy the stack first",
                self.name,
                kind.as_str()
            );
        }
        Ok(())
    }

    fn diff(&self, stack: &Stack, current: &Current) -> Vec<Change> {
        let Some(desired) = &self.desired else {
            return Vec::new();
        };
        let machine = &current.machine;
        let want = logging(stack);
        let same_logging = machine.logging_configuration().is_some_and(|have| {
            have.level() == want.level()
                && have.include_execution_data() == want.include_execution_data()
                && destinations(have) == destinations(&want)
        });
        differing([
            (
                Change::Definition,
                as_json(machine.definition()) == as_json(&desired.definition),
            ),
            (Change::Role, machine.role_arn() == desired.role_arn),
            (Change::Logging, same_logging),
            (Change::Tags, !tags_differ(stack, &current.tags)),
        ])
    }

    async fn create(&self, clients: &Clients) -> anyhow::Result<()> {
        let desired = self.desired()?;
        let create = || {
            clients
                .sfn
                .create_state_machine()
                .name(&self.name)
                .r#type(StateMachineType::Standard)
                .definition(&desired.definition)
                .role_arn(&desired.role_arn)
                .logging_configuration(logging(&clients.stack))
                .set_tags(Some(tags(&clients.stack)))
                .send()
        };
        send_waiting_for_role(
            &self.name,
            "create",
            &desired.role_arn,
            self.states_role,
            create,
        )
        .await?;
        Ok(())
    }

    /// UpdateStateMachine (definition, role and logging in one request), then TagResource.
    async fn update(
        &self,
        clients: &Clients,
        _current: &Current,
        changes: &[Change],
    ) -> anyhow::Result<()> {
        let desired = self.desired()?;
        let name = &self.name;
        if changes.iter().any(|c| *c != Change::Tags) {
            let update = || {
                clients
                    .sfn
                    .update_state_machine()
                    .state_machine_arn(&self.arn)
                    .definition(&desired.definition)
                    .role_arn(&desired.role_arn)
                    .logging_configuration(logging(&clients.stack))
                    .send()
            };
            send_waiting_for_role(name, "update", &desired.role_arn, self.states_role, update)
                .await?;
        }
        if changes.contains(&Change::Tags) {
            clients
                .sfn
                .tag_resource()
                .resource_arn(&self.arn)
                .set_tags(Some(tags(&clients.stack)))
                .send()
                .await
                .ctx(format!("cannot tag state machine {name}"))?;
        }
        Ok(())
    }

    async fn delete(&self, clients: &Clients, _current: &Current) -> anyhow::Result<()> {
        let arn = &self.arn;
        clients
            .sfn
            .delete_state_machine()
            .state_machine_arn(arn)
            .send()
            .await
            .ctx(format!("cannot delete state machine {arn}"))?;
        Ok(())
    }

    /// The definition's unified diff, when it changes.
    fn review(&self, current: &Current, changes: &[Change]) -> String {
        match &self.desired {
            Some(desired) if changes.contains(&Change::Definition) => super::diff::json(
                &format!("state machine {} definition", self.name),
                &super::diff::json_text(current.machine.definition()),
                &super::diff::json_text(&desired.definition),
            ),
            _ => String::new(),
        }
    }
}

fn tags(stack: &Stack) -> Vec<Tag> {
    desired_tags(stack)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Sends a CreateStateMachine or UpdateStateMachine request. Step Functions answers
/// AccessDeniedException both while a new role propagates and when a role lacks a permission:
/// the first is waited for (backoff, bounded, the line says what it waits for), the second
/// fails at once saying what is missing.
async fn send_waiting_for_role<T, E, F, Fut>(
    name: &str,
    verb: &str,
    role: &str,
    changes: RoleChanges,
    send: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>,
    >,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let refusal = |error: &SdkError<E, _>| {
        error
            .as_service_error()
            .and_then(|e| StatesRefusal::classify(e.code(), e.message()))
    };
    let what = format!("state machine {name}");
    match refusal::send_waiting_for_role(&what, send, |e| {
        refusal(e).and_then(|r| r.wait_reason(role, changes))
    })
    .await
    {
        Ok(out) => Ok(out),
        Err(RoleWait::StillRefused(error)) => {
            let explained = refusal(&error).map(|r| r.explain(role)).unwrap_or_default();
            Err(error).ctx(format!(
                "cannot {verb} state machine {name}: still refused after waiting {} s for role {role} to \
                 propagate; {explained}",
                ROLE_PROPAGATION.as_secs(),
            ))
        }
        Err(RoleWait::Refused(error)) => match refusal(&error) {
            Some(r) => Err(error).ctx(format!(
                "cannot {verb} state machine {name}: {}",
                r.explain(role)
            )),
            None => Err(error).ctx(format!("cannot {verb} state machine {name}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sfn::operation::create_state_machine::CreateStateMachineOutput;
    use aws_sdk_sfn::operation::describe_state_machine::DescribeStateMachineError;
    use aws_sdk_sfn::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_sfn::operation::update_state_machine::UpdateStateMachineOutput;
    use aws_sdk_sfn::primitives::DateTime;
    use aws_sdk_sfn::types::error::StateMachineDoesNotExist;
    use aws_sdk_sfn::Client;
    use aws_smithy_mocks::{mock, Rule};

    use super::super::engine::replay::{self, clients, mutating, OURS};
    use super::super::engine::{Planned, Step, Verb};
    use super::super::replay_apply::{applied, converged, said};
    use super::*;

    const DEFINITION: &str = r#"{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}"#;

    fn arn() -> String {
        replay::stack().state_machine_arn()
    }

    fn wanted() -> DesiredStateMachine {
        let stack = replay::stack();
        DesiredStateMachine {
            definition: DEFINITION.to_string(),
            role_arn: stack.role_arn(&stack.states_role()),
        }
    }

    /// DescribeStateMachine's answer: `wanted()` deployed as `definition` and `kind`.
    fn described(definition: &'static str, kind: StateMachineType) -> Rule {
        mock!(Client::describe_state_machine)
            .match_requests(|r| r.state_machine_arn() == Some(arn().as_str()))
            .then_output(move || {
                let stack = replay::stack();
                DescribeStateMachineOutput::builder()
                    .state_machine_arn(arn())
                    .name(stack.state_machine())
                    .definition(definition)
                    .role_arn(wanted().role_arn)
                    .r#type(kind.clone())
                    .creation_date(DateTime::from_secs(0))
                    .logging_configuration(logging(&stack))
                    .build()
                    .unwrap()
            })
    }

    fn tagged(tags: &'static [(&'static str, &'static str)]) -> Rule {
        mock!(Client::list_tags_for_resource)
            .match_requests(|r| r.resource_arn() == Some(arn().as_str()))
            .then_output(move || {
                let tags = tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build());
                ListTagsForResourceOutput::builder()
                    .set_tags(Some(tags.collect()))
                    .build()
            })
    }

    async fn plan(clients: &Clients) -> anyhow::Result<Planned<StateMachine>> {
        let machine = StateMachine::new(&clients.stack, wanted(), RoleChanges::default());
        Planned::wanted(machine, clients).await
    }

    #[tokio::test]
    async fn creates_a_missing_machine_with_its_logging_and_tags() {
        let missing = mock!(Client::describe_state_machine).then_error(|| {
            DescribeStateMachineError::StateMachineDoesNotExist(
                StateMachineDoesNotExist::builder().build(),
            )
        });
        let create = mock!(Client::create_state_machine)
            .match_requests(|r| {
                r.name() == Some(replay::stack().state_machine().as_str())
                    && r.r#type() == Some(&StateMachineType::Standard)
                    && r.definition() == Some(DEFINITION)
                    && r.logging_configuration() == Some(&logging(&replay::stack()))
                    && r.tags().len() == OURS.len()
            })
            .then_output(|| {
                CreateStateMachineOutput::builder()
                    .state_machine_arn(arn())
                    .creation_date(DateTime::from_secs(0))
                    .build()
                    .unwrap()
            });
        let clients = clients(&[&missing, &create]);
        assert_eq!(
            converged(
                StateMachine::new(&clients.stack, wanted(), RoleChanges::default()),
                &clients
            )
            .await,
            said(Verb::Create, "", 1)
        );
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_changed_definition_is_one_update_shown_as_a_diff() {
        let update = mock!(Client::update_state_machine)
            .match_requests(|r| {
                r.state_machine_arn() == Some(arn().as_str()) && r.definition() == Some(DEFINITION)
            })
            .then_output(|| {
                UpdateStateMachineOutput::builder()
                    .update_date(DateTime::from_secs(0))
                    .build()
                    .unwrap()
            });
        let old = r#"{"StartAt":"Done","States":{"Done":{"Type":"Pass","End":true}}}"#;
        let clients = clients(&[
            &described(old, StateMachineType::Standard),
            &tagged(OURS),
            &update,
        ]);
        let planned = plan(&clients).await.unwrap();
        let review = planned.review();
        assert!(
            review.starts_with(&format!(
                "--- state machine {} definition (deployed)\n",
                clients.stack.state_machine()
            )),
            "{review}"
        );
        assert!(review.contains("-      \"Type\": \"Pass\""), "{review}");
        assert!(review.contains("+      \"Type\": \"Succeed\""), "{review}");
        assert_eq!(
            applied(&planned, &clients).await,
            said(Verb::Update, "definition", 1)
        );
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_up_to_date_machine_makes_no_request() {
        // Key order and spacing are no change.
        let same = r#"{"States": {"Done": {"Type": "Succeed"}}, "StartAt": "Done"}"#;
        let clients = clients(&[&described(same, StateMachineType::Standard), &tagged(OURS)]);
        let planned = plan(&clients).await.unwrap();
        assert_eq!(planned.review(), "");
        assert_eq!(
            applied(&planned, &clients).await,
            said(Verb::Unchanged, "", 0)
        );
    }

    #[tokio::test]
    async fn a_machine_without_the_stack_tag_is_refused() {
        let clients = clients(&[
            &described(DEFINITION, StateMachineType::Standard),
            &tagged(&[("team", "ops")]),
        ]);
        let error = plan(&clients).await.err().expect("refused");
        assert!(
            error.to_string().contains("refusing to take it over"),
            "{error}"
        );
        assert_eq!(mutating(&clients), 0);
    }

    #[tokio::test]
    async fn an_express_machine_stops_the_plan_but_not_destroy() {
        let clients = clients(&[
            &described(DEFINITION, StateMachineType::Express),
            &tagged(OURS),
        ]);
        let error = plan(&clients).await.err().expect("refused");
        assert!(
            error
                .to_string()
                .contains("is EXPRESS, not STANDARD: the type cannot change in place"),
            "{error}"
        );
        let absent = Planned::absent(StateMachine::unwanted(&clients.stack), &clients)
            .await
            .unwrap();
        let step = absent.into_step(&mut Vec::new()).expect("a delete step");
        assert_eq!(step.verb(), Verb::Delete);
        assert_eq!(mutating(&clients), 0);
    }
}
