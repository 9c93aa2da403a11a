//! Intrinsic functions (`States.Format(...)` and friends) as typed values.

use std::fmt;

/// One argument of an intrinsic function.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A JSONPath into the state input (or `$$.` into the context object).
    Path(String),
    /// A string literal, escaped on output.
    Str(String),
    /// A number literal.
    Num(f64),
    /// A boolean literal.
    Bool(bool),
    /// `null`.
    Null,
    /// A nested intrinsic call.
    Call(Box<Intrinsic>),
}

impl Arg {
    pub fn path(path: impl Into<String>) -> Self {
        Arg::Path(path.into())
    }

    pub fn str(value: impl Into<String>) -> Self {
        Arg::Str(value.into())
    }
}

impl From<Intrinsic> for Arg {
    fn from(call: Intrinsic) -> Self {
        Arg::Call(Box::new(call))
    }
}

/// The intrinsic functions of the Amazon States Language.
#[derive(Debug, Clone, PartialEq)]
pub enum Intrinsic {
    Format(String, Vec<Arg>),
    StringToJson(Arg),
    JsonToString(Arg),
    Array(Vec<Arg>),
    ArrayPartition(Arg, Arg),
    ArrayContains(Arg, Arg),
    ArrayRange(Arg, Arg, Arg),
    ArrayGetItem(Arg, Arg),
    ArrayLength(Arg),
    ArrayUnique(Arg),
    Base64Encode(Arg),
    Base64Decode(Arg),
    Hash(Arg, Arg),
    JsonMerge(Arg, Arg),
    MathRandom(Arg, Arg),
    MathAdd(Arg, Arg),
    StringSplit(Arg, Arg),
    Uuid,
}

impl Intrinsic {
    /// The function's name as written in ASL.
    pub fn name(&self) -> &'static str {
        match self {
            Intrinsic::Format(..) => "States.Format",
            Intrinsic::StringToJson(..) => "States.StringToJson",
            Intrinsic::JsonToString(..) => "States.JsonToString",
            Intrinsic::Array(..) => "States.Array",
            Intrinsic::ArrayPartition(..) => "States.ArrayPartition",
            Intrinsic::ArrayContains(..) => "States.ArrayContains",
            Intrinsic::ArrayRange(..) => "States.ArrayRange",
            Intrinsic::ArrayGetItem(..) => "States.ArrayGetItem",
            Intrinsic::ArrayLength(..) => "States.ArrayLength",
            Intrinsic::ArrayUnique(..) => "States.ArrayUnique",
            Intrinsic::Base64Encode(..) => "States.Base64Encode",
            Intrinsic::Base64Decode(..) => "States.Base64Decode",
            Intrinsic::Hash(..) => "States.Hash",
            Intrinsic::JsonMerge(..) => "States.JsonMerge",
            Intrinsic::MathRandom(..) => "States.MathRandom",
            Intrinsic::MathAdd(..) => "States.MathAdd",
            Intrinsic::StringSplit(..) => "States.StringSplit",
            Intrinsic::Uuid => "States.UUID",
        }
    }

    /// Every argument, in order (the Format template first, as a string).
    pub fn args(&self) -> Vec<Arg> {
        use Intrinsic::*;
        match self {
            Format(template, rest) => {
                let mut all = vec![Arg::Str(template.clone())];
                all.extend(rest.iter().cloned());
                all
            }
            StringToJson(a) | JsonToString(a) | ArrayLength(a) | ArrayUnique(a)
            | Base64Encode(a) | Base64Decode(a) => vec![a.clone()],
            Array(items) => items.clone(),
            ArrayPartition(a, b)
            | ArrayContains(a, b)
            | ArrayGetItem(a, b)
            | Hash(a, b)
            | JsonMerge(a, b)
            | MathRandom(a, b)
            | MathAdd(a, b)
            | StringSplit(a, b) => {
                vec![a.clone(), b.clone()]
            }
            ArrayRange(a, b, c) => vec![a.clone(), b.clone(), c.clone()],
            Uuid => Vec::new(),
        }
    }

    /// Every JSONPath used by the call, nested calls included.
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for arg in self.args() {
            match arg {
                Arg::Path(p) => out.push(p),
                Arg::Call(inner) => out.extend(inner.paths()),
                _ => {}
            }
        }
        out
    }
}

/// Escapes the characters that are special inside an intrinsic string literal.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\'' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Path(p) => f.write_str(p),
            Arg::Str(s) => write!(f, "'{}'", escape(s)),
            Arg::Num(n) => write!(f, "{n}"),
            Arg::Bool(b) => write!(f, "{b}"),
            Arg::Null => f.write_str("null"),
            Arg::Call(c) => write!(f, "{c}"),
        }
    }
}

impl fmt::Display for Intrinsic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args: Vec<String> = match self {
            // The Format template keeps `{}` placeholders unescaped.
            Intrinsic::Format(template, rest) => {
                let literal = template.replace('\\', "\\\\").replace('\'', "\\'");
                std::iter::once(format!("'{literal}'"))
                    .chain(rest.iter().map(|a| a.to_string()))
                    .collect()
            }
            other => other.args().iter().map(|a| a.to_string()).collect(),
        };
        write!(f, "{}({})", self.name(), args.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_calls() {
        let call = Intrinsic::Format(
            "{}-{}".into(),
            vec![Arg::path("$.a"), Arg::path("$$.Map.Item.Index")],
        );
        assert_eq!(
            call.to_string(),
            "States.Format('{}-{}', $.a, $$.Map.Item.Index)"
        );
        assert_eq!(
            Intrinsic::ArrayPartition(Arg::path("$.asgs"), Arg::Num(3.0)).to_string(),
            "States.ArrayPartition($.asgs, 3)"
        );
        assert_eq!(
            Intrinsic::MathAdd(
                Arg::from(Intrinsic::ArrayLength(Arg::path("$.w"))),
                Arg::Num(-1.0)
            )
            .to_string(),
            "States.MathAdd(States.ArrayLength($.w), -1)"
        );
        assert_eq!(Intrinsic::Uuid.to_string(), "States.UUID()");
        assert_eq!(
            Intrinsic::StringSplit(Arg::path("$.s"), Arg::str("a'b{c}")).to_string(),
            "States.StringSplit($.s, 'a\\'b\\{c\\}')"
        );
        assert_eq!(
            Intrinsic::Array(vec![Arg::Bool(true), Arg::Null, Arg::Num(1.5)]).to_string(),
            "States.Array(true, null, 1.5)"
        );
    }

    #[test]
    fn collects_nested_paths() {
        let call = Intrinsic::JsonMerge(
            Arg::path("$.a"),
            Arg::from(Intrinsic::StringToJson(Arg::path("$.b"))),
        );
        assert_eq!(call.paths(), vec!["$.a".to_string(), "$.b".to_string()]);
    }
}
