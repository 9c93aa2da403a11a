//! The refresher Lambda: start, check, approval, cancel, rollback and finish.

use generator::payload::RefresherRequest;
use runtime::refresher::Refresher;
use runtime::{lambda, parse_event, system_clock};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, store) = lambda::setup().await?;
    let refresher = Refresher {
        autoscaling: aws_sdk_autoscaling::Client::new(&config),
        ec2: aws_sdk_ec2::Client::new(&config),
        sfn: aws_sdk_sfn::Client::new(&config),
        store,
        clock: system_clock(),
    };
    lambda::run(|payload| async {
        let request: RefresherRequest = parse_event(payload)?;
        refresher.handle(request).await
    })
    .await
}
