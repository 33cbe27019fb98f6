"""What exists on the AWS endpoint, seen with boto3 (not through eshop).

    inventory.py PROJECT            -> JSON: every resource tagged for PROJECT
    inventory.py PROJECT lookalikes -> creates untagged look-alikes, prints their ids

Run by tests/aws_target.rs with AWS_ENDPOINT_URL pointing at moto."""

import json
import os
import sys

import boto3

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
ec2 = boto3.client("ec2", endpoint_url=ENDPOINT)
asg = boto3.client("autoscaling", endpoint_url=ENDPOINT)
elb = boto3.client("elbv2", endpoint_url=ENDPOINT)
iam = boto3.client("iam", endpoint_url=ENDPOINT)
lam = boto3.client("lambda", endpoint_url=ENDPOINT)
sch = boto3.client("scheduler", endpoint_url=ENDPOINT)


def owned(project):
    return [
        {"Name": "tag:eshop/project", "Values": [project]},
        {"Name": "tag:eshop/target", "Values": ["aws"]},
    ]


def tags(lst):
    return {t["Key"]: t["Value"] for t in lst or []}


def rules(perms):
    out = []
    for p in perms:
        proto = p.get("IpProtocol")
        ports = [p.get("FromPort", -1), p.get("ToPort", -1)] if proto != "-1" else [-1, -1]
        for r in p.get("IpRanges", []):
            out.append([proto, *ports, r["CidrIp"]])
        for g in p.get("UserIdGroupPairs", []):
            out.append([proto, *ports, g["GroupId"]])
    return sorted(out)


def inventory(project):
    f = owned(project)
    inv = {}
    inv["vpcs"] = []
    for v in ec2.describe_vpcs(Filters=f)["Vpcs"]:
        dns = ec2.describe_vpc_attribute(VpcId=v["VpcId"], Attribute="enableDnsHostnames")
        inv["vpcs"].append({"id": v["VpcId"], "cidr": v["CidrBlock"], "dns_hostnames": dns["EnableDnsHostnames"]["Value"], "tags": tags(v.get("Tags"))})
    inv["subnets"] = [
        {"id": s["SubnetId"], "cidr": s["CidrBlock"], "az": s["AvailabilityZone"], "public_ip": s.get("MapPublicIpOnLaunch"), "vpc": s["VpcId"]}
        for s in ec2.describe_subnets(Filters=f)["Subnets"]
    ]
    inv["igws"] = [
        {"id": g["InternetGatewayId"], "attached": [a["VpcId"] for a in g.get("Attachments", [])]}
        for g in ec2.describe_internet_gateways(Filters=f)["InternetGateways"]
    ]
    inv["route_tables"] = [
        {
            "id": r["RouteTableId"],
            "default_to_igw": any(x.get("DestinationCidrBlock") == "0.0.0.0/0" and x.get("GatewayId", "").startswith("igw-") for x in r["Routes"]),
            "subnets": sorted(a["SubnetId"] for a in r.get("Associations", []) if "SubnetId" in a),
        }
        for r in ec2.describe_route_tables(Filters=f)["RouteTables"]
    ]
    inv["security_groups"] = [
        {"id": g["GroupId"], "role": tags(g.get("Tags")).get("eshop/role"), "rules": rules(g["IpPermissions"])}
        for g in ec2.describe_security_groups(Filters=f)["SecurityGroups"]
    ]
    inv["key_pairs"] = [k["KeyName"] for k in ec2.describe_key_pairs(Filters=f)["KeyPairs"]]
    inv["instances"] = []
    for r in ec2.describe_instances(Filters=f + [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])["Reservations"]:
        for i in r["Instances"]:
            vols = [m["Ebs"]["VolumeId"] for m in i.get("BlockDeviceMappings", []) if "Ebs" in m]
            enc = [v["Encrypted"] for v in ec2.describe_volumes(VolumeIds=vols)["Volumes"]] if vols else []
            inv["instances"].append({
                "id": i["InstanceId"], "role": tags(i.get("Tags")).get("eshop/role"), "type": i["InstanceType"],
                "state": i["State"]["Name"], "imdsv2": i.get("MetadataOptions", {}).get("HttpTokens"),
                "volumes_encrypted": enc, "subnet": i.get("SubnetId"), "key": i.get("KeyName"),
                "groups": sorted(g["GroupId"] for g in i.get("SecurityGroups", [])),
                "asg": tags(i.get("Tags")).get("aws:autoscaling:groupName"),
            })
    inv["addresses"] = [
        {"id": a["AllocationId"], "instance": a.get("InstanceId")} for a in ec2.describe_addresses(Filters=f)["Addresses"]
    ]
    inv["launch_templates"] = []
    for t in ec2.describe_launch_templates(Filters=f)["LaunchTemplates"]:
        v = ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"], Versions=["$Default"])["LaunchTemplateVersions"][0]
        d = v["LaunchTemplateData"]
        inv["launch_templates"].append({
            "id": t["LaunchTemplateId"], "type": d.get("InstanceType"),
            "imdsv2": d.get("MetadataOptions", {}).get("HttpTokens"),
            "encrypted": [m.get("Ebs", {}).get("Encrypted") for m in d.get("BlockDeviceMappings", [])],
            "user_data": bool(d.get("UserData")), "groups": d.get("SecurityGroupIds", []),
        })
    inv["auto_scaling_groups"] = []
    for g in asg.describe_auto_scaling_groups(Filters=[{"Name": "tag:eshop/project", "Values": [project]}])["AutoScalingGroups"]:
        pols = asg.describe_policies(AutoScalingGroupName=g["AutoScalingGroupName"])["ScalingPolicies"]
        inv["auto_scaling_groups"].append({
            "name": g["AutoScalingGroupName"], "min": g["MinSize"], "max": g["MaxSize"], "desired": g["DesiredCapacity"],
            "subnets": sorted(x for x in g.get("VPCZoneIdentifier", "").split(",") if x),
            "target_groups": g.get("TargetGroupARNs", []), "health_check": g.get("HealthCheckType"),
            "policies": [
                {"type": p.get("PolicyType"), "metric": p.get("TargetTrackingConfiguration", {}).get("PredefinedMetricSpecification", {}).get("PredefinedMetricType"),
                 "target": p.get("TargetTrackingConfiguration", {}).get("TargetValue")}
                for p in pols
            ],
        })
    inv["load_balancers"] = []
    lbs = elb.describe_load_balancers()["LoadBalancers"]
    for lb in lbs:
        t = tags(elb.describe_tags(ResourceArns=[lb["LoadBalancerArn"]])["TagDescriptions"][0]["Tags"])
        if t.get("eshop/project") != project:
            continue
        ls = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
        inv["load_balancers"].append({
            "arn": lb["LoadBalancerArn"], "scheme": lb["Scheme"], "type": lb["Type"],
            "subnets": sorted(z["SubnetId"] for z in lb["AvailabilityZones"]),
            "groups": lb.get("SecurityGroups", []),
            "listeners": [{"port": l["Port"], "protocol": l["Protocol"], "forward": [a.get("TargetGroupArn") for a in l["DefaultActions"]]} for l in ls],
        })
    inv["target_groups"] = []
    for tg in elb.describe_target_groups()["TargetGroups"]:
        t = tags(elb.describe_tags(ResourceArns=[tg["TargetGroupArn"]])["TagDescriptions"][0]["Tags"])
        if t.get("eshop/project") != project:
            continue
        inv["target_groups"].append({"arn": tg["TargetGroupArn"], "port": tg["Port"], "protocol": tg["Protocol"], "health": tg.get("HealthCheckPath"), "vpc": tg["VpcId"]})
    inv["roles"] = []
    for r in iam.list_roles()["Roles"]:
        t = tags(iam.list_role_tags(RoleName=r["RoleName"])["Tags"])
        if t.get("eshop/project") != project:
            continue
        pols = {p: iam.get_role_policy(RoleName=r["RoleName"], PolicyName=p)["PolicyDocument"] for p in iam.list_role_policies(RoleName=r["RoleName"])["PolicyNames"]}
        inv["roles"].append({"name": r["RoleName"], "arn": r["Arn"], "trust": r["AssumeRolePolicyDocument"], "policies": pols})
    inv["functions"] = []
    for fn in lam.list_functions()["Functions"]:
        t = lam.list_tags(Resource=fn["FunctionArn"])["Tags"]
        if t.get("eshop/project") != project:
            continue
        inv["functions"].append({"name": fn["FunctionName"], "arn": fn["FunctionArn"], "runtime": fn["Runtime"], "handler": fn["Handler"],
                                 "role": fn["Role"], "env": fn.get("Environment", {}).get("Variables", {}), "sha": fn["CodeSha256"]})
    inv["schedules"] = []
    for g in sch.list_schedule_groups()["ScheduleGroups"]:
        t = tags(sch.list_tags_for_resource(ResourceArn=g["Arn"])["Tags"])
        if t.get("eshop/project") != project:
            continue
        for s in sch.list_schedules(GroupName=g["Name"])["Schedules"]:
            d = sch.get_schedule(GroupName=g["Name"], Name=s["Name"])
            inv["schedules"].append({"group": g["Name"], "name": d["Name"], "expression": d["ScheduleExpression"],
                                     "tz": d.get("ScheduleExpressionTimezone"), "state": d.get("State"),
                                     "target": d["Target"]["Arn"], "role": d["Target"]["RoleArn"], "input": d["Target"].get("Input")})
    return inv


def lookalikes(project):
    """Untagged resources with eshop-like names: destroy must leave them."""
    name = [{"Key": "Name", "Value": f"eshop-{project}-vpc"}]
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": name}])["Vpc"]["VpcId"]
    sg = ec2.create_security_group(GroupName=f"eshop-{project}-nodes", Description="look-alike", VpcId=vpc)["GroupId"]
    ami = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                             TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": f"eshop-{project}-control-plane"}, {"Key": "eshop/project", "Value": "someone-else"}]}])["Instances"][0]["InstanceId"]
    role = iam.create_role(RoleName=f"eshop-{project}-lookalike", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))["Role"]["RoleName"]
    return {"vpc": vpc, "sg": sg, "instance": inst, "role": role}


def lookalikes_alive(ids):
    alive = {}
    alive["vpc"] = bool(ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [ids["vpc"]]}])["Vpcs"])
    alive["sg"] = bool(ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [ids["sg"]]}])["SecurityGroups"])
    st = ec2.describe_instances(InstanceIds=[ids["instance"]])["Reservations"][0]["Instances"][0]["State"]["Name"]
    alive["instance"] = st == "running"
    alive["role"] = any(r["RoleName"] == ids["role"] for r in iam.list_roles()["Roles"])
    return alive


if __name__ == "__main__":
    project = sys.argv[1]
    cmd = sys.argv[2] if len(sys.argv) > 2 else "inventory"
    if cmd == "inventory":
        print(json.dumps(inventory(project), default=str))
    elif cmd == "lookalikes":
        print(json.dumps(lookalikes(project)))
    elif cmd == "alive":
        print(json.dumps(lookalikes_alive(json.loads(sys.argv[3]))))
    else:
        sys.exit(f"unknown command {cmd}")
