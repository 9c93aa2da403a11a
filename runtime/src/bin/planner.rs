//! The planner Lambda: resolves targets, runs the pre-checks, splits into waves.

use generator::payload::PlanRequest;
use runtime::planner::Planner;
use runtime::{lambda, parse_event, system_clock};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, store) = lambda::setup().await?;
    let planner = Planner {
        autoscaling: aws_sdk_autoscaling::Client::new(&config),
        elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
        ec2: aws_sdk_ec2::Client::new(&config),
        iam: aws_sdk_iam::Client::new(&config),
        store,
        clock: system_clock(),
    };
    lambda::run(|payload| async {
        let request: PlanRequest = parse_event(payload)?;
        planner.handle(request).await
    })
    .await
}
