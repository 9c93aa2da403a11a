"""The project's local AWS emulator: moto 5.2.5 (pinned) plus what moto lacks.

usage: server.py --port PORT [--host 127.0.0.1]

Patches moto in-process, then runs `moto.server.main`:

* EC2 Auto Scaling instance refreshes (`StartInstanceRefresh`, `DescribeInstanceRefreshes`,
  `CancelInstanceRefresh`, `RollbackInstanceRefresh`) with a time model:
  Pending -> InProgress (PercentageComplete grows) -> Successful | Failed, and
  Cancelling -> Cancelled, RollbackInProgress -> RollbackSuccessful | RollbackFailed.
  One active refresh per group (`InstanceRefreshInProgress` otherwise). Per-group
  behaviour comes from the group's tags (defaults in brackets):
      emulator:refresh-seconds    how long a refresh runs [10]
      emulator:refresh-outcome    Successful | Failed [Successful]
      emulator:cancel-seconds     Cancelling -> Cancelled [1]
      emulator:rollback-seconds   RollbackInProgress -> Rollback* [2]
      emulator:rollback-outcome   RollbackSuccessful | RollbackFailed [RollbackSuccessful]
  A successful refresh puts its DesiredConfiguration's launch template (and version),
  or its MixedInstancesPolicy, on the group. Starts and rollbacks AWS refuses are refused
  (refresh_rules.py, each rule citing its page). DescribeImages knows the AMIs the tests
  and demo use; `POST /emulator/images {"ImageId", "Architecture", "State"}` adds one. Every start and end is logged with `time.monotonic()` timestamps:
      GET    /emulator/refresh-log   -> {"now": t, "events": [...]}
      DELETE /emulator/refresh-log   clears it
  `/moto-api/reset` also clears every refresh and the log.

* EventBridge: each refresh transition emits the event EC2 Auto Scaling sends (Started,
  Checkpoint Reached, Succeeded, Failed, Cancelled, Rollback Started/Succeeded/Failed), matched
  against the default bus's rules and delivered asynchronously to Lambda targets whose resource
  policy admits events.amazonaws.com for the rule, with a settable delay, jitter, loss and
  duplication (refresh_events.py); PutRule, PutTargets and AddPermission refuse what AWS
  refuses (eventbridge_rules.py).
      POST   /emulator/events  {"delay_ms", "jitter_ms", "loss", "duplicate", "retry_delay_ms", "seed"}
      GET    /emulator/events  -> settings, counters (emitted, per rule: matched, dropped,
                                  delivered, denied, invocations, errors, ...) and the event log
      DELETE /emulator/events  clears the counters and the log

* Counters (api_stats.py): every API request by service:Operation and by caller (a Lambda's
  calls under its function name), Auto Scaling requests per group, Lambda invocations per
  function, and the events' counters:
      GET    /emulator/stats   -> {"calls", "by_caller", "by_asg", "lambda_invocations", "lambda_seconds",
                                   "events", "executions": per root execution its history events and
                                   transitions and each Distributed Map child's}
      DELETE /emulator/stats   clears them

* Lambda invocations run the uploaded zip's `bootstrap` under the local Runtime API
  (runtime_api.py), kept warm per function and code hash (a small pool per function so
  concurrent invocations run side by side), with the function's environment plus
  `AWS_ENDPOINT_URL` back to this server, its region and credentials of the function's role.

* IAM: every call made with a role's credentials (a Lambda's, the state machine's) is
  evaluated against the role's policies (iam_enforcement.py); `/emulator/faults` throttles a
  share of the deployer's requests (faults.py).

* Step Functions executions are on (`execute_state_machine`), as `/moto-api/config` would set.

* EC2 `CreateLaunchTemplateVersion` honours `ClientToken` as AWS does (moto ignores it): a
  repeated token returns the version the first call made instead of a new one, and the same
  token with other parameters is refused with `IdempotentParameterMismatch`. Retried or
  concurrent refresher starts rely on it.

* CreateStateMachine and UpdateStateMachine with a log destination are refused unless the
  machine's role allows log delivery (stepfunctions_logging.py); UpdateContinuousBackups is
  refused for a moment after CreateTable, as AWS refuses it (dynamodb_backups.py).

Every wait is bounded.
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import moto.server  # noqa: E402
from moto.autoscaling.models import autoscaling_backends  # noqa: E402
from moto.autoscaling.responses import AutoScalingResponse  # noqa: E402
from moto.awslambda.models import LambdaFunction  # noqa: E402
from moto.core import config as moto_config  # noqa: E402
from moto.core.exceptions import ServiceException  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.ec2.responses.launch_templates import LaunchTemplates  # noqa: E402

import alarm_history  # noqa: E402
import api_stats  # noqa: E402
import eventbridge_rules  # noqa: E402
import faults  # noqa: E402
import hooks  # noqa: E402
import refresh_events  # noqa: E402
import iam_enforcement  # noqa: E402
import notify_iam  # noqa: E402
import protocol  # noqa: E402
import refresh_instances  # noqa: E402
import stepfunctions_abort  # noqa: E402
import stepfunctions_limits  # noqa: E402
import cloudwatch_cbor  # noqa: E402
import refresh_rules  # noqa: E402
import dynamodb_backups  # noqa: E402
import stepfunctions_logging  # noqa: E402
from runtime_api import LambdaProcess  # noqa: E402

ENDPOINT = None  # set in main()

# ---------------------------------------------------------------------------------------
# Instance refresh
# ---------------------------------------------------------------------------------------

ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")
DEFAULTS = {
    "refresh-seconds": 10.0,
    "refresh-outcome": "Successful",
    "cancel-seconds": 1.0,
    "rollback-seconds": 2.0,
    "rollback-outcome": "RollbackSuccessful",
}


class InstanceRefreshInProgress(ServiceException):
    code = "InstanceRefreshInProgress"


class ActiveInstanceRefreshNotFound(ServiceException):
    code = "ActiveInstanceRefreshNotFound"


class ValidationError(ServiceException):
    code = "ValidationError"


_lock = threading.RLock()
_refreshes = {}  # (account, region, asg) -> [Refresh], newest last
_log = []


def _now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def _log_event(event, refresh, t, **extra):
    entry = {
        "event": event,
        "asg": refresh.asg,
        "refresh_id": refresh.id,
        "t": t,
        "wall": time.time() - (time.monotonic() - t),
        "account": refresh.account,
        "region": refresh.region,
    }
    entry.update(extra)
    _log.append(entry)


class Refresh:
    def __init__(self, account, region, asg, desired, preferences, strategy, settings):
        self.id = str(uuid.uuid4())
        self.account, self.region, self.asg = account, region, asg
        self.desired = desired or {}
        self.preferences = preferences or {}
        self.strategy = strategy or "Rolling"
        self.settings = settings
        self.started = time.monotonic()
        self.start_time = _now_utc()
        self.duration = max(0.0, float(settings["refresh-seconds"]))
        self.pending = min(1.0, self.duration / 5)
        self.outcome = settings["refresh-outcome"]
        self.status = "Pending"
        self.reason = "Waiting for the refresh to start."
        self.percentage = 0
        self.end_time = None
        self.ended = None
        # Set when cancel/rollback is requested: (kind, requested_at, seconds, from_percentage)
        self.transition = None
        self.rollback_details = None
        # EventBridge events (refresh_events.py): whether Started went out, and the checkpoints
        # (CheckpointPercentages, ascending) not yet reached.
        self.started_emitted = False
        self.checkpoints = sorted(int(c) for c in protocol.members(self.preferences.get("CheckpointPercentages")))
        self.checkpoint_delay = self.preferences.get("CheckpointDelay")

    def _emit(self, detail_type, t, extra=None):
        """Queues the instance-refresh event AWS sends for this transition (lock held)."""
        try:
            group = autoscaling_backends[self.account][self.region].autoscaling_groups.get(self.asg)
            group_arn = group.arn if group is not None else None
        except Exception:
            group_arn = None
        refresh_events.emit(self.account, self.region, self.asg, group_arn, self.id, detail_type, t, extra)

    def _emit_started(self, t):
        if not self.started_emitted:
            self.started_emitted = True
            self._emit(refresh_events.STARTED, t)

    def _emit_checkpoints(self, t, up_to):
        """Checkpoint Reached for each checkpoint at or under `up_to` percent. The time model
        does not pause for CheckpointDelay (it only reports the checkpoints)."""
        while self.checkpoints and self.checkpoints[0] <= up_to:
            percentage = self.checkpoints.pop(0)
            extra = {"CheckpointPercentage": str(percentage)}
            # The default delay is 3,600 s (DESIGN.md); the event says it as a string.
            extra["CheckpointDelay"] = str(self.checkpoint_delay if self.checkpoint_delay is not None else 3600)
            self._emit(refresh_events.CHECKPOINT, t, extra)

    def _end(self, status, reason, t):
        self.status = status
        self.reason = reason
        self.ended = t
        self.end_time = _now_utc() - datetime.timedelta(seconds=max(0.0, time.monotonic() - t))
        _log_event("end", self, t, status=status, percentage=self.percentage)
        if status in ("Successful", "Failed"):
            # It went through InProgress, if only between two ticks of the time model.
            self._emit_started(t)
        if status == "Successful":
            self._emit_checkpoints(t, 100)
        self._emit(refresh_events.END_EVENTS[status], t)
        if status == "Successful":
            _apply_desired(self)

    def advance(self, now):
        """Moves the refresh along the time model up to `now` (call with the lock held)."""
        if self.status not in ACTIVE:
            return
        if self.transition is not None:
            kind, requested, seconds, from_pct = self.transition
            done_at = requested + seconds
            if kind == "rollback":
                fraction = 1.0 if seconds <= 0 else min(1.0, (now - requested) / seconds)
                self.percentage = int(round(from_pct * (1 - fraction)))
                if now >= done_at:
                    outcome = self.settings["rollback-outcome"]
                    self._end(outcome, "Rollback completed." if outcome == "RollbackSuccessful" else "Rollback failed (emulator:refresh-outcome tag).", done_at)
            elif now >= done_at:
                self._end("Cancelled", "Cancelled by the user.", done_at)
            return
        elapsed = now - self.started
        end_at = self.started + self.duration
        if now >= end_at:
            if self.outcome == "Failed":
                self.percentage = min(self.percentage, 50) if self.percentage else 50
                self._end("Failed", "Instance refresh failed (emulator:refresh-outcome=Failed).", end_at)
            else:
                self.percentage = 100
                self._end("Successful", None, end_at)
            return
        if elapsed >= self.pending:
            self.status = "InProgress"
            self.reason = "Replacing instances."
            self._emit_started(self.started + self.pending)
            span = max(self.duration - self.pending, 1e-6)
            pct = int(100 * (elapsed - self.pending) / span)
            if self.outcome == "Failed":
                pct = min(pct, 50)
            self.percentage = max(0, min(99, pct))
            self._emit_checkpoints(now, self.percentage)

    def cancel(self, settings):
        """CancelInstanceRefresh: Cancelling, then Cancelled after `cancel-seconds` (lock held)."""
        now = time.monotonic()
        self.status = "Cancelling"
        self.reason = "Cancellation requested."
        self.transition = ("cancel", now, float(settings["cancel-seconds"]), self.percentage)
        _log_event("cancel", self, now)

    def roll_back(self, settings):
        """RollbackInstanceRefresh: RollbackInProgress, then the `rollback-outcome` after
        `rollback-seconds` (lock held)."""
        now = time.monotonic()
        self.rollback_details = {
            "RollbackReason": "Rollback requested by the user.",
            "RollbackStartTime": _now_utc(),
            "PercentageCompleteOnRollback": self.percentage,
            "InstancesToUpdateOnRollback": 1,
        }
        self.status = "RollbackInProgress"
        self.reason = "Rolling back."
        self.settings = settings
        self.transition = ("rollback", now, float(settings["rollback-seconds"]), self.percentage)
        _log_event("rollback", self, now)
        self._emit(refresh_events.ROLLBACK_STARTED, now)

    def describe(self):
        out = {
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.asg,
            "Status": self.status,
            "StartTime": self.start_time,
            "PercentageComplete": self.percentage,
            "InstancesToUpdate": 0 if self.status == "Successful" else 1,
            "Strategy": self.strategy,
        }
        if self.reason:
            out["StatusReason"] = self.reason
        if self.end_time is not None:
            out["EndTime"] = self.end_time
        if self.preferences:
            out["Preferences"] = self.preferences
        if self.desired:
            out["DesiredConfiguration"] = self.desired
        if self.rollback_details:
            out["RollbackDetails"] = self.rollback_details
        return out


def _apply_desired(refresh):
    """A successful refresh leaves the group on the desired launch template version (or
    mixed instances policy)."""
    try:
        group = autoscaling_backends[refresh.account][refresh.region].autoscaling_groups.get(refresh.asg)
        if group is None or refresh_rules.apply_mixed(group, refresh.desired):
            return
        lt = (refresh.desired or {}).get("LaunchTemplate")
        if not lt:
            return
        spec = {"Version": lt.get("Version")} if lt.get("Version") else {}
        if lt.get("LaunchTemplateId"):
            spec["LaunchTemplateId"] = lt["LaunchTemplateId"]
        else:
            spec["LaunchTemplateName"] = lt.get("LaunchTemplateName")
        group._set_launch_configuration(None, spec, None)
        refresh_instances.replace(group)
    except Exception as e:  # never take the server down over this
        print(f"emulator: cannot apply the desired configuration to {refresh.asg}: {e!r}", file=sys.stderr)


def _settings(group):
    settings = dict(DEFAULTS)
    for tag in group.tags or []:
        key = tag.get("Key", "")
        if key.startswith("emulator:") and key[len("emulator:"):] in DEFAULTS:
            name = key[len("emulator:"):]
            value = tag.get("Value", "")
            settings[name] = float(value) if name.endswith("-seconds") else value
    return settings


def _advance_all():
    now = time.monotonic()
    with _lock:
        for refreshes in _refreshes.values():
            for refresh in refreshes:
                refresh.advance(now)


def _ticker():
    while True:
        time.sleep(0.1)
        try:
            _advance_all()
        except Exception as e:
            print(f"emulator: ticker: {e!r}", file=sys.stderr)


def _group(response, name):
    group = response.autoscaling_backend.autoscaling_groups.get(name)
    if group is None:
        raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
    return group


def _key(response, name):
    return (response.current_account, response.region, name)


def _active(refreshes, statuses=ACTIVE):
    return next((r for r in reversed(refreshes) if r.status in statuses), None)


def start_instance_refresh(self):
    params = self._get_params()
    name = params.get("AutoScalingGroupName")
    group = _group(self, name)
    # What AWS refuses before it looks at running refreshes (refresh_rules.py cites each rule).
    refresh_rules.check_start(self.current_account, self.region, group, params)
    _advance_all()
    with _lock:
        refreshes = _refreshes.setdefault(_key(self, name), [])
        active = _active(refreshes)
        if active is not None:
            raise InstanceRefreshInProgress(
                f"An Instance Refresh is already in progress and blocks the execution of this Instance Refresh ({active.id}, {active.status})."
            )
        refresh = Refresh(
            self.current_account,
            self.region,
            name,
            params.get("DesiredConfiguration"),
            params.get("Preferences"),
            params.get("Strategy"),
            _settings(group),
        )
        refreshes.append(refresh)
        _log_event(
            "start",
            refresh,
            refresh.started,
            desired=refresh.desired,
            duration=refresh.duration,
            outcome=refresh.outcome,
        )
    return ActionResult({"InstanceRefreshId": refresh.id})


def describe_instance_refreshes(self):
    params = self._get_params()
    name = params.get("AutoScalingGroupName")
    ids = params.get("InstanceRefreshIds") or []
    _group(self, name)
    _advance_all()
    with _lock:
        refreshes = list(reversed(_refreshes.get(_key(self, name), [])))
        if ids:
            refreshes = [r for r in refreshes if r.id in ids]
        described = [r.describe() for r in refreshes]
    max_records = int(params.get("MaxRecords") or 50)
    start = int(params.get("NextToken") or 0)
    return ActionResult(protocol.page(described, start, max_records, "InstanceRefreshes"))


def _change_running(self, change):
    """Calls `change(refresh, group)` on the group's pending or in-progress refresh (with the
    lock held) and answers its id; ActiveInstanceRefreshNotFound when there is none."""
    name = self._get_param("AutoScalingGroupName")
    group = _group(self, name)
    _advance_all()
    with _lock:
        refresh = _active(_refreshes.get(_key(self, name), []), ("Pending", "InProgress", "Baking"))
        if refresh is None:
            raise ActiveInstanceRefreshNotFound("No in progress or pending Instance Refresh found for this Auto Scaling group.")
        change(refresh, group)
    return ActionResult({"InstanceRefreshId": refresh.id})


def cancel_instance_refresh(self):
    return _change_running(self, lambda refresh, group: refresh.cancel(_settings(group)))


def rollback_instance_refresh(self):
    def roll_back(refresh, group):
        refresh_rules.check_rollback(self.current_account, self.region, group, refresh)
        refresh.roll_back(_settings(group))

    return _change_running(self, roll_back)


def _reset():
    with _lock:
        _refreshes.clear()
        _log.clear()
    refresh_rules.reset()
    with _lt_lock:
        _lt_tokens.clear()
    _stop_all_lambdas()


def _patch_autoscaling():
    # `call_action` dispatches to any function on the class named after the action.
    AutoScalingResponse.start_instance_refresh = start_instance_refresh
    AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes
    AutoScalingResponse.cancel_instance_refresh = cancel_instance_refresh
    AutoScalingResponse.rollback_instance_refresh = rollback_instance_refresh

    hooks.on_reset(_reset)
    threading.Thread(target=_ticker, name="instance-refresh-ticker", daemon=True).start()


# ---------------------------------------------------------------------------------------
# EC2 launch template versions: ClientToken idempotency
# ---------------------------------------------------------------------------------------


class IdempotentParameterMismatch(ServiceException):
    code = "IdempotentParameterMismatch"


_lt_lock = threading.Lock()
_lt_tokens = {}  # (account, region, client token) -> (template id, version number, request fingerprint)


def create_launch_template_version(self):
    token = self._get_param("ClientToken")
    if not token:
        return _original_create_launch_template_version(self)
    fingerprint = json.dumps(
        [
            self._get_param("LaunchTemplateId"),
            self._get_param("LaunchTemplateName"),
            self._get_param("SourceVersion"),
            self._get_param("VersionDescription"),
            self._get_param("LaunchTemplateData", {}),
        ],
        sort_keys=True,
        default=str,
    )
    key = (self.current_account, self.region, token)
    # One at a time: the check and the creation are one step (moto numbers versions by
    # counting them, which two concurrent calls could also get wrong).
    with _lt_lock:
        known = _lt_tokens.get(key)
        if known is None:
            result = _original_create_launch_template_version(self)
            version = result.result["LaunchTemplateVersion"]
            _lt_tokens[key] = (version["LaunchTemplateId"], version["VersionNumber"], fingerprint)
            return result
    template_id, number, first = known
    if first != fingerprint:
        raise IdempotentParameterMismatch(
            f"Client token {token} was already used with different parameters."
        )
    template = self.ec2_backend.get_launch_template(template_id)
    version = template.get_version(number)
    return ActionResult(
        {
            "LaunchTemplateVersion": {
                "CreateTime": version.create_time,
                "CreatedBy": f"arn:{self.partition}:iam::{self.current_account}:root",
                "DefaultVersion": template.is_default(version),
                "LaunchTemplateData": version.data,
                "LaunchTemplateId": template.id,
                "LaunchTemplateName": template.name,
                "VersionDescription": version.description,
                "VersionNumber": version.number,
            },
        }
    )


_original_create_launch_template_version = LaunchTemplates.create_launch_template_version


def _patch_ec2():
    LaunchTemplates.create_launch_template_version = create_launch_template_version


# ---------------------------------------------------------------------------------------
# Lambda
# ---------------------------------------------------------------------------------------

MAX_WARM_PER_FUNCTION = 8
LOG_TAIL = 4096

_lambda_lock = threading.Lock()
_code_dirs = {}  # (function_arn, code_sha) -> directory with the unpacked zip
_pools = {}  # function_arn -> {"code": sha, "env": env, "idle": [LambdaProcess], "all": set()}
# Unpacked code and Lambda logs. The test harness passes a directory it removes itself
# (it stops the server with SIGKILL, so no cleanup of ours would run).
_work_dir = os.environ.get("ASG_REFRESH_EMULATOR_WORK_DIR") or tempfile.mkdtemp(prefix="asg-refresh-emulator-")
os.makedirs(_work_dir, exist_ok=True)


def _unpack(function):
    key = (function.function_arn, function.code_sha_256)
    directory = _code_dirs.get(key)
    if directory is not None:
        return directory
    directory = tempfile.mkdtemp(prefix="code-", dir=_work_dir)
    path = os.path.join(directory, "code.zip")
    with open(path, "wb") as f:
        f.write(function.code_bytes)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            target = archive.extract(info, directory)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)
    os.remove(path)
    bootstrap = os.path.join(directory, "bootstrap")
    if os.path.exists(bootstrap):
        os.chmod(bootstrap, 0o755)
    _code_dirs[key] = directory
    return directory


def _environment(function):
    env = {
        "AWS_REGION": function.region,
        "AWS_DEFAULT_REGION": function.region,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout),
        "_HANDLER": str(function.handler or ""),
        "LAMBDA_TASK_ROOT": "",
    }
    env.update({k: str(v) for k, v in (function.environment_vars or {}).items()})
    env["AWS_ENDPOINT_URL"] = ENDPOINT
    # Credentials of the function's execution role (reserved variables: set last, as Lambda
    # does); every call made with them is checked against the role's policies.
    env.update(iam_enforcement.lambda_credentials(function))
    return env


def _acquire(function):
    """A warm process for the function's current code and environment, or a new one."""
    with _lambda_lock:
        directory = _unpack(function)
        env = _environment(function)
        pool = _pools.get(function.function_arn)
        if pool is None or pool["code"] != function.code_sha_256 or pool["env"] != env:
            if pool is not None:
                for process in pool["idle"]:
                    process.stop()
            pool = {"code": function.code_sha_256, "env": env, "idle": [], "busy": 0, "dir": directory}
            _pools[function.function_arn] = pool
        while pool["idle"]:
            process = pool["idle"].pop()
            if process.process.poll() is None:
                pool["busy"] += 1
                return pool, process
            process.stop()
        env["LAMBDA_TASK_ROOT"] = directory
        log = open(os.path.join(_work_dir, f"{function.function_name}-{uuid.uuid4().hex[:8]}.log"), "a+b")
        process = LambdaProcess(
            os.path.join(directory, "bootstrap"),
            env,
            function.function_name,
            timeout_seconds=int(function.timeout or 3),
            log=log,
        )
        process.log_file = log
        pool["busy"] += 1
        return pool, process


def _release(pool, process, healthy):
    with _lambda_lock:
        pool["busy"] -= 1
        current = next((p for p in _pools.values() if p is pool), None)
        if healthy and current is not None and len(pool["idle"]) < MAX_WARM_PER_FUNCTION:
            pool["idle"].append(process)
            return
    _stop(process)


def _stop(process):
    try:
        process.stop()
    finally:
        try:
            process.log_file.close()
        except Exception:
            pass


def _stop_all_lambdas():
    with _lambda_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        for process in pool["idle"]:
            _stop(process)


def _invoke_lambda(self, event=None):
    """Replaces moto's Docker runner: returns (payload str, errored, logs)."""
    if event is None:
        event = {}
    if isinstance(event, (str, bytes)):
        try:
            event = json.loads(event)
        except ValueError:
            pass
    try:
        self.logs_backend.ensure_log_group(self.logs_group_name)
    except Exception:
        pass
    if not self.code_bytes:
        return json.dumps({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": "the function has no zip code"}), True, ""
    try:
        pool, process = _acquire(self)
    except Exception as e:
        return json.dumps({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": f"cannot start bootstrap: {e}"}), True, ""
    log_start = process.log_file.seek(0, os.SEEK_END)
    timeout = int(self.timeout or 3)
    healthy = False
    try:
        payload, errored = process.invoke(event, timeout=timeout + 2)
        healthy = process.process.poll() is None and not (
            errored and b"Sandbox.Timedout" in payload or process.init_error is not None
        )
    finally:
        try:
            process.log_file.flush()
            process.log_file.seek(log_start)
            logs = process.log_file.read().decode("utf-8", "replace")[-LOG_TAIL:]
            process.log_file.seek(0, os.SEEK_END)
        except Exception:
            logs = ""
        _release(pool, process, healthy)
    try:
        self.save_logs(logs)
    except Exception:
        pass
    return payload.decode("utf-8", "replace"), errored, logs


def _patch_lambda():
    LambdaFunction._invoke_lambda = _invoke_lambda


# ---------------------------------------------------------------------------------------
# HTTP routes of the emulator itself, and startup
# ---------------------------------------------------------------------------------------

def _add_image(method, environ):
    """POST /emulator/images {"ImageId": ..., "Architecture": ..., "State": ...}: an image
    DescribeImages knows (other methods go on to moto)."""
    if method != "POST":
        return None
    image = hooks.read_json(environ)
    refresh_rules.add_image(image["ImageId"], image.get("Architecture", "x86_64"), image.get("State", "available"))
    return "200 OK", hooks.as_json({})


def _serve_refresh_log(method, _environ):
    """GET and DELETE /emulator/refresh-log."""
    _advance_all()
    with _lock:
        if method == "DELETE":
            _log.clear()
        return "200 OK", hooks.as_json({"now": time.monotonic(), "events": list(_log)})


def _patch_routes():
    hooks.route("/emulator/images", _add_image)
    hooks.route("/emulator/refresh-log", _serve_refresh_log)


# --- Step Functions: what moto 5.2.5's interpreter gets wrong for the rollout machine ---


def _patch_stepfunctions():
    """Two fixes to moto's ASL interpreter, so a Distributed Map behaves as on AWS.

    1. Its lexer reads `"ToleratedFailurePercentage": 100` as an integer where its grammar
       wants a decimal: the parser gets a copy with `100.0` (the stored definition is
       untouched, so deploy's comparisons still hold).
    2. Its Distributed Map counts failed children and carries on (the Tolerated* fields
       "have no effect"): once the threshold is passed, the map run fails with
       States.ExceedToleratedFailureThreshold and hands out no more items. It fails only when
       both limits are passed, which differs from AWS only when a machine sets both.
    """
    import re

    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    parse = AmazonStateLanguageParser.parse

    def parse_with_decimal_percentages(definition):
        fixed = re.sub(r'("ToleratedFailurePercentage"\s*:\s*)(\d+)(?=\s*[,}])', r"\1\2.0", definition)
        return parse(fixed)

    AmazonStateLanguageParser.parse = staticmethod(parse_with_decimal_percentages)

    eval_job = worker.DistributedItemProcessorWorker._eval_job

    def eval_job_within_tolerance(self, env, job):
        eval_job(self, env, job)
        record = self._map_run_record
        failed = record.item_counter.failed.get() + record.item_counter.timed_out.get()
        total = max(1, self._job_pool._jobs_number)
        count = record.tolerated_failure_count or 0
        percentage = record.tolerated_failure_percentage or 0.0
        if failed > count and failed * 100.0 / total > percentage:
            name = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
            cause = f"The specified tolerated failure threshold was exceeded ({failed} of {total} items failed)"
            job.job_output = FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=name,
                    event_type=HistoryEventType.MapRunFailed,
                    event_details=EventDetails(
                        mapRunFailedEventDetails=MapRunFailedEventDetails(error=name.error_name, cause=cause)
                    ),
                )
            )

    worker.DistributedItemProcessorWorker._eval_job = eval_job_within_tolerance


def main():
    global ENDPOINT
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    ENDPOINT = f"http://{args.host}:{args.port}"
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    _patch_autoscaling()
    refresh_rules.patch_images()
    _patch_ec2()
    _patch_lambda()
    _patch_stepfunctions()
    _patch_routes()
    iam_enforcement.install(ENDPOINT)
    # SNS topics and PutEvents per entry, for the notifications of `[notify]`.
    notify_iam.install()
    faults.install()
    stepfunctions_limits.install()
    stepfunctions_abort.install()
    stepfunctions_logging.install()
    dynamodb_backups.install()
    eventbridge_rules.install()
    refresh_events.install()
    # CloudWatch as the Rust SDK speaks it (CBOR), with alarm history.
    alarm_history.install()
    cloudwatch_cbor.install()
    # Last: its counters see every request and invocation before any other patch answers.
    api_stats.install()
    # What POST /moto-api/config {"stepfunctions": {"execute_state_machine": true}} does.
    moto_config.default_user_config["stepfunctions"] = {"execute_state_machine": True}
    try:
        moto.server.main(["-H", args.host, "-p", str(args.port)])
    finally:
        _stop_all_lambdas()
        shutil.rmtree(_work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
