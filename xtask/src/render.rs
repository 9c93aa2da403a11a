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

/// Writes every file under `out`, creating the folders they go in and removing the stale
/// `iam/*.json` and `eventbridge/*.json` an earlier render left (a stack that switched to
/// `completion = "poll"` has no completer role and no rule).
pub fn write_files(out: &Path, files: &[OutputFile]) -> anyhow::Result<()> {
    let keep: Vec<PathBuf> = files.iter().map(|f| out.join(&f.path)).collect();
    for folder in ["iam", "eventbridge"] {
        let Ok(entries) = std::fs::read_dir(out.join(folder)) else {
            continue;
        };
        for path in entries.flatten().map(|entry| entry.path()) {
            if path.extension().is_some_and(|x| x == "json") && !keep.contains(&path) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove stale {}", path.display()))?;
            }
        }
    }
    for file in files {
        let path = out.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> OutputFile {
        OutputFile {
            path: PathBuf::from(path),
            contents: format!("{{\"path\": \"{path}\"}}"),
        }
    }

    #[test]
    fn writes_into_new_folders_and_drops_what_an_earlier_render_left() {
        let out = tempfile::tempdir().unwrap();
        let events = [
            file("state-machine.asl.json"),
            file("iam/completer.policy.json"),
            file("eventbridge/rule.pattern.json"),
        ];
        write_files(out.path(), &events).unwrap();
        assert!(out.path().join("eventbridge/rule.pattern.json").is_file());

        // The stack switched to polling: no completer, no rule.
        let poll = [
            file("state-machine.asl.json"),
            file("iam/lambda.policy.json"),
        ];
        write_files(out.path(), &poll).unwrap();
        assert!(!out.path().join("eventbridge/rule.pattern.json").exists());
        assert!(!out.path().join("iam/completer.policy.json").exists());
        assert!(out.path().join("iam/lambda.policy.json").is_file());
        assert!(out.path().join("state-machine.asl.json").is_file());
    }
}
