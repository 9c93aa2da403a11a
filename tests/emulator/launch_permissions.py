"""What an Auto Scaling call that names a launch template needs beyond its own action.

AWS: "An IAM user or role that creates or updates an Auto Scaling group using a launch template
must have permission to use the ec2:RunInstances action. Users without this permission receive
an error that they are not authorized to use the launch template", with `iam:PassRole` on the
role of the template's instance profile and `ec2:CreateTags` when the template tags what it
launches:
  https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-launch-template-permissions.html
  https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-api-permissions.html
StartInstanceRefresh with a DesiredConfiguration is refused the same way ("You are not
authorized to use launch template: ..."). The emulator checks, for each launch template the
call names (LaunchTemplate, MixedInstancesPolicy and its overrides, for CreateAutoScalingGroup,
UpdateAutoScalingGroup and StartInstanceRefresh's DesiredConfiguration), the version it resolves
to:
* ec2:RunInstances on the launch template, its image, the instance, volume and network
  interface to be created, the template's security groups and the group's subnets, each with
  `ec2:LaunchTemplate` (the template's ARN) and `ec2:IsLaunchTemplateResource` ("true" for what
  the template specifies or launches, "false" for the group's subnets), as RunInstances with a
  launch template is authorized:
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/use-launch-templates-to-control-launching-instances.html
  https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html#amazonec2-RunInstances
* iam:PassRole on each role of the template's instance profile, with
  `iam:PassedToService` = ec2.amazonaws.com:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#ck_PassedToService
* ec2:CreateTags on the instances and volumes it tags, with `ec2:CreateAction` = RunInstances:
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html
"""

from moto.iam.models import iam_backends

import iam_requests
from iam_requests import Check
from protocol import members

_OPERATIONS = ("CreateAutoScalingGroup", "UpdateAutoScalingGroup", "StartInstanceRefresh")


def _specs(operation, p):
    """Every launch template specification the call names."""
    source = (p.get("DesiredConfiguration") or {}) if operation == "StartInstanceRefresh" else p
    specs = []
    if source.get("LaunchTemplate"):
        specs.append(source["LaunchTemplate"])
    mixed = (source.get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {}
    if mixed.get("LaunchTemplateSpecification"):
        specs.append(mixed["LaunchTemplateSpecification"])
    for override in members(mixed.get("Overrides")):
        if isinstance(override, dict) and override.get("LaunchTemplateSpecification"):
            specs.append(override["LaunchTemplateSpecification"])
    return specs


def _subnets(p, group):
    zones = p.get("VPCZoneIdentifier") or (getattr(group, "vpc_zone_identifier", None) if group is not None else None)
    return [s.strip() for s in (zones or "").split(",") if s.strip()]


def _instance_profile_roles(response, profile):
    backend = iam_backends[response.current_account]["aws"]
    try:
        if profile.get("Arn"):
            found = backend.get_instance_profile_by_arn(profile["Arn"])
        else:
            found = backend.get_instance_profile(profile.get("Name"))
    except Exception:
        return []
    return [role.arn for role in found.roles]


def _template_checks(response, spec, subnets):
    template = iam_requests.launch_template(response, spec.get("LaunchTemplateId"), spec.get("LaunchTemplateName"))
    if template is None:
        return []
    try:
        version = template.get_version(spec.get("Version") or "$Default")
    except Exception:
        return []
    data = version.data or {}
    region, account = response.region, response.current_account
    template_arn = iam_requests.launch_template_arn(response, template.id)
    prefix = f"You are not authorized to use launch template: {template.id}. "
    base = {"aws:RequestedRegion": region, "ec2:LaunchTemplate": template_arn}

    def run(resource, from_template=True, tags=None):
        context = dict(base, **{"ec2:IsLaunchTemplateResource": "true" if from_template else "false"})
        for key, value in (tags or {}).items():
            context[f"aws:ResourceTag/{key}"] = value
            context[f"ec2:ResourceTag/{key}"] = value
        return Check("ec2:RunInstances", resource, context, prefix)

    ec2 = f"arn:aws:ec2:{region}:{account}"
    checks = [run(template_arn, tags=iam_requests.ec2_tags(response, template.id))]
    if data.get("ImageId"):
        checks.append(run(f"arn:aws:ec2:{region}::image/{data['ImageId']}"))
    checks.extend(run(f"{ec2}:{kind}/*") for kind in ("instance", "volume", "network-interface"))
    for group_id in members(data.get("SecurityGroupIds")):
        checks.append(run(f"{ec2}:security-group/{group_id}"))
    checks.extend(run(f"{ec2}:subnet/{subnet}", from_template=False) for subnet in subnets)
    profile = data.get("IamInstanceProfile")
    if profile:
        for role_arn in _instance_profile_roles(response, profile):
            context = {"aws:RequestedRegion": region, "iam:PassedToService": "ec2.amazonaws.com"}
            checks.append(Check("iam:PassRole", role_arn, context, prefix))
    tagged = {spec.get("ResourceType") for spec in members(data.get("TagSpecifications")) if isinstance(spec, dict)}
    for kind in sorted(k for k in tagged if k in ("instance", "volume", "network-interface")):
        context = dict(base, **{"ec2:CreateAction": "RunInstances"})
        checks.append(Check("ec2:CreateTags", f"{ec2}:{kind}/*", context, prefix))
    return checks


def checks(response, operation, p, group):
    """The dependent authorizations of an Auto Scaling call (none for other operations)."""
    if operation not in _OPERATIONS:
        return []
    subnets = _subnets(p, group)
    out = []
    for spec in _specs(operation, p):
        if isinstance(spec, dict):
            out.extend(_template_checks(response, spec, subnets))
    return out
