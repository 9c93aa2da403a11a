//! Notifications (`[notify]`) end to end: the local stack deployed to the extended emulator
//! with `create_topic = true`, an SQS queue subscribed to the topic and an EventBridge rule
//! (source `asg-refresh`) sending to another queue; rollouts run by the real state machine and
//! Lambdas, and each notification read back from both queues. Also: deploy creates, keeps and
//! deletes the topic; without `[notify]` no Lambda calls SNS or PutEvents; the IAM documents
//! grant exactly Publish on the topic and PutEvents with source `asg-refresh`. Every wait is
//! bounded.

#[path = "support/cli.rs"]
mod cli;
mod e2e;

use std::path::Path;
use std::time::{Duration, Instant};

use asg_refresh_tests::{workspace_root, Moto};
use cli::{assert_ok, assert_prints, assert_refused, text, xtask_on, Stack};
use e2e::*;
use serde_json::{json, Value};

const NEW_AMI: &str = "ami-0fedcba9876543210";
const TOPIC_ARN: &str = "arn:aws:sns:us-east-1:123456789012:asg-refresh-local-notifications";
/// How long a notification may take to arrive after the step that sends it.
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(120);

/// The local stack's variant with a topic of its own, waves of one ASG and `extra` changes.
fn notify_variant(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut replaces = vec![
        ("strategy = \"window\"", "strategy = \"batches\""),
        ("[lambda]", "[notify]\ncreate_topic = true\n\n[lambda]"),
    ];
    replaces.extend_from_slice(extra);
    replaces
}

/// Where the test reads notifications: one queue subscribed to the topic, one a rule's target.
struct Inbox {
    sqs: aws_sdk_sqs::Client,
    sns_queue: String,
    events_queue: String,
    /// SNS envelopes received so far.
    sns: Vec<Value>,
    /// EventBridge events received so far.
    events: Vec<Value>,
}

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str, sender: (&str, &str)) -> (String, String) {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .expect("queue arn");
    // As on AWS, the queue lets the topic or the rule send to it (moto does not check).
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": sender.0},
            "Action": "sqs:SendMessage",
            "Resource": arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": sender.1}},
        }],
    });
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::Policy,
            policy.to_string(),
        )
        .send()
        .await
        .expect("queue policy");
    (url, arn)
}

impl Inbox {
    /// Subscribes a queue to the stack's topic and routes `source: asg-refresh` to another.
    async fn new(config: &aws_config::SdkConfig) -> Self {
        let sqs = aws_sdk_sqs::Client::new(config);
        let rule_arn = "arn:aws:events:us-east-1:123456789012:rule/notify-test";
        let (sns_queue, sns_queue_arn) =
            queue(&sqs, "notify-sns", ("sns.amazonaws.com", TOPIC_ARN)).await;
        let (events_queue, events_queue_arn) =
            queue(&sqs, "notify-events", ("events.amazonaws.com", rule_arn)).await;
        aws_sdk_sns::Client::new(config)
            .subscribe()
            .topic_arn(TOPIC_ARN)
            .protocol("sqs")
            .endpoint(&sns_queue_arn)
            .send()
            .await
            .expect("subscribe the queue to the topic");
        let events = aws_sdk_eventbridge::Client::new(config);
        events
            .put_rule()
            .name("notify-test")
            .event_pattern(json!({"source": ["asg-refresh"]}).to_string())
            .send()
            .await
            .expect("put rule");
        events
            .put_targets()
            .rule("notify-test")
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(&events_queue_arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("put targets");
        Self {
            sqs,
            sns_queue,
            events_queue,
            sns: Vec::new(),
            events: Vec::new(),
        }
    }

    async fn receive(&self, url: &str) -> Vec<Value> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        let mut bodies = Vec::new();
        for message in out.messages() {
            let body = message.body().unwrap_or_default();
            bodies.push(
                serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("a message is not JSON ({e}): {body}")),
            );
            if let Some(handle) = message.receipt_handle() {
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete message");
            }
        }
        bodies
    }

    async fn drain(&mut self) {
        let sns = self.receive(&self.sns_queue).await;
        self.sns.extend(sns);
        let events = self.receive(&self.events_queue).await;
        self.events.extend(events);
    }

    /// The SNS envelopes of one event type.
    fn sns_of(&self, event_type: &str) -> Vec<&Value> {
        self.sns
            .iter()
            .filter(|m| m["MessageAttributes"]["event_type"]["Value"] == event_type)
            .collect()
    }

    /// The events of one event type.
    fn events_of(&self, event_type: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["detail"]["event"] == event_type)
            .collect()
    }

    /// Reads both queues (bounded) until `count` notifications of `event_type` arrived on each.
    async fn wait_for(&mut self, moto: &Moto, event_type: &str, count: usize) {
        let until = Instant::now() + ARRIVAL_DEADLINE;
        loop {
            self.drain().await;
            if self.sns_of(event_type).len() >= count && self.events_of(event_type).len() >= count {
                return;
            }
            assert!(
                Instant::now() < until,
                "{count} `{event_type}` notification(s) did not arrive on both queues within {ARRIVAL_DEADLINE:?}\nsns: {:#?}\nevents: {:#?}\nlambda logs:\n{}",
                self.sns,
                self.events,
                moto.lambda_logs()
            );
        }
    }
}

/// The SNS body and the event's detail of the one notification of `event_type` (of wave
/// `wave` when given), checking that the two channels agree.
fn notification<'a>(inbox: &'a Inbox, event_type: &str, wave: Option<u64>) -> (&'a str, &'a Value) {
    let of_wave = |detail: &Value| wave.is_none_or(|w| detail["wave"].as_u64() == Some(w));
    let events: Vec<&Value> = inbox
        .events_of(event_type)
        .into_iter()
        .filter(|e| of_wave(&e["detail"]))
        .collect();
    assert_eq!(
        events.len(),
        1,
        "{event_type} {wave:?}: {:#?}",
        inbox.events
    );
    let event = events[0];
    assert_eq!(event["source"], "asg-refresh", "{event:#}");
    let detail = &event["detail"];
    assert_eq!(detail["stack"], "local", "{event:#}");
    let subject_of_wave = |m: &&Value| match wave {
        Some(w) => m["Subject"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("wave {w} of"))),
        None => true,
    };
    let messages: Vec<&Value> = inbox
        .sns_of(event_type)
        .into_iter()
        .filter(subject_of_wave)
        .collect();
    assert_eq!(messages.len(), 1, "{event_type} {wave:?}: {:#?}", inbox.sns);
    let message = messages[0];
    assert_eq!(message["TopicArn"], TOPIC_ARN, "{message:#}");
    assert!(
        message["Subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("asg-refresh local: rollout ")),
        "{message:#}"
    );
    (message["Message"].as_str().unwrap_or_default(), detail)
}

/// Approval on, two waves of one ASG: started, wave 1 done, waiting for approval with the
/// command (which the test runs as given), wave 2 done, finished with the totals, each once on
/// SNS and once on EventBridge, in that order.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_with_approval_notifies_each_step_on_sns_and_eventbridge() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("a-1", "1"), ("a-2", "1")]).await;
    deploy_local_variant(
        &moto,
        "notify-approval",
        &notify_variant(&[("batch_size = 3", "batch_size = 1\napproval = true")]),
    );
    let mut inbox = Inbox::new(&config).await;
    let arn = start_rollout(&config, "n-approve", "n-approve", NEW_AMI).await;

    inbox.wait_for(&moto, "awaiting-approval", 1).await;
    let (body, detail) = notification(&inbox, "rollout-started", None);
    assert!(
        body.contains("2 ASGs in 2 waves, 0 skipped") && body.contains(NEW_AMI),
        "{body}"
    );
    assert!(
        body.contains("wave 1 of 2: a-1") && body.contains("wave 2 of 2: a-2"),
        "{body}"
    );
    assert_eq!(
        (&detail["ami"], &detail["planned"], &detail["waves"]),
        (&json!(NEW_AMI), &json!(2), &json!(2)),
        "{detail:#}"
    );
    let (body, detail) = notification(&inbox, "wave-done", Some(1));
    assert!(
        body.contains("wave 1 of 2 done") && body.contains("a-1: Successful"),
        "{body}"
    );
    assert_eq!(detail["results"][0]["asg"], "a-1", "{detail:#}");
    let (body, detail) = notification(&inbox, "awaiting-approval", None);
    let command = "cargo xtask approve --env local --rollout n-approve";
    assert!(body.contains(command), "{body}");
    assert_eq!(detail["command"], command, "{detail:#}");
    assert_eq!(detail["next_wave"], 2, "{detail:#}");
    assert!(
        inbox.sns_of("rollout-finished").is_empty() && inbox.sns_of("wave-done").len() == 1,
        "notified past the approval: {:#?}",
        inbox.sns
    );

    // The command the notification gives approves the wave.
    let args: Vec<&str> = command
        .strip_prefix("cargo xtask ")
        .expect("a cargo xtask command")
        .split_whitespace()
        .collect();
    let approved = cli::command(&moto, &args).output().expect("run xtask");
    assert_ok(&approved, &moto);
    let done = wait_execution(&moto, &config, &arn, EXECUTION_DEADLINE).await;
    assert_eq!(done.status().as_str(), "SUCCEEDED", "{done:?}");

    inbox.wait_for(&moto, "rollout-finished", 1).await;
    let (body, _) = notification(&inbox, "wave-done", Some(2));
    assert!(body.contains("a-2: Successful"), "{body}");
    let (body, detail) = notification(&inbox, "rollout-finished", None);
    assert!(body.contains("2 refreshed, 0 failed, 0 skipped"), "{body}");
    assert_eq!(
        (&detail["succeeded"], &detail["failed"], &detail["skipped"]),
        (&json!(2), &json!(0), &json!(0)),
        "{detail:#}"
    );
    assert!(
        inbox.sns_of("rollout-failed").is_empty(),
        "{:#?}",
        inbox.sns
    );
    // Every notification was allowed by the Lambda role's policy.
    let denials = moto.iam_denials();
    assert!(
        !denials.to_string().contains("sns:") && !denials.to_string().contains("PutEvents"),
        "{denials:#}"
    );
}

/// `on_failure = "stop"` with the second wave's ASG failing: the failed notification names it
/// and AWS's reason, on both channels, and no finished notification is sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_rollout_notifies_the_reasons() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("a-1", "1"), ("f-bad", "1")]).await;
    set_tag(&config, "f-bad", "emulator:refresh-outcome", "Failed").await;
    deploy_local_variant(
        &moto,
        "notify-failure",
        &notify_variant(&[
            ("batch_size = 3", "batch_size = 1"),
            ("on_failure = \"continue\"", "on_failure = \"stop\""),
        ]),
    );
    let mut inbox = Inbox::new(&config).await;
    let done = run_rollout(&moto, &config, "n-fail", NEW_AMI).await;
    assert_eq!(done.status().as_str(), "FAILED", "{done:?}");

    inbox.wait_for(&moto, "rollout-failed", 1).await;
    notification(&inbox, "rollout-started", None);
    let (body, _) = notification(&inbox, "wave-done", Some(1));
    assert!(body.contains("a-1: Successful"), "{body}");
    let (body, detail) = notification(&inbox, "rollout-failed", None);
    assert!(
        body.contains("1 refreshed, 1 failed") && body.contains("f-bad (Failed"),
        "{body}"
    );
    assert_eq!(detail["failed"], 1, "{detail:#}");
    assert!(
        detail["message"]
            .as_str()
            .is_some_and(|m| m.contains("f-bad")),
        "{detail:#}"
    );
    assert!(
        inbox.sns_of("rollout-finished").is_empty()
            && inbox.events_of("rollout-finished").is_empty(),
        "a failed rollout said it finished: {:#?}",
        inbox.sns
    );
}

/// The environment variables of the deployed `function`.
async fn environment(
    config: &aws_config::SdkConfig,
    function: &str,
) -> std::collections::HashMap<String, String> {
    aws_sdk_lambda::Client::new(config)
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{function} configuration: {e:?}"))
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default()
}

/// Without `[notify]` the Lambdas have no topic in their environment and make no SNS or
/// PutEvents call during a rollout.
#[tokio::test(flavor = "multi_thread")]
async fn without_notify_no_lambda_calls_sns_or_eventbridge() {
    let (moto, config) = start_emulator().await;
    demo_fleet(&config, &[("a-1", "1")]).await;
    deploy_local(&moto, None);
    let environment = environment(&config, PLANNER_FUNCTION).await;
    assert!(
        !environment.contains_key("ASG_REFRESH_NOTIFY_TOPIC"),
        "{environment:?}"
    );
    let done = run_rollout(&moto, &config, "n-quiet", NEW_AMI).await;
    assert_eq!(done.status().as_str(), "SUCCEEDED", "{done:?}");
    let stats = moto.stats();
    let lambdas: Vec<(&String, &Value)> = stats["by_caller"]
        .as_object()
        .expect("by_caller")
        .iter()
        .filter(|(caller, _)| caller.as_str() != "deployer")
        .collect();
    assert!(!lambdas.is_empty(), "{stats:#}");
    for (caller, calls) in lambdas {
        let calls = calls.as_object().expect("calls");
        assert!(
            !calls
                .keys()
                .any(|op| op.starts_with("sns:") || op == "events:PutEvents"),
            "{caller} notified without [notify]: {calls:?}"
        );
    }
}

/// `xtask deploy` of the stack of `path` with the Lambdas' zips in `zips`.
fn deploy(moto: &Moto, path: &Path, zips: &Path) -> std::process::Output {
    let zips = zips.to_str().expect("utf-8 path");
    xtask_on(moto, Stack::Config(path), &["deploy", "--zip-dir", zips])
}

/// Asserts that the stack's topic no longer exists after `output` of `what`.
async fn assert_topic_gone(sns: &aws_sdk_sns::Client, output: &std::process::Output, what: &str) {
    let gone = sns.get_topic_attributes().topic_arn(TOPIC_ARN).send().await;
    assert!(
        gone.is_err_and(|e| e
            .as_service_error()
            .is_some_and(|s| s.is_not_found_exception())),
        "{what} left the topic: {}",
        text(output)
    );
}

/// `create_topic = true`: deploy creates the topic with the stack's tags and puts it in the
/// planner's and refresher's environment; a second deploy makes no mutating call; a deploy
/// without `[notify]` deletes the topic; destroy deletes it too.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_creates_keeps_and_deletes_the_topic() {
    let (moto, config) = start_emulator().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let zips = emulator_zips();
    let dir = tempfile_dir("notify-deploy");
    let with_topic = local_variant(&dir, "with-topic", &notify_variant(&[]));
    let plain = local_variant(&dir, "plain", &[]);

    let first = deploy(&moto, &with_topic, &zips);
    assert_prints(
        &first,
        &moto,
        "sns topic         asg-refresh-local-notifications",
    );
    let tags: Vec<(String, String)> = sns
        .list_tags_for_resource()
        .resource_arn(TOPIC_ARN)
        .send()
        .await
        .expect("the topic exists")
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    for tag in [
        ("asg-refresh:stack", "local"),
        ("asg-refresh:managed", "true"),
    ] {
        assert!(
            tags.contains(&(tag.0.to_string(), tag.1.to_string())),
            "{tags:?}"
        );
    }
    for function in [PLANNER_FUNCTION, REFRESHER_FUNCTION] {
        let environment = environment(&config, function).await;
        assert_eq!(
            (
                environment
                    .get("ASG_REFRESH_NOTIFY_TOPIC")
                    .map(String::as_str),
                environment.get("ASG_REFRESH_STACK").map(String::as_str)
            ),
            (Some(TOPIC_ARN), Some("local")),
            "{function}: {environment:?}"
        );
    }

    let again = deploy(&moto, &with_topic, &zips);
    assert_prints(&again, &moto, "mutating calls: 0");

    let without = deploy(&moto, &plain, &zips);
    assert_ok(&without, &moto);
    assert_topic_gone(&sns, &without, "a deploy without [notify]").await;

    let back = deploy(&moto, &with_topic, &zips);
    assert_ok(&back, &moto);
    let destroyed = xtask_on(&moto, Stack::Config(&with_topic), &["destroy", "--yes"]);
    assert_ok(&destroyed, &moto);
    assert_topic_gone(&sns, &destroyed, "destroy").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An operator's topic that does not exist is refused before anything changes.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_refuses_a_missing_operator_topic() {
    let moto = Moto::start_extended();
    let zips = emulator_zips();
    let dir = tempfile_dir("notify-missing");
    let path = local_variant(
        &dir,
        "missing-topic",
        &[(
            "[lambda]",
            "[notify]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:nobody-made-this\"\n\n[lambda]",
        )],
    );
    let output = deploy(&moto, &path, &zips);
    assert_refused(&output, "nobody-made-this does not exist");
    let functions = aws_sdk_lambda::Client::new(&sdk_config(&moto).await)
        .list_functions()
        .send()
        .await
        .expect("list functions");
    assert!(functions.functions().is_empty(), "{}", text(&output));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Lambda role may Publish only to the topic and PutEvents only on the default bus with
/// source `asg-refresh`; without `[notify]` it may do neither.
#[test]
fn iam_grants_publish_on_the_topic_and_put_events_with_the_source_only() {
    let base = std::fs::read_to_string(workspace_root().join("envs/local.toml")).unwrap();
    let with = base.replacen(
        "[lambda]",
        "[notify]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:ops\"\n\n[lambda]",
        1,
    );
    let policy = |text: &str| -> Value {
        let config = generator::config::parse(text, Path::new("local.toml")).expect("valid");
        generator::iam::documents(&config)
            .expect("render")
            .into_iter()
            .find(|d| d.role == "lambda" && d.kind == "policy")
            .expect("lambda policy")
            .json
    };
    let notifying = policy(&with);
    let grants = generator::iam::allowed(&notifying);
    let publish: Vec<&String> = grants
        .iter()
        .filter(|(a, _)| a.starts_with("sns:"))
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        publish,
        ["arn:aws:sns:us-east-1:123456789012:ops"],
        "{notifying:#}"
    );
    assert!(grants
        .iter()
        .filter(|(a, _)| a.starts_with("sns:"))
        .all(|(a, _)| a == "sns:Publish"));
    let put = notifying["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Action"] == "events:PutEvents")
        .expect("PutEvents statement");
    assert_eq!(
        put["Resource"],
        "arn:aws:events:us-east-1:123456789012:event-bus/default"
    );
    assert_eq!(
        put["Condition"],
        json!({"StringEquals": {"events:source": "asg-refresh"}})
    );
    let quiet = generator::iam::allowed(&policy(&base));
    assert!(
        !quiet
            .iter()
            .any(|(a, _)| a.starts_with("sns:") || a == "events:PutEvents"),
        "{quiet:?}"
    );
}

/// review.md lists the topic a stack creates, and only then.
#[test]
fn review_lists_the_stack_topic() {
    let base = std::fs::read_to_string(workspace_root().join("envs/local.toml")).unwrap();
    let review = |text: &str| -> String {
        let config = generator::config::parse(text, Path::new("local.toml")).expect("valid");
        let machine = generator::rollout::build(&config);
        let documents = generator::iam::documents(&config).expect("iam");
        generator::review::render(&config, &machine, &documents).expect("review")
    };
    let with = base.replacen("[lambda]", "[notify]\ncreate_topic = true\n\n[lambda]", 1);
    assert!(
        review(&with).contains("| SNS topic | `asg-refresh-local-notifications` |"),
        "{}",
        review(&with)
    );
    assert!(!review(&base).contains("SNS topic"));
}
