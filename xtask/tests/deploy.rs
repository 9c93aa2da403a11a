//! `cargo xtask deploy` and `destroy` against the project's emulator on loopback (moto plus the
//! AWS rules it adds, such as Step Functions' log-delivery check on the machine's role and
//! DynamoDB's late continuous backups): the real binary, fake Lambda zips (stored, never run
//! here), checks through the SDK.

#[path = "../../tests/support/group.rs"]
mod group;
#[path = "../../tests/support/refresh.rs"]
mod refresh;
mod support;
#[path = "../../tests/support/dynamodb.rs"]
mod tables;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use asg_refresh_tests::{free_port, stored_zip, workspace_root, Moto};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_lambda::operation::get_function::GetFunctionOutput;
use serde_json::Value;
use support::{assert_quick, assert_success, failure_stderr, run, stdout, xtask};

const ENV: &str = "local";
const PREFIX: &str = "asg-refresh-local";

/// A moto server, a config pointing nowhere by itself, and fake zips.
struct Fixture {
    moto: Moto,
    dir: tempfile::TempDir,
    sdk: SdkConfig,
}

impl Fixture {
    async fn start() -> Self {
        let moto = Moto::start_extended();
        let dir = tempfile::tempdir().expect("temp dir");
        let local = std::fs::read_to_string(workspace_root().join("envs/local.toml"))
            .expect("envs/local.toml");
        // The endpoint comes from --endpoint-url, as the brief of the command says it may.
        let config: String = local
            .lines()
            .filter(|l| !l.starts_with("endpoint_url"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(dir.path().join("local.toml"), config).unwrap();
        // The completer's zip is there for the stacks with completion = "events".
        write_zips(
            &dir.path().join("zips"),
            &["planner", "refresher", "completer"],
        );
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(support::test_credentials())
            .load()
            .await;
        Self { moto, dir, sdk }
    }

    /// A fixture whose stack, completing on `completion` ("poll" or "events"), is deployed.
    async fn deployed(completion: &str) -> Self {
        let fixture = Self::start().await;
        fixture.set_completion(completion);
        fixture.deploy();
        fixture
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("local.toml")
    }

    fn zips(&self) -> PathBuf {
        self.dir.path().join("zips")
    }

    /// The `--endpoint-url` flag naming the emulator.
    fn endpoint_args(&self) -> [String; 2] {
        ["--endpoint-url".to_string(), self.moto.endpoint()]
    }

    /// Runs `cargo xtask <args>` against the emulator with stdin not a terminal.
    fn xtask(&self, args: &[&str]) -> Output {
        run(xtask(args).args(self.endpoint_args()))
    }

    /// `deploy` of the fixture's config and zips against the emulator, as a command.
    fn deploy_command(&self) -> std::process::Command {
        let mut command = xtask(&deploy_args(&self.config(), &self.zips()));
        command.args(self.endpoint_args());
        command
    }

    /// Runs `deploy` of the fixture's config and zips, with `extra` arguments.
    fn run_deploy(&self, extra: &[&str]) -> Output {
        run(self.deploy_command().args(extra))
    }

    /// A successful `deploy`'s output.
    fn deploy(&self) -> String {
        let output = self.run_deploy(&[]);
        assert_success(&output);
        stdout(&output)
    }

    /// A successful `deploy`'s output, whose table of operations marks exactly `expected`
    /// as mutating (rows such as `"Lambda.UpdateFunctionCode 1 mutating"`, in its order).
    #[track_caller]
    fn deploy_mutating(&self, expected: &[&str]) -> String {
        let stdout = self.deploy();
        assert_eq!(mutating_operations(&stdout), expected, "{stdout}");
        stdout
    }

    /// `deploy --dry-run`'s output.
    fn dry_run(&self) -> String {
        let output = self.run_deploy(&["--dry-run"]);
        assert_success(&output);
        stdout(&output)
    }

    /// Rewrites the config's `completion` (envs/local.toml says "poll").
    fn set_completion(&self, completion: &str) {
        let config = std::fs::read_to_string(self.config()).unwrap();
        let line = config
            .lines()
            .find(|l| l.starts_with("completion = "))
            .expect("envs/local.toml sets completion")
            .to_string();
        std::fs::write(
            self.config(),
            config.replace(&line, &format!("completion = \"{completion}\"")),
        )
        .unwrap();
    }

    fn destroy(&self, yes: bool) -> Output {
        let config = self.config();
        let mut args = vec!["destroy", "--config", config.to_str().unwrap()];
        if yes {
            args.push("--yes");
        }
        self.xtask(&args)
    }

    /// A successful `destroy --yes`'s output.
    fn destroy_yes(&self) -> String {
        let output = self.destroy(true);
        assert_success(&output);
        stdout(&output)
    }

    fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk)
    }

    fn lambda(&self) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&self.sdk)
    }

    /// The IAM role `name`, if it exists.
    async fn role(&self, name: &str) -> Option<aws_sdk_iam::types::Role> {
        let got = self.iam().get_role().role_name(name).send().await;
        got.ok().and_then(|out| out.role)
    }

    /// Whether the IAM role `name` exists.
    async fn role_exists(&self, name: &str) -> bool {
        self.role(name).await.is_some()
    }

    /// The Lambda function `name` (its configuration and tags), if it exists.
    async fn function(&self, name: &str) -> Option<GetFunctionOutput> {
        let got = self.lambda().get_function().function_name(name).send();
        got.await.ok()
    }

    /// Whether the Lambda function `name` exists.
    async fn function_exists(&self, name: &str) -> bool {
        self.function(name).await.is_some()
    }

    /// The stack's DynamoDB table, if it exists.
    async fn table(&self) -> Option<aws_sdk_dynamodb::types::TableDescription> {
        let db = aws_sdk_dynamodb::Client::new(&self.sdk);
        let got = db.describe_table().table_name(PREFIX).send().await;
        got.ok().and_then(|out| out.table)
    }

    /// Creates the IAM role `name` that `principal` may assume (the stack's tags are not on it).
    async fn create_role(&self, name: &str, principal: Principal) -> aws_sdk_iam::types::Role {
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal.json(), "Action": "sts:AssumeRole"}],
        });
        let request = self.iam().create_role().role_name(name);
        let request = request.assume_role_policy_document(trust.to_string());
        let created = must(&format!("create role {name}"), request.send()).await;
        created.role.expect("the created role")
    }

    /// Puts `document` as the inline policy `policy` of `role`.
    async fn put_role_policy(&self, role: &str, policy: &str, document: &str) {
        let request = self
            .iam()
            .put_role_policy()
            .role_name(role)
            .policy_name(policy);
        let request = request.policy_document(document).send();
        must(&format!("put policy {policy} on {role}"), request).await;
    }

    /// Attaches to `role` a new managed policy `policy` that denies `action` on everything.
    async fn attach_deny(&self, role: &str, policy: &str, action: &str) {
        let deny = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Action": action, "Resource": "*"}],
        });
        let request = self.iam().create_policy().policy_name(policy);
        let request = request.policy_document(deny.to_string()).send();
        let created = must(&format!("create policy {policy}"), request).await;
        let arn = created
            .policy()
            .and_then(|p| p.arn())
            .expect("the policy's arn");
        let request = self
            .iam()
            .attach_role_policy()
            .role_name(role)
            .policy_arn(arn);
        must(&format!("attach {policy} to {role}"), request.send()).await;
    }

    /// The inline policy of `role` named after it, decoded.
    async fn inline_policy(&self, role: &str) -> Value {
        let policy = self
            .iam()
            .get_role_policy()
            .role_name(role)
            .policy_name(role)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the inline policy of {role}: {e:?}"));
        decode(policy.policy_document())
    }

    /// Asserts that a deploy refuses to take `what` (a resource of the stack's name without
    /// its tag) over and changes nothing: the Lambda role is not created.
    async fn assert_deploy_refuses_to_take_over(&self, what: &str) {
        let output = self.run_deploy(&[]);
        let stderr = failure_stderr(&output);
        assert!(
            stderr.contains(&format!(
                "{what} exists and is not tagged asg-refresh:stack=local: refusing to take it over"
            )),
            "{stderr}"
        );
        assert!(
            !self.role_exists(&format!("{PREFIX}-lambda")).await,
            "deploy changed something"
        );
    }

    /// Deletes the stack's state machine (as someone might by hand).
    async fn delete_state_machine(&self) {
        aws_sdk_sfn::Client::new(&self.sdk)
            .delete_state_machine()
            .state_machine_arn(machine_arn())
            .send()
            .await
            .expect("delete the state machine");
    }

    /// Removes the completer's permission for the rule (as someone might by hand).
    async fn remove_rule_permission(&self) {
        self.lambda()
            .remove_permission()
            .function_name(COMPLETER)
            .statement_id(RULE)
            .send()
            .await
            .expect("remove the completer's permission");
    }
}

/// Who a role created by a test trusts.
#[derive(Debug, Clone, Copy)]
enum Principal {
    /// The AWS service that runs as the role, such as `lambda.amazonaws.com`.
    Service(&'static str),
    /// The account's root: any of its principals the account lets assume it.
    Account,
}
const ACCOUNT: Principal = Principal::Account;
const LAMBDA: Principal = Principal::Service("lambda.amazonaws.com");
const STATES: Principal = Principal::Service("states.amazonaws.com");

impl Principal {
    /// The `Principal` element of a trust policy.
    fn json(self) -> Value {
        match self {
            Principal::Service(service) => serde_json::json!({ "Service": service }),
            Principal::Account => serde_json::json!({ "AWS": "arn:aws:iam::123456789012:root" }),
        }
    }
}

/// The stack's state machine.
fn machine_arn() -> String {
    format!("arn:aws:states:us-east-1:123456789012:stateMachine:{PREFIX}")
}

/// The JSON document `file` of a render in `render`.
fn rendered_json(render: &Path, file: &str) -> Value {
    let path = render.join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("render writes {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `deploy --config <config> --zip-dir <zips>`.
fn deploy_args(config: &Path, zips: &Path) -> [String; 5] {
    let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_string();
    [
        "deploy".to_string(),
        "--config".to_string(),
        path(config),
        "--zip-dir".to_string(),
        path(zips),
    ]
}

/// A stored (uncompressed) zip holding `bootstrap`: enough for Lambda's validation.
fn write_zip(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, stored_zip("bootstrap", contents)).unwrap();
}

/// A zip of each of `functions` under `dir` (`<dir>/<function>/bootstrap.zip`, holding the
/// function's name), as `--zip-dir` reads them.
fn write_zips(dir: &Path, functions: &[&str]) {
    for function in functions {
        write_zip(
            &dir.join(function).join("bootstrap.zip"),
            function.as_bytes(),
        );
    }
}

/// Awaits an SDK request the test needs to succeed, or fails naming `what` it asked for.
async fn must<T, E: std::fmt::Debug>(what: &str, request: impl Future<Output = Result<T, E>>) -> T {
    request.await.unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// The plan lines of `deploy` that start with `verb`.
fn plan_lines<'a>(stdout: &'a str, verb: &str) -> Vec<&'a str> {
    let plan = stdout
        .split("plan:")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "));
    plan.filter(|l| l.trim_start().starts_with(&format!("{verb} ")))
        .collect()
}

/// Asserts that `plan` has `count` lines of `verb` and, among them, one ending with each of
/// `ends`.
#[track_caller]
fn assert_plan(plan: &str, verb: &str, count: usize, ends: &[String]) {
    let lines = plan_lines(plan, verb);
    assert_eq!(lines.len(), count, "{plan}");
    for end in ends {
        assert!(
            lines.iter().any(|l| l.ends_with(end.as_str())),
            "no `{verb} ... {end}` in:\n{plan}"
        );
    }
}

/// The figure of the `api calls: N total, mutating calls: M` line.
fn mutating_calls(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.contains("mutating calls: "))
        .unwrap_or_else(|| panic!("no call count in:\n{stdout}"));
    line.rsplit("mutating calls: ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("a number")
}

/// The operations the per-operation table marks as mutating.
fn mutating_operations(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.trim_end().ends_with(" mutating"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn tags_ok<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    let tags: Vec<_> = tags.into_iter().collect();
    tags.contains(&("asg-refresh:stack", ENV)) && tags.contains(&("asg-refresh:managed", "true"))
}

/// `tags_ok` of a tag map as Lambda and CloudWatch Logs return it.
fn map_tags_ok(tags: Option<&std::collections::HashMap<String, String>>) -> bool {
    tags_ok(
        tags.into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// `cargo xtask render` of the same config, for byte comparisons.
fn rendered(fixture: &Fixture) -> PathBuf {
    let out = fixture.dir.path().join("render");
    let config = fixture.config();
    let output = run(&mut xtask(&[
        "render",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_success(&output);
    out
}

/// A policy document as IAM returns it: JSON, or JSON percent-encoded.
fn decode(document: &str) -> Value {
    serde_json::from_str(document).unwrap_or_else(|_| {
        let decoded = percent_encoding::percent_decode_str(document).decode_utf8_lossy();
        serde_json::from_str(&decoded).expect("a JSON policy document")
    })
}

#[tokio::test]
async fn fresh_deploy_creates_every_resource_and_redeploy_makes_no_mutating_call() {
    let fixture = Fixture::start().await;
    let stdout = fixture.deploy();
    assert!(mutating_calls(&stdout) > 0, "{stdout}");
    // DynamoDB refuses point-in-time recovery right after CreateTable: deploy waits and says why.
    assert!(
        stdout.contains("continuous backups are not available yet (the table was just created"),
        "{stdout}"
    );
    let render = rendered(&fixture);
    assert_roles_as_rendered(&fixture, &render).await;
    assert_table_as_configured(&fixture).await;
    assert_functions_as_configured(&fixture).await;
    assert_machine_as_rendered_logging_to_its_group(&fixture, &render).await;

    // A second deploy: counted, not assumed.
    let again = fixture.deploy();
    assert_eq!(mutating_calls(&again), 0, "{again}");
    assert!(again.contains("no changes"), "{again}");
    assert_eq!(
        again
            .lines()
            .filter(|l| l.trim_start().starts_with("unchanged"))
            .count(),
        7,
        "{again}"
    );
}

/// IAM: the Lambda and Step Functions roles' trust and inline policies equal render's
/// documents; both tags.
async fn assert_roles_as_rendered(fixture: &Fixture, render: &Path) {
    let iam = fixture.iam();
    for role in [format!("{PREFIX}-lambda"), format!("{PREFIX}-states")] {
        let got = fixture.role(&role).await.expect("role exists");
        assert_eq!(
            decode(got.assume_role_policy_document().unwrap()),
            rendered_json(render, &format!("iam/{role}.trust.json")),
            "{role} trust"
        );
        assert_eq!(
            fixture.inline_policy(&role).await,
            rendered_json(render, &format!("iam/{role}.policy.json")),
            "{role} policy"
        );
        let tags = must("role tags", iam.list_role_tags().role_name(&role).send()).await;
        assert!(
            tags_ok(tags.tags().iter().map(|t| (t.key(), t.value()))),
            "{role} tags"
        );
    }
}

/// DynamoDB: the table's keys, on-demand billing, encryption, point-in-time recovery, TTL and
/// tags.
async fn assert_table_as_configured(fixture: &Fixture) {
    use aws_sdk_dynamodb::types::{BillingMode, PointInTimeRecoveryStatus, SseStatus};
    let db = aws_sdk_dynamodb::Client::new(&fixture.sdk);
    let table = fixture.table().await.expect("table exists");
    let keys: Vec<_> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type().as_str()))
        .collect();
    assert_eq!(keys, [("rollout_id", "HASH"), ("asg", "RANGE")]);
    let billing = table.billing_mode_summary().and_then(|b| b.billing_mode());
    assert_eq!(billing, Some(&BillingMode::PayPerRequest));
    let encryption = table.sse_description().and_then(|s| s.status());
    assert_eq!(encryption, Some(&SseStatus::Enabled));
    let request = db.describe_continuous_backups().table_name(PREFIX).send();
    let backups = must("continuous backups", request).await;
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status());
    assert_eq!(pitr, Some(&PointInTimeRecoveryStatus::Enabled));
    let ttl = must(
        "time to live",
        db.describe_time_to_live().table_name(PREFIX).send(),
    )
    .await;
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|t| t.attribute_name()),
        Some("expires_at")
    );
    let request = db
        .list_tags_of_resource()
        .resource_arn(table.table_arn().unwrap());
    let tags = must("table tags", request.send()).await;
    assert!(
        tags_ok(tags.tags().iter().map(|t| (t.key(), t.value()))),
        "table tags"
    );
}

/// Lambda: the planner's and refresher's configuration, role, table and tags.
async fn assert_functions_as_configured(fixture: &Fixture) {
    for function in ["planner", "refresher"] {
        let name = format!("{PREFIX}-{function}");
        let got = fixture.function(&name).await.expect("function exists");
        let c = got.configuration().unwrap();
        assert_eq!(c.runtime().map(|r| r.as_str()), Some("provided.al2023"));
        assert_eq!(c.handler(), Some("bootstrap"));
        assert_eq!(
            c.architectures()
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>(),
            ["x86_64"]
        );
        assert_eq!(c.memory_size(), Some(128));
        // The planner reads every target once per rollout: its own, longer timeout.
        let timeout = if function == "planner" { 600 } else { 30 };
        assert_eq!(c.timeout(), Some(timeout), "{name}");
        assert_eq!(
            c.role(),
            Some(format!("arn:aws:iam::123456789012:role/{PREFIX}-lambda").as_str())
        );
        let vars = c.environment().and_then(|e| e.variables()).unwrap();
        assert_eq!(
            vars.get("ASG_REFRESH_TABLE").map(String::as_str),
            Some(PREFIX)
        );
        assert!(map_tags_ok(got.tags()), "{name} tags");
    }
}

/// Logs and Step Functions: the log group's tags; the machine's rendered definition byte for
/// byte, role, logging to that group, tags.
async fn assert_machine_as_rendered_logging_to_its_group(fixture: &Fixture, render: &Path) {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&fixture.sdk);
    let group = format!("/aws/vendedlogs/states/{PREFIX}");
    let request = logs.describe_log_groups().log_group_name_prefix(&group);
    let groups = must("log groups", request.send()).await;
    let found = groups
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(group.as_str()))
        .expect("log group");
    let group_arn = found
        .log_group_arn()
        .map(str::to_string)
        .unwrap_or_else(|| found.arn().unwrap().trim_end_matches(":*").into());
    let request = logs.list_tags_for_resource().resource_arn(group_arn);
    let tags = must("log group tags", request.send()).await;
    assert!(map_tags_ok(tags.tags()), "log group tags");
    let sfn = aws_sdk_sfn::Client::new(&fixture.sdk);
    let arn = machine_arn();
    let request = sfn.describe_state_machine().state_machine_arn(&arn);
    let machine = must("state machine", request.send()).await;
    assert_eq!(
        machine.definition(),
        std::fs::read_to_string(render.join("state-machine.asl.json")).unwrap()
    );
    assert_eq!(machine.r#type().as_str(), "STANDARD");
    assert_eq!(
        machine.role_arn(),
        format!("arn:aws:iam::123456789012:role/{PREFIX}-states")
    );
    let logging = machine
        .logging_configuration()
        .expect("logging configuration");
    assert_eq!(logging.level().map(|l| l.as_str()), Some("ALL"));
    assert!(!logging.include_execution_data());
    let destination = logging.destinations()[0]
        .cloud_watch_logs_log_group()
        .and_then(|g| g.log_group_arn());
    assert_eq!(
        destination,
        Some(format!("arn:aws:logs:us-east-1:123456789012:log-group:{group}:*").as_str())
    );
    let tags = must(
        "state machine tags",
        sfn.list_tags_for_resource().resource_arn(&arn).send(),
    )
    .await;
    assert!(tags_ok(tags.tags().iter().map(|t| (
        t.key().unwrap_or_default(),
        t.value().unwrap_or_default()
    ))));
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_changes_nothing() {
    let fixture = Fixture::start().await;
    let stdout = fixture.dry_run();
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("create "))
            .count(),
        7,
        "{stdout}"
    );
    assert_eq!(mutating_calls(&stdout), 0, "{stdout}");
    assert!(!fixture.role_exists(&format!("{PREFIX}-lambda")).await);
}

#[tokio::test]
async fn a_config_change_updates_only_the_function_configuration() {
    let fixture = Fixture::deployed("poll").await;
    let config = std::fs::read_to_string(fixture.config())
        .unwrap()
        .replace("memory_mb = 128", "memory_mb = 256");
    std::fs::write(fixture.config(), config).unwrap();
    let stdout = fixture.deploy_mutating(&["Lambda.UpdateFunctionConfiguration 2 mutating"]);
    assert_eq!(mutating_calls(&stdout), 2, "{stdout}");
    assert!(stdout.contains("(memory)"), "{stdout}");
    let lambda = fixture.lambda();
    let got = lambda
        .get_function_configuration()
        .function_name(format!("{PREFIX}-planner"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.memory_size(), Some(256));
}

#[tokio::test]
async fn a_new_zip_updates_only_that_functions_code() {
    let fixture = Fixture::deployed("poll").await;
    write_zip(
        &fixture.zips().join("refresher/bootstrap.zip"),
        b"refresher v2",
    );
    fixture.deploy_mutating(&["Lambda.UpdateFunctionCode 1 mutating"]);
}

#[tokio::test]
async fn a_partly_deployed_stack_converges() {
    // What a deploy killed midway leaves: a role without its inline policy, a missing
    // function and no state machine. The next deploy completes it, and the one after is a no-op.
    let fixture = Fixture::deployed("poll").await;
    let role = format!("{PREFIX}-states");
    fixture
        .iam()
        .delete_role_policy()
        .role_name(&role)
        .policy_name(&role)
        .send()
        .await
        .unwrap();
    let lambda = fixture.lambda();
    lambda
        .delete_function()
        .function_name(format!("{PREFIX}-refresher"))
        .send()
        .await
        .unwrap();
    fixture.delete_state_machine().await;
    fixture.deploy_mutating(&[
        "IAM.PutRolePolicy 1 mutating",
        "Lambda.CreateFunction 1 mutating",
        "SFN.CreateStateMachine 1 mutating",
    ]);
    assert_eq!(mutating_calls(&fixture.deploy()), 0);
}

#[tokio::test]
async fn deploys_killed_at_many_points_then_rerun_converge() {
    // Kill the real process at growing delays, each time from what the last kill left
    // behind, so the kills land before, between and after the resources' writes.
    let fixture = Fixture::start().await;
    let mut finished_before_kill = 0;
    for delay_ms in [30u64, 80, 130, 180, 240, 320, 420, 560] {
        let mut child = fixture
            .deploy_command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn xtask");
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().expect("poll xtask").is_some() {
            finished_before_kill += 1;
        }
        let _ = child.kill();
        child.wait().expect("reap xtask");
    }
    // Whatever the kills left, one deploy completes the stack and the next changes nothing.
    let stdout = fixture.deploy();
    assert!(stdout.contains("deployed stack `local`"), "{stdout}");
    let again = fixture.deploy();
    assert_eq!(mutating_calls(&again), 0, "{again}");
    assert!(
        finished_before_kill < 8,
        "every deploy finished before its kill: the test interrupted nothing"
    );
}

#[tokio::test]
async fn destroy_without_yes_and_no_terminal_deletes_nothing() {
    let fixture = Fixture::deployed("poll").await;
    let output = fixture.destroy(false);
    let stderr = failure_stderr(&output);
    assert!(stderr.contains("without --yes"), "{stderr}");
    assert!(fixture.role_exists(&format!("{PREFIX}-lambda")).await);
    assert_eq!(
        mutating_calls(&fixture.deploy()),
        0,
        "destroy changed something"
    );
}

#[tokio::test]
async fn destroy_removes_the_stack_and_nothing_else() {
    let fixture = Fixture::deployed("poll").await;
    let foreign = format!("{PREFIX}-lambda-other");
    fixture.create_role(&foreign, LAMBDA).await;
    let stdout = fixture.destroy_yes();
    assert!(stdout.contains("7 resources deleted"), "{stdout}");
    assert!(
        fixture.role_exists(&foreign).await,
        "the foreign role was deleted"
    );
    // Nothing of the stack is left: a deploy would create all seven resources again.
    let plan = fixture.dry_run();
    assert_eq!(
        plan.lines()
            .filter(|l| l.trim_start().starts_with("create "))
            .count(),
        7,
        "{plan}"
    );
    let again = fixture.destroy_yes();
    assert!(again.contains("nothing to delete"), "{again}");
}

#[tokio::test]
async fn an_untagged_resource_with_the_stacks_name_stops_deploy_before_any_change() {
    let fixture = Fixture::start().await;
    fixture
        .create_role(&format!("{PREFIX}-states"), LAMBDA)
        .await;
    fixture
        .assert_deploy_refuses_to_take_over(&format!("IAM role {PREFIX}-states"))
        .await;
    assert!(fixture.table().await.is_none(), "deploy created the table");
    // Destroy leaves the foreign role alone too.
    fixture.destroy_yes();
    assert!(fixture.role_exists(&format!("{PREFIX}-states")).await);
}

#[test]
fn an_unknown_env_fails_clearly() {
    let started = Instant::now();
    let output = run(&mut xtask(&[
        "deploy",
        "--env",
        "no-such-env",
        "--zip-dir",
        "/nonexistent",
    ]));
    let stderr = failure_stderr(&output);
    assert!(
        stderr.contains("unknown env `no-such-env`: known envs are"),
        "{stderr}"
    );
    assert_quick(started, 10, &stderr);
}

#[test]
fn an_unreachable_endpoint_fails_clearly_in_bounded_time() {
    let zips = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = run(&mut xtask(&deploy_of_local_to_nowhere(zips.path())));
    let stderr = failure_stderr(&output);
    assert!(stderr.contains("cannot reach the AWS endpoint"), "{stderr}");
    assert_quick(started, 60, &stderr);
}

#[test]
fn missing_credentials_fail_clearly_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let args = deploy_of_local_to_nowhere(dir.path());
    let output = run(&mut support::xtask_without_credentials(&args, dir.path()));
    let stderr = failure_stderr(&output);
    assert!(
        stderr.contains("no AWS credentials") && stderr.contains("AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
    assert_quick(started, 30, &stderr);
}

#[test]
fn an_invalid_env_file_fails_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let local = std::fs::read_to_string(workspace_root().join("envs/local.toml")).unwrap();
    let config = dir.path().join("local.toml");
    std::fs::write(&config, local.replace("region = \"us-east-1\"\n", "")).unwrap();
    let output = run(&mut xtask(&deploy_args(&config, Path::new("/nonexistent"))));
    let stderr = failure_stderr(&output);
    assert!(
        stderr.contains("`region`") && stderr.contains("missing field"),
        "{stderr}"
    );
}

/// The arguments of a `deploy` of envs/local.toml to an endpoint nobody listens on, from
/// fake zips of the poll stack's functions that it writes to `zips`.
fn deploy_of_local_to_nowhere(zips: &Path) -> Vec<String> {
    write_zips(zips, &["planner", "refresher"]);
    let config = workspace_root().join("envs/local.toml");
    let mut args = deploy_args(&config, zips).to_vec();
    args.push("--endpoint-url".to_string());
    args.push(format!("http://127.0.0.1:{}", free_port()));
    args
}

/// A logging configuration (level ALL) to the log group `group_arn`.
fn logging_to(group_arn: &str) -> aws_sdk_sfn::types::LoggingConfiguration {
    use aws_sdk_sfn::types::{
        CloudWatchLogsLogGroup, LogDestination, LogLevel, LoggingConfiguration,
    };
    LoggingConfiguration::builder()
        .level(LogLevel::All)
        .destinations(
            LogDestination::builder()
                .cloud_watch_logs_log_group(
                    CloudWatchLogsLogGroup::builder()
                        .log_group_arn(group_arn)
                        .build(),
                )
                .build(),
        )
        .build()
}

/// What Step Functions says when the machine's role may not deliver its logs.
const LOG_DESTINATION_DENIED: &str =
    "The state machine IAM Role is not authorized to access the Log Destination";

/// The error metadata (code, message) of the service error that refused a request, which
/// must have been refused (`why`).
#[track_caller]
fn refusal<T: std::fmt::Debug, E, R>(
    result: Result<T, aws_sdk_sfn::error::SdkError<E, R>>,
    why: &str,
) -> aws_sdk_sfn::error::ErrorMetadata
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let refused = result.expect_err(why);
    let service = refused.as_service_error().expect("a service error");
    service.meta().clone()
}

/// The log-delivery actions on "*", as a policy document.
const LOG_DELIVERY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["logs:CreateLogDelivery","logs:GetLogDelivery","logs:UpdateLogDelivery","logs:DeleteLogDelivery","logs:ListLogDeliveries","logs:PutResourcePolicy","logs:DescribeResourcePolicies","logs:DescribeLogGroups"],"Resource":"*"}]}"#;

#[tokio::test]
async fn the_emulator_refuses_logging_the_machine_role_cannot_deliver() {
    // Step Functions developer guide, "IAM policies for logging to CloudWatch Logs".
    let fixture = Fixture::start().await;
    let role = fixture.create_role("machine", STATES).await;
    let role_arn = role.arn().to_string();
    let invoke_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"*"}]}"#;
    fixture
        .put_role_policy("machine", "invoke", invoke_only)
        .await;
    let group = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/states/machine:*";
    let definition = r#"{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}"#;
    let sfn = aws_sdk_sfn::Client::new(&fixture.sdk);
    let create = || {
        sfn.create_state_machine()
            .name("machine")
            .definition(definition)
            .role_arn(&role_arn)
            .logging_configuration(logging_to(group))
            .send()
    };
    let refused = refusal(create().await, "a role without log delivery is refused");
    assert_eq!(
        (refused.code(), refused.message()),
        (Some("AccessDeniedException"), Some(LOG_DESTINATION_DENIED))
    );
    // Without a log destination nothing is judged; with the actions on "*" the same call passes.
    fixture
        .put_role_policy("machine", "logs", LOG_DELIVERY)
        .await;
    let arn = create()
        .await
        .expect("allowed once the role may deliver logs")
        .state_machine_arn()
        .to_string();
    // An explicit Deny in an attached policy takes one action away: UpdateStateMachine is refused.
    fixture
        .attach_deny("machine", "no-resource-policy", "logs:PutResourcePolicy")
        .await;
    let update = sfn
        .update_state_machine()
        .state_machine_arn(&arn)
        .logging_configuration(logging_to(group))
        .send()
        .await;
    let refused = refusal(update, "a Deny on one log-delivery action is refused");
    assert_eq!(refused.message(), Some(LOG_DESTINATION_DENIED));
    let request = sfn.update_state_machine().state_machine_arn(&arn);
    must(
        "no destination, no check",
        request.definition(definition).send(),
    )
    .await;
}

#[tokio::test]
async fn the_emulator_refuses_point_in_time_recovery_right_after_create_table() {
    use aws_sdk_dynamodb::types::PointInTimeRecoverySpecification;
    let fixture = Fixture::start().await;
    let db = aws_sdk_dynamodb::Client::new(&fixture.sdk);
    tables::create_table(&db, "fresh", "k", None).await;
    let pitr = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(true)
        .build()
        .unwrap();
    let enable = || {
        db.update_continuous_backups()
            .table_name("fresh")
            .point_in_time_recovery_specification(pitr.clone())
            .send()
    };
    let refused = enable().await.expect_err("refused right after CreateTable");
    assert!(
        refused
            .as_service_error()
            .is_some_and(|e| e.is_continuous_backups_unavailable_exception()),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    must("accepted later", enable()).await;
}

#[tokio::test]
async fn a_role_that_may_not_deliver_logs_fails_deploy_at_once_and_says_so() {
    // A permission the role lacks is not propagation: deploy must not wait a minute for it.
    let fixture = Fixture::deployed("poll").await;
    let role = format!("{PREFIX}-states");
    fixture
        .attach_deny(&role, "no-log-delivery", "logs:CreateLogDelivery")
        .await;
    fixture.delete_state_machine().await;
    let started = Instant::now();
    let output = fixture.run_deploy(&[]);
    let stderr = failure_stderr(&output);
    let printed = stdout(&output);
    assert_quick(started, 20, &printed);
    assert!(!printed.contains("retrying"), "{printed}");
    assert!(
        stderr.contains(&format!("cannot create state machine {PREFIX}: role arn:aws:iam::123456789012:role/{role} is not authorized to deliver the machine's logs (a permission error, not propagation)")),
        "{stderr}"
    );
    assert!(stderr.contains("Log Destination"), "{stderr}");
}

// --- completion = "events": the EventBridge rule, its target and the completer's permission ---

const RULE: &str = "asg-refresh-local-refresh-events";
const RULE_ARN: &str =
    "arn:aws:events:us-east-1:123456789012:rule/asg-refresh-local-refresh-events";
const COMPLETER: &str = "asg-refresh-local-completer";

fn events_client(fixture: &Fixture) -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::new(&fixture.sdk)
}

/// The completer's resource policy statement for the rule, if any.
async fn permission(fixture: &Fixture) -> Option<Value> {
    let policy = fixture
        .lambda()
        .get_policy()
        .function_name(COMPLETER)
        .send()
        .await
        .ok()?;
    let policy: Value = serde_json::from_str(policy.policy()?).expect("policy JSON");
    policy["Statement"]
        .as_array()?
        .iter()
        .find(|s| s["Sid"] == RULE)
        .cloned()
}

/// The stack's EventBridge rule, if it exists.
async fn deployed_rule(
    fixture: &Fixture,
) -> Option<aws_sdk_eventbridge::operation::describe_rule::DescribeRuleOutput> {
    let described = events_client(fixture).describe_rule().name(RULE).send();
    described.await.ok()
}

async fn rule_exists(fixture: &Fixture) -> bool {
    deployed_rule(fixture).await.is_some()
}

#[tokio::test]
async fn events_completion_deploys_rule_target_and_permission_and_redeploy_changes_nothing() {
    let fixture = Fixture::start().await;
    fixture.set_completion("events");
    let plan = fixture.dry_run();
    // Three roles, the table, the log group, three functions, the machine, the rule, the
    // permission and the target.
    assert_plan(
        &plan,
        "create",
        12,
        &[
            format!("eventbridge rule  {RULE}"),
            format!("lambda permission {COMPLETER}/{RULE}"),
            format!("rule target       {RULE}/completer"),
            format!("lambda function   {COMPLETER}"),
            format!("iam role          {COMPLETER}"),
        ],
    );
    assert_eq!(mutating_calls(&plan), 0, "{plan}");
    assert!(!rule_exists(&fixture).await, "the dry run created the rule");

    let stdout = fixture.deploy();
    let render = rendered(&fixture);
    // The rule: render's pattern, enabled, tagged.
    let events = events_client(&fixture);
    let rule = deployed_rule(&fixture).await.expect("rule");
    let pattern = rendered_json(&render, &format!("eventbridge/{RULE}.pattern.json"));
    assert_eq!(
        serde_json::from_str::<Value>(rule.event_pattern().unwrap()).unwrap(),
        pattern
    );
    assert_eq!(rule.state().map(|s| s.as_str()), Some("ENABLED"));
    let request = events.list_tags_for_resource().resource_arn(RULE_ARN);
    let tags = must("rule tags", request.send()).await;
    assert!(
        tags_ok(tags.tags().iter().map(|t| (t.key(), t.value()))),
        "{tags:?}"
    );
    // Its one target: the completer.
    let targets = must(
        "rule targets",
        events.list_targets_by_rule().rule(RULE).send(),
    )
    .await;
    let targets: Vec<(&str, &str)> = targets
        .targets()
        .iter()
        .map(|t| (t.id(), t.arn()))
        .collect();
    let completer_arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{COMPLETER}");
    assert_eq!(targets, [("completer", completer_arn.as_str())]);
    // The permission: events.amazonaws.com may invoke it, for this rule only.
    let statement = permission(&fixture)
        .await
        .expect("the completer's permission");
    assert_eq!(statement["Action"], "lambda:InvokeFunction", "{statement}");
    assert_eq!(
        statement["Principal"]["Service"], "events.amazonaws.com",
        "{statement}"
    );
    assert_eq!(
        statement["Condition"],
        serde_json::json!({"ArnLike": {"AWS:SourceArn": RULE_ARN}})
    );
    // The completer runs as its own role, which has render's documents and the tags.
    let function = fixture
        .lambda()
        .get_function()
        .function_name(COMPLETER)
        .send()
        .await
        .expect("the completer");
    assert_eq!(
        function.configuration().and_then(|c| c.role()),
        Some(format!("arn:aws:iam::123456789012:role/{COMPLETER}").as_str())
    );
    assert!(map_tags_ok(function.tags()));
    assert_eq!(
        fixture.inline_policy(COMPLETER).await,
        rendered_json(&render, &format!("iam/{COMPLETER}.policy.json"))
    );
    assert!(stdout.contains("EventBridge.PutRule"), "{stdout}");

    // A redeploy reads and changes nothing.
    let again = fixture.deploy();
    assert_eq!(mutating_calls(&again), 0, "{again}");
    assert_eq!(plan_lines(&again, "unchanged").len(), 12, "{again}");
}

#[tokio::test]
async fn drifted_rule_target_and_permission_are_put_back_and_only_they() {
    let fixture = Fixture::deployed("events").await;
    let events = events_client(&fixture);
    // Someone edits the pattern, points the target elsewhere and widens the permission.
    events
        .put_rule()
        .name(RULE)
        .event_pattern(r#"{"source": ["aws.ec2"]}"#)
        .description("edited")
        .send()
        .await
        .unwrap();
    let planner = format!("arn:aws:lambda:us-east-1:123456789012:function:{PREFIX}-planner");
    events
        .put_targets()
        .rule(RULE)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("completer")
                .arn(&planner)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    fixture.remove_rule_permission().await;
    fixture
        .lambda()
        .add_permission()
        .function_name(COMPLETER)
        .statement_id(RULE)
        .action("lambda:InvokeFunction")
        .principal("events.amazonaws.com")
        .source_arn("arn:aws:events:us-east-1:123456789012:rule/*")
        .send()
        .await
        .unwrap();
    let plan = fixture.dry_run();
    assert_plan(
        &plan,
        "update",
        3,
        &[
            format!("{RULE} (event pattern, description)"),
            format!("{RULE}/completer (arn)"),
            format!("{COMPLETER}/{RULE} (source arn)"),
        ],
    );
    fixture.deploy_mutating(&[
        "EventBridge.PutRule 1 mutating",
        "EventBridge.PutTargets 1 mutating",
        "Lambda.AddPermission 1 mutating",
        "Lambda.RemovePermission 1 mutating",
    ]);
    assert_eq!(mutating_calls(&fixture.deploy()), 0);
    let statement = permission(&fixture).await.expect("permission");
    assert_eq!(statement["Condition"]["ArnLike"]["AWS:SourceArn"], RULE_ARN);
}

#[tokio::test]
async fn switching_to_poll_deletes_rule_target_permission_completer_and_its_role() {
    let fixture = Fixture::deployed("events").await;
    fixture.set_completion("poll");
    let plan = fixture.dry_run();
    let deletes = plan_lines(&plan, "delete");
    let expected = [
        format!("rule target       {RULE}/completer"),
        format!("eventbridge rule  {RULE}"),
        format!("lambda permission {COMPLETER}/{RULE}"),
        format!("lambda function   {COMPLETER}"),
        format!("iam role          {COMPLETER}"),
    ];
    assert_eq!(deletes.len(), expected.len(), "{plan}");
    for (line, want) in deletes.iter().zip(&expected) {
        assert!(
            line.ends_with(want.as_str()),
            "`{line}` is not `delete {want}` (in this order):\n{plan}"
        );
    }
    assert!(rule_exists(&fixture).await, "the dry run deleted the rule");

    fixture.deploy();
    assert!(!rule_exists(&fixture).await, "the rule is still there");
    assert!(!fixture.function_exists(COMPLETER).await);
    assert!(!fixture.role_exists(COMPLETER).await);
    let again = fixture.deploy();
    assert_eq!(mutating_calls(&again), 0, "{again}");
    assert!(plan_lines(&again, "delete").is_empty(), "{again}");

    // And back: everything is created again.
    fixture.set_completion("events");
    let back = fixture.deploy();
    assert!(rule_exists(&fixture).await);
    assert!(permission(&fixture).await.is_some(), "{back}");
    assert_eq!(mutating_calls(&fixture.deploy()), 0);
}

#[tokio::test]
async fn destroy_removes_the_rule_and_the_completer_and_leaves_an_untagged_rule_alone() {
    let fixture = Fixture::deployed("events").await;
    let stdout = fixture.destroy_yes();
    // The seven of a poll stack, the rule, the completer and its role.
    assert!(stdout.contains("10 resources deleted"), "{stdout}");
    assert!(!rule_exists(&fixture).await);
    assert!(!fixture.role_exists(COMPLETER).await);

    // A rule of that name without the stack's tag: deploy refuses it before any change,
    // destroy skips it.
    events_client(&fixture)
        .put_rule()
        .name(RULE)
        .event_pattern(r#"{"source": ["aws.autoscaling"]}"#)
        .send()
        .await
        .unwrap();
    fixture
        .assert_deploy_refuses_to_take_over(&format!("EventBridge rule {RULE}"))
        .await;
    // A poll stack leaves it alone too (it is not this stack's to delete).
    fixture.set_completion("poll");
    let plan = fixture.dry_run();
    assert!(plan_lines(&plan, "delete").is_empty(), "{plan}");
    let stdout = fixture.destroy_yes();
    assert!(
        stdout.contains(&format!("skipping eventbridge rule {RULE}")),
        "{stdout}"
    );
    assert!(rule_exists(&fixture).await);
}

/// Runs `cargo xtask <args>` against the emulator with these credentials.
fn xtask_as(
    fixture: &Fixture,
    args: &[impl AsRef<std::ffi::OsStr>],
    credentials: &aws_sdk_iam::config::Credentials,
) -> Output {
    run(support::xtask_signed(args, credentials).args(fixture.endpoint_args()))
}

#[tokio::test]
async fn deploy_switch_and_destroy_need_nothing_beyond_the_rendered_deployer_policy() {
    use aws_config::meta::credentials::CredentialsProviderChain;
    use aws_sdk_iam::config::ProvideCredentials;

    let fixture = Fixture::start().await;
    fixture.set_completion("events");
    let render = rendered(&fixture);
    let policy = std::fs::read_to_string(render.join("iam/deployer.policy.json")).unwrap();
    // A role with exactly the deployer's policy: the emulator checks each call made with its
    // credentials against it (tests/emulator/iam_enforcement.py).
    fixture.create_role("deployer", ACCOUNT).await;
    fixture
        .put_role_policy("deployer", "deployer", &policy)
        .await;
    let provider =
        aws_config::sts::AssumeRoleProvider::builder("arn:aws:iam::123456789012:role/deployer")
            .session_name("deploy-test")
            .configure(&fixture.sdk)
            .build()
            .await;
    let chain = CredentialsProviderChain::first_try("deployer", provider);
    let credentials = chain
        .provide_credentials()
        .await
        .expect("assume the deployer role");

    let config = fixture.config();
    let zips = fixture.zips();
    let deploy = deploy_args(&config, &zips);
    let denials = || fixture.moto.iam_denials()["denials"].clone();
    for (step, completion) in [
        ("deploy", "events"),
        ("redeploy", "events"),
        ("switch", "poll"),
        ("back", "events"),
    ] {
        fixture.set_completion(completion);
        let output = xtask_as(&fixture, &deploy, &credentials);
        assert_success(&output);
        assert_eq!(
            denials(),
            serde_json::json!([]),
            "{step}: {}",
            stdout(&output)
        );
    }
    assert!(rule_exists(&fixture).await);
    let output = xtask_as(
        &fixture,
        &["destroy", "--config", config.to_str().unwrap(), "--yes"],
        &credentials,
    );
    assert_success(&output);
    assert_eq!(denials(), serde_json::json!([]));
    assert!(!rule_exists(&fixture).await);

    // The check bites: without the rule statement, deploy is refused on the rule.
    let mut narrowed: Value = serde_json::from_str(
        &std::fs::read_to_string(render.join("iam/deployer.policy.json")).unwrap(),
    )
    .unwrap();
    narrowed["Statement"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["Sid"] != "RefreshEventsRule");
    fixture
        .put_role_policy("deployer", "deployer", &narrowed.to_string())
        .await;
    let output = xtask_as(&fixture, &deploy, &credentials);
    let stderr = failure_stderr(&output);
    assert!(stderr.contains("events:DescribeRule"), "{stderr}");
}

#[tokio::test]
async fn the_deployed_rule_delivers_a_refresh_end_to_the_completer_and_only_with_its_permission() {
    let fixture = Fixture::deployed("events").await;
    // One group on launch template version 1, refreshed to version 2 in half a second.
    let template = group::group_on_two_versions(
        &fixture.sdk,
        "web-1",
        &[("emulator:refresh-seconds", "0.5")],
    )
    .await;
    let refresh = || refresh::start_refresh(&fixture.sdk, "web-1", &template, None);
    // The detail-types the deployed rule matches.
    let rule = deployed_rule(&fixture).await.expect("the deployed rule");
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    let matched_types: Vec<String> = pattern["detail-type"]
        .as_array()
        .expect("the pattern names detail-types")
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert!(matched_types
        .iter()
        .any(|t| t.ends_with("Refresh Succeeded")));
    // The rule's counters once every event of the refresh, its end included, was handled;
    // and how many of its events the pattern matches.
    let handled = || async {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let events = fixture.moto.events();
            let log = events["log"].as_array().cloned().unwrap_or_default();
            let ended = log
                .iter()
                .any(|e| e["detail-type"] == "EC2 Auto Scaling Instance Refresh Succeeded");
            let open = log.iter().any(|e| {
                e["deliveries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|d| d["outcome"].is_null())
            });
            if ended && !open && events["pending"] == 0 {
                let expected = log
                    .iter()
                    .filter(|e| matched_types.iter().any(|t| e["detail-type"] == t.as_str()))
                    .count() as u64;
                return (events["by_rule"][RULE].clone(), expected);
            }
            assert!(Instant::now() < until, "not handled within 60 s: {events}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    refresh().await;
    let (rule, expected) = handled().await;
    // Deploy's permission lets each matched event through (the fake zip then fails to run,
    // which is the function's error, not the delivery's).
    assert!(expected >= 1);
    assert_eq!(
        (
            rule["matched"].as_u64(),
            rule["delivered"].as_u64(),
            rule["denied"].as_u64()
        ),
        (Some(expected), Some(expected), Some(0)),
        "{rule}"
    );

    // Without the permission the same events are not delivered.
    fixture.remove_rule_permission().await;
    fixture.moto.clear_events();
    refresh().await;
    let (rule, expected) = handled().await;
    assert_eq!(
        (rule["delivered"].as_u64(), rule["denied"].as_u64()),
        (Some(0), Some(expected)),
        "{rule}"
    );
    // And a deploy puts it back.
    fixture.deploy_mutating(&["Lambda.AddPermission 1 mutating"]);
}

/// Someone narrowed the Lambda role's inline policy and edited the state machine's definition:
/// the plan shows what the deploy puts back, as unified diffs of the documents, before it
/// changes anything.
#[tokio::test]
async fn the_plan_shows_what_an_update_changes_in_policies_and_definition() {
    let fixture = Fixture::deployed("poll").await;
    let role = format!("{PREFIX}-lambda");
    let mut narrowed = fixture.inline_policy(&role).await;
    let statements = narrowed["Statement"].as_array_mut().unwrap();
    let removed = statements.remove(0)["Sid"].as_str().unwrap().to_string();
    fixture
        .put_role_policy(&role, &role, &narrowed.to_string())
        .await;
    let sfn = aws_sdk_sfn::Client::new(&fixture.sdk);
    sfn.update_state_machine()
        .state_machine_arn(machine_arn())
        .definition(r#"{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}"#)
        .send()
        .await
        .unwrap();
    let plan = fixture.dry_run();
    let changes = plan
        .split_once("\nchanges:\n")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no changes section in:\n{plan}"));
    assert!(
        changes.contains(&format!(
            "--- role {role} inline policy (deployed)\n+++ role {role} inline policy (this deploy)\n"
        )),
        "{plan}"
    );
    assert!(
        changes
            .lines()
            .any(|l| l.starts_with('+') && l.contains(&format!("\"Sid\": \"{removed}\""))),
        "the removed statement comes back: {plan}"
    );
    assert!(
        changes.contains(&format!("--- state machine {PREFIX} definition (deployed)")),
        "{plan}"
    );
    assert!(
        changes.lines().any(|l| l == "-  \"StartAt\": \"Done\","),
        "the edited definition goes: {plan}"
    );
    // Nothing else changed, so the trust policies have no diff.
    assert!(!changes.contains("trust policy"), "{plan}");
}
