//! The planner Lambda: resolves targets, runs the pre-checks, splits into waves.

use generator::payload::PlanRequest;
use runtime::lambda;
use runtime::planner::Planner;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, store) = lambda::setup().await?;
    let planner = Planner::new(&config, store);
    lambda::run(|request: PlanRequest| planner.handle(request)).await
}
