//! The Standard state machine: the definition `render` writes, its role, and logging to the
//! stack's log group (level ALL, without execution data).

use std::collections::BTreeMap;

use anyhow::bail;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::{
    CloudWatchLogsLogGroup, LogDestination, LogLevel, LoggingConfiguration, StateMachineType, Tag,
};
use generator::config::StackConfig;
use serde_json::Value;

use super::aws::{check_owned, desired_tags, is_owned, tags_differ, Clients, SdkResultExt};
use super::refusal::{self, RoleChanges, RoleWait, StatesRefusal, ROLE_PROPAGATION};
use super::Action;

/// The state machine as the stack wants it.
#[derive(Debug, Clone)]
pub struct DesiredStateMachine {
    pub definition: String,
    pub role_arn: String,
}

pub fn desired(config: &StackConfig) -> DesiredStateMachine {
    let stack = generator::names::Stack::new(config);
    DesiredStateMachine {
        definition: generator::rollout::build(config).to_json(),
        role_arn: stack.role_arn(&stack.states_role()),
    }
}

fn logging(clients: &Clients) -> LoggingConfiguration {
    LoggingConfiguration::builder()
        .level(LogLevel::All)
        .include_execution_data(false)
        .destinations(
            LogDestination::builder()
                .cloud_watch_logs_log_group(
                    CloudWatchLogsLogGroup::builder()
                        .log_group_arn(clients.stack.state_machine_log_group_arn())
                        .build(),
                )
                .build(),
        )
        .build()
}

/// The machine's tags, or `None` when it does not exist.
async fn current_tags(clients: &Clients) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let arn = clients.stack.state_machine_arn();
    match clients
        .sfn
        .describe_state_machine()
        .state_machine_arn(&arn)
        .send()
        .await
    {
        Ok(_) => {}
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_state_machine_does_not_exist()) =>
        {
            return Ok(None)
        }
        Err(error) => return Err(error).ctx(format!("cannot read state machine {arn}")),
    }
    let tags = clients
        .sfn
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .ctx(format!("cannot read the tags of {arn}"))?;
    Ok(Some(
        tags.tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
    ))
}

/// What differs on the state machine, and the definition's diff when it changes.
pub async fn plan(
    clients: &Clients,
    desired: &DesiredStateMachine,
) -> anyhow::Result<(Action, String)> {
    let name = clients.stack.state_machine();
    let arn = clients.stack.state_machine_arn();
    let Some(tags) = current_tags(clients).await? else {
        return Ok((Action::Create, String::new()));
    };
    check_owned(
        &clients.stack,
        "state machine",
        &name,
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    let machine = clients
        .sfn
        .describe_state_machine()
        .state_machine_arn(&arn)
        .send()
        .await
        .ctx(format!("cannot read state machine {arn}"))?;
    if machine.r#type() != &StateMachineType::Standard {
        bail!(
            "state machine {name} is {}, not STANDARD: the type cannot change in place; destroy the stack first",
            machine.r#type().as_str()
        );
    }
    let mut fields = Vec::new();
    let mut definition_diff = String::new();
    let as_json = |text: &str| serde_json::from_str::<Value>(text).ok();
    if as_json(machine.definition()) != as_json(&desired.definition) {
        fields.push("definition".to_string());
        definition_diff = super::diff::json(
            &format!("state machine {name} definition"),
            &super::diff::json_text(machine.definition()),
            &super::diff::json_text(&desired.definition),
        );
    }
    if machine.role_arn() != desired.role_arn {
        fields.push("role".to_string());
    }
    let want = logging(clients);
    let have = machine.logging_configuration();
    let same_logging = have.is_some_and(|have| {
        have.level() == want.level()
            && have.include_execution_data() == want.include_execution_data()
            && have
                .destinations()
                .iter()
                .filter_map(|d| d.cloud_watch_logs_log_group()?.log_group_arn())
                .collect::<Vec<_>>()
                == want
                    .destinations()
                    .iter()
                    .filter_map(|d| d.cloud_watch_logs_log_group()?.log_group_arn())
                    .collect::<Vec<_>>()
    });
    if !same_logging {
        fields.push("logging".to_string());
    }
    if tags_differ(&clients.stack, &tags) {
        fields.push("tags".to_string());
    }
    Ok((Action::from_fields(fields), definition_diff))
}

/// Creates or updates the machine. `role_changes` says what this deploy just did to its role:
/// a refusal that propagation explains is retried (bounded), any other fails at once.
pub async fn apply(
    clients: &Clients,
    desired: &DesiredStateMachine,
    action: &Action,
    role_changes: RoleChanges,
) -> anyhow::Result<()> {
    let name = clients.stack.state_machine();
    let arn = clients.stack.state_machine_arn();
    let tags: Vec<Tag> = desired_tags(&clients.stack)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let fields = match action {
        Action::Create => return create(clients, desired, tags, role_changes).await,
        Action::Update(fields) => fields,
        Action::Unchanged | Action::Delete => return Ok(()),
    };
    let has = |field: &str| fields.iter().any(|f| f == field);
    if has("definition") || has("role") || has("logging") {
        let update = || {
            clients
                .sfn
                .update_state_machine()
                .state_machine_arn(&arn)
                .definition(&desired.definition)
                .role_arn(&desired.role_arn)
                .logging_configuration(logging(clients))
                .send()
        };
        send_waiting_for_role(&name, "update", &desired.role_arn, role_changes, update).await?;
    }
    if has("tags") {
        clients
            .sfn
            .tag_resource()
            .resource_arn(&arn)
            .set_tags(Some(tags))
            .send()
            .await
            .ctx(format!("cannot tag state machine {name}"))?;
    }
    Ok(())
}

/// Creates the machine (its role's refusals as in [`apply`]).
async fn create(
    clients: &Clients,
    desired: &DesiredStateMachine,
    tags: Vec<Tag>,
    changes: RoleChanges,
) -> anyhow::Result<()> {
    let name = clients.stack.state_machine();
    let create = || {
        clients
            .sfn
            .create_state_machine()
            .name(&name)
            .r#type(StateMachineType::Standard)
            .definition(&desired.definition)
            .role_arn(&desired.role_arn)
            .logging_configuration(logging(clients))
            .set_tags(Some(tags.clone()))
            .send()
    };
    send_waiting_for_role(&name, "create", &desired.role_arn, changes, create).await?;
    Ok(())
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

pub async fn owned(clients: &Clients) -> anyhow::Result<Option<bool>> {
    Ok(current_tags(clients).await?.map(|tags| {
        is_owned(
            &clients.stack,
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }))
}

pub async fn delete(clients: &Clients) -> anyhow::Result<()> {
    let arn = clients.stack.state_machine_arn();
    clients
        .sfn
        .delete_state_machine()
        .state_machine_arn(&arn)
        .send()
        .await
        .ctx(format!("cannot delete state machine {arn}"))?;
    Ok(())
}
