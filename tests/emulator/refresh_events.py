"""EventBridge events of EC2 Auto Scaling instance refreshes, delivered through moto's rules to
Lambda targets, best effort, with a settable delay, loss and duplication.

The events are the ones EC2 Auto Scaling sends to the account's default event bus (source
`aws.autoscaling`, `detail` with `InstanceRefreshId` and `AutoScalingGroupName`, checkpoint
events add `CheckpointPercentage` and `CheckpointDelay` as strings; "Events are produced on a
best-effort basis"):
  https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-eventbridge-events.html
  https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-autoscaling.html
server.py calls `emit` on each transition: Pending -> InProgress (Started), a checkpoint passed
(Checkpoint Reached), Successful (Succeeded), Failed, Cancelled, a rollback requested (Rollback
Started), RollbackSuccessful (Rollback Succeeded), RollbackFailed (Rollback Failed).

Each event is matched against the ENABLED rules of the default event bus with moto's own
pattern matcher; for each Lambda target of each matching rule it is dropped (share `loss`),
or delivered after `delay_ms` (+ a uniform `jitter_ms`, so events may arrive out of order) and,
for a share `duplicate`, delivered a second time, as EventBridge may ("at least once"). A
delivery runs the function asynchronously in the emulator's Lambda process pool (server.py's
`_invoke_lambda`), only if the function's resource-based policy lets events.amazonaws.com
invoke it for that rule (lambda:InvokeFunction, conditions on aws:SourceArn/aws:SourceAccount);
otherwise it is not delivered and counted `denied` (FailedInvocations on AWS):
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-lambda-permissions
A function error is retried twice, `retry_delay_ms` apart (Lambda retries an asynchronous
invocation's function error twice, after about 1 and 2 minutes on AWS):
  https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html

Routes:
    POST   /emulator/events  {"delay_ms": 0, "jitter_ms": 0, "loss": 0.0, "duplicate": 0.0,
                              "retry_delay_ms": 1000, "seed": 0}   settings (omitted keys: defaults)
    GET    /emulator/events  -> {"settings", "emitted", "by_detail_type", "by_rule": {rule name:
                                 {"matched", "dropped", "duplicated", "delivered", "denied",
                                  "no_function", "invocations", "errors"}},
                                 "pending", "log": [{"id", "detail-type", "asg", "refresh_id", "t",
                                 "wall", "deliveries": [{"rule", "target", "outcome", "due",
                                 "invoked", "done", "attempts", "errored"}]}], "now"}
    DELETE /emulator/events  clears the counters and the log (the settings stay)
`t`, `due`, `invoked` and `done` are the server's `time.monotonic()` seconds, as in the refresh
log. `/moto-api/reset` also drops undelivered events and restores the default settings.
"""

import datetime
import fnmatch
import heapq
import itertools
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

from moto.events.models import events_backends

import hooks

SOURCE = "aws.autoscaling"
PREFIX = "EC2 Auto Scaling Instance Refresh "
STARTED = PREFIX + "Started"
CHECKPOINT = PREFIX + "Checkpoint Reached"
ROLLBACK_STARTED = PREFIX + "Rollback Started"
# The end status of a refresh -> its event's detail-type.
END_EVENTS = {
    "Successful": PREFIX + "Succeeded",
    "Failed": PREFIX + "Failed",
    "Cancelled": PREFIX + "Cancelled",
    "RollbackSuccessful": PREFIX + "Rollback Succeeded",
    "RollbackFailed": PREFIX + "Rollback Failed",
}

DEFAULT_SETTINGS = {"delay_ms": 0, "jitter_ms": 0, "loss": 0.0, "duplicate": 0.0, "retry_delay_ms": 1000, "seed": 0}
# Lambda retries a function error of an asynchronous invocation twice.
ASYNC_RETRIES = 2
DELIVERY_THREADS = 16
RULE_COUNTERS = ("matched", "dropped", "duplicated", "delivered", "denied", "no_function", "invocations", "errors")

_lock = threading.Condition()
_settings = dict(DEFAULT_SETTINGS)
_random = random.Random(0)
_heap = []  # (due, seq, kind, item, generation)
_seq = itertools.count()
_generation = 0
_emitted = 0
_by_detail_type = Counter()
_by_rule = defaultdict(Counter)
_log = []
_executor = ThreadPoolExecutor(max_workers=DELIVERY_THREADS, thread_name_prefix="event-delivery")


def emit(account, region, asg, group_arn, refresh_id, detail_type, t, extra=None):
    """Queues one instance-refresh event that happened at monotonic time `t` (never blocks)."""
    detail = {"InstanceRefreshId": refresh_id, "AutoScalingGroupName": asg}
    detail.update(extra or {})
    wall = time.time() - (time.monotonic() - t)
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": SOURCE,
        "account": account,
        "time": datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [group_arn] if group_arn else [],
        "detail": detail,
    }
    entry = {
        "id": event["id"],
        "detail-type": detail_type,
        "asg": asg,
        "refresh_id": refresh_id,
        "t": t,
        "wall": wall,
        "deliveries": [],
        "event": event,
    }
    global _emitted
    with _lock:
        _emitted += 1
        _by_detail_type[detail_type] += 1
        _log.append(entry)
        heapq.heappush(_heap, (t, next(_seq), "route", entry, _generation))
        _lock.notify()


def _rules(account, region):
    """The ENABLED rules of the default event bus: [(rule name, rule ARN, pattern, targets)]."""
    try:
        bus = events_backends[account][region].event_buses.get("default")
    except Exception:
        return []
    if bus is None:
        return []
    return [
        (rule.name, rule.arn, rule.event_pattern, list(rule.targets))
        for rule in list(bus.rules.values())
        if rule.state == "ENABLED" and rule.event_pattern.get_pattern()
    ]


def _route(entry, generation):
    """Matches the event against the rules and schedules (or drops) one delivery per target."""
    event = entry["event"]
    for name, arn, pattern, targets in _rules(event["account"], event["region"]):
        try:
            if not pattern.matches_event(event):
                continue
        except Exception as e:
            print(f"emulator: rule {name}: cannot match: {e!r}", file=sys.stderr)
            continue
        for target in targets:
            if ":lambda:" not in target.get("Arn", ""):
                continue
            with _lock:
                counters = _by_rule[name]
                counters["matched"] += 1
                delivery = {"rule": name, "rule_arn": arn, "target": target["Arn"], "outcome": None, "due": None}
                entry["deliveries"].append(delivery)
                if _random.random() < float(_settings["loss"]):
                    counters["dropped"] += 1
                    delivery["outcome"] = "dropped"
                    continue
                copies = 1
                if _random.random() < float(_settings["duplicate"]):
                    counters["duplicated"] += 1
                    copies = 2
                for copy in range(copies):
                    if copy:
                        delivery = dict(delivery, copy=True)
                        entry["deliveries"].append(delivery)
                    due = entry["t"] + _delay()
                    delivery["due"] = due
                    heapq.heappush(_heap, (due, next(_seq), "deliver", (entry, delivery, target, 0), generation))
                _lock.notify()


def _delay():
    """Seconds from the event to its delivery (call with the lock held)."""
    jitter = float(_settings["jitter_ms"])
    return (float(_settings["delay_ms"]) + (_random.uniform(0, jitter) if jitter > 0 else 0.0)) / 1000.0


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _condition_holds(condition, rule_arn, account):
    """The statement's conditions for an EventBridge invocation of rule `rule_arn`; an operator or
    key the emulator does not know fails (strict)."""
    context = {"aws:sourcearn": rule_arn, "aws:sourceaccount": account}
    for operator, keys in (condition or {}).items():
        for key, expected in (keys or {}).items():
            actual = context.get(key.lower())
            if actual is None:
                return False
            values = _as_list(expected)
            if operator in ("ArnLike", "StringLike"):
                ok = any(fnmatch.fnmatchcase(actual, v) for v in values)
            elif operator in ("ArnEquals", "StringEquals"):
                ok = actual in values
            else:
                return False
            if not ok:
                return False
    return True


def allows_events(function, rule_arn, account):
    """True when the function's resource-based policy lets EventBridge invoke it for the rule."""
    for statement in list(getattr(function.policy, "statements", [])):
        if statement.get("Effect", "Allow") != "Allow":
            continue
        principal = statement.get("Principal")
        services = principal.get("Service") if isinstance(principal, dict) else principal
        if principal != "*" and "events.amazonaws.com" not in _as_list(services):
            continue
        actions = [a.lower() for a in _as_list(statement.get("Action"))]
        if not any(fnmatch.fnmatchcase("lambda:invokefunction", a) for a in actions):
            continue
        if _condition_holds(statement.get("Condition"), rule_arn, account):
            return True
    return False


def _function(account, region, arn):
    from moto.awslambda.models import lambda_backends

    try:
        return lambda_backends[account][region].get_function(arn)
    except Exception:
        return None


def _deliver(entry, delivery, target, attempt, generation):
    """Runs in a delivery thread: checks the permission, invokes, schedules a retry on error."""
    event = entry["event"]
    name = delivery["rule"]
    parts = target["Arn"].split(":")
    region, account = (parts[3], parts[4]) if len(parts) > 5 else (event["region"], event["account"])
    function = _function(account, region, target["Arn"])
    if function is None:
        with _lock:
            _by_rule[name]["no_function"] += 1
            delivery["outcome"] = "no_function"
        return
    if attempt == 0:
        if not allows_events(function, delivery["rule_arn"], event["account"]):
            with _lock:
                _by_rule[name]["denied"] += 1
                delivery["outcome"] = "denied"
            return
        with _lock:
            _by_rule[name]["delivered"] += 1
            delivery["outcome"] = "delivered"
            delivery["invoked"] = time.monotonic()
    payload = _input(target, event)
    with _lock:
        _by_rule[name]["invocations"] += 1
    try:
        _, errored, _ = function._invoke_lambda(payload)
    except Exception as e:
        print(f"emulator: rule {name}: invoking {target['Arn']}: {e!r}", file=sys.stderr)
        errored = True
    with _lock:
        delivery["attempts"] = attempt + 1
        delivery["done"] = time.monotonic()
        delivery["errored"] = bool(errored)
        if errored:
            _by_rule[name]["errors"] += 1
            if attempt < ASYNC_RETRIES and generation == _generation:
                due = time.monotonic() + float(_settings["retry_delay_ms"]) / 1000.0
                heapq.heappush(_heap, (due, next(_seq), "deliver", (entry, delivery, target, attempt + 1), generation))
                _lock.notify()


def _input(target, event):
    """The target's input: the event, or its constant `Input` (InputPath and InputTransformer
    are not modelled: the stack uses neither)."""
    if target.get("Input"):
        try:
            return json.loads(target["Input"])
        except ValueError:
            return target["Input"]
    return event


def _dispatcher():
    while True:
        with _lock:
            while True:
                now = time.monotonic()
                if _heap and _heap[0][0] <= now:
                    _, _, kind, item, generation = heapq.heappop(_heap)
                    if generation != _generation:
                        continue
                    break
                _lock.wait(min(0.5, _heap[0][0] - now) if _heap else 0.5)
        try:
            if kind == "route":
                _route(item, generation)
            else:
                entry, delivery, target, attempt = item
                _executor.submit(_deliver, entry, delivery, target, attempt, generation)
        except Exception as e:
            print(f"emulator: event dispatcher: {e!r}", file=sys.stderr)


def _state():
    log = [{k: v for k, v in entry.items() if k != "event"} for entry in _log]
    for entry in log:
        entry["deliveries"] = [{k: v for k, v in d.items() if k != "rule_arn"} for d in entry["deliveries"]]
    return {
        "settings": dict(_settings),
        "emitted": _emitted,
        "by_detail_type": dict(_by_detail_type),
        "by_rule": {name: {k: counters.get(k, 0) for k in RULE_COUNTERS} for name, counters in _by_rule.items()},
        "pending": len(_heap),
        "log": log,
        "now": time.monotonic(),
    }


def clear_counters():
    """Empties the counters and the log (DELETE /emulator/events, DELETE /emulator/stats)."""
    global _emitted
    with _lock:
        _emitted = 0
        _by_detail_type.clear()
        _by_rule.clear()
        _log.clear()


def summary():
    """The counters without the log, for /emulator/stats."""
    with _lock:
        state = _state()
    state.pop("log")
    return state


def _configure(request):
    settings = dict(DEFAULT_SETTINGS)
    unknown = sorted(set(request) - set(settings))
    if unknown:
        raise ValueError(f"unknown settings {unknown}")
    for key, value in request.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{key} must be a number")
        settings[key] = value
    for key in ("loss", "duplicate"):
        if not 0.0 <= float(settings[key]) <= 1.0:
            raise ValueError(f"{key} must be between 0 and 1")
    for key in ("delay_ms", "jitter_ms", "retry_delay_ms"):
        if float(settings[key]) < 0:
            raise ValueError(f"{key} must not be negative")
    with _lock:
        _settings.clear()
        _settings.update(settings)
        _random.seed(settings["seed"])


def _serve(method, environ):
    """GET, POST (new settings) and DELETE (the counters and the log) /emulator/events."""
    if method == "DELETE":
        clear_counters()
    elif method == "POST":
        try:
            request = hooks.read_json(environ)
            if not isinstance(request, dict):
                raise ValueError("the body must be a JSON object")
            _configure(request)
        except ValueError as e:
            return "400 Bad Request", hooks.as_json({"error": f"bad event settings: {e}"})
    with _lock:
        return "200 OK", hooks.as_json(_state())


def _reset():
    global _generation
    with _lock:
        _generation += 1
        _heap.clear()
        _settings.clear()
        _settings.update(DEFAULT_SETTINGS)
        _random.seed(DEFAULT_SETTINGS["seed"])
    clear_counters()


def install():
    """Hooks event delivery into the emulator (call from server.py's main)."""
    hooks.route("/emulator/events", _serve)
    hooks.on_reset(_reset)
    threading.Thread(target=_dispatcher, name="event-dispatcher", daemon=True).start()
