//! asg-refresh's generator: the typed ASL DSL, the rollout state machine built from a
//! stack config, the IAM documents and the names of every stack resource.

pub mod asl;
pub mod config;
pub mod events;
pub mod groups;
pub mod iam;
pub mod names;
pub mod payload;
pub mod render;
pub mod review;
pub mod rollout;
pub mod waves;
