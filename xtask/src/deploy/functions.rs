//! The Lambda functions (the planner, the refresher and, with `completion = "events"`, the
//! completer): configuration (runtime, handler, architecture, memory, timeout, environment,
//! role), code (updated only when the zip's SHA-256 differs) and tags.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use aws_sdk_lambda::client::Waiters as _;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::create_function::CreateFunctionError;
use aws_sdk_lambda::operation::get_function::{GetFunctionError, GetFunctionOutput};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, FunctionConfiguration, Runtime,
};
use aws_smithy_runtime_api::client::waiters::error::WaiterError;
use base64::Engine;
use generator::config::{Completion, StackConfig};
use generator::names::Stack;
use sha2::{Digest, Sha256};

use super::aws::{desired_tags, Clients, SdkResultExt};
use super::engine::{changes, differing, tags_differ, Found, Resource};
use super::refusal::{lambda_cannot_assume, send_waiting_for_role, RoleWait};

/// The environment variable naming the progress table.
pub use generator::names::env::TABLE as TABLE_VARIABLE;
const HANDLER: &str = "bootstrap";
/// Most a deploy waits for a function to become Active, and then for an update to end.
const READY_DEADLINE: Duration = Duration::from_secs(300);

/// A function as the stack wants it.
#[derive(Debug, Clone)]
pub struct DesiredFunction {
    pub name: String,
    pub role_arn: String,
    pub architecture: Architecture,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
    pub environment: BTreeMap<String, String>,
    pub zip: Vec<u8>,
    /// Base64 of the zip's SHA-256, as Lambda reports `CodeSha256`.
    pub code_sha256: String,
}

/// The functions the stack wants, from `zips`: a function (`planner`, `refresher`,
/// `completer`) to its zip (see [`wanted`] for which ones).
pub fn desired(
    config: &StackConfig,
    zips: &BTreeMap<&'static str, PathBuf>,
) -> anyhow::Result<Vec<DesiredFunction>> {
    let stack = generator::names::Stack::new(config);
    let architecture = match config.lambda.architecture {
        generator::config::Architecture::Arm64 => Architecture::Arm64,
        generator::config::Architecture::X86_64 => Architecture::X8664,
    };
    let mut out = Vec::new();
    for (function, zip_path) in zips {
        let (name, timeout, role) = match *function {
            "planner" => (
                stack.planner_function(),
                config.lambda.planner_timeout_seconds,
                stack.lambda_role(),
            ),
            "refresher" => (
                stack.refresher_function(),
                config.lambda.timeout_seconds,
                stack.lambda_role(),
            ),
            "completer" => (
                stack.completer_function(),
                config.lambda.timeout_seconds,
                stack.completer_role(),
            ),
            other => bail!("unknown function {other}"),
        };
        let zip = std::fs::read(zip_path)
            .with_context(|| format!("cannot read {}", zip_path.display()))?;
        let code_sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&zip));
        out.push(DesiredFunction {
            name,
            role_arn: stack.role_arn(&role),
            architecture: architecture.clone(),
            memory_mb: i32::try_from(config.lambda.memory_mb)
                .context("lambda.memory_mb is too large")?,
            timeout_seconds: i32::try_from(timeout).context("the function timeout is too large")?,
            environment: BTreeMap::from([(TABLE_VARIABLE.to_string(), stack.table())]),
            zip,
            code_sha256,
        });
    }
    Ok(out)
}

/// Whether the stack deploys `function` (of `crate::build::FUNCTIONS`): the completer only
/// with `completion = "events"`.
pub fn wanted(config: &StackConfig, function: &str) -> bool {
    function != "completer" || config.rollout.completion == Completion::Events
}

/// One Lambda function of the stack.
pub struct Function {
    pub name: String,
    /// `None` for one the stack no longer wants (the completer with `completion = "poll"`):
    /// it is only read and deleted.
    desired: Option<DesiredFunction>,
}

impl Function {
    pub fn new(desired: DesiredFunction) -> Self {
        Self {
            name: desired.name.clone(),
            desired: Some(desired),
        }
    }

    /// A function the stack does not want (see [`Planned::absent`]).
    ///
    /// [`Planned::absent`]: super::engine::Planned::absent
    pub fn unwanted(name: String) -> Self {
        Self {
            name,
            desired: None,
        }
    }

    fn desired(&self) -> anyhow::Result<&DesiredFunction> {
        self.desired
            .as_ref()
            .with_context(|| format!("function {} is not wanted by the stack", self.name))
    }
}

/// The function as GetFunction returned it.
pub struct Current {
    pub configuration: FunctionConfiguration,
    pub tags: BTreeMap<String, String>,
}

changes! {
    /// What can differ on a function, in the order the plan lists them.
    pub enum Change {
        Runtime => "runtime",
        Handler => "handler",
        Memory => "memory",
        Timeout => "timeout",
        Environment => "environment",
        Role => "role",
        /// Changes with the code (UpdateFunctionCode).
        Architecture => "architecture",
        Code => "code",
        Tags => "tags",
    }
}

impl Change {
    /// What UpdateFunctionConfiguration changes.
    fn is_configuration(self) -> bool {
        matches!(
            self,
            Change::Runtime
                | Change::Handler
                | Change::Memory
                | Change::Timeout
                | Change::Environment
                | Change::Role
        )
    }

    /// What UpdateFunctionCode changes.
    fn is_code(self) -> bool {
        matches!(self, Change::Code | Change::Architecture)
    }
}

/// The fields of `configuration` (and `tags`) that differ from `desired`.
fn differences(
    stack: &Stack,
    desired: &DesiredFunction,
    configuration: &FunctionConfiguration,
    tags: &BTreeMap<String, String>,
) -> Vec<Change> {
    let environment: BTreeMap<String, String> = configuration
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    differing([
        (
            Change::Runtime,
            configuration.runtime() == Some(&Runtime::Providedal2023),
        ),
        (Change::Handler, configuration.handler() == Some(HANDLER)),
        (
            Change::Memory,
            configuration.memory_size() == Some(desired.memory_mb),
        ),
        (
            Change::Timeout,
            configuration.timeout() == Some(desired.timeout_seconds),
        ),
        (Change::Environment, environment == desired.environment),
        (
            Change::Role,
            configuration.role() == Some(desired.role_arn.as_str()),
        ),
        (
            Change::Architecture,
            configuration.architectures() == [desired.architecture.clone()],
        ),
        (
            Change::Code,
            configuration.code_sha256() == Some(desired.code_sha256.as_str()),
        ),
        (Change::Tags, !tags_differ(stack, tags)),
    ])
}

fn environment(desired: &DesiredFunction) -> Environment {
    Environment::builder()
        .set_variables(Some(desired.environment.clone().into_iter().collect()))
        .build()
}

impl Resource for Function {
    type Current = Current;
    type Change = Change;

    fn kind(&self) -> &'static str {
        "lambda function"
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn refused_as(&self) -> String {
        format!("Lambda function {}", self.name)
    }

    async fn read(&self, clients: &Clients) -> anyhow::Result<Option<Current>> {
        let name = &self.name;
        let function = clients
            .lambda
            .get_function()
            .function_name(name)
            .send()
            .await;
        let Some(out) = function.found(
            |e| e.is_resource_not_found_exception(),
            format!("cannot read function {name}"),
        )?
        else {
            return Ok(None);
        };
        let tags = out
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let configuration = out
            .configuration()
            .context("GetFunction returned no configuration")?
            .clone();
        Ok(Some(Current {
            configuration,
            tags,
        }))
    }

    fn tags(current: &Current) -> Option<&BTreeMap<String, String>> {
        Some(&current.tags)
    }

    fn diff(&self, stack: &Stack, current: &Current) -> Vec<Change> {
        match &self.desired {
            Some(desired) => differences(stack, desired, &current.configuration, &current.tags),
            None => Vec::new(),
        }
    }

    async fn create(&self, clients: &Clients) -> anyhow::Result<()> {
        create(clients, self.desired()?).await
    }

    async fn update(
        &self,
        clients: &Clients,
        current: &Current,
        changes: &[Change],
    ) -> anyhow::Result<()> {
        let function = self.desired()?;
        let name = &self.name;
        if changes.iter().any(|c| c.is_configuration()) {
            wait_ready(clients, name).await?;
            clients
                .lambda
                .update_function_configuration()
                .function_name(name)
                .runtime(Runtime::Providedal2023)
                .handler(HANDLER)
                .memory_size(function.memory_mb)
                .timeout(function.timeout_seconds)
                .environment(environment(function))
                .role(&function.role_arn)
                .send()
                .await
                .ctx(format!(
                    "cannot update the configuration of function {name}"
                ))?;
            wait_ready(clients, name).await?;
        }
        if changes.iter().any(|c| c.is_code()) {
            wait_ready(clients, name).await?;
            clients
                .lambda
                .update_function_code()
                .function_name(name)
                .zip_file(Blob::new(function.zip.clone()))
                .architectures(function.architecture.clone())
                .send()
                .await
                .ctx(format!("cannot update the code of function {name}"))?;
            wait_ready(clients, name).await?;
        }
        if changes.contains(&Change::Tags) {
            let arn = current
                .configuration
                .function_arn()
                .map(str::to_string)
                .unwrap_or_else(|| clients.stack.function_arn(name));
            let tags: HashMap<String, String> = desired_tags(&clients.stack).into_iter().collect();
            clients
                .lambda
                .tag_resource()
                .resource(arn)
                .set_tags(Some(tags))
                .send()
                .await
                .ctx(format!("cannot tag function {name}"))?;
        }
        Ok(())
    }

    async fn delete(&self, clients: &Clients, _current: &Current) -> anyhow::Result<()> {
        let name = &self.name;
        clients
            .lambda
            .delete_function()
            .function_name(name)
            .send()
            .await
            .ctx(format!("cannot delete function {name}"))?;
        Ok(())
    }
}

/// Creates the function, retrying with backoff while Lambda cannot yet assume a new role (and
/// only then: any other invalid parameter fails at once).
async fn create(clients: &Clients, function: &DesiredFunction) -> anyhow::Result<()> {
    let name = &function.name;
    let environment = environment(function);
    let tags: HashMap<String, String> = desired_tags(&clients.stack).into_iter().collect();
    let create = || {
        clients
            .lambda
            .create_function()
            .function_name(name)
            .runtime(Runtime::Providedal2023)
            .handler(HANDLER)
            .role(&function.role_arn)
            .architectures(function.architecture.clone())
            .memory_size(function.memory_mb)
            .timeout(function.timeout_seconds)
            .environment(environment.clone())
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(function.zip.clone()))
                    .build(),
            )
            .set_tags(Some(tags.clone()))
            .send()
    };
    let cannot_assume = |error: &SdkError<CreateFunctionError, _>| {
        error
            .as_service_error()
            .is_some_and(|e| {
                e.is_invalid_parameter_value_exception() && lambda_cannot_assume(e.meta().message())
            })
            .then(|| {
                format!(
                    "Lambda cannot assume role {} yet; a new or changed role takes a few seconds to propagate",
                    function.role_arn
                )
            })
    };
    match send_waiting_for_role(&format!("function {name}"), create, cannot_assume).await {
        Ok(_) => {}
        Err(RoleWait::Refused(error) | RoleWait::StillRefused(error)) => {
            return Err(error).ctx(format!("cannot create function {name}"))
        }
    }
    wait_ready(clients, name).await
}

/// Waits (Lambda's own waiters, at most [`READY_DEADLINE`] each) for `State=Active`, then for
/// the last update to have ended `Successful`; says why when either ended `Failed`.
pub async fn wait_ready(clients: &Clients, name: &str) -> anyhow::Result<()> {
    let lambda = &clients.lambda;
    let active = lambda.wait_until_function_active_v2().function_name(name);
    waited(
        active.wait(READY_DEADLINE).await,
        &format!("the creation failed of function {name}"),
        FunctionConfiguration::state_reason,
        || format!("waiting for function {name} to become Active"),
    )?;
    let updated = lambda.wait_until_function_updated_v2().function_name(name);
    waited(
        updated.wait(READY_DEADLINE).await,
        &format!("the last update failed of function {name}"),
        FunctionConfiguration::last_update_status_reason,
        || format!("waiting for the last update of function {name} to end"),
    )
}

/// How one of [`wait_ready`]'s waiters ended: its failure state fails with `failed` and the
/// last configuration's `reason`; any other error says what it was `waiting` for.
fn waited<T>(
    result: Result<T, WaiterError<GetFunctionOutput, GetFunctionError>>,
    failed: &str,
    reason: fn(&FunctionConfiguration) -> Option<&str>,
    waiting: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(WaiterError::FailureState(state)) => {
            let reason = state
                .final_poll()
                .as_result()
                .ok()
                .and_then(|out| out.configuration())
                .and_then(reason);
            bail!("{failed}: {}", reason.unwrap_or("no reason given"))
        }
        Err(other) => Err(anyhow::Error::new(other).context(waiting())),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_lambda::operation::create_function::CreateFunctionOutput;
    use aws_sdk_lambda::operation::delete_function::DeleteFunctionOutput;
    use aws_sdk_lambda::operation::get_function::{GetFunctionError, GetFunctionOutput};
    use aws_sdk_lambda::operation::update_function_configuration::UpdateFunctionConfigurationOutput;
    use aws_sdk_lambda::types::error::ResourceNotFoundException;
    use aws_sdk_lambda::types::{EnvironmentResponse, LastUpdateStatus, State};
    use aws_sdk_lambda::Client;
    use aws_smithy_mocks::{mock, Rule};

    use super::super::engine::replay::{self, clients, mutating, OURS};
    use super::super::engine::{Planned, Step, Verb};
    use super::super::replay_apply::{converged, said};
    use super::*;

    fn name() -> String {
        replay::stack().planner_function()
    }

    fn wanted() -> DesiredFunction {
        let stack = replay::stack();
        DesiredFunction {
            name: name(),
            role_arn: stack.role_arn(&stack.lambda_role()),
            architecture: Architecture::Arm64,
            memory_mb: 256,
            timeout_seconds: 60,
            environment: BTreeMap::from([(TABLE_VARIABLE.to_string(), stack.table())]),
            zip: b"zip".to_vec(),
            code_sha256: "c2hhMjU2".to_string(),
        }
    }

    /// GetFunction's answer for `wanted()` deployed with `memory_mb` and `tags`, Active and
    /// its last update Successful.
    fn deployed(memory_mb: i32, tags: &[(&str, &str)]) -> GetFunctionOutput {
        let function = wanted();
        let configuration = FunctionConfiguration::builder()
            .function_name(&function.name)
            .function_arn(replay::stack().function_arn(&function.name))
            .runtime(Runtime::Providedal2023)
            .handler(HANDLER)
            .memory_size(memory_mb)
            .timeout(function.timeout_seconds)
            .environment(
                EnvironmentResponse::builder()
                    .set_variables(Some(function.environment.into_iter().collect()))
                    .build(),
            )
            .role(function.role_arn)
            .architectures(function.architecture)
            .code_sha256(function.code_sha256)
            .state(State::Active)
            .last_update_status(LastUpdateStatus::Successful)
            .build();
        GetFunctionOutput::builder()
            .configuration(configuration)
            .set_tags(Some(replay::tag_map(tags).into_iter().collect()))
            .build()
    }

    fn not_found() -> GetFunctionError {
        GetFunctionError::ResourceNotFoundException(ResourceNotFoundException::builder().build())
    }

    fn found(memory_mb: i32, tags: &'static [(&'static str, &'static str)]) -> Rule {
        mock!(Client::get_function)
            .match_requests(|r| r.function_name() == Some(name().as_str()))
            .then_output(move || deployed(memory_mb, tags))
    }

    async fn plan(clients: &Clients) -> anyhow::Result<Planned<Function>> {
        Planned::wanted(Function::new(wanted()), clients).await
    }

    #[tokio::test]
    async fn creates_a_missing_function_then_waits_for_it() {
        // Missing at the plan; Active and updated once created.
        let get = mock!(Client::get_function)
            .sequence()
            .error(not_found)
            .output(|| deployed(256, OURS))
            .repeatedly()
            .build();
        let create = mock!(Client::create_function)
            .match_requests(|r| {
                r.function_name() == Some(name().as_str())
                    && r.memory_size() == Some(256)
                    && r.tags().cloned().unwrap_or_default()
                        == replay::tag_map(OURS).into_iter().collect()
            })
            .then_output(|| CreateFunctionOutput::builder().build());
        let clients = clients(&[&get, &create]);
        assert_eq!(
            converged(Function::new(wanted()), &clients).await,
            said(Verb::Create, "", 1)
        );
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_creation_that_fails_says_why() {
        let get = mock!(Client::get_function)
            .sequence()
            .error(not_found)
            .output(|| {
                let failed = FunctionConfiguration::builder()
                    .state(State::Failed)
                    .state_reason("the zip is not a Lambda bootstrap")
                    .build();
                GetFunctionOutput::builder().configuration(failed).build()
            })
            .repeatedly()
            .build();
        let create =
            mock!(Client::create_function).then_output(|| CreateFunctionOutput::builder().build());
        let clients = clients(&[&get, &create]);
        let planned = plan(&clients).await.unwrap();
        let error = planned
            .apply(&clients)
            .await
            .expect_err("the creation fails");
        assert_eq!(
            error.to_string(),
            format!(
                "the creation failed of function {}: the zip is not a Lambda bootstrap",
                name()
            )
        );
    }

    #[tokio::test]
    async fn a_changed_memory_size_is_one_configuration_update() {
        let update = mock!(Client::update_function_configuration)
            .match_requests(|r| {
                r.function_name() == Some(name().as_str()) && r.memory_size() == Some(256)
            })
            .then_output(|| UpdateFunctionConfigurationOutput::builder().build());
        let clients = clients(&[&found(128, OURS), &update]);
        assert_eq!(
            converged(Function::new(wanted()), &clients).await,
            said(Verb::Update, "memory", 1)
        );
        assert_eq!(update.num_calls(), 1);
    }

    #[test]
    fn each_field_is_its_own_change_in_the_plans_order() {
        let stack = replay::stack();
        let function = wanted();
        let current = deployed(256, OURS);
        let configuration = current.configuration().unwrap();
        let tags = replay::tag_map(OURS);
        assert_eq!(differences(&stack, &function, configuration, &tags), []);
        let other = DesiredFunction {
            memory_mb: 512,
            timeout_seconds: 90,
            architecture: Architecture::X8664,
            code_sha256: "b3RoZXI=".into(),
            ..function
        };
        let changes = differences(&stack, &other, configuration, &BTreeMap::new());
        assert_eq!(
            changes,
            [
                Change::Memory,
                Change::Timeout,
                Change::Architecture,
                Change::Code,
                Change::Tags
            ]
        );
        let labels: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            labels,
            ["memory", "timeout", "architecture", "code", "tags"]
        );
    }

    #[tokio::test]
    async fn an_up_to_date_function_makes_no_request() {
        let clients = clients(&[&found(256, OURS)]);
        assert_eq!(
            converged(Function::new(wanted()), &clients).await,
            said(Verb::Unchanged, "", 0)
        );
    }

    #[tokio::test]
    async fn a_function_without_the_stack_tag_is_refused() {
        let clients = clients(&[&found(256, &[("team", "ops")])]);
        let error = plan(&clients).await.err().expect("refused");
        assert_eq!(
            error.to_string(),
            format!(
                "Lambda function {} exists and is not tagged asg-refresh:stack=local: refusing to take it over",
                name()
            )
        );
        assert_eq!(mutating(&clients), 0);
    }

    #[tokio::test]
    async fn an_unwanted_function_is_deleted_only_when_it_is_ours() {
        let delete = mock!(Client::delete_function)
            .match_requests(|r| r.function_name() == Some(name().as_str()))
            .then_output(|| DeleteFunctionOutput::builder().build());
        let replay = clients(&[&found(256, OURS), &delete]);
        let mut skipped = Vec::new();
        let step = Planned::absent(Function::unwanted(name()), &replay)
            .await
            .unwrap()
            .into_step(&mut skipped)
            .expect("a delete step");
        step.apply(&replay).await.unwrap();
        assert_eq!((delete.num_calls(), mutating(&replay)), (1, 1));

        let replay = clients(&[&found(256, &[("team", "ops")])]);
        let step = Planned::absent(Function::unwanted(name()), &replay)
            .await
            .unwrap()
            .into_step(&mut skipped);
        assert!(step.is_none());
        assert_eq!(skipped, [("lambda function", name())]);

        let missing = mock!(Client::get_function).then_error(not_found);
        let replay = clients(&[&missing]);
        let absent = Planned::absent(Function::unwanted(name()), &replay)
            .await
            .unwrap();
        assert!(absent.into_step(&mut skipped).is_none());
        assert_eq!(mutating(&replay), 0);
    }
}
