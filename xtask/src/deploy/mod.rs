//! `cargo xtask deploy` and `cargo xtask destroy`: converge a stack's AWS resources straight
//! through the SDK (read what exists, diff it against the generator's output, apply), and
//! delete exactly the stack's tagged resources.

pub mod aws;
mod diff;
mod engine;
mod events_rule;
mod functions;
mod log_group;
mod refusal;
#[cfg(test)]
mod replay_apply;
mod roles;
mod state_machine;
mod table;
mod topic;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use generator::config::StackConfig;

use crate::build::{Builder, FUNCTIONS};
use crate::env_file::{display_path, Endpoint, StackSelector};
use aws::{runtime, Clients};
pub use engine::Action;
use engine::{Planned, Step, Verb};

#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    pub stack: StackSelector,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub endpoint: Endpoint,
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
    #[command(flatten)]
    pub endpoint: Endpoint,
}

/// What the stack wants, checked locally before the first AWS call.
struct Desired {
    roles: Vec<roles::Role>,
    machine: state_machine::DesiredStateMachine,
    functions: Vec<functions::DesiredFunction>,
    rule: events_rule::DesiredRule,
}

/// Reads every resource and diffs it: the deploy's steps, in apply order (creations and
/// updates in dependency order, then deletions, what depends on a resource first).
async fn plan(
    clients: &Clients,
    config: &StackConfig,
    desired: Desired,
) -> anyhow::Result<Vec<Box<dyn Step>>> {
    let stack = &clients.stack;
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    // The state machine waits for the states role's changes to propagate.
    let mut states_role = refusal::RoleChanges::default();
    for role in desired.roles {
        let role = Planned::wanted(role, clients).await?;
        if role.resource.name == stack.states_role() {
            states_role = refusal::RoleChanges::of(&role.action);
        }
        steps.push(Box::new(role));
    }
    steps.push(Box::new(
        Planned::wanted(table::Table::new(stack), clients).await?,
    ));
    steps.push(Box::new(
        Planned::wanted(log_group::LogGroup::new(stack), clients).await?,
    ));
    topic::check_operator_topic(clients, config).await?;
    // Deletions go last, what depends on a resource first: the target, the rule, the
    // completer's permission, the completer, its role, the topic.
    let mut removals: Vec<Box<dyn Step>> = Vec::new();
    let mut topic_removal = None;
    if topic::wanted(config) {
        steps.push(Box::new(
            Planned::wanted(topic::Topic::new(stack), clients).await?,
        ));
    } else {
        // A topic of that name that is not this stack's is left alone.
        topic_removal = Planned::absent(topic::Topic::new(stack), clients)
            .await?
            .into_step(&mut Vec::new());
    }
    // Whether the completer exists (wanted, or left over to delete): its permission lives on it.
    let mut completer_exists = false;
    for function in desired.functions {
        let planned = Planned::wanted(functions::Function::new(function), clients).await?;
        if planned.resource.name == stack.completer_function() {
            completer_exists = planned.current.is_some();
        }
        steps.push(Box::new(planned));
    }
    // The completer when the stack no longer wants it (`completion = "poll"`); someone else's
    // function of that name is left alone.
    let completer_wanted = functions::wanted(config, "completer");
    let completer_removal = match completer_wanted {
        true => None,
        false => Planned::absent(
            functions::Function::unwanted(stack.completer_function()),
            clients,
        )
        .await?
        .into_step(&mut Vec::new()),
    };
    completer_exists |= completer_removal.is_some();
    let machine = state_machine::StateMachine::new(stack, desired.machine, states_role);
    steps.push(Box::new(Planned::wanted(machine, clients).await?));
    // The rule, the completer's permission and the target; removed in the order target, rule,
    // permission.
    let events = events_rule::plan(clients, desired.rule, completer_exists).await?;
    steps.extend(events.apply);
    removals.extend(events.remove);
    removals.extend(completer_removal);
    if !completer_wanted {
        // The completer's role, when an earlier deploy made it; one that is not this stack's
        // is left alone.
        let role = Planned::absent(roles::Role::named(stack.completer_role()), clients).await?;
        removals.extend(role.into_step(&mut Vec::new()));
    }
    removals.extend(topic_removal);
    steps.extend(removals);
    Ok(steps)
}

impl DeployArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let (path, config) = self.stack.load()?;
        // Everything local is checked before the first AWS call.
        let zips = self.zips(&config)?;
        let desired = Desired {
            roles: roles::desired(&config)?,
            machine: state_machine::desired(&config),
            functions: topic::with_environment(&config, functions::desired(&config, &zips)?),
            rule: events_rule::desired(&config),
        };
        runtime()?.block_on(async {
            let clients = Clients::new(&config, self.endpoint.url()).await?;
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
            let steps = plan(&clients, &config, desired).await?;
            println!("plan:");
            for step in &steps {
                println!(
                    "  {:<9} {:<17} {}{}",
                    step.verb().plan(),
                    step.kind(),
                    step.name(),
                    detail(step.as_ref())
                );
            }
            print_reviews(&steps);
            if self.dry_run {
                println!("dry run: nothing changed");
                print_calls(&clients);
                return Ok(());
            }
            let timings = apply(&clients, &steps).await?;
            println!("summary:");
            println!(
                "  {:<17} {:<52} {:<9} {:>6}",
                "resource", "name", "result", "secs"
            );
            for (step, secs) in steps.iter().zip(timings) {
                println!(
                    "  {:<17} {:<52} {:<9} {secs:>6.1}",
                    step.kind(),
                    step.name(),
                    step.verb().result()
                );
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

    /// `<zip-dir>/<fn>/bootstrap.zip`, or freshly built zips for the configured architecture,
    /// of the functions the stack has (the completer only with `completion = "events"`).
    fn zips(&self, config: &StackConfig) -> anyhow::Result<BTreeMap<&'static str, PathBuf>> {
        let functions: Vec<&'static str> = FUNCTIONS
            .iter()
            .copied()
            .filter(|f| functions::wanted(config, f))
            .collect();
        if let Some(dir) = &self.zip_dir {
            return functions
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
        functions
            .iter()
            .map(|f| Ok((*f, builder.build(f)?.path)))
            .collect()
    }
}

/// " (field, field)" after an update's plan line.
fn detail(step: &dyn Step) -> String {
    match step.verb() {
        Verb::Update => format!(" ({})", step.detail()),
        _ => String::new(),
    }
}

/// What the updates change in the documents (the roles' policies, the state machine's
/// definition), as unified diffs, so the plan can be reviewed before it is applied.
fn print_reviews(steps: &[Box<dyn Step>]) {
    let reviews: Vec<String> = steps
        .iter()
        .map(|s| s.review())
        .filter(|r| !r.is_empty())
        .collect();
    if reviews.is_empty() {
        return;
    }
    println!("changes:");
    for review in reviews {
        print!("{review}");
    }
}

/// Applies the steps in order; returns the seconds spent on each.
async fn apply(clients: &Clients, steps: &[Box<dyn Step>]) -> anyhow::Result<Vec<f64>> {
    let mut timings = Vec::new();
    for step in steps {
        let started = Instant::now();
        let verb = step.verb();
        if verb != Verb::Unchanged {
            println!(
                "{} {} {}{} ...",
                verb.progress(),
                step.kind(),
                step.name(),
                detail(step.as_ref())
            );
        }
        step.apply(clients)
            .await
            .with_context(|| format!("{} {}", step.kind(), step.name()))?;
        if verb != Verb::Unchanged {
            println!("  done in {:.1} s", started.elapsed().as_secs_f64());
        }
        timings.push(started.elapsed().as_secs_f64());
    }
    Ok(timings)
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
            let clients = Clients::new(&config, self.endpoint.url()).await?;
            let stack = clients.stack.clone();
            // In deletion order: what depends on a resource goes first.
            let mut skipped = Vec::new();
            let mut doomed: Vec<Box<dyn Step>> = Vec::new();
            let machine = state_machine::StateMachine::unwanted(&stack);
            doomed.extend(
                Planned::absent(machine, &clients)
                    .await?
                    .into_step(&mut skipped),
            );
            // Its targets go with it; the completer's permission goes with the function.
            let rule = events_rule::Rule::new(&stack, events_rule::desired(&config));
            doomed.extend(
                Planned::absent(rule, &clients)
                    .await?
                    .into_step(&mut skipped),
            );
            for function in [
                stack.planner_function(),
                stack.refresher_function(),
                stack.completer_function(),
            ] {
                let function = functions::Function::unwanted(function);
                doomed.extend(
                    Planned::absent(function, &clients)
                        .await?
                        .into_step(&mut skipped),
                );
            }
            let log_group = Planned::absent(log_group::LogGroup::new(&stack), &clients).await?;
            let topic = Planned::absent(topic::Topic::new(&stack), &clients).await?;
            let table = Planned::absent(table::Table::new(&stack), &clients).await?;
            let mut roles = Vec::new();
            for role in [
                stack.lambda_role(),
                stack.states_role(),
                stack.completer_role(),
            ] {
                roles.push(Planned::absent(roles::Role::named(role), &clients).await?);
            }
            doomed.extend(log_group.into_step(&mut skipped));
            doomed.extend(topic.into_step(&mut skipped));
            doomed.extend(table.into_step(&mut skipped));
            for role in roles {
                doomed.extend(role.into_step(&mut skipped));
            }
            for (kind, name) in &skipped {
                println!(
                    "skipping {kind} {name}: not tagged {}={} (not this stack's)",
                    generator::names::STACK_TAG,
                    stack.env
                );
            }
            if doomed.is_empty() {
                println!("nothing to delete: stack `{}` has no resources", stack.env);
                return Ok(());
            }
            println!("destroy stack `{}` deletes:", stack.env);
            for step in &doomed {
                println!("  {:<17} {}", step.kind(), step.name());
            }
            if !self.yes {
                confirm(&stack.env)?;
            }
            apply(&clients, &doomed).await?;
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
