//! What an update of a document changes, shown before it is applied: the state machine's
//! definition and each role's trust and inline policies, as a unified diff of their
//! pretty-printed JSON (keys sorted, so AWS's reordering is no change).

use serde_json::Value;
use similar::TextDiff;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// A unified diff from `current` to `desired`, headed `--- <what> (deployed)` and
/// `+++ <what> (this deploy)`; empty when they are equal.
pub fn json(what: &str, current: &Value, desired: &Value) -> String {
    let (old, new) = (pretty(current), pretty(desired));
    if old == new {
        return String::new();
    }
    TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(CONTEXT)
        .header(
            &format!("{what} (deployed)"),
            &format!("{what} (this deploy)"),
        )
        .to_string()
}

/// A JSON text as pretty JSON with sorted keys; text that is not JSON as it is.
pub fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    text.push('\n');
    text
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_documents_give_no_diff_whatever_the_key_order() {
        let a = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject"}]});
        let b = json!({"Statement": [{"Action": "s3:GetObject", "Effect": "Allow"}], "Version": "2012-10-17"});
        assert_eq!(json("policy", &a, &b), "");
    }

    #[test]
    fn a_changed_field_shows_as_one_removed_and_one_added_line() {
        let a =
            json!({"StartAt": "Plan", "States": {"Plan": {"Type": "Task", "TimeoutSeconds": 60}}});
        let b =
            json!({"StartAt": "Plan", "States": {"Plan": {"Type": "Task", "TimeoutSeconds": 90}}});
        let diff = json("definition", &a, &b);
        assert!(
            diff.starts_with("--- definition (deployed)\n+++ definition (this deploy)\n"),
            "{diff}"
        );
        let removed: Vec<&str> = diff
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
            .collect();
        let added: Vec<&str> = diff
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .collect();
        assert_eq!(removed, vec!["-      \"TimeoutSeconds\": 60,"], "{diff}");
        assert_eq!(added, vec!["+      \"TimeoutSeconds\": 90,"], "{diff}");
    }
}
