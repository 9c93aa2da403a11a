//! Snapshots of every env's full render (state machine, IAM documents, review report),
//! committed so that a reviewer reads what a change does to each stack in the diff.
//! They also prove the render deterministic: it must give the bytes another process committed
//! (two renders in one process proved nothing more); `xtask/tests/cli.rs` renders prod in two
//! processes and compares the trees.

use std::path::{Path, PathBuf};

use generator::config;
use generator::render::render;

fn env_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../envs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("envs/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_env_render_matches_its_snapshot() {
    let files = env_files();
    assert!(files.len() >= 3, "dev, prod and local at least");
    for file in files {
        let env = file.file_stem().unwrap().to_string_lossy().into_owned();
        let config = config::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let rendered = render(&config).unwrap_or_else(|e| panic!("{env}: {e}"));
        let expected = match config.rollout.completion {
            // The state machine, the four IAM documents of the Lambda and state machine
            // roles, the deployer policy, review.
            config::Completion::Poll => 7,
            // And the completer role's two documents and the rule's event pattern.
            config::Completion::Events => 10,
        };
        assert_eq!(rendered.len(), expected, "{env}");
        for out in rendered {
            let name = format!("{env}__{}", out.path.display()).replace(['/', '\\'], "__");
            insta::assert_snapshot!(name, out.contents);
        }
    }
}

#[test]
fn rendered_json_parses_and_names_the_stack() {
    for file in env_files() {
        let config = config::load(&file).unwrap();
        for out in render(&config).unwrap() {
            if out.path.extension().is_some_and(|x| x == "json") {
                let value: serde_json::Value = serde_json::from_str(&out.contents)
                    .unwrap_or_else(|e| panic!("{}: {e}", out.path.display()));
                assert!(value.is_object());
                assert!(out.contents.ends_with('\n'));
            }
        }
        let review = render(&config).unwrap().pop().unwrap();
        assert!(review
            .contents
            .contains(&format!("asg-refresh-{}", config.name)));
        assert!(review.contents.contains("```mermaid\nflowchart TD\n"));
    }
}
