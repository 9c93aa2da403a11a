"""A successful instance refresh replaces the group's instances with instances launched from its
desired configuration: "An instance refresh ... replaces instances in your Auto Scaling group"
(https://docs.aws.amazon.com/autoscaling/ec2/userguide/asg-instance-refresh.html). moto leaves
the old instances running on the old image; `replace(group)` terminates them and launches as
many from the group's (new) launch template version, so DescribeInstances shows what AWS
would: the new image on every instance of a refreshed group, the old one on the others.
"""

import sys


def replace(group):
    """Swaps every instance of `group` for one launched from its current launch template."""
    old = list(group.instance_states)
    if not old:
        return
    try:
        group.instance_states = []
        group.replace_autoscaling_group_instances(len(old), {})
        backend = group.autoscaling_backend
        # As a refresh does, the new instances join the group's load balancers and target
        # groups and the old ones leave them before they terminate.
        backend.update_attached_elbs(group.name)
        backend.update_attached_target_groups(group.name)
        if group.target_group_arns:
            for target_group in backend.elbv2_backend.describe_target_groups(
                target_group_arns=group.target_group_arns, load_balancer_arn=None, names=None
            ):
                backend.elbv2_backend.deregister_targets(
                    target_group.arn, [{"Id": state.instance.id} for state in old]
                )
        backend.ec2_backend.terminate_instances([state.instance.id for state in old])
    except Exception as e:  # never take the server down over this
        print(f"emulator: cannot replace the instances of {group.name}: {e!r}", file=sys.stderr)
