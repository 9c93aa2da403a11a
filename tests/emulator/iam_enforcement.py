"""The emulator evaluates every call made with a role's credentials against that role's policies.

* `lambda_credentials(function)`: the environment variables that give a Lambda's processes
  credentials of its function's execution role, from moto's STS (`AssumeRole`, session named
  after the function, as Lambda does). On AWS a function's code runs with its execution role's
  credentials: https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html
* `install(endpoint)` hooks moto's request dispatch: a request signed with credentials that
  moto's STS issued for a role (a Lambda's, the state machine's, or any a test assumes) is
  evaluated against the role's inline and attached policies as stored in moto's IAM (as
  `cargo xtask deploy` put them), read at each request, with the action, resource ARNs and
  condition keys of `iam_requests.py`. A refused call gets the service's own error
  (`protocol.access_denied`). Requests with other credentials (the deployer's "test" keys)
  are not checked. Step Functions' interpreter calls Lambda with the state machine's role.
* `GET /emulator/iam-denials` lists the refusals (`DELETE` clears them), so a test can say
  which call was refused; with `ASG_REFRESH_IAM_DENIALS_LOG=<file>` each refusal is also
  appended to that file as a JSON line.

moto's own enforcement (`moto/iam/access_control.py`) is not used: it is global (the deployer's
keys would need an IAM user), matches resources as "*", ignores condition keys it does not find
and turns a failed condition of an Allow into a Deny.
"""

import json
import os
import threading

from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

import hooks
import iam_policy
import iam_requests
import protocol

SESSION_SECONDS = 12 * 3600

_lock = threading.Lock()
_credentials = {}  # (role_arn, session name) -> {"key", "secret", "token"}
_minted_keys = set()
_denials = []


def _mint(role_arn, session, region):
    key = (role_arn, session)
    with _lock:
        known = _credentials.get(key)
        if known is not None:
            return known
        account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else "123456789012"
        role = sts_backends[account]["aws"].assume_role(
            region_name=region,
            role_session_name=session[:64],
            role_arn=role_arn,
            policy=None,
            duration=SESSION_SECONDS,
            external_id=None,
        )
        minted = {"key": role.access_key_id, "secret": role.secret_access_key, "token": role.session_token}
        _credentials[key] = minted
        _minted_keys.add(role.access_key_id)
        return minted


def lambda_credentials(function):
    """AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN of the function's role."""
    minted = _mint(function.role, function.function_name, function.region)
    return {
        "AWS_ACCESS_KEY_ID": minted["key"],
        "AWS_SECRET_ACCESS_KEY": minted["secret"],
        "AWS_SESSION_TOKEN": minted["token"],
    }


def _caller_role(response):
    """(role ARN, caller ARN) for a request made with STS role credentials, else None."""
    access_key = response.get_access_key()
    account = response.current_account
    key = iam_backends[account]["aws"].access_keys.get(access_key)
    role_arn = getattr(key, "role_arn", None) if key is not None else None
    if role_arn is None:
        if access_key in _minted_keys:
            # Issued by this module and gone since (a reset): never fall back to unchecked.
            return "arn:aws:iam::000000000000:role/expired-emulator-credentials", "expired credentials"
        return None
    session = next(
        (r.session_name for r in sts_backends[account]["aws"].assumed_roles if r.access_key_id == access_key),
        "session",
    )
    name = role_arn.split("/")[-1]
    return role_arn, f"arn:aws:sts::{account}:assumed-role/{name}/{session}"


def role_statements(role_arn):
    """Every statement of the role's inline and attached policies; [] when it does not exist."""
    parts = (role_arn or "").split(":")
    if len(parts) < 6:
        return []
    account = parts[4]
    backend = iam_backends[account]["aws"]
    try:
        role = backend.get_role_by_arn(role_arn)
    except Exception:
        return []
    documents = list(role.policies.values())
    for policy in role.managed_policies.values():
        default = next((v for v in policy.versions if v.is_default), None)
        if default is not None:
            documents.append(default.document)
    return iam_policy.statements(documents)


def _check(response):
    """None when the request may proceed, else the refusal as (status, headers, body)."""
    caller = _caller_role(response)
    if caller is None:
        return None
    role_arn, caller_arn = caller
    service, operation = iam_requests.operation(response)
    if service is None:
        return None
    try:
        statements = role_statements(role_arn)
        checks = iam_requests.checks(response, service, operation)
        for check in checks:
            decision, _ = iam_policy.evaluate(statements, check.action, check.resource, check.context)
            if decision is not iam_policy.Decision.ALLOWED:
                return _refuse(response, service, operation, caller_arn, check, decision)
    except iam_policy.UnsupportedPolicy as e:
        check = iam_requests.Check(f"{service}:{operation}", "*", {})
        return _refuse(response, service, operation, caller_arn, check, None, f"the emulator cannot evaluate {e}")
    return None


def _refuse(response, service, operation, caller_arn, check, decision, why=None):
    if why is None:
        because = (
            "with an explicit deny in an identity-based policy"
            if decision is iam_policy.Decision.EXPLICIT_DENY
            else f"because no identity-based policy allows the {check.action} action"
        )
        why = f"User: {caller_arn} is not authorized to perform: {check.action} on resource: {check.resource} {because}"
    message = check.prefix + why if check.prefix else why
    denial = {
        "caller": caller_arn,
        "operation": f"{service}:{operation}",
        "action": check.action,
        "resource": check.resource,
        "message": message,
    }
    with _lock:
        _denials.append(denial)
        # ASG_REFRESH_IAM_DENIALS_LOG collects every refusal of every emulator a test run
        # starts (one JSON line each), to find a permission a suite needs and tolerates.
        path = os.environ.get("ASG_REFRESH_IAM_DENIALS_LOG")
        if path:
            with open(path, "a") as log:
                log.write(json.dumps(denial) + "\n")
    return protocol.access_denied(response, service, message)


def _patch_state_machine_credentials(endpoint):
    """Step Functions' interpreter calls other services as the state machine's role.

    moto's interpreter signs every call with fixed keys ("ak"); on AWS a Task runs with the
    execution role (or the Task's Credentials role):
    https://docs.aws.amazon.com/step-functions/latest/dg/procedure-create-iam-role.html
    """
    import sys

    import boto3
    from botocore.config import Config

    def boto_client_for(region, service, state_credentials=None):
        role_arn = getattr(state_credentials, "role_arn", None)
        if role_arn:
            minted = _mint(str(role_arn), "states-execution", region)
            keys = {
                "aws_access_key_id": minted["key"],
                "aws_secret_access_key": minted["secret"],
                "aws_session_token": minted["token"],
            }
        else:
            keys = {"aws_access_key_id": "ak", "aws_secret_access_key": "sk"}
        return boto3.client(
            service_name=service,
            region_name=region,
            endpoint_url=endpoint,
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=99999999,
                read_timeout=99999999,
            ),
            **keys,
        )

    import moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils  # noqa: F401

    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and hasattr(module, "boto_client_for"):
            module.boto_client_for = boto_client_for


def _reset():
    with _lock:
        _credentials.clear()
        _denials.clear()


def _serve_denials(method, _environ):
    """GET and DELETE /emulator/iam-denials."""
    with _lock:
        if method == "DELETE":
            _denials.clear()
        return "200 OK", hooks.as_json({"denials": list(_denials)})


def install(endpoint):
    """Hooks the checks into moto (call from server.py's main, after its own routes)."""
    hooks.before_action(_check)
    _patch_state_machine_credentials(endpoint)
    hooks.on_reset(_reset)
    hooks.route("/emulator/iam-denials", _serve_denials)
