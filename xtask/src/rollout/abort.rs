//! `cargo xtask abort`: an operator stops a running rollout. It stops the execution
//! (StopExecution, saying who and why), cancels or rolls back the refreshes in flight, waits
//! (bounded by `timeout_minutes`) until they have ended, records who aborted it and why,
//! marks the rollout Aborted and releases the stack lock; `rollout --resume` continues it.
//!
//! Where the logic lives: what is done to the refreshes is the runtime library's
//! `Refresher::in_flight` and `Refresher::settle`, the very code the state machine's failure
//! policy runs in the refresher Lambda, called here in-process with the operator's
//! credentials. So no rollout logic is written twice, no new Lambda action, IAM right or
//! state is needed, and an abort still works when the deployed Lambda is what misbehaves.
//! `in_flight` writes the rollout's stop request before it lists the refreshes, so a child
//! whose start was already under way when the execution stopped undoes its own refresh
//! (see `Refresher::start`). What is this module's own is operator-facing: which rollout,
//! stopping its executions, and the record of the abort.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_sfn::types::ExecutionStatus;
use clap::Args;
use runtime::refresher::Refresher;
use runtime::store::{Abort, RolloutStatus};

use super::{now, Ops};
use crate::deploy::aws::{runtime, sdk_config, sdk_error};
use crate::env_file::{Endpoint, StackSelector};

/// Seconds between two reads of the cancels or rollbacks while the abort waits for them.
const SETTLE_POLL_SECONDS: u64 = 2;
/// Attempts of a call AWS throttles before the abort gives up (it can be run again).
const ATTEMPTS: u32 = 5;

#[derive(Args, Debug)]
pub struct AbortArgs {
    #[command(flatten)]
    pub stack: StackSelector,
    /// The rollout to abort (default: the one running on the stack)
    #[arg(long, value_name = "ROLLOUT_ID")]
    pub rollout: Option<String>,
    /// Cancel the refreshes in flight (the default): instances already replaced stay
    #[arg(long)]
    pub cancel: bool,
    /// Roll the refreshes in flight back to the version they replaced
    #[arg(long, conflicts_with = "cancel")]
    pub rollback: bool,
    /// Why: recorded with who aborted, shown by `status`
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// Stops each running execution of the rollout with the error `Aborted` and `cause`.
async fn stop_executions(ops: &Ops, running: &[String], cause: &str) -> anyhow::Result<()> {
    for arn in running {
        let stopped = ops
            .sfn
            .stop_execution()
            .execution_arn(arn)
            .error(RolloutStatus::Aborted.as_str())
            .cause(cause)
            .send()
            .await;
        match stopped {
            Ok(_) => println!("stopped execution {arn}"),
            // It ended between the listing and the stop: nothing left to stop.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_does_not_exist()) => {}
            Err(e) => return Err(sdk_error(e, format!("stopping execution {arn}"))),
        }
    }
    Ok(())
}

/// Waits until each cancel or rollback has ended, so that the table says how; says what
/// still runs after `timeout_minutes`.
async fn wait_settled(
    refresher: &Refresher,
    rollout_id: &str,
    timeout_minutes: u32,
    env: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(u64::from(timeout_minutes) * 60);
    let mut round = 0;
    loop {
        let settled = patiently("reading the refreshes", || {
            refresher.settle(rollout_id, round)
        })
        .await?;
        round = settled.round;
        if settled.pending == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!(
                "still running after {timeout_minutes} minutes: {} (see `cargo xtask status --env {env} --rollout {rollout_id}`)",
                settled.still_running.join(", ")
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(SETTLE_POLL_SECONDS)).await;
    }
}

/// Retries `call` while it fails with a retryable error (throttling), a few times.
async fn patiently<T, F, Fut>(what: &str, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, runtime::Error>>,
{
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        match call().await {
            Ok(value) => return Ok(value),
            Err(runtime::Error::Retryable(message)) if attempt < ATTEMPTS => {
                eprintln!("{what}: {message}: retrying in {}s", wait.as_secs());
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(error) => return Err(error).context(what.to_string()),
        }
    }
    unreachable!("the last attempt returns")
}

impl AbortArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let (_, config) = self.stack.load()?;
        let operator = std::env::var("USER").unwrap_or_else(|_| "an operator".into());
        let env = config.name.clone();
        runtime()?.block_on(async {
            let ops = Ops::connect(&config, self.endpoint.url()).await?;
            let (rollout_id, running) = to_abort(&ops, self.rollout.as_deref(), &env).await?;
            let reason = self.reason.clone();
            let cause = format!(
                "aborted by {operator}: {}",
                reason.as_deref().unwrap_or("no reason given")
            );
            stop_executions(&ops, &running, &cause).await?;
            let sdk = sdk_config(&config, self.endpoint.url()).await?;
            let refresher = Refresher::new(&sdk, ops.store.clone());
            let rollback = self.rollback;
            let (verb, action) = if rollback {
                ("rolled back", "rollback")
            } else {
                ("cancelled", "cancel")
            };
            let stopped = patiently("stopping the refreshes in flight", || {
                refresher.in_flight(&rollout_id, rollback)
            })
            .await?;
            for refused in &stopped.refused {
                eprintln!("refused: {refused}");
            }
            println!(
                "{verb} {} refresh(es) in flight{}",
                stopped.acted_on.len(),
                if stopped.acted_on.is_empty() {
                    String::new()
                } else {
                    format!(": {}", stopped.acted_on.join(", "))
                }
            );
            wait_settled(
                &refresher,
                &rollout_id,
                config.rollout.timeout_minutes,
                &env,
            )
            .await?;
            let mut message = cause.clone();
            if !stopped.acted_on.is_empty() {
                message.push_str(&format!("; {verb}: {}", stopped.acted_on.join(", ")));
            }
            let abort = Abort {
                rollout_id: rollout_id.clone(),
                by: operator.clone(),
                reason,
                action: action.into(),
                at: now(),
            };
            let released = ops.store.record_abort(&abort, &message).await?;
            println!(
                "aborted rollout {rollout_id} on stack `{env}`{}",
                if released {
                    "; the stack lock is released"
                } else {
                    ""
                }
            );
            println!("resume it: cargo xtask rollout --env {env} --resume {rollout_id}");
            Ok(())
        })
    }
}

/// The rollout to abort (the one named, else the one holding the stack lock) and the ARNs of
/// its running executions. Refuses when it is not running: a rollout whose execution stopped
/// while it held the lock can be aborted too (its refreshes may still run); one that ended
/// released the lock.
async fn to_abort(
    ops: &Ops,
    named: Option<&str>,
    env: &str,
) -> anyhow::Result<(String, Vec<String>)> {
    let holder = ops.store.lock_holder().await?;
    let rollout_id = match (named, &holder) {
        (Some(id), _) => id.to_string(),
        (None, Some(holder)) => holder.clone(),
        (None, None) => bail!("no rollout is running on stack `{env}`: nothing to abort"),
    };
    let running: Vec<String> = ops
        .executions_of(&rollout_id)
        .await?
        .iter()
        .filter(|e| *e.status() == ExecutionStatus::Running)
        .map(|e| e.execution_arn().to_string())
        .collect();
    if running.is_empty() && holder.as_deref() != Some(rollout_id.as_str()) {
        bail!(
            "rollout {rollout_id} is not running on stack `{env}`: nothing to abort (see `cargo xtask status --env {env} --rollout {rollout_id}`)"
        );
    }
    Ok((rollout_id, running))
}
