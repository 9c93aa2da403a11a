//! Finds and loads a stack config from `--env <env>` or `--config <path>`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use generator::config::{self, StackConfig};

/// Which stack config to use.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct StackSelector {
    /// Environment name: reads envs/<env>.toml
    #[arg(long)]
    pub env: Option<String>,
    /// Read this config file instead of envs/<env>.toml
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// `--endpoint-url`, shared by every command that calls AWS.
#[derive(Args, Debug, Clone, Default)]
pub struct Endpoint {
    /// Send every AWS call here (an emulator); overrides `endpoint_url` and AWS_ENDPOINT_URL
    #[arg(long = "endpoint-url", value_name = "URL")]
    pub url: Option<String>,
}

impl Endpoint {
    /// An emulator's address.
    pub fn at(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
        }
    }

    /// The URL given, if any.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

/// The workspace root (the directory above `xtask/`, see the tests crate's).
pub use asg_refresh_emulator::workspace_root;

/// Every `envs/*.toml`, sorted by name.
pub fn env_files() -> anyhow::Result<Vec<PathBuf>> {
    let dir = workspace_root().join("envs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

impl StackSelector {
    /// The config file this selector names, checked to exist.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.config {
            if !path.is_file() {
                bail!("config file {} does not exist", path.display());
            }
            return Ok(path.clone());
        }
        let env = self.env.as_deref().unwrap_or_default();
        let valid = !env.is_empty()
            && env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let path = workspace_root().join("envs").join(format!("{env}.toml"));
        if !valid || !path.is_file() {
            let known: Vec<String> = env_files()?
                .iter()
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect();
            bail!("unknown env `{env}`: known envs are {}", known.join(", "));
        }
        Ok(path)
    }

    /// Loads and validates the config; with `--env`, its `name` must match.
    pub fn load(&self) -> anyhow::Result<(PathBuf, StackConfig)> {
        let path = self.path()?;
        let config = load_checked(&path, self.env.as_deref())?;
        Ok((path, config))
    }
}

/// Loads a config; `env`, when given, must equal its `name`.
pub fn load_checked(path: &Path, env: Option<&str>) -> anyhow::Result<StackConfig> {
    let shown = display_path(path);
    let config = config::load(&shown).map_err(anyhow::Error::new)?;
    if let Some(env) = env {
        if config.name != env {
            bail!(
                "{}: `name` is \"{}\" but the file is envs/{env}.toml: rename one so they match",
                shown.display(),
                config.name
            );
        }
    }
    Ok(config)
}

/// The path relative to the current directory where that is shorter, for messages.
pub fn display_path(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}
