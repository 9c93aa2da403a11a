//! The resources' replay tests' one check of a planned step: apply it on replay clients, then
//! say what its plan line said and how many mutating calls it sent.

use super::aws::Clients;
use super::engine::replay::mutating;
use super::engine::{Planned, Resource, Step, Verb};

/// Applies `step` (it must succeed) and returns its verb, its changed fields as the plan
/// prints them, and the mutating calls `clients` have sent in all.
pub async fn applied(step: &dyn Step, clients: &Clients) -> (Verb, String, u64) {
    step.apply(clients).await.expect("the step applies");
    (step.verb(), step.detail(), mutating(clients))
}

/// `applied`'s answer for a step that says `verb` of `fields` and sent `mutating` calls.
pub fn said(verb: Verb, fields: &str, mutating: u64) -> (Verb, String, u64) {
    (verb, fields.to_string(), mutating)
}

/// Plans `resource` as the stack wants it (the plan must succeed) and answers as [`applied`].
pub async fn converged<R: Resource + 'static>(
    resource: R,
    clients: &Clients,
) -> (Verb, String, u64) {
    let planned = Planned::wanted(resource, clients)
        .await
        .expect("the plan succeeds");
    applied(&planned, clients).await
}
