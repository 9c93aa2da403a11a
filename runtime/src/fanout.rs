//! Bounded concurrency for the loops over the fleet that run inside one invocation. At
//! 2,000 ASGs a loop of one AWS call per group, made one after the other, outlasts the
//! function's timeout (runtime/tests/fleet_loops.rs measures each loop); a few calls in
//! flight at once fit it while staying well inside the account's shared API budget, and the
//! SDK's retry policy absorbs the throttling that remains.

use std::future::Future;

use futures_util::stream::{self, StreamExt};

/// Calls in flight at once in one loop.
pub const FLEET_CONCURRENCY: usize = 16;

/// Runs `f` on every item, at most [`FLEET_CONCURRENCY`] at once, and returns every
/// result in the items' order: one item's error neither hides nor cancels the others.
pub async fn map_all<I, T, R, F, Fut>(items: I, f: F) -> Vec<R>
where
    I: IntoIterator<Item = T>,
    F: FnMut(T) -> Fut,
    Fut: Future<Output = R>,
{
    stream::iter(items)
        .map(f)
        .buffered(FLEET_CONCURRENCY)
        .collect()
        .await
}

/// [`map_all`] for fallible steps: every step runs to its end, then the first error (in
/// the items' order) is returned, or every value.
pub async fn try_map_all<I, T, R, E, F, Fut>(items: I, f: F) -> Result<Vec<R>, E>
where
    I: IntoIterator<Item = T>,
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    map_all(items, f).await.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn keeps_order_and_never_exceeds_the_bound() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let out = map_all(0..100u64, |i| {
            let (running, most) = (&running, &most);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Later items finish first: the order must come from the items, not the clock.
                tokio::time::sleep(Duration::from_millis(100 - i)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), FLEET_CONCURRENCY);
    }

    #[tokio::test]
    async fn an_error_waits_for_the_other_steps_and_the_first_one_wins() {
        let finished = AtomicUsize::new(0);
        let result: Result<Vec<u32>, String> = try_map_all(0..40u32, |i| {
            let finished = &finished;
            async move {
                tokio::time::sleep(Duration::from_millis(u64::from(i % 5))).await;
                finished.fetch_add(1, Ordering::SeqCst);
                if i == 7 || i == 30 {
                    Err(format!("step {i}"))
                } else {
                    Ok(i)
                }
            }
        })
        .await;
        assert_eq!(result, Err("step 7".to_string()));
        assert_eq!(
            finished.load(Ordering::SeqCst),
            40,
            "no step is cancelled by another's error"
        );
    }
}
