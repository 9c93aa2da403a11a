//! Malformed env files: each error names the file, the key and the line.
//!
//! Every file under `fixtures/bad-envs/` is a near-valid stack config with one mistake,
//! named for it. The table below says which single problem each file must produce; a
//! case the loader does not yet get right asserts what it should do and is ignored with
//! the reason, so that `cargo test -- --ignored` shows what is left to fix.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use generator::config::{self, Problem};

/// One malformed env file and the one problem it must produce.
struct Case {
    /// The file name under `fixtures/bad-envs/`.
    file: &'static str,
    /// The dotted key the problem names (empty when no key can be named).
    key: &'static str,
    /// The 1-based line the problem points at, or `None` when no line holds the mistake.
    line: Option<usize>,
    /// Words the message must contain.
    phrase: &'static str,
}

/// Declares the table of cases (`CASES`) and one test per case, which may carry
/// attributes such as `#[ignore = "reason"]`.
macro_rules! bad_envs {
    ($($(#[$attr:meta])* $test:ident: $file:literal => $key:literal, $line:expr, $phrase:literal;)*) => {
        /// Every fixture with the problem it must produce.
        const CASES: &[Case] = &[
            $(Case { file: $file, key: $key, line: $line, phrase: $phrase },)*
        ];

        $(
            #[test]
            $(#[$attr])*
            fn $test() {
                check(&Case { file: $file, key: $key, line: $line, phrase: $phrase });
            }
        )*
    };
}

bad_envs! {
    // Unknown keys: the key should be named once, not twice.
    unknown_top_key: "unknown-top-key.toml" => "profiles", Some(5), "unknown field `profiles`";
    unknown_rollout_key: "unknown-rollout-key.toml" => "rollout.max_parallel", Some(17), "unknown field `max_parallel`";
    unknown_targets_key: "unknown-targets-key.toml" => "targets.asg", Some(7), "unknown field `asg`";

    // Wrong types.
    batch_size_string: "batch-size-string.toml" => "rollout.batch_size", Some(16), "invalid type: string \"2\"";
    account_id_integer: "account-id-integer.toml" => "account_id", Some(4), "expected a string";
    canary_string: "canary-string.toml" => "rollout.canary", Some(17), "expected a sequence";
    instance_warmup_negative: "instance-warmup-negative.toml" => "refresh.instance_warmup", Some(26), "integer `-1`";
    strategy_unknown: "strategy-unknown.toml" => "rollout.strategy", Some(15), "unknown variant `rolling`";
    on_failure_unknown: "on-failure-unknown.toml" => "rollout.on_failure", Some(18), "unknown variant `abort`";
    completion_unknown: "completion-unknown.toml" => "rollout.completion", Some(22), "unknown variant `push`, expected `events` or `poll`";
    architecture_unknown: "architecture-unknown.toml" => "lambda.architecture", Some(33), "unknown variant `aarch64`";

    // Values out of range or malformed.
    batch_size_zero: "batch-size-zero.toml" => "rollout.batch_size", Some(16), "between 1 and 1000 (got 0)";
    poll_seconds_too_small: "poll-seconds-too-small.toml" => "rollout.poll_seconds", Some(19), "between 5 and 3600 (got 1)";
    min_healthy_over_100: "min-healthy-over-100.toml" => "refresh.min_healthy_percentage", Some(24), "between 0 and 100 (got 110)";
    memory_too_small: "memory-too-small.toml" => "lambda.memory_mb", Some(34), "between 128 and 10240 (got 64)";
    region_invalid: "region-invalid.toml" => "region", Some(3), "`eu-central` is not an AWS region";
    account_id_short: "account-id-short.toml" => "account_id", Some(4), "not a 12-digit AWS account id";
    name_uppercase: "name-uppercase.toml" => "name", Some(2), "`Staging` is not a stack name";
    endpoint_not_url: "endpoint-not-url.toml" => "endpoint_url", Some(5), "not an http(s) URL";
    instance_role_invalid: "instance-role-invalid.toml" => "refresh.instance_roles[0]", Some(30), "not an IAM role name";

    // Rules across fields.
    no_targets: "no-targets.toml" => "targets", Some(6), "names no ASG";
    no_targets_with_canary: "no-targets-with-canary.toml" => "targets", Some(6), "names no ASG";
    duplicate_asg: "duplicate-asg.toml" => "targets.asgs[4]", Some(12), "`payments-asg` is listed twice";
    canary_not_in_targets: "canary-not-in-targets.toml" => "rollout.canary[0]", Some(17), "`order-asg` is not in targets.asgs";
    canary_larger_than_batch: "canary-larger-than-batch.toml" => "rollout.canary", Some(17), "exceed batch_size 1";
    max_healthy_gap: "max-healthy-gap.toml" => "refresh.max_healthy_percentage", Some(25), "150 above min_healthy_percentage 50: at most 100 above";
    timeout_shorter_than_poll: "timeout-shorter-than-poll.toml" => "rollout.timeout_minutes", Some(20), "shorter than one poll";
    checkpoints_not_ascending: "checkpoints-not-ascending.toml" => "refresh.checkpoint_percentages[1]", Some(30), "ascending";
    checkpoint_delay_without_checkpoints: "checkpoint-delay-without-checkpoints.toml" => "refresh.checkpoint_delay", Some(30), "needs checkpoint_percentages";
    alarms_without_auto_rollback: "alarms-without-auto-rollback.toml" => "refresh.alarms", Some(29), "auto_rollback = true";
    checkpoint_last_not_100: "checkpoint-last-not-100.toml" => "refresh.checkpoint_percentages[1]", Some(30), "the last checkpoint is 50: it must be 100";
    checkpoint_default_delay_too_long: "checkpoint-default-delay-too-long.toml" => "refresh.checkpoint_percentages", Some(30), "3600 s (AWS's default: checkpoint_delay is not set) each: 3600 s, not less than timeout_minutes (45 min = 2700 s)";
    checkpoint_delay_too_long: "checkpoint-delay-too-long.toml" => "refresh.checkpoint_delay", Some(31), "2 checkpoint(s) below 100 for 1800 s each";
    history_too_long: "history-too-long.toml" => "rollout.timeout_minutes", Some(20), "2881 polls of 9 events each, 25940 events in one ASG's child execution: over the 25000-event history limit";

    // [notify]: one topic, a standard SNS topic in the stack's partition and region.
    notify_both_topics: "notify-both-topics.toml" => "notify.create_topic", Some(39), "both set";
    notify_no_topic: "notify-no-topic.toml" => "notify", Some(37), "names no topic";
    notify_arn_malformed: "notify-arn-malformed.toml" => "notify.sns_topic_arn", Some(38), "is not an SNS topic ARN";
    notify_arn_other_region: "notify-arn-other-region.toml" => "notify.sns_topic_arn", Some(38), "in aws/us-east-1, not the stack's aws/eu-central-1";
    notify_arn_other_partition: "notify-arn-other-partition.toml" => "notify.sns_topic_arn", Some(38), "in aws-cn/eu-central-1";
    notify_unknown_key: "notify-unknown-key.toml" => "notify.slack_webhook", Some(39), "unknown field `slack_webhook`";

    // rollback_scope: only with on_failure = "rollback", one of three scopes.
    rollback_scope_without_rollback: "rollback-scope-without-rollback.toml" => "rollout.rollback_scope", Some(19), "`wave` applies only with on_failure = \"rollback\" (this stack has on_failure = \"stop\")";
    rollback_scope_with_continue: "rollback-scope-with-continue.toml" => "rollout.rollback_scope", Some(19), "(this stack has on_failure = \"continue\")";
    rollback_scope_unknown: "rollback-scope-unknown.toml" => "rollout.rollback_scope", Some(19), "unknown variant `everything`, expected one of `in-flight`, `wave`, `rollout`";

    // The wave gate: bake, alarms, and instance refresh's own BakeTime.
    bake_minutes_too_long: "bake-minutes-too-long.toml" => "rollout.bake_minutes", Some(22), "between 0 and 10080 (got 20000)";
    wave_alarm_duplicate: "wave-alarm-duplicate.toml" => "rollout.wave_alarms[1]", Some(22), "`api-5xx` is listed twice";
    wave_alarm_empty_name: "wave-alarm-empty-name.toml" => "rollout.wave_alarms[1]", Some(22), "is not a CloudWatch alarm name";
    refresh_bake_time_too_long: "refresh-bake-time-too-long.toml" => "refresh.bake_time", Some(31), "between 0 and 172800 (got 172801)";

    // Ordered groups ([[targets.group]]): either groups or plain targets, named once each,
    // an ASG in one group only, the canary in the first group.
    groups_with_plain_targets: "groups-with-plain-targets.toml" => "targets.group", Some(9), "not both";
    group_missing_name: "group-missing-name.toml" => "targets.group[1].name", Some(11), "missing field `name`";
    group_duplicate_name: "group-duplicate-name.toml" => "targets.group[1].name", Some(12), "group `consul` is defined twice (targets.group[0] and targets.group[1])";
    group_batch_size_zero: "group-batch-size-zero.toml" => "targets.group[1].batch_size", Some(14), "between 1 and 1000 (got 0)";
    group_asg_in_two_groups: "group-asg-in-two-groups.toml" => "targets.group[1].asgs[1]", Some(13), "`consul-b` is in groups `consul` and `vault`";
    canary_not_in_first_group: "canary-not-in-first-group.toml" => "rollout.canary[0]", Some(19), "`vault-a` is in group `vault`: canary ASGs must belong to the first group `consul`";

    // The error budget: a count or a percentage, only with a policy that stops.
    max_failures_with_continue: "max-failures-with-continue.toml" => "rollout.max_failures", Some(22), "on_failure = \"continue\" already tolerates every failure";
    max_failures_over_100_percent: "max-failures-over-100-percent.toml" => "rollout.max_failures", Some(22), "150% is more than 100% of the planned ASGs";
    max_failures_malformed: "max-failures-malformed.toml" => "rollout.max_failures", Some(22), "invalid value: string \"ten\", expected a number of ASGs (0 or more) or a percentage such as \"10%\"";
    max_failures_negative: "max-failures-negative.toml" => "rollout.max_failures", Some(22), "invalid value: integer `-1`";
    max_failures_over_targets: "max-failures-over-targets.toml" => "rollout.max_failures", Some(22), "5 is more than the 4 ASGs in targets.asgs";

    // Missing required keys: no line holds a missing top-level key.
    missing_region: "missing-region.toml" => "region", None, "missing field `region`";
    missing_targets: "missing-targets.toml" => "targets", None, "missing field `targets`";

    // TOML syntax errors.
    toml_merge_conflict: "toml-merge-conflict.toml" => "", Some(14), "invalid key";
    toml_syntax_error: "toml-syntax-error.toml" => "rollout.strategy", Some(15), "string";
    toml_duplicate_key: "toml-duplicate-key.toml" => "rollout.batch_size", Some(21), "duplicate key `batch_size`";
}

/// The directory of malformed env files.
fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("bad-envs")
}

/// Loads the case's file and checks it fails with exactly the expected problem.
fn check(case: &Case) {
    let path = fixtures_dir().join(case.file);
    let error = match config::load(&path) {
        Ok(_) => panic!(
            "{} loaded, but it should fail at `{}`",
            path.display(),
            case.key
        ),
        Err(error) => error,
    };
    let shown = error.to_string();
    let problems = error.problems();
    assert_eq!(
        problems.len(),
        1,
        "{}: one mistake should give one problem, got:\n{shown}",
        case.file
    );
    let problem: &Problem = &problems[0];

    assert_eq!(
        problem.key, case.key,
        "{}: wrong key in:\n{shown}",
        case.file
    );
    assert_eq!(
        problem.line, case.line,
        "{}: wrong line in:\n{shown}",
        case.file
    );
    assert!(
        problem.message.contains(case.phrase),
        "{}: the message should contain {:?}:\n{shown}",
        case.file,
        case.phrase
    );

    // The rendered error reads `<file>:<line>: `<key>`: <message>`.
    let file = path.display().to_string();
    assert!(
        shown.contains(&file),
        "{}: the error should name {file}:\n{shown}",
        case.file
    );
    if let Some(line) = case.line {
        assert!(
            shown.contains(&format!(":{line}:")),
            "{}: the error should name line {line}:\n{shown}",
            case.file
        );
    }
    if !case.key.is_empty() {
        assert!(
            shown.contains(&format!("`{}`", case.key)),
            "{}: the error should name `{}`:\n{shown}",
            case.file,
            case.key
        );
    }
    let mut prefix = file;
    if let Some(line) = case.line {
        prefix.push_str(&format!(":{line}"));
    }
    if !case.key.is_empty() {
        prefix.push_str(&format!(": `{}`", case.key));
    }
    assert_eq!(
        shown,
        format!("{prefix}: {}", problem.message),
        "{}: the error is not laid out as expected",
        case.file
    );
}

/// So that a new fixture cannot go untested: every file in the directory has a case, and
/// every case has a file.
#[test]
fn every_fixture_has_a_case() {
    let dir = fixtures_dir();
    let mut on_disk = BTreeSet::new();
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        on_disk.insert(entry.file_name().to_string_lossy().into_owned());
    }
    let mut in_table = BTreeSet::new();
    for case in CASES {
        assert!(
            in_table.insert(case.file.to_string()),
            "{} has two cases",
            case.file
        );
    }
    let untested: Vec<_> = on_disk.difference(&in_table).collect();
    assert!(
        untested.is_empty(),
        "fixtures without a case in bad_envs.rs: {untested:?}"
    );
    let missing: Vec<_> = in_table.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "cases without a fixture in {}: {missing:?}",
        dir.display()
    );
    assert!(
        CASES.len() >= 18,
        "only {} malformed env files",
        CASES.len()
    );
}

/// The real envs load cleanly, and each `name` matches its file as `--env` requires.
#[test]
fn every_env_loads_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("envs");
    let mut envs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    envs.sort();
    assert!(!envs.is_empty(), "no envs/*.toml in {}", dir.display());
    for path in &envs {
        let config =
            config::load(path).unwrap_or_else(|e| panic!("{} should load:\n{e}", path.display()));
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        assert_eq!(
            Some(config.name.clone()),
            stem,
            "{}: `name` differs from the file name",
            path.display()
        );
    }
}
