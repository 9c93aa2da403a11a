//! The review report (`review.md`): stack resources, the plan, an estimate of execution
//! history, and a Mermaid diagram of the state machine.

use minijinja::{context, Environment};

use crate::asl::{Kind, State, StateMachine, States, Transition};
use crate::config::{StackConfig, Strategy};
use crate::iam::Document;
use crate::names::Stack;
use crate::rollout::states::{MORE_WAVES, REFRESHED, SELECT_WAVE, START, STARTED, WAIT, WAVE};
use crate::waves;

const TEMPLATE: &str = include_str!("../../templates/review.md.j2");

/// Execution history events an execution may hold before it fails: "Maximum execution
/// history size: 25,000 events. If the execution history reaches this quota, the execution
/// will fail" (<https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html>).
pub const HISTORY_LIMIT: u64 = 25_000;
/// Most reads of the rollbacks after a failure (`on_failure = "rollback"`): the parent
/// waits for them, so their events are set aside from what the waves may use.
pub const SETTLE_ROUNDS_MAX: u64 = 60;
/// Parent events per read of the rollbacks: Wait, the CheckRollbacks task and the Choice,
/// with room for a retried invocation.
pub const PARENT_EVENTS_PER_SETTLE_ROUND: u64 = 11;
/// Parent events outside the wave loop: the execution's start and end, Plan, FirstWave,
/// the last MoreWaves, Finish, AnyFailed and the end state, with room for retries.
pub const PARENT_EVENTS_FIXED: u64 = 20;
/// Parent events per wave left for retried invocations (a retried attempt adds
/// TaskScheduled, TaskStarted and TaskFailed).
pub const PARENT_RETRY_EVENTS_PER_WAVE: u64 = 3;
/// Events of a child execution set aside for retried invocations (about 330 of them).
pub const CHILD_RETRY_RESERVE: u64 = 1_000;

/// History events one pass through `state` adds, retries aside, as Step Functions
/// records them: `<Type>StateEntered` and `<Type>StateExited` for every state; a Task
/// adds TaskScheduled, TaskStarted and TaskSucceeded (and TaskSubmitted when it waits for
/// a callback or a job); a Distributed Map adds MapStateStarted, MapRunStarted,
/// MapRunSucceeded and MapStateSucceeded (its items run in child executions); a Fail state
/// records only FailStateEntered. Event types: HistoryEvent in the API reference
/// (<https://docs.aws.amazon.com/step-functions/latest/apireference/API_HistoryEvent.html>).
pub fn events_of(state: &State) -> u64 {
    match &state.kind {
        Kind::Task(task) => {
            let waits =
                task.resource.ends_with(".waitForTaskToken") || task.resource.contains(".sync");
            5 + u64::from(waits)
        }
        Kind::Map(map) if map.item_processor.is_distributed() => 6,
        Kind::Map(_) | Kind::Parallel(_) => 4,
        Kind::Fail(_) => 1,
        Kind::Pass(_) | Kind::Choice(_) | Kind::Wait(_) | Kind::Succeed(_) => 2,
    }
}

/// Where the way round goes after `state`: its Next, or a Choice's Default.
fn next_of(state: &State) -> Option<String> {
    match (&state.transition, &state.kind) {
        (Transition::Next(next), _) => Some(next.clone()),
        (_, Kind::Choice(choice)) => choice.default.clone(),
        _ => None,
    }
}

/// Events of one trip around the loop that leaves `from` for `first` and follows each
/// state's Next (a Choice's Default) until it is back at `from`.
fn loop_events(states: &States, from: &str, first: Option<String>) -> u64 {
    let mut total = states.get(from).map_or(0, events_of);
    let mut at = first;
    for _ in 0..states.len() {
        let Some(name) = at.filter(|n| n != from) else {
            return total;
        };
        let Some(state) = states.get(&name) else {
            return total;
        };
        total += events_of(state);
        at = next_of(state);
    }
    total
}

/// The history of one ASG's child execution at its longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildHistory {
    /// Most checks before the refresh ends or times out.
    pub polls: u64,
    /// Events per poll: Wait, the CheckRefresh task and the gate.
    pub per_poll: u64,
    /// Events outside the poll loop: the execution's start and end, StartRefresh, the
    /// first gate and the Succeed state.
    pub fixed: u64,
}

impl ChildHistory {
    /// Events without retries.
    pub fn events(&self) -> u64 {
        self.fixed + self.polls * self.per_poll
    }

    /// Most polls that fit under the limit, with [`CHILD_RETRY_RESERVE`] set aside.
    pub fn max_polls(&self) -> u64 {
        (HISTORY_LIMIT - CHILD_RETRY_RESERVE - self.fixed) / self.per_poll.max(1)
    }

    pub fn fits(&self) -> bool {
        self.events() + CHILD_RETRY_RESERVE <= HISTORY_LIMIT
    }
}

/// Most checks of one ASG: one per `poll_seconds` until `timeout_minutes` has passed, and
/// the one that finds it has.
pub fn polls(rollout: &crate::config::Rollout) -> u64 {
    u64::from(rollout.timeout_minutes) * 60 / u64::from(rollout.poll_seconds.max(1)) + 1
}

/// The child execution's history, counted on the rendered state machine.
pub fn child_history(config: &StackConfig, machine: &StateMachine) -> ChildHistory {
    let child = match machine.states.get(WAVE).map(|s| &s.kind) {
        Some(Kind::Map(map)) => &map.item_processor.states,
        _ => {
            return ChildHistory {
                polls: polls(&config.rollout),
                per_poll: 0,
                fixed: 0,
            }
        }
    };
    let events = |name: &str| child.get(name).map_or(0, events_of);
    ChildHistory {
        polls: polls(&config.rollout),
        per_poll: loop_events(child, WAIT, child.get(WAIT).and_then(next_of)),
        fixed: 2 + events(START) + events(STARTED) + events(REFRESHED),
    }
}

/// Parent events per wave, counted on the wave loop's states (MoreWaves, SelectWave,
/// the Wave map, IsLastWave and ApproveNextWave when there is approval, NextWave), with
/// room for retries.
pub fn parent_events_per_wave(states: &States) -> u64 {
    loop_events(states, MORE_WAVES, Some(SELECT_WAVE.to_string())) + PARENT_RETRY_EVENTS_PER_WAVE
}

/// Most waves one execution can walk before its history would pass the limit, from the
/// wave loop's states.
pub fn max_waves_of(states: &States) -> u64 {
    let per_wave = parent_events_per_wave(states).max(1);
    (HISTORY_LIMIT - PARENT_EVENTS_FIXED - SETTLE_ROUNDS_MAX * PARENT_EVENTS_PER_SETTLE_ROUND)
        / per_wave
}

/// Most waves one execution of `machine` can walk.
pub fn max_waves(machine: &StateMachine) -> u64 {
    max_waves_of(&machine.states)
}

/// Renders `review.md`.
pub fn render(
    config: &StackConfig,
    machine: &StateMachine,
    documents: &[Document],
) -> Result<String, minijinja::Error> {
    let stack = Stack::new(config);
    let rollout = &config.rollout;
    let explicit_waves = waves::split(
        &config.targets.asgs,
        &rollout.canary,
        rollout.strategy,
        rollout.batch_size,
    );
    let child = child_history(config, machine);
    let max_waves = max_waves(machine);
    let max_asgs = match rollout.strategy {
        Strategy::Batches => max_waves.saturating_sub(1) * u64::from(rollout.batch_size),
        Strategy::Window => u64::from(crate::asl::validate::DISTRIBUTED_MAP_MAX_CONCURRENCY) * 100,
    };
    let mut env = Environment::new();
    env.add_template("review.md", TEMPLATE)?;
    let resources = vec![
        (
            "IAM role",
            stack.lambda_role(),
            "the planner and refresher run as it",
        ),
        (
            "IAM role",
            stack.states_role(),
            "the state machine runs as it",
        ),
        (
            "DynamoDB table",
            stack.table(),
            "progress per ASG per rollout, and the stack lock",
        ),
        (
            "Lambda function",
            stack.planner_function(),
            "resolves targets, pre-checks, waves, lock",
        ),
        (
            "Lambda function",
            stack.refresher_function(),
            "start, check, approval, rollback, finish",
        ),
        (
            "Step Functions state machine",
            stack.state_machine(),
            "the rollout",
        ),
        (
            "CloudWatch log group",
            stack.state_machine_log_group(),
            "execution logs",
        ),
    ];
    let tmpl = env.get_template("review.md")?;
    tmpl.render(context! {
        config => config,
        stack_tags => stack.tags(),
        resources => resources,
        waves => explicit_waves,
        tags => config.targets.tags,
        polls => child.polls,
        child_events => child.events(),
        per_poll => child.per_poll,
        max_waves => max_waves,
        max_asgs => max_asgs,
        history_limit => HISTORY_LIMIT,
        documents => documents.iter().map(|d| (d.file_name.clone(), d.kind)).collect::<Vec<_>>(),
        mermaid => mermaid(machine),
    })
}

/// A Mermaid flowchart of the machine: Map processors as subgraphs, Catch edges dashed.
pub fn mermaid(machine: &StateMachine) -> String {
    let mut out = String::from("flowchart TD\n");
    out.push_str(&format!(
        "  start((start)) --> {}\n",
        node_id("", &machine.start_at)
    ));
    scope(&mut out, "", &machine.states, 1);
    out
}

fn node_id(scope: &str, name: &str) -> String {
    let raw = format!("{scope}{name}");
    raw.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn scope(out: &mut String, prefix: &str, states: &States, depth: usize) {
    let pad = "  ".repeat(depth);
    for (name, state) in states.iter() {
        let id = node_id(prefix, name);
        let label = name.replace('"', "'");
        let shape = match &state.kind {
            Kind::Choice(_) => format!("{id}{{\"{label}\"}}"),
            Kind::Succeed(_) | Kind::Fail(_) => format!("{id}([\"{label}\"])"),
            Kind::Wait(_) => format!("{id}[/\"{label}\"/]"),
            _ => format!("{id}[\"{label}\"]"),
        };
        out.push_str(&format!("{pad}{shape}\n"));
        if let Kind::Map(map) = &state.kind {
            let inner_prefix = format!("{prefix}{name}_");
            let mode = if map.item_processor.is_distributed() {
                "distributed"
            } else {
                "inline"
            };
            let concurrency = map
                .max_concurrency
                .map(|m| format!(", at most {m} at once"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{pad}subgraph {id}_items [\"{label}: each item ({mode}{concurrency})\"]\n"
            ));
            out.push_str(&format!(
                "{pad}  {id}_in((item)) --> {}\n",
                node_id(&inner_prefix, &map.item_processor.start_at)
            ));
            scope(out, &inner_prefix, &map.item_processor.states, depth + 1);
            out.push_str(&format!("{pad}end\n"));
            out.push_str(&format!("{pad}{id} -.-> {id}_items\n"));
        }
        if let Transition::Next(next) = &state.transition {
            out.push_str(&format!("{pad}{id} --> {}\n", node_id(prefix, next)));
        }
        let catches = match &state.kind {
            Kind::Task(t) => t.catch.as_slice(),
            Kind::Map(m) => m.catch.as_slice(),
            Kind::Parallel(p) => p.catch.as_slice(),
            Kind::Choice(choice) => {
                for rule in &choice.choices {
                    out.push_str(&format!(
                        "{pad}{id} -->|rule| {}\n",
                        node_id(prefix, &rule.next)
                    ));
                }
                if let Some(default) = &choice.default {
                    out.push_str(&format!(
                        "{pad}{id} -->|default| {}\n",
                        node_id(prefix, default)
                    ));
                }
                &[]
            }
            _ => &[],
        };
        for catch in catches {
            let label = catch.error_equals.join(" ");
            out.push_str(&format!(
                "{pad}{id} -.->|{label}| {}\n",
                node_id(prefix, &catch.next)
            ));
        }
    }
}
