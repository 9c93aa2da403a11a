"""StartInstanceRefresh and RollbackInstanceRefresh validation as AWS documents it.

moto 5.2.5 has no instance refresh; server.py adds one and calls `check_start` before it
starts a refresh and `check_rollback` before it rolls one back. Each rule cites its page;
tests/refresh_rules.rs shows each refusal. Every refusal is a `ValidationError`, as AWS
answers a request it will not run.

Not enforced, because AWS documents it as allowed: SkipMatching without a desired
configuration ("If you start an instance refresh with skip matching, but you don't specify
a desired configuration, Amazon EC2 Auto Scaling checks to see if any instances match the
configuration that you last saved on the Auto Scaling group"):
  https://docs.aws.amazon.com/autoscaling/ec2/userguide/asg-instance-refresh-skip-matching.html

Also here: the images the project's tests and demo roll out (moto knows only its own
catalogue, and an AMI must exist for the planner's check), and applying a successful
refresh's desired MixedInstancesPolicy to the group.
"""

from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.core.exceptions import ServiceException

from protocol import members


PREFERENCES = "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RefreshPreferences.html"
ROLLBACK = "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RollbackInstanceRefresh.html"
ROLLBACK_GUIDE = "https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-rollback.html"

SSM_PREFIX = "resolve:ssm:"
FLOATING = ("$Latest", "$Default")


class ValidationError(ServiceException):
    code = "ValidationError"


def _int(value, name):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be an integer, not {value!r}")


def _true(value):
    return str(value).lower() == "true"


def _range(preferences, name, low, high):
    if preferences.get(name) is None:
        return None
    value = _int(preferences[name], name)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValidationError(f"{name} must be {bound}, not {value}.")
    return value


def _spec_of(configuration):
    """The launch template specification of a group or desired configuration (dict)."""
    if not configuration:
        return None
    if configuration.get("LaunchTemplate"):
        return configuration["LaunchTemplate"]
    mixed = (configuration.get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {}
    return mixed.get("LaunchTemplateSpecification")


def _group_spec(group):
    if getattr(group, "mixed_instances_policy", None):
        spec = _spec_of({"MixedInstancesPolicy": group.mixed_instances_policy})
        if spec:
            return dict(spec, Version=group.launch_template_version)
    template = getattr(group, "ec2_launch_template", None)
    if template is None:
        return None
    return {"LaunchTemplateId": template.id, "Version": group.launch_template_version}


def _image_of(account, region, spec):
    """The ImageId of the launch template version `spec` names, or None."""
    if not spec:
        return None
    backend = ec2_backends[account][region]
    try:
        if spec.get("LaunchTemplateId"):
            template = backend.get_launch_template(spec["LaunchTemplateId"])
        else:
            template = backend.get_launch_template_by_name(spec.get("LaunchTemplateName"))
        return template.get_version(spec.get("Version") or "$Default").image_id
    except Exception:
        return None


def check_start(account, region, group, params):
    """Refuses a StartInstanceRefresh that AWS refuses (call before starting it)."""
    preferences = params.get("Preferences") or {}
    desired = params.get("DesiredConfiguration") or None
    # MinHealthyPercentage: "Value range is 0 to 100." (PREFERENCES)
    minimum = _range(preferences, "MinHealthyPercentage", 0, 100)
    # MaxHealthyPercentage: "Value range is 100 to 200." (PREFERENCES)
    maximum = _range(preferences, "MaxHealthyPercentage", 100, 200)
    if maximum is not None:
        # "If you specify MaxHealthyPercentage, you must also specify MinHealthyPercentage,
        # and the difference between them cannot be greater than 100." (PREFERENCES)
        if minimum is None:
            raise ValidationError("MinHealthyPercentage must be specified when MaxHealthyPercentage is.")
        if maximum - minimum > 100:
            raise ValidationError(
                f"The difference between MaxHealthyPercentage ({maximum}) and MinHealthyPercentage ({minimum}) cannot be greater than 100."
            )
    # InstanceWarmup: minimum 0; CheckpointDelay and BakeTime: 0 to 172800 (PREFERENCES,
    # the RefreshInstanceWarmup, CheckpointDelay and BakeTime shapes).
    _range(preferences, "InstanceWarmup", 0, None)
    delay = _range(preferences, "CheckpointDelay", 0, 172800)
    _range(preferences, "BakeTime", 0, 172800)
    checkpoints = [_int(c, "CheckpointPercentages") for c in members(preferences.get("CheckpointPercentages"))]
    # CheckpointDelay: "if you specify a value for it, you must also specify a value for
    # CheckpointPercentages." (PREFERENCES)
    if delay is not None and not checkpoints:
        raise ValidationError("CheckpointDelay requires CheckpointPercentages.")
    # CheckpointPercentages: "Threshold values for each checkpoint in ascending order. Each
    # number must be unique." Each is a NonZeroIntPercent, 1 to 100. (PREFERENCES)
    for previous, current in zip([0] + checkpoints, checkpoints):
        if current < 1 or current > 100 or current <= previous:
            raise ValidationError(
                f"CheckpointPercentages must be unique values from 1 to 100 in ascending order: {checkpoints}."
            )
    if _true(preferences.get("AutoRollback")):
        _check_rollback_supported(account, region, group, desired, "AutoRollback")


def _check_rollback_supported(account, region, group, desired, what):
    """AutoRollback and RollbackInstanceRefresh: "A rollback is not supported in the
    following situations: There is no desired configuration specified for the instance
    refresh. The Auto Scaling group has a launch template that uses an AWS Systems Manager
    parameter instead of an AMI ID for the ImageId property. The Auto Scaling group uses the
    launch template's $Latest or $Default version." (PREFERENCES, AutoRollback; ROLLBACK;
    ROLLBACK_GUIDE)"""
    if not desired:
        raise ValidationError(f"{what} is not supported without a desired configuration.")
    desired_spec = _spec_of(desired)
    group_spec = _group_spec(group)
    for spec in (desired_spec, group_spec):
        if spec and (spec.get("Version") or "$Default") in FLOATING:
            raise ValidationError(
                f"{what} is not supported when the Auto Scaling group uses the launch template's $Latest or $Default version."
            )
    for spec in (group_spec, desired_spec):
        image = _image_of(account, region, spec) or ""
        if image.startswith(SSM_PREFIX):
            raise ValidationError(
                f"{what} is not supported when the launch template uses a Systems Manager parameter ({image}) instead of an AMI ID for ImageId."
            )


def check_rollback(account, region, group, refresh):
    """Refuses a RollbackInstanceRefresh that AWS refuses (call before rolling back)."""
    _check_rollback_supported(account, region, group, refresh.desired or None, "Rollback")


def apply_mixed(group, desired):
    """A successful refresh with a desired MixedInstancesPolicy leaves the group on it
    ("Once the instance refresh succeeds, Amazon EC2 Auto Scaling updates the settings of
    the Auto Scaling group to reflect the new desired configuration", StartInstanceRefresh,
    DesiredConfiguration). Returns whether there was one to apply."""
    policy = (desired or {}).get("MixedInstancesPolicy")
    if not policy:
        return False
    template = dict(policy.get("LaunchTemplate") or {})
    template["Overrides"] = members(template.get("Overrides"))
    merged = dict(group.mixed_instances_policy or {})
    merged["LaunchTemplate"] = template
    if policy.get("InstancesDistribution"):
        merged["InstancesDistribution"] = policy["InstancesDistribution"]
    group.mixed_instances_policy = merged
    group._set_launch_configuration(None, None, merged)
    return True


# --- Images ---------------------------------------------------------------------------------

# The AMIs the project's tests and demo use, as if registered in every region: moto's own
# catalogue holds other ids, and the planner refuses an AMI DescribeImages does not know.
KNOWN_IMAGES = {
    "ami-11111111": "x86_64",
    "ami-22222222": "x86_64",
    "ami-0123456789abcdef0": "x86_64",
    "ami-0fedcba9876543210": "x86_64",
    "ami-0aaaaaaaaaaaaaaaa": "x86_64",
}
_extra_images = {}  # image id -> {"architecture": ..., "state": ...}, added over HTTP


def add_image(image_id, architecture="x86_64", state="available"):
    """Registers an image in every region's backend, now and after a reset."""
    _extra_images[image_id] = {"architecture": architecture, "state": state}
    for account in list(ec2_backends.keys()):
        for region in list(ec2_backends[account].keys()):
            _put_image(ec2_backends[account][region], image_id, architecture, state)


def _put_image(backend, image_id, architecture, state):
    image = Ami(
        backend,
        ami_id=image_id,
        name=f"asg-refresh emulator image {image_id}",
        architecture=architecture,
        state=state,
        owner_id=backend.account_id,
        public=False,
    )
    backend.amis[image_id] = image


def patch_images():
    original = AmiBackend._load_amis

    def load_amis(self):
        original(self)
        images = {k: {"architecture": v, "state": "available"} for k, v in KNOWN_IMAGES.items()}
        images.update(_extra_images)
        for image_id, spec in images.items():
            _put_image(self, image_id, spec["architecture"], spec["state"])

    AmiBackend._load_amis = load_amis


def reset():
    _extra_images.clear()
