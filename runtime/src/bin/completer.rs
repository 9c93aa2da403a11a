//! The completer Lambda: EventBridge invokes it with EC2 Auto Scaling's instance-refresh
//! events; it answers the task token the ASG's child execution waits on.

use generator::events::InstanceRefreshEvent;
use runtime::completion::{Completer, Handled};
use runtime::{lambda, system_clock};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, store) = lambda::setup().await?;
    let completer = Completer {
        store,
        sfn: aws_sdk_sfn::Client::new(&config),
        clock: system_clock(),
    };
    lambda::run(|payload: Value| async {
        // An event of another shape is not retried: no retry would make it readable.
        let handled = match serde_json::from_value::<InstanceRefreshEvent>(payload) {
            Ok(event) => completer.handle_event(&event).await?,
            Err(error) => Handled::Ignored {
                reason: format!("not an instance-refresh event: {error}"),
            },
        };
        if let Handled::Ignored { reason } = &handled {
            tracing::info!(%reason, "ignored");
        }
        Ok(handled)
    })
    .await
}
