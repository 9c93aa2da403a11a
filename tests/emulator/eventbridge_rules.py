"""What EventBridge and Lambda refuse about rules, targets and permissions, and moto 5.2.5 lets
through. Each rule cites its page.

PutRule (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html):
  Name: 1 to 64 characters of [.-_A-Za-z0-9]; EventPattern: at most 4096 characters (the API's
  limit) and at most 2048 by the default "Event pattern size" quota
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html); Description at most
  512 characters.
PutTargets (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutTargets.html):
  target Id: 1 to 64 characters of [.-_A-Za-z0-9]; at most 5 targets per rule ("Targets per
  rule: 5", eb-quota.html above): more is LimitExceededException.
AddPermission (https://docs.aws.amazon.com/lambda/latest/api/API_AddPermission.html):
  a StatementId the function's policy already has is ResourceConflictException; StatementId
  is 1 to 100 characters of ([a-zA-Z0-9-_]+).
"""

import json
import re

from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.responses import LambdaResponse
from moto.core.exceptions import JsonRESTError
from moto.events.models import events_backends
from moto.events.responses import EventsHandler

NAME = re.compile(r"^[\.\-_A-Za-z0-9]+$")
STATEMENT_ID = re.compile(r"^([a-zA-Z0-9-_]+)$")
PATTERN_QUOTA = 2048
PATTERN_MAX = 4096
TARGETS_PER_RULE = 5


class ValidationException(JsonRESTError):
    code = 400

    def __init__(self, message):
        super().__init__("ValidationException", message)


class LimitExceededException(JsonRESTError):
    code = 400

    def __init__(self, message):
        super().__init__("LimitExceededException", message)


class ResourceConflictException(LambdaClientError):
    code = 409

    def __init__(self, message):
        super().__init__("ResourceConflictException", message)


def _constraint(value, field, pattern, maximum):
    if value is None:
        return
    if not 1 <= len(value) <= maximum:
        raise ValidationException(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {maximum}"
        )
    if not pattern.match(value):
        raise ValidationException(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {pattern.pattern.strip('^$')}"
        )


def check_put_rule(name, event_pattern, description):
    _constraint(name, "name", NAME, 64)
    if event_pattern is not None:
        if len(event_pattern) > PATTERN_MAX:
            raise ValidationException(
                f"1 validation error detected: Value at 'eventPattern' failed to satisfy constraint: "
                f"Member must have length less than or equal to {PATTERN_MAX}"
            )
        if len(event_pattern) > PATTERN_QUOTA:
            raise LimitExceededException(
                f"Event pattern is {len(event_pattern)} characters: the quota is {PATTERN_QUOTA}."
            )
    if description is not None and len(description) > 512:
        raise ValidationException(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: "
            "Member must have length less than or equal to 512"
        )


def check_put_targets(response, rule_name, bus, targets):
    for target in targets or []:
        _constraint(target.get("Id"), "targets.member.id", NAME, 64)
    try:
        backend = events_backends[response.current_account][response.region]
        rule = backend.event_buses.get((bus or "default").split("/")[-1]).rules.get(rule_name)
    except Exception:
        rule = None
    if rule is None:
        return  # moto answers ResourceNotFoundException itself
    ids = {t["Id"] for t in rule.targets} | {t.get("Id") for t in targets or []}
    if len(ids) > TARGETS_PER_RULE:
        raise LimitExceededException("The requested resource exceeds the maximum number allowed.")


def _patch_events():
    put_rule = EventsHandler.put_rule
    put_targets = EventsHandler.put_targets

    def checked_put_rule(self):
        check_put_rule(self._get_param("Name"), self._get_param("EventPattern"), self._get_param("Description"))
        return put_rule(self)

    def checked_put_targets(self):
        check_put_targets(self, self._get_param("Rule"), self._get_param("EventBusName"), self._get_param("Targets"))
        return put_targets(self)

    EventsHandler.put_rule = checked_put_rule
    EventsHandler.put_targets = checked_put_targets


def _patch_lambda():
    add_permission = LambdaResponse.add_permission

    def checked_add_permission(self):
        from urllib.parse import unquote

        body = json.loads(self.body or "{}")
        sid = body.get("StatementId")
        if sid is not None and (len(sid) > 100 or not STATEMENT_ID.match(sid)):
            raise LambdaClientError(
                "ValidationException",
                f"1 validation error detected: Value '{sid}' at 'statementId' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)",
            )
        name = unquote(self.path.split("/")[-2])
        qualifier = self.querystring.get("Qualifier", [None])[0]
        function = self.backend.get_function(name, qualifier)
        if sid is not None and any(s.get("Sid") == sid for s in function.policy.statements):
            raise ResourceConflictException(f"The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement.")
        return add_permission(self)

    LambdaResponse.add_permission = checked_add_permission


def install():
    """Hooks the checks into moto (call from server.py's main)."""
    _patch_events()
    _patch_lambda()
