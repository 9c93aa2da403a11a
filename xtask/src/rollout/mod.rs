//! `cargo xtask rollout`, `status` and `approve`: start a rollout of an AMI on a deployed
//! stack, follow it from the progress table and the execution, and approve the next wave.

pub mod abort;
pub mod live;
pub mod patience;
pub mod view;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use aws_sdk_sfn::types::{ExecutionListItem, ExecutionStatus};
use clap::Args;
use generator::config::StackConfig;
use generator::names::Stack;
use runtime::completion::is_closed_token;
use runtime::store::{ApprovalStatus, RolloutStatus, Store};
use serde_json::json;

use crate::deploy::aws::{runtime, sdk_config, sdk_error, SdkResultExt};
use crate::env_file::{Endpoint, StackSelector};
use patience::{classified, is_transient, Patience, Verdict, DEFAULT_GIVE_UP_MINUTES};
use view::{Execution, Snapshot};

/// The longest rollout id `rollout` accepts: re-runs name their execution `<id>-<n>`,
/// and execution names hold at most 80 characters.
const MAX_ID_LEN: usize = 64;

#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub stack: StackSelector,
    /// The AMI every ASG adopts (ami- and 8 or 17 lowercase hex digits)
    #[arg(long, value_name = "AMI_ID", required_unless_present = "resume")]
    pub ami: Option<String>,
    /// Re-run this rollout (same id and AMI): ASGs it already refreshed are left out
    #[arg(long, value_name = "ROLLOUT_ID", conflicts_with_all = ["ami", "id"])]
    pub resume: Option<String>,
    /// Rollout id (default: <env>-<UTC date>-<time>)
    #[arg(long, value_name = "ROLLOUT_ID")]
    pub id: Option<String>,
    /// Follow the rollout until it ends; exit non-zero unless it succeeded
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub follow: FollowArgs,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// How `rollout --wait` and `status --watch` follow a rollout.
#[derive(Args, Debug)]
pub struct FollowArgs {
    /// Seconds between two reads of the progress while following the rollout
    #[arg(long, default_value_t = 2, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=300))]
    pub interval: u64,
    /// While following the rollout, reads that fail with a transient error (throttling,
    /// timeouts, 5xx, connection errors) are retried with backoff, saying so; following stops
    /// when they have failed for this many minutes in a row. Any other error stops it at once
    #[arg(long, default_value_t = DEFAULT_GIVE_UP_MINUTES, value_name = "MINUTES", value_parser = clap::value_parser!(u64).range(1..=1440))]
    pub give_up_after: u64,
}

impl FollowArgs {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval)
    }

    pub fn give_up_after(&self) -> Duration {
        Duration::from_secs(self.give_up_after * 60)
    }
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub stack: StackSelector,
    /// The rollout to show (default: the newest)
    #[arg(long, value_name = "ROLLOUT_ID")]
    pub rollout: Option<String>,
    /// Redraw until the rollout ends
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
    /// Print the rollout as JSON (waves numbered from 0) for scripts
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub follow: FollowArgs,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub stack: StackSelector,
    /// The rollout waiting for approval (default: the one running on the stack)
    #[arg(long, value_name = "ROLLOUT_ID")]
    pub rollout: Option<String>,
    /// Refuse the next wave instead: the rollout fails through its failure policy
    #[arg(long)]
    pub reject: bool,
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// A deployed stack's state machine and progress table.
pub struct Ops {
    pub stack: Stack,
    pub sfn: aws_sdk_sfn::Client,
    pub store: Store,
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Ops {
    /// Connects to the stack and checks it is deployed.
    pub async fn connect(config: &StackConfig, endpoint_url: Option<&str>) -> anyhow::Result<Self> {
        let sdk = sdk_config(config, endpoint_url).await?;
        let stack = Stack::new(config);
        let ops = Self {
            sfn: aws_sdk_sfn::Client::new(&sdk),
            store: Store::new(aws_sdk_dynamodb::Client::new(&sdk), stack.table()),
            stack,
        };
        let described = ops
            .sfn
            .describe_state_machine()
            .state_machine_arn(ops.stack.state_machine_arn())
            .send()
            .await;
        match described {
            Ok(_) => Ok(ops),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_state_machine_does_not_exist()) => bail!(
                "stack `{}` is not deployed (no state machine {}): run `cargo xtask deploy --env {}` first",
                ops.stack.env,
                ops.stack.state_machine(),
                ops.stack.env
            ),
            Err(e) => Err(sdk_error(e, format!("reading state machine {}", ops.stack.state_machine()))),
        }
    }

    /// Every execution of the stack's state machine, newest first.
    async fn executions(&self) -> anyhow::Result<Vec<ExecutionListItem>> {
        let mut pages = self
            .sfn
            .list_executions()
            .state_machine_arn(self.stack.state_machine_arn())
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(classified(item, "listing executions")?);
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.start_date().secs()));
        Ok(out)
    }

    /// The executions that ran `rollout_id` (its first run is named after it, re-runs
    /// `<id>-<n>`), newest first.
    async fn executions_of(&self, rollout_id: &str) -> anyhow::Result<Vec<ExecutionListItem>> {
        let rerun = format!("{rollout_id}-");
        Ok(self
            .executions()
            .await?
            .into_iter()
            .filter(|e| {
                e.name() == rollout_id
                    || e.name()
                        .strip_prefix(&rerun)
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect())
    }

    async fn describe(&self, arn: &str) -> anyhow::Result<Execution> {
        let out = classified(
            self.sfn
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await,
            "reading the execution",
        )?;
        Ok(Execution {
            name: out.name().unwrap_or_default().to_string(),
            arn: arn.to_string(),
            status: out.status().clone(),
            started_at: out.start_date().secs(),
            stopped_at: out.stop_date().map(|d| d.secs()),
            error: out.error().map(str::to_string),
            cause: out.cause().map(str::to_string),
        })
    }

    /// The newest rollout of the stack: the lock holder, else the newest execution's.
    async fn newest_rollout(&self) -> anyhow::Result<String> {
        if let Some(holder) = self.store.lock_holder().await? {
            return Ok(holder);
        }
        let Some(newest) = self.executions().await?.into_iter().next() else {
            bail!(
                "no rollout has run on stack `{}` yet: start one with `cargo xtask rollout --env {} --ami <ami-id>`",
                self.stack.env,
                self.stack.env
            );
        };
        let input = self
            .sfn
            .describe_execution()
            .execution_arn(newest.execution_arn())
            .send()
            .await
            .ctx("reading the newest execution")?;
        let id = input
            .input()
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
            .and_then(|v| v["rollout_id"].as_str().map(str::to_string));
        Ok(id.unwrap_or_else(|| newest.name().to_string()))
    }

    /// Everything `status` shows of a rollout.
    pub async fn snapshot(&self, rollout_id: &str) -> anyhow::Result<Snapshot> {
        let execution = match self.executions_of(rollout_id).await?.first() {
            Some(e) => Some(self.describe(e.execution_arn()).await?),
            None => None,
        };
        let summary = self.store.summary(rollout_id).await?;
        let asgs = self.store.list(rollout_id).await?;
        if execution.is_none() && summary.is_none() && asgs.is_empty() {
            bail!("stack `{}` has no rollout `{rollout_id}`", self.stack.env);
        }
        let approvals = self.store.approvals(rollout_id).await?;
        let lock_holder = self.store.lock_holder().await?;
        let mut snapshot = Snapshot::new(
            &self.stack.env,
            rollout_id,
            execution,
            summary,
            asgs,
            approvals,
            lock_holder,
        );
        snapshot.abort = self.store.abort_of(rollout_id).await?;
        Ok(snapshot)
    }

    /// Refuses to start while another rollout holds the stack lock (the planner refuses
    /// too; this says so before an execution is started).
    async fn check_unlocked(&self, rollout_id: &str) -> anyhow::Result<()> {
        let Some(holder) = self.store.lock_holder().await? else {
            return Ok(());
        };
        if holder == rollout_id {
            return Ok(());
        }
        let env = &self.stack.env;
        let running = self
            .executions_of(&holder)
            .await?
            .iter()
            .any(|e| *e.status() == ExecutionStatus::Running);
        if running {
            bail!(
                "rollout {holder} is running on stack `{env}`: a second rollout is refused until it ends \
                 (follow it: cargo xtask status --env {env} --rollout {holder} --watch)"
            );
        }
        bail!(
            "rollout {holder} holds stack `{env}`'s lock but none of its executions runs (stopped or aborted): \
             finish it with `cargo xtask rollout --env {env} --resume {holder}`"
        )
    }

    /// Starts an execution for the rollout; returns its ARN.
    pub async fn start(
        &self,
        rollout_id: &str,
        ami: &str,
        resume: bool,
    ) -> anyhow::Result<(String, String)> {
        self.check_unlocked(rollout_id).await?;
        let runs = self.executions_of(rollout_id).await?;
        if let Some(running) = runs
            .iter()
            .find(|e| *e.status() == ExecutionStatus::Running)
        {
            bail!(
                "rollout {rollout_id} is already running as execution {}",
                running.name()
            );
        }
        let name = match (resume, runs.is_empty()) {
            (false, true) => rollout_id.to_string(),
            (false, false) => bail!(
                "rollout id {rollout_id} was already used on stack `{}`: choose another --id, or re-run it with --resume {rollout_id}",
                self.stack.env
            ),
            (true, _) => format!("{rollout_id}-{}", runs.len() + 1),
        };
        let input = json!({"rollout_id": rollout_id, "ami": ami});
        let out = self
            .sfn
            .start_execution()
            .state_machine_arn(self.stack.state_machine_arn())
            .name(&name)
            .input(input.to_string())
            .send()
            .await
            .ctx(format!("starting execution {name}"))?;
        Ok((name, out.execution_arn().to_string()))
    }

    /// Redraws (on a terminal) or prints changes until the rollout ends; returns the last
    /// snapshot. Stops by itself when the execution is no longer running. A read that fails
    /// with a transient error is retried with backoff (a line on stderr says so) until such
    /// failures have lasted `give_up_after`; any other error ends the watch.
    pub async fn watch(&self, rollout_id: &str, interval: Duration) -> anyhow::Result<Snapshot> {
        self.watch_patiently(
            rollout_id,
            interval,
            Duration::from_secs(DEFAULT_GIVE_UP_MINUTES * 60),
        )
        .await
    }

    /// [`Ops::watch`], giving up after `give_up_after` of transient failures in a row.
    pub async fn watch_patiently(
        &self,
        rollout_id: &str,
        interval: Duration,
        give_up_after: Duration,
    ) -> anyhow::Result<Snapshot> {
        // On a terminal, a live region redrawn in place (live.rs); otherwise change lines.
        let mut live = std::io::stdout().is_terminal().then(live::Live::stdout);
        let mut last: Option<Snapshot> = None;
        let mut patience = Patience::new(interval, give_up_after);
        loop {
            let snapshot = match self.snapshot(rollout_id).await {
                Ok(snapshot) => {
                    let failures = patience.succeeded();
                    if failures > 0 {
                        let line = format!("{} reading rollout {rollout_id} again after {failures} failed attempt(s)", view::clock(now()));
                        say(live.as_ref(), &line);
                    }
                    snapshot
                }
                Err(error) => match patience.failed(is_transient(&error), Instant::now()) {
                    Verdict::Retry(wait) => {
                        let line = format!(
                            "{} {error:#}: transient, retrying in {}s (attempt {}, failing for {}s; giving up after {} min)",
                            view::clock(now()),
                            wait.as_secs_f64().ceil() as u64,
                            patience.failures() + 1,
                            patience.failing_for(Instant::now()).as_secs(),
                            give_up_after.as_secs() / 60
                        );
                        say(live.as_ref(), &line);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Verdict::GiveUp if patience.failures() > 1 => {
                        let failing = patience.failing_for(Instant::now()).as_secs();
                        return Err(error.context(format!(
                            "reads of rollout {rollout_id} kept failing for {failing}s ({} attempts): giving up",
                            patience.failures()
                        )));
                    }
                    Verdict::GiveUp => return Err(error),
                },
            };
            if let Some(live) = &mut live {
                live.update(&snapshot, last.as_ref(), now());
            } else {
                let mut out = std::io::stdout().lock();
                for line in snapshot.changes(last.as_ref(), now()) {
                    writeln!(out, "{line}")?;
                }
                out.flush()?;
            }
            if !snapshot.is_running() {
                if let Some(live) = live.take() {
                    live.finish();
                }
                print!("\n{}", snapshot.render(now()));
                return Ok(snapshot);
            }
            last = Some(snapshot);
            tokio::time::sleep(interval).await;
        }
    }
}

/// A watcher's line on stderr; with a live view, drawn above it without tearing it.
fn say(live: Option<&live::Live>, line: &str) {
    match live {
        Some(live) => live.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// Fails with the rollout's own words unless it succeeded.
pub fn outcome(snapshot: &Snapshot) -> anyhow::Result<()> {
    let execution = snapshot.execution.as_ref();
    if execution.is_some_and(|e| e.status == ExecutionStatus::Succeeded) {
        return Ok(());
    }
    let status = execution.map_or("not started", |e| e.status.as_str());
    let why = execution
        .and_then(|e| e.cause.clone().or_else(|| e.error.clone()))
        .or_else(|| snapshot.summary.as_ref().and_then(|s| s.message.clone()))
        .unwrap_or_default();
    Err(anyhow!("rollout {} {status}: {why}", snapshot.rollout_id))
}

/// Refuses a rollout whose `[rollout] wave_alarms` names an alarm that does not exist
/// (DescribeAlarms): its gate could never pass, so nothing is started.
async fn check_wave_alarms(config: &StackConfig, endpoint_url: Option<&str>) -> anyhow::Result<()> {
    let alarms = &config.rollout.wave_alarms;
    if alarms.is_empty() {
        return Ok(());
    }
    let sdk = sdk_config(config, endpoint_url).await?;
    let missing = runtime::alarms::missing(&sdk, alarms)
        .await
        .map_err(|e| anyhow!("reading the wave alarms: {e}"))?;
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "rollout refused, nothing started: `rollout.wave_alarms` names {} CloudWatch alarm(s) that do not exist in {}: {} (create them, or remove them from the stack's config and deploy)",
        missing.len(),
        config.region,
        missing.join(", ")
    )
}

/// The default rollout id: `<env>-<UTC date>-<time>`.
fn default_id(env: &str) -> String {
    let stamp = view::stamp(now());
    let env: String = env.chars().take(MAX_ID_LEN - stamp.len() - 1).collect();
    format!("{env}-{stamp}")
}

fn check_id(id: &str) -> anyhow::Result<()> {
    runtime::validate_rollout_id(id).map_err(|e| anyhow!("--id: {e}"))?;
    if id.len() > MAX_ID_LEN {
        bail!("--id: `{id}` is longer than {MAX_ID_LEN} characters (re-runs append -<n> to name their execution)");
    }
    Ok(())
}

impl RolloutArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let (_, config) = self.stack.load()?;
        if let Some(ami) = &self.ami {
            runtime::validate_ami(ami).map_err(|e| anyhow!("--ami: {e}"))?;
        }
        let rollout_id = match (&self.resume, &self.id) {
            (Some(id), _) | (None, Some(id)) => id.clone(),
            (None, None) => default_id(&config.name),
        };
        check_id(&rollout_id)?;
        runtime()?.block_on(async {
            let ops = Ops::connect(&config, self.endpoint.url()).await?;
            let ami = match (&self.resume, &self.ami) {
                (Some(id), _) => {
                    let summary = ops.store.summary(id).await?;
                    let summary = summary.with_context(|| {
                        format!("stack `{}` has no rollout `{id}` to resume", config.name)
                    })?;
                    if summary.status == RolloutStatus::Succeeded {
                        bail!("rollout {id} already succeeded: nothing to resume");
                    }
                    summary.ami
                }
                (None, Some(ami)) => ami.clone(),
                (None, None) => unreachable!("clap requires --ami or --resume"),
            };
            check_wave_alarms(&config, self.endpoint.url()).await?;
            let (name, arn) = ops.start(&rollout_id, &ami, self.resume.is_some()).await?;
            let env = &config.name;
            println!("started rollout {rollout_id} of {ami} on stack `{env}`");
            println!("  execution {name}: {arn}");
            if !self.wait {
                println!(
                    "follow it: cargo xtask status --env {env} --rollout {rollout_id} --watch"
                );
                return Ok(());
            }
            let last = ops
                .watch_patiently(
                    &rollout_id,
                    self.follow.interval(),
                    self.follow.give_up_after(),
                )
                .await?;
            outcome(&last)
        })
    }
}

impl StatusArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let (_, config) = self.stack.load()?;
        runtime()?.block_on(async {
            let ops = Ops::connect(&config, self.endpoint.url()).await?;
            let rollout_id = match &self.rollout {
                Some(id) => id.clone(),
                None => ops.newest_rollout().await?,
            };
            if self.watch {
                ops.watch_patiently(
                    &rollout_id,
                    self.follow.interval(),
                    self.follow.give_up_after(),
                )
                .await?;
                return Ok(());
            }
            let snapshot = ops.snapshot(&rollout_id).await?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&snapshot)?);
            } else {
                print!("{}", snapshot.render(now()));
            }
            Ok(())
        })
    }
}

impl ApproveArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let (_, config) = self.stack.load()?;
        let operator = std::env::var("USER").unwrap_or_else(|_| "an operator".into());
        runtime()?.block_on(async {
            let ops = Ops::connect(&config, self.endpoint.url()).await?;
            let rollout_id = match &self.rollout {
                Some(id) => id.clone(),
                None => ops.store.lock_holder().await?.with_context(|| {
                    format!("no rollout is running on stack `{}`: nothing to approve", config.name)
                })?,
            };
            let approvals = ops.store.approvals(&rollout_id).await?;
            let Some(approval) = approvals.iter().filter(|a| a.status == ApprovalStatus::AwaitingApproval).max_by_key(|a| a.wave) else {
                bail!("rollout {rollout_id} is not waiting for an approval (see `cargo xtask status --env {} --rollout {rollout_id}`)", config.name);
            };
            let next = approval.wave + 2;
            let sent = if self.reject {
                let sent = ops
                    .sfn
                    .send_task_failure()
                    .task_token(&approval.task_token)
                    .error(ApprovalStatus::Rejected.as_str())
                    .cause(format!("wave {next} rejected by {operator}"))
                    .send()
                    .await;
                sent.map(|_| ()).map_err(|e| (is_closed_token(&e), sdk_error(e, "sending the rejection")))
            } else {
                let sent = ops
                    .sfn
                    .send_task_success()
                    .task_token(&approval.task_token)
                    .output(json!({"approved_by": operator, "wave": next}).to_string())
                    .send()
                    .await;
                sent.map(|_| ()).map_err(|e| (is_closed_token(&e), sdk_error(e, "sending the approval")))
            };
            match sent {
                Err((true, _)) => bail!(
                    "rollout {rollout_id}'s approval of wave {next} is no longer waiting (approved, rejected or timed out)"
                ),
                Err((false, error)) => return Err(error),
                Ok(()) => {}
            }
            let decision = if self.reject {
                ApprovalStatus::Rejected
            } else {
                ApprovalStatus::Approved
            };
            ops.store.decide_approval(&rollout_id, approval.wave, decision, &operator, now()).await?;
            if self.reject {
                println!("rejected wave {next} of rollout {rollout_id}: it stops through its failure policy");
            } else {
                println!("approved wave {next} of rollout {rollout_id}");
            }
            Ok(())
        })
    }
}
