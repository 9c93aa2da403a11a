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
use engine::{Planned, Step, StepFuture, Verb};

/// What a deploy does to one resource; `C` is the resource's typed change (see
/// [`engine::Resource::Change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<C = String> {
    Create,
    /// Update these fields.
    Update(Vec<C>),
    Unchanged,
    /// Delete it: the stack no longer has it (the completer and its rule with
    /// `completion = "poll"`).
    Delete,
}

impl<C> Action<C> {
    /// `Unchanged` when no field differs, else `Update` of those fields.
    pub fn from_fields(fields: Vec<C>) -> Self {
        if fields.is_empty() {
            Action::Unchanged
        } else {
            Action::Update(fields)
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

/// A resource not yet on the [`engine::Resource`] trait: its plan line and how apply treats it.
/// Each variant goes away as its resource becomes a `Resource` (issue 14).
enum Legacy {
    Topic(topic::TopicPlan),
    Function(functions::FunctionPlan),
    Machine {
        machine: state_machine::DesiredStateMachine,
        diff: String,
    },
    Rule(events_rule::DesiredRule),
    Permission,
    Target,
    RemoveTarget,
    RemoveRule,
    RemovePermission,
    RemoveFunction,
    DeleteStateMachine,
}

/// A [`Legacy`] resource as a plan line.
struct LegacyStep {
    kind: &'static str,
    name: String,
    action: Action,
    what: Legacy,
    /// The states role's changes in this deploy (the state machine waits for them to
    /// propagate when Step Functions refuses the role).
    states_role: refusal::RoleChanges,
}

impl LegacyStep {
    fn new(kind: &'static str, name: String, action: Action, what: Legacy) -> Box<dyn Step> {
        Box::new(Self {
            kind,
            name,
            action,
            what,
            states_role: refusal::RoleChanges::default(),
        })
    }
}

impl Step for LegacyStep {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn verb(&self) -> Verb {
        match self.action {
            Action::Create => Verb::Create,
            Action::Update(_) => Verb::Update,
            Action::Unchanged => Verb::Unchanged,
            Action::Delete => Verb::Delete,
        }
    }

    fn detail(&self) -> String {
        match &self.action {
            Action::Update(fields) => fields.join(", "),
            _ => String::new(),
        }
    }

    fn review(&self) -> String {
        match &self.what {
            Legacy::Machine { diff, .. } => diff.clone(),
            _ => String::new(),
        }
    }

    fn apply<'a>(&'a self, clients: &'a Clients) -> StepFuture<'a> {
        Box::pin(async move {
            let action = &self.action;
            match &self.what {
                Legacy::Topic(plan) => topic::apply(clients, plan, action).await,
                Legacy::Function(plan) => functions::apply(clients, plan).await,
                Legacy::Machine { machine, .. } => {
                    state_machine::apply(clients, machine, action, self.states_role).await
                }
                Legacy::Rule(rule) => events_rule::apply_rule(clients, rule, action).await,
                Legacy::Permission => events_rule::apply_permission(clients, action).await,
                Legacy::Target => events_rule::apply_target(clients, action).await,
                Legacy::RemoveTarget => events_rule::remove_targets(clients).await,
                Legacy::RemoveRule => events_rule::delete_rule(clients).await,
                Legacy::RemovePermission => events_rule::remove_permission(clients).await,
                Legacy::RemoveFunction => functions::delete(clients, &self.name).await,
                Legacy::DeleteStateMachine => state_machine::delete(clients).await,
            }
        })
    }
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
    let topic = topic::plan(clients, config, clients.sns.clone()).await?;
    let topic_action = topic.action.clone();
    let topic_step = |action| {
        LegacyStep::new(
            "sns topic",
            stack.notifications_topic(),
            action,
            Legacy::Topic(topic),
        )
    };
    // Deletions go last, what depends on a resource first: the target, the rule, the
    // completer's permission, the completer, its role, the topic.
    let mut removals: Vec<Box<dyn Step>> = Vec::new();
    let mut topic_removal = None;
    match topic_action {
        None => {}
        Some(Action::Delete) => topic_removal = Some(topic_step(Action::Delete)),
        Some(action) => steps.push(topic_step(action)),
    }
    let functions = functions::plan(clients, desired.functions).await?;
    let completer_leftover = functions::leftover(clients, config).await?;
    let completer = functions
        .iter()
        .find(|f| f.desired.name == stack.completer_function())
        .map(|f| f.action.clone())
        .or(completer_leftover.clone());
    for function in functions {
        let (name, action) = (function.desired.name.clone(), function.action.clone());
        steps.push(LegacyStep::new(
            "lambda function",
            name,
            action,
            Legacy::Function(function),
        ));
    }
    let (machine_action, diff) = state_machine::plan(clients, &desired.machine).await?;
    steps.push(Box::new(LegacyStep {
        kind: "state machine",
        name: stack.state_machine(),
        action: machine_action,
        what: Legacy::Machine {
            machine: desired.machine,
            diff,
        },
        states_role,
    }));
    let rule_plan = events_rule::plan(clients, &desired.rule, completer.as_ref()).await?;
    let rule = stack.events_rule();
    let permission = format!(
        "{}/{}",
        stack.completer_function(),
        stack.completer_permission_statement()
    );
    let target = format!("{rule}/{}", stack.events_target_id());
    // (kind, name, action, apply, remove): the rule, the completer's permission, the target.
    let mut rows = [
        (
            "eventbridge rule",
            rule,
            rule_plan.rule,
            Some(Legacy::Rule(desired.rule)),
            Some(Legacy::RemoveRule),
        ),
        (
            "lambda permission",
            permission,
            rule_plan.permission,
            Some(Legacy::Permission),
            Some(Legacy::RemovePermission),
        ),
        (
            "rule target",
            target,
            rule_plan.target,
            Some(Legacy::Target),
            Some(Legacy::RemoveTarget),
        ),
    ];
    for (kind, name, action, apply, _) in &mut rows {
        match action {
            Some(Action::Delete) | None => {}
            Some(action) => steps.push(LegacyStep::new(
                kind,
                name.clone(),
                action.clone(),
                apply.take().expect("one step per row"),
            )),
        }
    }
    // Removed in the order target, rule, permission.
    for row in [2, 0, 1] {
        let (kind, name, action, _, remove) = &mut rows[row];
        if *action == Some(Action::Delete) {
            removals.push(LegacyStep::new(
                kind,
                name.clone(),
                Action::Delete,
                remove.take().expect("one step per row"),
            ));
        }
    }
    if let Some(action) = completer_leftover {
        removals.push(LegacyStep::new(
            "lambda function",
            stack.completer_function(),
            action,
            Legacy::RemoveFunction,
        ));
    }
    if config.rollout.completion != generator::config::Completion::Events {
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
            doomed.extend(legacy_absent(
                &mut skipped,
                "state machine",
                stack.state_machine(),
                state_machine::owned(&clients).await?,
                Legacy::DeleteStateMachine,
            ));
            // Its targets go with it; the completer's permission goes with the function.
            doomed.extend(legacy_absent(
                &mut skipped,
                "eventbridge rule",
                stack.events_rule(),
                events_rule::owned(&clients).await?,
                Legacy::RemoveRule,
            ));
            for function in [
                stack.planner_function(),
                stack.refresher_function(),
                stack.completer_function(),
            ] {
                let owned = functions::owned(&clients, &function).await?;
                doomed.extend(legacy_absent(
                    &mut skipped,
                    "lambda function",
                    function,
                    owned,
                    Legacy::RemoveFunction,
                ));
            }
            let log_group = Planned::absent(log_group::LogGroup::new(&stack), &clients).await?;
            let topic = topic::owned(&clients, &clients.sns).await?;
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
            doomed.extend(legacy_absent(
                &mut skipped,
                "sns topic",
                stack.notifications_topic(),
                topic,
                Legacy::Topic(topic::TopicPlan {
                    sns: clients.sns.clone(),
                    action: Some(Action::Delete),
                }),
            ));
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

/// A [`Legacy`] resource destroy deletes when it exists and is `owned`; one that is not is
/// reported on `skipped`.
fn legacy_absent(
    skipped: &mut Vec<(&'static str, String)>,
    kind: &'static str,
    name: String,
    owned: Option<bool>,
    what: Legacy,
) -> Option<Box<dyn Step>> {
    match owned {
        Some(true) => Some(LegacyStep::new(kind, name, Action::Delete, what)),
        Some(false) => {
            skipped.push((kind, name));
            None
        }
        None => None,
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
