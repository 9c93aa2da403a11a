//! The stack config (`envs/<env>.toml`): the serde model, defaults and validation, with
//! every error naming the file, the key and, where it can, the line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Most ASGs refreshing at once (a Distributed Map runs up to 10,000 children; more than
/// this many refreshes at once defeats the point of the tool).
pub const MAX_BATCH_SIZE: u32 = 1000;

/// One environment stack.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// Stack name: resources are `asg-refresh-<name>-*`.
    pub name: String,
    pub region: String,
    /// The account the stack lives in; IAM documents are scoped to it.
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Points every client at an emulator (or any other endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    pub targets: Targets,
    #[serde(default)]
    pub rollout: Rollout,
    #[serde(default)]
    pub refresh: Refresh,
    #[serde(default)]
    pub lambda: LambdaSettings,
    /// Where rollouts tell people what happens (SNS and EventBridge); absent: no notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

/// `[notify]`: an SNS topic of the operator's (`sns_topic_arn`) or one the stack creates
/// (`create_topic`); every notification also goes to the default event bus.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notify {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sns_topic_arn: Option<String>,
    pub create_topic: bool,
}

/// Which ASGs a rollout covers: explicit names, tag filters (all must match), or both.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default)]
    pub asgs: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Ordered groups (`[[targets.group]]`), instead of `asgs`/`tags`: see [`crate::groups`].
    #[serde(default, rename = "group", skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<crate::groups::TargetGroup>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Waves of `batch_size` ASGs; the next wave starts when the whole wave has ended.
    Batches,
    /// A sliding window: a new ASG starts as soon as one of `batch_size` slots frees.
    Window,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Batches => "batches",
            Strategy::Window => "window",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Start no further ASG; refreshes already running finish on their own.
    Stop,
    /// Carry on with every wave and report the failures at the end.
    Continue,
    /// Stop and roll back every refresh still in flight.
    Rollback,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Stop => "stop",
            OnFailure::Continue => "continue",
            OnFailure::Rollback => "rollback",
        }
    }
}

/// With `on_failure = "rollback"`, what the failure policy returns to the launch template
/// version each group had before the rollout (`[rollout] rollback_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RollbackScope {
    /// Only the refreshes still in flight (RollbackInstanceRefresh).
    InFlight,
    /// Those, and the failed wave's groups that already finished (a new refresh each).
    #[default]
    Wave,
    /// Those, and every group this rollout refreshed.
    Rollout,
}

impl RollbackScope {
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackScope::InFlight => "in-flight",
            RollbackScope::Wave => "wave",
            RollbackScope::Rollout => "rollout",
        }
    }
}

/// When a rollout pauses for an operator's approval (`cargo xtask approve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Approval {
    /// `approval = false`: never.
    #[default]
    Never,
    /// `approval = true`: before every wave after the first.
    EveryWave,
    /// `approval = "after-canary"`: once, after the canary wave (the first).
    AfterCanary,
}

impl Approval {
    /// Whether the rollout ever pauses for approval.
    pub fn is_on(self) -> bool {
        self != Approval::Never
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Never => "false",
            Approval::EveryWave => "true",
            Approval::AfterCanary => "after-canary",
        }
    }
}

impl fmt::Display for Approval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Scalar for Approval {
    const EXPECTING: &'static str = "true, false or \"after-canary\"";

    fn from_bool(value: bool) -> Read<Self> {
        Read::Value(if value {
            Approval::EveryWave
        } else {
            Approval::Never
        })
    }

    fn from_str(value: &str) -> Read<Self> {
        match value {
            "after-canary" => Read::Value(Approval::AfterCanary),
            _ => Read::WrongValue,
        }
    }
}

impl Serialize for Approval {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Approval::Never => serializer.serialize_bool(false),
            Approval::EveryWave => serializer.serialize_bool(true),
            Approval::AfterCanary => serializer.serialize_str("after-canary"),
        }
    }
}

impl<'de> Deserialize<'de> for Approval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor::<Self>(std::marker::PhantomData))
    }
}

/// What a [`Scalar`] makes of one TOML value.
enum Read<T> {
    Value(T),
    /// A form the key takes, with a value it does not accept (`invalid value: ...`).
    WrongValue,
    /// A form the key does not take (`invalid type: ...`).
    WrongType,
}

/// A key TOML may write as a bool, a whole number or a string (`approval`,
/// `max_failures`): each form the type does not read is the wrong type, and the errors say
/// what was expected with `EXPECTING`.
trait Scalar: Sized {
    const EXPECTING: &'static str;

    fn from_bool(_value: bool) -> Read<Self> {
        Read::WrongType
    }

    /// A whole number (TOML's integers are signed; other formats may give unsigned ones).
    fn from_i64(_value: i64) -> Read<Self> {
        Read::WrongType
    }

    fn from_u64(_value: u64) -> Read<Self> {
        Read::WrongType
    }

    fn from_str(value: &str) -> Read<Self>;
}

/// Reads a [`Scalar`] with serde's own wording for a wrong type or value.
struct ScalarVisitor<T>(std::marker::PhantomData<T>);

impl<T: Scalar> ScalarVisitor<T> {
    fn read<E: serde::de::Error>(
        &self,
        read: Read<T>,
        unexpected: serde::de::Unexpected<'_>,
    ) -> Result<T, E> {
        match read {
            Read::Value(value) => Ok(value),
            Read::WrongValue => Err(E::invalid_value(unexpected, self)),
            Read::WrongType => Err(E::invalid_type(unexpected, self)),
        }
    }
}

impl<T: Scalar> serde::de::Visitor<'_> for ScalarVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<T, E> {
        self.read(T::from_bool(value), serde::de::Unexpected::Bool(value))
    }
    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<T, E> {
        self.read(T::from_i64(value), serde::de::Unexpected::Signed(value))
    }
    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<T, E> {
        self.read(T::from_u64(value), serde::de::Unexpected::Unsigned(value))
    }
    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<T, E> {
        self.read(T::from_str(value), serde::de::Unexpected::Str(value))
    }
}

/// How an ASG's child execution learns that its instance refresh has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Wait on a task token that the completer Lambda answers when EC2 Auto Scaling's
    /// EventBridge event for the refresh arrives; a wait that times out (an event lost)
    /// checks once by polling and waits again.
    Events,
    /// Poll DescribeInstanceRefreshes every `poll_seconds`.
    Poll,
}

impl Completion {
    pub fn as_str(self) -> &'static str {
        match self {
            Completion::Events => "events",
            Completion::Poll => "poll",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rollout {
    pub strategy: Strategy,
    pub batch_size: u32,
    pub canary: Vec<String>,
    pub on_failure: OnFailure,
    pub poll_seconds: u32,
    pub timeout_minutes: u32,
    /// `false`, `true` (before every wave after the first) or `"after-canary"` (once, after
    /// the canary wave).
    pub approval: Approval,
    /// `events` (the default) or `poll`.
    pub completion: Completion,
    /// With `on_failure = "rollback"` only: `in-flight`, `wave` (the default) or `rollout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_scope: Option<RollbackScope>,
    /// Minutes to wait after each wave's refreshes have ended before the next wave (0: none).
    pub bake_minutes: u32,
    /// CloudWatch alarms (metric alarms, by name) that must not go to ALARM during a wave or
    /// its bake: one that does fails the wave.
    pub wave_alarms: Vec<String>,
    /// The error budget: how many ASGs may fail (a count, or a percentage of the planned ASGs
    /// rounded down) before `on_failure` applies. `None`: the first failure applies it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<MaxFailures>,
}

/// `[rollout] max_failures`: `N` ASGs, or `"P%"` of the planned ASGs (rounded down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxFailures {
    Count(u32),
    Percent(u32),
}

impl MaxFailures {
    /// How many failed ASGs the rollout tolerates out of `planned`.
    pub fn budget(self, planned: u32) -> u32 {
        match self {
            MaxFailures::Count(n) => n,
            MaxFailures::Percent(p) => (u64::from(p) * u64::from(planned) / 100) as u32,
        }
    }
}

impl fmt::Display for MaxFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxFailures::Count(n) => write!(f, "{n}"),
            MaxFailures::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Scalar for MaxFailures {
    const EXPECTING: &'static str = "a number of ASGs (0 or more) or a percentage such as \"10%\"";

    fn from_i64(value: i64) -> Read<Self> {
        u32::try_from(value).map_or(Read::WrongValue, |n| Read::Value(MaxFailures::Count(n)))
    }

    fn from_u64(value: u64) -> Read<Self> {
        u32::try_from(value).map_or(Read::WrongValue, |n| Read::Value(MaxFailures::Count(n)))
    }

    fn from_str(value: &str) -> Read<Self> {
        value
            .strip_suffix('%')
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
            .map_or(Read::WrongValue, |p| Read::Value(MaxFailures::Percent(p)))
    }
}

impl Serialize for MaxFailures {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxFailures::Count(n) => serializer.serialize_u32(*n),
            MaxFailures::Percent(_) => serializer.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for MaxFailures {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor::<Self>(std::marker::PhantomData))
    }
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            strategy: Strategy::Batches,
            batch_size: 3,
            canary: Vec::new(),
            on_failure: OnFailure::Stop,
            poll_seconds: 60,
            timeout_minutes: 60,
            approval: Approval::Never,
            completion: Completion::Events,
            rollback_scope: None,
            bake_minutes: 0,
            wave_alarms: Vec::new(),
            max_failures: None,
        }
    }
}

/// StartInstanceRefresh preferences.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Refresh {
    pub min_healthy_percentage: u32,
    pub max_healthy_percentage: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_warmup: Option<u32>,
    pub skip_matching: bool,
    pub auto_rollback: bool,
    pub alarms: Vec<String>,
    pub checkpoint_percentages: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_delay: Option<u32>,
    /// Instance refresh's own BakeTime preference: seconds a refresh waits once every instance
    /// is replaced before it counts as complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bake_time: Option<u32>,
    /// Roles of the launch templates' instance profiles: starting a refresh passes them
    /// to EC2, so the Lambda role may pass exactly these.
    pub instance_roles: Vec<String>,
}

impl Default for Refresh {
    fn default() -> Self {
        Self {
            min_healthy_percentage: 100,
            max_healthy_percentage: 200,
            instance_warmup: None,
            skip_matching: true,
            auto_rollback: true,
            alarms: Vec::new(),
            checkpoint_percentages: Vec::new(),
            checkpoint_delay: None,
            bake_time: None,
            instance_roles: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Architecture {
    #[serde(rename = "arm64")]
    Arm64,
    #[serde(rename = "x86_64")]
    X86_64,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Arm64 => "arm64",
            Architecture::X86_64 => "x86_64",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaSettings {
    pub architecture: Architecture,
    pub memory_mb: u32,
    /// The refresher's timeout: each of its calls handles one ASG, or loops over the
    /// rollout's records a few at a time.
    pub timeout_seconds: u32,
    /// The planner's timeout. It reads every target once per rollout (target health,
    /// launch template, pin), a few at a time: at 2,000 ASGs that takes minutes within the
    /// account's API rate limits, far longer than one refresher call.
    pub planner_timeout_seconds: u32,
}

impl Default for LambdaSettings {
    fn default() -> Self {
        Self {
            architecture: Architecture::Arm64,
            memory_mb: 256,
            timeout_seconds: 60,
            planner_timeout_seconds: 600,
        }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `rollout.batch_size`; empty for the file as a whole.
    pub key: String,
    /// 1-based line, where it is known.
    pub line: Option<usize>,
    pub message: String,
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render_problems(file: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string_in(file))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Problem {
    fn to_string_in(&self, file: &Path) -> String {
        let mut out = file.display().to_string();
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
        }
        if !self.key.is_empty() {
            out.push_str(&format!(": `{}`", self.key));
        }
        out.push_str(&format!(": {}", self.message));
        out
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_in(Path::new("<config>")))
    }
}

/// Reads and validates a config file.
pub fn load(file: &Path) -> Result<StackConfig, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse(&text, file)
}

/// Parses and validates config text; `file` only names the source in errors.
pub fn parse(text: &str, file: &Path) -> Result<StackConfig, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        file: file.to_path_buf(),
        problems,
    };
    let deserializer = toml::Deserializer::new(text);
    let config: StackConfig = match serde_path_to_error::deserialize(deserializer) {
        Ok(config) => config,
        Err(error) => return Err(invalid(vec![decode_problem(text, &error)])),
    };
    let problems = check(&config, &Locator::new(text));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(invalid(problems))
    }
}

fn decode_problem(text: &str, error: &serde_path_to_error::Error<toml::de::Error>) -> Problem {
    let inner = error.inner();
    let mut key = error.path().to_string();
    if key == "." {
        key.clear();
    }
    let message = inner.message().trim().to_string();
    let locator = Locator::new(text);
    // A missing key has no line of its own: point at its table's header, if it has one.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        let parent = key.clone();
        key = if parent.is_empty() {
            field.to_string()
        } else {
            format!("{parent}.{field}")
        };
        let line = if parent.is_empty() {
            None
        } else {
            locator.line(&parent)
        };
        return Problem { key, line, message };
    }
    // The path of an unknown field already ends with it; only add it when it does not.
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    {
        if key != field && !key.ends_with(&format!(".{field}")) {
            key = if key.is_empty() {
                field.to_string()
            } else {
                format!("{key}.{field}")
            };
        }
    }
    let line = inner.span().map(|span| line_of(text, span.start));
    // A TOML syntax error carries no path: name the key written on the offending line.
    if key.is_empty() {
        if let Some(line) = line {
            key = key_on_line(text, line).unwrap_or_default();
        }
    }
    let line = line.or_else(|| locator.line(&key));
    Problem { key, line, message }
}

/// The dotted key assigned on `line` (1-based), from the nearest `[table]` header above it.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?.trim();
    let (name, _) = here.split_once('=')?;
    let name = name.trim().trim_matches('"');
    if name.is_empty() || name.starts_with('#') || name.starts_with('[') {
        return None;
    }
    let table = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(table) if !table.is_empty() => format!("{table}.{name}"),
        _ => name.to_string(),
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Finds the line of a dotted key in the original text.
struct Locator<'a> {
    text: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            doc: toml_edit::ImDocument::parse(text).ok(),
        }
    }

    /// The line of the deepest part of `key` present in the file (`a.b[2]` finds item 2 of b).
    fn line(&self, key: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut table: &dyn toml_edit::TableLike = doc.as_table();
        let mut found = None;
        let parts: Vec<&str> = key.split('.').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let (name, index) = match part.split_once('[') {
                Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (*part, None),
            };
            let Some((k, item)) = table.get_key_value(name) else {
                break;
            };
            found = k.span().or_else(|| item.span()).map(|s| s.start).or(found);
            if let (Some(index), Some(array)) = (index, item.as_array()) {
                if let Some(span) = array.get(index).and_then(|v| v.span()) {
                    found = Some(span.start);
                }
            }
            // `[[a.b]]` tables (`a.b[2].c`): the table's header, then keys inside it.
            if let (Some(index), Some(tables)) = (index, item.as_array_of_tables()) {
                let Some(entry) = tables.get(index) else {
                    break;
                };
                found = entry.span().map(|s| s.start).or(found);
                table = entry;
                continue;
            }
            if i + 1 < parts.len() {
                match item.as_table_like() {
                    Some(inner) => table = inner,
                    None => break,
                }
            }
        }
        found.map(|offset| line_of(self.text, offset))
    }
}

struct Checker<'a> {
    locator: &'a Locator<'a>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn fail(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.to_string(),
            line: self.locator.line(key),
            message: message.into(),
        });
    }

    fn range(&mut self, key: &str, value: u32, low: u32, high: u32) {
        if !(low..=high).contains(&value) {
            self.fail(
                key,
                format!("must be between {low} and {high} (got {value})"),
            );
        }
    }
}

/// Every rule a parsed config must also meet.
fn check(config: &StackConfig, locator: &Locator<'_>) -> Vec<Problem> {
    let mut c = Checker {
        locator,
        problems: Vec::new(),
    };
    if !is_stack_name(&config.name) {
        c.fail(
            "name",
            format!(
                "`{}` is not a stack name: 1 to 20 of a-z, 0-9 and `-`, starting with a letter, not ending with `-`",
                config.name
            ),
        );
    }
    if !is_region(&config.region) {
        c.fail(
            "region",
            format!(
                "`{}` is not an AWS region (like `ap-south-1`)",
                config.region
            ),
        );
    }
    if config.account_id.len() != 12 || !config.account_id.bytes().all(|b| b.is_ascii_digit()) {
        c.fail(
            "account_id",
            format!("`{}` is not a 12-digit AWS account id", config.account_id),
        );
    }
    if config.profile.as_deref() == Some("") {
        c.fail(
            "profile",
            "is empty: remove it to use the default credential chain",
        );
    }
    if let Some(url) = &config.endpoint_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            c.fail("endpoint_url", format!("`{url}` is not an http(s) URL"));
        }
    }
    check_targets(config, &mut c);
    check_rollout(config, &mut c);
    check_rollback_scope(&config.rollout, &mut c);
    check_wave_gate(config, &mut c);
    check_error_budget(config, &mut c);
    check_refresh(&config.refresh, &mut c);
    check_checkpoints(config, &mut c);
    check_history(config, &mut c);
    check_plan_payload(config, &mut c);
    check_notify(config, &mut c);
    let lambda = &config.lambda;
    c.range("lambda.memory_mb", lambda.memory_mb, 128, 10240);
    c.range("lambda.timeout_seconds", lambda.timeout_seconds, 3, 900);
    c.range(
        "lambda.planner_timeout_seconds",
        lambda.planner_timeout_seconds,
        3,
        900,
    );
    c.problems
}

/// `rollback_scope` says what the rollback policy restores: with another policy it would be
/// ignored, so it is refused.
fn check_rollback_scope(rollout: &Rollout, c: &mut Checker<'_>) {
    if let Some(scope) = rollout.rollback_scope {
        if rollout.on_failure != OnFailure::Rollback {
            c.fail(
                "rollout.rollback_scope",
                format!(
                    "`{}` applies only with on_failure = \"rollback\" (this stack has on_failure = \"{}\"): remove it or set on_failure = \"rollback\"",
                    scope.as_str(),
                    rollout.on_failure.as_str()
                ),
            );
        }
    }
}

impl Rollout {
    /// What the rollback policy restores (`wave` unless `rollback_scope` says otherwise).
    pub fn rollback_scope(&self) -> RollbackScope {
        self.rollback_scope.unwrap_or_default()
    }
}

fn check_targets(config: &StackConfig, c: &mut Checker<'_>) {
    let targets = &config.targets;
    if targets.asgs.is_empty() && targets.tags.is_empty() && targets.groups.is_empty() {
        c.fail(
            "targets",
            "names no ASG: give `asgs`, `tags`, both, or `[[targets.group]]` tables",
        );
    }
    for (key, message) in crate::groups::problems(config) {
        c.fail(&key, message);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in targets.asgs.iter().enumerate() {
        let key = format!("targets.asgs[{i}]");
        if !is_asg_name(name) {
            c.fail(
                &key,
                format!("`{name}` is not an ASG name (1 to 255 characters, no `:`)"),
            );
        }
        if !seen.insert(name) {
            c.fail(&key, format!("`{name}` is listed twice"));
        }
    }
    for (key, value) in &targets.tags {
        let at = format!("targets.tags.{key}");
        if key.is_empty() || key.len() > 128 || key.starts_with("aws:") {
            c.fail(
                &at,
                "tag keys are 1 to 128 characters and may not start with `aws:`",
            );
        }
        if value.len() > 256 {
            c.fail(&at, "tag values are at most 256 characters");
        }
    }
}

fn check_rollout(config: &StackConfig, c: &mut Checker<'_>) {
    let rollout = &config.rollout;
    c.range("rollout.batch_size", rollout.batch_size, 1, MAX_BATCH_SIZE);
    c.range("rollout.poll_seconds", rollout.poll_seconds, 5, 3600);
    c.range("rollout.timeout_minutes", rollout.timeout_minutes, 1, 10080);
    if u64::from(rollout.timeout_minutes) * 60 < u64::from(rollout.poll_seconds) {
        c.fail(
            "rollout.timeout_minutes",
            format!(
                "{} minute(s) is shorter than one poll ({} seconds)",
                rollout.timeout_minutes, rollout.poll_seconds
            ),
        );
    }
    // With groups the canary is the first group's first wave (crate::groups checks it).
    if rollout.canary.len() > rollout.batch_size as usize
        && rollout.batch_size > 0
        && config.targets.groups.is_empty()
    {
        c.fail(
            "rollout.canary",
            format!(
                "{} canary ASGs exceed batch_size {}: the canary wave would refresh more than batch_size at once",
                rollout.canary.len(),
                rollout.batch_size
            ),
        );
    }
    if rollout.approval == Approval::AfterCanary && rollout.canary.is_empty() {
        c.fail(
            "rollout.approval",
            "`after-canary` approves the next wave after the canary wave, but rollout.canary names no ASG",
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in rollout.canary.iter().enumerate() {
        let key = format!("rollout.canary[{i}]");
        if !seen.insert(name) {
            c.fail(&key, format!("`{name}` is listed twice"));
        }
        // With tag filters a canary may be found by tag at plan time; without, it must be listed.
        let no_targets = config.targets.tags.is_empty() && config.targets.asgs.is_empty();
        if config.targets.tags.is_empty() && !no_targets && !config.targets.asgs.contains(name) {
            c.fail(&key, format!("`{name}` is not in targets.asgs"));
        }
    }
}

fn check_refresh(refresh: &Refresh, c: &mut Checker<'_>) {
    c.range(
        "refresh.min_healthy_percentage",
        refresh.min_healthy_percentage,
        0,
        100,
    );
    c.range(
        "refresh.max_healthy_percentage",
        refresh.max_healthy_percentage,
        100,
        200,
    );
    if refresh.max_healthy_percentage > refresh.min_healthy_percentage + 100 {
        c.fail(
            "refresh.max_healthy_percentage",
            format!(
                "{} is {} above min_healthy_percentage {}: at most 100 above",
                refresh.max_healthy_percentage,
                refresh.max_healthy_percentage - refresh.min_healthy_percentage,
                refresh.min_healthy_percentage
            ),
        );
    }
    if let Some(warmup) = refresh.instance_warmup {
        c.range("refresh.instance_warmup", warmup, 0, 86400);
    }
    if refresh.alarms.len() > 10 {
        c.fail("refresh.alarms", "at most 10 alarms");
    }
    if !refresh.alarms.is_empty() && !refresh.auto_rollback {
        c.fail(
            "refresh.alarms",
            "alarms roll back a refresh only with auto_rollback = true",
        );
    }
    for (i, alarm) in refresh.alarms.iter().enumerate() {
        if alarm.is_empty() || alarm.len() > 255 {
            c.fail(
                &format!("refresh.alarms[{i}]"),
                "alarm names are 1 to 255 characters",
            );
        }
    }
    let mut last = 0;
    for (i, pct) in refresh.checkpoint_percentages.iter().enumerate() {
        if *pct == 0 || *pct > 100 || *pct <= last {
            c.fail(
                &format!("refresh.checkpoint_percentages[{i}]"),
                format!(
                    "{pct} after {last}: checkpoints are ascending percentages between 1 and 100"
                ),
            );
        }
        last = *pct;
    }
    for (i, role) in refresh.instance_roles.iter().enumerate() {
        let valid = !role.is_empty()
            && role.len() <= 64
            && role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if !valid {
            c.fail(
                &format!("refresh.instance_roles[{i}]"),
                format!("`{role}` is not an IAM role name"),
            );
        }
    }
    if let Some(delay) = refresh.checkpoint_delay {
        if refresh.checkpoint_percentages.is_empty() {
            c.fail("refresh.checkpoint_delay", "needs checkpoint_percentages");
        }
        c.range("refresh.checkpoint_delay", delay, 0, 172800);
    }
}

/// `max_failures`: with a failure policy that stops, at most 100%, and no more than the listed
/// ASGs when the targets are only listed names (a percentage cannot exceed the plan).
fn check_error_budget(config: &StackConfig, c: &mut Checker<'_>) {
    let rollout = &config.rollout;
    let Some(max) = rollout.max_failures else {
        return;
    };
    if rollout.on_failure == OnFailure::Continue {
        c.fail(
            "rollout.max_failures",
            "on_failure = \"continue\" already tolerates every failure: set on_failure = \"stop\" or \"rollback\" to stop past max_failures, or remove max_failures",
        );
    }
    match max {
        MaxFailures::Percent(p) if p > 100 => c.fail(
            "rollout.max_failures",
            format!("{p}% is more than 100% of the planned ASGs"),
        ),
        MaxFailures::Count(n) => {
            let listed = config.targets.asgs.len();
            let only_listed = config.targets.tags.is_empty() && config.targets.groups.is_empty();
            if only_listed && n as usize > listed {
                c.fail(
                    "rollout.max_failures",
                    format!("{n} is more than the {listed} ASGs in targets.asgs"),
                );
            }
        }
        MaxFailures::Percent(_) => {}
    }
}

/// Most minutes `bake_minutes` may be: a week, as `timeout_minutes`.
pub const MAX_BAKE_MINUTES: u32 = 10080;
/// Most `wave_alarms`: DescribeAlarms reads at most 100 names at once
/// (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html>).
pub const MAX_WAVE_ALARMS: usize = 100;
/// Most seconds of `[refresh] bake_time`: RefreshPreferences' BakeTime is 0 to 172,800
/// (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RefreshPreferences.html>).
pub const MAX_REFRESH_BAKE_TIME: u32 = 172_800;

/// The bake after each wave and the alarms that gate it; and instance refresh's BakeTime.
fn check_wave_gate(config: &StackConfig, c: &mut Checker<'_>) {
    let rollout = &config.rollout;
    c.range(
        "rollout.bake_minutes",
        rollout.bake_minutes,
        0,
        MAX_BAKE_MINUTES,
    );
    if rollout.wave_alarms.len() > MAX_WAVE_ALARMS {
        c.fail(
            "rollout.wave_alarms",
            format!(
                "{} alarms: at most {MAX_WAVE_ALARMS} (DescribeAlarms reads at most {MAX_WAVE_ALARMS} names at once)",
                rollout.wave_alarms.len()
            ),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, alarm) in rollout.wave_alarms.iter().enumerate() {
        let key = format!("rollout.wave_alarms[{i}]");
        // AlarmName: 1 to 255 characters (API_PutMetricAlarm); a name that is not valid
        // in an ARN could not be granted to the Lambda role.
        if alarm.is_empty() || alarm.chars().count() > 255 || alarm.chars().any(char::is_control) {
            c.fail(&key, format!("`{alarm}` is not a CloudWatch alarm name (1 to 255 characters, no control characters)"));
        } else if !seen.insert(alarm) {
            c.fail(&key, format!("`{alarm}` is listed twice"));
        }
    }
    if let Some(bake) = config.refresh.bake_time {
        c.range("refresh.bake_time", bake, 0, MAX_REFRESH_BAKE_TIME);
    }
}

/// Most bytes the listed targets and canary may take: the Plan Task carries them to the
/// planner, and a Task's input is limited to 256 KiB (States.DataLimitExceeded, which
/// nothing catches: <https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html>).
/// A quarter of that leaves room for the rest of the state.
pub const MAX_LISTED_TARGET_BYTES: usize = 64 * 1024;

/// Refuses target lists too long to travel to the planner; tags select any number of ASGs.
fn check_plan_payload(config: &StackConfig, c: &mut Checker<'_>) {
    let groups = crate::groups::plan_groups(config);
    let listed = serde_json::to_vec(&(&config.targets.asgs, &config.rollout.canary, &groups))
        .map_or(usize::MAX, |v| v.len());
    if listed > MAX_LISTED_TARGET_BYTES {
        c.fail(
            "targets.asgs",
            format!(
                "{} names take {listed} bytes, more than the {MAX_LISTED_TARGET_BYTES} the Plan task may carry to the planner (a task's input is limited to 256 KiB): select this many ASGs by `tags`",
                config.targets.asgs.len()
                    + groups.iter().map(|g| g.targets.asgs.len()).sum::<usize>()
            ),
        );
    }
}

/// AWS's CheckpointDelay when checkpoints are set without one: "If you specify a value for
/// CheckpointPercentages and not for CheckpointDelay, the CheckpointDelay defaults to 3600
/// (1 hour)" (<https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RefreshPreferences.html>).
pub const DEFAULT_CHECKPOINT_DELAY: u32 = 3600;

/// Checkpoints against the refresh and `timeout_minutes`. "To replace all instances in the
/// Auto Scaling group, the last number in the array must be 100" (RefreshPreferences,
/// above): with a lower last checkpoint the refresh ends Successful half done. After each
/// checkpoint below 100 the refresh pauses for CheckpointDelay; once the last percentage
/// is replaced it ends (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/asg-adding-checkpoints-instance-refresh.html>),
/// so pauses that add up to `timeout_minutes` make every refresh time out while paused.
fn check_checkpoints(config: &StackConfig, c: &mut Checker<'_>) {
    let refresh = &config.refresh;
    let Some(&last) = refresh.checkpoint_percentages.last() else {
        return;
    };
    if last != 100 {
        c.fail(
            &format!("refresh.checkpoint_percentages[{}]", refresh.checkpoint_percentages.len() - 1),
            format!(
                "the last checkpoint is {last}: it must be 100, or the refresh ends Successful with only {last} % of the instances replaced"
            ),
        );
    }
    let pauses = refresh
        .checkpoint_percentages
        .iter()
        .filter(|p| **p < 100)
        .count() as u64;
    let delay = refresh.checkpoint_delay.unwrap_or(DEFAULT_CHECKPOINT_DELAY);
    let paused = pauses * u64::from(delay);
    let timeout = u64::from(config.rollout.timeout_minutes) * 60;
    if pauses == 0 || paused < timeout {
        return;
    }
    let (key, how) = match refresh.checkpoint_delay {
        Some(_) => ("refresh.checkpoint_delay", format!("{delay} s")),
        None => (
            "refresh.checkpoint_percentages",
            format!("{delay} s (AWS's default: checkpoint_delay is not set)"),
        ),
    };
    c.fail(
        key,
        format!(
            "the refresh pauses at {pauses} checkpoint(s) below 100 for {how} each: {paused} s, not less than timeout_minutes ({} min = {timeout} s), so every ASG would time out while paused; lower checkpoint_delay or raise timeout_minutes",
            config.rollout.timeout_minutes
        ),
    );
}

/// Refuses a poll loop too long for one child execution's history: each ASG's child polls
/// up to `timeout_minutes * 60 / poll_seconds` times, and past 25,000 events the execution
/// fails mid-refresh (<https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html>).
/// The events per poll are counted on the rendered child.
fn check_history(config: &StackConfig, c: &mut Checker<'_>) {
    let rollout = &config.rollout;
    // Out-of-range values are reported by check_rollout already.
    if !(5..=3600).contains(&rollout.poll_seconds)
        || !(1..=10080).contains(&rollout.timeout_minutes)
    {
        return;
    }
    let machine = crate::rollout::build(config);
    let child = crate::review::child_history(config, &machine);
    if child.fits() {
        return;
    }
    let polls = child.max_polls().saturating_sub(1).max(1);
    let min_poll_seconds = (u64::from(rollout.timeout_minutes) * 60).div_ceil(polls);
    let max_timeout_minutes = polls * u64::from(rollout.poll_seconds) / 60;
    c.fail(
        "rollout.timeout_minutes",
        format!(
            "{} minutes polled every {} s is up to {} polls of {} events each, {} events in one ASG's child execution: over the {}-event history limit with {} set aside for retries, so the execution would fail mid-refresh; raise poll_seconds to at least {min_poll_seconds} or lower timeout_minutes to at most {max_timeout_minutes}",
            rollout.timeout_minutes,
            rollout.poll_seconds,
            child.polls,
            child.per_poll,
            child.events(),
            crate::review::HISTORY_LIMIT,
            crate::review::CHILD_RETRY_RESERVE,
        ),
    );
}

/// `[notify]`: exactly one of `sns_topic_arn` and `create_topic = true`; the ARN is a standard
/// topic's in the stack's partition and region (the Lambdas publish to it with the stack's
/// regional clients). FIFO topics need a MessageGroupId on every Publish
/// (<https://docs.aws.amazon.com/sns/latest/api/API_Publish.html>): not supported.
fn check_notify(config: &StackConfig, c: &mut Checker<'_>) {
    let Some(notify) = &config.notify else {
        return;
    };
    let Some(arn) = &notify.sns_topic_arn else {
        if !notify.create_topic {
            c.fail(
                "notify",
                "names no topic: give `sns_topic_arn` or `create_topic = true` (or remove [notify])",
            );
        }
        return;
    };
    if notify.create_topic {
        c.fail(
            "notify.create_topic",
            "and `sns_topic_arn` are both set: use one topic, the stack's or yours",
        );
    }
    let partition = crate::names::partition_of(&config.region);
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let name = parts.get(5).copied().unwrap_or_default();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "sns"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !well_formed {
        c.fail(
            "notify.sns_topic_arn",
            format!(
                "`{arn}` is not an SNS topic ARN (arn:{partition}:sns:<region>:<account>:<name>)"
            ),
        );
    } else if parts[1] != partition || parts[3] != config.region {
        c.fail(
            "notify.sns_topic_arn",
            format!(
                "`{arn}` is in {}/{}, not the stack's {partition}/{}: use a topic in the stack's region",
                parts[1], parts[3], config.region
            ),
        );
    } else if name.ends_with(".fifo") {
        c.fail(
            "notify.sns_topic_arn",
            format!("`{arn}` is a FIFO topic: use a standard topic"),
        );
    }
}

fn is_stack_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 20
        && bytes[0].is_ascii_lowercase()
        && !name.ends_with('-')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts
            .iter()
            .take(parts.len() - 1)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok()
}

/// 1 to 255 characters, no `:` (what EC2 Auto Scaling accepts as a group name).
pub(crate) fn is_asg_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 255 && !name.contains(':')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The lines every unit test's stack starts with (after a blank one): its name, region
    /// and account.
    pub(crate) const HEAD: &str = r#"
name = "dev"
region = "eu-west-1"
account_id = "123456789012"
"#;

    /// A stack of two listed ASGs that takes every default.
    fn minimal() -> String {
        format!("{HEAD}[targets]\nasgs = [\"a\", \"b\"]\n")
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let config = parse(&minimal(), Path::new("dev.toml")).unwrap();
        assert_eq!(config.rollout, Rollout::default());
        assert_eq!(config.refresh, Refresh::default());
        assert_eq!(config.lambda.architecture, Architecture::Arm64);
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let text = minimal() + "[rollout]\nbatch_size = \"3\"\n";
        let err = parse(&text, Path::new("dev.toml")).unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(p.key, "rollout.batch_size");
        assert_eq!(p.line, Some(8));
        assert!(
            err.to_string()
                .starts_with("dev.toml:8: `rollout.batch_size`: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn approval_and_max_failures_name_the_wrong_type_or_value() {
        let approval = "expected true, false or \"after-canary\"";
        let budget = "expected a number of ASGs (0 or more) or a percentage such as \"10%\"";
        for (line, key, message) in [
            (
                "approval = 5",
                "rollout.approval",
                format!("invalid type: integer `5`, {approval}"),
            ),
            (
                "approval = 1.5",
                "rollout.approval",
                format!("invalid type: floating point `1.5`, {approval}"),
            ),
            (
                "approval = \"maybe\"",
                "rollout.approval",
                format!("invalid value: string \"maybe\", {approval}"),
            ),
            (
                "max_failures = true",
                "rollout.max_failures",
                format!("invalid type: boolean `true`, {budget}"),
            ),
            (
                "max_failures = -1",
                "rollout.max_failures",
                format!("invalid value: integer `-1`, {budget}"),
            ),
            (
                "max_failures = 5000000000",
                "rollout.max_failures",
                format!("invalid value: integer `5000000000`, {budget}"),
            ),
            (
                "max_failures = \"10\"",
                "rollout.max_failures",
                format!("invalid value: string \"10\", {budget}"),
            ),
        ] {
            let text = minimal() + "[rollout]\n" + line + "\n";
            let err = parse(&text, Path::new("dev.toml")).unwrap_err();
            let p = &err.problems()[0];
            assert_eq!(
                (p.key.as_str(), p.message.as_str()),
                (key, message.as_str()),
                "{line}"
            );
        }
    }

    #[test]
    fn range_error_finds_the_line() {
        let text = minimal() + "[rollout]\npoll_seconds = 60\nbatch_size = 0\n";
        let err = parse(&text, Path::new("dev.toml")).unwrap_err();
        assert_eq!(err.problems()[0].key, "rollout.batch_size");
        assert_eq!(err.problems()[0].line, Some(9));
    }

    #[test]
    fn completion_defaults_to_events_and_names_its_key_when_wrong() {
        let config = parse(&minimal(), Path::new("dev.toml")).unwrap();
        assert_eq!(config.rollout.completion, Completion::Events);
        let text = minimal() + "[rollout]\npoll_seconds = 60\ncompletion = \"poll\"\n";
        let config = parse(&text, Path::new("dev.toml")).unwrap();
        assert_eq!(config.rollout.completion, Completion::Poll);
        let text = minimal() + "[rollout]\npoll_seconds = 60\ncompletion = \"push\"\n";
        let err = parse(&text, Path::new("dev.toml")).unwrap_err();
        let p = &err.problems()[0];
        assert_eq!((p.key.as_str(), p.line), ("rollout.completion", Some(9)));
        assert!(
            p.message.contains("events") && p.message.contains("poll"),
            "{err}"
        );
    }

    #[test]
    fn regions() {
        for ok in ["ap-south-1", "us-gov-west-1", "eu-central-2"] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in ["", "mars", "us-east", "US-EAST-1", "us-east-x"] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}
