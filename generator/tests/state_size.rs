//! Every payload that travels through the state machine stays far under Step Functions'
//! 256 KiB limit at the worst fleet this tool accepts: 5,000 ASGs with 255-character names,
//! all in one window wave. `States.DataLimitExceeded` cannot be caught, so an oversized state
//! would leave the lock held and the summary saying Running.

use std::path::Path;

use generator::asl::Kind;
use generator::config::{self, Strategy};
use generator::payload::{
    cap_message, cap_names, FinishResponse, InFlightResponse, Outcome, PlanResponse,
    SettleResponse, StepResponse, WaveResponse, MAX_MESSAGE_BYTES,
};
use generator::{rollout, waves};
use serde_json::{json, Value};

/// "Maximum input or output size for a task, state, or execution: 256 KiB of data as a UTF-8
/// encoded string" (<https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html>).
const LIMIT: usize = 256 * 1024;
/// What this project allows itself: a quarter of the limit.
const BUDGET: usize = LIMIT / 4;

/// 5,000 names of 255 characters (the longest an ASG name can be), distinct.
fn worst_fleet() -> Vec<String> {
    (0..5000)
        .map(|i| format!("{i:05}-{}", "x".repeat(249)))
        .collect()
}

fn bytes(value: &impl serde::Serialize) -> usize {
    serde_json::to_vec(value).expect("serialises").len()
}

#[test]
fn the_names_alone_would_not_fit() {
    // Why the waves live in the table: one window wave's names are about 1.3 MB.
    let fleet = worst_fleet();
    assert!(fleet.iter().all(|n| n.len() == 255));
    let waves = waves::split(&fleet, &fleet[..3], Strategy::Window, 3);
    assert!(bytes(&waves[1]) > 4 * LIMIT, "{} bytes", bytes(&waves[1]));
}

#[test]
fn the_plan_and_a_wave_are_counts_and_positions() {
    let fleet = worst_fleet();
    for strategy in [Strategy::Window, Strategy::Batches] {
        let plan = waves::split(&fleet, &fleet[..3], strategy, 3);
        let response = PlanResponse {
            rollout_id: "r".repeat(80),
            wave_count: plan.len() as u32,
            last_wave: plan.len() as i64 - 1,
            planned: 5000,
            skipped: 0,
            missing: 0,
        };
        assert!(
            bytes(&response) < 256,
            "{strategy:?}: {} bytes",
            bytes(&response)
        );
        let largest = plan.iter().map(Vec::len).max().unwrap_or(0) as u32;
        let wave = WaveResponse {
            rollout_id: "r".repeat(80),
            wave: 1,
            items: (0..largest).collect(),
            started_at: 1_796_000_000,
            // Ordered groups add the wave's batch size and group name, at their limits.
            max_concurrency: Some(generator::config::MAX_BATCH_SIZE),
            group: Some("g".repeat(generator::groups::MAX_GROUP_NAME)),
        };
        println!(
            "{strategy:?}: the largest wave's positions take {} bytes",
            bytes(&wave)
        );
        assert!(
            bytes(&wave) < BUDGET / 2,
            "{strategy:?}: {} bytes",
            bytes(&wave)
        );
    }
}

#[test]
fn the_parent_state_at_its_largest_fits() {
    // The parent's state in the window wave: input, plan counts, cursor, the wave's
    // positions, the longest error a Map failure or a Lambda error carries, the summary.
    let long_error =
        json!({"Error": "States.ExceedToleratedFailureThreshold", "Cause": "c".repeat(32_768)});
    let summary = FinishResponse {
        rollout_id: "r".repeat(80),
        outcome: Outcome::Failed,
        succeeded: 0,
        failed: 5000,
        skipped: 0,
        message: cap_message(&worst_fleet().join("; ")),
    };
    let state = json!({
        "rollout_id": "r".repeat(80),
        "ami": "ami-0123456789abcdef0",
        "plan": {"wave_count": 2, "last_wave": 1, "planned": 5000},
        "cursor": {"wave": 1},
        "current": {"wave": 1, "items": (0..4997).collect::<Vec<u32>>()},
        "error": long_error,
        "summary": {"succeeded": 0, "failed": 5000, "skipped": 0, "message": summary.message},
    });
    println!("parent state at its largest: {} bytes", bytes(&state));
    assert!(bytes(&state) < BUDGET, "{} bytes", bytes(&state));
    assert!(bytes(&summary) < MAX_MESSAGE_BYTES + 512);
}

#[test]
fn a_child_state_is_one_asg() {
    let name = &worst_fleet()[4999];
    let step = StepResponse {
        asg: name.clone(),
        status: "InProgress".into(),
        percentage: Some(50),
        done: false,
        message: Some(cap_message(&"m".repeat(100_000))),
    };
    let state = json!({
        "rollout_id": "r".repeat(80), "ami": "ami-0123456789abcdef0", "wave": 1, "index": 4996,
        "refresh": {"asg": name, "status": "InProgress", "done": false},
    });
    assert!(
        bytes(&step) < MAX_MESSAGE_BYTES + 1024,
        "{} bytes",
        bytes(&step)
    );
    assert!(bytes(&state) < 1024, "{} bytes", bytes(&state));
}

#[test]
fn rollback_and_settle_responses_list_at_most_a_few_names() {
    let fleet = worst_fleet();
    let rolled_back = InFlightResponse {
        rollout_id: "r".into(),
        acted_on: fleet.clone(),
        refused: fleet
            .iter()
            .map(|n| format!("{n}: {}", "why ".repeat(500)))
            .collect(),
        pending: 5000,
    };
    assert!(bytes(&rolled_back) > LIMIT, "unbounded, it would not fit");
    let bounded = rolled_back.bounded();
    assert_eq!(bounded.pending, 5000, "the count still covers every ASG");
    assert_eq!(
        bounded.acted_on.last().map(String::as_str),
        Some("and 4980 more")
    );
    assert!(bytes(&bounded) < BUDGET, "{} bytes", bytes(&bounded));
    let settled = SettleResponse {
        rollout_id: "r".into(),
        round: 1,
        pending: 2500,
        still_running: fleet[..2500].to_vec(),
        ended: fleet[2500..].to_vec(),
    };
    let bounded = settled.bounded();
    assert_eq!(bounded.pending, 2500);
    assert!(bytes(&bounded) < 16 * 1024, "{} bytes", bytes(&bounded));
}

#[test]
fn caps_cut_on_character_boundaries_and_say_so() {
    let text = "é".repeat(MAX_MESSAGE_BYTES);
    let cut = cap_message(&text);
    assert!(cut.len() <= MAX_MESSAGE_BYTES, "{} bytes", cut.len());
    assert!(cut.contains("more bytes"), "{cut}");
    assert_eq!(cap_message("short"), "short");
    let names: Vec<String> = (0..3).map(|i| i.to_string()).collect();
    assert_eq!(cap_names(&names), names);
}

#[test]
fn the_distributed_map_result_of_5000_silent_children_fits() {
    // The Map gathers each child's output before ResultPath drops it: with `OutputPath: null`
    // on every end state a child returns `{}`.
    let text = "name = \"t\"\nregion = \"eu-west-1\"\naccount_id = \"123456789012\"\n[targets]\ntags = { \"g\" = \"w\" }\n[rollout]\nstrategy = \"window\"\n";
    let config = config::parse(text, Path::new("t.toml")).expect("valid");
    let machine = rollout::build(&config);
    let Some(Kind::Map(map)) = machine.states.get(rollout::states::WAVE).map(|s| &s.kind) else {
        panic!("no Wave map")
    };
    let outputs: Vec<Value> = map
        .item_processor
        .states
        .iter()
        .filter(|(_, st)| matches!(st.kind, Kind::Succeed(_)))
        .map(|(_, st)| serde_json::to_value(st).expect("serialises"))
        .collect();
    assert!(
        outputs
            .iter()
            .all(|o| o.get("OutputPath") == Some(&Value::Null)),
        "{outputs:?}"
    );
    let result: Vec<Value> = vec![json!({}); 5000];
    assert!(bytes(&result) < BUDGET, "{} bytes", bytes(&result));
}

#[test]
fn listed_targets_too_long_for_the_plan_task_are_refused() {
    let config_with = |names: &[String]| {
        let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        format!(
            "name = \"t\"\nregion = \"eu-west-1\"\naccount_id = \"123456789012\"\n[targets]\nasgs = [{}]\n",
            list.join(", ")
        )
    };
    let fleet = worst_fleet();
    // 200 names of 255 characters fit (about 51 KiB); the worst fleet must come by tags.
    assert!(config::parse(&config_with(&fleet[..200]), Path::new("t.toml")).is_ok());
    let error =
        config::parse(&config_with(&fleet), Path::new("t.toml")).expect_err("5,000 listed names");
    let problem = &error.problems()[0];
    assert_eq!(problem.key, "targets.asgs");
    assert!(
        problem.message.contains("select this many ASGs by `tags`"),
        "{}",
        problem.message
    );
}
