//! The rollout state machine for every combination of strategy, failure policy and
//! approval: it validates, honours the config, and its Lambda payloads deserialise into
//! the shared payload types (so the machine and the Lambdas cannot drift apart).

mod common;

use common::machine::{self, payload, state, task, wave_map, wave_response, FIVE_ASGS, STACK};
use generator::asl::{validate, Catcher, Kind, PathOrNull, State, StateMachine, Task, Transition};
use generator::config::{self, Completion, OnFailure, StackConfig, Strategy};
use generator::payload::{
    errors, FinishResponse, InFlightResponse, Outcome, PlanRequest, PlanResponse, RefresherRequest,
    SettleResponse, StepResponse,
};
use generator::rollout::{self, states as s};
use serde_json::{json, Value};

/// A polling config (the shape these tests were first written for).
fn config(strategy: Strategy, on_failure: OnFailure, approval: bool) -> StackConfig {
    config_in(strategy, on_failure, approval, Completion::Poll)
}

fn config_in(
    strategy: Strategy,
    on_failure: OnFailure,
    approval: bool,
    completion: Completion,
) -> StackConfig {
    let text = format!(
        r#"{STACK}{FIVE_ASGS}tags = {{ "group" = "web" }}
[rollout]
strategy = "{}"
batch_size = 2
canary = ["c"]
on_failure = "{}"
poll_seconds = 45
timeout_minutes = 20
approval = {approval}
completion = "{}"
[refresh]
alarms = ["db-high"]
checkpoint_percentages = [50, 100]
checkpoint_delay = 60
"#,
        strategy.as_str(),
        on_failure.as_str(),
        completion.as_str(),
    );
    machine::parse(&text).expect("test config is valid")
}

fn all_configs() -> Vec<StackConfig> {
    let mut out = Vec::new();
    for strategy in [Strategy::Batches, Strategy::Window] {
        for on_failure in [OnFailure::Stop, OnFailure::Continue, OnFailure::Rollback] {
            for approval in [false, true] {
                for completion in [Completion::Poll, Completion::Events] {
                    out.push(config_in(strategy, on_failure, approval, completion));
                }
            }
        }
    }
    out
}

fn child_task<'a>(machine: &'a StateMachine, name: &str) -> &'a Task {
    match &wave_map(machine)
        .item_processor
        .states
        .get(name)
        .map(|st| &st.kind)
    {
        Some(Kind::Task(t)) => t,
        _ => panic!("no child task {name}"),
    }
}

/// What `task`'s ResultSelector keeps of a Lambda invocation that returned `response`.
fn selected_from(task: &Task, response: &impl serde::Serialize) -> Value {
    task.result_selector
        .as_ref()
        .unwrap()
        .resolve(&json!({"Payload": response}), &context())
        .unwrap()
}

/// Asserts that the state `from` goes on to `to`.
fn assert_next(machine: &StateMachine, from: &str, to: &str) {
    assert_eq!(
        state(machine, from).transition,
        Transition::Next(to.into()),
        "{from}"
    );
}

/// Asserts that `catcher` catches every error (`States.ALL`) and goes on to `next`; `what`
/// names the state it belongs to.
fn assert_catches_all(catcher: &Catcher, next: &str, what: &str) {
    assert_eq!(
        (catcher.error_equals.as_slice(), catcher.next.as_str()),
        (&["States.ALL".to_string()][..], next),
        "{what}"
    );
}

fn top_input() -> Value {
    json!({
        "rollout_id": "r-1",
        "ami": "ami-0123456789abcdef0",
        "plan": {"wave_count": 2, "last_wave": 1, "planned": 3},
        "cursor": {"wave": 0},
        "current": {"wave": 0, "items": [0]},
        "error": {"Error": "States.TaskFailed", "Cause": "boom"},
        "summary": {"succeeded": 1, "failed": 0, "skipped": 0, "message": "ok"}
    })
}

fn context() -> Value {
    json!({"Task": {"Token": "token-1"}, "Map": {"Item": {"Value": 0, "Index": 0}}})
}

/// The Lambda event `task` sends for the state input `input`.
fn request_of<T: serde::de::DeserializeOwned>(task: &Task, input: &Value) -> T {
    serde_json::from_value(payload(task).resolve(input, &context()).unwrap()).unwrap()
}

#[test]
fn every_combination_validates() {
    for config in all_configs() {
        let machine = rollout::build(&config);
        if let Err(errors) = validate(&machine) {
            panic!(
                "{:?}/{:?}/approval={}: {errors}",
                config.rollout.strategy, config.rollout.on_failure, config.rollout.approval
            );
        }
    }
}

#[test]
fn concurrency_poll_and_timeout_come_from_the_config() {
    for config in all_configs() {
        let machine = rollout::build(&config);
        let map = wave_map(&machine);
        assert_eq!(
            map.max_concurrency,
            Some(2),
            "never more than batch_size at once"
        );
        assert!(
            map.item_processor.is_distributed(),
            "each ASG in its own child execution"
        );
        match config.rollout.completion {
            Completion::Poll => {
                let wait = map
                    .item_processor
                    .states
                    .get(s::WAIT)
                    .expect("a wait state");
                assert!(matches!(&wait.kind, Kind::Wait(w) if w.seconds == Some(45)));
                assert!(map.item_processor.states.get(s::AWAIT).is_none());
            }
            Completion::Events => {
                // 20 minutes in three waits for the event.
                assert_eq!(child_task(&machine, s::AWAIT).timeout_seconds, Some(400));
                assert!(map.item_processor.states.get(s::WAIT).is_none());
            }
        }
        let check = payload(child_task(&machine, s::CHECK));
        let resolved = check
            .resolve(
                &json!({"rollout_id": "r", "refresh": {"asg": "a"}}),
                &context(),
            )
            .unwrap();
        assert_eq!(resolved["timeout_minutes"], 20);
    }
}

#[test]
fn failure_policy_shapes_the_wave_and_the_failure_path() {
    for config in all_configs() {
        let machine = rollout::build(&config);
        let map = wave_map(&machine);
        let catch_target = &map.catch[0].next;
        match config.rollout.on_failure {
            OnFailure::Stop => {
                assert_eq!(map.tolerated_failure_count, Some(0));
                assert_eq!(catch_target, s::FINISH_FAILED);
                for name in [
                    s::ROLL_BACK,
                    s::ROLLBACKS_ENDED,
                    s::WAIT_FOR_ROLLBACKS,
                    s::CHECK_ROLLBACKS,
                ] {
                    assert!(machine.states.get(name).is_none(), "{name}");
                }
            }
            OnFailure::Rollback => {
                assert_eq!(map.tolerated_failure_count, Some(0));
                assert_eq!(catch_target, s::ROLL_BACK);
                // Then it waits, bounded, for the rollbacks to end before FinishFailed.
                assert_next(&machine, s::ROLL_BACK, s::ROLLBACKS_ENDED);
                assert_next(&machine, s::WAIT_FOR_ROLLBACKS, s::CHECK_ROLLBACKS);
                assert_next(&machine, s::CHECK_ROLLBACKS, s::ROLLBACKS_ENDED);
                for name in [s::ROLL_BACK, s::CHECK_ROLLBACKS] {
                    let catch = &task(&machine, name).catch;
                    assert_catches_all(&catch[0], s::FINISH_FAILED, name);
                }
            }
            OnFailure::Continue => {
                // Each child absorbs its own failure; the wave never fails.
                assert_eq!(
                    (
                        map.tolerated_failure_count,
                        map.tolerated_failure_percentage
                    ),
                    (None, None)
                );
                for name in [s::START, s::CHECK] {
                    let catch = &child_task(&machine, name).catch;
                    assert_eq!(catch.len(), 1, "{name}");
                    assert_catches_all(&catch[0], s::REFRESH_FAILED, name);
                }
                if config.rollout.completion == Completion::Events {
                    // A timed-out wait checks first; any other failure is absorbed.
                    let catch = &child_task(&machine, s::AWAIT).catch;
                    assert_eq!(catch.len(), 2);
                    assert_eq!(catch[0].next, s::CHECK);
                    assert_catches_all(&catch[1], s::REFRESH_FAILED, s::AWAIT);
                }
                let absorbed = map
                    .item_processor
                    .states
                    .get(s::REFRESH_FAILED)
                    .expect("a RefreshFailed end");
                assert!(matches!(absorbed.kind, Kind::Succeed(_)));
            }
        }
        if config.rollout.on_failure != OnFailure::Continue {
            assert!(map.item_processor.states.get(s::REFRESH_FAILED).is_none());
            assert!(
                child_task(&machine, s::START).catch.is_empty(),
                "a child failure must fail the wave"
            );
        }
        // Every policy ends through AnyFailed: never a success while the table holds a failure.
        assert_next(&machine, s::FINISH, s::ANY_FAILED);
        assert_next(&machine, s::FINISH_FAILED, s::ROLLOUT_FAILED);
    }
}

#[test]
fn approval_pauses_between_waves_only_when_configured() {
    for config in all_configs() {
        let machine = rollout::build(&config);
        let approve = machine.states.get(s::APPROVE_NEXT_WAVE);
        assert_eq!(approve.is_some(), config.rollout.approval.is_on());
        if let Some(State {
            kind: Kind::Task(t),
            ..
        }) = approve
        {
            assert!(t.resource.ends_with("lambda:invoke.waitForTaskToken"));
            let event: RefresherRequest = request_of(t, &top_input());
            assert_eq!(
                event,
                RefresherRequest::AwaitApproval {
                    rollout_id: "r-1".into(),
                    wave: 0,
                    task_token: "token-1".into()
                }
            );
        }
        let after_wave = &state(&machine, s::WAVE).transition;
        let expected = if config.rollout.approval.is_on() {
            s::IS_LAST_WAVE
        } else {
            s::NEXT_WAVE
        };
        assert_eq!(after_wave, &Transition::Next(expected.into()));
    }
}

#[test]
fn plan_payload_is_a_plan_request() {
    let config = config(Strategy::Window, OnFailure::Stop, false);
    let machine = rollout::build(&config);
    let plan = task(&machine, s::PLAN);
    let event: PlanRequest = request_of(plan, &top_input());
    assert_eq!(event.rollout_id, "r-1");
    assert_eq!(event.targets.asgs, vec!["a", "b", "c", "d", "e"]);
    assert_eq!(
        event.targets.tags.get("group").map(String::as_str),
        Some("web")
    );
    assert_eq!(event.canary, vec!["c"]);
    assert_eq!(event.strategy, Strategy::Window);
    assert_eq!(event.batch_size, 2);
    assert_eq!(event.max_waves, generator::review::max_waves(&machine));
    // The planner's response carries every field the ResultSelector reads: counts only.
    let response = PlanResponse {
        rollout_id: "r-1".into(),
        wave_count: 2,
        last_wave: 1,
        planned: 2,
        skipped: 1,
        missing: 1,
    };
    let selected = selected_from(plan, &response);
    assert_eq!(
        selected,
        json!({"wave_count": 2, "last_wave": 1, "planned": 2})
    );
}

#[test]
fn child_payloads_are_refresher_requests() {
    let config = config(Strategy::Batches, OnFailure::Rollback, true);
    let machine = rollout::build(&config);
    // What the Wave map hands each child.
    let child_input = wave_map(&machine)
        .item_selector
        .as_ref()
        .unwrap()
        .resolve(&top_input(), &context())
        .unwrap();
    // A position, not a name: the child reads its ASG from the table at start.
    assert_eq!(
        child_input,
        json!({"rollout_id": "r-1", "ami": "ami-0123456789abcdef0", "wave": 0, "index": 0})
    );
    let start: RefresherRequest = request_of(child_task(&machine, s::START), &child_input);
    let RefresherRequest::Start {
        index,
        ami,
        wave,
        preferences,
        ..
    } = start
    else {
        panic!("not a start")
    };
    assert_eq!((index, ami.as_str(), wave), (0, "ami-0123456789abcdef0", 0));
    assert_eq!(preferences.alarms, vec!["db-high"]);
    assert_eq!(preferences.checkpoint_percentages, vec![50, 100]);
    assert_eq!(preferences.checkpoint_delay, Some(60));
    assert_eq!(
        (
            preferences.min_healthy_percentage,
            preferences.max_healthy_percentage
        ),
        (100, 200)
    );
    // Check names the ASG that start's response named.
    let mut after_start = child_input.clone();
    after_start["refresh"] = json!({"asg": "c", "status": "Pending", "done": false});
    let check: RefresherRequest = request_of(child_task(&machine, s::CHECK), &after_start);
    assert_eq!(
        check,
        RefresherRequest::Check {
            rollout_id: "r-1".into(),
            asg: "c".into(),
            timeout_minutes: 20
        }
    );
    // Both steps' responses carry what the gate reads.
    let response = StepResponse {
        asg: "c".into(),
        status: "InProgress".into(),
        percentage: Some(40),
        done: false,
        message: None,
    };
    for name in [s::START, s::CHECK] {
        let selected = selected_from(child_task(&machine, name), &response);
        assert_eq!(
            selected,
            json!({"asg": "c", "status": "InProgress", "done": false})
        );
    }
}

#[test]
fn finish_rollback_payloads_are_refresher_requests() {
    let config = config(Strategy::Batches, OnFailure::Rollback, false);
    let machine = rollout::build(&config);
    let finish: RefresherRequest = request_of(task(&machine, s::FINISH), &top_input());
    assert_eq!(
        finish,
        RefresherRequest::Finish {
            rollout_id: "r-1".into(),
            outcome: Outcome::Succeeded,
            error: None
        }
    );
    let failed: RefresherRequest = request_of(task(&machine, s::FINISH_FAILED), &top_input());
    assert_eq!(
        failed,
        RefresherRequest::Finish {
            rollout_id: "r-1".into(),
            outcome: Outcome::Failed,
            error: Some(json!({"Error": "States.TaskFailed", "Cause": "boom"})),
        }
    );
    let rollback: RefresherRequest = request_of(task(&machine, s::ROLL_BACK), &top_input());
    assert_eq!(
        rollback,
        RefresherRequest::Rollback {
            rollout_id: "r-1".into(),
            scope: config::RollbackScope::Wave,
            preferences: Some((&config.refresh).into()),
        }
    );
    let rolled_back = InFlightResponse {
        rollout_id: "r-1".into(),
        acted_on: vec!["a".into(), "b".into()],
        refused: vec![],
        pending: 2,
    };
    let settle = selected_from(task(&machine, s::ROLL_BACK), &rolled_back);
    assert_eq!(settle, json!({"pending": 2, "round": 0}));
    let mut input = top_input();
    input["settle"] = settle;
    let check: RefresherRequest = request_of(task(&machine, s::CHECK_ROLLBACKS), &input);
    assert_eq!(
        check,
        RefresherRequest::SettleRollbacks {
            rollout_id: "r-1".into(),
            round: 0
        }
    );
    let settled = SettleResponse {
        rollout_id: "r-1".into(),
        round: 1,
        pending: 1,
        still_running: vec!["b".into()],
        ended: vec!["a".into()],
    };
    let selected = selected_from(task(&machine, s::CHECK_ROLLBACKS), &settled);
    assert_eq!(selected, json!({"pending": 1, "round": 1}));
    let summary = FinishResponse {
        rollout_id: "r-1".into(),
        outcome: Outcome::Failed,
        succeeded: 2,
        failed: 1,
        skipped: 0,
        message: "b: refresh Failed".into(),
    };
    let selected = selected_from(task(&machine, s::FINISH_FAILED), &summary);
    assert_eq!(selected["message"], "b: refresh Failed");
}

#[test]
fn lambda_tasks_retry_transient_errors_and_name_the_stack_functions() {
    let config = config(Strategy::Batches, OnFailure::Stop, false);
    let machine = rollout::build(&config);
    let planner = task(&machine, s::PLAN);
    assert_eq!(
        planner
            .parameters
            .as_ref()
            .unwrap()
            .resolve(&top_input(), &context())
            .unwrap()["FunctionName"],
        "arn:aws:lambda:eu-west-1:123456789012:function:asg-refresh-t-planner"
    );
    for t in [
        task(&machine, s::PLAN),
        child_task(&machine, s::START),
        child_task(&machine, s::CHECK),
    ] {
        let retried = &t.retry[0].error_equals;
        assert!(retried.iter().any(|e| e == errors::RETRYABLE));
        assert!(retried
            .iter()
            .any(|e| e == "Lambda.TooManyRequestsException"));
        assert!(!retried
            .iter()
            .any(|e| e == errors::REFRESH_FAILED || e == "States.ALL"));
    }
    let locked = &planner.catch[0];
    assert_eq!(locked.error_equals, vec![errors::ROLLOUT_LOCKED]);
    assert_eq!(locked.next, s::LOCKED);
}

#[test]
fn parent_history_does_not_grow_with_polls() {
    // Every poll state lives in the Distributed Map's child; the parent holds none.
    let machine = rollout::build(&config(Strategy::Batches, OnFailure::Stop, false));
    for (name, st) in machine.states.iter() {
        assert!(
            !matches!(st.kind, Kind::Wait(_)),
            "{name} waits in the parent"
        );
    }
    assert!(generator::review::max_waves(&machine) > 1000);
}

#[test]
fn waiting_for_rollbacks_is_bounded_by_the_timeout() {
    for (poll, timeout) in [(45, 20), (5, 10), (60, 60), (3600, 1), (5, 1440)] {
        let mut config = config(Strategy::Batches, OnFailure::Rollback, false);
        config.rollout.poll_seconds = poll;
        config.rollout.timeout_minutes = timeout;
        let machine = rollout::build(&config);
        let wait = match &state(&machine, s::WAIT_FOR_ROLLBACKS).kind {
            Kind::Wait(w) => serde_json::to_value(w).unwrap()["Seconds"]
                .as_u64()
                .unwrap(),
            other => panic!("WaitForRollbacks is a {}", other.type_name()),
        };
        let rounds = match &state(&machine, s::ROLLBACKS_ENDED).kind {
            Kind::Choice(c) => serde_json::to_value(&c.choices[0]).unwrap()["And"][1]
                ["NumericLessThan"]
                .as_f64()
                .unwrap() as u64,
            other => panic!("RollbacksEnded is a {}", other.type_name()),
        };
        assert!(
            wait >= u64::from(poll),
            "poll {poll} timeout {timeout}: waits {wait} s"
        );
        assert!(
            rounds <= generator::review::SETTLE_ROUNDS_MAX,
            "poll {poll} timeout {timeout}: {rounds} rounds"
        );
        assert!(
            rounds * wait >= u64::from(timeout) * 60,
            "poll {poll} timeout {timeout}: gives up after {} s",
            rounds * wait
        );
    }
}

#[test]
fn select_wave_asks_the_refresher_for_positions() {
    for config in all_configs() {
        let machine = rollout::build(&config);
        let select = task(&machine, s::SELECT_WAVE);
        let event: RefresherRequest = request_of(select, &top_input());
        assert_eq!(
            event,
            RefresherRequest::Wave {
                rollout_id: "r-1".into(),
                wave: 0
            }
        );
        let response = wave_response(0, 2, "consul");
        let selected = selected_from(select, &response);
        let mut expected = json!({"wave": 0, "items": [0, 1, 2], "started_at": 1_796_000_000});
        if !config.targets.groups.is_empty() {
            // Ordered groups: the wave's batch size feeds the Map's MaxConcurrencyPath.
            expected["max_concurrency"] = json!(2);
            expected["group"] = json!("consul");
            let map = wave_map(&machine);
            assert_eq!(
                (map.max_concurrency, map.max_concurrency_path.as_deref()),
                (None, Some("$.current.max_concurrency"))
            );
        }
        assert_eq!(selected, expected, "{}", config.name);
        assert_eq!(select.result_path, PathOrNull::path("$.current"));
        assert_eq!(
            wave_map(&machine).items_path.as_deref(),
            Some("$.current.items")
        );
        // A failure to read the wave goes through the failure policy like a failed wave.
        assert_eq!(select.catch[0].next, wave_map(&machine).catch[0].next);
    }
}

#[test]
fn children_end_without_output() {
    // A Distributed Map gathers every child's output: each must be empty at any fleet size.
    for config in all_configs() {
        let machine = rollout::build(&config);
        let mut ends = 0;
        for (name, st) in wave_map(&machine).item_processor.states.iter() {
            if let Kind::Succeed(succeed) = &st.kind {
                assert_eq!(
                    succeed.filters.output_path,
                    Some(PathOrNull::Null),
                    "{name}"
                );
                assert_eq!(
                    serde_json::to_value(st).unwrap()["OutputPath"],
                    Value::Null,
                    "{name}"
                );
                assert!(
                    serde_json::to_value(st)
                        .unwrap()
                        .as_object()
                        .unwrap()
                        .contains_key("OutputPath"),
                    "{name}"
                );
                ends += 1;
            }
        }
        assert!(ends >= 1);
    }
}

#[test]
fn unfinished_invocations_are_retried_where_running_again_is_safe() {
    for config in all_configs() {
        let machine = rollout::build(&config);
        let mut tasks: Vec<(&str, &Task)> = machine
            .states
            .iter()
            .filter_map(|(name, st)| match &st.kind {
                Kind::Task(t) => Some((name, t)),
                _ => None,
            })
            .collect();
        for name in [s::START, s::CHECK] {
            tasks.push((name, child_task(&machine, name)));
        }
        if config.rollout.completion == Completion::Events {
            tasks.push((s::AWAIT, child_task(&machine, s::AWAIT)));
        }
        for (name, t) in tasks {
            let retried: Vec<&str> = t
                .retry
                .iter()
                .flat_map(|r| r.error_equals.iter().map(String::as_str))
                .collect();
            for error in [
                "Lambda.Unknown",
                "Sandbox.Timedout",
                "Lambda.ClientExecutionTimeoutException",
                errors::RETRYABLE,
            ] {
                assert!(
                    retried.contains(&error),
                    "{name} does not retry {error}: {retried:?}"
                );
            }
            // Past the approval timeout nobody approved: that is the answer, not a fault.
            let timeout_retried = retried.contains(&"States.Timeout");
            // Nor is the event's wait timing out: that goes to one check by polling.
            assert_eq!(
                timeout_retried,
                name != s::APPROVE_NEXT_WAVE && name != s::AWAIT,
                "{name}: {retried:?}"
            );
            assert!(
                t.retry
                    .iter()
                    .all(|r| r.max_attempts.is_some_and(|a| a <= 6)),
                "{name}: bounded"
            );
        }
    }
}

#[test]
fn history_is_counted_on_the_rendered_machine() {
    let config = config(Strategy::Batches, OnFailure::Stop, false);
    let machine = rollout::build(&config);
    let child = generator::review::child_history(&config, &machine);
    // Wait (entered, exited), CheckRefresh (entered, scheduled, started, succeeded, exited),
    // the gate (entered, exited).
    assert_eq!(child.per_poll, 2 + 5 + 2);
    // Execution started and succeeded, StartRefresh, the first gate, Refreshed.
    assert_eq!(child.fixed, 2 + 5 + 2 + 2);
    assert_eq!(child.polls, 20 * 60 / 45 + 1);
    assert!(child.fits());
    // The parent's wave loop: MoreWaves, SelectWave (a Task), the Distributed Map, NextWave.
    assert_eq!(
        generator::review::parent_events_per_wave(&machine.states),
        2 + 5 + 6 + 2 + generator::review::PARENT_RETRY_EVENTS_PER_WAVE
    );
    let approving = rollout::build(&self::config(Strategy::Batches, OnFailure::Stop, true));
    // With approval: IsLastWave and ApproveNextWave (which also records TaskSubmitted).
    assert_eq!(
        generator::review::parent_events_per_wave(&approving.states),
        2 + 5 + 6 + 2 + 6 + 2 + generator::review::PARENT_RETRY_EVENTS_PER_WAVE
    );
}

#[test]
fn a_poll_loop_past_the_child_history_limit_is_refused() {
    let text = |poll: u32, timeout: u32| {
        format!(
            "{STACK}[targets]\nasgs = [\"a\"]\n[rollout]\npoll_seconds = {poll}\ntimeout_minutes = {timeout}\ncompletion = \"poll\"\n"
        )
    };
    // 9 events a poll, 11 outside the loop, 1,000 set aside for retries: 2,665 polls fit.
    for (poll, timeout, fits) in [
        (60, 10080, false),
        (5, 240, false),
        (5, 222, true),
        (5, 223, false),
        (60, 2664, true),
        (60, 2665, false),
    ] {
        let result = machine::parse(&text(poll, timeout));
        assert_eq!(
            result.is_ok(),
            fits,
            "poll {poll} timeout {timeout}: {:?}",
            result.err().map(|e| e.to_string())
        );
        if let Err(error) = result {
            let problem = &error.problems()[0];
            let says_limit = problem.message.contains("25000-event history limit");
            assert_eq!(
                (problem.key.as_str(), says_limit),
                ("rollout.timeout_minutes", true),
                "{}",
                problem.message
            );
        }
    }
}

#[test]
fn events_child_waits_on_a_token_and_checks_once_per_timeout() {
    for config in all_configs()
        .into_iter()
        .filter(|c| c.rollout.completion == Completion::Events)
    {
        let machine = rollout::build(&config);
        let children = &wave_map(&machine).item_processor.states;
        // Started goes to the wait; the wait, answered, ends the child.
        let started = state_of(children, s::STARTED);
        let Kind::Choice(choice) = &started.kind else {
            panic!("Started is a Choice")
        };
        assert_eq!(choice.default.as_deref(), Some(s::AWAIT));
        assert_eq!(
            state_of(children, s::AWAIT).transition,
            Transition::Next(s::REFRESHED.into())
        );
        let wait = child_task(&machine, s::AWAIT);
        assert!(wait.resource.ends_with("lambda:invoke.waitForTaskToken"));
        assert_eq!(wait.result_path, Some(PathOrNull::Null));
        assert_eq!(
            (
                wait.catch[0].error_equals.as_slice(),
                wait.catch[0].next.as_str()
            ),
            (
                &[
                    "States.Timeout".to_string(),
                    errors::REFRESH_ENDED.to_string()
                ][..],
                s::CHECK
            )
        );
        // The check's gate waits again when the refresh still runs.
        let Kind::Choice(gate) = &state_of(children, s::GATE).kind else {
            panic!("the gate is a Choice")
        };
        assert_eq!(gate.default.as_deref(), Some(s::AWAIT));
        let event: RefresherRequest =
            request_of(wait, &json!({"rollout_id": "r-1", "refresh": {"asg": "a"}}));
        assert_eq!(
            event,
            RefresherRequest::AwaitRefresh {
                rollout_id: "r-1".into(),
                asg: "a".into(),
                task_token: "token-1".into()
            }
        );
    }
}

fn state_of<'a>(states: &'a generator::asl::States, name: &str) -> &'a State {
    states
        .get(name)
        .unwrap_or_else(|| panic!("no child state {name}"))
}

#[test]
fn event_wait_is_a_third_of_the_timeout_and_at_least_a_poll() {
    let mut config = config_in(
        Strategy::Batches,
        OnFailure::Stop,
        false,
        Completion::Events,
    );
    assert_eq!(rollout::event_wait_seconds(&config.rollout), 400);
    config.rollout.timeout_minutes = 1;
    config.rollout.poll_seconds = 45;
    assert_eq!(rollout::event_wait_seconds(&config.rollout), 45);
    config.rollout.timeout_minutes = 10080;
    assert_eq!(rollout::event_wait_seconds(&config.rollout), 201_600);
}

#[test]
fn events_history_and_cost_are_counted_on_the_rendered_child() {
    let events = config_in(
        Strategy::Batches,
        OnFailure::Stop,
        false,
        Completion::Events,
    );
    let machine = rollout::build(&events);
    let child = generator::review::child_history(&events, &machine);
    // A wait that times out (entered, scheduled, started, submitted, timed out, exited),
    // CheckRefresh, the gate.
    assert_eq!(child.per_poll, 6 + 5 + 2);
    // Execution started and succeeded, StartRefresh, Started, the answered wait, Refreshed.
    assert_eq!(child.fixed, 2 + 5 + 2 + 2 + 6);
    // Three waits of 400 s time out in 20 minutes; the check after the third fails it.
    assert_eq!(child.polls, 4);
    // The longest poll loop the history allows is refused when polling, not with events.
    let text = |completion: &str| {
        format!(
            "{STACK}[targets]\nasgs = [\"a\"]\n[rollout]\npoll_seconds = 5\ntimeout_minutes = 10080\ncompletion = \"{completion}\"\n"
        )
    };
    assert!(machine::parse(&text("poll")).is_err());
    assert!(machine::parse(&text("events")).is_ok());
    // A 30-minute refresh at a 60-minute timeout (one wait of 20 minutes times out): at most
    // 8 transitions with events; about 95 polling every 60 s.
    let mut sixty = events.clone();
    sixty.rollout.timeout_minutes = 60;
    sixty.rollout.poll_seconds = 60;
    let cost = generator::review::asg_cost(&sixty, &rollout::build(&sixty), 1800);
    assert_eq!(cost.transitions, 7);
    assert_eq!(cost.describe_refreshes, 1);
    // start, two store-token calls, one check, the completer for the start, the end and two
    // checkpoints.
    assert_eq!(cost.lambda_invocations, 1 + 2 + 1 + 2 + 2);
    sixty.rollout.completion = Completion::Poll;
    let polling = generator::review::asg_cost(&sixty, &rollout::build(&sixty), 1800);
    assert_eq!(polling.transitions, 3 + 3 * 30);
    assert_eq!(polling.describe_refreshes, 30);
}
