//! The state types of the Amazon States Language and the state machine that holds them.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde::Serialize as DeriveSerialize;
use serde_json::Value;

use super::choice::ChoiceRule;
use super::template::Template;

/// A JSONPath field that may also be `null` (InputPath, OutputPath, ResultPath).
#[derive(Debug, Clone, PartialEq)]
pub enum PathOrNull {
    /// `null`: discard (ResultPath) or pass `{}` (InputPath, OutputPath).
    Null,
    Path(String),
}

impl PathOrNull {
    pub fn path(p: &str) -> Option<Self> {
        Some(PathOrNull::Path(p.to_string()))
    }

    pub fn as_path(&self) -> Option<&str> {
        match self {
            PathOrNull::Null => None,
            PathOrNull::Path(p) => Some(p),
        }
    }
}

impl Serialize for PathOrNull {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PathOrNull::Null => serializer.serialize_none(),
            PathOrNull::Path(p) => serializer.serialize_str(p),
        }
    }
}

/// InputPath and OutputPath, which every state but Fail accepts.
#[derive(Debug, Clone, PartialEq, Default, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_path: Option<PathOrNull>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_path: Option<PathOrNull>,
}

/// Retry policy for a Task, Parallel or Map.
#[derive(Debug, Clone, PartialEq, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Retrier {
    pub error_equals: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_strategy: Option<JitterStrategy>,
}

impl Retrier {
    pub fn new(errors: &[&str]) -> Self {
        Self {
            error_equals: errors.iter().map(|e| e.to_string()).collect(),
            interval_seconds: None,
            max_attempts: None,
            backoff_rate: None,
            max_delay_seconds: None,
            jitter_strategy: None,
        }
    }

    pub fn interval(mut self, seconds: u32) -> Self {
        self.interval_seconds = Some(seconds);
        self
    }

    pub fn attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    pub fn backoff(mut self, rate: f64) -> Self {
        self.backoff_rate = Some(rate);
        self
    }

    pub fn max_delay(mut self, seconds: u32) -> Self {
        self.max_delay_seconds = Some(seconds);
        self
    }

    pub fn jitter(mut self, strategy: JitterStrategy) -> Self {
        self.jitter_strategy = Some(strategy);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, DeriveSerialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JitterStrategy {
    Full,
    None,
}

/// Error handler for a Task, Parallel or Map.
#[derive(Debug, Clone, PartialEq, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Catcher {
    pub error_equals: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_path: Option<PathOrNull>,
    pub next: String,
}

impl Catcher {
    pub fn new(errors: &[&str], next: &str) -> Self {
        Self {
            error_equals: errors.iter().map(|e| e.to_string()).collect(),
            result_path: None,
            next: next.to_string(),
        }
    }

    pub fn result_path(mut self, path: &str) -> Self {
        self.result_path = PathOrNull::path(path);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Default, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pass {
    #[serde(flatten)]
    pub filters: Filters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Template>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_path: Option<PathOrNull>,
}

#[derive(Debug, Clone, PartialEq, Default, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    pub resource: String,
    #[serde(flatten)]
    pub filters: Filters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Template>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_selector: Option<Template>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_path: Option<PathOrNull>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_seconds_path: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retry: Vec<Retrier>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub catch: Vec<Catcher>,
}

#[derive(Debug, Clone, PartialEq, Default, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Choice {
    #[serde(flatten)]
    pub filters: Filters,
    pub choices: Vec<ChoiceRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Wait: valid with exactly one of its four timing fields.
#[derive(Debug, Clone, PartialEq, Default, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Wait {
    #[serde(flatten)]
    pub filters: Filters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_path: Option<String>,
}

impl Wait {
    pub fn seconds(seconds: u32) -> Self {
        Self {
            seconds: Some(seconds),
            ..Self::default()
        }
    }

    pub fn seconds_path(path: &str) -> Self {
        Self {
            seconds_path: Some(path.to_string()),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Succeed {
    #[serde(flatten)]
    pub filters: Filters,
}

#[derive(Debug, Clone, PartialEq, Default, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Fail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause_path: Option<String>,
}

impl Fail {
    /// A Fail naming `error`, with no cause yet.
    pub fn error(error: &str) -> Self {
        Self {
            error: Some(error.to_string()),
            ..Self::default()
        }
    }

    /// The cause, as fixed text.
    pub fn cause(mut self, text: &str) -> Self {
        self.cause = Some(text.to_string());
        self
    }

    /// The cause, read from the state's input at `path`.
    pub fn cause_path(mut self, path: &str) -> Self {
        self.cause_path = Some(path.to_string());
        self
    }
}

/// A nested scope of states: a Parallel branch or a Map's ItemProcessor.
#[derive(Debug, Clone, PartialEq, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Branch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor_config: Option<ProcessorConfig>,
    pub start_at: String,
    pub states: States,
}

impl Branch {
    pub fn new(states: States) -> Self {
        Self {
            processor_config: None,
            start_at: states.first_name().unwrap_or_default().to_string(),
            states,
        }
    }

    pub fn distributed(mut self, execution: ExecutionType) -> Self {
        self.processor_config = Some(ProcessorConfig {
            mode: ProcessorMode::Distributed,
            execution_type: Some(execution),
        });
        self
    }

    pub fn is_distributed(&self) -> bool {
        matches!(
            self.processor_config,
            Some(ProcessorConfig {
                mode: ProcessorMode::Distributed,
                ..
            })
        )
    }
}

#[derive(Debug, Clone, PartialEq, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorConfig {
    pub mode: ProcessorMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_type: Option<ExecutionType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, DeriveSerialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProcessorMode {
    Inline,
    Distributed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, DeriveSerialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExecutionType {
    Standard,
    Express,
}

#[derive(Debug, Clone, PartialEq, Default, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Parallel {
    #[serde(flatten)]
    pub filters: Filters,
    pub branches: Vec<Branch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Template>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_selector: Option<Template>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_path: Option<PathOrNull>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retry: Vec<Retrier>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub catch: Vec<Catcher>,
}

/// Where a Distributed Map reads its items from (S3 objects, CSV, JSON, manifests).
#[derive(Debug, Clone, PartialEq, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct ItemReader {
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader_config: Option<ReaderConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Template>,
}

#[derive(Debug, Clone, PartialEq, Default, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReaderConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_type: Option<String>,
    #[serde(rename = "CSVHeaderLocation", skip_serializing_if = "Option::is_none")]
    pub csv_header_location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u32>,
}

/// How a Distributed Map groups items into child executions.
#[derive(Debug, Clone, PartialEq, Default, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct ItemBatcher {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_items_per_batch: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_input_bytes_per_batch: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_input: Option<Template>,
}

#[derive(Debug, Clone, PartialEq, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct Map {
    #[serde(flatten)]
    pub filters: Filters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_reader: Option<ItemReader>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_selector: Option<Template>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_batcher: Option<ItemBatcher>,
    pub item_processor: Branch,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// A reference path to the concurrency in the state's input (instead of
    /// `MaxConcurrency`, never with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerated_failure_count: Option<u32>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_numbers_as_integers"
    )]
    pub tolerated_failure_percentage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_selector: Option<Template>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_path: Option<PathOrNull>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retry: Vec<Retrier>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub catch: Vec<Catcher>,
}

/// Writes `100.0` as `100`: validators (statelint) want an integer where one is meant.
fn whole_numbers_as_integers<S: Serializer>(
    value: &Option<f64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => serializer.serialize_i64(*v as i64),
        Some(v) => serializer.serialize_f64(*v),
        None => serializer.serialize_none(),
    }
}

impl Map {
    /// A Map over `items_path` running `processor` for each item.
    pub fn new(items_path: &str, processor: Branch) -> Self {
        Self {
            filters: Filters::default(),
            items_path: Some(items_path.to_string()),
            item_reader: None,
            item_selector: None,
            item_batcher: None,
            item_processor: processor,
            max_concurrency: None,
            max_concurrency_path: None,
            tolerated_failure_count: None,
            tolerated_failure_percentage: None,
            label: None,
            result_selector: None,
            result_path: None,
            retry: Vec::new(),
            catch: Vec::new(),
        }
    }
}

/// What a state does, with the fields its type accepts. Machines are built once per
/// render, so the size difference between variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, DeriveSerialize)]
#[serde(tag = "Type")]
pub enum Kind {
    Pass(Pass),
    Task(Task),
    Choice(Choice),
    Wait(Wait),
    Succeed(Succeed),
    Fail(Fail),
    Parallel(Parallel),
    Map(Map),
}

impl Kind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Pass(_) => "Pass",
            Kind::Task(_) => "Task",
            Kind::Choice(_) => "Choice",
            Kind::Wait(_) => "Wait",
            Kind::Succeed(_) => "Succeed",
            Kind::Fail(_) => "Fail",
            Kind::Parallel(_) => "Parallel",
            Kind::Map(_) => "Map",
        }
    }
}

/// How control leaves a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Next(String),
    End,
    /// No field: what Choice, Succeed and Fail require.
    None,
}

/// One named state: its kind, its comment and its transition.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub kind: Kind,
    pub comment: Option<String>,
    pub transition: Transition,
}

impl State {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            comment: None,
            transition: Transition::None,
        }
    }

    pub fn next(mut self, name: &str) -> Self {
        self.transition = Transition::Next(name.to_string());
        self
    }

    pub fn end(mut self) -> Self {
        self.transition = Transition::End;
        self
    }

    pub fn comment(mut self, text: &str) -> Self {
        self.comment = Some(text.to_string());
        self
    }
}

impl From<Kind> for State {
    fn from(kind: Kind) -> Self {
        State::new(kind)
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `Type` first, then `Comment`, the type's fields, and the transition last.
        let body = serde_json::to_value(&self.kind).map_err(serde::ser::Error::custom)?;
        let Value::Object(fields) = body else {
            return Err(serde::ser::Error::custom("a state serialises to an object"));
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("Type", self.kind.type_name())?;
        if let Some(comment) = &self.comment {
            map.serialize_entry("Comment", comment)?;
        }
        for (key, value) in fields.iter().filter(|(k, _)| k.as_str() != "Type") {
            map.serialize_entry(key, value)?;
        }
        match &self.transition {
            Transition::Next(next) => map.serialize_entry("Next", next)?,
            Transition::End => map.serialize_entry("End", &true)?,
            Transition::None => {}
        }
        map.end()
    }
}

/// The states of one scope, in the order they were added (duplicates are kept so that
/// validation can report them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct States(Vec<(String, State)>);

impl States {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(mut self, name: &str, state: impl Into<State>) -> Self {
        self.0.push((name.to_string(), state.into()));
        self
    }

    pub fn push(&mut self, name: &str, state: impl Into<State>) {
        self.0.push((name.to_string(), state.into()));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &State)> {
        self.0.iter().map(|(n, s)| (n.as_str(), s))
    }

    pub fn get(&self, name: &str) -> Option<&State> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    pub fn first_name(&self) -> Option<&str> {
        self.0.first().map(|(n, _)| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for States {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, state) in &self.0 {
            map.serialize_entry(name, state)?;
        }
        map.end()
    }
}

/// A whole state machine definition.
#[derive(Debug, Clone, PartialEq, DeriveSerialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateMachine {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub start_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    pub states: States,
}

impl StateMachine {
    /// A machine starting at its first state.
    pub fn new(states: States) -> Self {
        Self {
            comment: None,
            start_at: states.first_name().unwrap_or_default().to_string(),
            timeout_seconds: None,
            states,
        }
    }

    /// Pretty JSON with a trailing newline: the same machine always gives the same bytes.
    pub fn to_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(self).expect("state machines serialise");
        out.push('\n');
        out
    }
}
