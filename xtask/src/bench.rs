//! `cargo xtask bench`: the Lambdas' figures, measured here: zip sizes, cold and warm
//! start (process start to first response under a local Runtime API, against moto), and
//! the planner's response size for large fleets against Step Functions' payload limit;
//! with `--fleet-loops N`, how long each loop over a fleet of N ASGs takes in one invocation;
//! with `--fleet N`, rollouts of N ASGs on the emulator, polling and event-driven, both
//! strategies, side by side.

use std::process::Command;

use anyhow::bail;
use clap::Args;
use generator::config::{Architecture, Strategy};
use generator::payload::{PlanResponse, WaveResponse};
use generator::waves;

use crate::build::{self, Builder};
use crate::env_file::workspace_root;
use crate::tools;

/// Step Functions' limit on a state's input or output.
const PAYLOAD_LIMIT: usize = 256 * 1024;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Cold starts measured per function
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Only time the loops over the fleet that run inside one Lambda invocation (the
    /// planner; the refresher's rollback, settle and finish) on a fleet of N ASGs on the
    /// emulator, with an AWS-like latency on every call, against the 60 s function timeout
    #[arg(long, value_name = "N", conflicts_with = "fleet")]
    pub fleet_loops: Option<u32>,
    /// Roll out a fleet of N ASGs on the emulator (refreshes of 3 to 12 minutes, time scaled
    /// down) once per completion shape and strategy, and print the figures side by side
    #[arg(long, value_name = "N")]
    pub fleet: Option<u32>,
    /// With --fleet: ASGs refreshing at once (default N / 20, at most 100)
    #[arg(long, value_name = "B", requires = "fleet")]
    pub batch_size: Option<u32>,
    /// With --fleet: emulator seconds standing for one real minute (the 5 s poll stands for
    /// 300 / this many seconds)
    #[arg(long, value_name = "S", default_value_t = 5.0, requires = "fleet")]
    pub seconds_per_minute: f64,
    /// With --fleet: the completion shapes to run, in order
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "poll,events",
        requires = "fleet"
    )]
    pub completions: Vec<String>,
    /// With --fleet: the strategies to run, in order
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "window,batches",
        requires = "fleet"
    )]
    pub strategies: Vec<String>,
    /// With --fleet: roll the fleet out once more first, with the first shape, so every
    /// shape is measured as a rollout after the first (the planner orders ASGs by the
    /// previous rollout's refresh times, longest first); that first run is its own column
    #[arg(long, requires = "fleet")]
    pub learn: bool,
}

impl BenchArgs {
    pub fn run(self) -> anyhow::Result<()> {
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        let tools = tools::ensure()?;
        if let Some(fleet) = self.fleet_loops {
            return fleet_loops(fleet);
        }
        if let Some(fleet) = self.fleet {
            return self.fleet_rollouts(fleet);
        }
        println!("== planner response plus the largest wave's positions (canary of 3, window strategy: one wave)");
        for asgs in [300, 2000, 5000] {
            let bytes = plan_bytes(asgs);
            println!(
                "{asgs:>5} ASGs: {bytes:>7} bytes, {:.1}% of the 256 KiB payload limit",
                bytes as f64 * 100.0 / PAYLOAD_LIMIT as f64
            );
        }
        // Only the host's architecture runs here; the other is built for its size.
        for arch in [Architecture::X86_64, Architecture::Arm64] {
            println!("== {} zips", arch.as_str());
            let builder = Builder::new(&tools.venv_bin, arch)?;
            for function in build::FUNCTIONS {
                let zip = builder.build(function)?;
                println!(
                    "{function}: {} bytes ({:.1} MiB)",
                    zip.bytes,
                    zip.bytes as f64 / 1048576.0
                );
                if arch == Architecture::X86_64 && cfg!(target_arch = "x86_64") {
                    cold_start(&tools.venv_bin, function, &zip.binary, self.runs)?;
                }
            }
        }
        Ok(())
    }
}

impl BenchArgs {
    /// Runs tests/fleet.rs's ignored `bench` (it reuses the end-to-end helpers: the emulator,
    /// the deploy of the local stack with the debug Lambdas, the readers of the refresh log),
    /// which prints progress lines and the table.
    fn fleet_rollouts(&self, fleet: u32) -> anyhow::Result<()> {
        if fleet == 0 {
            bail!("--fleet must be at least 1");
        }
        if self.batch_size == Some(0) {
            bail!("--batch-size must be at least 1");
        }
        if !(self.seconds_per_minute > 0.0 && self.seconds_per_minute <= 60.0) {
            bail!("--seconds-per-minute must be above 0 and at most 60");
        }
        for completion in &self.completions {
            if !["poll", "events"].contains(&completion.as_str()) {
                bail!("--completions takes poll and events, not {completion}");
            }
        }
        for strategy in &self.strategies {
            if !["window", "batches"].contains(&strategy.as_str()) {
                bail!("--strategies takes window and batches, not {strategy}");
            }
        }
        let batch = self.batch_size.unwrap_or((fleet / 20).clamp(1, 100));
        println!(
            "== rollouts of {fleet} ASGs on the emulator, batch_size {batch}, completion {}, strategy {} (tests/fleet.rs bench)",
            self.completions.join(","),
            self.strategies.join(",")
        );
        let mut fleet_test = build::cargo();
        fleet_test
            .args([
                "test",
                "-p",
                "asg-refresh-tests",
                "--test",
                "fleet",
                "--",
                "--ignored",
                "--exact",
                "bench",
                "--nocapture",
            ])
            .env("ASG_REFRESH_BENCH_FLEET", fleet.to_string())
            .env("ASG_REFRESH_BENCH_BATCH", batch.to_string())
            .env(
                "ASG_REFRESH_BENCH_SECONDS_PER_MINUTE",
                self.seconds_per_minute.to_string(),
            )
            .env("ASG_REFRESH_BENCH_COMPLETIONS", self.completions.join(","))
            .env("ASG_REFRESH_BENCH_STRATEGIES", self.strategies.join(","))
            .envs(self.learn.then_some(("ASG_REFRESH_BENCH_LEARN", "1")))
            .current_dir(workspace_root());
        build::run_to_end(&mut fleet_test, "cargo test", "the fleet rollouts failed")
    }
}

/// Runs runtime/tests/fleet_loops.rs (ignored in `cargo test`: creating the fleet takes
/// minutes), which prints one line per loop.
fn fleet_loops(fleet: u32) -> anyhow::Result<()> {
    if fleet == 0 {
        bail!("--fleet-loops must be at least 1");
    }
    println!("== loops over a fleet of {fleet} ASGs inside one invocation (creating the fleet takes about a minute per 1,000)");
    let mut loops_test = build::cargo();
    loops_test
        .args([
            "test",
            "-p",
            "asg-refresh-runtime",
            "--test",
            "fleet_loops",
            "--",
            "--ignored",
            "--nocapture",
        ])
        .env("ASG_REFRESH_FLEET_LOOPS", fleet.to_string())
        .current_dir(workspace_root());
    build::run_to_end(
        &mut loops_test,
        "cargo test",
        "the fleet loops measurement failed",
    )
}

/// Bytes of the planner's response and of the largest wave's positions (what the state
/// carries: the names stay in the table) for `asgs` ASGs.
fn plan_bytes(asgs: usize) -> usize {
    let names: Vec<String> = (0..asgs)
        .map(|i| format!("payments-checkout-api-prod-ap-south-1-asg-{i:04}"))
        .collect();
    let plan = waves::split(&names, &names[..3], Strategy::Window, 3);
    let response = PlanResponse {
        rollout_id: "r-20261126-0001".into(),
        wave_count: plan.len() as u32,
        last_wave: plan.len() as i64 - 1,
        planned: asgs as u32,
        skipped: 0,
        missing: 0,
    };
    let largest = plan.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let wave = WaveResponse {
        rollout_id: response.rollout_id.clone(),
        wave: 1,
        items: (0..largest).collect(),
        started_at: 1_796_000_000,
        // The largest a wave of ordered groups says: a batch size and a group name at their limits.
        max_concurrency: Some(generator::config::MAX_BATCH_SIZE),
        group: Some("g".repeat(generator::groups::MAX_GROUP_NAME)),
    };
    [serde_json::to_vec(&response), serde_json::to_vec(&wave)]
        .iter()
        .map(|v| v.as_ref().map_or(0, Vec::len))
        .sum()
}

/// Runs a release binary under the local Runtime API against moto (tests/emulator/coldstart.py),
/// which checks its answers and prints cold and warm times.
pub fn cold_start(
    venv_bin: &std::path::Path,
    function: &str,
    binary: &std::path::Path,
    runs: u32,
) -> anyhow::Result<()> {
    println!("{function}: cold and warm start, {runs} runs (tests/emulator/coldstart.py)");
    let mut measure = Command::new(venv_bin.join("python"));
    measure
        .arg("coldstart.py")
        .arg(function)
        .arg(binary)
        .arg(runs.to_string())
        .current_dir(workspace_root().join("tests/emulator"));
    build::run_to_end(
        &mut measure,
        "tests/emulator/coldstart.py",
        &format!("cold start measurement of {function} failed"),
    )
}
