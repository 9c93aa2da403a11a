"""How AWS requests and answers look, for the emulator's modules: list parameters whatever the
protocol, a page of a paginated answer, and each service's errors for a refused and a throttled
request.

Access denied, by service:
  EC2: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html (UnauthorizedOperation)
  Auto Scaling, IAM, STS, ELB (query APIs): https://docs.aws.amazon.com/autoscaling/ec2/APIReference/CommonErrors.html
  JSON APIs: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html
Throttling, by service (DynamoDB and Step Functions ThrottlingException, Auto Scaling Throttling,
EC2 RequestLimitExceeded, Lambda TooManyRequestsException):
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
"""

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult

_DENIED_JSON = ("AccessDeniedException", 400)
_THROTTLED_JSON = ("ThrottlingException", 400)

# Service (SigV4 signing name) -> ((access-denied code, HTTP status), (throttling code, HTTP status)).
_ERRORS = {
    "autoscaling": (("AccessDenied", 403), ("Throttling", 400)),
    "ec2": (("UnauthorizedOperation", 403), ("RequestLimitExceeded", 503)),
    "iam": (("AccessDenied", 403), _THROTTLED_JSON),
    "sts": (("AccessDenied", 403), _THROTTLED_JSON),
    "elasticloadbalancing": (("AccessDenied", 403), _THROTTLED_JSON),
    "lambda": (("AccessDeniedException", 403), ("TooManyRequestsException", 429)),
    "dynamodb": (_DENIED_JSON, ("ThrottlingException", 400)),
    "states": (_DENIED_JSON, ("ThrottlingException", 400)),
}


class _ServiceError(ServiceException):
    pass


def error_answer(response, code, status, message):
    """An error in the request's protocol, with the request ids every answer carries (Step
    Functions' interpreter reads them): (status, headers, body)."""
    _, headers, body = response.serialized(ActionResult(_ServiceError(code, message)))
    headers["status"] = str(status)
    headers, body = response._enrich_response(headers, body)
    return status, headers, body


def access_denied(response, service, message):
    """The service's access-denied error."""
    code, status = _ERRORS.get(service, (_DENIED_JSON, None))[0]
    return error_answer(response, code, status, message)


def throttled(response, service, code=None):
    """The service's throttling error (`code` instead of its usual code when given)."""
    usual, status = _ERRORS.get(service, (None, _THROTTLED_JSON))[1]
    return error_answer(response, code or usual, status, "Rate exceeded (emulator fault injection)")


def members(value):
    """A list parameter, whether parsed as a list or as query-protocol `member` (or EC2 `item`)
    entries."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        inner = value.get("member", value.get("item", value))
        if isinstance(inner, list):
            return inner
        if isinstance(inner, dict):
            return [inner[k] for k in sorted(inner, key=lambda k: int(k) if str(k).isdigit() else 0)]
    return [value]


def page(items, offset, limit, key):
    """`{key: items[offset:offset + limit]}`, with the NextToken of the next page if there is one."""
    result = {key: items[offset : offset + limit]}
    if offset + limit < len(items):
        result["NextToken"] = str(offset + limit)
    return result
