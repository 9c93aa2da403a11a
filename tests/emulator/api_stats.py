"""Counts of the emulator's work: every API request by `service:Operation` and by caller, the
Auto Scaling requests per group, and the Lambda invocations per function, so a bench can say
what a rollout cost (DescribeInstanceRefreshes per ASG, invocations per ASG, ...).

    GET    /emulator/stats  -> {"calls": {"autoscaling:DescribeInstanceRefreshes": n, ...},
                                "by_caller": {"<role>/<session>" | "deployer": {"service:Op": n}},
                                "by_asg": {"DescribeInstanceRefreshes": {"<asg>": n}, ...},
                                "lambda_invocations": {"<function>": n},
                                "lambda_seconds": {"<function>": s},
                                "events": {the counters of GET /emulator/events, without its log},
                                "executions": {"<root execution arn>": {"events", "transitions",
                                  "children": [{"index", "events", "transitions"}]}}}
    DELETE /emulator/stats  clears every counter here, the events' counters and log, and the
                            executions' counts (stepfunctions_limits.py)

A request counts once per HTTP request received, refused ones (IAM, throttling) included, as
AWS counts them against the account's rate limits. A Lambda's calls are made with its role's
credentials and session name = the function's name, so `by_caller` tells the functions apart;
the state machine's own calls come as "<role>/states-execution"; calls with plain keys (the
deployer, the CLI, tests) as "deployer". Lambda invocations are counted where every invocation
runs (Step Functions Tasks, Invoke, EventBridge deliveries).
"""

import threading
import time
from collections import Counter, defaultdict

from moto.awslambda.models import LambdaFunction

import hooks
import iam_enforcement
import iam_requests
import refresh_events
import stepfunctions_limits

_lock = threading.Lock()
_calls = Counter()
_by_caller = defaultdict(Counter)
_by_asg = defaultdict(Counter)
_invocations = Counter()
_seconds = Counter()


def _caller(response):
    try:
        caller = iam_enforcement._caller_role(response)
    except Exception:
        caller = None
    if caller is None:
        return "deployer"
    _, caller_arn = caller
    # arn:aws:sts::<account>:assumed-role/<role>/<session>
    return caller_arn.split(":assumed-role/")[-1]


def _record(response):
    service, operation = iam_requests.operation(response)
    if service is None:
        return
    name = f"{service}:{operation}"
    caller = _caller(response)
    asg = None
    if service == "autoscaling":
        try:
            asg = iam_requests.params(response).get("AutoScalingGroupName")
        except Exception:
            asg = None
    with _lock:
        _calls[name] += 1
        _by_caller[caller][name] += 1
        if isinstance(asg, str):
            _by_asg[operation][asg] += 1


def _count(response):
    """Counts the request and lets moto serve it (a failure to count never refuses it)."""
    try:
        _record(response)
    except Exception:
        pass
    return None


def _patch_lambda():
    original = LambdaFunction._invoke_lambda

    def invoke(self, event=None):
        started = time.monotonic()
        try:
            return original(self, event)
        finally:
            with _lock:
                _invocations[self.function_name] += 1
                _seconds[self.function_name] += time.monotonic() - started

    LambdaFunction._invoke_lambda = invoke


def clear():
    with _lock:
        _calls.clear()
        _by_caller.clear()
        _by_asg.clear()
        _invocations.clear()
        _seconds.clear()


def state():
    with _lock:
        out = {
            "calls": dict(sorted(_calls.items())),
            "by_caller": {k: dict(sorted(v.items())) for k, v in sorted(_by_caller.items())},
            "by_asg": {k: dict(sorted(v.items())) for k, v in sorted(_by_asg.items())},
            "lambda_invocations": dict(sorted(_invocations.items())),
            "lambda_seconds": {k: round(v, 3) for k, v in sorted(_seconds.items())},
        }
    out["events"] = refresh_events.summary()
    out["executions"] = stepfunctions_limits.executions()
    return out


def _serve(method, _environ):
    """GET and DELETE /emulator/stats."""
    if method == "DELETE":
        clear()
        refresh_events.clear_counters()
        stepfunctions_limits.clear_executions()
    return "200 OK", hooks.as_json(state())


def install():
    """Hooks the counters into moto. Call from server.py's main after every other patch of
    `call_action` and `_invoke_lambda`, so that this one sees every request first."""
    hooks.before_action(_count)
    _patch_lambda()
    hooks.route("/emulator/stats", _serve)
    hooks.on_reset(clear)
