//! The Lambdas' logic: the planner (targets, pre-checks, waves, lock), the refresher
//! (start, check, approval, cancel, rollback, finish) and the completer (answers a child's
//! wait when its refresh's EventBridge event arrives), with the DynamoDB progress store.

#[cfg(feature = "alarms")]
pub mod alarms;
#[cfg(feature = "refresher")]
pub mod budget;
pub mod clients;
#[cfg(any(feature = "refresher", feature = "completer"))]
pub mod completion;
pub mod error;
pub mod fanout;
#[cfg(feature = "planner")]
pub mod history;
#[cfg(feature = "planner")]
mod image_check;
pub mod lambda;
#[cfg(feature = "notify")]
pub mod notify;
#[cfg(feature = "planner")]
pub mod planner;
#[cfg(feature = "refresher")]
pub mod refresher;
#[cfg(feature = "planner")]
pub mod shapes;
pub mod store;
pub mod telemetry;
pub mod wave_store;

use std::sync::Arc;

pub use error::Error;

/// Seconds since the Unix epoch; tests pass their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    })
}

/// Rollout ids name executions and table items: 1 to 80 of `[A-Za-z0-9_-]`.
pub fn validate_rollout_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 80
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "`{id}` is not a rollout id (1 to 80 of A-Z, a-z, 0-9, - and _)"
        )))
    }
}

/// AMI ids are `ami-` and 8 or 17 hex digits.
pub fn validate_ami(ami: &str) -> Result<(), Error> {
    let hex = ami.strip_prefix("ami-").unwrap_or_default();
    let ok = (hex.len() == 8 || hex.len() == 17)
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "`{ami}` is not an AMI id (ami- and 8 or 17 lowercase hex digits)"
        )))
    }
}

/// Parses a Lambda event into its payload type, or a clear non-retryable error.
pub fn parse_event<T: serde::de::DeserializeOwned>(event: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(event).map_err(|e| Error::InvalidInput(format!("bad event: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_rollout_id("r-20261126-0001").is_ok());
        assert!(validate_rollout_id("").is_err());
        assert!(validate_rollout_id("a b").is_err());
        assert!(validate_ami("ami-0123456789abcdef0").is_ok());
        assert!(validate_ami("ami-12345678").is_ok());
        assert!(validate_ami("ami-XYZ").is_err());
        assert!(validate_ami("0123456789abcdef0").is_err());
    }

    #[test]
    fn errors_carry_the_names_the_state_machine_matches() {
        let d: lambda_runtime::Diagnostic = Error::Locked("x".into()).into();
        assert_eq!(d.error_type, "RolloutLocked");
        let d: lambda_runtime::Diagnostic = Error::Retryable("slow down".into()).into();
        assert_eq!(
            (d.error_type.as_str(), d.error_message.as_str()),
            ("Retryable", "slow down")
        );
        let d: lambda_runtime::Diagnostic =
            parse_event::<generator::payload::PlanRequest>(serde_json::json!({}))
                .unwrap_err()
                .into();
        assert_eq!(d.error_type, "InvalidInput");
    }
}
