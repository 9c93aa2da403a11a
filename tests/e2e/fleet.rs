//! Fleets of many ASGs on the emulator and the figures of one rollout over them, shared by
//! tests/fleet.rs, tests/events.rs and `cargo xtask bench --fleet N` (which runs
//! tests/fleet.rs's ignored `bench`): the fleet made side by side, a variant of the local
//! stack per shape (completion, strategy, batch size), a rollout followed with progress lines,
//! and what it cost and how it went read back from the emulator (refresh log, API call
//! statistics, execution histories) and the rollout table. Every wait is bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use asg_refresh_tests::Moto;
use serde_json::{json, Value};

use super::{
    demo, deploy_local_variant, fleet, max_in_flight, refresh_intervals, rollout_items,
    start_rollout, Interval, TableItem,
};

/// Step Functions' limit on one execution's history.
pub const HISTORY_LIMIT: u64 = 25_000;
/// Step Functions' limit on a state's input or output.
pub const PAYLOAD_LIMIT: usize = 256 * 1024;
/// Fleet creation: calls in flight at once.
const CREATE_CONCURRENCY: usize = 16;

/// How a child learns that its refresh ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Poll,
    Events,
}

impl Completion {
    pub fn as_str(self) -> &'static str {
        match self {
            Completion::Poll => "poll",
            Completion::Events => "events",
        }
    }
}

/// `[rollout] strategy`, as the config names it.
pub use generator::config::Strategy;

/// One deployed variant of the local stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub completion: Completion,
    pub strategy: Strategy,
    pub batch_size: u32,
    pub poll_seconds: u32,
    pub timeout_minutes: u32,
}

impl Shape {
    pub fn label(&self) -> String {
        format!("{}/{}", self.completion.as_str(), self.strategy.as_str())
    }
}

/// Deploys envs/local.toml with the shape's rollout settings.
pub fn deploy_shape(moto: &Moto, shape: &Shape) {
    let completion = format!("completion = \"{}\"", shape.completion.as_str());
    let strategy = format!("strategy = \"{}\"", shape.strategy.as_str());
    let batch = format!("batch_size = {}", shape.batch_size);
    let poll = format!("poll_seconds = {}", shape.poll_seconds);
    let timeout = format!("timeout_minutes = {}", shape.timeout_minutes);
    deploy_local_variant(
        moto,
        &format!(
            "{}-{}-{}",
            shape.completion.as_str(),
            shape.strategy.as_str(),
            shape.batch_size
        ),
        &[
            ("completion = \"poll\"", completion.as_str()),
            ("strategy = \"window\"", strategy.as_str()),
            ("batch_size = 3", batch.as_str()),
            ("poll_seconds = 5", poll.as_str()),
            ("timeout_minutes = 10", timeout.as_str()),
        ],
    );
}

/// `n` refresh times in minutes spread evenly from 3 to 12, in an order that does not follow
/// the names (the planner orders by name): position `i` takes step `(i * 7) mod n` (7 and `n`
/// coprime, else `i`).
pub fn spread_minutes(n: usize) -> Vec<f64> {
    let step = |k: usize| {
        if n <= 1 {
            3.0
        } else {
            3.0 + 9.0 * k as f64 / (n - 1) as f64
        }
    };
    let stride = if n.is_multiple_of(7) { 1 } else { 7 };
    (0..n).map(|i| step((i * stride) % n.max(1))).collect()
}

/// The fleet's names: `<prefix>-0000`, `<prefix>-0001`, ...
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// Creates one [`fleet`] group per `(name, refresh seconds)` in local.toml's target set,
/// [`CREATE_CONCURRENCY`] at a time, with a progress line every 250 groups when `progress`.
pub async fn create_fleet(
    config: &aws_config::SdkConfig,
    groups: &[(String, f64)],
    progress: bool,
) {
    let started = Instant::now();
    let mut pending = groups.iter().cloned();
    let mut running = tokio::task::JoinSet::new();
    let mut done = 0usize;
    loop {
        while running.len() < CREATE_CONCURRENCY {
            let Some((name, seconds)) = pending.next() else {
                break;
            };
            let config = config.clone();
            running.spawn(async move {
                let tags = demo(&format!("{seconds:.3}"));
                let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
                fleet(&config, &name, &tags).await;
            });
        }
        let Some(result) = running.join_next().await else {
            break;
        };
        result.expect("create a group of the fleet");
        done += 1;
        if progress && done.is_multiple_of(250) {
            println!(
                "  fleet: {done}/{} groups created ({:.0} s)",
                groups.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
}

/// Registers `ami` with the emulator's DescribeImages (each rollout of one fleet needs an
/// image of its own, or every group would already run it).
pub fn add_image(moto: &Moto, ami: &str) {
    moto.request(
        "POST",
        "/emulator/images",
        &json!({"ImageId": ami, "Architecture": "x86_64", "State": "available"}).to_string(),
    )
    .expect("POST /emulator/images");
}

/// The emulator's API call statistics, when this emulator has them (`GET /emulator/stats`).
pub fn stats(moto: &Moto) -> Option<Value> {
    let body = moto.request("GET", "/emulator/stats", "").ok()?;
    serde_json::from_str(&body).ok()
}

/// What one rollout left behind, read when its execution ended.
#[derive(Debug, Clone)]
pub struct Run {
    pub shape: Shape,
    pub rollout_id: String,
    /// The fleet, and each group's refresh seconds as tagged.
    pub fleet: Vec<(String, f64)>,
    pub status: String,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// StartExecution to the end, as Step Functions recorded it (seconds).
    pub wall_seconds: f64,
    pub intervals: BTreeMap<String, Vec<Interval>>,
    pub now: f64,
    pub items: BTreeMap<String, TableItem>,
    pub parent: History,
    /// The API call statistics before and after the rollout (`None`: not kept by this emulator).
    pub stats_before: Option<Value>,
    pub stats_after: Option<Value>,
    /// Whether the stack had rolled out this fleet before, so the planner ordered the ASGs
    /// longest refresh first (runtime::history); the first rollout on a stack goes by name.
    pub history: bool,
}

/// An execution's own history, as GetExecutionHistory returns it.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub events: u64,
    /// `*StateEntered` events: Step Functions' billed state transitions.
    pub transitions: u64,
    /// The largest state input or output (bytes) among its events.
    pub largest_state: usize,
}

/// Reads an execution's history (every page).
pub async fn history(config: &aws_config::SdkConfig, arn: &str) -> History {
    let sfn = aws_sdk_sfn::Client::new(config);
    let mut out = History::default();
    let mut token = None;
    loop {
        let page = sfn
            .get_execution_history()
            .execution_arn(arn)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .expect("get execution history");
        for event in page.events() {
            out.events += 1;
            if event.r#type().as_str().ends_with("StateEntered") {
                out.transitions += 1;
            }
            let entered = event
                .state_entered_event_details()
                .and_then(|d| d.input())
                .map_or(0, str::len);
            let exited = event
                .state_exited_event_details()
                .and_then(|d| d.output())
                .map_or(0, str::len);
            out.largest_state = out.largest_state.max(entered).max(exited);
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return out;
        }
    }
}

/// A rollout to run on a deployed shape: the fleet it covers (names and refresh seconds),
/// its id (also the execution's name) and the image.
pub struct Rollout<'a> {
    pub shape: Shape,
    pub fleet: &'a [(String, f64)],
    pub id: &'a str,
    pub ami: &'a str,
}

/// Starts the rollout and follows it to its end (at most `deadline`), printing a progress
/// line every `every` when given; then reads what it did.
pub async fn run_rollout_measured(
    moto: &Moto,
    config: &aws_config::SdkConfig,
    rollout: &Rollout<'_>,
    deadline: Duration,
    every: Option<Duration>,
) -> Run {
    let Rollout {
        shape,
        fleet,
        id: rollout_id,
        ami,
    } = *rollout;
    moto.clear_refresh_log();
    let stats_before = stats(moto);
    let arn = start_rollout(config, rollout_id, rollout_id, ami).await;
    let sfn = aws_sdk_sfn::Client::new(config);
    let started = Instant::now();
    let mut last_line = Instant::now();
    let described = loop {
        let described = sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .expect("describe execution");
        if described.status().as_str() != "RUNNING" {
            break described;
        }
        if let Some(every) = every {
            if last_line.elapsed() >= every {
                last_line = Instant::now();
                let (intervals, now) = refresh_intervals(moto);
                let all: Vec<&Interval> = intervals.values().flatten().collect();
                let ended = all.iter().filter(|i| i.end.is_some()).count();
                println!(
                    "  [{}] {:>5.0} s: {} of {} refreshes started, {ended} ended, {} in flight (at most {} so far)",
                    shape.label(),
                    started.elapsed().as_secs_f64(),
                    all.len(),
                    fleet.len(),
                    all.len() - ended,
                    max_in_flight(&intervals, now),
                );
            }
        }
        assert!(
            started.elapsed() < deadline,
            "rollout {rollout_id} ({}) did not end within {deadline:?}",
            shape.label()
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
    };
    let wall_seconds = match (described.start_date(), described.stop_date()) {
        (start, Some(stop)) => (stop.as_nanos() - start.as_nanos()) as f64 / 1e9,
        _ => started.elapsed().as_secs_f64(),
    };
    let (intervals, now) = refresh_intervals(moto);
    let items = rollout_items(config, rollout_id).await;
    let parent = history(config, &arn).await;
    Run {
        shape,
        rollout_id: rollout_id.into(),
        fleet: fleet.to_vec(),
        status: described.status().as_str().into(),
        error: described.error().map(str::to_string),
        cause: described.cause().map(str::to_string),
        wall_seconds,
        intervals,
        now,
        items,
        parent,
        stats_before,
        stats_after: stats(moto),
        history: false,
    }
}

/// Percentiles of a sample (nearest rank); `None` when empty.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The figures of a [`Run`].
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub asgs: usize,
    pub refreshes: usize,
    pub max_in_flight: usize,
    /// Last end minus first start (emulator seconds).
    pub makespan: f64,
    /// `max(longest refresh, sum of refreshes / batch_size)`.
    pub lower_bound: f64,
    /// The makespan the same refreshes would have with no orchestration latency at all, in
    /// the order they started: window, each started on the first free of `batch_size`
    /// slots; batches, each wave as long as its longest refresh. What an orchestrator that
    /// does not know the refreshes' durations beforehand can reach at best; the lower bound
    /// assumes perfect packing.
    pub zero_latency: f64,
    /// Refresh end to the start it lets go (window: an end while `batch_size` were in flight
    /// to the next start; batches: a wave's last end to the next wave's first start).
    pub latencies: Vec<f64>,
    pub wall_seconds: f64,
    pub parent: History,
    /// Children's history (from the emulator's statistics, when it keeps them).
    pub child_events_max: Option<u64>,
    pub child_transitions: Option<u64>,
    pub lambda_invocations: Option<u64>,
    pub describe_refreshes: Option<u64>,
}

impl Figures {
    pub fn of(run: &Run) -> Self {
        let all: Vec<&Interval> = run.intervals.values().flatten().collect();
        let first = all.iter().map(|i| i.start).fold(f64::MAX, f64::min);
        let last = all
            .iter()
            .map(|i| i.end_or(run.now))
            .fold(f64::MIN, f64::max);
        let durations: Vec<f64> = all.iter().map(|i| i.end_or(run.now) - i.start).collect();
        let longest = durations.iter().copied().fold(0.0, f64::max);
        let sum: f64 = durations.iter().sum();
        let batch = f64::from(run.shape.batch_size.max(1));
        let latencies = match run.shape.strategy {
            Strategy::Window => window_latencies(&all, run.shape.batch_size as usize, run.now),
            Strategy::Batches => wave_latencies(&run.intervals, &run.items, run.now),
        };
        let (child_events_max, child_transitions) = children(run);
        Figures {
            asgs: run.fleet.len(),
            refreshes: all.len(),
            max_in_flight: max_in_flight(&run.intervals, run.now),
            makespan: if all.is_empty() { 0.0 } else { last - first },
            lower_bound: longest.max(sum / batch),
            zero_latency: match run.shape.strategy {
                Strategy::Window => window_schedule(&all, run.shape.batch_size as usize, run.now),
                Strategy::Batches => wave_schedule(&run.intervals, &run.items, run.now),
            },
            latencies,
            wall_seconds: run.wall_seconds,
            parent: run.parent.clone(),
            child_events_max,
            child_transitions,
            lambda_invocations: stat_delta(run, &|s| lambda_invocations(s)),
            describe_refreshes: stat_delta(run, &|s| {
                api_calls(s, "autoscaling:DescribeInstanceRefreshes")
            }),
        }
    }

    pub fn median_latency(&self) -> Option<f64> {
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        percentile(&sorted, 0.5)
    }

    pub fn p90_latency(&self) -> Option<f64> {
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        percentile(&sorted, 0.9)
    }

    /// State transitions per ASG: the children's and the parent's, over the fleet.
    pub fn transitions_per_asg(&self) -> Option<f64> {
        let children = self.child_transitions?;
        Some((children + self.parent.transitions) as f64 / self.asgs.max(1) as f64)
    }
}

/// Window with no latency: the refreshes in the order they started, each on the first of
/// `batch` slots to come free.
fn window_schedule(all: &[&Interval], batch: usize, now: f64) -> f64 {
    let mut order: Vec<&&Interval> = all.iter().collect();
    order.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut free_at = vec![0.0_f64; batch.max(1)];
    for interval in order {
        let slot = free_at
            .iter_mut()
            .min_by(|a, b| a.total_cmp(b))
            .expect("at least one slot");
        *slot += interval.end_or(now) - interval.start;
    }
    free_at.into_iter().fold(0.0, f64::max)
}

/// Batches with no latency: each wave lasts as long as its longest refresh.
fn wave_schedule(
    intervals: &BTreeMap<String, Vec<Interval>>,
    items: &BTreeMap<String, TableItem>,
    now: f64,
) -> f64 {
    let mut longest: BTreeMap<u32, f64> = BTreeMap::new();
    for (asg, list) in intervals {
        let wave = items.get(asg).and_then(|i| i.wave).unwrap_or(0);
        for interval in list {
            let entry = longest.entry(wave).or_insert(0.0);
            *entry = entry.max(interval.end_or(now) - interval.start);
        }
    }
    longest.values().sum()
}

/// Window: the ends that freed a slot the window was waiting for (`batch` in flight just
/// before the end), each to the next start, in order. An end while the window was not full
/// frees no slot anyone waits for (the starts were held up elsewhere) and is not counted.
fn window_latencies(all: &[&Interval], batch: usize, now: f64) -> Vec<f64> {
    // Ends before starts at the same instant (as in max_in_flight).
    let mut timeline: Vec<(f64, i32)> = all
        .iter()
        .flat_map(|i| [(i.start, 1), (i.end_or(now), -1)])
        .collect();
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut running = 0usize;
    let mut freed = std::collections::VecDeque::new();
    let mut out = Vec::new();
    for (t, delta) in timeline {
        if delta < 0 {
            if running >= batch {
                freed.push_back(t);
            }
            running = running.saturating_sub(1);
        } else {
            if let Some(end) = freed.pop_front() {
                out.push(t - end);
            }
            running += 1;
        }
    }
    out
}

/// Batches: a wave's last end to the next wave's first start (waves from the table).
fn wave_latencies(
    intervals: &BTreeMap<String, Vec<Interval>>,
    items: &BTreeMap<String, TableItem>,
    now: f64,
) -> Vec<f64> {
    let mut waves: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
    for (asg, list) in intervals {
        let Some(wave) = items.get(asg).and_then(|i| i.wave) else {
            continue;
        };
        let entry = waves.entry(wave).or_insert((f64::MAX, f64::MIN));
        for interval in list {
            entry.0 = entry.0.min(interval.start);
            entry.1 = entry.1.max(interval.end_or(now));
        }
    }
    let spans: Vec<(f64, f64)> = waves.into_values().collect();
    spans.windows(2).map(|w| w[1].0 - w[0].1).collect()
}

/// Calls of `service:operation` in the emulator's statistics.
pub fn api_calls(stats: &Value, operation: &str) -> Option<u64> {
    let calls = stats.get("calls")?.as_object()?;
    Some(calls.get(operation).and_then(Value::as_u64).unwrap_or(0))
}

/// Lambda invocations in the emulator's statistics (every function).
pub fn lambda_invocations(stats: &Value) -> Option<u64> {
    let by_function = stats.get("lambda_invocations")?.as_object()?;
    Some(by_function.values().filter_map(Value::as_u64).sum())
}

fn stat_delta(run: &Run, read: &dyn Fn(&Value) -> Option<u64>) -> Option<u64> {
    let after = read(run.stats_after.as_ref()?)?;
    let before = run.stats_before.as_ref().and_then(read).unwrap_or(0);
    Some(after.saturating_sub(before))
}

/// The largest child's history events and all children's transitions of the rollout's
/// execution, from the emulator's statistics.
fn children(run: &Run) -> (Option<u64>, Option<u64>) {
    let Some(executions) = run
        .stats_after
        .as_ref()
        .and_then(|s| s.get("executions"))
        .and_then(Value::as_object)
    else {
        return (None, None);
    };
    let Some((_, execution)) = executions
        .iter()
        .find(|(arn, _)| arn.ends_with(&format!(":{}", run.rollout_id)))
    else {
        return (None, None);
    };
    let Some(children) = execution.get("children").and_then(Value::as_array) else {
        return (None, None);
    };
    let events = children
        .iter()
        .filter_map(|c| c.get("events").and_then(Value::as_u64))
        .max();
    let transitions = children
        .iter()
        .filter_map(|c| c.get("transitions").and_then(Value::as_u64))
        .sum();
    (events, Some(transitions))
}

/// What must hold after any rollout of a fleet: the execution succeeded, every ASG was
/// refreshed exactly once and successfully, at most `batch_size` were in flight, no
/// history over 25,000 events, no state over 256 KiB. Returns every breach.
pub fn breaches(run: &Run, figures: &Figures) -> Vec<String> {
    let mut out = Vec::new();
    if run.status != "SUCCEEDED" {
        out.push(format!(
            "the execution ended {} ({:?}: {:?})",
            run.status, run.error, run.cause
        ));
    }
    let mut not_once = Vec::new();
    for (asg, _) in &run.fleet {
        match run.intervals.get(asg).map(Vec::as_slice) {
            Some([only]) if only.status.as_deref() == Some("Successful") => {}
            other => not_once.push(format!("{asg}: {other:?}")),
        }
        match run.items.get(asg) {
            Some(item) if item.status == "Successful" => {}
            other => not_once.push(format!("{asg} in the table: {other:?}")),
        }
    }
    let strangers: Vec<&String> = run
        .intervals
        .keys()
        .filter(|asg| !run.fleet.iter().any(|(name, _)| name == *asg))
        .collect();
    if !strangers.is_empty() {
        out.push(format!("refreshed outside the fleet: {strangers:?}"));
    }
    if !not_once.is_empty() {
        out.push(format!(
            "{} ASGs not refreshed exactly once and successfully, e.g. {:?}",
            not_once.len(),
            &not_once[..not_once.len().min(5)]
        ));
    }
    if figures.max_in_flight > run.shape.batch_size as usize {
        out.push(format!(
            "{} refreshes in flight at once, batch_size is {}",
            figures.max_in_flight, run.shape.batch_size
        ));
    }
    if figures.parent.events > HISTORY_LIMIT {
        out.push(format!(
            "the parent's history has {} events",
            figures.parent.events
        ));
    }
    if let Some(events) = figures.child_events_max.filter(|e| *e > HISTORY_LIMIT) {
        out.push(format!("a child's history has {events} events"));
    }
    if figures.parent.largest_state > PAYLOAD_LIMIT {
        out.push(format!(
            "a state of the parent carries {} bytes",
            figures.parent.largest_state
        ));
    }
    out
}

/// The seed's polling loop (Task, Choice, Wait, Pass, Choice per poll; 5 + 2 + 2 + 2 + 2 =
/// 13 history events a poll) computed for the same refreshes at the same `poll_seconds`: per
/// ASG a start Task and its Choice (2 transitions, 7 events with the execution's start and
/// end) plus, per poll, 5 transitions, 13 events, one check and its DescribeInstanceRefreshes.
pub struct Baseline {
    pub transitions_per_asg: f64,
    pub largest_child_events: u64,
    pub describe_per_asg: f64,
    pub lambda_per_asg: f64,
    /// A finished refresh is noticed on average half a poll late.
    pub median_latency: f64,
}

impl Baseline {
    /// `seconds`: each refresh's length; `poll_seconds`: the same unit.
    pub fn of(seconds: &[f64], poll_seconds: f64) -> Self {
        let polls: Vec<u64> = seconds
            .iter()
            .map(|s| (s / poll_seconds).ceil().max(1.0) as u64)
            .collect();
        let n = polls.len().max(1) as f64;
        let total_polls: u64 = polls.iter().sum();
        Baseline {
            transitions_per_asg: (2 * polls.len() as u64 + 5 * total_polls) as f64 / n,
            largest_child_events: 7 + 13 * polls.iter().copied().max().unwrap_or(0),
            describe_per_asg: total_polls as f64 / n,
            lambda_per_asg: (polls.len() as u64 + total_polls) as f64 / n,
            median_latency: poll_seconds / 2.0,
        }
    }
}

/// What the stack renders for one ASG whose refresh lasts 30 minutes, with the issue's
/// `poll_seconds = 60` and `timeout_minutes = 60` (generator::review::asg_cost on the rendered
/// child): (transitions, history events, DescribeInstanceRefreshes).
pub fn thirty_minutes(completion: Completion) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(asg_refresh_tests::workspace_root().join("envs/local.toml"))
        .expect("envs/local.toml")
        .replacen(
            "completion = \"poll\"",
            &format!("completion = \"{}\"", completion.as_str()),
            1,
        )
        .replacen("poll_seconds = 5", "poll_seconds = 60", 1)
        .replacen("timeout_minutes = 10", "timeout_minutes = 60", 1);
    let config = generator::config::parse(&text, std::path::Path::new("local.toml"))
        .expect("the local stack with 60 s polls");
    let machine = generator::rollout::build(&config);
    let cost = generator::review::asg_cost(&config, &machine, 1800);
    (
        cost.transitions,
        cost.history_events,
        cost.describe_refreshes,
    )
}

fn cell(value: Option<String>) -> String {
    value.unwrap_or_else(|| "n/a".into())
}

/// The side-by-side table: one column per run, and the seed's shape computed for the same
/// fleet at the first run's `poll_seconds`.
pub fn table(runs: &[(Run, Figures)]) -> String {
    let (seconds, poll): (Vec<f64>, f64) = runs
        .first()
        .map(|(run, _)| {
            (
                run.fleet.iter().map(|(_, s)| *s).collect(),
                f64::from(run.shape.poll_seconds),
            )
        })
        .unwrap_or((Vec::new(), 60.0));
    let baseline = Baseline::of(&seconds, poll);
    let mut rows: Vec<(String, Vec<String>, String)> = Vec::new();
    let per_asg =
        |v: Option<u64>, f: &Figures| v.map(|v| format!("{:.1}", v as f64 / f.asgs.max(1) as f64));
    let mut row = |name: &str, each: &dyn Fn(&Run, &Figures) -> String, base: String| {
        rows.push((
            name.to_string(),
            runs.iter().map(|(r, f)| each(r, f)).collect(),
            base,
        ));
    };
    row(
        "ASGs refreshed / planned",
        &|_, f| format!("{} / {}", f.refreshes, f.asgs),
        "-".into(),
    );
    row("execution", &|r, _| r.status.clone(), "-".into());
    row(
        "state transitions per ASG",
        &|_, f| cell(f.transitions_per_asg().map(|t| format!("{t:.1}"))),
        format!("{:.1}", baseline.transitions_per_asg),
    );
    row(
        "one 30-min refresh at 60 s polls: transitions / events / Describe* (computed)",
        &|r, _| {
            let (t, e, d) = thirty_minutes(r.shape.completion);
            format!("{t} / {e} / {d}")
        },
        {
            let b = Baseline::of(&[1800.0], 60.0);
            format!(
                "{:.0} / {} / {:.0}",
                b.transitions_per_asg, b.largest_child_events, b.describe_per_asg
            )
        },
    );
    row(
        "history events, parent",
        &|_, f| f.parent.events.to_string(),
        "-".into(),
    );
    row(
        "history events, largest child",
        &|_, f| cell(f.child_events_max.map(|e| e.to_string())),
        baseline.largest_child_events.to_string(),
    );
    row(
        "Lambda invocations per ASG",
        &|_, f| cell(per_asg(f.lambda_invocations, f)),
        format!("{:.1}", baseline.lambda_per_asg),
    );
    row(
        "DescribeInstanceRefreshes per ASG",
        &|_, f| cell(per_asg(f.describe_refreshes, f)),
        format!("{:.1}", baseline.describe_per_asg),
    );
    row(
        "detection latency median / p90 (s) (ends counted)",
        &|_, f| {
            cell(
                f.median_latency()
                    .zip(f.p90_latency())
                    .map(|(m, p)| format!("{m:.2} / {p:.2} ({})", f.latencies.len())),
            )
        },
        format!("{:.2} (half a poll)", baseline.median_latency),
    );
    row(
        "makespan / lower bound (s)",
        &|_, f| {
            format!(
                "{:.0} / {:.0} = {:.3}",
                f.makespan,
                f.lower_bound,
                f.makespan / f.lower_bound.max(1e-9)
            )
        },
        "-".into(),
    );
    row(
        "makespan / the same refreshes with no latency (s)",
        &|_, f| {
            format!(
                "{:.0} / {:.0} = {:.3}",
                f.makespan,
                f.zero_latency,
                f.makespan / f.zero_latency.max(1e-9)
            )
        },
        "-".into(),
    );
    row(
        "wall time (s)",
        &|_, f| format!("{:.0}", f.wall_seconds),
        "-".into(),
    );
    row(
        "most in flight / batch_size",
        &|r, f| format!("{} / {}", f.max_in_flight, r.shape.batch_size),
        "-".into(),
    );
    row(
        "largest state of the parent (bytes)",
        &|_, f| f.parent.largest_state.to_string(),
        "-".into(),
    );
    let mut header = vec!["".to_string()];
    header.extend(runs.iter().map(|(r, _)| {
        let first = if r.history { "" } else { " (first: by name)" };
        format!("{} {}{first}", r.shape.label(), r.shape.batch_size)
    }));
    header.push("seed's poll loop (computed)".into());
    let mut lines: Vec<Vec<String>> = vec![header];
    for (name, cells, base) in rows {
        let mut line = vec![name];
        line.extend(cells);
        line.push(base);
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        }
    }
    out
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    fn interval(start: f64, seconds: f64) -> Interval {
        Interval {
            refresh_id: format!("r-{start}"),
            start,
            end: Some(start + seconds),
            status: Some("Successful".into()),
            rollback: None,
            cancel: None,
        }
    }

    #[test]
    fn the_zero_latency_window_puts_each_refresh_on_the_first_free_slot_in_start_order() {
        // Two slots; in start order 4, 2, 2, 3: slot A runs 4 then 3, slot B 2 then 2.
        let refreshes = [
            interval(10.0, 4.0),
            interval(11.0, 2.0),
            interval(14.0, 2.0),
            interval(16.0, 3.0),
        ];
        let all: Vec<&Interval> = refreshes.iter().collect();
        assert_eq!(window_schedule(&all, 2, 100.0), 7.0);
        assert_eq!(window_schedule(&all, 4, 100.0), 4.0);
        assert_eq!(window_schedule(&all, 1, 100.0), 11.0);
    }
}
