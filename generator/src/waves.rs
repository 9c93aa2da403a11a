//! How a rollout's ASGs are split into waves: the canary first, then by strategy.

use crate::config::Strategy;

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
