//! `cargo xtask deploy` and `cargo xtask destroy`: converge a stack's AWS resources straight
//! through the SDK (read what exists, diff it against the generator's output, apply), and
//! delete exactly the stack's tagged resources.

pub mod aws;
mod functions;
mod log_group;
mod refusal;
mod roles;
mod state_machine;
mod table;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use generator::config::StackConfig;

use crate::build::{Builder, FUNCTIONS};
use crate::env_file::{display_path, StackSelector};
use aws::Clients;

/// What a deploy does to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    /// Update these fields.
    Update(Vec<String>),
    Unchanged,
}

impl Action {
    fn verb(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update(_) => "update",
            Action::Unchanged => "unchanged",
        }
    }

    fn detail(&self) -> String {
        match self {
            Action::Update(fields) => format!(" ({})", fields.join(", ")),
            _ => String::new(),
        }
    }
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    pub stack: StackSelector,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Send every AWS call here (an emulator); overrides `endpoint_url` and AWS_ENDPOINT_URL
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Use <DIR>/<fn>/bootstrap.zip instead of building the Lambdas
    #[arg(long, value_name = "DIR")]
    pub zip_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub stack: StackSelector,
    /// Delete without asking
    #[arg(long)]
    pub yes: bool,
    /// Send every AWS call here (an emulator); overrides `endpoint_url` and AWS_ENDPOINT_URL
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The plan of every resource, in apply order.
struct Plan {
    roles: Vec<roles::RolePlan>,
    table: Action,
    log_group: Action,
    functions: Vec<functions::FunctionPlan>,
    machine: state_machine::DesiredStateMachine,
    machine_action: Action,
}

impl Plan {
    /// (kind, name, action) per resource, in apply order.
    fn lines(&self, clients: &Clients) -> Vec<(&'static str, String, Action)> {
        let stack = &clients.stack;
        let mut out: Vec<(&'static str, String, Action)> = self
            .roles
            .iter()
            .map(|r| ("iam role", r.desired.name.clone(), r.action.clone()))
            .collect();
        out.push(("dynamodb table", stack.table(), self.table.clone()));
        out.push((
            "log group",
            stack.state_machine_log_group(),
            self.log_group.clone(),
        ));
        out.extend(
            self.functions
                .iter()
                .map(|f| ("lambda function", f.desired.name.clone(), f.action.clone())),
        );
        out.push((
            "state machine",
            stack.state_machine(),
            self.machine_action.clone(),
        ));
        out
    }
}

impl DeployArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let (path, config) = self.stack.load()?;
        // Everything local is checked before the first AWS call.
        let desired_roles = roles::desired(&config)?;
        let machine = state_machine::desired(&config);
        let zips = self.zips(&config)?;
        let desired_functions = functions::desired(&config, &zips)?;
        runtime()?.block_on(async {
            let clients = Clients::new(&config, self.endpoint_url.as_deref()).await?;
            let endpoint = clients
                .endpoint
                .as_ref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default();
            println!(
                "deploying stack `{}` from {} to {}{endpoint}",
                config.name,
                display_path(&path).display(),
                config.region
            );
            let plan = Plan {
                roles: roles::plan(&clients, desired_roles).await?,
                table: table::plan(&clients).await?,
                log_group: log_group::plan(&clients).await?,
                functions: functions::plan(&clients, desired_functions).await?,
                machine_action: state_machine::plan(&clients, &machine).await?,
                machine,
            };
            let lines = plan.lines(&clients);
            println!("plan:");
            for (kind, name, action) in &lines {
                println!(
                    "  {:<9} {kind:<15} {name}{}",
                    action.verb(),
                    action.detail()
                );
            }
            if self.dry_run {
                println!("dry run: nothing changed");
                print_calls(&clients);
                return Ok(());
            }
            let timings = apply(&clients, &plan).await?;
            println!("summary:");
            println!(
                "  {:<15} {:<40} {:<9} {:>6}",
                "resource", "name", "result", "secs"
            );
            for ((kind, name, action), secs) in lines.iter().zip(timings) {
                let result = match action {
                    Action::Create => "created",
                    Action::Update(_) => "updated",
                    Action::Unchanged => "unchanged",
                };
                println!("  {kind:<15} {name:<40} {result:<9} {secs:>6.1}");
            }
            let (_, mutating) = print_calls(&clients);
            if mutating == 0 {
                println!("no changes: the stack was already up to date (0 mutating calls)");
            }
            println!(
                "deployed stack `{}` in {:.1} s",
                config.name,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        })
    }

    /// `<zip-dir>/<fn>/bootstrap.zip`, or freshly built zips for the configured architecture.
    fn zips(&self, config: &StackConfig) -> anyhow::Result<BTreeMap<&'static str, PathBuf>> {
        if let Some(dir) = &self.zip_dir {
            return FUNCTIONS
                .iter()
                .map(|f| {
                    let zip = dir.join(f).join("bootstrap.zip");
                    if !zip.is_file() {
                        bail!("--zip-dir {}: {} is missing", dir.display(), zip.display());
                    }
                    Ok((*f, zip))
                })
                .collect();
        }
        let venv_bin = crate::tools::ensure_python().context("cannot install cargo-lambda")?;
        let builder = Builder::new(&venv_bin, config.lambda.architecture)?;
        FUNCTIONS
            .iter()
            .map(|f| Ok((*f, builder.build(f)?.path)))
            .collect()
    }
}

/// Applies the plan in dependency order; returns the seconds spent per plan line.
async fn apply(clients: &Clients, plan: &Plan) -> anyhow::Result<Vec<f64>> {
    let mut timings = Vec::new();
    let lines = plan.lines(clients);
    let mut line = lines.iter();
    let mut step =
        async |f: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + '_>>| {
            let (kind, name, action) = line.next().expect("one plan line per step");
            let started = Instant::now();
            if *action != Action::Unchanged {
                println!(
                    "{} {kind} {name}{} ...",
                    progress_verb(action),
                    action.detail()
                );
            }
            f.await.with_context(|| format!("{kind} {name}"))?;
            if *action != Action::Unchanged {
                println!("  done in {:.1} s", started.elapsed().as_secs_f64());
            }
            anyhow::Ok(started.elapsed().as_secs_f64())
        };
    for role in &plan.roles {
        timings.push(step(Box::pin(roles::apply(clients, role))).await?);
    }
    timings.push(step(Box::pin(table::apply(clients, &plan.table))).await?);
    timings.push(step(Box::pin(log_group::apply(clients, &plan.log_group))).await?);
    for function in &plan.functions {
        timings.push(step(Box::pin(functions::apply(clients, function))).await?);
    }
    let role_changes = |name: &str| {
        plan.roles
            .iter()
            .find(|r| r.desired.name == name)
            .map(|r| refusal::RoleChanges::of(&r.action))
            .unwrap_or_default()
    };
    let states_role = role_changes(&clients.stack.states_role());
    timings.push(
        step(Box::pin(state_machine::apply(
            clients,
            &plan.machine,
            &plan.machine_action,
            states_role,
        )))
        .await?,
    );
    Ok(timings)
}

fn progress_verb(action: &Action) -> &'static str {
    match action {
        Action::Create => "creating",
        Action::Update(_) => "updating",
        Action::Unchanged => "keeping",
    }
}

/// Prints the API calls per operation and the totals; returns (calls, mutating calls).
fn print_calls(clients: &Clients) -> (u64, u64) {
    let counts = clients.counter.snapshot();
    println!("api calls:");
    for (operation, count) in &counts {
        let kind = if count.mutating > 0 {
            "mutating"
        } else {
            "read"
        };
        println!("  {operation:<45} {:>4} {kind}", count.calls);
    }
    let (calls, mutating) = clients.counter.totals();
    println!("api calls: {calls} total, mutating calls: {mutating}");
    (calls, mutating)
}

impl DestroyArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let (_, config) = self.stack.load()?;
        runtime()?.block_on(async {
            let clients = Clients::new(&config, self.endpoint_url.as_deref()).await?;
            let stack = clients.stack.clone();
            // (kind, name, owned) in deletion order: what depends on a resource goes first.
            let mut found: Vec<(&'static str, String, bool)> = Vec::new();
            let mut add = |kind, name: String, owned: Option<bool>| {
                if let Some(owned) = owned {
                    found.push((kind, name, owned));
                }
            };
            add(
                "state machine",
                stack.state_machine(),
                state_machine::owned(&clients).await?,
            );
            for function in [stack.planner_function(), stack.refresher_function()] {
                let owned = functions::owned(&clients, &function).await?;
                add("lambda function", function, owned);
            }
            add(
                "log group",
                stack.state_machine_log_group(),
                log_group::owned(&clients).await?,
            );
            add(
                "dynamodb table",
                stack.table(),
                table::owned(&clients).await?,
            );
            for role in [stack.lambda_role(), stack.states_role()] {
                let owned = roles::owned(&clients, &role).await?;
                add("iam role", role, owned);
            }
            for (kind, name, _) in found.iter().filter(|(_, _, owned)| !owned) {
                println!(
                    "skipping {kind} {name}: not tagged {}={} (not this stack's)",
                    generator::names::STACK_TAG,
                    stack.env
                );
            }
            let doomed: Vec<_> = found.into_iter().filter(|(_, _, owned)| *owned).collect();
            if doomed.is_empty() {
                println!("nothing to delete: stack `{}` has no resources", stack.env);
                return Ok(());
            }
            println!("destroy stack `{}` deletes:", stack.env);
            for (kind, name, _) in &doomed {
                println!("  {kind:<15} {name}");
            }
            if !self.yes {
                confirm(&stack.env)?;
            }
            for (kind, name, _) in &doomed {
                let started = Instant::now();
                println!("deleting {kind} {name} ...");
                match *kind {
                    "state machine" => state_machine::delete(&clients).await?,
                    "lambda function" => functions::delete(&clients, name).await?,
                    "log group" => log_group::delete(&clients).await?,
                    "dynamodb table" => table::delete(&clients).await?,
                    _ => roles::delete(&clients, name).await?,
                }
                println!("  done in {:.1} s", started.elapsed().as_secs_f64());
            }
            print_calls(&clients);
            println!(
                "destroyed stack `{}`: {} resources deleted",
                stack.env,
                doomed.len()
            );
            Ok(())
        })
    }
}

/// Asks on a terminal; refuses when stdin is not one.
fn confirm(env: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to destroy stack `{env}` without --yes: stdin is not a terminal to ask on");
    }
    print!("type the stack name `{env}` to delete these resources: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != env {
        bail!("destroy cancelled: nothing deleted");
    }
    Ok(())
}
