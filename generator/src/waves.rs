//! How a rollout's ASGs are split into waves: the canary first, then by strategy; with
//! ordered groups (`[[targets.group]]`), group after group, each with its own batch size.

use crate::config::Strategy;

/// One wave of a plan: its ASGs, the group they belong to (with `[[targets.group]]`) and how
/// many of them may refresh at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    pub asgs: Vec<String>,
    pub group: Option<String>,
    pub batch_size: u32,
}

/// One group's eligible ASGs (in the order given), as [`split_groups`] takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembers {
    pub name: String,
    pub batch_size: u32,
    pub asgs: Vec<String>,
}

/// Splits ordered groups into waves: every wave of a group comes before any wave of the
/// next, and no wave mixes groups. Within a group it is [`split`] with the group's batch
/// size (`batches`: waves of that size; `window`: one wave, whose concurrency is that size).
/// The canary (ASGs of `canary` present in the first group) is the first group's first
/// wave; the planner refuses a canary found in a later group. A group with no ASG left
/// gives no wave.
pub fn split_groups(groups: &[GroupMembers], canary: &[String], strategy: Strategy) -> Vec<Wave> {
    let mut waves = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let canary: &[String] = if i == 0 { canary } else { &[] };
        waves.extend(
            split(&group.asgs, canary, strategy, group.batch_size)
                .into_iter()
                .map(|asgs| Wave {
                    asgs,
                    group: Some(group.name.clone()),
                    batch_size: group.batch_size.max(1),
                }),
        );
    }
    waves
}

/// Splits `asgs` (in the order given) into waves. Canary ASGs present in `asgs` form the
/// first wave; the rest follow in `batch_size` chunks (`batches`) or as one wave that a
/// window of `batch_size` slides over (`window`). No wave is empty.
pub fn split(
    asgs: &[String],
    canary: &[String],
    strategy: Strategy,
    batch_size: u32,
) -> Vec<Vec<String>> {
    let size = batch_size.max(1) as usize;
    let first: Vec<String> = canary
        .iter()
        .filter(|c| asgs.contains(c))
        .cloned()
        .collect();
    let rest: Vec<String> = asgs
        .iter()
        .filter(|a| !first.contains(a))
        .cloned()
        .collect();
    let mut waves = Vec::new();
    if !first.is_empty() {
        waves.push(first);
    }
    match strategy {
        Strategy::Batches => waves.extend(rest.chunks(size).map(|c| c.to_vec())),
        Strategy::Window if !rest.is_empty() => waves.push(rest),
        Strategy::Window => {}
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("asg-{i}")).collect()
    }

    #[test]
    fn batches_put_canary_first_and_chunk_the_rest() {
        let waves = split(&names(7), &["asg-5".to_string()], Strategy::Batches, 3);
        assert_eq!(
            waves,
            vec![
                vec!["asg-5"],
                vec!["asg-1", "asg-2", "asg-3"],
                vec!["asg-4", "asg-6", "asg-7"],
            ]
        );
    }

    #[test]
    fn window_is_one_wave_after_the_canary() {
        let waves = split(
            &names(4),
            &["asg-2".to_string(), "gone".to_string()],
            Strategy::Window,
            2,
        );
        assert_eq!(waves, vec![vec!["asg-2"], vec!["asg-1", "asg-3", "asg-4"]]);
    }

    fn group(name: &str, batch_size: u32, asgs: &[&str]) -> GroupMembers {
        GroupMembers {
            name: name.into(),
            batch_size,
            asgs: asgs.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn shape(waves: &[Wave]) -> Vec<(String, u32, Vec<String>)> {
        waves
            .iter()
            .map(|w| (w.group.clone().unwrap(), w.batch_size, w.asgs.clone()))
            .collect()
    }

    fn row(group: &str, size: u32, asgs: &[&str]) -> (String, u32, Vec<String>) {
        (
            group.into(),
            size,
            asgs.iter().map(|a| a.to_string()).collect(),
        )
    }

    #[test]
    fn groups_run_in_order_in_waves_of_their_own_batch_size() {
        let groups = [
            group("consul", 1, &["c-1", "c-2", "c-3"]),
            group("vault", 2, &["v-1", "v-2", "v-3", "v-4"]),
            group("empty", 5, &[]),
            group("nomad", 3, &["n-1"]),
        ];
        let batches = vec![
            row("consul", 1, &["c-2"]),
            row("consul", 1, &["c-1"]),
            row("consul", 1, &["c-3"]),
            row("vault", 2, &["v-1", "v-2"]),
            row("vault", 2, &["v-3", "v-4"]),
            row("nomad", 3, &["n-1"]),
        ];
        let window = vec![
            row("consul", 1, &["c-2"]),
            row("consul", 1, &["c-1", "c-3"]),
            row("vault", 2, &["v-1", "v-2", "v-3", "v-4"]),
            row("nomad", 3, &["n-1"]),
        ];
        for (strategy, expected) in [(Strategy::Batches, batches), (Strategy::Window, window)] {
            let waves = split_groups(&groups, &["c-2".to_string()], strategy);
            assert_eq!(shape(&waves), expected, "{strategy:?}");
        }
    }

    #[test]
    fn a_canary_outside_the_first_group_makes_no_canary_wave() {
        let groups = [group("a", 2, &["a-1"]), group("b", 2, &["b-1", "b-2"])];
        let waves = split_groups(&groups, &["b-1".to_string()], Strategy::Window);
        assert_eq!(
            shape(&waves),
            vec![row("a", 2, &["a-1"]), row("b", 2, &["b-1", "b-2"])]
        );
    }

    #[test]
    fn nothing_to_do_gives_no_wave() {
        assert!(split(&[], &[], Strategy::Batches, 3).is_empty());
        assert!(split(&[], &[], Strategy::Window, 3).is_empty());
        assert_eq!(
            split(&names(1), &names(1), Strategy::Window, 3),
            vec![vec!["asg-1"]]
        );
    }
}
