//! Ordered groups of targets (`[[targets.group]]`): each group names its ASGs (names, tags or
//! both) and may set its own `batch_size`; groups run in the order written, a group starting
//! only when every ASG of the one before has ended, all within one rollout and one lock.
//!
//! The rules a config with groups must meet (checked with the rest of the config), and the
//! groups as the Plan task sends them to the planner.
//!
//! - Groups replace the plain `[targets] asgs`/`tags`: a config gives one or the other, never
//!   both (two ways of naming the same targets would leave the order of the plain ones unsaid).
//! - Every group has a unique `name`; `batch_size`, when set, is 1 to [`MAX_BATCH_SIZE`];
//!   without it the group takes `[rollout] batch_size`.
//! - An ASG belongs to one group. A name listed in two groups is a config error naming both;
//!   an ASG that two groups' tags (or a name and a tag) select is a plan error naming both
//!   (tags are only resolved when the rollout is planned). Picking one of the two silently
//!   would refresh it before or after what it depends on.
//! - The canary is the first wave of the first group, so every canary ASG must belong to the
//!   first group, and there may be at most as many as that group's batch size.
//! - A group whose names and tags match no ASG at plan time fails the plan, naming the group.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::{StackConfig, MAX_BATCH_SIZE};
use crate::payload::TargetSpec;

/// One `[[targets.group]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    /// Names the group in the plan, the table and `status` (e.g. `consul`).
    pub name: String,
    #[serde(default)]
    pub asgs: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// ASGs of this group refreshing at once; `[rollout] batch_size` when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
}

impl TargetGroup {
    /// The group's batch size, or the rollout's when it sets none.
    pub fn batch_size_or(&self, rollout_batch_size: u32) -> u32 {
        self.batch_size.unwrap_or(rollout_batch_size)
    }
}

/// A group as the planner receives it: its targets and its batch size, defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    pub targets: TargetSpec,
    pub batch_size: u32,
}

/// The groups of a config, in order, as the Plan task sends them (empty without groups).
pub fn plan_groups(config: &StackConfig) -> Vec<GroupSpec> {
    config
        .targets
        .groups
        .iter()
        .map(|g| GroupSpec {
            name: g.name.clone(),
            targets: TargetSpec {
                asgs: g.asgs.clone(),
                tags: g.tags.clone(),
            },
            batch_size: g.batch_size_or(config.rollout.batch_size),
        })
        .collect()
}

/// Every ASG name the config lists: `[targets] asgs`, then each group's (the Lambda role may
/// refresh exactly these, besides what the tags select).
pub fn all_names(config: &StackConfig) -> impl Iterator<Item = &String> {
    let groups = config.targets.groups.iter().flat_map(|g| g.asgs.iter());
    config.targets.asgs.iter().chain(groups)
}

/// The distinct tag sets of the groups, in order (each gets its own policy statement: tags of
/// one set must all match, and sets are alternatives).
pub fn tag_sets(config: &StackConfig) -> Vec<&BTreeMap<String, String>> {
    let mut sets: Vec<&BTreeMap<String, String>> = Vec::new();
    for group in &config.targets.groups {
        if !group.tags.is_empty() && !sets.contains(&&group.tags) {
            sets.push(&group.tags);
        }
    }
    sets
}

/// Longest group name: it is shown in `status` and recorded with every ASG.
pub const MAX_GROUP_NAME: usize = 64;

fn is_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_GROUP_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Every rule the groups of `config` break, as (dotted key, message).
pub fn problems(config: &StackConfig) -> Vec<(String, String)> {
    let targets = &config.targets;
    let groups = &targets.groups;
    let mut out: Vec<(String, String)> = Vec::new();
    if groups.is_empty() {
        return out;
    }
    if !targets.asgs.is_empty() || !targets.tags.is_empty() {
        out.push((
            "targets.group".into(),
            "give either `[targets] asgs`/`tags` or `[[targets.group]]` tables, not both: with groups, every ASG belongs to a group".into(),
        ));
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    // Which group lists each ASG by name.
    let mut listed: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, group) in groups.iter().enumerate() {
        let at = format!("targets.group[{i}]");
        if !is_group_name(&group.name) {
            out.push((
                format!("{at}.name"),
                format!(
                    "`{}` is not a group name: 1 to {MAX_GROUP_NAME} of a-z, A-Z, 0-9, `-`, `_` and `.`",
                    group.name
                ),
            ));
        }
        if let Some(first) = names.insert(&group.name, i) {
            out.push((
                format!("{at}.name"),
                format!(
                    "group `{}` is defined twice (targets.group[{first}] and targets.group[{i}])",
                    group.name
                ),
            ));
        }
        check_size_and_targets(&at, group, &mut out);
        check_listed_asgs(&at, group, &mut listed, &mut out);
        check_tags(&at, group, &mut out);
    }
    check_canary(config, &mut out);
    out
}

/// A group's batch size is in range, and it names some ASG (by name or by tag).
fn check_size_and_targets(at: &str, group: &TargetGroup, out: &mut Vec<(String, String)>) {
    if let Some(size) = group.batch_size {
        if !(1..=MAX_BATCH_SIZE).contains(&size) {
            out.push((
                format!("{at}.batch_size"),
                format!("must be between 1 and {MAX_BATCH_SIZE} (got {size})"),
            ));
        }
    }
    if group.asgs.is_empty() && group.tags.is_empty() {
        out.push((
            at.to_string(),
            format!(
                "group `{}` names no ASG: give `asgs`, `tags` or both",
                group.name
            ),
        ));
    }
}

/// A group's listed ASGs are ASG names, each in one group and listed once; `listed` says
/// which group listed each ASG so far.
fn check_listed_asgs<'a>(
    at: &str,
    group: &'a TargetGroup,
    listed: &mut BTreeMap<&'a str, &'a str>,
    out: &mut Vec<(String, String)>,
) {
    for (j, asg) in group.asgs.iter().enumerate() {
        let key = format!("{at}.asgs[{j}]");
        if !crate::config::is_asg_name(asg) {
            out.push((
                key.clone(),
                format!("`{asg}` is not an ASG name (1 to 255 characters, no `:`)"),
            ));
        }
        match listed.insert(asg, &group.name) {
            Some(other) if other == group.name => {
                out.push((key, format!("`{asg}` is listed twice in group `{other}`")));
            }
            Some(other) => out.push((
                key,
                format!(
                    "`{asg}` is in groups `{other}` and `{}`: an ASG belongs to one group",
                    group.name
                ),
            )),
            None => {}
        }
    }
}

/// A group's tag filters are valid tag keys and values.
fn check_tags(at: &str, group: &TargetGroup, out: &mut Vec<(String, String)>) {
    for (key, value) in &group.tags {
        if key.is_empty() || key.len() > 128 || key.starts_with("aws:") || value.len() > 256 {
            out.push((
                format!("{at}.tags.{key}"),
                "tag keys are 1 to 128 characters, not starting with `aws:`; values at most 256"
                    .into(),
            ));
        }
    }
}

/// The canary is the first wave of the first group.
fn check_canary(config: &StackConfig, out: &mut Vec<(String, String)>) {
    let groups = &config.targets.groups;
    let Some(first) = groups.first() else {
        return;
    };
    let canary = &config.rollout.canary;
    let first_size = first.batch_size_or(config.rollout.batch_size);
    if canary.len() > first_size as usize && first_size > 0 {
        out.push((
            "rollout.canary".into(),
            format!(
                "{} canary ASGs exceed batch_size {first_size} of the first group `{}`: the canary is that group's first wave",
                canary.len(),
                first.name
            ),
        ));
    }
    let later: BTreeMap<&str, &str> = groups[1..]
        .iter()
        .flat_map(|g| g.asgs.iter().map(move |a| (a.as_str(), g.name.as_str())))
        .collect();
    let first_listed: BTreeSet<&str> = first.asgs.iter().map(String::as_str).collect();
    for (i, name) in canary.iter().enumerate() {
        let key = format!("rollout.canary[{i}]");
        if let Some(group) = later.get(name.as_str()) {
            out.push((
                key,
                format!(
                    "`{name}` is in group `{group}`: canary ASGs must belong to the first group `{}`",
                    first.name
                ),
            ));
        } else if first.tags.is_empty() && !first_listed.contains(name.as_str()) {
            out.push((
                key,
                format!(
                    "`{name}` is not in the first group `{}`: canary ASGs must belong to it",
                    first.name
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse;
    use crate::config::tests::HEAD;

    fn errors(body: &str) -> Vec<(String, String)> {
        let text = format!("{HEAD}{body}");
        match parse(&text, Path::new("dev.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems()
                .iter()
                .map(|p| (p.key.clone(), p.message.clone()))
                .collect(),
        }
    }

    /// `consul` (listed, one at a time), then `vault` (by tag): the stack the rollout machine
    /// tests use too.
    const TWO: &str = include_str!("../tests/fixtures/two_groups.toml");

    #[test]
    fn groups_parse_in_order_with_their_batch_sizes() {
        let config = parse(&format!("{HEAD}{TWO}"), Path::new("dev.toml")).unwrap();
        let groups = super::plan_groups(&config);
        let names: Vec<(&str, u32)> = groups
            .iter()
            .map(|g| (g.name.as_str(), g.batch_size))
            .collect();
        assert_eq!(names, [("consul", 1), ("vault", 3)]);
        assert_eq!(groups[1].targets.tags["role"], "vault");
    }

    #[test]
    fn groups_with_plain_targets_are_refused() {
        let e = errors(&format!("[targets]\nasgs = [\"x\"]\n{TWO}"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "targets.group");
        assert!(e[0].1.contains("not both"), "{e:?}");
    }

    #[test]
    fn a_name_in_two_groups_names_both() {
        let e = errors(&TWO.replace("tags = { \"role\" = \"vault\" }", "asgs = [\"consul-2\"]"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "targets.group[1].asgs[0]");
        assert!(
            e[0].1.contains("`consul`") && e[0].1.contains("`vault`"),
            "{e:?}"
        );
    }

    #[test]
    fn a_listed_name_that_is_no_asg_name_is_refused() {
        for bad in [String::new(), "web:1".to_string(), "w".repeat(256)] {
            let e = errors(&TWO.replace("\"consul-2\"", &format!("{bad:?}")));
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!(e[0].0, "targets.group[0].asgs[1]");
            assert!(e[0].1.contains("is not an ASG name"), "{e:?}");
        }
        assert!(errors(&TWO.replace("\"consul-2\"", &format!("{:?}", "w".repeat(255)))).is_empty());
    }

    #[test]
    fn duplicate_names_zero_batches_and_empty_groups_are_refused() {
        let e = errors(&TWO.replace("\"vault\"\ntags", "\"consul\"\ntags"));
        assert_eq!(e[0].0, "targets.group[1].name", "{e:?}");
        assert!(e[0].1.contains("defined twice"), "{e:?}");
        let e = errors(&TWO.replace("batch_size = 1", "batch_size = 0"));
        assert_eq!(e[0].0, "targets.group[0].batch_size", "{e:?}");
        let e = errors("[[targets.group]]\nname = \"empty\"\n");
        assert_eq!(e[0].0, "targets.group[0]", "{e:?}");
        assert!(e[0].1.contains("names no ASG"), "{e:?}");
        let e = errors("[[targets.group]]\nasgs = [\"a\"]\n");
        assert_eq!(e[0].0, "targets.group[0].name", "{e:?}");
        assert!(e[0].1.contains("missing field"), "{e:?}");
    }

    #[test]
    fn the_lambda_role_may_refresh_every_group_and_nothing_else() {
        let text = format!(
            "{HEAD}{TWO}\n[[targets.group]]\nname = \"nomad\"\ntags = {{ \"role\" = \"nomad\" }}\n"
        );
        let config = parse(&text, Path::new("dev.toml")).unwrap();
        let docs = crate::iam::documents(&config).unwrap();
        let policy = docs
            .iter()
            .find(|d| d.role == "lambda" && d.kind == "policy")
            .unwrap();
        let refresh: Vec<&serde_json::Value> = policy.json["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["Action"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a == "autoscaling:StartInstanceRefresh"))
            })
            .collect();
        let named: Vec<&str> = refresh[0]["Resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().rsplit('/').next().unwrap())
            .collect();
        assert_eq!(named, ["consul-1", "consul-2"]);
        let tags: Vec<&serde_json::Value> = refresh[1..]
            .iter()
            .map(|s| &s["Condition"]["StringEquals"])
            .collect();
        assert_eq!(
            tags,
            [
                &serde_json::json!({"aws:ResourceTag/role": "vault"}),
                &serde_json::json!({"aws:ResourceTag/role": "nomad"})
            ]
        );
    }

    #[test]
    fn the_canary_belongs_to_the_first_group() {
        let ok = format!("{TWO}[rollout]\ncanary = [\"consul-1\"]\n");
        assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
        let e = errors(&format!("{TWO}[rollout]\ncanary = [\"vault-1\"]\n"));
        assert_eq!(e[0].0, "rollout.canary[0]", "{e:?}");
        assert!(e[0].1.contains("first group `consul`"), "{e:?}");
        let e = errors(&format!(
            "{TWO}[rollout]\ncanary = [\"consul-1\", \"consul-2\"]\n"
        ));
        assert_eq!(e[0].0, "rollout.canary", "{e:?}");
        assert!(e[0].1.contains("batch_size 1"), "{e:?}");
    }
}
