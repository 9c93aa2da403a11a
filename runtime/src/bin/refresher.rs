//! The refresher Lambda: start, check, approval, cancel, rollback and finish.

use generator::payload::RefresherRequest;
use runtime::lambda;
use runtime::refresher::Refresher;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, store) = lambda::setup().await?;
    let refresher = Refresher::new(&config, store);
    lambda::run(|request: RefresherRequest| refresher.handle(request)).await
}
