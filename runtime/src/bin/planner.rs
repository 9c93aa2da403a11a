//! The planner Lambda: resolves targets, runs the pre-checks, splits into waves.

use generator::payload::PlanRequest;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use runtime::planner::Planner;
use runtime::store::Store;
use runtime::{clients, parse_event, system_clock, telemetry};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = clients::sdk_config().await;
    let table = clients::table_name()?;
    let planner = Planner {
        autoscaling: aws_sdk_autoscaling::Client::new(&config),
        elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
        ec2: aws_sdk_ec2::Client::new(&config),
        iam: aws_sdk_iam::Client::new(&config),
        store: Store::new(aws_sdk_dynamodb::Client::new(&config), table),
        clock: system_clock(),
    };
    let planner = &planner;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request: PlanRequest = parse_event(event.payload)?;
        let response = planner.handle(request).await?;
        serde_json::to_value(response).map_err(|e| Diagnostic {
            error_type: "AwsError".into(),
            error_message: e.to_string(),
        })
    }))
    .await
}
