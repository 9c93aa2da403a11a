//! The rollout state machine of a stack with ordered groups (`[[targets.group]]`): for every
//! strategy and failure policy it validates, `Plan` sends the groups in order (as the
//! planner's types read them), `SelectWave` keeps each wave's batch size and group, and the
//! wave's Map takes its concurrency from there (`MaxConcurrencyPath`), never a fixed
//! `MaxConcurrency`. A stack without groups keeps a fixed `MaxConcurrency`.

mod common;

use common::machine::{self, payload, task, wave_map, wave_response, STACK, TWO_GROUPS};
use generator::asl::{validate, Kind, StateMachine, States};
use generator::config::{OnFailure, StackConfig, Strategy};
use generator::payload::PlanRequest;
use generator::rollout::{self, states as s};
use serde_json::{json, Value};

fn grouped(strategy: Strategy, on_failure: OnFailure) -> StackConfig {
    let text = format!(
        r#"{STACK}{TWO_GROUPS}[rollout]
strategy = "{}"
batch_size = 4
canary = ["consul-1"]
on_failure = "{}"
poll_seconds = 30
timeout_minutes = 20
"#,
        strategy.as_str(),
        on_failure.as_str(),
    );
    machine::parse(&text).expect("test config is valid")
}

fn input() -> Value {
    json!({"rollout_id": "r-1", "ami": "ami-0123456789abcdef0"})
}

fn context() -> Value {
    json!({"Task": {"Token": "token-1"}})
}

#[test]
fn every_grouped_machine_validates_and_plans_the_groups_in_order() {
    for strategy in [Strategy::Batches, Strategy::Window] {
        for on_failure in [OnFailure::Stop, OnFailure::Continue, OnFailure::Rollback] {
            let config = grouped(strategy, on_failure);
            let machine = rollout::build(&config);
            if let Err(errors) = validate(&machine) {
                panic!("{strategy:?}/{on_failure:?}: {errors}");
            }
            let plan: PlanRequest = serde_json::from_value(
                payload(task(&machine, s::PLAN))
                    .resolve(&input(), &context())
                    .unwrap(),
            )
            .unwrap();
            let groups: Vec<(&str, u32)> = plan
                .groups
                .iter()
                .map(|g| (g.name.as_str(), g.batch_size))
                .collect();
            // vault takes the rollout's batch_size.
            assert_eq!(groups, [("consul", 1), ("vault", 4)]);
            assert_eq!(plan.groups[0].targets.asgs, ["consul-1", "consul-2"]);
            assert_eq!(plan.groups[1].targets.tags["role"], "vault");
            assert!(plan.targets.asgs.is_empty() && plan.targets.tags.is_empty());
        }
    }
}

#[test]
fn each_wave_runs_at_the_batch_size_the_wave_action_returns() {
    let machine = rollout::build(&grouped(Strategy::Window, OnFailure::Stop));
    let select = task(&machine, s::SELECT_WAVE);
    let response = wave_response(2, 4, "vault");
    let current = select
        .result_selector
        .as_ref()
        .unwrap()
        .resolve(&json!({"Payload": response}), &context())
        .unwrap();
    assert_eq!(current["max_concurrency"], 4);
    assert_eq!(current["group"], "vault");
    let map = wave_map(&machine);
    assert_eq!(map.max_concurrency, None);
    assert_eq!(
        map.max_concurrency_path.as_deref(),
        Some("$.current.max_concurrency")
    );
    let json = serde_json::to_value(&machine).unwrap();
    assert_eq!(
        json["States"]["Wave"]["MaxConcurrencyPath"],
        "$.current.max_concurrency"
    );
    assert!(json["States"]["Wave"].get("MaxConcurrency").is_none());
    let comment = machine.comment.as_deref().unwrap_or_default();
    assert!(
        comment.ends_with("Ordered groups: consul (1 at a time), then vault (4 at a time)."),
        "{comment}"
    );
}

#[test]
fn a_stack_without_groups_keeps_a_fixed_concurrency_and_plans_no_groups() {
    let text = format!("{STACK}[targets]\nasgs = [\"a\", \"b\"]\n[rollout]\nbatch_size = 2\n");
    let config = machine::parse(&text).unwrap();
    let machine = rollout::build(&config);
    let map = wave_map(&machine);
    assert_eq!(
        (map.max_concurrency, map.max_concurrency_path.as_ref()),
        (Some(2), None)
    );
    let plan = payload(task(&machine, s::PLAN))
        .resolve(&input(), &context())
        .unwrap();
    assert!(plan.get("groups").is_none(), "{plan}");
}

#[test]
fn max_concurrency_and_its_path_are_exclusive() {
    let machine = rollout::build(&grouped(Strategy::Batches, OnFailure::Stop));
    let mut states = States::new();
    for (name, state) in machine.states.iter() {
        let mut state = state.clone();
        if let Kind::Map(map) = &mut state.kind {
            map.max_concurrency = Some(2);
        }
        states.push(name, state);
    }
    let machine = StateMachine::new(states);
    let errors = validate(&machine).expect_err("both set").to_string();
    assert!(errors.contains("mutually exclusive"), "{errors}");
}
