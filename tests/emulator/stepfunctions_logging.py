"""Step Functions refuses a logging configuration its state machine's role cannot deliver.

AWS: CreateStateMachine and UpdateStateMachine with a `loggingConfiguration` that names a log
destination need the state machine's own execution role to allow `logs:CreateLogDelivery`,
`logs:GetLogDelivery`, `logs:UpdateLogDelivery`, `logs:DeleteLogDelivery`,
`logs:ListLogDeliveries`, `logs:PutResourcePolicy`, `logs:DescribeResourcePolicies` and
`logs:DescribeLogGroups` on "*" (CloudWatch Logs defines no resource type for them); otherwise
the call fails with AccessDeniedException "The state machine IAM Role is not authorized to
access the Log Destination" ("IAM policies for logging to CloudWatch Logs"):
  https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html#cloudwatch-iam-policy
moto accepts any role. Here the role's inline and attached (default version) policies are
evaluated for each action on "*" (an explicit Deny wins, as IAM evaluates), and the call is
refused before moto sees it. UpdateStateMachine without a roleArn is judged with the machine's
current role; a call without a log destination is not judged.
"""

from moto.core.exceptions import AWSError
from moto.stepfunctions.responses import StepFunctionResponse

import iam_enforcement
import iam_policy

LOG_DELIVERY_ACTIONS = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)
MESSAGE = "The state machine IAM Role is not authorized to access the Log Destination"


def missing_actions(role_arn):
    """The log-delivery actions the role does not allow on "*" (all of them without a role)."""
    # A role that does not exist has no statements: every action is missing.
    statements = iam_enforcement.role_statements(role_arn)
    missing = []
    for action in LOG_DELIVERY_ACTIONS:
        decision, _ = iam_policy.evaluate(statements, action, "*", {})
        if decision is not iam_policy.Decision.ALLOWED:
            missing.append(action)
    return missing


def _names_a_destination(logging):
    return bool(isinstance(logging, dict) and logging.get("destinations"))


def _check(role_arn):
    if missing_actions(role_arn):
        raise AWSError(MESSAGE, "AccessDeniedException", 400)


def _current_role(response):
    """The role of the machine an update names; None when it does not exist (moto says so)."""
    try:
        return response.stepfunction_backend.describe_state_machine(response._get_param("stateMachineArn")).roleArn
    except Exception:
        return None


def install():
    """Patches CreateStateMachine and UpdateStateMachine."""
    create = StepFunctionResponse.create_state_machine
    update = StepFunctionResponse.update_state_machine

    def create_state_machine(self):
        if _names_a_destination(self._get_param("loggingConfiguration")):
            _check(self._get_param("roleArn"))
        return create(self)

    def update_state_machine(self):
        if _names_a_destination(self._get_param("loggingConfiguration")):
            role_arn = self._get_param("roleArn") or _current_role(self)
            if role_arn is not None:
                _check(role_arn)
        return update(self)

    StepFunctionResponse.create_state_machine = create_state_machine
    StepFunctionResponse.update_state_machine = update_state_machine
