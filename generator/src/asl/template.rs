//! Payload templates: the JSON objects of Parameters, ItemSelector and ResultSelector,
//! where a key ending in `.$` takes its value from a path or an intrinsic function.

use indexmap::IndexMap;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::intrinsic::Intrinsic;

/// One value in a payload template.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A constant JSON value.
    Literal(Value),
    /// A path into the state input (`$.x`) or the context object (`$$.x`).
    Path(String),
    /// An intrinsic function call.
    Call(Intrinsic),
    /// A nested template.
    Object(Template),
}

/// An ordered payload template.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    fields: IndexMap<String, Field>,
}

impl Template {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a constant value.
    pub fn lit(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_string(), Field::Literal(value.into()));
        self
    }

    /// Adds a value taken from a path.
    pub fn path(mut self, key: &str, path: &str) -> Self {
        self.fields.insert(key.to_string(), Field::Path(path.to_string()));
        self
    }

    /// Adds a value computed by an intrinsic function.
    pub fn call(mut self, key: &str, call: Intrinsic) -> Self {
        self.fields.insert(key.to_string(), Field::Call(call));
        self
    }

    /// Adds a nested template.
    pub fn object(mut self, key: &str, inner: Template) -> Self {
        self.fields.insert(key.to_string(), Field::Object(inner));
        self
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &Field)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Every path the template reads, with the key that reads it (nested keys joined by `.`).
    pub fn paths(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, field) in &self.fields {
            match field {
                Field::Path(p) => out.push((key.clone(), p.clone())),
                Field::Call(c) => out.extend(c.paths().into_iter().map(|p| (key.clone(), p))),
                Field::Object(inner) => out.extend(
                    inner
                        .paths()
                        .into_iter()
                        .map(|(k, p)| (format!("{key}.{k}"), p)),
                ),
                Field::Literal(_) => {}
            }
        }
        out
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, field) in &self.fields {
            match field {
                Field::Literal(v) => map.serialize_entry(key, v)?,
                Field::Object(inner) => map.serialize_entry(key, inner)?,
                Field::Path(p) => map.serialize_entry(&format!("{key}.$"), p)?,
                Field::Call(c) => map.serialize_entry(&format!("{key}.$"), &c.to_string())?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asl::intrinsic::Arg;
    use serde_json::json;

    #[test]
    fn serialises_dynamic_keys_with_suffix() {
        let t = Template::new()
            .lit("action", "start")
            .path("asg", "$$.Map.Item.Value")
            .call("label", Intrinsic::Format("wave-{}".into(), vec![Arg::path("$.wave")]))
            .object("prefs", Template::new().lit("warmup", 300).path("ami", "$.ami"));
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            json!({
                "action": "start",
                "asg.$": "$$.Map.Item.Value",
                "label.$": "States.Format('wave-{}', $.wave)",
                "prefs": {"warmup": 300, "ami.$": "$.ami"}
            })
        );
        assert_eq!(
            t.paths(),
            vec![
                ("asg".to_string(), "$$.Map.Item.Value".to_string()),
                ("label".to_string(), "$.wave".to_string()),
                ("prefs.ami".to_string(), "$.ami".to_string()),
            ]
        );
    }
}
