//! The refresher Lambda: start, check, approval, cancel, rollback and finish.

use generator::payload::RefresherRequest;
use runtime::refresher::Refresher;
use runtime::{lambda, parse_event};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, store) = lambda::setup().await?;
    let refresher = Refresher::new(&config, store);
    lambda::run(|payload| async {
        let request: RefresherRequest = parse_event(payload)?;
        refresher.handle(request).await
    })
    .await
}
