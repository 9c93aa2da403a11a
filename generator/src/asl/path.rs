//! JSONPath syntax checks for the ASL path fields (reference paths, paths, context paths).

/// Why a path string is not acceptable where it is used.
pub fn check_reference_path(path: &str) -> Result<(), String> {
    check_path(path, false)
}

/// A `Path` (InputPath, OutputPath, ItemsPath) may also use wildcards, slices and filters;
/// this project only emits reference paths there, so the same rules apply.
pub fn check_path(path: &str, allow_context: bool) -> Result<(), String> {
    let rest = if allow_context && path.starts_with("$$") {
        &path[2..]
    } else if let Some(rest) = path.strip_prefix('$') {
        if rest.starts_with('$') {
            return Err(format!("`{path}` is a context path, not allowed here"));
        }
        rest
    } else {
        return Err(format!("`{path}` does not start with `$`"));
    };
    check_segments(path, rest)
}

fn check_segments(whole: &str, mut rest: &str) -> Result<(), String> {
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() {
                return Err(format!("`{whole}` has an empty field name"));
            }
            if name == "*" || name.contains(['*', '?', '@', '(', ')', ' ', '\'', '"', ']']) {
                return Err(format!(
                    "`{whole}` is not a reference path (field `{name}`)"
                ));
            }
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("`{whole}` has an unclosed `[`"))?;
            let inner = &after[..end];
            let quoted = inner.len() >= 2
                && ((inner.starts_with('\'') && inner.ends_with('\''))
                    || (inner.starts_with('"') && inner.ends_with('"')));
            let index = !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit());
            if !quoted && !index {
                return Err(format!(
                    "`{whole}` is not a reference path (`[{inner}]` is not an index or a quoted name)"
                ));
            }
            rest = &after[end + 1..];
        } else {
            return Err(format!("`{whole}` has an unexpected character after `$`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_reference_paths() {
        for ok in ["$", "$.a", "$.a.b_c", "$.a[0]", "$['a b']", "$.a[12].b"] {
            assert_eq!(check_reference_path(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_path("$$.Map.Item.Value", true), Ok(()));
    }

    #[test]
    fn rejects_what_is_not_a_reference_path() {
        for bad in [
            "",
            "a.b",
            "$.",
            "$..a",
            "$.a[*]",
            "$.a[?(@.x)]",
            "$.*",
            "$a",
            "$.a[",
            "$$.Map",
        ] {
            assert!(check_reference_path(bad).is_err(), "{bad} was accepted");
        }
    }
}
