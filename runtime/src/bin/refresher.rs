//! The refresher Lambda: start, check, approval, cancel, rollback and finish.

use generator::payload::RefresherRequest;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use runtime::refresher::Refresher;
use runtime::store::Store;
use runtime::{clients, parse_event, system_clock, telemetry};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = clients::sdk_config().await;
    let table = clients::table_name()?;
    let refresher = Refresher {
        autoscaling: aws_sdk_autoscaling::Client::new(&config),
        ec2: aws_sdk_ec2::Client::new(&config),
        sfn: aws_sdk_sfn::Client::new(&config),
        store: Store::new(aws_sdk_dynamodb::Client::new(&config), table),
        clock: system_clock(),
    };
    let refresher = &refresher;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request: RefresherRequest = parse_event(event.payload)?;
        refresher.handle(request).await.map_err(Diagnostic::from)
    }))
    .await
}
