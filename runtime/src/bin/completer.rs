//! The completer Lambda: EventBridge invokes it with EC2 Auto Scaling's instance-refresh
//! events; it answers the task token the ASG's child execution waits on.

use generator::events::InstanceRefreshEvent;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use runtime::completion::{Completer, Handled};
use runtime::store::Store;
use runtime::{clients, system_clock, telemetry};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = clients::sdk_config().await;
    let table = clients::table_name()?;
    let completer = Completer {
        store: Store::new(aws_sdk_dynamodb::Client::new(&config), table),
        sfn: aws_sdk_sfn::Client::new(&config),
        clock: system_clock(),
    };
    let completer = &completer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // An event of another shape is not retried: no retry would make it readable.
        let handled = match serde_json::from_value::<InstanceRefreshEvent>(event.payload) {
            Ok(event) => completer.handle_event(&event).await?,
            Err(error) => Handled::Ignored {
                reason: format!("not an instance-refresh event: {error}"),
            },
        };
        if let Handled::Ignored { reason } = &handled {
            tracing::info!(%reason, "ignored");
        }
        serde_json::to_value(handled).map_err(|e| Diagnostic {
            error_type: "AwsError".into(),
            error_message: e.to_string(),
        })
    }))
    .await
}
