"""What IAM authorizes for the notifications the planner and refresher send (`[notify]`), which
`iam_requests.py` does not model: SNS actions name their topic, and PutEvents is authorized per
entry on its event bus with the entry's `events:source` and `events:detail-type`.

  SNS            https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsns.html
                 (Publish, CreateTopic, DeleteTopic, GetTopicAttributes, TagResource,
                 ListTagsForResource: resource type `topic`)
  EventBridge    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoneventbridge.html
                 and https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-custom-bus-access-actions.html
                 (PutEvents: resource type `event-bus`; EventBridge supplies `events:source` and
                 `events:detail-type` on PutEvents)

Without this an allowed Publish on a topic ARN would be evaluated against "*" and refused, and
PutEvents could not be held to its source condition.
"""

import iam_requests
from iam_requests import Check
from protocol import members


def _arn(response, service, resource):
    return f"arn:aws:{service}:{response.region}:{response.current_account}:{resource}"


def _sns(response, operation, p):
    """Topic actions name the topic (TopicArn), tag actions its ARN (ResourceArn)."""
    arn = p.get("TopicArn") or p.get("ResourceArn") or p.get("TargetArn")
    if not arn and operation == "CreateTopic" and p.get("Name"):
        arn = _arn(response, "sns", p["Name"])
    return [Check(f"sns:{operation}", arn or "*", iam_requests._base_context(response))]


def _entry_bus(response, entry):
    bus = entry.get("EventBusName") or "default"
    return bus if bus.startswith("arn:") else _arn(response, "events", f"event-bus/{bus}")


def install():
    """Adds SNS and per-entry PutEvents to what `iam_requests.checks` knows (call from server.py)."""
    rules = iam_requests._SERVICES["events"]

    def events(response, operation, p):
        if operation != "PutEvents":
            return rules(response, operation, p)
        checks = []
        for entry in members(p.get("Entries")):
            context = dict(iam_requests._base_context(response))
            context["events:source"] = entry.get("Source")
            context["events:detail-type"] = entry.get("DetailType")
            checks.append(Check("events:PutEvents", _entry_bus(response, entry), context))
        return checks or [Check("events:PutEvents", _arn(response, "events", "event-bus/default"), iam_requests._base_context(response))]

    iam_requests._SERVICES["sns"] = _sns
    iam_requests._SERVICES["events"] = events
