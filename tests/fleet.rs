//! A fleet rolled out end to end on the emulator: the local stack deployed with the debug
//! Lambdas, many ASGs tagged into its targets, a rollout of the deployed state machine. The
//! test asserts what must hold at any size (every ASG refreshed exactly once, never more
//! than `batch_size` in flight, no history over 25,000 events, no state over 256 KiB), never
//! times. `bench` (ignored; `cargo xtask bench --fleet N` runs it) measures both completion
//! shapes and both strategies on one fleet and prints them side by side.

mod e2e;

use std::time::Duration;

use e2e::fleet::{
    add_image, breaches, create_fleet, deploy_shape, names, run_rollout_measured, spread_minutes,
    table, Completion, Figures, Rollout, Shape, Strategy,
};
use e2e::start_emulator;

/// The CI fleet: `ASG_REFRESH_FLEET_TEST` ASGs (default 200) refreshing for 1 to 4 s each,
/// in a window of 20, completed by events.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_rolls_out_once_per_asg_within_the_limits() {
    let n: usize = std::env::var("ASG_REFRESH_FLEET_TEST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let (moto, config) = start_emulator().await;
    let groups: Vec<(String, f64)> = names("ci", n)
        .into_iter()
        .zip(spread_minutes(n))
        // 3..12 "minutes" at a third of a second each: 1 to 4 s.
        .map(|(name, minutes)| (name, minutes / 3.0))
        .collect();
    create_fleet(&config, &groups, false).await;
    let shape = Shape {
        completion: Completion::Events,
        strategy: Strategy::Window,
        batch_size: 20,
        poll_seconds: 5,
        timeout_minutes: 10,
    };
    deploy_shape(&moto, &shape);
    let rollout = Rollout {
        shape,
        fleet: &groups,
        id: "r-fleet",
        ami: "ami-0fedcba9876543210",
    };
    let run = run_rollout_measured(&moto, &config, &rollout, Duration::from_secs(900), None).await;
    let figures = Figures::of(&run);
    let found = breaches(&run, &figures);
    assert!(
        found.is_empty(),
        "{found:#?}\n{}\nlambda logs:\n{}",
        table(&[(run.clone(), figures.clone())]),
        moto.lambda_logs()
    );
    assert_eq!(figures.refreshes, n, "one refresh per ASG");
    assert!(
        figures.max_in_flight >= 2,
        "the window ran refreshes side by side: {}",
        figures.max_in_flight
    );
}

fn env_number(name: &str) -> Option<f64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

/// The comma-separated values of the environment variable `name` (`default` when unset),
/// each one of `all` by its `name_of`; panics on any other.
fn env_choices<T: Copy>(
    name: &str,
    default: &str,
    all: &[T],
    name_of: fn(T) -> &'static str,
) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let found = all.iter().copied().find(|c| name_of(*c) == s);
            found.unwrap_or_else(|| panic!("unknown value {s} of {name}"))
        })
        .collect()
}

/// `cargo xtask bench --fleet N`: one fleet of `ASG_REFRESH_BENCH_FLEET` ASGs whose
/// refreshes take 3 to 12 minutes at `ASG_REFRESH_BENCH_SECONDS_PER_MINUTE` emulator seconds
/// a minute (default 5, so the 5 s poll stands for 60 s), rolled out once per shape:
/// completion (`ASG_REFRESH_BENCH_COMPLETIONS`, default "poll,events") by strategy
/// (`ASG_REFRESH_BENCH_STRATEGIES`, default "window,batches"), in batches of
/// `ASG_REFRESH_BENCH_BATCH` (default N / 20, at most 100). Prints progress and the table;
/// fails after the table when a rollout breached a limit.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "minutes to hours: run through `cargo xtask bench --fleet N`"]
async fn bench() {
    let n = env_number("ASG_REFRESH_BENCH_FLEET").unwrap_or(100.0) as usize;
    let per_minute = env_number("ASG_REFRESH_BENCH_SECONDS_PER_MINUTE").unwrap_or(5.0);
    let batch = env_number("ASG_REFRESH_BENCH_BATCH")
        .map(|b| b as u32)
        .unwrap_or_else(|| (n as u32 / 20).clamp(1, 100));
    let completions = env_choices(
        "ASG_REFRESH_BENCH_COMPLETIONS",
        "poll,events",
        &[Completion::Poll, Completion::Events],
        Completion::as_str,
    );
    let strategies = env_choices(
        "ASG_REFRESH_BENCH_STRATEGIES",
        "window,batches",
        &[Strategy::Window, Strategy::Batches],
        Strategy::as_str,
    );
    // The 5 s poll (the smallest poll_seconds) stands for `poll_real` real seconds.
    let poll_real = 5.0 * 60.0 / per_minute;
    println!(
        "== fleet of {n} ASGs, refreshes of 3 to 12 minutes at {per_minute} emulator seconds a minute ({:.0} to {:.0} s; time scaled down {:.0}x), batch_size {batch}, poll_seconds 5 (= {poll_real:.0} s real)",
        3.0 * per_minute,
        12.0 * per_minute,
        60.0 / per_minute
    );
    let started = std::time::Instant::now();
    let (moto, config) = start_emulator().await;
    let groups: Vec<(String, f64)> = names("fleet", n)
        .into_iter()
        .zip(spread_minutes(n))
        .map(|(name, minutes)| (name, minutes * per_minute))
        .collect();
    create_fleet(&config, &groups, true).await;
    println!(
        "  fleet created in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // Window and batches each wait for the slowest; the deadline is four lower bounds.
    let sum: f64 = groups.iter().map(|(_, s)| s).sum();
    let deadline =
        Duration::from_secs_f64(600.0 + 4.0 * (sum / f64::from(batch)).max(12.0 * per_minute));
    let mut shapes = Vec::new();
    for strategy in &strategies {
        for completion in &completions {
            shapes.push((*completion, *strategy));
        }
    }
    // The planner starts the previous rollout's longest refreshes first (runtime::history):
    // every rollout after the first on this stack has that history. With LEARN, the first
    // shape runs once more before the others, so every shape is measured with history and
    // the first column shows the same shape without it.
    if std::env::var_os("ASG_REFRESH_BENCH_LEARN").is_some() {
        if let Some(first) = shapes.first().copied() {
            shapes.insert(0, first);
        }
    }
    let mut runs = Vec::new();
    for (completion, strategy) in &shapes {
        let shape = Shape {
            completion: *completion,
            strategy: *strategy,
            batch_size: batch,
            poll_seconds: 5,
            timeout_minutes: 10,
        };
        let ami = format!("ami-0b{:015x}", runs.len() + 1);
        add_image(&moto, &ami);
        println!("== {} (batch_size {batch}): deploy", shape.label());
        deploy_shape(&moto, &shape);
        println!("== {}: rollout of {ami}", shape.label());
        let id = format!("r-bench-{}", runs.len() + 1);
        let rollout = Rollout {
            shape,
            fleet: &groups,
            id: &id,
            ami: &ami,
        };
        let every = Some(Duration::from_secs(15));
        let mut run = run_rollout_measured(&moto, &config, &rollout, deadline, every).await;
        run.history = !runs.is_empty();
        let figures = Figures::of(&run);
        let found = breaches(&run, &figures);
        println!(
            "  [{}] {} in {:.0} s; {}",
            shape.label(),
            run.status,
            figures.wall_seconds,
            if found.is_empty() {
                "checks: every ASG refreshed once, in flight within batch_size, histories and states within limits".to_string()
            } else {
                format!("BREACHES: {found:?}")
            }
        );
        runs.push((run, figures, found));
        // The table so far, so a run cut short still leaves its figures.
        let pairs: Vec<_> = runs
            .iter()
            .map(|(r, f, _)| (r.clone(), f.clone()))
            .collect();
        println!("{}", table(&pairs));
    }
    let pairs: Vec<_> = runs
        .iter()
        .map(|(r, f, _)| (r.clone(), f.clone()))
        .collect();
    println!(
        "\n== {n} ASGs, {per_minute} emulator s per real minute; poll every 5 s; total {:.0} s\n{}",
        started.elapsed().as_secs_f64(),
        table(&pairs)
    );
    let failed: Vec<String> = runs
        .iter()
        .filter(|(_, _, found)| !found.is_empty())
        .map(|(run, _, found)| format!("{}: {found:?}", run.shape.label()))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
