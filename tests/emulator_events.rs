//! The extended emulator's EventBridge side through the AWS SDK: instance-refresh events on
//! each transition (tests/emulator/refresh_events.py), delivered to a Lambda target only with
//! a resource policy admitting events.amazonaws.com for the rule, after the set delay, dropped
//! at the set rate with a seed, retried on a function error; what PutRule, PutTargets and
//! AddPermission refuse (eventbridge_rules.py); the counters of `/emulator/stats`
//! (api_stats.py). The target is a small recorder `bootstrap` (a Python script under the
//! Runtime API) that appends every event it gets to a file. Every wait has a deadline.

mod e2e;
#[path = "support/refresh.rs"]
mod refresh;
#[path = "support/sfn.rs"]
mod sfn;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use asg_refresh_tests::{stored_zip, venv_python_path, Moto};
use aws_sdk_autoscaling::types::RefreshPreferences;
use aws_sdk_eventbridge::error::SdkError;
use aws_sdk_eventbridge::operation::put_targets::{PutTargetsError, PutTargetsOutput};
use aws_sdk_eventbridge::types::Target;
use aws_sdk_lambda::operation::add_permission::{AddPermissionError, AddPermissionOutput};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
use e2e::{fleet, start_emulator, tempfile_dir};
use refresh::{refreshes, start_refresh, FAILS_AFTER_1S};
use serde_json::{json, Value};

const PREFIX: &str = "EC2 Auto Scaling Instance Refresh ";
const DEADLINE: Duration = Duration::from_secs(60);

/// The pattern the stack's rule uses in spirit: every instance-refresh event.
fn pattern() -> String {
    json!({
        "source": ["aws.autoscaling"],
        "detail-type": [{"prefix": PREFIX}],
    })
    .to_string()
}

/// A Lambda function that appends each event it receives (one JSON line) to `file`, and
/// answers with an error instead when `fail` is set.
struct Recorder {
    file: PathBuf,
    arn: String,
}

impl Recorder {
    async fn create(config: &aws_config::SdkConfig, name: &str, fail: bool) -> Self {
        let file = tempfile_dir(&format!("events-{name}")).join("events.jsonl");
        let script = format!(
            "#!{python}\n\
             import os, urllib.request\n\
             api = 'http://' + os.environ['AWS_LAMBDA_RUNTIME_API'] + '/2018-06-01/runtime'\n\
             while True:\n\
             \x20   with urllib.request.urlopen(api + '/invocation/next') as r:\n\
             \x20       rid = r.headers['Lambda-Runtime-Aws-Request-Id']\n\
             \x20       event = r.read()\n\
             \x20   with open(os.environ['RECORD_FILE'], 'ab') as f:\n\
             \x20       f.write(event.replace(b'\\n', b' ') + b'\\n')\n\
             \x20   kind = 'error' if os.environ.get('FAIL') == '1' else 'response'\n\
             \x20   request = urllib.request.Request(api + '/invocation/' + rid + '/' + kind, data=b'{{}}', method='POST')\n\
             \x20   urllib.request.urlopen(request).read()\n",
            python = venv_python_path().display()
        );
        let role = aws_sdk_iam::Client::new(config)
            .create_role()
            .role_name(format!("{name}-role"))
            .assume_role_policy_document(
                json!({
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
                })
                .to_string(),
            )
            .send()
            .await
            .expect("create role");
        let role_arn = role.role().map(|r| r.arn().to_string()).expect("role arn");
        let mut variables = vec![("RECORD_FILE", file.display().to_string())];
        if fail {
            variables.push(("FAIL", "1".to_string()));
        }
        let created = aws_sdk_lambda::Client::new(config)
            .create_function()
            .function_name(name)
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .role(role_arn)
            .timeout(10)
            .environment(
                Environment::builder()
                    .set_variables(Some(
                        variables
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    ))
                    .build(),
            )
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(stored_zip("bootstrap", script.as_bytes())))
                    .build(),
            )
            .send()
            .await
            .expect("create function");
        Self {
            file,
            arn: created.function_arn().expect("function arn").to_string(),
        }
    }

    /// Every event received so far.
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("recorded {l}: {e}")))
            .collect()
    }
}

/// A rule on the default bus with the refresh pattern; returns its ARN.
async fn rule(config: &aws_config::SdkConfig, name: &str) -> String {
    aws_sdk_eventbridge::Client::new(config)
        .put_rule()
        .name(name)
        .event_pattern(pattern())
        .send()
        .await
        .expect("put rule")
        .rule_arn()
        .expect("rule arn")
        .to_string()
}

async fn target(config: &aws_config::SdkConfig, rule: &str, id: &str, arn: &str) {
    let events = aws_sdk_eventbridge::Client::new(config);
    let out = put_target(&events, rule, id, arn)
        .await
        .expect("put targets");
    assert_eq!(out.failed_entry_count(), 0);
}

/// PutTargets of the single target `id` (the function `arn`) on `rule`.
async fn put_target(
    events: &aws_sdk_eventbridge::Client,
    rule: &str,
    id: &str,
    arn: &str,
) -> Result<PutTargetsOutput, SdkError<PutTargetsError>> {
    let target = Target::builder().id(id).arn(arn).build().expect("target");
    events.put_targets().rule(rule).targets(target).send().await
}

/// AddPermission for events.amazonaws.com, scoped to `source_arn`.
async fn permit(
    config: &aws_config::SdkConfig,
    function: &str,
    sid: &str,
    principal: &str,
    source_arn: &str,
) {
    add_permission(config, function, sid, principal, Some(source_arn))
        .await
        .expect("add permission");
}

/// AddPermission of lambda:InvokeFunction on `function` for `principal`, scoped to
/// `source_arn` when given.
async fn add_permission(
    config: &aws_config::SdkConfig,
    function: &str,
    sid: &str,
    principal: &str,
    source_arn: Option<&str>,
) -> Result<AddPermissionOutput, SdkError<AddPermissionError>> {
    aws_sdk_lambda::Client::new(config)
        .add_permission()
        .function_name(function)
        .statement_id(sid)
        .action("lambda:InvokeFunction")
        .principal(principal)
        .set_source_arn(source_arn.map(str::to_string))
        .send()
        .await
}

/// The recorder `name` (failing every call with `fail`), the target of the rule
/// `refresh-events`, which may invoke it.
async fn delivered_to(config: &aws_config::SdkConfig, name: &str, fail: bool) -> Recorder {
    let recorder = Recorder::create(config, name, fail).await;
    let arn = rule(config, "refresh-events").await;
    target(config, "refresh-events", name, &recorder.arn).await;
    permit(config, name, "events", "events.amazonaws.com", &arn).await;
    recorder
}

async fn start(
    config: &aws_config::SdkConfig,
    asg: &str,
    template: &str,
    checkpoints: &[i32],
) -> String {
    let mut preferences = RefreshPreferences::builder();
    if !checkpoints.is_empty() {
        preferences = preferences
            .set_checkpoint_percentages(Some(checkpoints.to_vec()))
            .checkpoint_delay(60);
    }
    start_refresh(config, asg, template, Some(preferences.build())).await
}

async fn status(config: &aws_config::SdkConfig, asg: &str) -> String {
    refreshes(config, asg, None)
        .await
        .first()
        .and_then(|r| r.status())
        .map(|s| s.as_str().to_string())
        .unwrap_or_default()
}

/// Polls `done` every 100 ms until it returns `Some`, failing with `what` after `deadline`.
async fn wait_for<T>(what: &str, deadline: Duration, mut done: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every event emitted so far has no delivery still to come (none queued, none
/// due, every delivered one invoked to the end).
async fn settled(moto: &Moto, emitted: u64) -> Value {
    wait_for("every event routed and delivered", DEADLINE, || {
        let events = moto.events();
        let routed = events["emitted"].as_u64() == Some(emitted) && events["pending"] == 0;
        let running = events["log"].as_array().into_iter().flatten().any(|e| {
            e["deliveries"].as_array().into_iter().flatten().any(|d| {
                d["outcome"].is_null() || (d["outcome"] == "delivered" && d["done"].is_null())
            })
        });
        (routed && !running).then_some(events)
    })
    .await
}

/// The log's detail-types per ASG, in the order they were emitted (suffixes after the prefix).
fn emitted_per_asg(events: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in events["log"].as_array().expect("log") {
        let kind = entry["detail-type"].as_str().expect("detail-type");
        out.entry(entry["asg"].as_str().expect("asg").to_string())
            .or_default()
            .push(kind.trim_start_matches(PREFIX).to_string());
    }
    out
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_emits_its_event_and_the_permitted_target_gets_each_once() {
    let (moto, config) = start_emulator().await;
    let recorder = delivered_to(&config, "recorder", false).await;

    let ok = fleet(&config, "ok-1", &[("emulator:refresh-seconds", "2")]).await;
    let failed = fleet(&config, "failed-1", &FAILS_AFTER_1S).await;
    let long = [
        ("emulator:refresh-seconds", "60"),
        ("emulator:cancel-seconds", "0.5"),
        ("emulator:rollback-seconds", "0.5"),
    ];
    let cancel = fleet(&config, "cancel-1", &long).await;
    let rollback = fleet(&config, "rollback-1", &long).await;
    let mut failing_rollback = long.to_vec();
    failing_rollback.push(("emulator:rollback-outcome", "RollbackFailed"));
    let rollback_failed = fleet(&config, "rollback-failed-1", &failing_rollback).await;

    let ok_id = start(&config, "ok-1", &ok, &[50, 100]).await;
    start(&config, "failed-1", &failed, &[]).await;
    for (asg, template) in [
        ("cancel-1", &cancel),
        ("rollback-1", &rollback),
        ("rollback-failed-1", &rollback_failed),
    ] {
        start(&config, asg, template, &[]).await;
    }
    // Cancel and roll back once InProgress (Started has gone out by then).
    for asg in ["cancel-1", "rollback-1", "rollback-failed-1"] {
        let until = Instant::now() + DEADLINE;
        while status(&config, asg).await != "InProgress" {
            assert!(Instant::now() < until, "{asg} never InProgress");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    autoscaling
        .cancel_instance_refresh()
        .auto_scaling_group_name("cancel-1")
        .send()
        .await
        .expect("cancel");
    for asg in ["rollback-1", "rollback-failed-1"] {
        autoscaling
            .rollback_instance_refresh()
            .auto_scaling_group_name(asg)
            .send()
            .await
            .expect("rollback");
    }
    let expected: BTreeMap<String, Vec<String>> = [
        (
            "ok-1",
            strings(&[
                "Started",
                "Checkpoint Reached",
                "Checkpoint Reached",
                "Succeeded",
            ]),
        ),
        ("failed-1", strings(&["Started", "Failed"])),
        ("cancel-1", strings(&["Started", "Cancelled"])),
        (
            "rollback-1",
            strings(&["Started", "Rollback Started", "Rollback Succeeded"]),
        ),
        (
            "rollback-failed-1",
            strings(&["Started", "Rollback Started", "Rollback Failed"]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let total: u64 = expected.values().map(|v| v.len() as u64).sum();
    let events = settled(&moto, total).await;
    assert_eq!(emitted_per_asg(&events), expected);
    let counters = &events["by_rule"]["refresh-events"];
    assert_eq!(counters["matched"], total, "{counters}");
    assert_eq!(counters["delivered"], total, "{counters}");
    assert_eq!(counters["invocations"], total, "{counters}");
    assert_eq!(counters["denied"], 0, "{counters}");

    // The target got each event once, as EC2 Auto Scaling shapes it.
    let received = recorder.events();
    assert_eq!(received.len() as u64, total, "{received:#?}");
    let mut ids: Vec<&str> = received
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, total, "an event arrived twice");
    let ok_events: Vec<&Value> = received
        .iter()
        .filter(|e| e["detail"]["AutoScalingGroupName"] == "ok-1")
        .collect();
    for event in &ok_events {
        assert_eq!(event["source"], "aws.autoscaling");
        assert_eq!(event["version"], "0");
        assert_eq!(event["account"], "123456789012");
        assert_eq!(event["region"], "us-east-1");
        assert_eq!(event["detail"]["InstanceRefreshId"], ok_id.as_str());
        let resource = event["resources"][0].as_str().expect("the group's ARN");
        assert!(
            resource.starts_with("arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:"),
            "{resource}"
        );
        assert!(
            resource.ends_with(":autoScalingGroupName/ok-1"),
            "{resource}"
        );
    }
    let mut checkpoints: Vec<(String, String)> = ok_events
        .iter()
        .filter(|e| e["detail-type"] == format!("{PREFIX}Checkpoint Reached"))
        .map(|e| {
            (
                e["detail"]["CheckpointPercentage"]
                    .as_str()
                    .expect("a string")
                    .to_string(),
                e["detail"]["CheckpointDelay"]
                    .as_str()
                    .expect("a string")
                    .to_string(),
            )
        })
        .collect();
    checkpoints.sort();
    assert_eq!(
        checkpoints,
        [
            ("100".to_string(), "60".to_string()),
            ("50".to_string(), "60".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_permission_for_the_rule_nothing_is_delivered() {
    let (moto, config) = start_emulator().await;
    let recorder = Recorder::create(&config, "recorder", false).await;
    // Four rules, all targeting the recorder; only "allowed" has a permission that fits it.
    let allowed = rule(&config, "allowed").await;
    rule(&config, "no-permission").await;
    let other_principal = rule(&config, "other-principal").await;
    rule(&config, "other-rule").await;
    for name in ["allowed", "no-permission", "other-principal", "other-rule"] {
        target(&config, name, "recorder", &recorder.arn).await;
    }
    permit(
        &config,
        "recorder",
        "allowed",
        "events.amazonaws.com",
        &allowed,
    )
    .await;
    permit(
        &config,
        "recorder",
        "sns",
        "sns.amazonaws.com",
        &other_principal,
    )
    .await;
    // "other-rule" has none of its own: the permission of "allowed" names another rule's ARN.

    let template = fleet(&config, "web-1", &[("emulator:refresh-seconds", "0.5")]).await;
    start(&config, "web-1", &template, &[]).await;
    let events = settled(&moto, 2).await;
    let counters = |rule: &str| events["by_rule"][rule].clone();
    assert_eq!(counters("allowed")["delivered"], 2, "{events}");
    for rule in ["no-permission", "other-principal", "other-rule"] {
        assert_eq!(counters(rule)["matched"], 2, "{rule}: {events}");
        assert_eq!(counters(rule)["denied"], 2, "{rule}: {events}");
        assert_eq!(counters(rule)["delivered"], 0, "{rule}: {events}");
        assert_eq!(counters(rule)["invocations"], 0, "{rule}: {events}");
    }
    let received: Vec<String> = recorder
        .events()
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(received.len(), 2, "{received:?}");

    // A disabled rule matches nothing.
    aws_sdk_eventbridge::Client::new(&config)
        .disable_rule()
        .name("allowed")
        .send()
        .await
        .expect("disable rule");
    moto.clear_events();
    start(&config, "web-1", &template, &[]).await;
    let events = settled(&moto, 2).await;
    assert!(events["by_rule"].get("allowed").is_none(), "{events}");
    assert_eq!(recorder.events().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_waits_the_set_delay() {
    let (moto, config) = start_emulator().await;
    let recorder = delivered_to(&config, "recorder", false).await;
    moto.set_events(&json!({"delay_ms": 1500, "jitter_ms": 500, "seed": 3}));
    let template = fleet(&config, "web-1", &[("emulator:refresh-seconds", "1")]).await;
    start(&config, "web-1", &template, &[]).await;
    let events = settled(&moto, 2).await;
    for entry in events["log"].as_array().expect("log") {
        let t = entry["t"].as_f64().expect("t");
        let delivery = &entry["deliveries"][0];
        let invoked = delivery["invoked"].as_f64().expect("invoked");
        let due = delivery["due"].as_f64().expect("due");
        assert!(
            (1.5..=2.0).contains(&(due - t)),
            "due {due} for an event at {t}"
        );
        assert!(
            invoked >= due,
            "invoked at {invoked}, before it was due at {due}"
        );
    }
    assert_eq!(recorder.events().len(), 2);
    // The end event's delivery comes after the refresh ended by at least the delay.
    let log = moto.refresh_log();
    let end = log["events"]
        .as_array()
        .expect("refresh log")
        .iter()
        .find(|e| e["event"] == "end")
        .and_then(|e| e["t"].as_f64())
        .expect("the refresh ended");
    let succeeded = events["log"]
        .as_array()
        .expect("log")
        .iter()
        .find(|e| e["detail-type"] == format!("{PREFIX}Succeeded"))
        .expect("a Succeeded event");
    assert!((succeeded["t"].as_f64().expect("t") - end).abs() < 1e-6);
    assert!(
        succeeded["deliveries"][0]["invoked"]
            .as_f64()
            .expect("invoked")
            - end
            >= 1.5
    );
}

/// Runs `n` refreshes of 0.2 s (one per ASG `prefix-i`) and waits for their 2n events.
async fn refresh_many(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    prefix: &str,
    n: usize,
) -> Value {
    let before = moto.events()["emitted"].as_u64().expect("emitted");
    for i in 0..n {
        let asg = format!("{prefix}-{i}");
        let template = fleet(config, &asg, &[("emulator:refresh-seconds", "0.2")]).await;
        start(config, &asg, &template, &[]).await;
    }
    settled(moto, before + 2 * n as u64).await
}

/// The counters of the rule `refresh-events` after [`refresh_many`] under the delivery
/// `settings`, the events' log cleared first.
async fn counters_under(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    settings: Value,
    prefix: &str,
    count: usize,
) -> Value {
    moto.clear_events();
    moto.set_events(&settings);
    refresh_many(moto, config, prefix, count).await["by_rule"]["refresh-events"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_drops_the_set_share_and_a_seed_repeats_it() {
    let (moto, config) = start_emulator().await;
    let recorder = delivered_to(&config, "recorder", false).await;

    let first = counters_under(&moto, &config, json!({"loss": 0.3, "seed": 7}), "a", 20).await;
    let dropped = first["dropped"].as_u64().expect("dropped");
    // 40 events at 30 %: 12 expected; a seeded draw, so this is a fixed number in [4, 20].
    assert!((4..=20).contains(&dropped), "{first}");
    assert_eq!(
        first["delivered"].as_u64().expect("delivered") + dropped,
        40,
        "{first}"
    );
    assert_eq!(recorder.events().len() as u64, 40 - dropped);

    // The same seed drops the same number out of the same number of events.
    let second = counters_under(&moto, &config, json!({"loss": 0.3, "seed": 7}), "b", 20).await;
    assert_eq!(second["dropped"], dropped, "{second}");

    // No loss, and total loss.
    let none = counters_under(&moto, &config, json!({"loss": 0.0}), "c", 5).await;
    assert_eq!(none["dropped"], 0);
    let all = counters_under(&moto, &config, json!({"loss": 1.0}), "d", 5).await;
    assert_eq!(
        (all["dropped"].as_u64(), all["delivered"].as_u64()),
        (Some(10), Some(0)),
        "{all}"
    );

    // Duplicates: every event delivered twice.
    let twice = counters_under(&moto, &config, json!({"duplicate": 1.0}), "e", 3).await;
    assert_eq!(
        (twice["duplicated"].as_u64(), twice["delivered"].as_u64()),
        (Some(6), Some(12)),
        "{twice}"
    );

    // Settings outside their range are refused.
    for bad in [
        json!({"loss": 1.5}),
        json!({"delay_ms": -1}),
        json!({"lag": 1}),
    ] {
        assert!(
            moto.request("POST", "/emulator/events", &bad.to_string())
                .is_err(),
            "{bad} accepted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_is_retried_twice() {
    let (moto, config) = start_emulator().await;
    let recorder = delivered_to(&config, "failing", true).await;
    moto.set_events(&json!({"retry_delay_ms": 200}));
    let template = fleet(&config, "web-1", &[("emulator:refresh-seconds", "0.3")]).await;
    start(&config, "web-1", &template, &[]).await;
    // An attempt counts as an invocation when it starts and as an error when the function
    // has answered: wait for both.
    wait_for("three attempts per event, each answered", DEADLINE, || {
        let events = moto.events();
        let counters = &events["by_rule"]["refresh-events"];
        (counters["invocations"] == 6 && counters["errors"] == 6 && events["pending"] == 0)
            .then_some(())
    })
    .await;
    // Give a fourth attempt the time it would need to show up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let counters = moto.events()["by_rule"]["refresh-events"].clone();
    assert_eq!(counters["delivered"], 2, "{counters}");
    assert_eq!(counters["invocations"], 6, "{counters}");
    assert_eq!(counters["errors"], 6, "{counters}");
    assert_eq!(recorder.events().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_targets_and_permissions_aws_refuses_are_refused() {
    let (_moto, config) = start_emulator().await;
    let events = aws_sdk_eventbridge::Client::new(&config);
    let code = |e: &dyn aws_sdk_eventbridge::error::ProvideErrorMetadata| {
        e.code().unwrap_or_default().to_string()
    };

    // Rule names: 1 to 64 of [.-_A-Za-z0-9] (API_PutRule).
    for name in ["has space", "slash/no", &"x".repeat(65)] {
        let error = events
            .put_rule()
            .name(name)
            .event_pattern(pattern())
            .send()
            .await
            .expect_err(name);
        assert_eq!(code(&error), "ValidationException", "{name}: {error:?}");
    }
    // Patterns: valid JSON of objects and non-empty arrays, at most 2,048 characters (quota).
    for (bad, expected) in [
        ("{\"source\": \"aws.autoscaling\"}".to_string(), "InvalidEventPatternException"),
        ("{\"source\": []}".to_string(), "InvalidEventPatternException"),
        ("not json".to_string(), "InvalidEventPatternException"),
        (json!({"source": ["aws.autoscaling"], "detail": {"AutoScalingGroupName": vec!["x".repeat(40); 60]}}).to_string(), "LimitExceededException"),
    ] {
        let error = events.put_rule().name("r").event_pattern(&bad).send().await.expect_err("bad pattern");
        assert_eq!(code(&error), expected, "{error:?}");
    }
    rule(&config, "r").await;
    let recorder = Recorder::create(&config, "recorder", false).await;
    // Target ids: the name's constraints; at most five targets per rule (quota).
    let error = put_target(&events, "r", "bad id", &recorder.arn).await;
    let error = error.expect_err("bad target id");
    assert_eq!(code(&error), "ValidationException", "{error:?}");
    for i in 0..5 {
        target(&config, "r", &format!("t{i}"), &recorder.arn).await;
    }
    let error = put_target(&events, "r", "t5", &recorder.arn).await;
    let error = error.expect_err("a sixth target");
    assert_eq!(code(&error), "LimitExceededException", "{error:?}");
    // Replacing an existing target is no new target.
    target(&config, "r", "t4", &recorder.arn).await;
    // A rule with targets cannot be deleted.
    let error = events
        .delete_rule()
        .name("r")
        .send()
        .await
        .expect_err("rule with targets");
    assert_eq!(code(&error), "ValidationException", "{error:?}");

    // AddPermission: a statement id already in the policy is a conflict.
    permit(
        &config,
        "recorder",
        "events",
        "events.amazonaws.com",
        "arn:aws:events:us-east-1:123456789012:rule/r",
    )
    .await;
    let again = add_permission(&config, "recorder", "events", "events.amazonaws.com", None);
    let error = again
        .await
        .expect_err("a second statement with the same id");
    assert_eq!(code(&error), "ResourceConflictException", "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_calls_per_operation_caller_and_group_invocations_and_executions() {
    let (moto, config) = start_emulator().await;
    let template = fleet(&config, "web-1", &[("emulator:refresh-seconds", "0.2")]).await;
    fleet(&config, "web-2", &[]).await;
    moto.clear_stats();
    start(&config, "web-1", &template, &[]).await;
    for _ in 0..3 {
        status(&config, "web-1").await;
    }
    status(&config, "web-2").await;
    let stats = moto.stats();
    assert_eq!(
        stats["calls"]["autoscaling:DescribeInstanceRefreshes"], 4,
        "{stats}"
    );
    assert_eq!(
        stats["calls"]["autoscaling:StartInstanceRefresh"], 1,
        "{stats}"
    );
    assert_eq!(
        stats["by_asg"]["DescribeInstanceRefreshes"],
        json!({"web-1": 3, "web-2": 1})
    );
    assert_eq!(
        stats["by_caller"]["deployer"]["autoscaling:DescribeInstanceRefreshes"],
        4
    );

    // A Lambda's calls count under its role and function name, and so do its invocations.
    delivered_to(&config, "recorder", false).await;
    // The first refresh must have ended, and sent its events, before the counters are
    // cleared: on a busy machine its end may otherwise be emitted after the clear.
    let until = Instant::now() + DEADLINE;
    while status(&config, "web-1").await != "Successful" {
        assert!(Instant::now() < until, "web-1's first refresh did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let emitted = moto.events()["emitted"].as_u64().unwrap_or(0);
    settled(&moto, emitted).await;
    moto.clear_stats();
    start(&config, "web-1", &template, &[]).await;
    settled(&moto, 2).await;
    let stats = moto.stats();
    assert_eq!(stats["lambda_invocations"]["recorder"], 2, "{stats}");
    assert_eq!(stats["events"]["emitted"], 2, "{stats}");
    assert_eq!(
        stats["events"]["by_rule"]["refresh-events"]["delivered"], 2,
        "{stats}"
    );

    // Executions: the root's events and transitions, and each Distributed Map child's.
    let role = aws_sdk_iam::Client::new(&config)
        .create_role()
        .role_name("machine")
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
                .to_string(),
        )
        .send()
        .await
        .expect("create role");
    let definition = json!({
        "StartAt": "First",
        "States": {
            "First": {"Type": "Pass", "Next": "Fan"},
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "One",
                    "States": {"One": {"Type": "Pass", "Next": "Two"}, "Two": {"Type": "Pass", "End": true}}
                },
                "End": true
            }
        }
    });
    let role_arn = role.role().map(|r| r.arn()).expect("role arn");
    let input = json!({"items": [1, 2, 3]});
    let (described, kinds) = sfn::run_machine(
        &moto,
        &config,
        "counted",
        role_arn,
        &definition,
        &input,
        DEADLINE,
    )
    .await;
    assert_eq!(described.status().as_str(), "SUCCEEDED", "{described:?}");
    let arn = described.execution_arn();
    let counted = &moto.stats()["executions"][arn];
    assert_eq!(
        counted["events"].as_u64(),
        Some(kinds.len() as u64),
        "{counted}"
    );
    assert_eq!(counted["transitions"], 2, "First and Fan: {counted}");
    let children = counted["children"].as_array().expect("children");
    assert_eq!(children.len(), 3, "{counted}");
    for (i, child) in children.iter().enumerate() {
        assert_eq!(child["index"], i, "{counted}");
        assert_eq!(child["transitions"], 2, "One and Two: {counted}");
    }
    moto.clear_stats();
    let cleared = moto.stats();
    assert_eq!(cleared["calls"], json!({}), "{cleared}");
    assert_eq!(cleared["executions"], json!({}), "{cleared}");
}
