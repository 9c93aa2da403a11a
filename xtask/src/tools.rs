//! Installs the pinned validator tools on first use: Python tools into `.venv` from
//! `tests/requirements.txt`, Node tools into `tests/node_modules` from the lockfile.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::env_file::workspace_root;

/// Paths of the installed tools.
pub struct Tools {
    pub venv_bin: PathBuf,
    pub node_bin: PathBuf,
}

impl Tools {
    pub fn statelint(&self) -> PathBuf {
        self.venv_bin.join("statelint")
    }

    pub fn parliament(&self) -> PathBuf {
        self.venv_bin.join("parliament")
    }

    pub fn asl_validator(&self) -> PathBuf {
        self.node_bin.join("asl-validator")
    }
}

/// Installs (when missing or out of date) and returns the tools.
pub fn ensure() -> anyhow::Result<Tools> {
    let root = workspace_root();
    let venv_bin = ensure_venv(&root)?;
    let node_bin = ensure_node_modules(&root)?;
    Ok(Tools { venv_bin, node_bin })
}

/// Installs (when missing or out of date) the Python tools alone and returns `.venv/bin`:
/// for commands that need no Node tool, such as `cargo xtask build` (cargo-lambda, zig).
pub fn ensure_python() -> anyhow::Result<PathBuf> {
    ensure_venv(&workspace_root())
}

/// Runs a command, failing with its output when it fails.
pub fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = cmd
        .output()
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// True when `stamp` records exactly `contents` (the install it marks is current).
fn is_current(stamp: &Path, contents: &str) -> bool {
    std::fs::read_to_string(stamp).is_ok_and(|s| s == contents)
}

fn ensure_venv(root: &Path) -> anyhow::Result<PathBuf> {
    let requirements = root.join("tests").join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let venv = root.join(".venv");
    let bin = venv.join("bin");
    let stamp = venv.join(".asg-refresh-requirements.txt");
    if bin.join("python").exists() && is_current(&stamp, &wanted) {
        return Ok(bin);
    }
    eprintln!(
        "installing Python tools into {} (tests/requirements.txt)",
        venv.display()
    );
    if !bin.join("python").exists() {
        let python = ["python3", "python"]
            .into_iter()
            .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
            .context("python3 not found: install Python 3.9 or newer (Debian: apt-get install python3 python3-venv)")?;
        run(
            Command::new(python).args(["-m", "venv"]).arg(&venv),
            "creating .venv",
        )?;
    }
    run(
        Command::new(bin.join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                "--requirement",
            ])
            .arg(&requirements),
        "pip install -r tests/requirements.txt",
    )?;
    std::fs::write(&stamp, wanted)?;
    Ok(bin)
}

fn ensure_node_modules(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("tests");
    let lock = std::fs::read_to_string(dir.join("package-lock.json"))
        .context("cannot read tests/package-lock.json")?;
    let modules = dir.join("node_modules");
    let stamp = modules.join(".asg-refresh-package-lock.json");
    let bin = modules.join(".bin");
    if bin.exists() && is_current(&stamp, &lock) {
        return Ok(bin);
    }
    eprintln!("installing Node tools into {} (npm ci)", modules.display());
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir),
        "npm ci in tests/ (needs Node.js 18+ and npm; Debian: apt-get install nodejs npm)",
    )?;
    std::fs::write(&stamp, lock)?;
    Ok(bin)
}
