//! SDK configuration shared by the Lambdas: region, credentials and `AWS_ENDPOINT_URL`
//! from the standard chain, built once per process.

use aws_config::{BehaviorVersion, SdkConfig};

/// Environment variable naming the progress table.
pub use generator::names::env::TABLE as TABLE_ENV;

/// Attempts per call, throttling included: the fleet loops make a few calls at once on the
/// account's shared API budget, so a throttled call backs off and tries again a little longer
/// than the SDK's default of 3 before the state machine's own retry takes over.
pub const MAX_ATTEMPTS: u32 = 5;

/// Loads the SDK config (the default chain honours `AWS_ENDPOINT_URL`).
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .load()
        .await
}

/// The progress table's name from the environment.
pub fn table_name() -> Result<String, crate::Error> {
    std::env::var(TABLE_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| crate::Error::InvalidInput(format!("{TABLE_ENV} is not set")))
}
