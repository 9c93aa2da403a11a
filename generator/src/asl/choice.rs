//! Choice rules: boolean combinators and the data-test comparison operators.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// One comparison operator with its operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    StringEquals(String),
    StringEqualsPath(String),
    StringLessThan(String),
    StringLessThanPath(String),
    StringGreaterThan(String),
    StringGreaterThanPath(String),
    StringLessThanEquals(String),
    StringLessThanEqualsPath(String),
    StringGreaterThanEquals(String),
    StringGreaterThanEqualsPath(String),
    StringMatches(String),
    NumericEquals(f64),
    NumericEqualsPath(String),
    NumericLessThan(f64),
    NumericLessThanPath(String),
    NumericGreaterThan(f64),
    NumericGreaterThanPath(String),
    NumericLessThanEquals(f64),
    NumericLessThanEqualsPath(String),
    NumericGreaterThanEquals(f64),
    NumericGreaterThanEqualsPath(String),
    BooleanEquals(bool),
    BooleanEqualsPath(String),
    TimestampEquals(String),
    TimestampEqualsPath(String),
    TimestampLessThan(String),
    TimestampLessThanPath(String),
    TimestampGreaterThan(String),
    TimestampGreaterThanPath(String),
    TimestampLessThanEquals(String),
    TimestampLessThanEqualsPath(String),
    TimestampGreaterThanEquals(String),
    TimestampGreaterThanEqualsPath(String),
    IsNull(bool),
    IsPresent(bool),
    IsNumeric(bool),
    IsString(bool),
    IsBoolean(bool),
    IsTimestamp(bool),
}

macro_rules! comparison_parts {
    ($value:expr; str: $($s:ident),*; num: $($n:ident),*; boolean: $($b:ident),*) => {
        match $value {
            $(Comparison::$s(v) => (stringify!($s), Value::from(v.clone())),)*
            $(Comparison::$n(v) => (stringify!($n), number(*v)),)*
            $(Comparison::$b(v) => (stringify!($b), Value::from(*v)),)*
        }
    };
}

fn number(value: f64) -> Value {
    // Whole numbers print as integers so `NumericEquals: 3` is not `3.0`.
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        Value::from(value as i64)
    } else {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

impl Comparison {
    /// The operator's ASL name and its operand as JSON.
    pub fn parts(&self) -> (&'static str, Value) {
        comparison_parts!(self;
            str: StringEquals, StringEqualsPath, StringLessThan, StringLessThanPath,
                StringGreaterThan, StringGreaterThanPath, StringLessThanEquals,
                StringLessThanEqualsPath, StringGreaterThanEquals, StringGreaterThanEqualsPath,
                StringMatches, NumericEqualsPath, NumericLessThanPath, NumericGreaterThanPath,
                NumericLessThanEqualsPath, NumericGreaterThanEqualsPath, BooleanEqualsPath,
                TimestampEquals, TimestampEqualsPath, TimestampLessThan, TimestampLessThanPath,
                TimestampGreaterThan, TimestampGreaterThanPath, TimestampLessThanEquals,
                TimestampLessThanEqualsPath, TimestampGreaterThanEquals,
                TimestampGreaterThanEqualsPath;
            num: NumericEquals, NumericLessThan, NumericGreaterThan, NumericLessThanEquals,
                NumericGreaterThanEquals;
            boolean: BooleanEquals, IsNull, IsPresent, IsNumeric, IsString, IsBoolean, IsTimestamp)
    }

    /// The operand when it is a path (the `...Path` operators).
    pub fn operand_path(&self) -> Option<String> {
        let (name, value) = self.parts();
        match value {
            Value::String(s) if name.ends_with("Path") => Some(s),
            _ => None,
        }
    }
}

/// A Choice condition: a data test on one variable, or a boolean combination.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    /// A test of `variable`; valid only with exactly one comparator, which the
    /// builders guarantee and [`crate::asl::validate`] checks.
    Test {
        variable: String,
        comparators: Vec<Comparison>,
    },
}

impl Condition {
    /// A test of `variable` with one comparator.
    pub fn test(variable: &str, comparison: Comparison) -> Self {
        Condition::Test {
            variable: variable.to_string(),
            comparators: vec![comparison],
        }
    }

    pub fn and(all: Vec<Condition>) -> Self {
        Condition::And(all)
    }

    pub fn or(any: Vec<Condition>) -> Self {
        Condition::Or(any)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn not(inner: Condition) -> Self {
        Condition::Not(Box::new(inner))
    }

    fn write_fields<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        match self {
            Condition::And(all) => map.serialize_entry("And", all),
            Condition::Or(any) => map.serialize_entry("Or", any),
            Condition::Not(inner) => map.serialize_entry("Not", inner),
            Condition::Test {
                variable,
                comparators,
            } => {
                map.serialize_entry("Variable", variable)?;
                for comparison in comparators {
                    let (name, value) = comparison.parts();
                    map.serialize_entry(name, &value)?;
                }
                Ok(())
            }
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.write_fields(&mut map)?;
        map.end()
    }
}

/// A top-level Choice rule: a condition and the state to go to when it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceRule {
    pub condition: Condition,
    pub next: String,
    pub comment: Option<String>,
}

impl ChoiceRule {
    pub fn new(condition: Condition, next: &str) -> Self {
        Self {
            condition,
            next: next.to_string(),
            comment: None,
        }
    }
}

impl Serialize for ChoiceRule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.condition.write_fields(&mut map)?;
        if let Some(comment) = &self.comment {
            map.serialize_entry("Comment", comment)?;
        }
        map.serialize_entry("Next", &self.next)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_of<T: Serialize>(value: &T) -> Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn each_operator_serialises_with_its_operand() {
        let cases = [
            (
                Comparison::StringEquals("a".into()),
                json!({"Variable": "$.v", "StringEquals": "a"}),
            ),
            (
                Comparison::StringEqualsPath("$.w".into()),
                json!({"Variable": "$.v", "StringEqualsPath": "$.w"}),
            ),
            (
                Comparison::StringMatches("web-*".into()),
                json!({"Variable": "$.v", "StringMatches": "web-*"}),
            ),
            (
                Comparison::StringLessThan("m".into()),
                json!({"Variable": "$.v", "StringLessThan": "m"}),
            ),
            (
                Comparison::StringGreaterThanEquals("m".into()),
                json!({"Variable": "$.v", "StringGreaterThanEquals": "m"}),
            ),
            (
                Comparison::NumericEquals(3.0),
                json!({"Variable": "$.v", "NumericEquals": 3}),
            ),
            (
                Comparison::NumericLessThan(2.5),
                json!({"Variable": "$.v", "NumericLessThan": 2.5}),
            ),
            (
                Comparison::NumericGreaterThanEqualsPath("$.n".into()),
                json!({"Variable": "$.v", "NumericGreaterThanEqualsPath": "$.n"}),
            ),
            (
                Comparison::NumericEqualsPath("$.n".into()),
                json!({"Variable": "$.v", "NumericEqualsPath": "$.n"}),
            ),
            (
                Comparison::BooleanEquals(true),
                json!({"Variable": "$.v", "BooleanEquals": true}),
            ),
            (
                Comparison::BooleanEqualsPath("$.b".into()),
                json!({"Variable": "$.v", "BooleanEqualsPath": "$.b"}),
            ),
            (
                Comparison::TimestampLessThan("2026-01-01T00:00:00Z".into()),
                json!({"Variable": "$.v", "TimestampLessThan": "2026-01-01T00:00:00Z"}),
            ),
            (
                Comparison::TimestampGreaterThanPath("$.t".into()),
                json!({"Variable": "$.v", "TimestampGreaterThanPath": "$.t"}),
            ),
            (
                Comparison::IsPresent(false),
                json!({"Variable": "$.v", "IsPresent": false}),
            ),
            (
                Comparison::IsNull(true),
                json!({"Variable": "$.v", "IsNull": true}),
            ),
            (
                Comparison::IsNumeric(true),
                json!({"Variable": "$.v", "IsNumeric": true}),
            ),
            (
                Comparison::IsString(true),
                json!({"Variable": "$.v", "IsString": true}),
            ),
            (
                Comparison::IsBoolean(true),
                json!({"Variable": "$.v", "IsBoolean": true}),
            ),
            (
                Comparison::IsTimestamp(true),
                json!({"Variable": "$.v", "IsTimestamp": true}),
            ),
        ];
        for (comparison, expected) in cases {
            assert_eq!(json_of(&Condition::test("$.v", comparison)), expected);
        }
    }

    #[test]
    fn combinators_nest() {
        let rule = ChoiceRule::new(
            Condition::and(vec![
                Condition::test("$.done", Comparison::BooleanEquals(true)),
                Condition::not(Condition::or(vec![
                    Condition::test("$.s", Comparison::StringEquals("Failed".into())),
                    Condition::test("$.s", Comparison::StringEquals("Cancelled".into())),
                ])),
            ]),
            "Done",
        );
        assert_eq!(
            json_of(&rule),
            json!({
                "And": [
                    {"Variable": "$.done", "BooleanEquals": true},
                    {"Not": {"Or": [
                        {"Variable": "$.s", "StringEquals": "Failed"},
                        {"Variable": "$.s", "StringEquals": "Cancelled"}
                    ]}}
                ],
                "Next": "Done"
            })
        );
    }

    #[test]
    fn operand_path_only_for_path_operators() {
        assert_eq!(
            Comparison::StringEqualsPath("$.x".into()).operand_path(),
            Some("$.x".into())
        );
        assert_eq!(Comparison::StringEquals("$.x".into()).operand_path(), None);
    }
}
