//! The planner Lambda: resolves targets, runs the pre-checks, splits into waves.

use generator::payload::PlanRequest;
use runtime::planner::Planner;
use runtime::{lambda, parse_event};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, store) = lambda::setup().await?;
    let planner = Planner::new(&config, store);
    lambda::run(|payload| async {
        let request: PlanRequest = parse_event(payload)?;
        planner.handle(request).await
    })
    .await
}
