//! The stack configs the rollout machine tests parse, and the lookups they make in the
//! machine `rollout::build` renders (a state, a Task, the wave's Map, a Lambda payload).

use std::path::Path;

use generator::asl::{validate, Field, Kind, Map, State, StateMachine, Task, Template};
use generator::config::{self, ConfigError, StackConfig};
use generator::payload::WaveResponse;
use generator::rollout::{self, states as s};
use serde_json::Value;

/// The first lines of a test stack (after a blank one, so that line numbers in errors
/// count from the text's first line): its name, region and account.
pub const STACK: &str = r#"
name = "t"
region = "eu-west-1"
account_id = "123456789012"
"#;

/// Targets of five listed ASGs, `a` to `e`; the `[targets]` table stays open for more keys.
pub const FIVE_ASGS: &str = r#"[targets]
asgs = ["a", "b", "c", "d", "e"]
"#;

/// Two ordered groups: `consul` (two listed ASGs, one at a time), then `vault` (by tag, at
/// the rollout's batch size).
pub const TWO_GROUPS: &str = include_str!("../fixtures/two_groups.toml");

/// Parses a test stack's text as `t.toml`.
pub fn parse(text: &str) -> Result<StackConfig, ConfigError> {
    config::parse(text, Path::new("t.toml"))
}

/// The rendered machine as JSON, once it has validated.
pub fn machine_json(config: &StackConfig) -> Value {
    let machine = rollout::build(config);
    validate(&machine).unwrap_or_else(|e| panic!("{e}"));
    serde_json::to_value(&machine).unwrap()
}

/// Where the state `state` of a machine's JSON goes next.
pub fn next(machine: &Value, state: &str) -> String {
    machine["States"][state]["Next"]
        .as_str()
        .unwrap_or_else(|| panic!("{state} has no Next: {:#}", machine["States"][state]))
        .to_string()
}

pub fn state<'a>(machine: &'a StateMachine, name: &str) -> &'a State {
    machine
        .states
        .get(name)
        .unwrap_or_else(|| panic!("no state {name}"))
}

pub fn task<'a>(machine: &'a StateMachine, name: &str) -> &'a Task {
    match &state(machine, name).kind {
        Kind::Task(t) => t,
        other => panic!("{name} is a {}", other.type_name()),
    }
}

/// The Map that runs a wave's children.
pub fn wave_map(machine: &StateMachine) -> &Map {
    match &state(machine, s::WAVE).kind {
        Kind::Map(m) => m,
        other => panic!("Wave is a {}", other.type_name()),
    }
}

/// The `Payload` object of a Lambda Task's Parameters: the event the Lambda receives.
pub fn payload(task: &Task) -> &Template {
    task.parameters
        .as_ref()
        .expect("lambda tasks have Parameters")
        .fields()
        .find_map(|(k, f)| match (k, f) {
            ("Payload", Field::Object(t)) => Some(t),
            _ => None,
        })
        .expect("lambda tasks have a Payload object")
}

/// What the refresher answers `SelectWave` with for wave `wave` of rollout `r-1`: its
/// first three ASGs (items 0 to 2), selected at 1,796,000,000, of `group` at the group's
/// batch size `max_concurrency`.
pub fn wave_response(wave: u32, max_concurrency: u32, group: &str) -> WaveResponse {
    WaveResponse {
        rollout_id: "r-1".into(),
        wave,
        items: vec![0, 1, 2],
        started_at: 1_796_000_000,
        max_concurrency: Some(max_concurrency),
        group: Some(group.into()),
    }
}
