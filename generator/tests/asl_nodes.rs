//! Exact-JSON tests for every node of the ASL DSL: each state type with each of its fields,
//! retriers, catchers, choice rules, transitions, comments and whole state machines.

mod common;

use common::{fail_from, machine_of, succeed, wait_then};
use generator::asl::{
    Arg, Branch, Catcher, Choice, ChoiceRule, Comparison, Condition, ExecutionType, Fail, Filters,
    Intrinsic, ItemBatcher, ItemReader, JitterStrategy, Kind, Map, Parallel, Pass, PathOrNull,
    ProcessorConfig, ProcessorMode, ReaderConfig, Retrier, State, StateMachine, States, Succeed,
    Task, Template, Transition, Wait,
};
use serde_json::{json, Value};

const LAMBDA: &str = "arn:aws:states:::lambda:invoke";

/// The JSON value of one state.
fn json_of(state: impl Into<State>) -> Value {
    serde_json::to_value(state.into()).expect("a state serialises")
}

/// The compact JSON text of one state, which keeps key order.
fn text_of(state: impl Into<State>) -> String {
    serde_json::to_string(&state.into()).expect("a state serialises")
}

/// Asserts that each case's state serialises to exactly its JSON, keys in the same order.
#[track_caller]
fn assert_each_serialises(cases: Vec<(&str, State, Value)>) {
    for (case, state, expected) in cases {
        assert_eq!(text_of(state), expected.to_string(), "{case}");
    }
}

/// The keys of a JSON object, in order.
fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

// Pass.

#[test]
fn pass_with_result_and_result_path() {
    let state = State::new(Kind::Pass(Pass {
        result: Some(json!({"wave": 1, "asgs": ["web-a", "web-b"]})),
        result_path: PathOrNull::path("$.plan"),
        ..Pass::default()
    }))
    .next("Apply");
    assert_eq!(
        json_of(state),
        json!({
            "Type": "Pass",
            "Result": {"wave": 1, "asgs": ["web-a", "web-b"]},
            "ResultPath": "$.plan",
            "Next": "Apply"
        })
    );
}

#[test]
fn pass_with_parameters_and_filters() {
    let state = State::new(Kind::Pass(Pass {
        filters: Filters {
            input_path: PathOrNull::path("$.input"),
            output_path: PathOrNull::path("$.out"),
        },
        parameters: Some(
            Template::new()
                .lit("action", "start")
                .path("asg", "$.asg")
                .call("id", Intrinsic::Uuid),
        ),
        result_path: Some(PathOrNull::Null),
        ..Pass::default()
    }))
    .end();
    assert_eq!(
        json_of(state),
        json!({
            "Type": "Pass",
            "InputPath": "$.input",
            "OutputPath": "$.out",
            "Parameters": {"action": "start", "asg.$": "$.asg", "id.$": "States.UUID()"},
            "ResultPath": null,
            "End": true
        })
    );
}

#[test]
fn pass_with_null_filters_serialises_null() {
    let state = State::new(Kind::Pass(Pass {
        filters: Filters {
            input_path: Some(PathOrNull::Null),
            output_path: Some(PathOrNull::Null),
        },
        ..Pass::default()
    }))
    .end();
    assert_eq!(
        json_of(state),
        json!({"Type": "Pass", "InputPath": null, "OutputPath": null, "End": true})
    );
}

#[test]
fn bare_pass_has_only_type_and_transition() {
    let state = State::new(Kind::Pass(Pass::default())).next("Done");
    assert_eq!(text_of(state), r#"{"Type":"Pass","Next":"Done"}"#);
}

// Task.

/// A Task with every field but the `...Path` timing fields.
fn full_task() -> Task {
    Task {
        resource: LAMBDA.to_string(),
        filters: Filters {
            input_path: PathOrNull::path("$.request"),
            output_path: PathOrNull::path("$.result"),
        },
        parameters: Some(Template::new().lit("FunctionName", "refresh").object(
            "Payload",
            Template::new().path("asg", "$.asg").path("wave", "$.wave"),
        )),
        result_selector: Some(Template::new().path("status", "$.Payload.status")),
        result_path: PathOrNull::path("$.result"),
        timeout_seconds: Some(300),
        timeout_seconds_path: None,
        heartbeat_seconds: Some(60),
        heartbeat_seconds_path: None,
        retry: vec![Retrier::new(&["Lambda.TooManyRequestsException"])
            .interval(2)
            .attempts(6)
            .backoff(2.0)
            .max_delay(30)
            .jitter(JitterStrategy::Full)],
        catch: vec![Catcher::new(&["States.ALL"], "Report").result_path("$.error")],
    }
}

#[test]
fn task_with_every_field() {
    let state = State::new(Kind::Task(full_task())).next("Wait");
    assert_eq!(
        json_of(state),
        json!({
            "Type": "Task",
            "Resource": LAMBDA,
            "InputPath": "$.request",
            "OutputPath": "$.result",
            "Parameters": {
                "FunctionName": "refresh",
                "Payload": {"asg.$": "$.asg", "wave.$": "$.wave"}
            },
            "ResultSelector": {"status.$": "$.Payload.status"},
            "ResultPath": "$.result",
            "TimeoutSeconds": 300,
            "HeartbeatSeconds": 60,
            "Retry": [{
                "ErrorEquals": ["Lambda.TooManyRequestsException"],
                "IntervalSeconds": 2,
                "MaxAttempts": 6,
                "BackoffRate": 2.0,
                "MaxDelaySeconds": 30,
                "JitterStrategy": "FULL"
            }],
            "Catch": [{
                "ErrorEquals": ["States.ALL"],
                "ResultPath": "$.error",
                "Next": "Report"
            }],
            "Next": "Wait"
        })
    );
}

#[test]
fn task_keys_keep_type_first_and_next_last() {
    let state = State::new(Kind::Task(full_task()))
        .comment("Starts the refresh.")
        .next("Wait");
    let value = json_of(state.clone());
    assert_eq!(
        keys(&value),
        [
            "Type",
            "Comment",
            "Resource",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "TimeoutSeconds",
            "HeartbeatSeconds",
            "Retry",
            "Catch",
            "Next"
        ]
    );
    let text = text_of(state);
    assert!(
        text.starts_with(r#"{"Type":"Task","Comment":"Starts the refresh.","Resource":"#),
        "{text}"
    );
    assert!(text.ends_with(r#","Next":"Wait"}"#), "{text}");
}

#[test]
fn small_tasks_with_their_fields() {
    assert_each_serialises(vec![
        (
            "parameters and a null result path",
            State::new(Kind::Task(Task {
                resource: LAMBDA.to_string(),
                parameters: Some(Template::new().path("Payload", "$")),
                result_path: Some(PathOrNull::Null),
                ..Task::default()
            }))
            .end(),
            json!({
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"Payload.$": "$"},
                "ResultPath": null,
                "End": true
            }),
        ),
        (
            "a null result path discards the result",
            State::new(Kind::Task(Task {
                resource: LAMBDA.to_string(),
                result_path: Some(PathOrNull::Null),
                ..Task::default()
            }))
            .next("Next one"),
            json!({"Type": "Task", "Resource": LAMBDA, "ResultPath": null, "Next": "Next one"}),
        ),
        (
            "timing paths",
            State::new(Kind::Task(Task {
                resource: "arn:aws:states:::sqs:sendMessage.waitForTaskToken".to_string(),
                timeout_seconds_path: Some("$.timeouts.total".to_string()),
                heartbeat_seconds_path: Some("$.timeouts.heartbeat".to_string()),
                ..Task::default()
            }))
            .end(),
            json!({
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "TimeoutSecondsPath": "$.timeouts.total",
                "HeartbeatSecondsPath": "$.timeouts.heartbeat",
                "End": true
            }),
        ),
        (
            "parameters render intrinsics",
            State::new(Kind::Task(Task {
                resource: LAMBDA.to_string(),
                parameters: Some(
                    Template::new()
                        .call(
                            "name",
                            Intrinsic::Format(
                                "wave-{}-{}".into(),
                                vec![Arg::path("$.wave"), Arg::path("$$.Execution.Name")],
                            ),
                        )
                        .call(
                            "parts",
                            Intrinsic::ArrayPartition(Arg::path("$.asgs"), Arg::Num(5.0)),
                        ),
                ),
                ..Task::default()
            }))
            .end(),
            json!({
                "Type": "Task",
                "Resource": LAMBDA,
                "Parameters": {
                    "name.$": "States.Format('wave-{}-{}', $.wave, $$.Execution.Name)",
                    "parts.$": "States.ArrayPartition($.asgs, 5)"
                },
                "End": true
            }),
        ),
    ]);
}

// Retry and Catch.

#[test]
fn retrier_with_every_field() {
    let retrier = Retrier::new(&["States.Timeout", "Lambda.ServiceException"])
        .interval(1)
        .attempts(3)
        .backoff(1.5)
        .max_delay(10)
        .jitter(JitterStrategy::None);
    assert_eq!(
        serde_json::to_value(&retrier).unwrap(),
        json!({
            "ErrorEquals": ["States.Timeout", "Lambda.ServiceException"],
            "IntervalSeconds": 1,
            "MaxAttempts": 3,
            "BackoffRate": 1.5,
            "MaxDelaySeconds": 10,
            "JitterStrategy": "NONE"
        })
    );
}

#[test]
fn retrier_with_only_error_equals() {
    let retrier = Retrier::new(&["States.ALL"]);
    assert_eq!(
        serde_json::to_string(&retrier).unwrap(),
        r#"{"ErrorEquals":["States.ALL"]}"#
    );
}

#[test]
fn jitter_strategies_are_upper_case() {
    assert_eq!(
        serde_json::to_value(JitterStrategy::Full).unwrap(),
        json!("FULL")
    );
    assert_eq!(
        serde_json::to_value(JitterStrategy::None).unwrap(),
        json!("NONE")
    );
}

#[test]
fn catcher_with_and_without_result_path() {
    assert_eq!(
        serde_json::to_string(
            &Catcher::new(&["States.TaskFailed"], "Report").result_path("$.error")
        )
        .unwrap(),
        r#"{"ErrorEquals":["States.TaskFailed"],"ResultPath":"$.error","Next":"Report"}"#
    );
    assert_eq!(
        serde_json::to_value(Catcher::new(&["States.ALL"], "Report")).unwrap(),
        json!({"ErrorEquals": ["States.ALL"], "Next": "Report"})
    );
}

#[test]
fn catcher_result_path_may_be_null() {
    let catcher = Catcher {
        result_path: Some(PathOrNull::Null),
        ..Catcher::new(&["States.ALL"], "Report")
    };
    assert_eq!(
        serde_json::to_value(catcher).unwrap(),
        json!({"ErrorEquals": ["States.ALL"], "ResultPath": null, "Next": "Report"})
    );
}

// Choice.

#[test]
fn choice_with_rules_and_default() {
    let state = State::new(Kind::Choice(Choice {
        filters: Filters {
            input_path: PathOrNull::path("$.poll"),
            output_path: None,
        },
        choices: vec![
            ChoiceRule::new(
                Condition::test("$.status", Comparison::StringEquals("Successful".into())),
                "Done",
            ),
            ChoiceRule::new(
                Condition::and(vec![
                    Condition::test("$.percent", Comparison::NumericLessThan(100.0)),
                    Condition::not(Condition::test(
                        "$.cancelled",
                        Comparison::BooleanEquals(true),
                    )),
                ]),
                "Wait",
            ),
            ChoiceRule::new(
                Condition::or(vec![
                    Condition::test("$.status", Comparison::StringEquals("Failed".into())),
                    Condition::test("$.status", Comparison::IsPresent(false)),
                ]),
                "Rollback",
            ),
        ],
        default: Some("Wait".to_string()),
    }))
    .comment("Polls the refresh.");
    assert_eq!(
        json_of(state),
        json!({
            "Type": "Choice",
            "Comment": "Polls the refresh.",
            "InputPath": "$.poll",
            "Choices": [
                {"Variable": "$.status", "StringEquals": "Successful", "Next": "Done"},
                {
                    "And": [
                        {"Variable": "$.percent", "NumericLessThan": 100},
                        {"Not": {"Variable": "$.cancelled", "BooleanEquals": true}}
                    ],
                    "Next": "Wait"
                },
                {
                    "Or": [
                        {"Variable": "$.status", "StringEquals": "Failed"},
                        {"Variable": "$.status", "IsPresent": false}
                    ],
                    "Next": "Rollback"
                }
            ],
            "Default": "Wait"
        })
    );
}

#[test]
fn choice_without_default_omits_it() {
    let state = State::new(Kind::Choice(Choice {
        choices: vec![ChoiceRule::new(
            Condition::test(
                "$.n",
                Comparison::NumericGreaterThanEqualsPath("$.limit".into()),
            ),
            "Done",
        )],
        ..Choice::default()
    }));
    assert_eq!(
        text_of(state),
        r#"{"Type":"Choice","Choices":[{"Variable":"$.n","NumericGreaterThanEqualsPath":"$.limit","Next":"Done"}]}"#
    );
}

#[test]
fn choice_rule_comment_comes_before_next() {
    let rule = ChoiceRule {
        comment: Some("All instances replaced.".to_string()),
        ..ChoiceRule::new(
            Condition::test("$.done", Comparison::BooleanEquals(true)),
            "Done",
        )
    };
    assert_eq!(
        serde_json::to_string(&rule).unwrap(),
        r#"{"Variable":"$.done","BooleanEquals":true,"Comment":"All instances replaced.","Next":"Done"}"#
    );
}

// Wait.

#[test]
fn wait_with_each_timing_field() {
    assert_each_serialises(vec![
        (
            "seconds",
            State::new(Kind::Wait(Wait::seconds(30))).next("Poll"),
            json!({"Type": "Wait", "Seconds": 30, "Next": "Poll"}),
        ),
        (
            "seconds path",
            State::new(Kind::Wait(Wait::seconds_path("$.delay"))).next("Poll"),
            json!({"Type": "Wait", "SecondsPath": "$.delay", "Next": "Poll"}),
        ),
        (
            "timestamp",
            State::new(Kind::Wait(Wait {
                timestamp: Some("2026-03-01T02:00:00Z".to_string()),
                ..Wait::default()
            }))
            .next("Poll"),
            json!({"Type": "Wait", "Timestamp": "2026-03-01T02:00:00Z", "Next": "Poll"}),
        ),
        (
            "timestamp path and filters",
            State::new(Kind::Wait(Wait {
                filters: Filters {
                    input_path: PathOrNull::path("$.window"),
                    output_path: PathOrNull::path("$"),
                },
                timestamp_path: Some("$.window.opens".to_string()),
                ..Wait::default()
            }))
            .end(),
            json!({
                "Type": "Wait",
                "InputPath": "$.window",
                "OutputPath": "$",
                "TimestampPath": "$.window.opens",
                "End": true
            }),
        ),
    ]);
}

// Succeed and Fail.

#[test]
fn succeed_and_fail_with_their_fields() {
    assert_each_serialises(vec![
        (
            "succeed is only its type",
            succeed(),
            json!({"Type": "Succeed"}),
        ),
        (
            "succeed with filters and comment",
            State::new(Kind::Succeed(Succeed {
                filters: Filters {
                    input_path: None,
                    output_path: PathOrNull::path("$.summary"),
                },
            }))
            .comment("Every wave refreshed."),
            json!({"Type": "Succeed", "Comment": "Every wave refreshed.", "OutputPath": "$.summary"}),
        ),
        (
            "fail with error and cause",
            State::new(Kind::Fail(
                Fail::error("RefreshFailed").cause("An instance refresh was cancelled."),
            )),
            json!({"Type": "Fail", "Error": "RefreshFailed", "Cause": "An instance refresh was cancelled."}),
        ),
        (
            "fail with error path and cause path",
            State::new(Kind::Fail(Fail {
                error_path: Some("$.error.Error".to_string()),
                cause_path: Some("$.error.Cause".to_string()),
                ..Fail::default()
            })),
            json!({"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}),
        ),
        (
            "fail with error and cause path",
            State::new(Kind::Fail(
                Fail::error("RolloutLocked").cause_path("$.error.Cause"),
            )),
            json!({"Type": "Fail", "Error": "RolloutLocked", "CausePath": "$.error.Cause"}),
        ),
    ]);
}

// Parallel.

#[test]
fn parallel_with_branches() {
    let state = State::new(Kind::Parallel(Parallel {
        branches: vec![
            Branch::new(States::new().add("Notify", State::new(Kind::Pass(Pass::default())).end())),
            Branch::new(
                States::new()
                    .add(
                        "Pause",
                        State::new(Kind::Wait(Wait::seconds(5))).next("Done"),
                    )
                    .add("Done", succeed()),
            ),
        ],
        parameters: Some(Template::new().path("wave", "$.wave")),
        result_selector: Some(Template::new().path("first", "$[0]")),
        result_path: PathOrNull::path("$.parallel"),
        retry: vec![Retrier::new(&["States.ALL"]).attempts(2)],
        catch: vec![Catcher::new(&["States.ALL"], "Report")],
        ..Parallel::default()
    }))
    .next("Report");
    assert_eq!(
        json_of(state),
        json!({
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Notify", "States": {"Notify": {"Type": "Pass", "End": true}}},
                {
                    "StartAt": "Pause",
                    "States": {
                        "Pause": {"Type": "Wait", "Seconds": 5, "Next": "Done"},
                        "Done": {"Type": "Succeed"}
                    }
                }
            ],
            "Parameters": {"wave.$": "$.wave"},
            "ResultSelector": {"first.$": "$[0]"},
            "ResultPath": "$.parallel",
            "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Report"}],
            "Next": "Report"
        })
    );
}

#[test]
fn branch_states_keep_insertion_order() {
    let branch = Branch::new(
        States::new()
            .add(
                "Zulu",
                State::new(Kind::Pass(Pass::default())).next("Alpha"),
            )
            .add(
                "Alpha",
                State::new(Kind::Pass(Pass::default())).next("Mike"),
            )
            .add("Mike", succeed()),
    );
    let value = serde_json::to_value(&branch).unwrap();
    assert_eq!(keys(&value), ["StartAt", "States"]);
    assert_eq!(value["StartAt"], json!("Zulu"));
    assert_eq!(keys(&value["States"]), ["Zulu", "Alpha", "Mike"]);
}

// Map.

/// The one-state processor used by the Map tests.
fn check_processor() -> Branch {
    Branch::new(
        States::new().add(
            "Check",
            State::new(Kind::Task(Task {
                resource: LAMBDA.to_string(),
                ..Task::default()
            }))
            .end(),
        ),
    )
}

#[test]
fn inline_map_with_items_path_selector_and_concurrency() {
    let map = Map {
        item_selector: Some(
            Template::new()
                .path("asg", "$$.Map.Item.Value")
                .path("index", "$$.Map.Item.Index")
                .path("wave", "$.wave"),
        ),
        max_concurrency: Some(10),
        result_path: Some(PathOrNull::Null),
        ..Map::new("$.asgs", check_processor())
    };
    let state = State::new(Kind::Map(map)).next("Done");
    assert_eq!(
        json_of(state),
        json!({
            "Type": "Map",
            "ItemsPath": "$.asgs",
            "ItemSelector": {
                "asg.$": "$$.Map.Item.Value",
                "index.$": "$$.Map.Item.Index",
                "wave.$": "$.wave"
            },
            "ItemProcessor": {
                "StartAt": "Check",
                "States": {"Check": {"Type": "Task", "Resource": LAMBDA, "End": true}}
            },
            "MaxConcurrency": 10,
            "ResultPath": null,
            "Next": "Done"
        })
    );
}

#[test]
fn inline_map_with_explicit_inline_processor_config() {
    let processor = Branch {
        processor_config: Some(ProcessorConfig {
            mode: ProcessorMode::Inline,
            execution_type: None,
        }),
        ..check_processor()
    };
    assert!(!processor.is_distributed());
    let state = State::new(Kind::Map(Map::new("$.asgs", processor))).end();
    assert_eq!(
        json_of(state)["ItemProcessor"],
        json!({
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": "Check",
            "States": {"Check": {"Type": "Task", "Resource": LAMBDA, "End": true}}
        })
    );
}

#[test]
fn distributed_map_with_every_field() {
    let processor = check_processor().distributed(ExecutionType::Standard);
    assert!(processor.is_distributed());
    let map = Map {
        items_path: None,
        item_reader: Some(ItemReader {
            resource: "arn:aws:states:::s3:getObject".to_string(),
            reader_config: Some(ReaderConfig {
                input_type: Some("JSON".to_string()),
                csv_header_location: None,
                max_items: Some(500),
            }),
            parameters: Some(
                Template::new()
                    .lit("Bucket", "plans")
                    .path("Key", "$.planKey"),
            ),
        }),
        item_selector: Some(Template::new().path("asg", "$$.Map.Item.Value")),
        item_batcher: Some(ItemBatcher {
            max_items_per_batch: Some(20),
            max_input_bytes_per_batch: Some(262_144),
            batch_input: Some(Template::new().path("wave", "$.wave")),
        }),
        max_concurrency: Some(1000),
        tolerated_failure_count: Some(3),
        tolerated_failure_percentage: Some(2.5),
        label: Some("Refresh".to_string()),
        result_selector: Some(Template::new().path("count", "$.length")),
        result_path: PathOrNull::path("$.refresh"),
        retry: vec![Retrier::new(&["States.ItemReaderFailed"]).attempts(2)],
        catch: vec![Catcher::new(
            &["States.ExceedToleratedFailureThreshold"],
            "Report",
        )],
        ..Map::new("$.unused", processor)
    };
    let state = State::new(Kind::Map(map)).next("Report");
    assert_eq!(
        json_of(state),
        json!({
            "Type": "Map",
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSON", "MaxItems": 500},
                "Parameters": {"Bucket": "plans", "Key.$": "$.planKey"}
            },
            "ItemSelector": {"asg.$": "$$.Map.Item.Value"},
            "ItemBatcher": {
                "MaxItemsPerBatch": 20,
                "MaxInputBytesPerBatch": 262_144,
                "BatchInput": {"wave.$": "$.wave"}
            },
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Check",
                "States": {"Check": {"Type": "Task", "Resource": LAMBDA, "End": true}}
            },
            "MaxConcurrency": 1000,
            "ToleratedFailureCount": 3,
            "ToleratedFailurePercentage": 2.5,
            "Label": "Refresh",
            "ResultSelector": {"count.$": "$.length"},
            "ResultPath": "$.refresh",
            "Retry": [{"ErrorEquals": ["States.ItemReaderFailed"], "MaxAttempts": 2}],
            "Catch": [{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "Next": "Report"}],
            "Next": "Report"
        })
    );
}

#[test]
fn distributed_map_with_express_children_and_items_path() {
    let map = Map {
        max_concurrency: Some(10_000),
        ..Map::new(
            "$.asgs",
            check_processor().distributed(ExecutionType::Express),
        )
    };
    let value = json_of(State::new(Kind::Map(map)).end());
    assert_eq!(value["ItemsPath"], json!("$.asgs"));
    assert_eq!(
        value["ItemProcessor"]["ProcessorConfig"],
        json!({"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"})
    );
    assert_eq!(value["MaxConcurrency"], json!(10_000));
    assert_eq!(keys(&value).first(), Some(&"Type"));
    assert_eq!(keys(&value).last(), Some(&"End"));
}

#[test]
fn item_reader_csv_config_uses_asl_field_names() {
    let reader = ItemReader {
        resource: "arn:aws:states:::s3:getObject".to_string(),
        reader_config: Some(ReaderConfig {
            input_type: Some("CSV".to_string()),
            csv_header_location: Some("FIRST_ROW".to_string()),
            max_items: None,
        }),
        parameters: Some(
            Template::new()
                .lit("Bucket", "plans")
                .lit("Key", "waves.csv"),
        ),
    };
    assert_eq!(
        serde_json::to_value(&reader).unwrap(),
        json!({
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
            "Parameters": {"Bucket": "plans", "Key": "waves.csv"}
        })
    );
}

// Transitions and comments.

#[test]
fn transition_next_end_and_none() {
    let base = State::new(Kind::Pass(Pass::default()));
    assert_eq!(base.transition, Transition::None);
    assert_eq!(
        json_of(base.clone().next("B")),
        json!({"Type": "Pass", "Next": "B"})
    );
    assert_eq!(
        json_of(base.clone().end()),
        json!({"Type": "Pass", "End": true})
    );
    assert_eq!(json_of(base.clone()), json!({"Type": "Pass"}));
    // The last builder call wins.
    assert_eq!(base.clone().next("B").end().transition, Transition::End);
    assert_eq!(
        base.end().next("B").transition,
        Transition::Next("B".to_string())
    );
}

#[test]
fn comment_follows_type_and_transition_comes_last() {
    let state = State::new(Kind::Wait(Wait::seconds(10)))
        .comment("Lets the ASG settle.")
        .next("Poll");
    assert_eq!(
        text_of(state),
        r#"{"Type":"Wait","Comment":"Lets the ASG settle.","Seconds":10,"Next":"Poll"}"#
    );
}

#[test]
fn state_from_kind_has_no_transition_or_comment() {
    let state: State = Kind::Succeed(Succeed::default()).into();
    assert_eq!(state.comment, None);
    assert_eq!(state.transition, Transition::None);
}

#[test]
fn type_names_match_serialised_type() {
    let kinds = [
        Kind::Pass(Pass::default()),
        Kind::Task(Task::default()),
        Kind::Choice(Choice::default()),
        Kind::Wait(Wait::default()),
        Kind::Succeed(Succeed::default()),
        Kind::Fail(Fail::default()),
        Kind::Parallel(Parallel::default()),
        Kind::Map(Map::new("$", check_processor())),
    ];
    let names: Vec<&str> = kinds.iter().map(Kind::type_name).collect();
    assert_eq!(
        names,
        ["Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"]
    );
    for kind in kinds {
        let name = kind.type_name();
        let nested = matches!(kind, Kind::Map(_));
        let text = text_of(kind);
        assert!(text.starts_with(&format!(r#"{{"Type":"{name}""#)), "{text}");
        // `Type` is written once, by the state, and not again by the kind.
        if !nested {
            assert_eq!(text.matches(r#""Type""#).count(), 1, "{text}");
        }
    }
}

// Whole machines.

/// A small but complete machine: start, poll loop with a Choice, and both endings.
fn machine() -> StateMachine {
    let states = States::new()
        .add(
            "Start",
            State::new(Kind::Task(Task {
                resource: LAMBDA.to_string(),
                parameters: Some(Template::new().path("asg", "$.asg")),
                result_path: PathOrNull::path("$.refresh"),
                catch: vec![Catcher::new(&["States.ALL"], "Failed").result_path("$.error")],
                ..Task::default()
            }))
            .next("Pause"),
        )
        .add("Pause", wait_then(30, "Poll"))
        .add(
            "Poll",
            State::new(Kind::Choice(Choice {
                choices: vec![ChoiceRule::new(
                    Condition::test(
                        "$.refresh.status",
                        Comparison::StringEquals("Successful".into()),
                    ),
                    "Done",
                )],
                default: Some("Pause".to_string()),
                ..Choice::default()
            })),
        )
        .add("Done", succeed())
        .add("Failed", fail_from("$.error"));
    machine_of(states, "Refreshes one ASG.", 3600)
}

#[test]
fn whole_state_machine() {
    assert_eq!(
        serde_json::to_value(machine()).unwrap(),
        json!({
            "Comment": "Refreshes one ASG.",
            "StartAt": "Start",
            "TimeoutSeconds": 3600,
            "States": {
                "Start": {
                    "Type": "Task",
                    "Resource": LAMBDA,
                    "Parameters": {"asg.$": "$.asg"},
                    "ResultPath": "$.refresh",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}],
                    "Next": "Pause"
                },
                "Pause": {"Type": "Wait", "Seconds": 30, "Next": "Poll"},
                "Poll": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.refresh.status", "StringEquals": "Successful", "Next": "Done"}],
                    "Default": "Pause"
                },
                "Done": {"Type": "Succeed"},
                "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
            }
        })
    );
}

#[test]
fn state_machine_keys_are_in_asl_order() {
    let value = serde_json::to_value(machine()).unwrap();
    assert_eq!(
        keys(&value),
        ["Comment", "StartAt", "TimeoutSeconds", "States"]
    );
    assert_eq!(
        keys(&value["States"]),
        ["Start", "Pause", "Poll", "Done", "Failed"]
    );
}

#[test]
fn minimal_state_machine_omits_optional_fields() {
    let machine = StateMachine::new(States::new().add("Done", succeed()));
    assert_eq!(
        serde_json::to_string(&machine).unwrap(),
        r#"{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}"#
    );
}

#[test]
fn start_at_defaults_to_first_state_and_can_be_overridden() {
    let states = States::new()
        .add(
            "First",
            State::new(Kind::Pass(Pass::default())).next("Second"),
        )
        .add("Second", succeed());
    assert_eq!(StateMachine::new(states.clone()).start_at, "First");
    let machine = StateMachine {
        start_at: "Second".to_string(),
        ..StateMachine::new(states)
    };
    assert_eq!(
        serde_json::to_value(&machine).unwrap()["StartAt"],
        json!("Second")
    );
}

#[test]
fn to_json_is_pretty_with_trailing_newline() {
    let text = StateMachine::new(States::new().add("Done", succeed())).to_json();
    assert_eq!(
        text,
        "{\n  \"StartAt\": \"Done\",\n  \"States\": {\n    \"Done\": {\n      \"Type\": \"Succeed\"\n    }\n  }\n}\n"
    );
}

#[test]
fn to_json_is_deterministic() {
    let first = machine().to_json();
    let second = machine().to_json();
    assert_eq!(first.as_bytes(), second.as_bytes());
    // A clone and a second serialisation of the same value give the same bytes too.
    let built = machine();
    assert_eq!(built.to_json(), built.clone().to_json());
    assert_eq!(built.to_json(), first);
    // The text parses back to the value it was made from.
    let parsed: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(parsed, serde_json::to_value(machine()).unwrap());
}
