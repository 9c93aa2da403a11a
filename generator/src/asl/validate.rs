//! Build-time checks of a state machine, each error naming the state's path
//! (for example `Waves > ItemProcessor > Check`).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fmt;

use super::choice::Condition;
use super::path::{check_path, check_reference_path};
use super::state::{
    Branch, Catcher, Kind, PathOrNull, Retrier, State, StateMachine, States, Transition,
};
use super::template::Template;

/// Most iterations an inline Map runs at once; beyond this only Distributed Map helps.
pub const INLINE_MAP_MAX_CONCURRENCY: u32 = 40;
/// Most child executions a Distributed Map runs at once.
pub const DISTRIBUTED_MAP_MAX_CONCURRENCY: u32 = 10_000;

/// One problem in a state machine definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Where: the state's path, `>`-separated through Parallel branches and Map processors.
    pub at: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// All problems found, in definition order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid state machine:")?;
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// Checks the whole machine; returns every problem found.
pub fn validate(machine: &StateMachine) -> Result<(), ValidationErrors> {
    let mut v = Validator::default();
    v.scope("(root)", &machine.start_at, &machine.states);
    if let Some(0) = machine.timeout_seconds {
        v.error("(root)", "TimeoutSeconds must be positive");
    }
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(v.errors))
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ValidationError>,
    seen: HashSet<String>,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix == "(root)" {
        name.to_string()
    } else {
        format!("{prefix} > {name}")
    }
}

impl Validator {
    fn error(&mut self, at: &str, message: impl Into<String>) {
        self.errors.push(ValidationError {
            at: at.to_string(),
            message: message.into(),
        });
    }

    fn scope(&mut self, at: &str, start_at: &str, states: &States) {
        if states.is_empty() {
            self.error(at, "has no states");
            return;
        }
        let names: BTreeSet<&str> = states.iter().map(|(n, _)| n).collect();
        if !names.contains(start_at) {
            self.error(
                at,
                format!("StartAt `{start_at}` is not a state in this scope"),
            );
        }
        for (name, state) in states.iter() {
            let here = join(at, name);
            if name.is_empty() || name.chars().count() > 80 {
                self.error(&here, "state names must be 1 to 80 characters");
            }
            if !self.seen.insert(name.to_string()) {
                self.error(&here, format!("duplicate state name `{name}`"));
            }
            self.state(&here, state, &names);
        }
        self.reachability(at, start_at, states);
        let terminal = states.iter().any(|(_, s)| {
            s.transition == Transition::End || matches!(s.kind, Kind::Succeed(_) | Kind::Fail(_))
        });
        if !terminal {
            self.error(at, "no terminal state (End, Succeed or Fail)");
        }
    }

    fn reachability(&mut self, at: &str, start_at: &str, states: &States) {
        let mut reached: HashSet<&str> = HashSet::new();
        let mut queue: VecDeque<&str> = VecDeque::from([start_at]);
        while let Some(name) = queue.pop_front() {
            let Some(state) = states.get(name) else {
                continue;
            };
            if !reached.insert(name) {
                continue;
            }
            queue.extend(targets(state));
        }
        for (name, _) in states.iter() {
            if !reached.contains(name) {
                self.error(&join(at, name), "unreachable from StartAt");
            }
        }
    }

    fn target(&mut self, at: &str, field: &str, target: &str, names: &BTreeSet<&str>) {
        if !names.contains(target) {
            self.error(
                at,
                format!("{field} `{target}` is not a state in this scope"),
            );
        }
    }

    fn state(&mut self, at: &str, state: &State, names: &BTreeSet<&str>) {
        self.transition(at, state, names);
        match &state.kind {
            Kind::Pass(pass) => {
                self.filters(at, &pass.filters.input_path, &pass.filters.output_path);
                self.template(at, "Parameters", pass.parameters.as_ref());
                self.result_path(at, pass.result_path.as_ref());
            }
            Kind::Task(task) => self.task(at, task, names),
            Kind::Choice(choice) => self.choice(at, choice, names),
            Kind::Wait(wait) => self.wait(at, wait),
            Kind::Succeed(succeed) => self.filters(
                at,
                &succeed.filters.input_path,
                &succeed.filters.output_path,
            ),
            Kind::Fail(fail) => self.fail(at, fail),
            Kind::Parallel(parallel) => self.parallel(at, parallel, names),
            Kind::Map(map) => self.map(at, map, names),
        }
    }

    /// Next or End where the state's type needs one and allows it; Next names a state.
    fn transition(&mut self, at: &str, state: &State, names: &BTreeSet<&str>) {
        let type_name = state.kind.type_name();
        match (&state.kind, &state.transition) {
            (Kind::Choice(_) | Kind::Succeed(_) | Kind::Fail(_), Transition::Next(_)) => {
                self.error(at, format!("{type_name} state cannot have Next"))
            }
            (Kind::Choice(_) | Kind::Succeed(_) | Kind::Fail(_), Transition::End) => {
                self.error(at, format!("{type_name} state cannot have End"))
            }
            (Kind::Choice(_) | Kind::Succeed(_) | Kind::Fail(_), Transition::None) => {}
            (_, Transition::None) => self.error(at, format!("{type_name} state needs Next or End")),
            (_, Transition::Next(next)) => self.target(at, "Next", next, names),
            (_, Transition::End) => {}
        }
    }

    fn task(&mut self, at: &str, task: &super::state::Task, names: &BTreeSet<&str>) {
        self.filters(at, &task.filters.input_path, &task.filters.output_path);
        if task.resource.is_empty() {
            self.error(at, "Task needs a Resource");
        }
        self.template(at, "Parameters", task.parameters.as_ref());
        self.template(at, "ResultSelector", task.result_selector.as_ref());
        self.result_path(at, task.result_path.as_ref());
        self.timing(at, task);
        self.retry_catch(at, &task.retry, &task.catch, names);
    }

    /// At least one rule, each a valid condition naming a state; the Default names one too.
    fn choice(&mut self, at: &str, choice: &super::state::Choice, names: &BTreeSet<&str>) {
        self.filters(at, &choice.filters.input_path, &choice.filters.output_path);
        if choice.choices.is_empty() {
            self.error(at, "Choice needs at least one rule");
        }
        for (i, rule) in choice.choices.iter().enumerate() {
            let rule_at = format!("{at} > Choices[{i}]");
            self.condition(&rule_at, &rule.condition);
            self.target(&rule_at, "Next", &rule.next, names);
        }
        if let Some(default) = &choice.default {
            self.target(at, "Default", default, names);
        }
    }

    /// Exactly one of Seconds, SecondsPath, Timestamp, TimestampPath; paths are valid.
    fn wait(&mut self, at: &str, wait: &super::state::Wait) {
        self.filters(at, &wait.filters.input_path, &wait.filters.output_path);
        let set = [
            wait.seconds.is_some(),
            wait.seconds_path.is_some(),
            wait.timestamp.is_some(),
            wait.timestamp_path.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            self.error(
                at,
                format!("Wait needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath (has {set})"),
            );
        }
        for path in [&wait.seconds_path, &wait.timestamp_path]
            .into_iter()
            .flatten()
        {
            self.path(at, "wait path", path, false);
        }
    }

    /// Error or ErrorPath, Cause or CausePath, not both; paths are valid.
    fn fail(&mut self, at: &str, fail: &super::state::Fail) {
        if fail.error.is_some() && fail.error_path.is_some() {
            self.error(at, "Fail has both Error and ErrorPath");
        }
        if fail.cause.is_some() && fail.cause_path.is_some() {
            self.error(at, "Fail has both Cause and CausePath");
        }
        for path in [&fail.error_path, &fail.cause_path].into_iter().flatten() {
            self.path(at, "Fail path", path, true);
        }
    }

    /// The Parallel's own fields, then each branch as a scope of its own.
    fn parallel(&mut self, at: &str, parallel: &super::state::Parallel, names: &BTreeSet<&str>) {
        self.filters(
            at,
            &parallel.filters.input_path,
            &parallel.filters.output_path,
        );
        if parallel.branches.is_empty() {
            self.error(at, "Parallel needs at least one branch");
        }
        self.template(at, "Parameters", parallel.parameters.as_ref());
        self.template(at, "ResultSelector", parallel.result_selector.as_ref());
        self.result_path(at, parallel.result_path.as_ref());
        self.retry_catch(at, &parallel.retry, &parallel.catch, names);
        for (i, branch) in parallel.branches.iter().enumerate() {
            if branch.processor_config.is_some() {
                self.error(at, "a Parallel branch cannot have a ProcessorConfig");
            }
            self.scope(
                &format!("{at} > Branches[{i}]"),
                &branch.start_at,
                &branch.states,
            );
        }
    }

    /// The Map's own fields and limits, then its item processor as a scope of its own.
    fn map(&mut self, at: &str, map: &super::state::Map, names: &BTreeSet<&str>) {
        self.filters(at, &map.filters.input_path, &map.filters.output_path);
        if let Some(items) = &map.items_path {
            self.path(at, "ItemsPath", items, false);
        }
        self.template(at, "ItemSelector", map.item_selector.as_ref());
        self.template(
            at,
            "ItemReader Parameters",
            map.item_reader.as_ref().and_then(|r| r.parameters.as_ref()),
        );
        self.template(
            at,
            "BatchInput",
            map.item_batcher
                .as_ref()
                .and_then(|b| b.batch_input.as_ref()),
        );
        self.template(at, "ResultSelector", map.result_selector.as_ref());
        self.result_path(at, map.result_path.as_ref());
        self.retry_catch(at, &map.retry, &map.catch, names);
        self.map_limits(at, map.item_processor.is_distributed(), map);
        self.scope(
            &format!("{at} > ItemProcessor"),
            &map.item_processor.start_at,
            &map.item_processor.states,
        );
    }

    fn map_limits(&mut self, at: &str, distributed: bool, map: &super::state::Map) {
        let (limit, what) = if distributed {
            (DISTRIBUTED_MAP_MAX_CONCURRENCY, "a Distributed Map")
        } else {
            (
                INLINE_MAP_MAX_CONCURRENCY,
                "an inline Map (use Distributed mode for more)",
            )
        };
        // "MaxConcurrency ... or MaxConcurrencyPath ..., not both" (Map state fields,
        // <https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html>).
        if map.max_concurrency.is_some() && map.max_concurrency_path.is_some() {
            self.error(
                at,
                "MaxConcurrency and MaxConcurrencyPath are mutually exclusive",
            );
        }
        if let Some(path) = &map.max_concurrency_path {
            if !path.starts_with('$') {
                self.error(
                    at,
                    format!("MaxConcurrencyPath `{path}` is not a reference path"),
                );
            }
        }
        if let Some(max) = map.max_concurrency {
            if max > limit {
                self.error(
                    at,
                    format!("MaxConcurrency {max} is out of range: at most {limit} for {what}"),
                );
            }
        }
        if let Some(pct) = map.tolerated_failure_percentage {
            if !(0.0..=100.0).contains(&pct) {
                self.error(
                    at,
                    format!("ToleratedFailurePercentage {pct} is out of range 0..=100"),
                );
            }
        }
        if !distributed {
            let only_distributed = [
                (
                    map.tolerated_failure_count.is_some(),
                    "ToleratedFailureCount",
                ),
                (
                    map.tolerated_failure_percentage.is_some(),
                    "ToleratedFailurePercentage",
                ),
                (map.item_reader.is_some(), "ItemReader"),
                (map.item_batcher.is_some(), "ItemBatcher"),
                (map.label.is_some(), "Label"),
            ];
            for (present, field) in only_distributed {
                if present {
                    self.error(
                        at,
                        format!("{field} needs ProcessorConfig Mode DISTRIBUTED"),
                    );
                }
            }
        }
        if map.items_path.is_some() && map.item_reader.is_some() {
            self.error(at, "Map has both ItemsPath and ItemReader");
        }
    }

    fn timing(&mut self, at: &str, task: &super::state::Task) {
        if task.timeout_seconds.is_some() && task.timeout_seconds_path.is_some() {
            self.error(at, "Task has both TimeoutSeconds and TimeoutSecondsPath");
        }
        if task.heartbeat_seconds.is_some() && task.heartbeat_seconds_path.is_some() {
            self.error(
                at,
                "Task has both HeartbeatSeconds and HeartbeatSecondsPath",
            );
        }
        if task.timeout_seconds == Some(0) || task.heartbeat_seconds == Some(0) {
            self.error(at, "TimeoutSeconds and HeartbeatSeconds must be positive");
        }
        if let (Some(timeout), Some(heartbeat)) = (task.timeout_seconds, task.heartbeat_seconds) {
            if heartbeat >= timeout {
                self.error(
                    at,
                    format!(
                        "HeartbeatSeconds {heartbeat} must be less than TimeoutSeconds {timeout}"
                    ),
                );
            }
        }
        for path in [&task.timeout_seconds_path, &task.heartbeat_seconds_path]
            .into_iter()
            .flatten()
        {
            self.path(at, "timing path", path, false);
        }
    }

    fn retry_catch(
        &mut self,
        at: &str,
        retry: &[Retrier],
        catch: &[Catcher],
        names: &BTreeSet<&str>,
    ) {
        for (i, r) in retry.iter().enumerate() {
            let here = format!("{at} > Retry[{i}]");
            self.error_names(&here, &r.error_equals, i + 1 == retry.len());
            if r.backoff_rate.is_some_and(|b| b < 1.0) {
                self.error(&here, "BackoffRate must be at least 1.0");
            }
            if r.interval_seconds == Some(0) {
                self.error(&here, "IntervalSeconds must be positive");
            }
        }
        for (i, c) in catch.iter().enumerate() {
            let here = format!("{at} > Catch[{i}]");
            self.error_names(&here, &c.error_equals, i + 1 == catch.len());
            self.target(&here, "Next", &c.next, names);
            self.result_path(&here, c.result_path.as_ref());
        }
    }

    fn error_names(&mut self, at: &str, errors: &[String], last: bool) {
        if errors.is_empty() {
            self.error(at, "ErrorEquals is empty");
        }
        if errors.iter().any(|e| e == "States.ALL") && (errors.len() > 1 || !last) {
            self.error(
                at,
                "States.ALL must be alone and in the last retrier or catcher",
            );
        }
    }

    fn condition(&mut self, at: &str, condition: &Condition) {
        match condition {
            Condition::And(all) | Condition::Or(all) => {
                if all.is_empty() {
                    self.error(at, "And/Or needs at least one condition");
                }
                for c in all {
                    self.condition(at, c);
                }
            }
            Condition::Not(inner) => self.condition(at, inner),
            Condition::Test {
                variable,
                comparators,
            } => {
                self.path(at, "Variable", variable, true);
                if comparators.len() != 1 {
                    self.error(
                        at,
                        format!(
                            "rule on `{variable}` needs exactly one comparison operator (has {})",
                            comparators.len()
                        ),
                    );
                }
                for path in comparators.iter().filter_map(|c| c.operand_path()) {
                    self.path(at, "comparison path", &path, true);
                }
            }
        }
    }

    fn filters(&mut self, at: &str, input: &Option<PathOrNull>, output: &Option<PathOrNull>) {
        if let Some(p) = input.as_ref().and_then(PathOrNull::as_path) {
            self.path(at, "InputPath", p, false);
        }
        if let Some(p) = output.as_ref().and_then(PathOrNull::as_path) {
            self.path(at, "OutputPath", p, false);
        }
    }

    fn result_path(&mut self, at: &str, path: Option<&PathOrNull>) {
        if let Some(p) = path.and_then(PathOrNull::as_path) {
            if let Err(e) = check_reference_path(p) {
                self.error(at, format!("ResultPath {e}"));
            }
        }
    }

    fn template(&mut self, at: &str, field: &str, template: Option<&Template>) {
        let Some(template) = template else { return };
        for (key, path) in template.paths() {
            if let Err(e) = check_path(&path, true) {
                self.error(at, format!("{field} `{key}`: {e}"));
            }
        }
    }

    fn path(&mut self, at: &str, field: &str, path: &str, allow_context: bool) {
        if let Err(e) = check_path(path, allow_context) {
            self.error(at, format!("{field} {e}"));
        }
    }
}

/// The states a state can go to next (Next, Choice rules, Default, Catch).
fn targets(state: &State) -> Vec<&str> {
    let mut out = Vec::new();
    if let Transition::Next(next) = &state.transition {
        out.push(next.as_str());
    }
    let catch: &[Catcher] = match &state.kind {
        Kind::Task(t) => &t.catch,
        Kind::Parallel(p) => &p.catch,
        Kind::Map(m) => &m.catch,
        Kind::Choice(c) => {
            out.extend(c.choices.iter().map(|r| r.next.as_str()));
            out.extend(c.default.as_deref());
            &[]
        }
        _ => &[],
    };
    out.extend(catch.iter().map(|c| c.next.as_str()));
    out
}

/// Every nested scope of a machine, with its path, for reports and diagrams.
pub fn scopes(machine: &StateMachine) -> Vec<(String, &Branch)> {
    fn walk<'a>(at: &str, states: &'a States, out: &mut Vec<(String, &'a Branch)>) {
        for (name, state) in states.iter() {
            match &state.kind {
                Kind::Map(map) => {
                    let here = format!("{} > ItemProcessor", join(at, name));
                    out.push((here.clone(), &map.item_processor));
                    walk(&here, &map.item_processor.states, out);
                }
                Kind::Parallel(p) => {
                    for (i, branch) in p.branches.iter().enumerate() {
                        let here = format!("{} > Branches[{i}]", join(at, name));
                        out.push((here.clone(), branch));
                        walk(&here, &branch.states, out);
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk("(root)", &machine.states, &mut out);
    out
}
