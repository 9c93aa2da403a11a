//! States the ASL tests build their machines from, and (in [`machine`]) the stacks and
//! lookups of the rollout machine tests (included by each test binary that uses them with
//! `mod common;`).

#![allow(dead_code)]

pub mod machine;

use generator::asl::{Fail, Kind, State, StateMachine, States, Succeed, Wait};

/// A Succeed state, the simplest terminal state.
pub fn succeed() -> State {
    State::new(Kind::Succeed(Succeed::default()))
}

/// A Fail state taking its error and cause from the object at `path` (where a catcher's
/// ResultPath put them).
pub fn fail_from(path: &str) -> State {
    State::new(Kind::Fail(Fail {
        error_path: Some(format!("{path}.Error")),
        cause_path: Some(format!("{path}.Cause")),
        ..Fail::default()
    }))
}

/// A Wait of `seconds` going on to `next`.
pub fn wait_then(seconds: u32, next: &str) -> State {
    State::new(Kind::Wait(Wait::seconds(seconds))).next(next)
}

/// A machine of `states` with a comment and a timeout.
pub fn machine_of(states: States, comment: &str, timeout_seconds: u32) -> StateMachine {
    StateMachine {
        comment: Some(comment.to_string()),
        timeout_seconds: Some(timeout_seconds),
        ..StateMachine::new(states)
    }
}
