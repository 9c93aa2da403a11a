//! The review report (`review.md`): stack resources, the plan, an estimate of execution
//! history, and a Mermaid diagram of the state machine.

use minijinja::{context, Environment};

use crate::asl::{Kind, State, StateMachine, States, Transition};
use crate::config::{Completion, StackConfig, Strategy};
use crate::iam::Document;
use crate::names::Stack;
use crate::rollout::states::{
    AWAIT, CHECK, GATE, MORE_WAVES, REFRESHED, SELECT_WAVE, START, STARTED, WAIT, WAVE,
};
use crate::rollout::{event_wait_seconds, EVENT_WAITS};
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

/// Most waits for the refresh's event that time out before the check after one finds
/// `timeout_minutes` passed (`completion = "events"`), plus that check.
pub fn event_rounds(rollout: &crate::config::Rollout) -> u64 {
    (u64::from(rollout.timeout_minutes) * 60).div_ceil(u64::from(event_wait_seconds(rollout))) + 1
}

/// The child's states, from the rendered machine.
fn child_states(machine: &StateMachine) -> Option<&States> {
    match machine.states.get(WAVE).map(|s| &s.kind) {
        Some(Kind::Map(map)) => Some(&map.item_processor.states),
        _ => None,
    }
}

/// The child execution's history, counted on the rendered state machine. Polling: each poll
/// is the Wait, the CheckRefresh task and the gate. Events: a wait for the event that times
/// out, the CheckRefresh task and the gate make a "poll"; the last wait, answered, is fixed.
pub fn child_history(config: &StackConfig, machine: &StateMachine) -> ChildHistory {
    let Some(child) = child_states(machine) else {
        return ChildHistory {
            polls: polls(&config.rollout),
            per_poll: 0,
            fixed: 0,
        };
    };
    let events = |name: &str| child.get(name).map_or(0, events_of);
    let fixed = 2 + events(START) + events(STARTED) + events(REFRESHED);
    if child.get(AWAIT).is_some() {
        return ChildHistory {
            polls: event_rounds(&config.rollout),
            per_poll: events(AWAIT) + events(CHECK) + events(GATE),
            fixed: fixed + events(AWAIT),
        };
    }
    ChildHistory {
        polls: polls(&config.rollout),
        per_poll: loop_events(child, WAIT, child.get(WAIT).and_then(next_of)),
        fixed,
    }
}

/// What one ASG's refresh costs, retries aside, when it lasts `refresh_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AsgCost {
    pub refresh_seconds: u64,
    /// State transitions of the ASG's child execution (Standard workflows bill each).
    pub transitions: u64,
    /// History events of the child execution.
    pub history_events: u64,
    /// Invocations of the stack's Lambdas for this ASG (the completer's included).
    pub lambda_invocations: u64,
    /// DescribeInstanceRefreshes calls, on the account's shared Auto Scaling API budget.
    pub describe_refreshes: u64,
    /// SendTaskSuccess or SendTaskFailure calls.
    pub task_token_calls: u64,
}

/// The cost of one ASG whose refresh lasts `refresh_seconds`, counted on the rendered child:
/// polling checks once per `poll_seconds` until a check finds the refresh ended; events wait
/// once, and time out (then check once) per [`event_wait_seconds`] that passes first. The
/// completer gets the refresh's Started and end events and one per checkpoint of `[refresh]`.
pub fn asg_cost(config: &StackConfig, machine: &StateMachine, refresh_seconds: u64) -> AsgCost {
    let rollout = &config.rollout;
    let Some(child) = child_states(machine) else {
        return AsgCost {
            refresh_seconds,
            transitions: 0,
            history_events: 0,
            lambda_invocations: 0,
            describe_refreshes: 0,
            task_token_calls: 0,
        };
    };
    let events = |name: &str| child.get(name).map_or(0, events_of);
    let fixed_events = 2 + events(START) + events(STARTED) + events(REFRESHED);
    if child.get(AWAIT).is_some() {
        let timeouts = refresh_seconds / u64::from(event_wait_seconds(rollout));
        let checkpoints = config.refresh.checkpoint_percentages.len() as u64;
        AsgCost {
            refresh_seconds,
            // StartRefresh, Started, each wait, each check and gate, Refreshed.
            transitions: 4 + 3 * timeouts,
            history_events: fixed_events
                + events(AWAIT)
                + timeouts * (events(AWAIT) + events(CHECK) + events(GATE)),
            // start, each wait's store-token call, each check, the completer per event
            // (Started, each checkpoint, the end).
            lambda_invocations: 1 + (timeouts + 1) + timeouts + 2 + checkpoints,
            describe_refreshes: timeouts,
            task_token_calls: 1,
        }
    } else {
        let checks = refresh_seconds
            .div_ceil(u64::from(rollout.poll_seconds.max(1)))
            .max(1);
        AsgCost {
            refresh_seconds,
            // StartRefresh, Started, each Wait, check and gate, Refreshed.
            transitions: 3 + 3 * checks,
            history_events: fixed_events
                + checks * loop_events(child, WAIT, child.get(WAIT).and_then(next_of)),
            lambda_invocations: 1 + checks,
            describe_refreshes: checks,
            task_token_calls: 0,
        }
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
    let tmpl = env.get_template("review.md")?;
    tmpl.render(context! {
        config => config,
        stack_tags => stack.tags(),
        resources => resources(config, &stack),
        waves => explicit_waves,
        tags => config.targets.tags,
        groups => crate::groups::plan_groups(config),
        polls => child.polls,
        child_events => child.events(),
        per_poll => child.per_poll,
        max_waves => max_waves,
        max_asgs => max_asgs,
        history_limit => HISTORY_LIMIT,
        documents => documents.iter().map(|d| (d.file_name.clone(), d.kind)).collect::<Vec<_>>(),
        mermaid => mermaid(machine),
        events => rollout.completion == Completion::Events,
        event_wait_seconds => event_wait_seconds(rollout),
        event_waits => EVENT_WAITS,
        events_rule => stack.events_rule(),
        event_pattern_file => crate::render::event_pattern_file(&stack),
        costs => costs_per_asg(config, machine),
    })
}

/// The stack's resources, each with its kind, its name and what it is for: the completer's
/// with `completion = "events"`, the topic when the stack creates one.
fn resources(config: &StackConfig, stack: &Stack) -> Vec<(&'static str, String, &'static str)> {
    let mut resources = vec![
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
    if config.rollout.completion == Completion::Events {
        resources.extend([
            (
                "IAM role",
                stack.completer_role(),
                "the completer runs as it",
            ),
            (
                "Lambda function",
                stack.completer_function(),
                "answers the task token a child waits on when its refresh's event arrives",
            ),
            (
                "EventBridge rule",
                stack.events_rule(),
                "EC2 Auto Scaling's instance-refresh events to the completer (default bus)",
            ),
        ]);
    }
    if config.notify.as_ref().is_some_and(|n| n.create_topic) {
        resources.push((
            "SNS topic",
            stack.notifications_topic(),
            "rollout notifications (also put on the default event bus, source asg-refresh)",
        ));
    }
    resources
}

/// What a refresh costs per ASG in both completion shapes, the stack's first, for a refresh
/// of half its timeout (30 minutes at the default 60) and one that runs to it: the
/// completion's name, whether it is the stack's own, and the cost.
fn costs_per_asg(
    config: &StackConfig,
    machine: &StateMachine,
) -> Vec<(&'static str, bool, AsgCost)> {
    let rollout = &config.rollout;
    let mut other = config.clone();
    other.rollout.completion = if rollout.completion == Completion::Events {
        Completion::Poll
    } else {
        Completion::Events
    };
    let other_machine = crate::rollout::build(&other);
    let spans = [
        u64::from(rollout.timeout_minutes) * 30,
        u64::from(rollout.timeout_minutes) * 60,
    ];
    [
        (rollout.completion, config, machine, true),
        (other.rollout.completion, &other, &other_machine, false),
    ]
    .into_iter()
    .flat_map(|(completion, config, machine, own)| {
        spans
            .iter()
            .map(move |span| (completion.as_str(), own, asg_cost(config, machine, *span)))
    })
    .collect()
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
