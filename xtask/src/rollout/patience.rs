//! How a watcher (`rollout --wait`, `status --watch`) rides out failed reads: transient
//! errors (throttling, timeouts, 5xx, connection errors, as the SDK classifies them) are
//! retried with exponential backoff until they have lasted a set time; any other error stops
//! the watch at once.

use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Minutes of failing reads a watcher accepts by default before it gives up.
pub const DEFAULT_GIVE_UP_MINUTES: u64 = 10;
/// The longest pause between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// An SDK error as a watcher sees it: `runtime`'s classification (transport failures,
/// timeouts, throttling codes and 5xx are `Retryable`), with context.
pub fn classified<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    what: &str,
) -> anyhow::Result<T>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    result.map_err(|e| anyhow::Error::new(runtime::error::classify(what, e)))
}

/// True when the error (or its cause) is one the SDK classified as transient.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<runtime::error::Error>(),
            Some(runtime::error::Error::Retryable(_))
        )
    })
}

/// What to do after a failed read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Wait this long, then read again.
    Retry(Duration),
    /// Stop the watch: the error is not transient, or transient errors have lasted too long.
    GiveUp,
}

/// The state of a watcher's failed reads since its last good one.
#[derive(Debug, Clone)]
pub struct Patience {
    interval: Duration,
    give_up_after: Duration,
    failing_since: Option<Instant>,
    failures: u32,
}

impl Patience {
    /// `interval` is the watcher's normal pause; backoff starts there and doubles.
    pub fn new(interval: Duration, give_up_after: Duration) -> Self {
        Self {
            interval,
            give_up_after,
            failing_since: None,
            failures: 0,
        }
    }

    /// Failed reads in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How long reads have been failing at `now`.
    pub fn failing_for(&self, now: Instant) -> Duration {
        self.failing_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// Records a failed read at `now`; `transient` as [`is_transient`] says.
    pub fn failed(&mut self, transient: bool, now: Instant) -> Verdict {
        let since = *self.failing_since.get_or_insert(now);
        self.failures += 1;
        if !transient || now.saturating_duration_since(since) >= self.give_up_after {
            return Verdict::GiveUp;
        }
        let doublings = (self.failures - 1).min(16);
        let backoff = self
            .interval
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF.max(self.interval));
        // Never sleep past the moment the watcher gives up.
        let left = self
            .give_up_after
            .saturating_sub(now.saturating_duration_since(since));
        Verdict::Retry(backoff.min(left.max(Duration::from_millis(1))))
    }

    /// Records a good read; returns how many failed reads it ends (0 when there were none).
    pub fn succeeded(&mut self) -> u32 {
        self.failing_since = None;
        std::mem::take(&mut self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn transient_errors_back_off_doubling_up_to_a_minute() {
        let start = Instant::now();
        let mut patience = Patience::new(2 * SEC, 600 * SEC);
        let waits: Vec<Verdict> = (0..7)
            .map(|i| patience.failed(true, start + i * SEC))
            .collect();
        assert_eq!(
            waits,
            [2, 4, 8, 16, 32, 60, 60].map(|s| Verdict::Retry(s * SEC)),
            "backoff doubles from the interval and stops at 60 s"
        );
        assert_eq!(patience.failures(), 7);
    }

    #[test]
    fn a_good_read_resets_the_count_and_the_clock() {
        let start = Instant::now();
        let mut patience = Patience::new(SEC, 10 * SEC);
        assert_eq!(patience.failed(true, start), Verdict::Retry(SEC));
        assert_eq!(
            patience.failed(true, start + 8 * SEC),
            Verdict::Retry(2 * SEC)
        );
        assert_eq!(patience.succeeded(), 2);
        // Failing again 20 s later starts a new 10 s budget.
        assert_eq!(patience.failed(true, start + 20 * SEC), Verdict::Retry(SEC));
        assert_eq!(patience.failing_for(start + 25 * SEC), 5 * SEC);
    }

    #[test]
    fn gives_up_when_failures_last_or_are_not_transient() {
        let start = Instant::now();
        let mut patience = Patience::new(SEC, 10 * SEC);
        assert_eq!(patience.failed(true, start), Verdict::Retry(SEC));
        // The last wait ends where the budget does.
        assert_eq!(patience.failed(true, start + 9 * SEC), Verdict::Retry(SEC));
        assert_eq!(patience.failed(true, start + 10 * SEC), Verdict::GiveUp);
        let mut patience = Patience::new(SEC, 10 * SEC);
        assert_eq!(
            patience.failed(false, start),
            Verdict::GiveUp,
            "access denied and the like stop at once"
        );
    }

    #[test]
    fn only_retryable_runtime_errors_are_transient() {
        let throttled = anyhow::Error::new(runtime::error::Error::Retryable(
            "listing the rollout: ThrottlingException".into(),
        ));
        let denied = anyhow::Error::new(runtime::error::Error::Aws(
            "listing the rollout: AccessDeniedException".into(),
        ));
        assert!(is_transient(&throttled.context("reading the rollout")));
        assert!(!is_transient(&denied));
        assert!(
            !is_transient(&anyhow::anyhow!("ThrottlingException")),
            "words are not a classification"
        );
    }
}
