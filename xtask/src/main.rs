//! `cargo xtask`: asg-refresh's command line (render, build, deploy, destroy, rollout, status, approve, demo, test, bench).

mod bench;
mod build;
mod demo;
mod deploy;
mod drift;
mod elf;
mod env_file;
mod render;
mod rollout;
mod test;
mod tools;
mod zip_listing;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Roll a new AMI across many EC2 Auto Scaling groups, a bounded number at a time.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Roll a new AMI across many EC2 Auto Scaling groups, a bounded number at a time",
    after_help = "Examples:\n  cargo xtask demo\n  cargo xtask render --env prod [--out DIR]\n  cargo xtask render --config path/to/stack.toml\n  cargo xtask deploy --env prod [--dry-run]\n  cargo xtask destroy --env dev [--yes]\n  cargo xtask rollout --env prod --ami ami-0123456789abcdef0 [--wait]\n  cargo xtask status --env prod [--rollout ID] [--watch | --json]\n  cargo xtask approve --env prod [--rollout ID] [--reject]\n  cargo xtask abort --env prod [--rollout ID] [--cancel | --rollback] [--reason TEXT]\n  cargo xtask test"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole job on the local emulator: deploy, a 12-ASG fleet, a rollout with live progress
    Demo(demo::DemoArgs),
    /// Render the state machine, IAM documents and review report of a stack
    Render(render::RenderArgs),
    /// Build the Lambdas' release zips (target/lambda/<fn>/bootstrap.zip), glibc 2.34 at most
    Build(build::BuildArgs),
    /// Create or update a stack's AWS resources straight through the SDK (prints the plan first)
    Deploy(deploy::DeployArgs),
    /// Delete a stack's tagged AWS resources
    Destroy(deploy::DestroyArgs),
    /// Start a rollout of an AMI on a deployed stack (--wait follows it to the end)
    Rollout(rollout::RolloutArgs),
    /// Show a rollout: per ASG its wave, status, progress, times and message
    Status(rollout::StatusArgs),
    /// Approve (or --reject) the next wave of a rollout waiting between waves
    Approve(rollout::ApproveArgs),
    /// List targeted ASGs and instances that differ from what the last rollout left (--json)
    Drift(drift::DriftArgs),
    /// Abort a running rollout: stop it, cancel (or --rollback) its refreshes in flight, release the lock
    Abort(rollout::abort::AbortArgs),
    /// Measure the Lambdas (zip sizes, cold and warm start, plan payload size); --fleet N: rollouts of N ASGs side by side
    Bench(bench::BenchArgs),
    /// Run everything CI runs: unit and integration tests, renders, validators
    Test(test::TestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => args.run(),
        Command::Render(args) => args.run(),
        Command::Build(args) => args.run(),
        Command::Deploy(args) => args.run(),
        Command::Destroy(args) => args.run(),
        Command::Rollout(args) => args.run(),
        Command::Status(args) => args.run(),
        Command::Approve(args) => args.run(),
        Command::Drift(args) => args.run(),
        Command::Abort(args) => args.run(),
        Command::Test(args) => args.run(),
        Command::Bench(args) => args.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
