//! `cargo xtask deploy` and `cargo xtask destroy`: converge a stack's AWS resources straight
//! through the SDK (read what exists, diff it against the generator's output, apply), and
//! delete exactly the stack's tagged resources.

pub mod aws;
mod diff;
mod events_rule;
mod functions;
mod log_group;
mod refusal;
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
use aws::Clients;

/// What a deploy does to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    /// Update these fields.
    Update(Vec<String>),
    Unchanged,
    /// Delete it: the stack no longer has it (the completer and its rule with
    /// `completion = "poll"`).
    Delete,
}

impl Action {
    /// `Unchanged` when no field differs, else `Update` of those fields.
    pub fn from_fields(fields: Vec<String>) -> Self {
        if fields.is_empty() {
            Action::Unchanged
        } else {
            Action::Update(fields)
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update(_) => "update",
            Action::Unchanged => "unchanged",
            Action::Delete => "delete",
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
    /// The definition's unified diff when it changes.
    machine_diff: String,
    rule: events_rule::DesiredRule,
    rule_plan: events_rule::RulePlan,
    /// The completer and its role, when the stack no longer has them (`Delete`).
    completer_leftover: Option<Action>,
    completer_role_leftover: Option<Action>,
    /// The stack's notifications topic (`[notify] create_topic`).
    topic: topic::TopicPlan,
}

/// One line of the plan: what apply does, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Role(usize),
    Table,
    LogGroup,
    Topic,
    Function(usize),
    Machine,
    Rule,
    Permission,
    Target,
    /// Deletions come last, what depends on a resource first.
    RemoveTarget,
    RemoveRule,
    RemovePermission,
    RemoveCompleter,
    RemoveCompleterRole,
    RemoveTopic,
}

impl Plan {
    /// (step, kind, name, action) per resource, in apply order.
    fn steps(&self, clients: &Clients) -> Vec<(Step, &'static str, String, Action)> {
        let stack = &clients.stack;
        let mut out: Vec<(Step, &'static str, String, Action)> = self
            .roles
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    Step::Role(i),
                    "iam role",
                    r.desired.name.clone(),
                    r.action.clone(),
                )
            })
            .collect();
        out.push((
            Step::Table,
            "dynamodb table",
            stack.table(),
            self.table.clone(),
        ));
        out.push((
            Step::LogGroup,
            "log group",
            stack.state_machine_log_group(),
            self.log_group.clone(),
        ));
        if let Some(action) = self.topic.action.as_ref().filter(|a| **a != Action::Delete) {
            out.push((
                Step::Topic,
                "sns topic",
                stack.notifications_topic(),
                action.clone(),
            ));
        }
        out.extend(self.functions.iter().enumerate().map(|(i, f)| {
            (
                Step::Function(i),
                "lambda function",
                f.desired.name.clone(),
                f.action.clone(),
            )
        }));
        out.push((
            Step::Machine,
            "state machine",
            stack.state_machine(),
            self.machine_action.clone(),
        ));
        let rule = stack.events_rule();
        let permission = format!(
            "{}/{}",
            stack.completer_function(),
            stack.completer_permission_statement()
        );
        let target = format!("{rule}/{}", stack.events_target_id());
        let plan = &self.rule_plan;
        // Creations and updates in place, deletions after everything else.
        let mut push = |step, kind, name: &String, action: &Option<Action>, delete: bool| {
            if let Some(action) = action {
                if (*action == Action::Delete) == delete {
                    out.push((step, kind, name.clone(), action.clone()));
                }
            }
        };
        push(Step::Rule, "eventbridge rule", &rule, &plan.rule, false);
        push(
            Step::Permission,
            "lambda permission",
            &permission,
            &plan.permission,
            false,
        );
        push(Step::Target, "rule target", &target, &plan.target, false);
        push(
            Step::RemoveTarget,
            "rule target",
            &target,
            &plan.target,
            true,
        );
        push(
            Step::RemoveRule,
            "eventbridge rule",
            &rule,
            &plan.rule,
            true,
        );
        push(
            Step::RemovePermission,
            "lambda permission",
            &permission,
            &plan.permission,
            true,
        );
        push(
            Step::RemoveCompleter,
            "lambda function",
            &stack.completer_function(),
            &self.completer_leftover,
            true,
        );
        push(
            Step::RemoveCompleterRole,
            "iam role",
            &stack.completer_role(),
            &self.completer_role_leftover,
            true,
        );
        push(
            Step::RemoveTopic,
            "sns topic",
            &stack.notifications_topic(),
            &self.topic.action,
            true,
        );
        out
    }

    /// What the updates change in the documents (the roles' policies, the state machine's
    /// definition), as unified diffs, so the plan can be reviewed before it is applied.
    fn print_diffs(&self) {
        let diffs: Vec<&String> = self
            .roles
            .iter()
            .flat_map(|r| &r.diffs)
            .chain(std::iter::once(&self.machine_diff))
            .filter(|d| !d.is_empty())
            .collect();
        if diffs.is_empty() {
            return;
        }
        println!("changes:");
        for diff in diffs {
            print!("{diff}");
        }
    }

    /// (kind, name, action) per resource, in apply order.
    fn lines(&self, clients: &Clients) -> Vec<(&'static str, String, Action)> {
        self.steps(clients)
            .into_iter()
            .map(|(_, kind, name, action)| (kind, name, action))
            .collect()
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
        let desired_functions =
            topic::with_environment(&config, functions::desired(&config, &zips)?);
        let rule = events_rule::desired(&config);
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
            let functions = functions::plan(&clients, desired_functions).await?;
            let completer_leftover = functions::leftover(&clients, &config).await?;
            let completer = functions
                .iter()
                .find(|f| f.desired.name == clients.stack.completer_function())
                .map(|f| &f.action)
                .or(completer_leftover.as_ref());
            let rule_plan = events_rule::plan(&clients, &rule, completer).await?;
            let (machine_action, machine_diff) = state_machine::plan(&clients, &machine).await?;
            let plan = Plan {
                roles: roles::plan(&clients, desired_roles).await?,
                table: table::plan(&clients).await?,
                log_group: log_group::plan(&clients).await?,
                machine_action,
                machine_diff,
                machine,
                functions,
                rule,
                rule_plan,
                completer_role_leftover: roles::leftover(&clients, &config).await?,
                completer_leftover,
                topic: topic::plan(
                    &clients,
                    &config,
                    topic::client(&config, self.endpoint.url(), &clients.counter).await?,
                )
                .await?,
            };
            let lines = plan.lines(&clients);
            println!("plan:");
            for (kind, name, action) in &lines {
                println!(
                    "  {:<9} {kind:<17} {name}{}",
                    action.verb(),
                    action.detail()
                );
            }
            plan.print_diffs();
            if self.dry_run {
                println!("dry run: nothing changed");
                print_calls(&clients);
                return Ok(());
            }
            let timings = apply(&clients, &plan).await?;
            println!("summary:");
            println!(
                "  {:<17} {:<52} {:<9} {:>6}",
                "resource", "name", "result", "secs"
            );
            for ((kind, name, action), secs) in lines.iter().zip(timings) {
                let result = match action {
                    Action::Create => "created",
                    Action::Update(_) => "updated",
                    Action::Unchanged => "unchanged",
                    Action::Delete => "deleted",
                };
                println!("  {kind:<17} {name:<52} {result:<9} {secs:>6.1}");
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

/// Applies the plan in dependency order; returns the seconds spent per plan line.
async fn apply(clients: &Clients, plan: &Plan) -> anyhow::Result<Vec<f64>> {
    let role_changes = |name: &str| {
        plan.roles
            .iter()
            .find(|r| r.desired.name == name)
            .map(|r| refusal::RoleChanges::of(&r.action))
            .unwrap_or_default()
    };
    let states_role = role_changes(&clients.stack.states_role());
    let mut timings = Vec::new();
    for (step, kind, name, action) in plan.steps(clients) {
        let started = Instant::now();
        if action != Action::Unchanged {
            println!(
                "{} {kind} {name}{} ...",
                progress_verb(&action),
                action.detail()
            );
        }
        let done = match step {
            Step::Role(i) => roles::apply(clients, &plan.roles[i]).await,
            Step::Table => table::apply(clients, &plan.table).await,
            Step::LogGroup => log_group::apply(clients, &plan.log_group).await,
            Step::Function(i) => functions::apply(clients, &plan.functions[i]).await,
            Step::Machine => {
                state_machine::apply(clients, &plan.machine, &plan.machine_action, states_role)
                    .await
            }
            Step::Rule => events_rule::apply_rule(clients, &plan.rule, &action).await,
            Step::Permission => events_rule::apply_permission(clients, &action).await,
            Step::Target => events_rule::apply_target(clients, &action).await,
            Step::RemoveTarget => events_rule::remove_targets(clients).await,
            Step::RemoveRule => events_rule::delete_rule(clients).await,
            Step::RemovePermission => events_rule::remove_permission(clients).await,
            Step::RemoveCompleter => functions::delete(clients, &name).await,
            Step::RemoveCompleterRole => roles::delete(clients, &name).await,
            Step::Topic | Step::RemoveTopic => topic::apply(clients, &plan.topic, &action).await,
        };
        done.with_context(|| format!("{kind} {name}"))?;
        if action != Action::Unchanged {
            println!("  done in {:.1} s", started.elapsed().as_secs_f64());
        }
        timings.push(started.elapsed().as_secs_f64());
    }
    Ok(timings)
}

fn progress_verb(action: &Action) -> &'static str {
    match action {
        Action::Create => "creating",
        Action::Update(_) => "updating",
        Action::Unchanged => "keeping",
        Action::Delete => "deleting",
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
            let clients = Clients::new(&config, self.endpoint.url()).await?;
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
            // Its targets go with it; the completer's permission goes with the function.
            add(
                "eventbridge rule",
                stack.events_rule(),
                events_rule::owned(&clients).await?,
            );
            for function in [
                stack.planner_function(),
                stack.refresher_function(),
                stack.completer_function(),
            ] {
                let owned = functions::owned(&clients, &function).await?;
                add("lambda function", function, owned);
            }
            add(
                "log group",
                stack.state_machine_log_group(),
                log_group::owned(&clients).await?,
            );
            let sns = topic::client(&config, self.endpoint.url(), &clients.counter).await?;
            add(
                "sns topic",
                stack.notifications_topic(),
                topic::owned(&clients, &sns).await?,
            );
            add(
                "dynamodb table",
                stack.table(),
                table::owned(&clients).await?,
            );
            for role in [
                stack.lambda_role(),
                stack.states_role(),
                stack.completer_role(),
            ] {
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
                println!("  {kind:<17} {name}");
            }
            if !self.yes {
                confirm(&stack.env)?;
            }
            for (kind, name, _) in &doomed {
                let started = Instant::now();
                println!("deleting {kind} {name} ...");
                match *kind {
                    "state machine" => state_machine::delete(&clients).await?,
                    "eventbridge rule" => events_rule::delete_rule(&clients).await?,
                    "lambda function" => functions::delete(&clients, name).await?,
                    "log group" => log_group::delete(&clients).await?,
                    "dynamodb table" => table::delete(&clients).await?,
                    "sns topic" => topic::delete(&clients, &sns).await?,
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
