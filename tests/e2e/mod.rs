//! Helpers every end-to-end test binary shares (each declares `mod e2e`): an extended
//! emulator and SDK clients on it, fleets of launch templates and ASGs, `xtask deploy` of the
//! local stack with the debug Lambda binaries, executions of the deployed state machine,
//! readers of the emulator's refresh log and of the rollout table, and the checks on them.
//! Every wait is bounded, through [`poll`]. The xtask CLI's runner and checks are in
//! tests/support/cli.rs.

#![allow(dead_code)]

pub mod fleet;
#[path = "../support/group.rs"]
mod group;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use asg_refresh_tests::{workspace_root, Moto};
use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use serde_json::json;

pub const REGION: &str = "us-east-1";
/// The local stack's state machine (envs/local.toml: name "local", moto's account).
pub const STATE_MACHINE_ARN: &str =
    "arn:aws:states:us-east-1:123456789012:stateMachine:asg-refresh-local";
/// The local stack's progress table.
pub const TABLE: &str = "asg-refresh-local";
/// The local stack's refresher and planner functions.
pub const REFRESHER_FUNCTION: &str = "asg-refresh-local-refresher";
pub const PLANNER_FUNCTION: &str = "asg-refresh-local-planner";
/// The image `fleet` puts in launch template version 1.
pub const OLD_AMI: &str = group::V1_AMI;
/// How long a rollout execution may run before a test gives up on it.
pub const EXECUTION_DEADLINE: Duration = Duration::from_secs(180);

pub async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_autoscaling::config::Credentials::new(
            "test", "test", None, None, "emulator",
        ))
        .load()
        .await
}

/// A test's own extended emulator, and the SDK's configuration for it.
pub async fn start_emulator() -> (Moto, aws_config::SdkConfig) {
    let moto = Moto::start_extended();
    let config = sdk_config(&moto).await;
    (moto, config)
}

/// A launch template with versions 1 (ami-1...) and 2 (ami-2...), and an ASG on version 1
/// with the given emulator tags. Returns the template id.
pub async fn fleet(config: &aws_config::SdkConfig, asg: &str, tags: &[(&str, &str)]) -> String {
    group::group_on_two_versions(config, asg, tags).await
}

/// Scales an ASG to `capacity` (min lowered to it).
pub async fn set_capacity(config: &aws_config::SdkConfig, asg: &str, capacity: i32) {
    aws_sdk_autoscaling::Client::new(config)
        .update_auto_scaling_group()
        .auto_scaling_group_name(asg)
        .min_size(capacity)
        .desired_capacity(capacity)
        .send()
        .await
        .unwrap_or_else(|e| panic!("scale {asg} to {capacity}: {e:?}"));
}

/// Sets (creates or overwrites) one tag of an ASG, e.g. `emulator:refresh-outcome`.
pub async fn set_tag(config: &aws_config::SdkConfig, asg: &str, key: &str, value: &str) {
    aws_sdk_autoscaling::Client::new(config)
        .create_or_update_tags()
        .tags(
            Tag::builder()
                .resource_id(asg)
                .resource_type("auto-scaling-group")
                .key(key)
                .value(value)
                .propagate_at_launch(false)
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("tag {asg} with {key}={value}: {e:?}"));
}

/// Tags that put an ASG in local.toml's target set with a refresh of `seconds`.
pub fn demo(seconds: &str) -> Vec<(&'static str, String)> {
    vec![
        ("refresh-group", "demo".into()),
        ("emulator:refresh-seconds", seconds.into()),
    ]
}

/// [`fleet`]s in local.toml's target set, each refresh taking its given seconds.
pub async fn demo_fleet(config: &aws_config::SdkConfig, asgs: &[(&str, &str)]) {
    for (asg, seconds) in asgs {
        let tags = demo(seconds);
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fleet(config, asg, &tags).await;
    }
}

/// The launch template (id or name, and version) the ASG runs.
async fn group_template(
    config: &aws_config::SdkConfig,
    asg: &str,
) -> Option<LaunchTemplateSpecification> {
    let out = aws_sdk_autoscaling::Client::new(config)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .expect("describe auto scaling groups");
    out.auto_scaling_groups()
        .first()?
        .launch_template()
        .cloned()
}

/// The launch template version the ASG runs.
pub async fn group_version(config: &aws_config::SdkConfig, asg: &str) -> Option<String> {
    group_template(config, asg)
        .await?
        .version()
        .map(str::to_string)
}

/// The ImageId of the launch template version the ASG runs.
pub async fn group_image(config: &aws_config::SdkConfig, asg: &str) -> Option<String> {
    let lt = group_template(config, asg).await?;
    let mut describe = aws_sdk_ec2::Client::new(config)
        .describe_launch_template_versions()
        .versions(lt.version().unwrap_or("$Default"));
    describe = match (lt.launch_template_id(), lt.launch_template_name()) {
        (Some(id), _) => describe.launch_template_id(id),
        (None, Some(name)) => describe.launch_template_name(name),
        (None, None) => return None,
    };
    let described = describe
        .send()
        .await
        .expect("describe launch template versions");
    described
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .and_then(|d| d.image_id())
        .map(str::to_string)
}

/// Asserts that `asg` runs `version` of its launch template, and that version the image
/// `ami`.
pub async fn assert_group_runs(
    config: &aws_config::SdkConfig,
    asg: &str,
    version: &str,
    ami: &str,
) {
    assert_eq!(
        group_version(config, asg).await.as_deref(),
        Some(version),
        "{asg}"
    );
    assert_eq!(
        group_image(config, asg).await.as_deref(),
        Some(ami),
        "{asg}"
    );
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The Lambdas, each a binary of the runtime package.
pub const FUNCTIONS: [&str; 3] = ["planner", "refresher", "completer"];

/// A debug binary of the workspace (`xtask` or one of [`FUNCTIONS`]), built from the sources
/// as they are now. Always through cargo (a no-op when it is up to date): a binary that
/// merely exists may come from older sources, another clone or another checkout sharing the
/// target directory, and the tests would then run code that is not the code under test.
/// Once per test process, all of them in one invocation, as `cargo xtask demo` builds them:
/// the SDK crates' features then unify as in the `cargo xtask` build, and nothing is
/// compiled twice (the functions built alone would compile the SDK again).
pub fn debug_binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    assert!(
        (package, bin) == ("xtask", "xtask")
            || (package == "asg-refresh-runtime" && FUNCTIONS.contains(&bin)),
        "no debug binary {bin} in package {package}"
    );
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !*built {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args([
            "build",
            "-p",
            "xtask",
            "-p",
            "asg-refresh-runtime",
            "--bin",
            "xtask",
        ]);
        for function in FUNCTIONS {
            cargo.args(["--bin", function]);
        }
        let status = cargo
            .current_dir(workspace_root())
            .status()
            .expect("cargo build");
        assert!(
            status.success(),
            "cargo build of xtask and the Lambdas failed"
        );
        *built = true;
    }
    target_dir().join("debug").join(bin)
}

/// The Lambdas' zips for the emulator, `<dir>/<fn>/bootstrap.zip`: debug builds zipped by
/// `xtask build --emulator-zips`, as `cargo xtask demo` makes them. Once per test process;
/// folders left by test processes that have ended are removed.
pub fn emulator_zips() -> PathBuf {
    static ZIPS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ZIPS.get_or_init(|| {
        let prefix = "asg-refresh-emulator-zips-";
        for entry in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ended = name
                .strip_prefix(prefix)
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if ended {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
        let mut build = Command::new(debug_binary("xtask", "xtask"));
        build.args(["build", "--emulator-zips"]).arg(&dir);
        run_to_success(&mut build, "xtask build --emulator-zips");
        dir
    })
    .clone()
}

/// Runs `command` (`what`) in the workspace to its end; panics with its output unless it
/// succeeded.
fn run_to_success(command: &mut Command, what: &str) {
    let output = command
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One function's zip (see [`emulator_zips`]).
pub fn function_zip(function: &str) -> Vec<u8> {
    std::fs::read(emulator_zips().join(function).join("bootstrap.zip")).expect("the zip")
}

pub fn tempfile_dir(what: &str) -> PathBuf {
    // Tests run in parallel threads of one process: each call gets its own folder.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir =
        std::env::temp_dir().join(format!("asg-refresh-{what}-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A variant of envs/local.toml: each `(from, to)` replaced once (each must match), written
/// to `<dir>/<what>.toml`. Returns the file; the caller removes `dir` after the deploy.
pub fn local_variant(dir: &Path, what: &str, replaces: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(workspace_root().join("envs/local.toml")).unwrap();
    for (from, to) in replaces {
        assert!(
            text.contains(from),
            "envs/local.toml has no `{from}` any more: update this test"
        );
        text = text.replacen(from, to, 1);
    }
    let path = dir.join(format!("{what}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `cargo xtask deploy` of the local stack (envs/local.toml, or `config` for a variant) to
/// the emulator, with the debug Lambda binaries standing in for the release zips.
pub fn deploy_local(moto: &Moto, config: Option<&Path>) {
    let zips = emulator_zips();
    let mut deploy = Command::new(debug_binary("xtask", "xtask"));
    deploy
        .args(["deploy", "--endpoint-url", &moto.endpoint(), "--zip-dir"])
        .arg(&zips);
    match config {
        Some(path) => deploy.arg("--config").arg(path),
        None => deploy.args(["--env", "local"]),
    };
    deploy
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE");
    run_to_success(&mut deploy, "xtask deploy");
}

/// Deploys a variant of envs/local.toml (see [`local_variant`]).
pub fn deploy_local_variant(moto: &Moto, what: &str, replaces: &[(&str, &str)]) {
    let dir = tempfile_dir(what);
    let path = local_variant(&dir, what, replaces);
    deploy_local(moto, Some(&path));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts an execution of the deployed local state machine named `execution_name` for
/// `rollout_id`; returns its ARN without waiting.
pub async fn start_rollout(
    config: &aws_config::SdkConfig,
    execution_name: &str,
    rollout_id: &str,
    ami: &str,
) -> String {
    aws_sdk_sfn::Client::new(config)
        .start_execution()
        .state_machine_arn(STATE_MACHINE_ARN)
        .name(execution_name)
        .input(json!({"rollout_id": rollout_id, "ami": ami}).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("start execution {execution_name}: {e:?}"))
        .execution_arn()
        .to_string()
}

/// The names of the deployed local state machine's executions.
pub async fn executions(config: &aws_config::SdkConfig) -> Vec<String> {
    aws_sdk_sfn::Client::new(config)
        .list_executions()
        .state_machine_arn(STATE_MACHINE_ARN)
        .send()
        .await
        .expect("list executions")
        .executions()
        .iter()
        .map(|e| e.name().to_string())
        .collect()
}

/// Calls `attempt` every `every` until it returns `Ok`, for at most `deadline`; then panics
/// with `timed_out` of what the last attempt saw. The one bounded wait of the tests.
pub async fn poll<T, S, Fut>(
    deadline: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> Fut,
    timed_out: impl FnOnce(S) -> String,
) -> T
where
    Fut: std::future::Future<Output = Result<T, S>>,
{
    let until = Instant::now() + deadline;
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(seen) if Instant::now() >= until => panic!("{}", timed_out(seen)),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Waits (at most `deadline`) until the execution has ended.
pub async fn wait_execution(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    arn: &str,
    deadline: Duration,
) -> DescribeExecutionOutput {
    let sfn = &aws_sdk_sfn::Client::new(config);
    let describe = move || async move {
        let described = sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .expect("describe execution");
        match described.status().as_str() {
            "RUNNING" => Err(()),
            _ => Ok(described),
        }
    };
    poll(deadline, Duration::from_millis(500), describe, |()| {
        format!(
            "execution {arn} did not end within {deadline:?}; lambda logs:\n{}",
            moto.lambda_logs()
        )
    })
    .await
}

/// Starts an execution of the deployed local state machine and waits (bounded) for its end.
pub async fn run_rollout(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    rollout_id: &str,
    ami: &str,
) -> DescribeExecutionOutput {
    run_rollout_as(moto, config, rollout_id, rollout_id, ami).await
}

/// [`run_rollout`] under an execution name of its own: a re-run of a rollout reuses the
/// rollout id under a new execution name (`<id>-2`).
pub async fn run_rollout_as(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    execution_name: &str,
    rollout_id: &str,
    ami: &str,
) -> DescribeExecutionOutput {
    let arn = start_rollout(config, execution_name, rollout_id, ami).await;
    wait_execution(moto, config, &arn, EXECUTION_DEADLINE).await
}

/// How an execution ended, with the emulator's refresh log and the Lambdas' logs: the
/// message of a failed assertion on a rollout.
pub fn explain(execution: &DescribeExecutionOutput, moto: &Moto) -> String {
    format!(
        "status {:?} error {:?} cause {:?}\nrefresh log: {}\nlambda logs:\n{}",
        execution.status(),
        execution.error(),
        execution.cause(),
        moto.refresh_log(),
        moto.lambda_logs()
    )
}

/// Asserts that the execution ended `status` (SUCCEEDED, FAILED, ...), explaining it if not.
#[track_caller]
pub fn assert_execution(execution: &DescribeExecutionOutput, status: &str, moto: &Moto) {
    assert_eq!(
        execution.status().as_str(),
        status,
        "{}",
        explain(execution, moto)
    );
}

/// One instance refresh as the emulator's log tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub refresh_id: String,
    /// Emulator seconds (monotonic) of the start.
    pub start: f64,
    /// When it ended (`None`: still running when the log was read).
    pub end: Option<f64>,
    /// The status it ended with.
    pub status: Option<String>,
    /// When a rollback was requested.
    pub rollback: Option<f64>,
    /// When a cancel was requested.
    pub cancel: Option<f64>,
}

impl Interval {
    /// The end, or `now` for a refresh still running.
    pub fn end_or(&self, now: f64) -> f64 {
        self.end.unwrap_or(now)
    }
}

/// The refresh log as intervals per ASG, in start order, and the emulator's `now`.
pub fn refresh_intervals(moto: &Moto) -> (BTreeMap<String, Vec<Interval>>, f64) {
    let log = moto.refresh_log();
    let now = log["now"].as_f64().expect("the log's now");
    let mut by_id: BTreeMap<String, (String, Interval)> = BTreeMap::new();
    for event in log["events"].as_array().expect("refresh log events") {
        let (Some(kind), Some(asg), Some(id), Some(t)) = (
            event["event"].as_str(),
            event["asg"].as_str(),
            event["refresh_id"].as_str(),
            event["t"].as_f64(),
        ) else {
            panic!("malformed refresh log event {event}");
        };
        if kind == "start" {
            let interval = Interval {
                refresh_id: id.into(),
                start: t,
                end: None,
                status: None,
                rollback: None,
                cancel: None,
            };
            assert!(
                by_id.insert(id.into(), (asg.into(), interval)).is_none(),
                "refresh {id} started twice: {log}"
            );
            continue;
        }
        let (_, interval) = by_id
            .get_mut(id)
            .unwrap_or_else(|| panic!("{kind} of refresh {id} before its start: {log}"));
        match kind {
            "end" => {
                interval.end = Some(t);
                interval.status = event["status"].as_str().map(str::to_string);
            }
            "rollback" => interval.rollback = Some(t),
            "cancel" => interval.cancel = Some(t),
            other => panic!("unknown refresh log event {other}: {log}"),
        }
    }
    let mut out: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
    for (asg, interval) in by_id.into_values() {
        out.entry(asg).or_default().push(interval);
    }
    for intervals in out.values_mut() {
        intervals.sort_by(|a, b| a.start.total_cmp(&b.start));
    }
    (out, now)
}

/// The most refreshes running at once (one ending at the instant another starts does not
/// overlap it). Refreshes still running count until `now`.
pub fn max_in_flight(intervals: &BTreeMap<String, Vec<Interval>>, now: f64) -> usize {
    let mut timeline: Vec<(f64, i32)> = intervals
        .values()
        .flatten()
        .flat_map(|i| [(i.start, 1), (i.end_or(now), -1)])
        .collect();
    // Ends before starts at the same instant.
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut running, mut most) = (0i32, 0i32);
    for (_, delta) in timeline {
        running += delta;
        most = most.max(running);
    }
    most as usize
}

/// The one refresh of `asg` in the log, which must have ended Successful.
#[track_caller]
pub fn refreshed_once<'a>(
    intervals: &'a BTreeMap<String, Vec<Interval>>,
    asg: &str,
) -> &'a Interval {
    let list = intervals
        .get(asg)
        .unwrap_or_else(|| panic!("{asg} was never refreshed: {intervals:?}"));
    assert_eq!(
        list.len(),
        1,
        "{asg} refreshed {} times: {list:?}",
        list.len()
    );
    assert_eq!(
        list[0].status.as_deref(),
        Some("Successful"),
        "{asg}: {list:?}"
    );
    &list[0]
}

/// Waits (at most `deadline`) until every refresh of `asgs` in the emulator's log has ended;
/// returns the log's intervals.
pub async fn wait_refreshes_ended(
    moto: &Moto,
    asgs: &[&str],
    deadline: Duration,
) -> BTreeMap<String, Vec<Interval>> {
    let read = || async {
        let (intervals, _) = refresh_intervals(moto);
        let ended = asgs.iter().all(|asg| {
            intervals
                .get(*asg)
                .is_some_and(|list| list.iter().all(|i| i.end.is_some()))
        });
        if ended {
            Ok(intervals)
        } else {
            Err(intervals)
        }
    };
    poll(deadline, Duration::from_millis(250), read, |intervals| {
        format!(
            "refreshes of {asgs:?} still running after {deadline:?}: {intervals:?}\nlambda logs:\n{}",
            moto.lambda_logs()
        )
    })
    .await
}

/// One item of the rollout table, as the tests read it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableItem {
    pub status: String,
    pub reason: Option<String>,
    pub wave: Option<u32>,
    pub refresh_id: Option<String>,
    /// The summary's (`#rollout`) message.
    pub message: Option<String>,
}

/// Every item of a rollout (ASGs, and the `#rollout` summary), by `asg`.
pub async fn rollout_items(
    config: &aws_config::SdkConfig,
    rollout_id: &str,
) -> BTreeMap<String, TableItem> {
    let mut pages = aws_sdk_dynamodb::Client::new(config)
        .query()
        .table_name(TABLE)
        .key_condition_expression("rollout_id = :r")
        .expression_attribute_values(":r", AttributeValue::S(rollout_id.into()))
        .consistent_read(true)
        .into_paginator()
        .items()
        .send();
    let mut out = BTreeMap::new();
    while let Some(item) = pages.next().await {
        let item = item.expect("query the rollout table");
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let asg = s("asg").expect("every item has an asg");
        out.insert(
            asg,
            TableItem {
                status: s("status").unwrap_or_default(),
                reason: s("reason"),
                wave: item
                    .get("wave")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok()),
                refresh_id: s("refresh_id"),
                message: s("message"),
            },
        );
    }
    out
}

/// The rollout holding the stack lock (`#lock` item), if any.
pub async fn lock_holder(config: &aws_config::SdkConfig) -> Option<String> {
    let out = aws_sdk_dynamodb::Client::new(config)
        .get_item()
        .table_name(TABLE)
        .key("rollout_id", AttributeValue::S("#lock".into()))
        .key("asg", AttributeValue::S("#lock".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("read the lock item");
    out.item().map(|item| {
        item.get("holder")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    })
}

/// Invokes a deployed function synchronously; returns the function error (if any) and the
/// JSON payload.
pub async fn invoke(
    config: &aws_config::SdkConfig,
    function: &str,
    event: &serde_json::Value,
) -> (Option<String>, serde_json::Value) {
    let out = aws_sdk_lambda::Client::new(config)
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke {function}: {e:?}"));
    let payload = out
        .payload()
        .map(|p| p.as_ref().to_vec())
        .unwrap_or_default();
    let payload = serde_json::from_slice(&payload).unwrap_or_else(|e| {
        panic!(
            "{function} returned no JSON ({e}): {}",
            String::from_utf8_lossy(&payload)
        )
    });
    (out.function_error().map(str::to_string), payload)
}
