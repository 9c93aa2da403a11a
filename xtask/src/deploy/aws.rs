//! The AWS SDK config of a stack (region, profile, endpoint, bounded timeouts), the clients
//! built from it, and an interceptor that counts every API call the deploy makes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::config::ProvideCredentials;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use generator::config::StackConfig;
use generator::names::Stack;

/// How long a TCP connection may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one attempt of one call may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts per call, the first included.
const MAX_ATTEMPTS: u32 = 3;
/// How long resolving credentials may take (an SSO or IMDS lookup that hangs fails here).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(10);

/// The single-threaded async runtime every command that calls AWS runs its calls on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Loads the SDK config for a stack: region and profile from the env file; the endpoint from
/// `--endpoint-url`, else the env file's `endpoint_url`, else `AWS_ENDPOINT_URL` (read by the
/// loader itself). Fails when no credentials can be found.
pub async fn sdk_config(
    config: &StackConfig,
    endpoint_url: Option<&str>,
) -> anyhow::Result<SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
    if let Some(profile) = &config.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = endpoint_url.or(config.endpoint_url.as_deref()) {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    let help = "supply credentials with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or \
                `profile` in the env file (aws sso login for SSO profiles), or an instance/container role";
    let Some(provider) = sdk.credentials_provider() else {
        bail!("no AWS credentials provider is configured: {help}");
    };
    match tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials()).await {
        Err(_) => bail!(
            "no AWS credentials within {} s: {help}",
            CREDENTIALS_TIMEOUT.as_secs()
        ),
        Ok(Err(error)) => bail!("no AWS credentials ({error}): {help}"),
        Ok(Ok(_)) => {}
    }
    Ok(sdk)
}

/// Calls made per `service.Operation`: all of them and the mutating ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub calls: u64,
    pub mutating: u64,
}

/// Counts every request sent (each attempt of each call) by the clients it is installed on.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<BTreeMap<String, Count>>>,
}

/// True for any operation that may change something: everything but Get*, List*, Describe*.
pub fn is_mutating(operation: &str) -> bool {
    !["Get", "List", "Describe"]
        .iter()
        .any(|prefix| operation.starts_with(prefix))
}

impl CallCounter {
    pub fn record(&self, service: &str, operation: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(format!("{service}.{operation}")).or_default();
        count.calls += 1;
        if is_mutating(operation) {
            count.mutating += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, Count> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// (all calls, mutating calls).
    pub fn totals(&self) -> (u64, u64) {
        self.snapshot()
            .values()
            .fold((0, 0), |(c, m), n| (c + n.calls, m + n.mutating))
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            self.record(metadata.service(), metadata.name());
        }
        Ok(())
    }
}

/// The clients a deploy or destroy uses, all counting their calls.
pub struct Clients {
    pub stack: Stack,
    pub iam: aws_sdk_iam::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub sns: aws_sdk_sns::Client,
    pub counter: CallCounter,
    /// The endpoint every client uses, when it is not AWS's own.
    pub endpoint: Option<String>,
}

/// Builds one service's client from the SDK config, with the call counter and `extra`'s
/// interceptors (the replay tests' mock responses).
macro_rules! client {
    ($service:ident, $sdk:expr, $counter:expr, $extra:expr) => {{
        let mut builder = $service::config::Builder::from($sdk).interceptor($counter.clone());
        for interceptor in $extra() {
            builder = builder.interceptor(interceptor);
        }
        $service::Client::from_conf(builder.build())
    }};
}

impl Clients {
    pub async fn new(config: &StackConfig, endpoint_url: Option<&str>) -> anyhow::Result<Self> {
        let sdk = sdk_config(config, endpoint_url).await?;
        Ok(Self::from_sdk(config, &sdk, Vec::<CallCounter>::new))
    }

    /// The clients on `sdk`, each counting its calls and running `extra()`'s interceptors.
    pub fn from_sdk<I: Intercept + 'static>(
        config: &StackConfig,
        sdk: &SdkConfig,
        extra: impl Fn() -> Vec<I>,
    ) -> Self {
        let counter = CallCounter::default();
        Self {
            stack: Stack::new(config),
            iam: client!(aws_sdk_iam, sdk, counter, extra),
            dynamodb: client!(aws_sdk_dynamodb, sdk, counter, extra),
            lambda: client!(aws_sdk_lambda, sdk, counter, extra),
            sfn: client!(aws_sdk_sfn, sdk, counter, extra),
            logs: client!(aws_sdk_cloudwatchlogs, sdk, counter, extra),
            events: client!(aws_sdk_eventbridge, sdk, counter, extra),
            sns: client!(aws_sdk_sns, sdk, counter, extra),
            counter,
            endpoint: sdk.endpoint_url().map(str::to_string),
        }
    }
}

/// An SDK error with context: the operation and the resource, then the error's causes. A
/// request that never got an answer (refused, unreachable, timed out) says so plainly.
pub fn sdk_error<E, R>(error: SdkError<E, R>, what: impl std::fmt::Display) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let unreachable = match &error {
        SdkError::DispatchFailure(failure) => failure.is_io() || failure.is_timeout(),
        SdkError::TimeoutError(_) => true,
        _ => false,
    };
    let causes = causes(&error);
    if unreachable {
        anyhow::anyhow!(
            "{what}: cannot reach the AWS endpoint ({causes}) after {MAX_ATTEMPTS} attempts; check --endpoint-url, \
             `endpoint_url` in the env file, AWS_ENDPOINT_URL and the network"
        )
    } else {
        anyhow::anyhow!("{what}: {causes}")
    }
}

/// The error and its sources, joined, each said once.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Adds `sdk_error` context to an SDK result.
pub trait SdkResultExt<T> {
    fn ctx(self, what: impl std::fmt::Display) -> anyhow::Result<T>;
}

impl<T, E, R> SdkResultExt<T> for Result<T, SdkError<E, R>>
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    fn ctx(self, what: impl std::fmt::Display) -> anyhow::Result<T> {
        self.map_err(|e| sdk_error(e, what))
    }
}

/// The two stack tags, as a map.
pub fn desired_tags(stack: &Stack) -> BTreeMap<String, String> {
    stack.tags().into_iter().collect()
}
