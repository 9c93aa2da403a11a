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
        self.fields
            .insert(key.to_string(), Field::Literal(value.into()));
        self
    }

    /// Adds a value taken from a path.
    pub fn path(mut self, key: &str, path: &str) -> Self {
        self.fields
            .insert(key.to_string(), Field::Path(path.to_string()));
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

/// Reads a reference path (`$.a.b[0]`, `$['a']`) from `input`, or `$$.` from `context`.
pub fn read_path<'v>(
    path: &str,
    input: &'v Value,
    context: &'v Value,
) -> Result<&'v Value, String> {
    let (mut current, mut rest) = if let Some(rest) = path.strip_prefix("$$") {
        (context, rest)
    } else if let Some(rest) = path.strip_prefix('$') {
        (input, rest)
    } else {
        return Err(format!("`{path}` is not a path"));
    };
    while !rest.is_empty() {
        let (next, remaining) = if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            (current.get(&after[..end]), &after[end..])
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("`{path}` has an unclosed `[`"))?;
            let inner = &after[..end];
            let value = match inner.parse::<usize>() {
                Ok(index) => current.get(index),
                Err(_) => current.get(inner.trim_matches(|c| c == '\'' || c == '"')),
            };
            (value, &after[end + 1..])
        } else {
            return Err(format!("`{path}` is not a reference path"));
        };
        current = next.ok_or_else(|| format!("`{path}` matches nothing in the input"))?;
        rest = remaining;
    }
    Ok(current)
}

impl Template {
    /// What the template becomes for `input` and the context object `context`, as Step
    /// Functions would build it. Intrinsic calls are not evaluated: they are an error here.
    pub fn resolve(&self, input: &Value, context: &Value) -> Result<Value, String> {
        let mut out = serde_json::Map::new();
        for (key, field) in &self.fields {
            let value = match field {
                Field::Literal(v) => v.clone(),
                Field::Path(p) => read_path(p, input, context)
                    .map_err(|e| format!("`{key}`: {e}"))?
                    .clone(),
                Field::Object(inner) => inner.resolve(input, context)?,
                Field::Call(call) => {
                    return Err(format!("`{key}`: {} is not evaluated here", call.name()))
                }
            };
            out.insert(key.clone(), value);
        }
        Ok(Value::Object(out))
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
    fn resolves_paths_against_input_and_context() {
        let t = Template::new()
            .lit("action", "check")
            .path("asg", "$$.Map.Item.Value")
            .object(
                "inner",
                Template::new()
                    .path("first", "$.waves[0][1]")
                    .path("q", "$['a b']"),
            );
        let input = json!({"waves": [["x", "y"]], "a b": 1});
        let context = json!({"Map": {"Item": {"Value": "web"}}});
        assert_eq!(
            t.resolve(&input, &context).unwrap(),
            json!({"action": "check", "asg": "web", "inner": {"first": "y", "q": 1}})
        );
        let missing = Template::new().path("x", "$.nope");
        assert!(missing
            .resolve(&input, &context)
            .unwrap_err()
            .contains("matches nothing"));
    }

    #[test]
    fn serialises_dynamic_keys_with_suffix() {
        let t = Template::new()
            .lit("action", "start")
            .path("asg", "$$.Map.Item.Value")
            .call(
                "label",
                Intrinsic::Format("wave-{}".into(), vec![Arg::path("$.wave")]),
            )
            .object(
                "prefs",
                Template::new().lit("warmup", 300).path("ami", "$.ami"),
            );
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
