//! Everything `cargo xtask render` writes for one stack, built in memory first so that
//! nothing is written when any part fails.

use std::path::PathBuf;

use crate::asl::{validate, ValidationErrors};
use crate::config::{Completion, StackConfig};
use crate::events;
use crate::iam::{self, IamError};
use crate::names::Stack;
use crate::review;
use crate::rollout;

/// One output file, relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: PathBuf,
    pub contents: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    StateMachine(#[from] ValidationErrors),
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error("review report: {0}")]
    Review(#[from] minijinja::Error),
}

/// Where the EventBridge rule's event pattern is written, relative to the output directory
/// (`completion = "events"` only): `eventbridge/<rule>.pattern.json`.
pub fn event_pattern_file(stack: &Stack) -> String {
    format!("eventbridge/{}.pattern.json", stack.events_rule())
}

/// The state machine, the IAM documents (the stack roles' and the deployer's policy), the
/// EventBridge rule's event pattern (`completion = "events"`) and the review report of a stack.
pub fn render(config: &StackConfig) -> Result<Vec<OutputFile>, RenderError> {
    let machine = rollout::build(config);
    validate(&machine)?;
    let documents = iam::documents(config)?;
    let mut files = vec![OutputFile {
        path: PathBuf::from("state-machine.asl.json"),
        contents: machine.to_json(),
    }];
    for doc in documents.iter().chain([&iam::deployer_document(config)?]) {
        files.push(OutputFile {
            path: PathBuf::from("iam").join(&doc.file_name),
            contents: doc.to_json(),
        });
    }
    if config.rollout.completion == Completion::Events {
        let pattern = events::event_pattern(config);
        let mut contents = serde_json::to_string_pretty(&pattern).expect("json values serialise");
        contents.push('\n');
        files.push(OutputFile {
            path: PathBuf::from(event_pattern_file(&Stack::new(config))),
            contents,
        });
    }
    files.push(OutputFile {
        path: PathBuf::from("review.md"),
        contents: review::render(config, &machine, &documents)?,
    });
    Ok(files)
}
