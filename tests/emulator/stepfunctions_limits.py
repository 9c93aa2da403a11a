"""Step Functions' data and history quotas in moto 5.2.5's ASL interpreter, failing executions
as AWS does.

1. Payload size. "Maximum input or output size for a task, state, or execution: 256 KiB of data
   as a UTF-8 encoded string. This quota affects tasks (activity, Lambda function, or integrated
   service), state or execution output, and input data when scheduling a task, entering a state,
   or starting an execution."
   https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
   moto checks a state's output and a Task's result; this adds a state's input on entering it and
   a Task's parameters when scheduling it.
2. States.DataLimitExceeded is terminal: "The States.ALL error type ... cannot catch the
   States.DataLimitExceeded terminal error" (nor retry it).
   https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html
   moto lets States.ALL match it; here only a catcher or retrier naming it explicitly does.
3. History size. "Maximum execution history size: 25,000 events. If the execution history
   reaches this quota, the execution will fail." (service-quotas page above). Each execution
   counts its own events, a Distributed Map's child executions each their own; an inline Map's
   iterations count in their execution. Checked on entering each state: when the next state's
   events would not fit, the execution (or the child) fails with States.Runtime, which no
   catcher sees either (error-handling page above). AWS does not document the error name it
   records for this; the cause says what happened.

The history limit defaults to AWS's 25,000; a test lowers it to keep a loop short:
    POST /emulator/stepfunctions-limits {"history_events": 200}
    GET  /emulator/stepfunctions-limits -> {"history_events": n, "payload_bytes": 262144}
    DELETE /emulator/stepfunctions-limits  back to AWS's values

The same counters measure executions (read through GET /emulator/stats, api_stats.py):
`executions()` gives, per root execution ARN, its own history events and state transitions
(`*StateEntered` events) and those of each Distributed Map child, which in moto has no history
GetExecutionHistory can read: {"<arn>": {"events", "transitions", "children": [{"index",
"events", "transitions"}]}}.
"""

import threading

import hooks

PAYLOAD_BYTES = 256 * 1024
HISTORY_EVENTS = 25_000

_limits = {"history_events": HISTORY_EVENTS, "payload_bytes": PAYLOAD_BYTES}
_executions_lock = threading.Lock()
_executions = {}  # root execution ARN -> {"events", "transitions", "children": [counter]}


def _execution_arn(env):
    try:
        return env.states.context_object.context_object_data["Execution"]["Id"]
    except Exception:
        return "unknown"


def _execution(arn):
    with _executions_lock:
        return _executions.setdefault(arn, {"events": 0, "transitions": 0, "children": []})


def executions():
    """Per root execution: its events and transitions, and each Distributed Map child's."""
    with _executions_lock:
        return {
            arn: {
                "events": e["events"],
                "transitions": e["transitions"],
                "children": [dict(c) for c in sorted(e["children"], key=lambda c: c["index"])],
            }
            for arn, e in _executions.items()
        }


def clear_executions():
    with _executions_lock:
        _executions.clear()


def _size(value):
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    text = value if isinstance(value, str) else to_json_str(value)
    return len(text.encode("utf-8"))


def _failure(env, error_type, cause, event_type):
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=error_type),
            event_type=event_type,
            event_details=EventDetails(
                executionFailedEventDetails=ExecutionFailedEventDetails(error=error_type.to_name(), cause=cause)
            ),
        )
    )


def _check_size(env, value, what):
    """Raises States.DataLimitExceeded when `value` is over the payload quota (rule 1)."""
    from moto.stepfunctions.parser.api import HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )

    size = _size(value)
    if size > _limits["payload_bytes"]:
        cause = f"{what} has {size} bytes, more than the {_limits['payload_bytes']} bytes a state or task may carry"
        raise _failure(env, StatesErrorNameType.StatesStatesDataLimitExceeded, cause, HistoryEventType.TaskFailed)


def _patch_sizes():
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import StateTaskLambda

    for cls in (StateTaskService, StateTaskLambda):
        original = cls._eval_parameters

        def eval_parameters(self, env, _original=original):
            parameters = _original(self, env)
            _check_size(env, parameters, f"the input of task state '{self.name}' when scheduled")
            return parameters

        cls._eval_parameters = eval_parameters


def _patch_catch():
    """Rule 2: States.ALL neither catches nor retries States.DataLimitExceeded."""
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )

    original = ErrorEqualsDecl._eval_body
    terminal = {StatesErrorNameType.StatesStatesDataLimitExceeded}

    def eval_body(self, env):
        error_name = env.stack[-1]
        if (
            isinstance(error_name, StatesErrorName)
            and error_name.typ in terminal
            and error_name not in self.error_names
        ):
            env.stack.pop()
            env.stack.append(False)
            return
        original(self, env)

    ErrorEqualsDecl._eval_body = eval_body


def _patch_history():
    """Rule 3: counts each execution's events and fails it when the next state would not fit."""
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker,
    )
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    init = Environment.__init__

    def environment_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        # A frame replaces this manager with its parent's, which keeps the parent's root.
        self.event_manager._limits_root = self

    Environment.__init__ = environment_init

    inner_frame_of = Environment.as_inner_frame_of.__func__

    def counted_inner_frame_of(cls, env, *args, **kwargs):
        # A frame inside a Distributed Map child (a Parallel branch, an inline Map's
        # iteration) counts toward that child's history.
        frame = inner_frame_of(cls, env, *args, **kwargs)
        counter = getattr(env, "_limits_child", None)
        if counter is not None:
            frame._limits_child = counter
            frame.event_history_context._limits_child = counter
        return frame

    Environment.as_inner_frame_of = classmethod(counted_inner_frame_of)

    add_event = EventManager.add_event

    def counted_add_event(self, context, *args, **kwargs):
        child = getattr(context, "_limits_child", None)
        event_type = args[0] if args else kwargs.get("event_type")
        transition = str(getattr(event_type, "value", event_type)).endswith("StateEntered")
        if child is not None:
            child["events"] += 1
            child["transitions"] += transition
        else:
            root = getattr(self, "_limits_root", None)
            counter = _execution(_execution_arn(root) if root is not None else "unknown")
            counter["events"] += 1
            counter["transitions"] += transition
        return add_event(self, context, *args, **kwargs)

    EventManager.add_event = counted_add_event

    eval_job = worker.DistributedItemProcessorWorker._eval_job

    def eval_job_counted(self, env, job):
        # A Distributed Map child is an execution of its own, evaluated in the job's frame (in
        # moto the children share one event list): tag the frame and its event context with a
        # counter. ExecutionStarted is the child's first event.
        counter = {"index": job.job_index, "events": 1, "transitions": 0}
        _execution(_execution_arn(env))["children"].append(counter)
        env._limits_child = counter
        env.event_history_context._limits_child = counter
        return eval_job(self, env, job)

    worker.DistributedItemProcessorWorker._eval_job = eval_job_counted

    eval_body = CommonStateField._eval_body

    def state_eval_body(self, env):
        limit = _limits["history_events"]
        child = getattr(env, "_limits_child", None)
        if child is not None:
            used, failing = child["events"], env
        else:
            used = len(env.event_manager._history_event_list)
            failing = getattr(env.event_manager, "_limits_root", env)
        # The state's own entered and exited events, and the execution's failure, must fit.
        if used + 3 > limit:
            details = ExecutionFailedEventDetails(
                error=StatesErrorNameType.StatesRuntime.to_name(),
                cause=f"the execution history reached {used} events: at most {limit} fit (entering state '{self.name}')",
            )
            failing.set_error(details)
            if failing is not env:
                env.set_error(details)
            return
        _check_size(env, env.states.get_input(), f"the input of state '{self.name}'")
        eval_body(self, env)

    CommonStateField._eval_body = state_eval_body


def _serve_limits(method, environ):
    """GET, POST (new limits) and DELETE (AWS's limits) /emulator/stepfunctions-limits."""
    if method == "POST":
        body = hooks.read_json(environ)
        for key in ("history_events", "payload_bytes"):
            if key in body:
                _limits[key] = int(body[key])
    elif method == "DELETE":
        _limits.update(history_events=HISTORY_EVENTS, payload_bytes=PAYLOAD_BYTES)
    return "200 OK", hooks.as_json(_limits)


def install():
    """Hooks the quotas into moto's interpreter (call from server.py's main, after its own
    Step Functions patches)."""
    _patch_sizes()
    _patch_catch()
    _patch_history()
    hooks.route("/emulator/stepfunctions-limits", _serve_limits)
    hooks.on_reset(clear_executions)
