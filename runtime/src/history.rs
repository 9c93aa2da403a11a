//! How long each ASG's refresh took last time, so the planner can start the longest first.
//!
//! A rollout's makespan is set by its tail: with a window of `batch_size`, a 12-minute refresh
//! that starts last keeps the rollout going long after every slot but one has emptied. Started
//! longest first (LPT, "longest processing time"), the last refreshes to start are the short
//! ones and the slots empty together; in `batches`, waves of similar lengths waste the least
//! time waiting for their slowest member. A refresh's length is not known in advance, but the
//! same group refreshes in about the same time each rollout (the same capacity, warmup and
//! health checks), so the planner uses the previous rollout's records.
//!
//! The table keeps one pointer item (`#stack` / `#rollouts`): the rollout planned last
//! (`current`) and the one before it (`previous`). Planning a new rollout moves `current` to
//! `previous`; planning the same rollout again (a resume) leaves both alone. The planner holds
//! the stack lock when it does this, so no two plans race on the pointer. The durations come
//! from one Query of the previous rollout's partition: no Auto Scaling call.

use generator::names::table::{PARTITION_KEY, SORT_KEY};
use std::cmp::Reverse;
use std::collections::HashMap;

use crate::error::{classify, Error};
use crate::store::{get_s, s, Store};

/// Partition key of the stack-wide items that belong to no rollout.
pub const STACK_KEY: &str = "#stack";
/// Sort key of the pointer to the last two rollouts planned.
pub const ROLLOUTS_KEY: &str = "#rollouts";

/// Records `rollout_id` as the rollout planned last and returns how long each ASG's refresh
/// took in the rollout planned before it (seconds, successful refreshes only).
pub async fn previous_durations(
    store: &Store,
    rollout_id: &str,
) -> Result<HashMap<String, i64>, Error> {
    let item = store
        .read_item(STACK_KEY, ROLLOUTS_KEY, "reading the last rollouts")
        .await?;
    let current = item.as_ref().and_then(|i| get_s(i, "current"));
    let previous = if current.as_deref() == Some(rollout_id) {
        // A resume: the pointer already says which rollout came before this one.
        item.as_ref().and_then(|i| get_s(i, "previous"))
    } else {
        let mut put = store
            .client()
            .put_item()
            .table_name(store.table())
            .item(PARTITION_KEY, s(STACK_KEY))
            .item(SORT_KEY, s(ROLLOUTS_KEY))
            .item("current", s(rollout_id));
        if let Some(previous) = &current {
            put = put.item("previous", s(previous));
        }
        put.send()
            .await
            .map_err(|e| classify("recording the rollout planned last", e))?;
        current
    };
    let Some(previous) = previous else {
        return Ok(HashMap::new());
    };
    Ok(store
        .list(&previous)
        .await?
        .into_iter()
        .filter(|r| r.status.is_successful())
        .filter_map(|r| match (r.started_at, r.ended_at) {
            (Some(start), Some(end)) if end >= start => Some((r.asg, end - start)),
            _ => None,
        })
        .collect())
}

/// Orders `asgs` longest refresh first. ASGs with no recorded duration go first (they may
/// be long, and a newcomer is better started early than found at the tail); ties, and a
/// fleet with no history at all, keep name order, so the same fleet gives the same plan.
pub fn longest_first(asgs: &mut [String], durations: &HashMap<String, i64>) {
    asgs.sort_by(|a, b| {
        let key = |asg: &String| Reverse(durations.get(asg).copied().unwrap_or(i64::MAX));
        key(a).cmp(&key(b)).then_with(|| a.cmp(b))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn longest_first_then_by_name() {
        let mut asgs = names(&["a", "b", "c", "d", "e"]);
        let durations = HashMap::from([
            ("a".into(), 60),
            ("b".into(), 600),
            ("c".into(), 60),
            ("e".into(), 300),
        ]);
        longest_first(&mut asgs, &durations);
        // d has no history: first; then 600, 300, and the two 60 s by name.
        assert_eq!(asgs, names(&["d", "b", "e", "a", "c"]));
    }

    #[test]
    fn no_history_keeps_name_order() {
        let mut asgs = names(&["c", "a", "b"]);
        longest_first(&mut asgs, &HashMap::new());
        assert_eq!(asgs, names(&["a", "b", "c"]));
    }
}
