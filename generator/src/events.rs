//! EC2 Auto Scaling's instance-refresh events as EventBridge delivers them, and the event
//! pattern of the stack's rule (`completion = "events"`), which `deploy` sends and `render`
//! writes, so that the rule and the completer that reads its events cannot drift apart.
//!
//! Event shapes: "Instance refresh example events and patterns", EC2 Auto Scaling user guide
//! (<https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-eventbridge-events.html>).
//! Every event carries `AutoScalingGroupName` and `InstanceRefreshId` in `detail`; checkpoint
//! events add `CheckpointPercentage` and `CheckpointDelay` (strings in AWS's examples); none
//! carries the status reason. Events are delivered best effort: they may be late, lost,
//! duplicated or out of order.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::config::StackConfig;

/// The `source` of every EC2 Auto Scaling event.
pub const SOURCE: &str = "aws.autoscaling";

/// Longest event pattern a rule takes by default: "The event pattern size is 2048 by
/// default" (EventBridge quotas, <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html>).
/// A pattern naming the targets is used only when it fits.
pub const MAX_EVENT_PATTERN_CHARS: usize = 2048;

/// The instance-refresh events the completer acts on. "Rollback Started" and "Started
/// Baking" are left out of the rule: neither ends a refresh nor says more than the table
/// does, and each would cost a Lambda invocation per ASG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshEventKind {
    /// The refresh is InProgress: without polling, nothing else tells `status` it runs.
    Started,
    /// A checkpoint's percentage of instances was replaced; the refresh pauses.
    CheckpointReached,
    Succeeded,
    Failed,
    Cancelled,
    RollbackSucceeded,
    RollbackFailed,
}

impl RefreshEventKind {
    pub const ALL: [RefreshEventKind; 7] = [
        RefreshEventKind::Started,
        RefreshEventKind::CheckpointReached,
        RefreshEventKind::Succeeded,
        RefreshEventKind::Failed,
        RefreshEventKind::Cancelled,
        RefreshEventKind::RollbackSucceeded,
        RefreshEventKind::RollbackFailed,
    ];

    /// The event's `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            RefreshEventKind::Started => "EC2 Auto Scaling Instance Refresh Started",
            RefreshEventKind::CheckpointReached => {
                "EC2 Auto Scaling Instance Refresh Checkpoint Reached"
            }
            RefreshEventKind::Succeeded => "EC2 Auto Scaling Instance Refresh Succeeded",
            RefreshEventKind::Failed => "EC2 Auto Scaling Instance Refresh Failed",
            RefreshEventKind::Cancelled => "EC2 Auto Scaling Instance Refresh Cancelled",
            RefreshEventKind::RollbackSucceeded => {
                "EC2 Auto Scaling Instance Refresh Rollback Succeeded"
            }
            RefreshEventKind::RollbackFailed => "EC2 Auto Scaling Instance Refresh Rollback Failed",
        }
    }

    pub fn from_detail_type(detail_type: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.detail_type() == detail_type)
    }

    /// The instance refresh status the event reports once the refresh has ended (as
    /// DescribeInstanceRefreshes names it); `None` for a start or a checkpoint.
    pub fn final_status(self) -> Option<crate::payload::AsgStatus> {
        use crate::payload::AsgStatus;
        match self {
            RefreshEventKind::Started | RefreshEventKind::CheckpointReached => None,
            RefreshEventKind::Succeeded => Some(AsgStatus::Successful),
            RefreshEventKind::Failed => Some(AsgStatus::Failed),
            RefreshEventKind::Cancelled => Some(AsgStatus::Cancelled),
            RefreshEventKind::RollbackSucceeded => Some(AsgStatus::RollbackSuccessful),
            RefreshEventKind::RollbackFailed => Some(AsgStatus::RollbackFailed),
        }
    }
}

/// An EventBridge event as the completer receives it (only the fields it reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRefreshEvent {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    #[serde(default)]
    pub time: String,
    pub detail: RefreshEventDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RefreshEventDetail {
    pub auto_scaling_group_name: String,
    pub instance_refresh_id: String,
    /// Checkpoint events only; AWS's examples send it as a string (`"50"`).
    #[serde(
        default,
        deserialize_with = "number_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub checkpoint_percentage: Option<u32>,
    #[serde(
        default,
        deserialize_with = "number_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub checkpoint_delay: Option<u32>,
}

impl InstanceRefreshEvent {
    /// What the event says, if it is one the completer acts on.
    pub fn kind(&self) -> Option<RefreshEventKind> {
        if self.source != SOURCE {
            return None;
        }
        RefreshEventKind::from_detail_type(&self.detail_type)
    }
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a whole number"))),
        Some(other) => Err(serde::de::Error::custom(format!("{other} is not a number"))),
    }
}

/// The rule's event pattern: EC2 Auto Scaling's instance-refresh events of the kinds above,
/// from this account (EventBridge delivers only the account's own events to its default
/// bus), for the targets named in `[targets] asgs` when the targets are only named and the
/// pattern fits [`MAX_EVENT_PATTERN_CHARS`]. Targets found by tag cannot be named in a
/// pattern (events carry no tags), so then every group's refresh events reach the completer,
/// which ignores a group or refresh that the running rollout does not have.
pub fn event_pattern(config: &StackConfig) -> Value {
    let detail_types: Vec<&str> = RefreshEventKind::ALL
        .iter()
        .map(|k| k.detail_type())
        .collect();
    let broad = json!({
        "source": [SOURCE],
        "detail-type": detail_types,
    });
    let targets = &config.targets;
    if targets.asgs.is_empty() || !targets.tags.is_empty() {
        return broad;
    }
    let mut named = broad.clone();
    named["detail"] = json!({ "AutoScalingGroupName": targets.asgs });
    if pattern_text(&named).len() <= MAX_EVENT_PATTERN_CHARS {
        named
    } else {
        broad
    }
}

/// The pattern as PutRule's `EventPattern` string: compact JSON.
pub fn pattern_text(pattern: &Value) -> String {
    pattern.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(targets: &str) -> StackConfig {
        toml::from_str(&format!(
            "name = \"dev\"\nregion = \"eu-west-1\"\naccount_id = \"123456789012\"\n[targets]\n{targets}\n"
        ))
        .unwrap()
    }

    #[test]
    fn named_targets_scope_the_pattern() {
        let pattern = event_pattern(&config("asgs = [\"a\", \"b\"]"));
        assert_eq!(
            pattern,
            json!({
                "source": ["aws.autoscaling"],
                "detail-type": [
                    "EC2 Auto Scaling Instance Refresh Started",
                    "EC2 Auto Scaling Instance Refresh Checkpoint Reached",
                    "EC2 Auto Scaling Instance Refresh Succeeded",
                    "EC2 Auto Scaling Instance Refresh Failed",
                    "EC2 Auto Scaling Instance Refresh Cancelled",
                    "EC2 Auto Scaling Instance Refresh Rollback Succeeded",
                    "EC2 Auto Scaling Instance Refresh Rollback Failed"
                ],
                "detail": {"AutoScalingGroupName": ["a", "b"]}
            })
        );
    }

    #[test]
    fn tags_or_too_many_names_match_every_group() {
        let tagged = event_pattern(&config("asgs = [\"a\"]\ntags = { team = \"web\" }"));
        assert!(tagged.get("detail").is_none(), "{tagged}");
        let names: Vec<String> = (0..40)
            .map(|i| format!("\"{}-{i}\"", "x".repeat(60)))
            .collect();
        let many = event_pattern(&config(&format!("asgs = [{}]", names.join(", "))));
        assert!(many.get("detail").is_none());
        assert!(pattern_text(&many).len() <= MAX_EVENT_PATTERN_CHARS);
    }

    #[test]
    fn events_parse_as_aws_sends_them() {
        let event: InstanceRefreshEvent = serde_json::from_value(json!({
            "version": "0",
            "id": "12345678-1234-1234-1234-123456789012",
            "detail-type": "EC2 Auto Scaling Instance Refresh Checkpoint Reached",
            "source": "aws.autoscaling",
            "account": "123456789012",
            "time": "2026-11-27T17:00:00Z",
            "region": "us-west-2",
            "resources": ["arn"],
            "detail": {
                "InstanceRefreshId": "ab00cf8f-9126-4f3c-8010-dbb8cad6fb86",
                "AutoScalingGroupName": "my-asg",
                "CheckpointPercentage": "50",
                "CheckpointDelay": "300"
            }
        }))
        .unwrap();
        assert_eq!(event.kind(), Some(RefreshEventKind::CheckpointReached));
        assert_eq!(event.detail.checkpoint_percentage, Some(50));
        assert_eq!(event.detail.checkpoint_delay, Some(300));
        let mut other = event.clone();
        other.source = "aws.ec2".into();
        assert_eq!(other.kind(), None);
        for kind in RefreshEventKind::ALL {
            assert_eq!(
                RefreshEventKind::from_detail_type(kind.detail_type()),
                Some(kind)
            );
        }
        assert_eq!(
            RefreshEventKind::from_detail_type(
                "EC2 Auto Scaling Instance Refresh Rollback Started"
            ),
            None
        );
    }
}
