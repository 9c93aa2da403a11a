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
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, Runtime};
use aws_smithy_runtime_api::client::waiters::error::WaiterError;
use base64::Engine;
use generator::config::{Completion, StackConfig};
use sha2::{Digest, Sha256};

use super::aws::{check_owned, desired_tags, is_owned, tags_differ, Clients, SdkResultExt};
use super::refusal::{lambda_cannot_assume, send_waiting_for_role, RoleWait};
use super::Action;

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

#[derive(Debug, Clone)]
pub struct FunctionPlan {
    pub desired: DesiredFunction,
    pub action: Action,
    pub arn: Option<String>,
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

/// The completer when the stack no longer wants it (`completion = "poll"`) and an earlier
/// deploy made it: `Some(Action::Delete)`; `None` when it is wanted, absent, or someone
/// else's function of that name (left alone).
pub async fn leftover(clients: &Clients, config: &StackConfig) -> anyhow::Result<Option<Action>> {
    if wanted(config, "completer") {
        return Ok(None);
    }
    let name = clients.stack.completer_function();
    Ok(match owned(clients, &name).await? {
        Some(true) => Some(Action::Delete),
        Some(false) | None => None,
    })
}

pub async fn plan(
    clients: &Clients,
    desired: Vec<DesiredFunction>,
) -> anyhow::Result<Vec<FunctionPlan>> {
    let mut out = Vec::new();
    for function in desired {
        let (action, arn) = diff(clients, &function).await?;
        out.push(FunctionPlan {
            desired: function,
            action,
            arn,
        });
    }
    Ok(out)
}

/// Configuration fields that UpdateFunctionConfiguration changes.
const CONFIG_FIELDS: [&str; 6] = [
    "runtime",
    "handler",
    "memory",
    "timeout",
    "environment",
    "role",
];

async fn diff(
    clients: &Clients,
    desired: &DesiredFunction,
) -> anyhow::Result<(Action, Option<String>)> {
    let name = &desired.name;
    let out = match clients
        .lambda
        .get_function()
        .function_name(name)
        .send()
        .await
    {
        Ok(out) => out,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok((Action::Create, None));
        }
        Err(error) => return Err(error).ctx(format!("cannot read function {name}")),
    };
    let tags: BTreeMap<String, String> = out
        .tags()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    check_owned(
        &clients.stack,
        "Lambda function",
        name,
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    let config = out
        .configuration()
        .context("GetFunction returned no configuration")?;
    let environment: BTreeMap<String, String> = config
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut fields = Vec::new();
    let mut differs = |field: &str, differs: bool| {
        if differs {
            fields.push(field.to_string());
        }
    };
    differs(
        "runtime",
        config.runtime() != Some(&Runtime::Providedal2023),
    );
    differs("handler", config.handler() != Some(HANDLER));
    differs("memory", config.memory_size() != Some(desired.memory_mb));
    differs("timeout", config.timeout() != Some(desired.timeout_seconds));
    differs("environment", environment != desired.environment);
    differs("role", config.role() != Some(desired.role_arn.as_str()));
    // The architecture changes with the code (UpdateFunctionCode).
    differs(
        "architecture",
        config.architectures() != [desired.architecture.clone()],
    );
    differs(
        "code",
        config.code_sha256() != Some(desired.code_sha256.as_str()),
    );
    differs("tags", tags_differ(&clients.stack, &tags));
    let arn = config.function_arn().map(str::to_string);
    Ok((
        if fields.is_empty() {
            Action::Unchanged
        } else {
            Action::Update(fields)
        },
        arn,
    ))
}

pub async fn apply(clients: &Clients, plan: &FunctionPlan) -> anyhow::Result<()> {
    let function = &plan.desired;
    let name = &function.name;
    let environment = Environment::builder()
        .set_variables(Some(function.environment.clone().into_iter().collect()))
        .build();
    let fields: &[String] = match &plan.action {
        Action::Create => return create(clients, function, environment).await,
        Action::Update(fields) => fields,
        Action::Unchanged => return Ok(()),
        Action::Delete => return delete(clients, name).await,
    };
    let has = |field: &str| fields.iter().any(|f| f == field);
    if CONFIG_FIELDS.iter().any(|f| has(f)) {
        wait_ready(clients, name).await?;
        clients
            .lambda
            .update_function_configuration()
            .function_name(name)
            .runtime(Runtime::Providedal2023)
            .handler(HANDLER)
            .memory_size(function.memory_mb)
            .timeout(function.timeout_seconds)
            .environment(environment)
            .role(&function.role_arn)
            .send()
            .await
            .ctx(format!(
                "cannot update the configuration of function {name}"
            ))?;
        wait_ready(clients, name).await?;
    }
    if has("code") || has("architecture") {
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
    if has("tags") {
        let arn = plan
            .arn
            .clone()
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

/// Creates the function, retrying with backoff while Lambda cannot yet assume a new role (and
/// only then: any other invalid parameter fails at once).
async fn create(
    clients: &Clients,
    function: &DesiredFunction,
    environment: Environment,
) -> anyhow::Result<()> {
    let name = &function.name;
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
    let failure = |what: &str, reason: Option<&str>| {
        anyhow::anyhow!(
            "{what} of function {name}: {}",
            reason.unwrap_or("no reason given")
        )
    };
    clients
        .lambda
        .wait_until_function_active_v2()
        .function_name(name)
        .wait(READY_DEADLINE)
        .await
        .map_err(|e| match e {
            WaiterError::FailureState(state) => failure(
                "the creation failed",
                state
                    .final_poll()
                    .as_result()
                    .ok()
                    .and_then(|out| out.configuration())
                    .and_then(|c| c.state_reason()),
            ),
            other => anyhow::Error::new(other)
                .context(format!("waiting for function {name} to become Active")),
        })?;
    clients
        .lambda
        .wait_until_function_updated_v2()
        .function_name(name)
        .wait(READY_DEADLINE)
        .await
        .map_err(|e| match e {
            WaiterError::FailureState(state) => failure(
                "the last update failed",
                state
                    .final_poll()
                    .as_result()
                    .ok()
                    .and_then(|out| out.configuration())
                    .and_then(|c| c.last_update_status_reason()),
            ),
            other => anyhow::Error::new(other).context(format!(
                "waiting for the last update of function {name} to end"
            )),
        })?;
    Ok(())
}

/// True when the function exists and carries the stack tag; `None` when it does not exist.
pub async fn owned(clients: &Clients, name: &str) -> anyhow::Result<Option<bool>> {
    match clients
        .lambda
        .get_function()
        .function_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(Some(is_owned(
            &clients.stack,
            out.tags()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        ))),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(error) => Err(error).ctx(format!("cannot read function {name}")),
    }
}

pub async fn delete(clients: &Clients, name: &str) -> anyhow::Result<()> {
    clients
        .lambda
        .delete_function()
        .function_name(name)
        .send()
        .await
        .ctx(format!("cannot delete function {name}"))?;
    Ok(())
}
