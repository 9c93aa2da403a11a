//! `cargo xtask`: asg-refresh's command line (render, test; build, deploy and rollout follow).

mod env_file;
mod render;
mod test;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Roll a new AMI across many EC2 Auto Scaling groups, a bounded number at a time.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render the state machine, IAM documents and review report of a stack
    Render(render::RenderArgs),
    /// Run everything CI runs: unit and integration tests, renders, validators
    Test(test::TestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render(args) => args.run(),
        Command::Test(args) => args.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
