//! The wave gate in the rendered state machine (`[rollout] bake_minutes`, `wave_alarms`),
//! instance refresh's `BakeTime` preference, and `approval = "after-canary"`: which states
//! follow a wave, what the gate sends the refresher, and the config rules of these keys.

mod common;

use common::machine::{self, machine_json, next, payload, task, wave_map, FIVE_ASGS, STACK};
use generator::asl::{Kind, Template};
use generator::config::{self, Approval, StackConfig};
use generator::payload::{errors, RefresherRequest};
use generator::rollout::{self, states as s};
use serde_json::json;

/// Five ASGs in batches of two after the canary `c`, polling.
fn base() -> String {
    format!(
        r#"{STACK}{FIVE_ASGS}[rollout]
strategy = "batches"
batch_size = 2
canary = ["c"]
poll_seconds = 45
completion = "poll"
"#
    )
}

fn parse(rollout_extra: &str, refresh: &str) -> Result<StackConfig, config::ConfigError> {
    machine::parse(&format!(
        "{}{rollout_extra}\n[refresh]\n{refresh}\n",
        base()
    ))
}

/// A valid stack with `rollout_extra` in `[rollout]` and no `[refresh]` keys.
fn with_rollout(rollout_extra: &str) -> StackConfig {
    parse(rollout_extra, "").unwrap_or_else(|e| panic!("{e}"))
}

fn payload_of(config: &StackConfig, state: &str) -> Template {
    payload(task(&rollout::build(config), state)).clone()
}

#[test]
fn a_wave_bakes_then_reads_its_alarms_then_goes_on() {
    let config = with_rollout(
        "on_failure = \"rollback\"\nbake_minutes = 15\nwave_alarms = [\"db-errors\", \"p99\"]",
    );
    let m = machine_json(&config);
    assert_eq!(next(&m, s::WAVE), s::BAKE);
    assert_eq!(m["States"][s::BAKE]["Type"], "Wait");
    assert_eq!(m["States"][s::BAKE]["Seconds"], 900);
    assert_eq!(next(&m, s::BAKE), s::CHECK_ALARMS);
    assert_eq!(next(&m, s::CHECK_ALARMS), s::NEXT_WAVE);
    // A failed gate goes where a failed wave goes.
    assert_eq!(
        m["States"][s::CHECK_ALARMS]["Catch"],
        m["States"][s::WAVE]["Catch"]
    );
    assert_eq!(m["States"][s::WAVE]["Catch"][0]["Next"], s::ROLL_BACK);
    // SelectWave keeps the wave's start for the gate.
    assert_eq!(
        m["States"][s::SELECT_WAVE]["ResultSelector"]["started_at.$"],
        "$.Payload.started_at"
    );
    let input = json!({
        "rollout_id": "r-1",
        "current": {"wave": 1, "items": [0, 1], "started_at": 1_796_000_000},
    });
    let event: RefresherRequest = serde_json::from_value(
        payload_of(&config, s::CHECK_ALARMS)
            .resolve(&input, &json!({}))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        event,
        RefresherRequest::CheckAlarms {
            rollout_id: "r-1".into(),
            wave: 1,
            since: 1_796_000_000,
            alarms: vec!["db-errors".into(), "p99".into()],
        }
    );
    assert_eq!(errors::WAVE_ALARM, "WaveAlarm");
}

#[test]
fn alarms_without_a_bake_are_read_once_and_a_bake_without_alarms_only_waits() {
    let alarms_only = machine_json(&with_rollout("wave_alarms = [\"db-errors\"]"));
    assert_eq!(next(&alarms_only, s::WAVE), s::CHECK_ALARMS);
    assert!(alarms_only["States"].get(s::BAKE).is_none());
    assert_eq!(
        alarms_only["States"][s::CHECK_ALARMS]["Catch"][0]["Next"],
        s::FINISH_FAILED
    );

    let bake_only = machine_json(&with_rollout("bake_minutes = 1"));
    assert_eq!(next(&bake_only, s::WAVE), s::BAKE);
    assert_eq!(next(&bake_only, s::BAKE), s::NEXT_WAVE);
    assert!(bake_only["States"].get(s::CHECK_ALARMS).is_none());

    let neither = machine_json(&with_rollout(""));
    assert_eq!(next(&neither, s::WAVE), s::NEXT_WAVE);
    assert!(neither["States"].get(s::BAKE).is_none());
    assert!(neither["States"].get(s::CHECK_ALARMS).is_none());
}

#[test]
fn the_gate_comes_before_the_approval() {
    let config = with_rollout("approval = true\nbake_minutes = 2\nwave_alarms = [\"db-errors\"]");
    let m = machine_json(&config);
    assert_eq!(next(&m, s::WAVE), s::BAKE);
    assert_eq!(next(&m, s::CHECK_ALARMS), s::IS_LAST_WAVE);
}

#[test]
fn bake_time_is_a_start_preference() {
    let config = parse("", "bake_time = 600").unwrap();
    let machine = rollout::build(&config);
    let child = &wave_map(&machine).item_processor.states;
    let Some(Kind::Task(start)) = child.get(s::START).map(|st| &st.kind) else {
        panic!("no start task");
    };
    let payload = payload(start);
    let input = json!({"rollout_id": "r-1", "wave": 0, "index": 0, "ami": "ami-0123456789abcdef0"});
    let RefresherRequest::Start { preferences, .. } =
        serde_json::from_value(payload.resolve(&input, &json!({})).unwrap()).unwrap()
    else {
        panic!("not a start");
    };
    assert_eq!(preferences.bake_time, Some(600));
    let unset = with_rollout("");
    assert_eq!(unset.refresh.bake_time, None);
}

#[test]
fn after_canary_approves_once_after_the_first_wave() {
    let config = with_rollout("approval = \"after-canary\"");
    assert_eq!(config.rollout.approval, Approval::AfterCanary);
    let m = machine_json(&config);
    let choices = m["States"][s::IS_LAST_WAVE]["Choices"].as_array().unwrap();
    // The last wave and every wave after the first go straight on; wave 0 (the canary) waits.
    assert_eq!(choices.len(), 2, "{choices:#?}");
    assert_eq!(choices[1]["Variable"], "$.cursor.wave");
    assert_eq!(choices[1]["NumericGreaterThan"], 0.0);
    assert_eq!(choices[1]["Next"], s::NEXT_WAVE);
    assert_eq!(
        m["States"][s::IS_LAST_WAVE]["Default"],
        s::APPROVE_NEXT_WAVE
    );

    let every = machine_json(&with_rollout("approval = true"));
    assert_eq!(
        every["States"][s::IS_LAST_WAVE]["Choices"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let never = with_rollout("approval = false");
    assert_eq!(never.rollout.approval, Approval::Never);
    assert!(machine_json(&never)["States"]
        .get(s::APPROVE_NEXT_WAVE)
        .is_none());
}

#[test]
fn approval_refuses_other_words_and_after_canary_without_a_canary() {
    let err = parse("approval = \"sometimes\"", "").unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.key, "rollout.approval");
    assert!(
        p.message.contains("true, false or \"after-canary\""),
        "{err}"
    );
    let text = base().replace("canary = [\"c\"]\n", "") + "approval = \"after-canary\"\n";
    let err = machine::parse(&text).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.key, "rollout.approval");
    assert!(p.message.contains("rollout.canary names no ASG"), "{err}");
    assert_eq!(p.line, Some(12));
}
