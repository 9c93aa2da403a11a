"""What IAM authorizes for one request to the emulator: its action, resource ARNs and condition
keys (`checks`). The error a refused request gets is `protocol.access_denied`.

Resources and condition keys follow the Service Authorization Reference of each service:
  Auto Scaling   https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html
  EC2            https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
  DynamoDB       https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html
  IAM            https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
  Lambda         https://docs.aws.amazon.com/service-authorization/latest/reference/list_awslambda.html
  Step Functions https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html
  EventBridge    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoneventbridge.html
  CloudWatch Logs https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatchlogs.html
Handing a role to a service (Lambda's CreateFunction and UpdateFunctionConfiguration with a
Role, Step Functions' CreateStateMachine and UpdateStateMachine with a roleArn) also needs
iam:PassRole on that role, with `iam:PassedToService` naming the service:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html
Describe/List/Get actions that support no resource-level permission are authorized on "*",
and so is any action not modelled here (only a "Resource": "*" statement allows it: strict).
"""

import json
from collections import namedtuple
from urllib.parse import unquote

from moto.autoscaling.models import autoscaling_backends
from moto.ec2.models import ec2_backends
from moto.iam.models import iam_backends

from protocol import members

# `prefix` goes before the standard message (the Auto Scaling wording for launch templates).
Check = namedtuple("Check", "action resource context prefix", defaults=(None,))

# IAM action names that differ from the API operation name.
_ACTION_NAMES = {("lambda", "Invoke"): "InvokeFunction", ("lambda", "InvokeAsync"): "InvokeAsync"}


def operation(response):
    """(IAM service prefix, operation name), from the SigV4 scope and moto's action."""
    authorization = response.headers.get("Authorization", "")
    scope = authorization.partition("Credential=")[2].partition(",")[0].split("/")
    if len(scope) < 4:
        return None, None
    try:
        action = response._get_action()
    except Exception:
        return None, None
    if not action:
        return None, None
    service = scope[3]
    return service, _ACTION_NAMES.get((service, action), action)


def params(response):
    """The request's parameters as nested dicts, whatever the protocol."""
    body = getattr(response, "body", None)
    if isinstance(body, dict):
        return body
    if isinstance(body, (str, bytes)) and body[:1] in ("{", b"{"):
        try:
            return json.loads(body)
        except ValueError:
            return {}
    try:
        return response._get_params()
    except Exception:
        return {}


def _tag_keys(tags, *prefixes):
    context = {}
    for key, value in tags.items():
        for prefix in prefixes:
            context[f"{prefix}:ResourceTag/{key}"] = value
    return context


def _base_context(response):
    """Global condition keys every request carries."""
    return {"aws:RequestedRegion": response.region}


# --- Auto Scaling --------------------------------------------------------------------------


def _group(response, name):
    return autoscaling_backends[response.current_account][response.region].autoscaling_groups.get(name)


def _group_check(response, action, name):
    group = _group(response, name) if name else None
    context = _base_context(response)
    if group is None:
        arn = f"arn:aws:autoscaling:{response.region}:{response.current_account}:autoScalingGroup:*:autoScalingGroupName/{name}"
        return Check(action, arn, context)
    tags = {t.get("Key") or t.get("key"): t.get("Value") or t.get("value", "") for t in group.tags or []}
    context.update(_tag_keys(tags, "aws", "autoscaling"))
    return Check(action, group.arn, context)


def _autoscaling(response, operation, p):
    action = f"autoscaling:{operation}"
    if operation.startswith("Describe"):
        return [Check(action, "*", _base_context(response))]
    if operation in ("CreateOrUpdateTags", "DeleteTags"):
        names = {t.get("ResourceId") for t in members(p.get("Tags"))}
        return [_group_check(response, action, n) for n in sorted(n for n in names if n)]
    name = p.get("AutoScalingGroupName")
    if not name:
        return [Check(action, "*", _base_context(response))]
    checks = [_group_check(response, action, name)]
    # Imported here: launch_permissions builds on this module's helpers.
    import launch_permissions

    checks.extend(launch_permissions.checks(response, operation, p, _group(response, name)))
    return checks


# --- EC2 -----------------------------------------------------------------------------------


def ec2_backend(response):
    return ec2_backends[response.current_account][response.region]


def launch_template(response, template_id=None, name=None):
    backend = ec2_backend(response)
    try:
        return backend.get_launch_template(template_id) if template_id else backend.get_launch_template_by_name(name)
    except Exception:
        return None


def ec2_tags(response, resource_id):
    return {t["key"]: t["value"] for t in ec2_backend(response).describe_tags(filters={"resource-id": [resource_id]})}


def launch_template_arn(response, template_id):
    return f"arn:aws:ec2:{response.region}:{response.current_account}:launch-template/{template_id}"


def _ec2(response, operation, p):
    action = f"ec2:{operation}"
    context = _base_context(response)
    if operation in ("CreateLaunchTemplateVersion", "ModifyLaunchTemplate", "DeleteLaunchTemplateVersions", "DeleteLaunchTemplate"):
        template = launch_template(response, p.get("LaunchTemplateId"), p.get("LaunchTemplateName"))
        template_id = template.id if template is not None else (p.get("LaunchTemplateId") or "*")
        if template is not None:
            context.update(_tag_keys(ec2_tags(response, template.id), "aws", "ec2"))
        return [Check(action, launch_template_arn(response, template_id), context)]
    return [Check(action, "*", context)]


# --- DynamoDB ------------------------------------------------------------------------------

_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


def _dynamodb(response, operation, p):
    def table(name, index=None):
        arn = f"arn:aws:dynamodb:{response.region}:{response.current_account}:table/{name}"
        return f"{arn}/index/{index}" if index else arn

    context = _base_context(response)
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return [Check(f"dynamodb:{operation}", table(name), context) for name in sorted(p.get("RequestItems") or {})]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        checks = []
        for item in p.get("TransactItems") or []:
            for kind, request in item.items():
                checks.append(Check(f"dynamodb:{_TRANSACT.get(kind, kind)}", table(request.get("TableName")), context))
        return checks
    name = p.get("TableName")
    if not name and p.get("ResourceArn"):
        # TagResource, UntagResource and ListTagsOfResource name the table by its ARN.
        return [Check(f"dynamodb:{operation}", p["ResourceArn"], context)]
    if not name:
        return [Check(f"dynamodb:{operation}", "*", context)]
    return [Check(f"dynamodb:{operation}", table(name, p.get("IndexName")), context)]


# --- IAM, Lambda, Step Functions -------------------------------------------------------------


def _iam(response, operation, p):
    backend = iam_backends[response.current_account]["aws"]
    context = _base_context(response)
    if operation == "GetInstanceProfile" and p.get("InstanceProfileName"):
        try:
            arn = backend.get_instance_profile(p["InstanceProfileName"]).arn
        except Exception:
            arn = f"arn:aws:iam::{response.current_account}:instance-profile/{p['InstanceProfileName']}"
        return [Check(f"iam:{operation}", arn, context)]
    if p.get("RoleName"):
        try:
            arn = backend.get_role(p["RoleName"]).arn
        except Exception:
            arn = f"arn:aws:iam::{response.current_account}:role/{p['RoleName']}"
        return [Check(f"iam:{operation}", arn, context)]
    return [Check(f"iam:{operation}", "*", context)]


def _pass_role(response, role_arn, service):
    context = _base_context(response)
    context["iam:PassedToService"] = f"{service}.amazonaws.com"
    return Check("iam:PassRole", role_arn, context)


def _lambda(response, operation, p):
    # The function is in the path (moto's router names it FunctionName); the body of an
    # Invoke is the event, never a parameter.
    uri = getattr(response, "uri_match", None) or {}
    name = uri.get("FunctionName") or uri.get("function_name") or uri.get("resource_arn")
    context = _base_context(response)
    passes = []
    if operation in ("CreateFunction", "UpdateFunctionConfiguration") and isinstance(p.get("Role"), str):
        passes.append(_pass_role(response, p["Role"], "lambda"))
    if operation == "CreateFunction" and not name and p.get("FunctionName"):
        name = p["FunctionName"]
    if not name:
        return [Check(f"lambda:{operation}", "*", context)] + passes
    name = unquote(name)
    arn = name if name.startswith("arn:") else f"arn:aws:lambda:{response.region}:{response.current_account}:function:{name}"
    qualifier = response.querystring.get("Qualifier")
    if qualifier:
        arn = f"{arn}:{qualifier[0]}"
    return [Check(f"lambda:{operation}", arn, context)] + passes


def _states(response, operation, p):
    arn = p.get("stateMachineArn") or p.get("executionArn") or p.get("mapRunArn") or p.get("resourceArn")
    if not arn and operation == "CreateStateMachine" and p.get("name"):
        arn = f"arn:aws:states:{response.region}:{response.current_account}:stateMachine:{p['name']}"
    checks = [Check(f"states:{operation}", arn or "*", _base_context(response))]
    if operation in ("CreateStateMachine", "UpdateStateMachine") and isinstance(p.get("roleArn"), str):
        checks.append(_pass_role(response, p["roleArn"], "states"))
    return checks


def _events(response, operation, p):
    """Rule actions name the rule (Name, or Rule for targets); tag actions its ARN."""
    arn = p.get("ResourceARN")
    name = p.get("Name") or p.get("Rule")
    if not arn and name:
        bus = (p.get("EventBusName") or "default").split("/")[-1]
        prefix = "" if bus == "default" else f"{bus}/"
        arn = f"arn:aws:events:{response.region}:{response.current_account}:rule/{prefix}{name}"
    return [Check(f"events:{operation}", arn or "*", _base_context(response))]


def _logs(response, operation, p):
    """Log group actions name the group (logGroupName), tag actions its ARN (resourceArn)."""
    arn = p.get("resourceArn")
    if not arn and p.get("logGroupName") and not operation.startswith("Describe"):
        arn = f"arn:aws:logs:{response.region}:{response.current_account}:log-group:{p['logGroupName']}"
    return [Check(f"logs:{operation}", arn or "*", _base_context(response))]


_SERVICES = {
    "autoscaling": _autoscaling,
    "ec2": _ec2,
    "dynamodb": _dynamodb,
    "iam": _iam,
    "lambda": _lambda,
    "states": _states,
    "events": _events,
    "logs": _logs,
}


def checks(response, service, operation):
    """Every authorization the request needs: its own action first, then dependent actions."""
    if (service, operation) == ("sts", "GetCallerIdentity"):
        # Always allowed: https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
        return []
    handler = _SERVICES.get(service)
    if handler is None:
        return [Check(f"{service}:{operation}", "*", _base_context(response))]
    return handler(response, operation, params(response))
