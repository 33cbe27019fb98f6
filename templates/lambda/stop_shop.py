"""Stops the shop's EC2 capacity at the end of the day (phase 4), and
optionally starts it again in the morning.

Found by tags, never by ids, so it keeps working as instances come and go:
everything tagged eshop/project=<ESHOP_PROJECT> and eshop/target=aws.

Auto Scaling group members cannot simply be stopped: the group would see
unhealthy capacity and replace it. So the groups are scaled to zero (their
minimum and desired sizes are remembered in tags for the morning start),
and only standalone instances (the control plane) are stopped.

Event: {"action": "stop"} (default) or {"action": "start"}.
Environment: ESHOP_PROJECT (required), AWS_ENDPOINT_URL (tests, emulators).
"""

import os

import boto3

PROJECT_TAG = "eshop/project"
TARGET_TAG = "eshop/target"
SAVED_MIN = "eshop/saved-min-size"
SAVED_DESIRED = "eshop/saved-desired-capacity"


def _clients():
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    return (
        boto3.client("ec2", endpoint_url=endpoint),
        boto3.client("autoscaling", endpoint_url=endpoint),
    )


def _owned_groups(asg, project):
    groups = []
    for page in asg.get_paginator("describe_auto_scaling_groups").paginate(
        Filters=[
            {"Name": f"tag:{PROJECT_TAG}", "Values": [project]},
            {"Name": f"tag:{TARGET_TAG}", "Values": ["aws"]},
        ]
    ):
        groups.extend(page["AutoScalingGroups"])
    return groups


def _owned_instances(ec2, project, states):
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": f"tag:{PROJECT_TAG}", "Values": [project]},
            {"Name": f"tag:{TARGET_TAG}", "Values": ["aws"]},
            {"Name": "instance-state-name", "Values": states},
        ]
    ):
        for reservation in page["Reservations"]:
            found.extend(reservation["Instances"])
    return found


def _is_asg_member(instance):
    return any(t["Key"] == "aws:autoscaling:groupName" for t in instance.get("Tags", []))


def _tag(asg, name, key, value):
    asg.create_or_update_tags(
        Tags=[
            {
                "ResourceId": name,
                "ResourceType": "auto-scaling-group",
                "Key": key,
                "Value": str(value),
                "PropagateAtLaunch": False,
            }
        ]
    )


def stop(project):
    ec2, asg = _clients()
    scaled = []
    for g in _owned_groups(asg, project):
        if g["DesiredCapacity"] == 0 and g["MinSize"] == 0:
            continue
        # Remember the day-time sizes before scaling to zero (idempotent:
        # a second run sees zero and leaves the saved values alone).
        _tag(asg, g["AutoScalingGroupName"], SAVED_MIN, g["MinSize"])
        _tag(asg, g["AutoScalingGroupName"], SAVED_DESIRED, g["DesiredCapacity"])
        asg.update_auto_scaling_group(
            AutoScalingGroupName=g["AutoScalingGroupName"], MinSize=0, DesiredCapacity=0
        )
        scaled.append(g["AutoScalingGroupName"])
    standalone = [
        i["InstanceId"]
        for i in _owned_instances(ec2, project, ["pending", "running"])
        if not _is_asg_member(i)
    ]
    if standalone:
        ec2.stop_instances(InstanceIds=standalone)
    return {"scaled_to_zero": sorted(scaled), "stopped": sorted(standalone)}


def start(project):
    ec2, asg = _clients()
    restored = []
    for g in _owned_groups(asg, project):
        tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
        if SAVED_DESIRED not in tags:
            continue
        asg.update_auto_scaling_group(
            AutoScalingGroupName=g["AutoScalingGroupName"],
            MinSize=int(tags.get(SAVED_MIN, "0")),
            DesiredCapacity=int(tags[SAVED_DESIRED]),
        )
        restored.append(g["AutoScalingGroupName"])
    stopped = [
        i["InstanceId"] for i in _owned_instances(ec2, project, ["stopped"]) if not _is_asg_member(i)
    ]
    if stopped:
        ec2.start_instances(InstanceIds=stopped)
    return {"restored": sorted(restored), "started": sorted(stopped)}


def handler(event, context):
    project = os.environ["ESHOP_PROJECT"]
    action = (event or {}).get("action", "stop")
    if action == "stop":
        return stop(project)
    if action == "start":
        return start(project)
    raise ValueError(f"unknown action {action!r}: expected stop or start")
