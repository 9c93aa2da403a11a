//! Why a service refused a role the deploy hands it, and whether waiting can help: a role
//! created or changed seconds ago may not have propagated yet (retry, bounded, and say so),
//! while a role that lacks a permission stays refused (fail at once and say what is missing).

use std::time::Duration;

use generator::iam::LOG_DELIVERY_ACTIONS;

use super::roles::Change;

/// How long a deploy waits for a new or changed role to propagate.
pub const ROLE_PROPAGATION: Duration = Duration::from_secs(60);

/// What this deploy did to a role before handing it to a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoleChanges {
    /// The role was created, or its trust policy rewritten.
    pub trust: bool,
    /// Its inline permission policy was written.
    pub policy: bool,
}

impl RoleChanges {
    /// From what the deploy plans for the role.
    pub fn of(action: &super::Action<Change>) -> Self {
        match action {
            super::Action::Create => Self {
                trust: true,
                policy: true,
            },
            super::Action::Update(changes) => Self {
                trust: changes.contains(&Change::TrustPolicy),
                policy: changes.contains(&Change::InlinePolicy),
            },
            super::Action::Unchanged | super::Action::Delete => Self::default(),
        }
    }
}

/// Why Step Functions answered CreateStateMachine or UpdateStateMachine with
/// `AccessDeniedException` (one code for three causes, told apart by the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatesRefusal {
    /// "Neither the global service principal states.amazonaws.com, nor the regional one is
    /// authorized to assume the provided role": the role is new, or its trust policy does
    /// not admit Step Functions.
    RoleNotAssumable,
    /// "The state machine IAM Role is not authorized to access the Log Destination": the
    /// role's own policy lacks the log-delivery actions on "*" (or was written seconds ago).
    LogDestination,
    /// Anything else, such as the caller's own permissions ("User: ... is not authorized to
    /// perform: states:CreateStateMachine").
    Other,
}

impl StatesRefusal {
    /// Classifies an error by its code, then by its message; `None` when it is no
    /// AccessDeniedException at all.
    pub fn classify(code: Option<&str>, message: Option<&str>) -> Option<Self> {
        if code != Some("AccessDeniedException") {
            return None;
        }
        let message = message.unwrap_or_default().to_ascii_lowercase();
        Some(
            if message.contains("authorized to assume the provided role") {
                Self::RoleNotAssumable
            } else if message.contains("log destination") {
                Self::LogDestination
            } else {
                Self::Other
            },
        )
    }

    /// Why waiting may help, for the progress line; `None` when it cannot.
    pub fn wait_reason(self, role: &str, changes: RoleChanges) -> Option<String> {
        match self {
            Self::RoleNotAssumable if changes.trust => Some(format!(
                "Step Functions cannot assume role {role} yet: it was just created or its trust policy changed, \
                 which takes a few seconds to propagate"
            )),
            Self::RoleNotAssumable => Some(format!(
                "Step Functions cannot assume role {role}: this deploy did not change it, so a recent change \
                 may still be propagating; if this persists, its trust policy does not admit Step Functions"
            )),
            Self::LogDestination if changes.policy => Some(format!(
                "role {role} may not deliver the machine's logs yet: its inline policy was just written, \
                 which takes a few seconds to propagate"
            )),
            Self::LogDestination | Self::Other => None,
        }
    }

    /// What is wrong, for the error of a refusal that waiting does not cure.
    pub fn explain(self, role: &str) -> String {
        match self {
            Self::RoleNotAssumable => {
                format!("Step Functions cannot assume role {role}: its trust policy must admit states for this machine")
            }
            Self::LogDestination => format!(
                "role {role} is not authorized to deliver the machine's logs (a permission error, not \
                 propagation): its policies must allow {} on \"*\" (the rendered states policy does; an \
                 attached policy with a Deny, a permissions boundary or an SCP can take them away)",
                LOG_DELIVERY_ACTIONS.join(", ")
            ),
            Self::Other => "access denied (a permission error of the caller or the role, not propagation)".into(),
        }
    }
}

/// True when Lambda refused a function's role because it cannot assume it (yet): its
/// `InvalidParameterValueException` says "The role defined for the function cannot be
/// assumed by Lambda". Other invalid parameters are the request's own fault.
pub fn lambda_cannot_assume(message: Option<&str>) -> bool {
    message
        .unwrap_or_default()
        .to_ascii_lowercase()
        .contains("cannot be assumed by lambda")
}

/// The next wait: doubling from 2 s, at most 10 s.
pub fn next_delay(delay: Duration) -> Duration {
    (delay * 2).min(Duration::from_secs(10))
}

/// How [`send_waiting_for_role`] gave up.
#[derive(Debug)]
pub enum RoleWait<E> {
    /// Refused for a reason waiting cannot cure.
    Refused(E),
    /// Still refused as propagating after waiting [`ROLE_PROPAGATION`].
    StillRefused(E),
}

/// Sends a create or update until it succeeds, waiting with backoff (2 s doubling, at most
/// 10 s, [`ROLE_PROPAGATION`] in all) while `propagating` says the refusal is a new or changed
/// role that the service cannot use yet (its answer is the progress line's reason, printed
/// after `what: `). Any other refusal is returned at once.
pub async fn send_waiting_for_role<T, E, F, Fut>(
    what: &str,
    mut send: F,
    mut propagating: impl FnMut(&E) -> Option<String>,
) -> Result<T, RoleWait<E>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = std::time::Instant::now();
    let mut delay = Duration::from_secs(2);
    loop {
        let error = match send().await {
            Ok(out) => return Ok(out),
            Err(error) => error,
        };
        let Some(reason) = propagating(&error) else {
            return Err(RoleWait::Refused(error));
        };
        if started.elapsed() + delay >= ROLE_PROPAGATION {
            return Err(RoleWait::StillRefused(error));
        }
        println!("  {what}: {reason}: retrying in {} s", delay.as_secs());
        tokio::time::sleep(delay).await;
        delay = next_delay(delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::Action;

    const ASSUME: &str =
        "Neither the global service principal states.amazonaws.com, nor the regional one is authorized to assume the provided role.";
    const LOGS: &str = "The state machine IAM Role is not authorized to access the Log Destination";
    const CALLER: &str =
        "User: arn:aws:sts::1:assumed-role/ci/x is not authorized to perform: states:CreateStateMachine";

    #[test]
    fn access_denied_is_told_apart_by_its_message() {
        let code = Some("AccessDeniedException");
        assert_eq!(
            StatesRefusal::classify(code, Some(ASSUME)),
            Some(StatesRefusal::RoleNotAssumable)
        );
        assert_eq!(
            StatesRefusal::classify(code, Some(LOGS)),
            Some(StatesRefusal::LogDestination)
        );
        assert_eq!(
            StatesRefusal::classify(code, Some(CALLER)),
            Some(StatesRefusal::Other)
        );
        assert_eq!(
            StatesRefusal::classify(code, None),
            Some(StatesRefusal::Other)
        );
        assert_eq!(
            StatesRefusal::classify(Some("InvalidDefinition"), Some(LOGS)),
            None
        );
    }

    #[test]
    fn only_propagation_is_waited_for() {
        let new = RoleChanges::of(&Action::Create);
        let unchanged = RoleChanges::of(&Action::Unchanged);
        let trust_only = RoleChanges::of(&Action::Update(vec![Change::TrustPolicy]));
        assert!(StatesRefusal::LogDestination
            .wait_reason("r", new)
            .is_some_and(|r| r.contains("just written")));
        assert_eq!(
            StatesRefusal::LogDestination.wait_reason("r", unchanged),
            None
        );
        assert_eq!(
            StatesRefusal::LogDestination.wait_reason("r", trust_only),
            None
        );
        assert!(StatesRefusal::RoleNotAssumable
            .wait_reason("r", trust_only)
            .is_some_and(|r| r.contains("just created")));
        assert!(StatesRefusal::RoleNotAssumable
            .wait_reason("r", unchanged)
            .is_some_and(|r| r.contains("did not change")));
        assert_eq!(StatesRefusal::Other.wait_reason("r", new), None);
        assert!(StatesRefusal::LogDestination
            .explain("r")
            .contains("logs:CreateLogDelivery"));
    }

    #[test]
    fn lambda_retries_only_a_role_it_cannot_assume() {
        assert!(lambda_cannot_assume(Some(
            "The role defined for the function cannot be assumed by Lambda."
        )));
        assert!(!lambda_cannot_assume(Some(
            "Value 100000 at 'memorySize' failed to satisfy constraint"
        )));
        assert!(!lambda_cannot_assume(None));
    }
}
