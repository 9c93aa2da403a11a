//! One way to run a state machine on the emulator to its end, for the test binaries that
//! exercise Step Functions directly (each includes this file with `#[path]`, next to
//! `mod e2e`, whose bounded wait it uses).

use std::time::Duration;

use asg_refresh_tests::Moto;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use serde_json::Value;

/// Creates the state machine `name` (role `role_arn`) from `definition`, starts one execution
/// of it (`<name>-run`) with `input` and waits, at most `deadline`, for its end; returns the
/// execution and the event types of its whole history, in order.
pub async fn run_machine(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    name: &str,
    role_arn: &str,
    definition: &Value,
    input: &Value,
    deadline: Duration,
) -> (DescribeExecutionOutput, Vec<String>) {
    let sfn = aws_sdk_sfn::Client::new(config);
    let create = sfn.create_state_machine().name(name).role_arn(role_arn);
    let machine = create
        .definition(definition.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create state machine {name}: {e:?}"));
    let execution = sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name(format!("{name}-run"))
        .input(input.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("start an execution of {name}: {e:?}"));
    let arn = execution.execution_arn();
    let described = crate::e2e::wait_execution(moto, config, arn, deadline).await;
    let mut kinds = Vec::new();
    let mut pages = sfn
        .get_execution_history()
        .execution_arn(arn)
        .into_paginator()
        .items()
        .send();
    while let Some(event) = pages.next().await {
        let event = event.unwrap_or_else(|e| panic!("history of {arn}: {e:?}"));
        kinds.push(event.r#type().as_str().to_string());
    }
    (described, kinds)
}
