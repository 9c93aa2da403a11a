//! `cargo xtask build`: the Lambdas' release zips at `target/lambda/<fn>/bootstrap.zip`,
//! cross-compiled by cargo-lambda (zig) against glibc 2.34, the glibc of `provided.al2023`,
//! then read back: a binary that needs a newer glibc fails here, not at its first invocation.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use generator::config::Architecture;

use crate::elf::{self, LAMBDA_GLIBC};
use crate::env_file::{display_path, workspace_root, StackSelector};
use crate::tools;
use crate::zip_listing;

/// The Lambdas: each is a binary of the runtime package built with the feature of its name.
pub const FUNCTIONS: [&str; 3] = ["planner", "refresher", "completer"];

const RUNTIME_PACKAGE: &str = "asg-refresh-runtime";

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Environment name: the architecture comes from envs/<env>.toml `[lambda]`
    #[arg(long, conflicts_with = "config")]
    pub env: Option<String>,
    /// Take the architecture from this config file instead of envs/<env>.toml
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// CPU architecture [default: the env's `lambda.architecture`, else arm64]
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Debug builds for this machine instead, for the local emulator (which runs the
    /// functions as processes here): one quick cargo build that reuses the xtask build,
    /// zipped into `<DIR>/<fn>/bootstrap.zip` for `deploy --zip-dir <DIR>`
    #[arg(long, value_name = "DIR", conflicts_with_all = ["env", "config", "arch"])]
    pub emulator_zips: Option<PathBuf>,
}

/// `--arch`, spelled as Lambda spells architectures.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Arch {
    #[value(name = "arm64")]
    Arm64,
    #[value(name = "x86_64")]
    X86_64,
}

impl From<Arch> for Architecture {
    fn from(arch: Arch) -> Self {
        match arch {
            Arch::Arm64 => Architecture::Arm64,
            Arch::X86_64 => Architecture::X86_64,
        }
    }
}

impl BuildArgs {
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(dir) = &self.emulator_zips {
            local_zips(dir)?;
            for function in FUNCTIONS {
                let zip = dir.join(function).join("bootstrap.zip");
                println!(
                    "{} {} bytes (debug, this machine)",
                    display_path(&zip).display(),
                    std::fs::metadata(&zip)?.len()
                );
            }
            return Ok(());
        }
        let arch = self.architecture()?;
        let venv_bin = tools::ensure_python().context("cannot install cargo-lambda")?;
        let builder = Builder::new(&venv_bin, arch)?;
        let built = FUNCTIONS
            .iter()
            .map(|function| builder.build(function))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for zip in &built {
            let glibc = zip
                .max_glibc
                .map_or_else(|| "none".to_string(), |v| v.to_string());
            println!(
                "{} {} bytes ({}, needs glibc {glibc})",
                display_path(&zip.path).display(),
                zip.bytes,
                arch.as_str()
            );
        }
        Ok(())
    }

    /// `--arch`, else the config's `lambda.architecture`, else arm64.
    fn architecture(&self) -> anyhow::Result<Architecture> {
        let from_config = match (&self.env, &self.config) {
            (None, None) => None,
            (env, config) => {
                let selector = StackSelector {
                    env: env.clone(),
                    config: config.clone(),
                };
                let (path, config) = selector.load()?;
                Some((path, config.lambda.architecture))
            }
        };
        Ok(match (self.arch, from_config) {
            (Some(arch), Some((path, configured))) if Architecture::from(arch) != configured => {
                eprintln!(
                    "note: building for {} (--arch) although {} says {}: deploy that stack with matching zips",
                    Architecture::from(arch).as_str(),
                    display_path(&path).display(),
                    configured.as_str()
                );
                arch.into()
            }
            (Some(arch), _) => arch.into(),
            (None, Some((_, configured))) => configured,
            (None, None) => Architecture::Arm64,
        })
    }
}

/// A checked Lambda zip.
#[derive(Debug)]
pub struct BuiltZip {
    pub path: PathBuf,
    /// The release binary the zip holds, for running it locally.
    pub binary: PathBuf,
    pub bytes: u64,
    /// The newest glibc version the binary needs; `None` when it is static.
    pub max_glibc: Option<elf::GlibcVersion>,
}

/// Builds the functions' zips for one architecture, with the pinned tools in `.venv/bin`.
pub struct Builder {
    venv_bin: PathBuf,
    target_dir: PathBuf,
    target: Target,
}

impl Builder {
    /// Finds cargo's target directory and installs the Rust target when it is missing.
    pub fn new(venv_bin: &Path, arch: Architecture) -> anyhow::Result<Self> {
        let target = Target::new(arch);
        ensure_rust_target(target.triple)?;
        Ok(Self {
            venv_bin: venv_bin.to_path_buf(),
            target_dir: cargo_target_dir()?,
            target,
        })
    }

    /// Builds one function with only its feature, then checks the binary and the zip.
    pub fn build(&self, function: &'static str) -> anyhow::Result<BuiltZip> {
        let Self {
            target_dir, target, ..
        } = self;
        let lambda_dir = target_dir.join("lambda");
        let zip = lambda_dir.join(function).join("bootstrap.zip");
        let release_dir = target_dir.join(target.triple).join("release");
        // A zip left by an earlier build must never pass for this one.
        remove_if_present(&zip)?;
        eprintln!(
            "building {function} for {} ({}, glibc {LAMBDA_GLIBC}) with cargo-lambda and zig",
            target.arch.as_str(),
            target.triple
        );
        eprintln!(
            "  {}",
            if release_dir.exists() {
                "rebuilds what changed; the LTO link of the whole binary alone takes a minute or more"
            } else {
                "first release build for this target: it compiles the AWS SDK with LTO and one codegen unit, \
                 which takes 10-20 minutes on 2 cores"
            }
        );
        let started = Instant::now();
        let mut build = self.cargo_lambda(function, &lambda_dir);
        let failed = format!(
            "cargo lambda build of {function} for {} failed",
            target.arch.as_str()
        );
        run_to_end(&mut build, "cargo-lambda from .venv", &failed)?;
        eprintln!("  built {function} in {} s", started.elapsed().as_secs());
        let binary = release_dir.join(function);
        let max_glibc = check_zip(&zip, &binary, *target).with_context(|| {
            format!(
                "{} ({function} for {})",
                display_path(&zip).display(),
                target.arch.as_str()
            )
        })?;
        let bytes = std::fs::metadata(&zip)?.len();
        Ok(BuiltZip {
            path: zip,
            binary,
            bytes,
            max_glibc,
        })
    }

    /// `cargo lambda build` of one function: release, locked, only its feature, for the
    /// target's triple pinned to [`LAMBDA_GLIBC`], zipped under `lambda_dir`.
    fn cargo_lambda(&self, function: &str, lambda_dir: &Path) -> Command {
        let Self {
            venv_bin, target, ..
        } = self;
        let mut build = Command::new(venv_bin.join("cargo-lambda"));
        build
            .args([
                "lambda",
                "build",
                "--release",
                "--locked",
                "--package",
                RUNTIME_PACKAGE,
            ])
            .args([
                "--bin",
                function,
                "--no-default-features",
                "--features",
                function,
            ])
            .arg("--target")
            .arg(format!("{}.{LAMBDA_GLIBC}", target.triple))
            .args(["--output-format", "zip", "--lambda-dir"])
            .arg(lambda_dir)
            // cargo-zigbuild runs `python -m ziglang` with this Python first: the pinned zig
            // in .venv, whatever `zig` or `python3` is on PATH.
            .env("CARGO_ZIGBUILD_PYTHON_PATH", venv_bin.join("python"))
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(std::io::stderr());
        build
    }
}

/// Removes `path`; fine when it is not there.
fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove the old {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The cargo that runs `xtask` (`$CARGO`), or the one on PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs `command` to its end: an error naming `program` when it cannot start, and saying
/// `failed` (with the exit status) when it does not succeed.
pub fn run_to_end(command: &mut Command, program: &str, failed: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{failed} ({status})");
    }
    Ok(())
}

/// The Lambdas for the local emulator, which runs them as processes on this machine: debug
/// builds of every function in one cargo invocation, in the dev profile that building `xtask`
/// has already compiled the AWS SDK and the generator for, so a first `demo` compiles little
/// more than the runtime crate. Zipped as `<dir>/<fn>/bootstrap.zip`, ready for `deploy
/// --zip-dir`. The release zips (LTO, cross-compiled, glibc-checked) stay for AWS and for the
/// zip checks of `cargo xtask test`.
pub fn local_zips(dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let target_dir = cargo_target_dir()?;
    eprintln!(
        "building {} for the emulator (debug, this machine; reuses the xtask build: under a minute \
         when it is warm, a few minutes the first time)",
        FUNCTIONS.join(", ")
    );
    // `xtask` is built in the same invocation so that the features of the SDK crates unify
    // as they do in the `cargo xtask` build (the Lambda and CloudWatch Logs crates turn on
    // event streams in the shared aws-runtime): built alone, the functions would compile
    // the whole SDK again.
    let mut cargo = cargo();
    cargo.args([
        "build",
        "--locked",
        "--package",
        "xtask",
        "--package",
        RUNTIME_PACKAGE,
        "--bin",
        "xtask",
    ]);
    for function in FUNCTIONS {
        cargo.args(["--bin", function]);
    }
    cargo
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(std::io::stderr());
    run_to_end(
        &mut cargo,
        "cargo build",
        "cargo build of the Lambdas for the emulator failed",
    )?;
    // A debug binary is 50-100 MB: one thread per function.
    std::thread::scope(|scope| {
        let zipping: Vec<_> = FUNCTIONS
            .iter()
            .map(|function| {
                let binary = target_dir.join("debug").join(function);
                let zip = dir.join(function).join("bootstrap.zip");
                scope.spawn(move || {
                    write_bootstrap_zip(&binary, &zip).with_context(|| {
                        format!("cannot zip {} as {}", binary.display(), zip.display())
                    })
                })
            })
            .collect();
        zipping
            .into_iter()
            .try_for_each(|thread| thread.join().expect("zipping panicked"))
    })?;
    eprintln!(
        "  built and zipped in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `zip` holding `binary` as its only entry, `bootstrap`, executable.
fn write_bootstrap_zip(binary: &Path, zip: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let bytes = std::fs::read(binary)?;
    if let Some(parent) = zip.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut writer = zip::ZipWriter::new(std::fs::File::create(zip)?);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .unix_permissions(0o755);
    writer.start_file("bootstrap", options)?;
    writer.write_all(&bytes)?;
    writer.finish()?.sync_all()?;
    Ok(())
}

/// Where a function is built for: the Rust target, pinned to the runtime's glibc by the
/// `.2.34` suffix that cargo-lambda hands to cargo-zigbuild.
#[derive(Debug, Clone, Copy)]
struct Target {
    arch: Architecture,
    triple: &'static str,
    elf_machine: object::elf::Machine,
}

impl Target {
    fn new(arch: Architecture) -> Self {
        match arch {
            Architecture::Arm64 => Self {
                arch,
                triple: "aarch64-unknown-linux-gnu",
                elf_machine: object::elf::EM_AARCH64,
            },
            Architecture::X86_64 => Self {
                arch,
                triple: "x86_64-unknown-linux-gnu",
                elf_machine: object::elf::EM_X86_64,
            },
        }
    }
}

/// The binary must suit the target (machine, glibc) and be the zip's only entry,
/// `bootstrap`, executable and the same bytes (size and CRC-32). Returns its newest glibc.
fn check_zip(
    zip: &Path,
    binary: &Path,
    target: Target,
) -> anyhow::Result<Option<elf::GlibcVersion>> {
    let elf = std::fs::read(binary)
        .with_context(|| format!("cannot read the built binary {}", binary.display()))?;
    let needs = elf::needs(&elf).with_context(|| format!("cannot read {}", binary.display()))?;
    if needs.machine != target.elf_machine {
        let found = [
            Target::new(Architecture::Arm64),
            Target::new(Architecture::X86_64),
        ]
        .into_iter()
        .find(|other| other.elf_machine == needs.machine)
        .map_or_else(
            || format!("ELF machine {}", needs.machine),
            |other| other.arch.as_str().to_string(),
        );
        bail!("the binary is for {found}, not {}", target.arch.as_str());
    }
    needs
        .check_glibc(LAMBDA_GLIBC)
        .context("provided.al2023 would refuse to start it")?;
    let data = std::fs::read(zip).context("cargo-lambda wrote no zip here")?;
    check_zip_holds(&data, &elf).with_context(|| format!("built binary: {}", binary.display()))?;
    Ok(needs.max_glibc())
}

/// The zip's only entry is `bootstrap`, executable, with the binary's size and CRC-32.
fn check_zip_holds(data: &[u8], elf: &[u8]) -> anyhow::Result<()> {
    let entries = zip_listing::entries(data)?;
    let [entry] = entries.as_slice() else {
        bail!("holds {} entries, not just bootstrap", entries.len());
    };
    if entry.name != "bootstrap" {
        bail!("holds `{}`, not `bootstrap`", entry.name);
    }
    if entry.unix_mode.is_none_or(|mode| mode & 0o111 == 0) {
        bail!("its bootstrap is not executable");
    }
    if entry.size != elf.len() as u64 || entry.crc32 != zip_listing::crc32(elf) {
        bail!("its bootstrap is not the binary that was checked");
    }
    Ok(())
}

/// Installs the Rust standard library for `triple` when rustup lacks it.
fn ensure_rust_target(triple: &str) -> anyhow::Result<()> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace_root())
        .output()
        .with_context(|| {
            format!("cannot run rustup: install the Rust target {triple} for your toolchain")
        })?;
    if !output.status.success() {
        bail!(
            "rustup target list --installed failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| line.trim() == triple)
    {
        return Ok(());
    }
    eprintln!("installing the Rust target {triple} (rustup target add)");
    tools::run(
        Command::new("rustup")
            .args(["target", "add", triple])
            .current_dir(workspace_root()),
        &format!("rustup target add {triple}"),
    )
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` and `build.target-dir`.
fn cargo_target_dir() -> anyhow::Result<PathBuf> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed ({})", output.status);
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed no JSON")?;
    let dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata names no target_directory")?;
    Ok(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zip_listing::tests::stored_zip;

    #[test]
    fn a_local_zip_holds_the_binary_as_its_executable_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("planner");
        let elf: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&binary, &elf).unwrap();
        let zip = dir.path().join("zips/planner/bootstrap.zip");
        write_bootstrap_zip(&binary, &zip).unwrap();
        let data = std::fs::read(&zip).unwrap();
        check_zip_holds(&data, &elf).unwrap();
        assert!(check_zip_holds(&data, &elf[1..]).is_err());
    }

    #[test]
    fn a_lambda_zip_holds_exactly_the_checked_binary_executable() {
        let elf = b"\x7fELF the checked binary";
        check_zip_holds(&stored_zip(&[("bootstrap", 0o100755, elf)], b""), elf)
            .expect("the zip cargo-lambda writes");

        let wrong = [
            (
                stored_zip(&[("bootstrap", 0o100644, elf)], b""),
                "not executable",
            ),
            (
                stored_zip(&[("planner", 0o100755, elf)], b""),
                "not `bootstrap`",
            ),
            (
                stored_zip(
                    &[("bootstrap", 0o100755, b"\x7fELF an older binary....")],
                    b"",
                ),
                "not the binary",
            ),
            (
                stored_zip(
                    &[("bootstrap", 0o100755, elf), ("extra", 0o100644, b"")],
                    b"",
                ),
                "2 entries",
            ),
            (stored_zip(&[], b""), "0 entries"),
        ];
        for (zip, expected) in wrong {
            let error = check_zip_holds(&zip, elf).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn targets_pin_the_lambda_glibc_through_the_triple_suffix() {
        let arm = Target::new(Architecture::Arm64);
        assert_eq!(
            format!("{}.{LAMBDA_GLIBC}", arm.triple),
            "aarch64-unknown-linux-gnu.2.34"
        );
        assert_eq!(
            Target::new(Architecture::X86_64).elf_machine,
            object::elf::EM_X86_64
        );
    }
}
