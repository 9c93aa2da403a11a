//! The review report (`review.md`): stack resources, the plan, an estimate of execution
//! history, and a Mermaid diagram of the state machine.

use minijinja::{context, Environment};

use crate::asl::{Kind, StateMachine, States, Transition};
use crate::config::{StackConfig, Strategy};
use crate::iam::Document;
use crate::names::Stack;
use crate::waves;

const TEMPLATE: &str = include_str!("../../templates/review.md.j2");

/// Execution history events an execution may hold before it fails.
pub const HISTORY_LIMIT: u64 = 25_000;
/// Parent events per wave: SelectWave, the Map Run, the wave Choice and NextWave.
pub const PARENT_EVENTS_PER_WAVE: u64 = 14;
/// Parent events outside the wave loop: Plan, FirstWave, Finish and the end.
pub const PARENT_EVENTS_FIXED: u64 = 20;
/// Most reads of the rollbacks after a failure (`on_failure = "rollback"`): the parent
/// waits for them, so their events are set aside from what the waves may use.
pub const SETTLE_ROUNDS_MAX: u64 = 60;
/// Parent events per read of the rollbacks: Wait, the CheckRollbacks task and the Choice.
pub const PARENT_EVENTS_PER_SETTLE_ROUND: u64 = 11;
/// Child events per poll: Wait, the Check task and the gate Choice.
pub const CHILD_EVENTS_PER_POLL: u64 = 11;

/// Most waves one execution can walk before its history would pass the limit.
pub fn max_waves(approval: bool) -> u64 {
    let per_wave = PARENT_EVENTS_PER_WAVE + if approval { 8 } else { 0 };
    (HISTORY_LIMIT - PARENT_EVENTS_FIXED - SETTLE_ROUNDS_MAX * PARENT_EVENTS_PER_SETTLE_ROUND) / per_wave
}

/// Renders `review.md`.
pub fn render(config: &StackConfig, machine: &StateMachine, documents: &[Document]) -> Result<String, minijinja::Error> {
    let stack = Stack::new(config);
    let rollout = &config.rollout;
    let explicit_waves = waves::split(&config.targets.asgs, &rollout.canary, rollout.strategy, rollout.batch_size);
    let polls = u64::from(rollout.timeout_minutes) * 60 / u64::from(rollout.poll_seconds.max(1));
    let child_events = 12 + polls * CHILD_EVENTS_PER_POLL;
    let max_waves = max_waves(rollout.approval);
    let max_asgs = match rollout.strategy {
        Strategy::Batches => max_waves.saturating_sub(1) * u64::from(rollout.batch_size),
        Strategy::Window => u64::from(crate::asl::validate::DISTRIBUTED_MAP_MAX_CONCURRENCY) * 100,
    };
    let mut env = Environment::new();
    env.add_template("review.md", TEMPLATE)?;
    let resources = vec![
        ("IAM role", stack.lambda_role(), "the planner and refresher run as it"),
        ("IAM role", stack.states_role(), "the state machine runs as it"),
        ("DynamoDB table", stack.table(), "progress per ASG per rollout, and the stack lock"),
        ("Lambda function", stack.planner_function(), "resolves targets, pre-checks, waves, lock"),
        ("Lambda function", stack.refresher_function(), "start, check, approval, rollback, finish"),
        ("Step Functions state machine", stack.state_machine(), "the rollout"),
        ("CloudWatch log group", stack.state_machine_log_group(), "execution logs"),
    ];
    let tmpl = env.get_template("review.md")?;
    tmpl.render(context! {
        config => config,
        stack_tags => stack.tags(),
        resources => resources,
        waves => explicit_waves,
        tags => config.targets.tags,
        polls => polls,
        child_events => child_events,
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
    out.push_str(&format!("  start((start)) --> {}\n", node_id("", &machine.start_at)));
    scope(&mut out, "", &machine.states, 1);
    out
}

fn node_id(scope: &str, name: &str) -> String {
    let raw = format!("{scope}{name}");
    raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
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
            let mode = if map.item_processor.is_distributed() { "distributed" } else { "inline" };
            let concurrency = map.max_concurrency.map(|m| format!(", at most {m} at once")).unwrap_or_default();
            out.push_str(&format!("{pad}subgraph {id}_items [\"{label}: each item ({mode}{concurrency})\"]\n"));
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
                    out.push_str(&format!("{pad}{id} -->|rule| {}\n", node_id(prefix, &rule.next)));
                }
                if let Some(default) = &choice.default {
                    out.push_str(&format!("{pad}{id} -->|default| {}\n", node_id(prefix, default)));
                }
                &[]
            }
            _ => &[],
        };
        for catch in catches {
            let label = catch.error_equals.join(" ");
            out.push_str(&format!("{pad}{id} -.->|{label}| {}\n", node_id(prefix, &catch.next)));
        }
    }
}
