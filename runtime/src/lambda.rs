//! What each Lambda's `main` does (`src/bin/*.rs`): tracing, the SDK config and the progress
//! table read once per process, then every invocation's payload handed to its handler and
//! the handler's answer returned as JSON (an [`Error`] becomes the error name the state
//! machine matches).

use std::future::Future;

use aws_config::SdkConfig;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::store::Store;
use crate::{clients, parse_event, telemetry, Error};

/// Installs tracing and reads the environment: the SDK config the clients are built from,
/// and the progress table.
pub async fn setup() -> Result<(SdkConfig, Store), lambda_runtime::Error> {
    telemetry::init();
    let config = clients::sdk_config().await;
    let table = clients::table_name()?;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&config), table);
    Ok((config, store))
}

/// Serves invocations until the Lambda service stops the process: each event's payload goes
/// to `handler` as its request type (a payload that is not one is [`Error::InvalidInput`],
/// never retried), its answer comes back as JSON.
pub async fn run<F, Fut, R, T>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(R) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
    R: DeserializeOwned,
    T: Serialize,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request: R = parse_event(event.payload)?;
        // Boxed: the handlers' futures are deep (every SDK call they make), and the
        // compiler's layout of `main`'s future would otherwise overflow its depth limit.
        let answer = Box::pin(handler(request)).await?;
        to_json(&answer).map_err(Diagnostic::from)
    }))
    .await
}

/// A handler's answer as JSON.
pub fn to_json<T: Serialize>(value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Aws(format!("cannot encode the response: {e}")))
}
