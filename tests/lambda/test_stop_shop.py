"""Drives templates/lambda/stop_shop.py against a real moto server
(AWS_ENDPOINT_URL), checking the effects with separate boto3 clients.
Run by tests/lambda_handler.rs; exits non-zero on the first failed check."""

import importlib.util
import os
import sys

import boto3

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "stop_shop", os.path.join(HERE, "..", "..", "templates", "lambda", "stop_shop.py")
)
stop_shop = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stop_shop)

ec2 = boto3.client("ec2", endpoint_url=ENDPOINT)
asg = boto3.client("autoscaling", endpoint_url=ENDPOINT)
ami = ec2.describe_images()["Images"][0]["ImageId"]


def tags(project, target="aws"):
    t = [{"Key": "eshop/project", "Value": project}]
    if target:
        t.append({"Key": "eshop/target", "Value": target})
    return t


def instance(tag_list):
    spec = {"ResourceType": "instance", "Tags": tag_list} if tag_list else None
    kwargs = {"ImageId": ami, "MinCount": 1, "MaxCount": 1, "InstanceType": "t3.micro"}
    if spec:
        kwargs["TagSpecifications"] = [spec]
    return ec2.run_instances(**kwargs)["Instances"][0]["InstanceId"]


def state(iid):
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]


def group(name, project, size):
    ec2.create_launch_template(
        LaunchTemplateName=f"{name}-lt", LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.micro"}
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": f"{name}-lt"},
        MinSize=size,
        MaxSize=4,
        DesiredCapacity=size,
        AvailabilityZones=["eu-west-1a"],
        Tags=[
            {"Key": k["Key"], "Value": k["Value"], "PropagateAtLaunch": True,
             "ResourceId": name, "ResourceType": "auto-scaling-group"}
            for k in tags(project)
        ],
    )


def sizes(name):
    g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return g["MinSize"], g["DesiredCapacity"], {t["Key"]: t["Value"] for t in g.get("Tags", [])}


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


control_plane = instance(tags("shop"))
untagged = instance(None)
other_project = instance(tags("other"))
local_target = instance(tags("shop", target="local"))
group("shop-workers", "shop", 2)
group("other-workers", "other", 2)
members = [
    i["InstanceId"]
    for i in asg.describe_auto_scaling_groups(AutoScalingGroupNames=["shop-workers"])["AutoScalingGroups"][0]["Instances"]
]
check(len(members) == 2, "the shop's group has two members before 18:00")

os.environ["ESHOP_PROJECT"] = "shop"
out = stop_shop.handler({"action": "stop"}, None)
check(out["stopped"] == [control_plane], f"only the standalone control plane is stopped: {out}")
check(out["scaled_to_zero"] == ["shop-workers"], f"the shop's group is scaled to zero: {out}")
check(state(control_plane) in ("stopping", "stopped"), "control plane stopping/stopped")
for iid, what in [(untagged, "untagged"), (other_project, "other project"), (local_target, "other target")]:
    check(state(iid) == "running", f"{what} instance left alone")
mn, desired, t = sizes("shop-workers")
check((mn, desired) == (0, 0), "shop-workers min/desired are 0")
check((t["eshop/saved-min-size"], t["eshop/saved-desired-capacity"]) == ("2", "2"), "day-time sizes remembered")
check(sizes("other-workers")[:2] == (2, 2), "the other project's group is untouched")
for m in members:
    check(state(m) != "stopped", "group members are not stopped one by one (the group would replace them)")

again = stop_shop.handler({}, None)
check(again["scaled_to_zero"] == [], f"a second stop changes no group: {again}")
check(sizes("shop-workers")[2]["eshop/saved-desired-capacity"] == "2", "saved sizes survive a second stop")

morning = stop_shop.handler({"action": "start"}, None)
check(morning["restored"] == ["shop-workers"] and morning["started"] == [control_plane], f"morning start: {morning}")
check(sizes("shop-workers")[:2] == (2, 2), "the group is back to its day-time size")
check(state(control_plane) in ("pending", "running"), "control plane starting")

try:
    stop_shop.handler({"action": "explode"}, None)
    check(False, "unknown actions are refused")
except ValueError:
    check(True, "unknown actions are refused")
print("all checks passed")
