"""CloudWatch alarm history, which moto 5.2.5 keeps only as tuples and does not serve.

moto's Alarm.update_state (SetAlarmState) appends the *previous* state to `alarm.history` and
CloudWatchResponse has no DescribeAlarmHistory. This module records each state change as AWS
reports it and answers DescribeAlarmHistory
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarmHistory.html):
items with AlarmName, AlarmType, Timestamp, HistoryItemType "StateUpdate", HistorySummary
"Alarm updated from OK to ALARM" and HistoryData (JSON with oldState/newState), filtered by
AlarmName, HistoryItemType, StartDate and EndDate, newest first unless ScanBy is
TimestampAscending, MaxRecords (1 to 100, default 50) per page with a NextToken. As on AWS,
the history outlives the alarm ("CloudWatch retains the history of an alarm even if you delete
the alarm").

IAM: the Lambda role's calls are checked on the alarm ARNs they name. DescribeAlarms and
DescribeAlarmHistory take the `alarm` resource type
(https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html):
a call naming alarms needs the action on each alarm's ARN; one naming none (every alarm) on "*".
The SigV4 scope of CloudWatch is `monitoring`; its IAM prefix is `cloudwatch`.
"""

import datetime
import json
import threading

from moto.cloudwatch.models import Alarm
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult

import iam_requests
import protocol

# (account, region) -> list of history items (dicts), oldest first.
_history = {}
_lock = threading.Lock()


class _InvalidParameterValue(ServiceException):
    code = "InvalidParameterValue"


class _InvalidNextToken(ServiceException):
    code = "InvalidNextToken"


def _utc(value):
    """A request timestamp (datetime, epoch number or ISO 8601 string) as an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(float(value), tz=datetime.timezone.utc)
    text = str(value)
    try:
        return datetime.datetime.fromtimestamp(float(text), tz=datetime.timezone.utc)
    except ValueError:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def _patch_update_state():
    original = Alarm.update_state

    def update_state(self, reason, reason_data, state_value):
        old_value, old_reason = self.state_value, self.state_reason
        original(self, reason, reason_data, state_value)
        at = self.state_updated_timestamp
        at = at if at.tzinfo else at.replace(tzinfo=datetime.timezone.utc)
        account = self.alarm_arn.split(":")[4]
        data = {
            "version": "1.0",
            "oldState": {"stateValue": old_value, "stateReason": old_reason},
            "newState": {"stateValue": state_value, "stateReason": reason},
        }
        item = {
            "AlarmName": self.name,
            "AlarmType": "CompositeAlarm" if self.rule is not None else "MetricAlarm",
            "Timestamp": at,
            "HistoryItemType": "StateUpdate",
            "HistorySummary": f"Alarm updated from {old_value} to {state_value}",
            "HistoryData": json.dumps(data),
        }
        with _lock:
            _history.setdefault((account, self.region_name), []).append(item)

    Alarm.update_state = update_state


def describe_alarm_history(self):
    name = self._get_param("AlarmName")
    item_type = self._get_param("HistoryItemType")
    types = self._get_param("AlarmTypes") or ["MetricAlarm"]
    start = _utc(self._get_param("StartDate"))
    end = _utc(self._get_param("EndDate"))
    max_records = self._get_param("MaxRecords")
    scan_by = self._get_param("ScanBy") or "TimestampDescending"
    token = self._get_param("NextToken")
    if max_records is not None and not 1 <= int(max_records) <= 100:
        raise _InvalidParameterValue(
            "The value for parameter MaxRecords must be between 1 and 100"
        )
    limit = int(max_records or 50)
    with _lock:
        items = list(_history.get((self.current_account, self.region), []))
    chosen = [
        i
        for i in items
        if (name is None or i["AlarmName"] == name)
        and (item_type is None or i["HistoryItemType"] == item_type)
        and i["AlarmType"] in types
        and (start is None or i["Timestamp"] >= start)
        and (end is None or i["Timestamp"] <= end)
    ]
    chosen.sort(key=lambda i: i["Timestamp"], reverse=scan_by != "TimestampAscending")
    offset = 0
    if token:
        try:
            offset = int(token)
        except ValueError:
            raise _InvalidNextToken("The service cannot find the next token")
    return ActionResult(protocol.page(chosen, offset, limit, "AlarmHistoryItems"))


class _ValidationError(ServiceException):
    code = "ValidationError"


def _patch_describe_alarms():
    """DescribeAlarms takes at most 100 AlarmNames (API_DescribeAlarms: "Maximum number of 100
    items"); moto answers any number. The SDK for Rust does not check list lengths itself."""
    original = CloudWatchResponse.describe_alarms

    def describe_alarms(self):
        names = self._get_param("AlarmNames", []) or []
        if len(names) > 100:
            raise _ValidationError(
                f"1 validation error detected: Value at 'alarmNames' failed to satisfy constraint: "
                f"Member must have length less than or equal to 100 (got {len(names)})"
            )
        return original(self)

    CloudWatchResponse.describe_alarms = describe_alarms


def _cloudwatch_checks(response, operation, p):
    """CloudWatch actions on the alarms they name (SigV4 scope `monitoring`, IAM prefix `cloudwatch`)."""
    context = iam_requests._base_context(response)
    account, region = response.current_account, response.region

    def arn(name):
        return f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"

    names = []
    if operation in ("DescribeAlarms", "DeleteAlarms", "EnableAlarmActions", "DisableAlarmActions"):
        names = list(p.get("AlarmNames") or [])
    elif operation in ("DescribeAlarmHistory", "SetAlarmState", "PutMetricAlarm") and p.get("AlarmName"):
        names = [p["AlarmName"]]
    action = f"cloudwatch:{operation}"
    if not names:
        return [iam_requests.Check(action, "*", context)]
    return [iam_requests.Check(action, arn(n), context) for n in names]


def install():
    """Records and serves alarm history (call from server.py's main)."""
    _patch_update_state()
    _patch_describe_alarms()
    CloudWatchResponse.describe_alarm_history = describe_alarm_history
    iam_requests._SERVICES["monitoring"] = _cloudwatch_checks
