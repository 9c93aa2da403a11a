//! Tests for the build-time validation of state machines: one test per kind of problem,
//! each checking the exact path of the state at fault and what the message says, and a
//! realistic nested machine that must validate cleanly.

mod common;

use common::{fail_from, machine_of, succeed, wait_then};
use generator::asl::validate::scopes;
use generator::asl::{
    validate, Arg, Branch, Catcher, Choice, ChoiceRule, Comparison, Condition, ExecutionType, Fail,
    Filters, Intrinsic, ItemBatcher, ItemReader, JitterStrategy, Kind, Map, Parallel, Pass,
    PathOrNull, ProcessorConfig, ProcessorMode, Retrier, State, StateMachine, States, Succeed,
    Task, Template, ValidationError, Wait,
};

const LAMBDA: &str = "arn:aws:states:::lambda:invoke";

// Builders for the small machines below.

fn pass() -> State {
    State::new(Kind::Pass(Pass::default()))
}

fn fail() -> State {
    State::new(Kind::Fail(Fail {
        error: Some("Failed".to_string()),
        ..Fail::default()
    }))
}

/// A Task calling Lambda with nothing else set.
fn task() -> Task {
    Task {
        resource: LAMBDA.to_string(),
        ..Task::default()
    }
}

fn task_state(task: Task) -> State {
    State::new(Kind::Task(task))
}

fn choice_state(choices: Vec<ChoiceRule>, default: Option<&str>) -> State {
    State::new(Kind::Choice(Choice {
        choices,
        default: default.map(str::to_string),
        ..Choice::default()
    }))
}

fn machine(states: States) -> StateMachine {
    StateMachine::new(states)
}

/// A processor or branch with one Task, `Check`, that ends it.
fn check_processor() -> Branch {
    Branch::new(States::new().add("Check", task_state(task()).end()))
}

/// `Waves` (the given Map) followed by `Done`.
fn around_map(map: Map) -> StateMachine {
    machine(
        States::new()
            .add("Waves", State::new(Kind::Map(map)).next("Done"))
            .add("Done", succeed()),
    )
}

/// `Waves`: an inline Map over `$.asgs` running `processor`, followed by `Done`.
fn around_processor(processor: Branch) -> StateMachine {
    around_map(Map::new("$.asgs", processor))
}

/// `Call` (the given Task) followed by `Done`.
fn around_task(task: Task) -> StateMachine {
    machine(
        States::new()
            .add("Call", task_state(task).next("Done"))
            .add("Done", succeed()),
    )
}

/// `Pick` (a Choice with the given rules, defaulting to `Done`) followed by `Done`.
fn around_rules(choices: Vec<ChoiceRule>) -> StateMachine {
    machine(
        States::new()
            .add("Pick", choice_state(choices, Some("Done")))
            .add("Done", succeed()),
    )
}

fn to_done(condition: Condition) -> ChoiceRule {
    ChoiceRule::new(condition, "Done")
}

fn status_is(value: &str) -> Condition {
    Condition::test("$.status", Comparison::StringEquals(value.to_string()))
}

// Assertions.

fn errors(machine: &StateMachine) -> Vec<ValidationError> {
    match validate(machine) {
        Ok(()) => panic!("the machine validated, but errors were expected"),
        Err(errors) => errors.0,
    }
}

/// Asserts the exact list of errors: each one's `at` path, and a phrase its message contains.
#[track_caller]
fn assert_errors(machine: &StateMachine, expected: &[(&str, &str)]) {
    let found = errors(machine);
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        found.len(),
        expected.len(),
        "expected {expected:?}, found {shown:#?}"
    );
    for (error, (at, phrase)) in found.iter().zip(expected) {
        assert_eq!(error.at, *at, "wrong path for `{error}`; found {shown:#?}");
        assert!(
            error.message.contains(phrase),
            "`{}` does not mention `{phrase}`; found {shown:#?}",
            error.message
        );
    }
}

#[track_caller]
fn assert_valid(machine: &StateMachine) {
    if let Err(errors) = validate(machine) {
        panic!("expected a valid machine: {errors}");
    }
}

/// Declares one test per machine that must fail validation with exactly the errors
/// listed: each one's `at` path and a phrase its message contains. Written as calls,
/// `name(machine, [(at, phrase), ...])`, so that rustfmt lays the table out.
macro_rules! rejects {
    ($($test:ident($machine:expr, [$(($at:literal, $phrase:literal)),+ $(,)?])),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                assert_errors(&$machine, &[$(($at, $phrase)),+]);
            }
        )*
    };
}

/// Declares one test per machine that must validate cleanly, written as `name(machine)`.
macro_rules! accepts {
    ($($test:ident($machine:expr)),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                assert_valid(&$machine);
            }
        )*
    };
}

/// A Task calling Lambda that sends every error to `to`.
fn catch_all(to: &str) -> Task {
    Task {
        catch: vec![Catcher::new(&["States.ALL"], to)],
        ..task()
    }
}

/// A machine of the one state `name`.
fn lone(name: &str, state: impl Into<State>) -> StateMachine {
    machine(States::new().add(name, state))
}

/// `name` (the given state) followed by `Done`.
fn then_done(name: &str, state: impl Into<State>) -> StateMachine {
    machine(States::new().add(name, state).add("Done", succeed()))
}

/// `Waves`: an inline Map over `$.waves` whose processor runs `name` (the given state) and
/// has `Settle` (a Succeed), followed by `Report`.
fn waves_then_report(name: &str, state: State) -> StateMachine {
    let processor = Branch::new(States::new().add(name, state).add("Settle", succeed()));
    machine(
        States::new()
            .add(
                "Waves",
                State::new(Kind::Map(Map::new("$.waves", processor))).next("Report"),
            )
            .add("Report", succeed()),
    )
}

// Transition targets.

rejects![
    unknown_next_target(
        then_done("Call", task_state(catch_all("Done")).next("Nope")),
        [("Call", "Next `Nope` is not a state in this scope")]
    ),
    unknown_default_target(
        then_done(
            "Pick",
            choice_state(vec![to_done(status_is("Successful"))], Some("Nope"))
        ),
        [("Pick", "Default `Nope` is not a state in this scope")]
    ),
    unknown_choice_rule_next_target(
        around_rules(vec![
            to_done(status_is("Successful")),
            ChoiceRule::new(status_is("Failed"), "Nope")
        ]),
        [(
            "Pick > Choices[1]",
            "Next `Nope` is not a state in this scope"
        )]
    ),
    unknown_catch_next_target(
        around_task(catch_all("Nope")),
        [(
            "Call > Catch[0]",
            "Next `Nope` is not a state in this scope"
        )]
    ),
    next_into_outer_scope_is_rejected_inside_map(
        waves_then_report("Check", task_state(catch_all("Settle")).next("Report")),
        [(
            "Waves > ItemProcessor > Check",
            "Next `Report` is not a state in this scope"
        )]
    ),
    catch_into_outer_scope_is_rejected_inside_map(
        waves_then_report("Check", task_state(catch_all("Report")).next("Settle")),
        [(
            "Waves > ItemProcessor > Check > Catch[0]",
            "Next `Report` is not a state in this scope"
        )]
    ),
    choice_targets_into_outer_scope_are_rejected_inside_map(
        waves_then_report(
            "Poll",
            choice_state(
                vec![ChoiceRule::new(status_is("Failed"), "Report")],
                Some("Settle")
            )
        ),
        [(
            "Waves > ItemProcessor > Poll > Choices[0]",
            "Next `Report` is not a state in this scope"
        )]
    ),
    next_into_outer_scope_is_rejected_inside_parallel_branch(
        then_done(
            "Fan",
            State::new(Kind::Parallel(Parallel {
                branches: vec![
                    check_processor(),
                    Branch::new(
                        States::new()
                            .add("Work", task_state(catch_all("Stop")).next("Done"))
                            .add("Stop", succeed())
                    )
                ],
                ..Parallel::default()
            }))
            .next("Done")
        ),
        [(
            "Fan > Branches[1] > Work",
            "Next `Done` is not a state in this scope"
        )]
    ),
];

// Reachability and termination.

rejects![
    unreachable_state(
        machine(
            States::new()
                .add("First", pass().end())
                .add("Orphan", succeed())
        ),
        [("Orphan", "unreachable from StartAt")]
    ),
    unreachable_cycle_reports_each_state(
        machine(
            States::new()
                .add("First", pass().end())
                .add("Ping", pass().next("Pong"))
                .add("Pong", pass().next("Ping"))
        ),
        [
            ("Ping", "unreachable from StartAt"),
            ("Pong", "unreachable from StartAt")
        ]
    ),
    unreachable_state_inside_map(
        {
            let processor = Branch::new(
                States::new()
                    .add("Check", task_state(task()).end())
                    .add("Orphan", pass().end()),
            );
            around_processor(processor)
        },
        [("Waves > ItemProcessor > Orphan", "unreachable from StartAt")]
    ),
];

#[test]
fn states_reached_only_through_catch_choice_and_default_are_reachable() {
    let m = machine(
        States::new()
            .add(
                "Call",
                task_state(Task {
                    catch: vec![Catcher::new(&["States.ALL"], "Caught")],
                    ..task()
                })
                .next("Pick"),
            )
            .add(
                "Pick",
                choice_state(
                    vec![ChoiceRule::new(status_is("Ok"), "Ruled")],
                    Some("Defaulted"),
                ),
            )
            .add("Caught", fail())
            .add("Ruled", succeed())
            .add("Defaulted", succeed()),
    );
    assert_valid(&m);
}

rejects![
    no_terminal_state(
        machine(
            States::new()
                .add("Ping", pass().next("Pong"))
                .add("Pong", pass().next("Ping"))
        ),
        [("(root)", "no terminal state (End, Succeed or Fail)")]
    ),
    no_terminal_state_inside_map(
        {
            let processor = Branch::new(States::new().add(
                "Loop",
                State::new(Kind::Wait(Wait::seconds(5))).next("Loop"),
            ));
            around_processor(processor)
        },
        [("Waves > ItemProcessor", "no terminal state")]
    ),
];

// State names.

rejects![
    duplicate_name_within_a_scope(
        machine(
            States::new()
                .add("Step", pass().end())
                .add("Step", succeed())
        ),
        [("Step", "duplicate state name `Step`")]
    ),
    duplicate_name_across_scopes_outer_first(
        machine(States::new().add("Check", pass().next("Waves")).add(
            "Waves",
            State::new(Kind::Map(Map::new("$.asgs", check_processor()))).end()
        )),
        [(
            "Waves > ItemProcessor > Check",
            "duplicate state name `Check`"
        )]
    ),
    duplicate_name_across_scopes_inner_first(
        machine(
            States::new()
                .add(
                    "Waves",
                    State::new(Kind::Map(Map::new("$.asgs", check_processor()))).next("Check")
                )
                .add("Check", succeed())
        ),
        [("Check", "duplicate state name `Check`")]
    ),
    duplicate_name_across_parallel_branches(
        lone(
            "Fan",
            State::new(Kind::Parallel(Parallel {
                branches: vec![check_processor(), check_processor()],
                ..Parallel::default()
            }))
            .end()
        ),
        [("Fan > Branches[1] > Check", "duplicate state name `Check`")]
    ),
];

#[test]
fn state_name_longer_than_80_characters() {
    let long = "x".repeat(81);
    let m = machine(States::new().add(&long, succeed()));
    assert_errors(
        &m,
        &[(long.as_str(), "state names must be 1 to 80 characters")],
    );
    assert_valid(&machine(States::new().add(&"x".repeat(80), succeed())));
}

// StartAt and empty scopes.

rejects![
    start_at_missing(
        StateMachine {
            start_at: "Begin".to_string(),
            ..lone("Done", succeed())
        },
        [
            ("(root)", "StartAt `Begin` is not a state in this scope"),
            ("Done", "unreachable from StartAt")
        ]
    ),
    start_at_missing_inside_map(
        {
            let processor = Branch {
                start_at: "Begin".to_string(),
                ..check_processor()
            };
            around_processor(processor)
        },
        [
            (
                "Waves > ItemProcessor",
                "StartAt `Begin` is not a state in this scope"
            ),
            ("Waves > ItemProcessor > Check", "unreachable from StartAt")
        ]
    ),
];

#[test]
fn empty_machine_and_empty_processor() {
    assert_errors(&machine(States::new()), &[("(root)", "has no states")]);
    assert_errors(
        &around_processor(Branch::new(States::new())),
        &[("Waves > ItemProcessor", "has no states")],
    );
}

rejects![machine_timeout_must_be_positive(
    StateMachine {
        timeout_seconds: Some(0),
        ..lone("Done", succeed())
    },
    [("(root)", "TimeoutSeconds must be positive")]
),];

// Transitions by state type.

rejects![
    fail_with_next(
        then_done("Boom", fail().next("Done")),
        [("Boom", "Fail state cannot have Next")]
    ),
    fail_with_end(
        lone("Boom", fail().end()),
        [("Boom", "Fail state cannot have End")]
    ),
    succeed_with_end(
        lone("Done", succeed().end()),
        [("Done", "Succeed state cannot have End")]
    ),
    succeed_with_next(
        machine(
            States::new()
                .add("Done", succeed().next("After"))
                .add("After", succeed())
        ),
        [("Done", "Succeed state cannot have Next")]
    ),
    choice_with_next(
        then_done(
            "Pick",
            choice_state(vec![to_done(status_is("Ok"))], None).next("Done")
        ),
        [("Pick", "Choice state cannot have Next")]
    ),
    task_with_neither_next_nor_end(
        then_done("Call", task_state(catch_all("Done"))),
        [("Call", "Task state needs Next or End")]
    ),
    map_with_neither_next_nor_end(
        machine(
            States::new()
                .add("Start", pass().next("Waves"))
                .add(
                    "Waves",
                    State::new(Kind::Map(Map::new("$.asgs", check_processor())))
                )
                .add("Done", succeed())
        ),
        [
            ("Waves", "Map state needs Next or End"),
            ("Done", "unreachable from StartAt")
        ]
    ),
];

// Wait.

rejects![
    wait_with_no_timing_field(
        then_done(
            "Pause",
            State::new(Kind::Wait(Wait::default())).next("Done")
        ),
        [(
            "Pause",
            "Wait needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath (has 0)"
        )]
    ),
    wait_with_two_timing_fields(
        {
            let wait = Wait {
                timestamp: Some("2026-03-01T02:00:00Z".to_string()),
                ..Wait::seconds(30)
            };
            then_done("Pause", State::new(Kind::Wait(wait)).next("Done"))
        },
        [(
            "Pause",
            "exactly one of Seconds, SecondsPath, Timestamp, TimestampPath (has 2)"
        )]
    ),
    wait_with_invalid_seconds_path(
        then_done(
            "Pause",
            State::new(Kind::Wait(Wait::seconds_path("delay"))).next("Done")
        ),
        [("Pause", "`delay` does not start with `$`")]
    ),
];

// Choice rules.

rejects![
    choice_rule_with_no_comparator(
        around_rules(vec![to_done(Condition::Test {
            variable: "$.status".to_string(),
            comparators: vec![],
        })]),
        [(
            "Pick > Choices[0]",
            "rule on `$.status` needs exactly one comparison operator (has 0)"
        )]
    ),
    choice_rule_with_two_comparators(
        around_rules(vec![to_done(Condition::Test {
            variable: "$.status".to_string(),
            comparators: vec![
                Comparison::StringEquals("Ok".into()),
                Comparison::IsPresent(true)
            ],
        })]),
        [(
            "Pick > Choices[0]",
            "rule on `$.status` needs exactly one comparison operator (has 2)"
        )]
    ),
    nested_test_with_two_comparators_is_reported_on_its_rule(
        around_rules(vec![
            to_done(status_is("Ok")),
            to_done(Condition::and(vec![
                status_is("Ok"),
                Condition::not(Condition::Test {
                    variable: "$.count".to_string(),
                    comparators: vec![
                        Comparison::NumericEquals(1.0),
                        Comparison::NumericLessThan(3.0)
                    ],
                })
            ]))
        ]),
        [(
            "Pick > Choices[1]",
            "rule on `$.count` needs exactly one comparison operator (has 2)"
        )]
    ),
    empty_and(
        around_rules(vec![to_done(Condition::and(vec![]))]),
        [("Pick > Choices[0]", "And/Or needs at least one condition")]
    ),
    empty_or_inside_not(
        around_rules(vec![
            to_done(status_is("Ok")),
            to_done(Condition::not(Condition::or(vec![])))
        ]),
        [("Pick > Choices[1]", "And/Or needs at least one condition")]
    ),
    choice_without_rules(
        around_rules(vec![]),
        [("Pick", "Choice needs at least one rule")]
    ),
    choice_variable_and_operand_paths_are_checked(
        around_rules(vec![
            to_done(Condition::test(
                "status",
                Comparison::StringEquals("Ok".into())
            )),
            to_done(Condition::test(
                "$.status",
                Comparison::StringEqualsPath("$.expected[*]".into())
            )),
            to_done(Condition::test(
                "$$.Execution.Name",
                Comparison::StringEqualsPath("$$.Map.Item.Value".into())
            ))
        ]),
        [
            (
                "Pick > Choices[0]",
                "Variable `status` does not start with `$`"
            ),
            ("Pick > Choices[1]", "comparison path `$.expected[*]`")
        ]
    ),
];

// Map limits and Distributed-only fields.

/// A Map over `$.asgs` running `processor`, with fields set by `set`, inside `around_map`.
fn map_with(processor: Branch, set: impl FnOnce(&mut Map)) -> StateMachine {
    let mut map = Map::new("$.asgs", processor);
    set(&mut map);
    around_map(map)
}

/// An inline Map with fields set by `set`.
fn inline_map_with(set: impl FnOnce(&mut Map)) -> StateMachine {
    map_with(check_processor(), set)
}

/// A Distributed Map running Standard child executions, with fields set by `set`.
fn distributed_map_with(set: impl FnOnce(&mut Map)) -> StateMachine {
    map_with(check_processor().distributed(ExecutionType::Standard), set)
}

fn s3_reader() -> ItemReader {
    ItemReader {
        resource: "arn:aws:states:::s3:getObject".to_string(),
        reader_config: None,
        parameters: Some(Template::new().lit("Bucket", "plans").path("Key", "$.key")),
    }
}

rejects![
    inline_map_max_concurrency_41_is_rejected(
        inline_map_with(|map| map.max_concurrency = Some(41)),
        [(
            "Waves",
            "MaxConcurrency 41 is out of range: at most 40 for an inline Map"
        )]
    ),
    distributed_map_max_concurrency_10001_is_rejected(
        distributed_map_with(|map| map.max_concurrency = Some(10_001)),
        [(
            "Waves",
            "MaxConcurrency 10001 is out of range: at most 10000 for a Distributed Map"
        )]
    ),
    tolerated_failure_percentage_101_is_rejected(
        distributed_map_with(|map| map.tolerated_failure_percentage = Some(101.0)),
        [(
            "Waves",
            "ToleratedFailurePercentage 101 is out of range 0..=100"
        )]
    ),
    tolerated_failure_percentage_negative_is_rejected(
        distributed_map_with(|map| map.tolerated_failure_percentage = Some(-1.0)),
        [("Waves", "ToleratedFailurePercentage -1 is out of range")]
    ),
    inline_map_rejects_tolerated_failure_count(
        inline_map_with(|map| map.tolerated_failure_count = Some(1)),
        [(
            "Waves",
            "ToleratedFailureCount needs ProcessorConfig Mode DISTRIBUTED"
        )]
    ),
    inline_map_rejects_tolerated_failure_percentage(
        inline_map_with(|map| map.tolerated_failure_percentage = Some(10.0)),
        [(
            "Waves",
            "ToleratedFailurePercentage needs ProcessorConfig Mode DISTRIBUTED"
        )]
    ),
    inline_map_rejects_item_reader(
        inline_map_with(|map| {
            map.items_path = None;
            map.item_reader = Some(s3_reader());
        }),
        [("Waves", "ItemReader needs ProcessorConfig Mode DISTRIBUTED")]
    ),
    inline_map_rejects_item_batcher(
        inline_map_with(|map| {
            map.item_batcher = Some(ItemBatcher {
                max_items_per_batch: Some(10),
                ..ItemBatcher::default()
            })
        }),
        [(
            "Waves",
            "ItemBatcher needs ProcessorConfig Mode DISTRIBUTED"
        )]
    ),
    inline_map_rejects_label(
        inline_map_with(|map| map.label = Some("Refresh".to_string())),
        [("Waves", "Label needs ProcessorConfig Mode DISTRIBUTED")]
    ),
    explicit_inline_processor_config_is_still_inline(
        map_with(
            Branch {
                processor_config: Some(ProcessorConfig {
                    mode: ProcessorMode::Inline,
                    execution_type: None,
                }),
                ..check_processor()
            },
            |map| map.max_concurrency = Some(41),
        ),
        [("Waves", "at most 40 for an inline Map")]
    ),
    map_with_both_items_path_and_item_reader(
        distributed_map_with(|map| map.item_reader = Some(s3_reader())),
        [("Waves", "Map has both ItemsPath and ItemReader")]
    ),
    invalid_paths_in_item_reader_and_item_batcher_templates(
        distributed_map_with(|map| {
            map.items_path = None;
            map.item_reader = Some(ItemReader {
                parameters: Some(Template::new().path("Key", "key")),
                ..s3_reader()
            });
            map.item_batcher = Some(ItemBatcher {
                batch_input: Some(Template::new().path("wave", "$..wave")),
                ..ItemBatcher::default()
            });
        }),
        [
            ("Waves", "Parameters `Key`: `key` does not start with `$`"),
            ("Waves", "BatchInput `wave`"),
        ]
    ),
];

accepts![
    inline_map_max_concurrency_40_is_accepted(
        inline_map_with(|map| map.max_concurrency = Some(40))
    ),
    distributed_map_max_concurrency_10000_is_accepted(map_with(
        check_processor().distributed(ExecutionType::Express),
        |map| map.max_concurrency = Some(10_000),
    )),
    tolerated_failure_percentage_100_is_accepted(distributed_map_with(|map| map
        .tolerated_failure_percentage =
        Some(100.0))),
    distributed_map_accepts_distributed_only_fields(distributed_map_with(|map| {
        map.items_path = None;
        map.item_reader = Some(s3_reader());
        map.item_batcher = Some(ItemBatcher {
            max_items_per_batch: Some(10),
            max_input_bytes_per_batch: Some(65_536),
            batch_input: Some(Template::new().path("wave", "$.wave")),
        });
        map.tolerated_failure_count = Some(2);
        map.tolerated_failure_percentage = Some(5.0);
        map.label = Some("Refresh".to_string());
    })),
];

// Paths.

#[test]
fn invalid_result_paths() {
    for (path, problem) in [
        ("$.a[*]", "is not a reference path"),
        ("a.b", "does not start with `$`"),
        ("$..x", "has an empty field name"),
        ("$$.Execution.Id", "is a context path"),
    ] {
        let m = around_task(Task {
            result_path: PathOrNull::path(path),
            ..task()
        });
        assert_errors(&m, &[("Call", &format!("ResultPath `{path}` {problem}"))]);
    }
}

rejects![
    invalid_result_path_on_catcher(
        around_task(Task {
            catch: vec![Catcher::new(&["States.ALL"], "Done").result_path("$.a[*]")],
            ..task()
        }),
        [(
            "Call > Catch[0]",
            "ResultPath `$.a[*]` is not a reference path"
        )]
    ),
    invalid_result_path_on_pass_parallel_and_map(
        {
            let bad = PathOrNull::path("a.b");
            machine(
                States::new()
                    .add(
                        "Shape",
                        State::new(Kind::Pass(Pass {
                            result_path: bad.clone(),
                            ..Pass::default()
                        }))
                        .next("Fan"),
                    )
                    .add(
                        "Fan",
                        State::new(Kind::Parallel(Parallel {
                            branches: vec![check_processor()],
                            result_path: bad.clone(),
                            ..Parallel::default()
                        }))
                        .next("Waves"),
                    )
                    .add(
                        "Waves",
                        State::new(Kind::Map(Map {
                            result_path: bad,
                            ..Map::new("$.asgs", Branch::new(States::new().add("Inner", succeed())))
                        }))
                        .end(),
                    ),
            )
        },
        [
            ("Shape", "ResultPath `a.b`"),
            ("Fan", "ResultPath `a.b`"),
            ("Waves", "ResultPath `a.b`")
        ]
    ),
];

#[test]
fn null_result_and_filter_paths_are_accepted() {
    let m = around_task(Task {
        filters: Filters {
            input_path: Some(PathOrNull::Null),
            output_path: Some(PathOrNull::Null),
        },
        result_path: Some(PathOrNull::Null),
        ..task()
    });
    assert_valid(&m);
}

rejects![
    invalid_input_path(
        around_task(Task {
            filters: Filters {
                input_path: PathOrNull::path("request"),
                output_path: None,
            },
            ..task()
        }),
        [("Call", "InputPath `request` does not start with `$`")]
    ),
    invalid_output_path(
        around_task(Task {
            filters: Filters {
                input_path: None,
                output_path: PathOrNull::path("$.items[*]"),
            },
            ..task()
        }),
        [("Call", "OutputPath `$.items[*]` is not a reference path")]
    ),
    invalid_filters_on_every_state_type_that_has_them(
        {
            let filters = Filters {
                input_path: PathOrNull::path("in"),
                output_path: PathOrNull::path("out"),
            };
            machine(
                States::new()
                    .add(
                        "Shape",
                        State::new(Kind::Pass(Pass {
                            filters: filters.clone(),
                            ..Pass::default()
                        }))
                        .next("Pause"),
                    )
                    .add(
                        "Pause",
                        State::new(Kind::Wait(Wait {
                            filters: filters.clone(),
                            ..Wait::seconds(1)
                        }))
                        .next("Pick"),
                    )
                    .add(
                        "Pick",
                        State::new(Kind::Choice(Choice {
                            filters: filters.clone(),
                            choices: vec![to_done(status_is("Ok"))],
                            default: None,
                        })),
                    )
                    .add(
                        "Done",
                        State::new(Kind::Succeed(Succeed {
                            filters: filters.clone(),
                        })),
                    ),
            )
        },
        [
            ("Shape", "InputPath `in`"),
            ("Shape", "OutputPath `out`"),
            ("Pause", "InputPath `in`"),
            ("Pause", "OutputPath `out`"),
            ("Pick", "InputPath `in`"),
            ("Pick", "OutputPath `out`"),
            ("Done", "InputPath `in`"),
            ("Done", "OutputPath `out`")
        ]
    ),
    invalid_items_path(
        around_map(Map::new("$..asgs", check_processor())),
        [("Waves", "ItemsPath `$..asgs` has an empty field name")]
    ),
    invalid_template_path_in_parameters_names_the_key(
        around_task(Task {
            parameters: Some(
                Template::new()
                    .lit("FunctionName", "refresh")
                    .path("asg", "Map.Item.Value")
                    .path("context", "$$.Map.Item.Value")
            ),
            ..task()
        }),
        [(
            "Call",
            "Parameters `asg`: `Map.Item.Value` does not start with `$`"
        )]
    ),
    invalid_template_path_in_nested_object_and_intrinsic(
        around_task(Task {
            parameters: Some(
                Template::new()
                    .object("Payload", Template::new().path("ami", "$.ami[*]"))
                    .call(
                        "label",
                        Intrinsic::Format("wave-{}".into(), vec![Arg::path("$..wave")])
                    )
            ),
            ..task()
        }),
        [
            (
                "Call",
                "Parameters `Payload.ami`: `$.ami[*]` is not a reference path"
            ),
            (
                "Call",
                "Parameters `label`: `$..wave` has an empty field name"
            )
        ]
    ),
    invalid_template_paths_in_result_selector_and_item_selector(
        machine(
            States::new()
                .add(
                    "Call",
                    task_state(Task {
                        result_selector: Some(Template::new().path("status", "Payload.status")),
                        ..task()
                    })
                    .next("Waves")
                )
                .add(
                    "Waves",
                    State::new(Kind::Map(Map {
                        item_selector: Some(Template::new().path("asg", "$.a[x]")),
                        ..Map::new("$.asgs", check_processor())
                    }))
                    .end()
                )
        ),
        [
            (
                "Call",
                "ResultSelector `status`: `Payload.status` does not start with `$`"
            ),
            (
                "Waves",
                "ItemSelector `asg`: `$.a[x]` is not a reference path"
            )
        ]
    ),
    invalid_template_path_in_pass_and_parallel_parameters(
        machine(
            States::new()
                .add(
                    "Shape",
                    State::new(Kind::Pass(Pass {
                        parameters: Some(Template::new().path("x", "x")),
                        ..Pass::default()
                    }))
                    .next("Fan")
                )
                .add(
                    "Fan",
                    State::new(Kind::Parallel(Parallel {
                        branches: vec![check_processor()],
                        parameters: Some(Template::new().path("y", "y")),
                        ..Parallel::default()
                    }))
                    .end()
                )
        ),
        [("Shape", "Parameters `x`"), ("Fan", "Parameters `y`")]
    ),
];

// Task fields.

rejects![
    task_without_resource(
        around_task(Task::default()),
        [("Call", "Task needs a Resource")]
    ),
    heartbeat_equal_to_timeout(
        around_task(Task {
            timeout_seconds: Some(60),
            heartbeat_seconds: Some(60),
            ..task()
        }),
        [(
            "Call",
            "HeartbeatSeconds 60 must be less than TimeoutSeconds 60"
        )]
    ),
];

#[test]
fn heartbeat_greater_than_timeout() {
    let m = around_task(Task {
        timeout_seconds: Some(60),
        heartbeat_seconds: Some(90),
        ..task()
    });
    assert_errors(
        &m,
        &[(
            "Call",
            "HeartbeatSeconds 90 must be less than TimeoutSeconds 60",
        )],
    );
    assert_valid(&around_task(Task {
        timeout_seconds: Some(60),
        heartbeat_seconds: Some(59),
        ..task()
    }));
}

rejects![
    timeout_and_heartbeat_must_be_positive(
        around_task(Task {
            timeout_seconds: Some(0),
            ..task()
        }),
        [(
            "Call",
            "TimeoutSeconds and HeartbeatSeconds must be positive"
        )]
    ),
    timeout_and_timeout_path_together(
        around_task(Task {
            timeout_seconds: Some(60),
            timeout_seconds_path: Some("$.timeout".to_string()),
            ..task()
        }),
        [(
            "Call",
            "Task has both TimeoutSeconds and TimeoutSecondsPath"
        )]
    ),
    heartbeat_and_heartbeat_path_together(
        around_task(Task {
            heartbeat_seconds: Some(10),
            heartbeat_seconds_path: Some("$.heartbeat".to_string()),
            ..task()
        }),
        [(
            "Call",
            "Task has both HeartbeatSeconds and HeartbeatSecondsPath"
        )]
    ),
    invalid_timing_path(
        around_task(Task {
            timeout_seconds_path: Some("timeout".to_string()),
            ..task()
        }),
        [("Call", "timing path `timeout` does not start with `$`")]
    ),
];

// Retry and Catch.

rejects![
    states_all_not_last_retrier(
        around_task(Task {
            retry: vec![
                Retrier::new(&["States.ALL"]),
                Retrier::new(&["States.Timeout"])
            ],
            ..task()
        }),
        [(
            "Call > Retry[0]",
            "States.ALL must be alone and in the last retrier or catcher"
        )]
    ),
    states_all_not_alone_in_retrier(
        around_task(Task {
            retry: vec![
                Retrier::new(&["States.Timeout"]),
                Retrier::new(&["States.ALL", "States.TaskFailed"])
            ],
            ..task()
        }),
        [("Call > Retry[1]", "States.ALL must be alone")]
    ),
    states_all_not_last_catcher(
        around_task(Task {
            catch: vec![
                Catcher::new(&["States.ALL"], "Done"),
                Catcher::new(&["States.Timeout"], "Done")
            ],
            ..task()
        }),
        [(
            "Call > Catch[0]",
            "States.ALL must be alone and in the last retrier or catcher"
        )]
    ),
    states_all_not_alone_in_catcher(
        around_task(Task {
            catch: vec![Catcher::new(&["States.Timeout", "States.ALL"], "Done")],
            ..task()
        }),
        [("Call > Catch[0]", "States.ALL must be alone")]
    ),
    empty_error_equals(
        around_task(Task {
            retry: vec![Retrier::new(&[])],
            catch: vec![Catcher::new(&[], "Done")],
            ..task()
        }),
        [
            ("Call > Retry[0]", "ErrorEquals is empty"),
            ("Call > Catch[0]", "ErrorEquals is empty")
        ]
    ),
];

#[test]
fn backoff_rate_below_one() {
    let m = around_task(Task {
        retry: vec![Retrier::new(&["States.Timeout"]).backoff(0.5)],
        ..task()
    });
    assert_errors(
        &m,
        &[("Call > Retry[0]", "BackoffRate must be at least 1.0")],
    );
    assert_valid(&around_task(Task {
        retry: vec![Retrier::new(&["States.Timeout"]).backoff(1.0)],
        ..task()
    }));
}

rejects![
    interval_seconds_zero(
        around_task(Task {
            retry: vec![Retrier::new(&["States.Timeout"]).interval(0)],
            ..task()
        }),
        [("Call > Retry[0]", "IntervalSeconds must be positive")]
    ),
    retry_and_catch_are_checked_on_parallel_and_map(
        machine(
            States::new()
                .add(
                    "Fan",
                    State::new(Kind::Parallel(Parallel {
                        branches: vec![check_processor()],
                        retry: vec![Retrier::new(&["States.ALL"]).backoff(0.1)],
                        ..Parallel::default()
                    }))
                    .next("Waves")
                )
                .add(
                    "Waves",
                    State::new(Kind::Map(Map {
                        catch: vec![Catcher::new(&["States.ALL"], "Nope")],
                        ..Map::new("$.asgs", Branch::new(States::new().add("Inner", succeed())))
                    }))
                    .end()
                )
        ),
        [
            ("Fan > Retry[0]", "BackoffRate must be at least 1.0"),
            ("Waves > Catch[0]", "Next `Nope`")
        ]
    ),
];

// Fail.

rejects![
    fail_with_error_and_error_path(
        lone(
            "Boom",
            State::new(Kind::Fail(Fail {
                error: Some("RefreshFailed".to_string()),
                error_path: Some("$.error.Error".to_string()),
                ..Fail::default()
            }))
        ),
        [("Boom", "Fail has both Error and ErrorPath")]
    ),
    fail_with_cause_and_cause_path(
        lone(
            "Boom",
            State::new(Kind::Fail(Fail {
                cause: Some("Refresh failed.".to_string()),
                cause_path: Some("$.error.Cause".to_string()),
                ..Fail::default()
            }))
        ),
        [("Boom", "Fail has both Cause and CausePath")]
    ),
    fail_with_invalid_error_path(
        lone(
            "Boom",
            State::new(Kind::Fail(Fail {
                error_path: Some("error".to_string()),
                cause_path: Some("$$.Execution.Name".to_string()),
                ..Fail::default()
            }))
        ),
        [("Boom", "Fail path `error` does not start with `$`")]
    ),
];

// Parallel.

rejects![
    parallel_without_branches(
        lone("Fan", State::new(Kind::Parallel(Parallel::default())).end()),
        [("Fan", "Parallel needs at least one branch")]
    ),
    parallel_branch_with_processor_config(
        lone(
            "Fan",
            State::new(Kind::Parallel(Parallel {
                branches: vec![check_processor().distributed(ExecutionType::Standard)],
                ..Parallel::default()
            }))
            .end()
        ),
        [("Fan", "a Parallel branch cannot have a ProcessorConfig")]
    ),
];

// Reporting.

#[test]
fn every_problem_is_reported_in_definition_order() {
    let m = machine(
        States::new()
            .add("Call", task_state(Task::default()).next("Nope"))
            .add("Pause", State::new(Kind::Wait(Wait::default())).end())
            .add("Boom", fail().end()),
    );
    assert_errors(
        &m,
        &[
            ("Call", "Next `Nope`"),
            ("Call", "Task needs a Resource"),
            ("Pause", "Wait needs exactly one"),
            ("Boom", "Fail state cannot have End"),
            ("Pause", "unreachable from StartAt"),
            ("Boom", "unreachable from StartAt"),
        ],
    );
    let text = validate(&m).unwrap_err().to_string();
    assert!(
        text.starts_with(
            "invalid state machine:\n  Call: Next `Nope` is not a state in this scope\n"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 7, "{text}");
}

// A realistic machine.

/// Waves of ASGs: an inline Map over the waves, each running a Distributed Map over the
/// wave's ASGs, each of which starts an instance refresh and polls it until it settles.
fn rollout() -> StateMachine {
    rollout_with_poll_default("Pause")
}

/// The rollout machine, with the poll loop's Choice defaulting to `poll_default`.
fn rollout_with_poll_default(poll_default: &str) -> StateMachine {
    let refresh_one = Branch::new(
        States::new()
            .add(
                "Start refresh",
                task_state(Task {
                    parameters: Some(Template::new().lit("FunctionName", "start-refresh").object(
                        "Payload",
                        Template::new().path("asg", "$.asg").path("ami", "$.ami"),
                    )),
                    result_selector: Some(Template::new().path("id", "$.Payload.refreshId")),
                    result_path: PathOrNull::path("$.refresh"),
                    retry: vec![
                        Retrier::new(&["Lambda.TooManyRequestsException"])
                            .interval(2)
                            .attempts(6)
                            .backoff(2.0)
                            .max_delay(60)
                            .jitter(JitterStrategy::Full),
                        Retrier::new(&["States.ALL"]).attempts(2),
                    ],
                    catch: vec![
                        Catcher::new(&["States.ALL"], "Refresh failed").result_path("$.error")
                    ],
                    ..task()
                })
                .next("Pause"),
            )
            .add("Pause", wait_then(30, "Poll"))
            .add(
                "Poll",
                task_state(Task {
                    parameters: Some(
                        Template::new()
                            .lit("FunctionName", "describe-refresh")
                            .object(
                                "Payload",
                                Template::new()
                                    .path("asg", "$.asg")
                                    .path("id", "$.refresh.id"),
                            ),
                    ),
                    result_selector: Some(
                        Template::new()
                            .path("status", "$.Payload.status")
                            .path("percent", "$.Payload.percent"),
                    ),
                    result_path: PathOrNull::path("$.poll"),
                    timeout_seconds: Some(60),
                    heartbeat_seconds: Some(30),
                    ..task()
                })
                .next("IsSettled"),
            )
            .add(
                "IsSettled",
                choice_state(
                    vec![
                        ChoiceRule::new(
                            Condition::test(
                                "$.poll.status",
                                Comparison::StringEquals("Successful".into()),
                            ),
                            "Refreshed",
                        ),
                        ChoiceRule::new(
                            Condition::or(vec![
                                Condition::test(
                                    "$.poll.status",
                                    Comparison::StringEquals("Failed".into()),
                                ),
                                Condition::test(
                                    "$.poll.status",
                                    Comparison::StringEquals("Cancelled".into()),
                                ),
                            ]),
                            "Refresh failed",
                        ),
                    ],
                    Some(poll_default),
                ),
            )
            .add("Refreshed", succeed())
            .add(
                "Refresh failed",
                State::new(Kind::Fail(Fail {
                    error: Some("RefreshFailed".to_string()),
                    cause_path: Some("$.poll.status".to_string()),
                    ..Fail::default()
                })),
            ),
    )
    .distributed(ExecutionType::Standard);

    let one_wave =
        Branch::new(
            States::new()
                .add(
                    "RefreshAsgs",
                    State::new(Kind::Map(Map {
                        item_selector: Some(
                            Template::new()
                                .path("asg", "$$.Map.Item.Value")
                                .path("ami", "$.ami"),
                        ),
                        max_concurrency: Some(100),
                        tolerated_failure_percentage: Some(0.0),
                        label: Some("RefreshASGs".to_string()),
                        result_path: PathOrNull::path("$.results"),
                        catch: vec![
                            Catcher::new(&["States.ALL"], "Wave failed").result_path("$.error")
                        ],
                        ..Map::new("$.wave.asgs", refresh_one)
                    }))
                    .next("Check"),
                )
                .add(
                    "Check",
                    task_state(Task {
                        parameters: Some(Template::new().path("asgs", "$.wave.asgs")),
                        result_path: PathOrNull::path("$.health"),
                        ..task()
                    })
                    .next("Healthy?"),
                )
                .add(
                    "Healthy?",
                    choice_state(
                        vec![ChoiceRule::new(
                            Condition::test("$.health.ok", Comparison::BooleanEquals(true)),
                            "Wave done",
                        )],
                        Some("Wave failed"),
                    ),
                )
                .add("Wave done", succeed())
                .add(
                    "Wave failed",
                    State::new(Kind::Fail(Fail {
                        error: Some("WaveFailed".to_string()),
                        cause: Some("A wave did not become healthy.".to_string()),
                        ..Fail::default()
                    })),
                ),
        );

    let states = States::new()
        .add(
            "Plan",
            task_state(Task {
                parameters: Some(Template::new().path("Payload", "$")),
                result_selector: Some(Template::new().path("waves", "$.Payload.waves")),
                result_path: PathOrNull::path("$.plan"),
                retry: vec![Retrier::new(&["States.ALL"]).attempts(3).backoff(2.0)],
                ..task()
            })
            .next("Waves"),
        )
        .add(
            "Waves",
            State::new(Kind::Map(Map {
                item_selector: Some(
                    Template::new()
                        .path("wave", "$$.Map.Item.Value")
                        .path("ami", "$.ami")
                        .call(
                            "label",
                            Intrinsic::Format(
                                "wave-{}".into(),
                                vec![Arg::path("$$.Map.Item.Index")],
                            ),
                        ),
                ),
                max_concurrency: Some(1),
                result_path: Some(PathOrNull::Null),
                catch: vec![Catcher::new(&["States.ALL"], "Roll back").result_path("$.error")],
                ..Map::new("$.plan.waves", one_wave)
            }))
            .comment("Waves run one at a time.")
            .next("Done"),
        )
        .add(
            "Roll back",
            task_state(Task {
                parameters: Some(Template::new().path("error", "$.error")),
                result_path: Some(PathOrNull::Null),
                ..task()
            })
            .next("Failed"),
        )
        .add("Done", succeed())
        .add("Failed", fail_from("$.error"));
    machine_of(states, "Rolls a new AMI out wave by wave.", 86_400)
}

#[test]
fn realistic_nested_machine_is_valid() {
    let m = rollout();
    assert_valid(&m);
    assert!(m.to_json().contains(r#""Mode": "DISTRIBUTED""#));
    let found: Vec<(String, bool)> = scopes(&m)
        .into_iter()
        .map(|(at, branch)| (at, branch.is_distributed()))
        .collect();
    assert_eq!(
        found,
        [
            ("Waves > ItemProcessor".to_string(), false),
            (
                "Waves > ItemProcessor > RefreshAsgs > ItemProcessor".to_string(),
                true
            ),
        ]
    );
}

#[test]
fn breaking_the_realistic_machine_deep_inside_reports_the_full_path() {
    // The poll loop's Default names a state that exists only in the outermost scope.
    let m = rollout_with_poll_default("Done");
    assert_errors(
        &m,
        &[(
            "Waves > ItemProcessor > RefreshAsgs > ItemProcessor > IsSettled",
            "Default `Done` is not a state in this scope",
        )],
    );
}
