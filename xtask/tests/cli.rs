//! The `xtask` binary as a user runs it: `render` with good and bad configs, and its help.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use asg_refresh_tests::workspace_root;

/// Malformed configs from `tests/fixtures/bad-envs/` with the key each error must name.
const BAD_FIXTURES: &[(&str, &str)] = &[
    ("batch-size-string.toml", "rollout.batch_size"),
    ("batch-size-zero.toml", "rollout.batch_size"),
    ("canary-not-in-targets.toml", "rollout.canary[0]"),
    ("region-invalid.toml", "region"),
    ("account-id-short.toml", "account_id"),
    ("memory-too-small.toml", "lambda.memory_mb"),
];

/// A fresh temporary directory.
fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
}

/// Runs the xtask binary in `cwd` with `args`.
fn xtask(cwd: &Path, args: &[&str]) -> Output {
    support::run(support::xtask(args).current_dir(cwd))
}

/// The output's stdout and stderr as text, for assertions and failure messages.
fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs xtask and requires it to succeed.
fn xtask_ok(cwd: &Path, args: &[&str]) -> String {
    let output = xtask(cwd, args);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "xtask {args:?} failed ({}):\n{stdout}{stderr}",
        output.status
    );
    stdout
}

/// `render <source> --out <out>` (`source`: `--config <file>` or `--env <name>`; `out`: a
/// directory in a fresh temporary one) in `cwd`, or in the temporary directory when `None`,
/// which must fail and write nothing; returns its stderr.
#[track_caller]
fn render_refused(cwd: Option<&Path>, source: [&str; 2]) -> String {
    let [flag, value] = source;
    let tmp = temp_dir();
    let out = tmp.path().join("out");
    let cwd = cwd.unwrap_or(tmp.path());
    let out_arg = out.to_string_lossy();
    let output = xtask(cwd, &["render", flag, value, "--out", &out_arg]);
    let (stdout, stderr) = text(&output);
    assert!(
        !output.status.success(),
        "render {flag} {value} succeeded:\n{stdout}{stderr}"
    );
    assert!(
        !out.exists(),
        "render {flag} {value}: {} was created though it failed",
        out.display()
    );
    stderr
}

/// Every file under `dir`, by path relative to `dir`, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                files.insert(relative, bytes);
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

#[test]
fn bad_config_fails_naming_file_and_key_and_writes_nothing() {
    let fixtures = workspace_root()
        .join("tests")
        .join("fixtures")
        .join("bad-envs");
    for (file, key) in BAD_FIXTURES {
        let config = fixtures.join(file);
        let config_arg = config.to_string_lossy().into_owned();
        let stderr = render_refused(None, ["--config", &config_arg]);
        assert!(
            stderr.contains(&config_arg),
            "{file}: stderr should name {config_arg}:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("`{key}`")),
            "{file}: stderr should name `{key}`:\n{stderr}"
        );
    }
}

#[test]
fn missing_config_file_fails_and_writes_nothing() {
    let tmp = temp_dir();
    let config = tmp.path().join("no-such-config.toml");
    let config_arg = config.to_string_lossy().into_owned();
    let stderr = render_refused(None, ["--config", &config_arg]);
    assert!(
        stderr.contains(&config_arg) && stderr.contains("does not exist"),
        "stderr should say {config_arg} does not exist:\n{stderr}"
    );
}

#[test]
fn unknown_env_names_the_known_envs() {
    let stderr = render_refused(Some(&workspace_root()), ["--env", "nosuch"]);
    assert!(
        stderr.contains("unknown env `nosuch`"),
        "stderr should name the unknown env:\n{stderr}"
    );
    let known: Vec<&str> = match stderr.split_once("known envs are ") {
        Some((_, list)) => list.lines().next().unwrap_or("").split(", ").collect(),
        None => panic!("stderr should list the known envs:\n{stderr}"),
    };
    for env in ["dev", "local", "prod"] {
        assert!(
            known.contains(&env),
            "the known envs should include {env}:\n{stderr}"
        );
    }
}

#[test]
fn render_prod_writes_every_file_and_is_deterministic() {
    let tmp = temp_dir();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    for out in [&first, &second] {
        let out_arg = out.to_string_lossy().into_owned();
        let stdout = xtask_ok(tmp.path(), &["render", "--env", "prod", "--out", &out_arg]);
        assert!(
            stdout.contains("state-machine.asl.json"),
            "render should list what it wrote:\n{stdout}"
        );
    }

    let files = tree(&first);
    let names: Vec<String> = files
        .keys()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .collect();
    assert!(
        names.iter().any(|n| n == "state-machine.asl.json"),
        "no state machine in {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "review.md"),
        "no review report in {names:?}"
    );
    let iam: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("iam/") && n.ends_with(".json"))
        .collect();
    assert_eq!(
        iam.len(),
        7,
        "expected the trust and permission policy of each of the three roles (prod completes on events: \
         the completer has one) and the deployer's policy, got {iam:?}"
    );
    assert!(
        names.iter().any(|n| n == "iam/deployer.policy.json"),
        "no deployer policy in {names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n == "eventbridge/asg-refresh-prod-refresh-events.pattern.json"),
        "no event pattern for the completion rule in {names:?}"
    );
    assert_eq!(names.len(), 10, "unexpected files in the render: {names:?}");

    for (path, bytes) in &files {
        if path.extension().is_some_and(|ext| ext == "json") {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(bytes) {
                panic!("{} is not JSON: {e}", path.display());
            }
        }
    }
    assert!(
        files == tree(&second),
        "two renders of prod differ:\n{names:?}"
    );
}

#[test]
fn config_flag_accepts_any_stack_name() {
    // With --config the file name says nothing about the stack, so `name` may be anything.
    let tmp = temp_dir();
    let source = workspace_root().join("envs").join("dev.toml");
    let original = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
    assert!(
        original.contains("name = \"dev\""),
        "envs/dev.toml no longer sets name = \"dev\""
    );
    let config = tmp.path().join("not-qa.toml");
    std::fs::write(&config, original.replace("name = \"dev\"", "name = \"qa\""))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
    let out = tmp.path().join("out");
    let config_arg = config.to_string_lossy().into_owned();
    let out_arg = out.to_string_lossy().into_owned();
    xtask_ok(
        tmp.path(),
        &["render", "--config", &config_arg, "--out", &out_arg],
    );
    assert!(
        out.join("state-machine.asl.json").is_file(),
        "no state machine under {}",
        out.display()
    );
}

/// The entries of a `--help` section (`Commands:`, `Options:`, `Examples:`): its indented
/// lines, trimmed.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect()
}

/// The long flags an `Options:` section defines (`--env` from `      --env <ENV>  ...`,
/// `--help` from `  -h, --help  ...`).
fn options(help: &str) -> BTreeSet<String> {
    section(help, "Options:")
        .into_iter()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            l.split([' ', ','])
                .find(|word| word.starts_with("--"))
                .map(str::to_string)
        })
        .collect()
}

/// Each `cargo xtask <command> ...` example of the top-level help that names a command
/// `commands` does not have, or a flag its command does not define.
fn stale_examples(help: &str, commands: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut stale = Vec::new();
    for example in section(help, "Examples:") {
        let words: Vec<&str> = example.split_whitespace().collect();
        let Some(flags) = words.get(2).and_then(|command| commands.get(*command)) else {
            stale.push(format!("{example}: no such command"));
            continue;
        };
        for word in &words[3..] {
            let flag = word.trim_matches(['[', ']']);
            if flag.starts_with("--") && !flags.contains(flag) {
                stale.push(format!("{example}: no {flag}"));
            }
        }
    }
    stale
}

/// Every command's own `--help`: the flags it defines, by command.
fn command_options() -> (String, BTreeMap<String, BTreeSet<String>>) {
    let top = xtask_ok(&workspace_root(), &["--help"]);
    let commands = section(&top, "Commands:")
        .into_iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|command| *command != "help")
        .map(|command| {
            let help = xtask_ok(&workspace_root(), &[command, "--help"]);
            (command.to_string(), options(&help))
        })
        .collect();
    (top, commands)
}

#[test]
fn help_lists_each_command_and_its_examples_use_real_flags() {
    let (top, commands) = command_options();
    for command in ["render", "deploy", "rollout", "status", "approve", "abort"] {
        assert!(
            commands.contains_key(command),
            "the Commands section of --help does not list {command}:\n{top}"
        );
    }
    assert!(
        !section(&top, "Examples:").is_empty(),
        "--help has no examples:\n{top}"
    );
    let stale = stale_examples(&top, &commands);
    assert!(stale.is_empty(), "stale examples in --help: {stale:#?}");
}

#[test]
fn stale_examples_are_found() {
    // The check above on a help whose examples went stale: it must say which and why.
    let help =
        "Commands:\n  render  Render\n\nExamples:\n  cargo xtask render --env prod [--out DIR]\n  \
                cargo xtask render [--output DIR]\n  cargo xtask rendr --env dev\n";
    let commands = BTreeMap::from([(
        "render".to_string(),
        BTreeSet::from(["--env".to_string(), "--out".to_string()]),
    )]);
    assert_eq!(
        stale_examples(help, &commands),
        [
            "cargo xtask render [--output DIR]: no --output",
            "cargo xtask rendr --env dev: no such command"
        ]
    );
}

#[test]
fn render_help_defines_exactly_its_flags() {
    let stdout = xtask_ok(&workspace_root(), &["render", "--help"]);
    assert_eq!(
        options(&stdout),
        BTreeSet::from(["--env", "--config", "--out", "--help"].map(String::from)),
        "render --help:\n{stdout}"
    );
}

#[test]
fn render_without_env_or_config_is_a_usage_error() {
    let output = xtask(&workspace_root(), &["render"]);
    let (_, stderr) = text(&output);
    // clap exits with 2 on a usage error.
    assert_eq!(
        output.status.code(),
        Some(2),
        "render with no stack should be a usage error:\n{stderr}"
    );
    assert!(
        stderr.contains("required") && stderr.contains("--env") && stderr.contains("Usage:"),
        "stderr should say a stack is required:\n{stderr}"
    );
}

#[test]
fn render_without_env_or_config_names_both_flags() {
    let output = xtask(&workspace_root(), &["render"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--env") && stderr.contains("--config"),
        "the usage error should offer both --env and --config:\n{stderr}"
    );
}

#[test]
fn env_and_config_together_are_a_usage_error() {
    let config = workspace_root().join("envs").join("dev.toml");
    let config_arg = config.to_string_lossy().into_owned();
    let output = xtask(
        &workspace_root(),
        &["render", "--env", "dev", "--config", &config_arg],
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot be used with"),
        "stderr should say the flags conflict:\n{stderr}"
    );
}
