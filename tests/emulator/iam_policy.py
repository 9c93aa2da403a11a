"""IAM identity-based policy evaluation for the emulator: does a set of policy documents allow
one action on one resource in one request context?

Implements what the rendered policies use and what AWS documents for it, no more and no less
lenient:

* Evaluation: an explicit Deny in any statement wins; otherwise any Allow allows; otherwise the
  request is implicitly denied.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
* Action and NotAction match case-insensitively with `*` and `?` wildcards.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html
* Resource and NotResource match case-sensitively with `*` and `?` wildcards (ARN matching).
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notresource.html
* Conditions: every operator of a statement must hold, every key of an operator must hold, the
  values listed for one key are ORed (NORed for negated operators); a key missing from the
  request context makes a condition false, except negated operators (true), `...IfExists` (true)
  and `Null`. Context keys are case-insensitive.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_multi-value-conditions.html

An operator this module does not know is never guessed: `UnsupportedPolicy` is raised, and the
caller refuses the request saying so.
"""

import fnmatch
import json
import re
from enum import Enum


class Decision(Enum):
    ALLOWED = "allowed"
    IMPLICIT_DENY = "implicit deny"
    EXPLICIT_DENY = "explicit deny"


class UnsupportedPolicy(Exception):
    """A policy uses something the emulator cannot evaluate faithfully."""


def _glob(pattern, value, ignore_case):
    # IAM wildcards are `*` (any run of characters, `:` and `/` included) and `?` (one
    # character); nothing else is special, so brackets are escaped for fnmatch.
    translated = fnmatch.translate(pattern.replace("[", "[[]"))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.match(translated, value, flags) is not None


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _string(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _matches_any(patterns, value, ignore_case):
    return any(_glob(p, value, ignore_case) for p in _as_list(patterns))


def _string_equals(expected, actual):
    return expected == actual


def _string_equals_ignore_case(expected, actual):
    return expected.lower() == actual.lower()


def _string_like(expected, actual):
    return _glob(expected, actual, False)


def _bool(expected, actual):
    return expected.lower() == actual.lower()


def _numeric(compare):
    def check(expected, actual):
        try:
            return compare(float(actual), float(expected))
        except ValueError:
            return False

    return check


# Operator -> (value test, negated). ArnEquals and ArnLike both take wildcards.
_OPERATORS = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (_string_equals_ignore_case, False),
    "StringNotEqualsIgnoreCase": (_string_equals_ignore_case, True),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "ArnEquals": (_string_like, False),
    "ArnLike": (_string_like, False),
    "ArnNotEquals": (_string_like, True),
    "ArnNotLike": (_string_like, True),
    "Bool": (_bool, False),
    "NumericEquals": (_numeric(lambda a, e: a == e), False),
    "NumericNotEquals": (_numeric(lambda a, e: a == e), True),
    "NumericLessThan": (_numeric(lambda a, e: a < e), False),
    "NumericLessThanEquals": (_numeric(lambda a, e: a <= e), False),
    "NumericGreaterThan": (_numeric(lambda a, e: a > e), False),
    "NumericGreaterThanEquals": (_numeric(lambda a, e: a >= e), False),
}


def _condition_holds(operator, key, expected_values, context):
    """One key of one operator against the request context (keys lowercased)."""
    expected = [_string(v) for v in _as_list(expected_values)]
    actual = context.get(key.lower())
    actual = None if actual is None else [_string(v) for v in _as_list(actual)]
    if operator == "Null":
        # Null: true means the key must be absent, false that it must be present.
        want_absent = any(e.lower() == "true" for e in expected)
        return (actual is None) == want_absent
    qualifier = None
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise UnsupportedPolicy(f"condition set operator {qualifier}")
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    if operator not in _OPERATORS:
        raise UnsupportedPolicy(f"condition operator {operator}")
    test, negated = _OPERATORS[operator]
    if actual is None:
        if if_exists:
            return True
        if qualifier == "ForAllValues":
            # An empty set satisfies "all values" (the documented pitfall).
            return True
        return negated
    if qualifier == "ForAllValues":
        return all(any(test(e, a) for e in expected) != negated for a in actual)
    # Single-valued keys and ForAnyValue: some request value matches some policy value.
    matched = any(test(e, a) for e in expected for a in actual)
    return matched != negated


def _conditions_hold(conditions, context):
    for operator, keys in (conditions or {}).items():
        for key, expected in keys.items():
            if not _condition_holds(operator, key, expected, context):
                return False
    return True


def _element_matches(statement, element, value, ignore_case):
    """Whether `value` matches the statement's `element` ("Action", "Resource") or falls outside
    its `Not<element>`; a statement with neither applies to nothing."""
    if element in statement:
        return _matches_any(statement[element], value, ignore_case)
    if "Not" + element in statement:
        return not _matches_any(statement["Not" + element], value, ignore_case)
    return False


def _statement_applies(statement, action, resource, context):
    return (
        _element_matches(statement, "Action", action, True)
        and _element_matches(statement, "Resource", resource, False)
        and _conditions_hold(statement.get("Condition"), context)
    )


def statements(documents):
    """Every statement of the given policy documents (JSON strings or dicts)."""
    out = []
    for document in documents:
        if isinstance(document, str):
            document = json.loads(document)
        out.extend(_as_list(document.get("Statement")))
    return out


def evaluate(policy_statements, action, resource, context):
    """The decision for `action` on `resource`; returns (Decision, the deciding statement's Sid)."""
    context = {k.lower(): v for k, v in (context or {}).items()}
    allowed_by = None
    for statement in policy_statements:
        if not _statement_applies(statement, action, resource, context):
            continue
        if statement.get("Effect") == "Deny":
            return Decision.EXPLICIT_DENY, statement.get("Sid")
        if statement.get("Effect") == "Allow" and allowed_by is None:
            allowed_by = statement.get("Sid") or "(no Sid)"
    if allowed_by is not None:
        return Decision.ALLOWED, allowed_by
    return Decision.IMPLICIT_DENY, None
