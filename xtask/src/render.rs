//! `cargo xtask render`: writes a stack's state machine, IAM documents and review report.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use generator::config::StackConfig;
use generator::render::{render, OutputFile};

use crate::env_file::{display_path, workspace_root, StackSelector};

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub stack: StackSelector,
    /// Output directory [default: target/asg-refresh/<env>/]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl RenderArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let (_, config) = self.stack.load()?;
        let out = self.out.unwrap_or_else(|| default_out_dir(&config));
        let files = render_files(&config)?;
        write_files(&out, &files)?;
        for file in &files {
            println!("wrote {}", display_path(&out.join(&file.path)).display());
        }
        Ok(())
    }
}

/// `target/asg-refresh/<env>/`.
pub fn default_out_dir(config: &StackConfig) -> PathBuf {
    workspace_root()
        .join("target")
        .join("asg-refresh")
        .join(&config.name)
}

/// Renders in memory; nothing is written when this fails.
pub fn render_files(config: &StackConfig) -> anyhow::Result<Vec<OutputFile>> {
    render(config).with_context(|| format!("cannot render stack `{}`", config.name))
}

/// Writes every file under `out`, removing stale `iam/*.json` left by an earlier render.
pub fn write_files(out: &Path, files: &[OutputFile]) -> anyhow::Result<()> {
    let iam = out.join("iam");
    std::fs::create_dir_all(&iam).with_context(|| format!("cannot create {}", iam.display()))?;
    let keep: Vec<PathBuf> = files.iter().map(|f| out.join(&f.path)).collect();
    for entry in std::fs::read_dir(&iam)?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "json") && !keep.contains(&path) {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove stale {}", path.display()))?;
        }
    }
    for file in files {
        let path = out.join(&file.path);
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
