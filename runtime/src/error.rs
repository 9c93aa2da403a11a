//! Errors the Lambdas return, named so that the state machine retries or catches them.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::error::operation::BuildError;
use generator::payload::errors;
use lambda_runtime::Diagnostic;

/// Why a handler failed; the variant becomes the error name Step Functions sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Throttling, timeouts, 5xx: retried by the state machine with backoff.
    #[error("{0}")]
    Retryable(String),
    /// Another rollout of this stack holds the lock.
    #[error("{0}")]
    Locked(String),
    /// An ASG's instance refresh ended without success.
    #[error("{0}")]
    RefreshFailed(String),
    /// An ASG's refresh ran past the configured timeout.
    #[error("{0}")]
    TimedOut(String),
    /// A refresh not started by this rollout is running on the ASG.
    #[error("{0}")]
    Conflict(String),
    /// The event is malformed, or the plan cannot run as configured: never retried.
    #[error("{0}")]
    InvalidInput(String),
    /// A `wave_alarms` alarm went to ALARM during the wave or its bake: the wave fails.
    #[error("{0}")]
    WaveAlarm(String),
    /// One ASG more failed than `max_failures` tolerates: its wave fails.
    #[error("{0}")]
    BudgetSpent(String),
    /// Anything else AWS refused (access denied, validation): not retried.
    #[error("{0}")]
    Aws(String),
}

impl Error {
    /// The error name the state machine matches in Retry and Catch.
    pub fn name(&self) -> &'static str {
        match self {
            Error::Retryable(_) => errors::RETRYABLE,
            Error::Locked(_) => errors::ROLLOUT_LOCKED,
            Error::RefreshFailed(_) => errors::REFRESH_FAILED,
            Error::TimedOut(_) => errors::REFRESH_TIMED_OUT,
            Error::Conflict(_) => errors::REFRESH_CONFLICT,
            Error::InvalidInput(_) => errors::INVALID_INPUT,
            Error::WaveAlarm(_) => errors::WAVE_ALARM,
            Error::BudgetSpent(_) => errors::ERROR_BUDGET_SPENT,
            Error::Aws(_) => "AwsError",
        }
    }
}

impl From<Error> for Diagnostic {
    fn from(error: Error) -> Self {
        Diagnostic {
            error_type: error.name().to_string(),
            error_message: error.to_string(),
        }
    }
}

impl From<BuildError> for Error {
    fn from(error: BuildError) -> Self {
        Error::InvalidInput(format!("cannot build request: {error}"))
    }
}

/// Transient error codes the SDK's own classification leaves out: some services answer 400
/// with these for a fault of theirs.
const MORE_TRANSIENT_CODES: [&str; 3] = [
    "RequestLimitExceededException",
    "ServiceUnavailable",
    "InternalError",
];

/// Whether AWS's error `code` is throttling or a transient fault: the SDK's own lists
/// (`aws_runtime::retries::classifiers`, the codes its retry classifier retries), and ours.
pub fn is_transient_code(code: &str) -> bool {
    use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
    THROTTLING_ERRORS
        .iter()
        .chain(TRANSIENT_ERRORS)
        .chain(&MORE_TRANSIENT_CODES)
        .any(|c| *c == code)
}

/// Classifies an SDK error: transport failures, throttling and 5xx are retryable.
pub fn classify<E>(context: &str, error: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Retryable(format!("{context}: {}", describe(&error)))
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let message = service.err().message().unwrap_or_default();
            let status = service.raw().status().as_u16();
            if is_transient_code(code) || status >= 500 {
                Error::Retryable(format!("{context}: {code} {message}"))
            } else {
                Error::Aws(format!("{context}: {code}: {message}"))
            }
        }
        _ => Error::Aws(format!("{context}: {}", describe(&error))),
    }
}

/// The error and its sources on one line.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        source = inner.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn refused(code: &str, status: u16) -> Error {
        let error = GetItemError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let response = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        classify("reading", SdkError::service_error(error, response))
    }

    #[test]
    fn the_sdks_throttling_and_transient_codes_are_retryable() {
        // Codes in the SDK's lists that the hand-written list had missed.
        for code in [
            "SlowDown",
            "EC2ThrottledException",
            "PriorRequestNotComplete",
            "RequestTimeout",
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "InternalError",
        ] {
            assert!(matches!(refused(code, 400), Error::Retryable(_)), "{code}");
        }
    }

    #[test]
    fn a_refusal_is_not_retryable_and_a_5xx_is() {
        assert!(matches!(refused("ValidationException", 400), Error::Aws(_)));
        assert!(matches!(refused("Whatever", 503), Error::Retryable(_)));
    }
}
