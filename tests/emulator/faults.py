"""Fault injection: the emulator throttles a share of the deployer's requests, as a busy account
does, so tests can show that the CLI rides out transient errors.

    POST   /emulator/faults  {"rules": [{"service": "dynamodb", "operations": ["Query", "GetItem"],
                                         "rate": 0.3, "code": "ThrottlingException"}],
                              "seed": 7}
    GET    /emulator/faults  -> {"rules": [...], "seen": {"dynamodb:Query": n}, "injected": {...}}
    DELETE /emulator/faults  removes every rule and clears the counters

`service` is the SigV4 signing name (dynamodb, states, autoscaling, ec2, ...); `operations`
(optional) limits a rule to those API operations; `rate` is the share of matching requests that
fail; `code` defaults to the service's throttling error (DynamoDB and Step Functions
ThrottlingException, Auto Scaling Throttling, EC2 RequestLimitExceeded, Lambda
TooManyRequestsException). `latency_ms` (optional) delays every matching request by that long
before it is served or throttled, for measuring how a loop over a fleet would fare at AWS's
per-call latency (`cargo xtask bench`). Only requests made without role credentials (the deployer's and the
CLI's, not the Lambdas' or the state machine's) are affected: a test throttles what it runs
itself. Throttling errors as AWS sends them:
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
"""

import random
import threading
import time
from collections import Counter

from moto.iam.models import iam_backends

import hooks
import iam_requests
import protocol

_lock = threading.Lock()
_rules = []
_random = random.Random(0)
_seen = Counter()
_injected = Counter()


def _is_role_request(response):
    key = iam_backends[response.current_account]["aws"].access_keys.get(response.get_access_key())
    return key is not None and getattr(key, "role_arn", None) is not None


def _fault(response):
    """None, or the throttling error to answer instead of serving the request."""
    if not _rules:
        return None
    service, operation = iam_requests.operation(response)
    if service is None or _is_role_request(response):
        return None
    name = f"{service}:{operation}"
    with _lock:
        rule = next(
            (r for r in _rules if r["service"] == service and (not r.get("operations") or operation in r["operations"])),
            None,
        )
        if rule is None:
            return None
        _seen[name] += 1
        delay = max(0.0, float(rule.get("latency_ms", 0)) / 1000.0)
        throttled = _random.random() < float(rule.get("rate", 0))
        if throttled:
            _injected[name] += 1
    # Outside the lock: the server is threaded, so concurrent callers wait side by side.
    if delay:
        time.sleep(delay)
    if not throttled:
        return None
    return protocol.throttled(response, service, rule.get("code"))


def _state():
    return {"rules": list(_rules), "seen": dict(_seen), "injected": dict(_injected)}


def _clear():
    _rules.clear()
    _seen.clear()
    _injected.clear()


def _serve(method, environ):
    """GET, POST (new rules) and DELETE /emulator/faults."""
    with _lock:
        if method == "DELETE":
            _clear()
        elif method == "POST":
            try:
                request = hooks.read_json(environ)
                rules = request["rules"]
                if not all(isinstance(r, dict) and r.get("service") for r in rules):
                    raise ValueError("every rule needs a service")
                _clear()
                _rules.extend(rules)
                _random.seed(request.get("seed", 0))
            except (KeyError, TypeError, ValueError) as e:
                return "400 Bad Request", hooks.as_json({"error": f"bad fault rules: {e}"})
        return "200 OK", hooks.as_json(_state())


def _reset():
    with _lock:
        _clear()


def install():
    """Hooks fault injection into moto (call from server.py's main)."""
    hooks.before_action(_fault)
    hooks.route("/emulator/faults", _serve)
    hooks.on_reset(_reset)
