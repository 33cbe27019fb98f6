"""What a tool left in the emulator for one project, checked against the
resource set of eshop's phases 3-4 (see bench/aws/main.tf).

    python inventory.py ENDPOINT PROJECT present|absent

present: every resource exists once, with the settings that matter (CIDRs,
rules, sizes, IMDSv2, encryption, runtime, schedule...). absent: nothing
owned by the project is left (terminated instances do not count).
Found by tag (eshop/project) or, where the emulator cannot filter by tag,
by the eshop-<project> name prefix. Prints one line per failed check and
exits 1 if there is any; prints a one-line summary otherwise.

Run with the python of the test virtualenv (boto3); credentials and region
come from the environment (AWS_ACCESS_KEY_ID, AWS_DEFAULT_REGION...).
"""

import json
import sys

import boto3

endpoint, project, mode = sys.argv[1:4]
assert mode in ("present", "absent"), mode
prefix = f"eshop-{project}"
owned = [{"Name": "tag:eshop/project", "Values": [project]}]


def client(name):
    return boto3.client(name, endpoint_url=endpoint)


ec2, elb, asg = client("ec2"), client("elbv2"), client("autoscaling")
iam, lam, sch = client("iam"), client("lambda"), client("scheduler")

failures = []
counts = {}


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")


def count(kind, items):
    counts[kind] = len(items)
    return items


def tags_of(obj):
    return {t["Key"]: t["Value"] for t in obj.get("Tags") or []}


def guarded(kind):
    """Runs one block of checks; an API error is a failed check, not a crash."""

    def wrap(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported, then carry on
            failures.append(f"{kind}: {type(e).__name__}: {e}")
        return fn

    return wrap


present = mode == "present"
ids = {}


@guarded("vpc")
def _vpc():
    vpcs = count("vpc", ec2.describe_vpcs(Filters=owned)["Vpcs"])
    if not present:
        return
    check("vpcs", len(vpcs), 1)
    if vpcs:
        v = vpcs[0]
        ids["vpc"] = v["VpcId"]
        check("vpc cidr", v["CidrBlock"], "10.42.0.0/16")
        attr = ec2.describe_vpc_attribute(VpcId=v["VpcId"], Attribute="enableDnsHostnames")
        check("vpc dns hostnames", attr["EnableDnsHostnames"]["Value"], True)


@guarded("internet gateway")
def _igw():
    igws = count("igw", ec2.describe_internet_gateways(Filters=owned)["InternetGateways"])
    if not present:
        return
    check("internet gateways", len(igws), 1)
    if igws:
        ids["igw"] = igws[0]["InternetGatewayId"]
        check(
            "igw attached to",
            [a["VpcId"] for a in igws[0].get("Attachments", [])],
            [ids.get("vpc")],
        )


@guarded("subnets")
def _subnets():
    subnets = count("subnet", ec2.describe_subnets(Filters=owned)["Subnets"])
    if not present:
        return
    ids["subnets"] = {s["SubnetId"] for s in subnets}
    check(
        "subnets (cidr, zone, public ip)",
        sorted((s["CidrBlock"], s["AvailabilityZone"], s["MapPublicIpOnLaunch"]) for s in subnets),
        [("10.42.1.0/24", "eu-west-1a", True), ("10.42.2.0/24", "eu-west-1b", True)],
    )


@guarded("route table")
def _routes():
    tables = count("route_table", ec2.describe_route_tables(Filters=owned)["RouteTables"])
    if not present:
        return
    check("route tables", len(tables), 1)
    if tables:
        t = tables[0]
        check(
            "default route",
            [r.get("GatewayId") for r in t["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"],
            [ids.get("igw")],
        )
        check(
            "route table associations",
            {a["SubnetId"] for a in t["Associations"] if a.get("SubnetId")},
            ids.get("subnets"),
        )


def rules(sg):
    """Ingress as a set of (protocol, from, to, source)."""
    out = set()
    for p in sg["IpPermissions"]:
        key = (p["IpProtocol"], p.get("FromPort", -1), p.get("ToPort", -1))
        if key[0] == "-1":
            key = ("-1", -1, -1)
        for r in p.get("IpRanges", []):
            out.add(key + (r["CidrIp"],))
        for g in p.get("UserIdGroupPairs", []):
            out.add(key + ("self" if g["GroupId"] == sg["GroupId"] else "lb",))
    return out


@guarded("security groups")
def _sgs():
    sgs = count("security_group", ec2.describe_security_groups(Filters=owned)["SecurityGroups"])
    if not present:
        return
    check("security groups", len(sgs), 2)
    lb = [g for g in sgs if ("tcp", 443, 443, "0.0.0.0/0") in rules(g)]
    nodes = [g for g in sgs if g not in lb]
    if len(lb) != 1 or len(nodes) != 1:
        failures.append(f"security groups: cannot tell lb from nodes: {[rules(g) for g in sgs]}")
        return
    ids["sg_lb"], ids["sg_nodes"] = lb[0]["GroupId"], nodes[0]["GroupId"]
    check(
        "lb ingress",
        rules(lb[0]),
        {("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0")},
    )
    check(
        "nodes ingress",
        rules(nodes[0]),
        {
            ("-1", -1, -1, "self"),
            ("tcp", 30080, 30080, "lb"),
            ("tcp", 22, 22, "203.0.113.0/24"),
            ("tcp", 6443, 6443, "203.0.113.0/24"),
        },
    )
    for g in sgs:
        check(
            f"egress of {g['GroupName']}",
            [(p["IpProtocol"], [r["CidrIp"] for r in p.get("IpRanges", [])]) for p in g["IpPermissionsEgress"]],
            [("-1", ["0.0.0.0/0"])],
        )


@guarded("key pair")
def _keys():
    keys = count(
        "key_pair",
        [k for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith(prefix)],
    )
    if present:
        check("key pairs", len(keys), 1)
        if keys:
            ids["key"] = keys[0]["KeyName"]


@guarded("instances")
def _instances():
    live = ["pending", "running", "stopping", "stopped"]
    found = []
    for r in ec2.describe_instances(
        Filters=owned + [{"Name": "instance-state-name", "Values": live}]
    )["Reservations"]:
        found.extend(r["Instances"])
    count("instance", found)
    if not present:
        return
    standalone = [i for i in found if "aws:autoscaling:groupName" not in tags_of(i)]
    check("standalone (control-plane) instances", len(standalone), 1)
    check("worker instances (ASG members)", len(found) - len(standalone), 2)
    for i in found:
        check(f"{i['InstanceId']} type", i["InstanceType"], "t3.medium")
        check(f"{i['InstanceId']} key", i.get("KeyName"), ids.get("key"))
        check(
            f"{i['InstanceId']} security groups",
            [g["GroupId"] for g in i["SecurityGroups"]],
            [ids.get("sg_nodes")],
        )
    if standalone:
        cp = standalone[0]
        ids["control_plane"] = cp["InstanceId"]
        # Workers only: moto ignores the launch template's MetadataOptions
        # when the group launches them (the template itself is checked).
        check("control plane IMDSv2", cp.get("MetadataOptions", {}).get("HttpTokens"), "required")
        check("control plane subnet is a shop subnet", cp["SubnetId"] in ids.get("subnets", ()), True)
        vols = [
            m["Ebs"]["VolumeId"] for m in cp.get("BlockDeviceMappings", []) if "Ebs" in m
        ]
        if vols:
            v = ec2.describe_volumes(VolumeIds=vols[:1])["Volumes"][0]
            check("control plane root volume", (v["VolumeType"], v["Size"], v["Encrypted"]), ("gp3", 20, True))


@guarded("elastic ip")
def _eips():
    eips = count("eip", ec2.describe_addresses(Filters=owned)["Addresses"])
    if present:
        check("elastic ips", len(eips), 1)
        if eips:
            check("elastic ip instance", eips[0].get("InstanceId"), ids.get("control_plane"))


@guarded("launch template")
def _lt():
    lts = count("launch_template", ec2.describe_launch_templates(Filters=owned)["LaunchTemplates"])
    if not present:
        return
    check("launch templates", len(lts), 1)
    if not lts:
        return
    ids["lt"] = lts[0]["LaunchTemplateId"]
    d = ec2.describe_launch_template_versions(
        LaunchTemplateId=ids["lt"], Versions=["$Latest"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    check("launch template type", d.get("InstanceType"), "t3.medium")
    check("launch template IMDSv2", d.get("MetadataOptions", {}).get("HttpTokens"), "required")
    check("launch template key", d.get("KeyName"), ids.get("key"))
    sgs = d.get("SecurityGroupIds") or [
        g for n in d.get("NetworkInterfaces", []) for g in n.get("Groups", [])
    ]
    check("launch template security groups", sgs, [ids.get("sg_nodes")])
    check("launch template has user data", bool(d.get("UserData")), True)
    ebs = [m["Ebs"] for m in d.get("BlockDeviceMappings", []) if "Ebs" in m]
    check(
        "launch template root volume",
        [(e.get("VolumeType"), e.get("VolumeSize"), e.get("Encrypted")) for e in ebs],
        [("gp3", 20, True)],
    )


def owned_elbv2(arns):
    """The ARNs among arns tagged for the project (elbv2 has no tag filter)."""
    mine = []
    for i in range(0, len(arns), 20):
        for d in elb.describe_tags(ResourceArns=arns[i : i + 20])["TagDescriptions"]:
            if tags_of(d).get("eshop/project") == project:
                mine.append(d["ResourceArn"])
    return mine


@guarded("load balancer")
def _lb():
    lbs = elb.describe_load_balancers()["LoadBalancers"]
    mine = set(owned_elbv2([b["LoadBalancerArn"] for b in lbs]))
    lbs = count("load_balancer", [b for b in lbs if b["LoadBalancerArn"] in mine])
    tgs = elb.describe_target_groups()["TargetGroups"]
    mine = set(owned_elbv2([t["TargetGroupArn"] for t in tgs]))
    tgs = count("target_group", [t for t in tgs if t["TargetGroupArn"] in mine])
    if not present:
        return
    check("load balancers", len(lbs), 1)
    check("target groups", len(tgs), 1)
    if lbs:
        b = lbs[0]
        # moto leaves Scheme out of DescribeLoadBalancers: absent is accepted.
        check("lb scheme", b.get("Scheme", "internet-facing"), "internet-facing")
        check("lb type", b["Type"], "application")
        check("lb subnets", {z["SubnetId"] for z in b["AvailabilityZones"]}, ids.get("subnets"))
        check("lb security groups", b.get("SecurityGroups"), [ids.get("sg_lb")])
        ls = elb.describe_listeners(LoadBalancerArn=b["LoadBalancerArn"])["Listeners"]
        check(
            "listeners",
            [(x["Protocol"], x["Port"], [a["Type"] for a in x["DefaultActions"]]) for x in ls],
            [("HTTP", 80, ["forward"])],
        )
        if ls and tgs:
            a = ls[0]["DefaultActions"][0]
            tg = a.get("TargetGroupArn") or a.get("ForwardConfig", {}).get("TargetGroups", [{}])[0].get("TargetGroupArn")
            check("listener forwards to the target group", tg, tgs[0]["TargetGroupArn"])
    if tgs:
        t = tgs[0]
        ids["tg"] = t["TargetGroupArn"]
        check(
            "target group",
            (t["Protocol"], t["Port"], t["VpcId"], t["TargetType"], t.get("HealthCheckPath")),
            ("HTTP", 30080, ids.get("vpc"), "instance", "/healthz"),
        )


@guarded("auto scaling group")
def _asg():
    groups = count(
        "autoscaling_group",
        asg.describe_auto_scaling_groups(
            Filters=[{"Name": "tag:eshop/project", "Values": [project]}]
        )["AutoScalingGroups"],
    )
    if not present:
        return
    check("auto scaling groups", len(groups), 1)
    if not groups:
        return
    g = groups[0]
    check("asg sizes (min, desired, max)", (g["MinSize"], g["DesiredCapacity"], g["MaxSize"]), (1, 2, 4))
    check("asg subnets", set(g["VPCZoneIdentifier"].split(",")), ids.get("subnets"))
    check("asg target groups", g.get("TargetGroupARNs"), [ids.get("tg")])
    check("asg health check", (g["HealthCheckType"], g["HealthCheckGracePeriod"]), ("ELB", 300))
    lt = g.get("LaunchTemplate") or g.get("MixedInstancesPolicy", {}).get(
        "LaunchTemplate", {}
    ).get("LaunchTemplateSpecification", {})
    check("asg launch template", (lt.get("LaunchTemplateId"), lt.get("Version")), (ids.get("lt"), "$Latest"))
    check(
        "asg tags propagated at launch",
        all(t["PropagateAtLaunch"] for t in g["Tags"] if t["Key"].startswith("eshop/")),
        True,
    )
    pols = asg.describe_policies(AutoScalingGroupName=g["AutoScalingGroupName"])["ScalingPolicies"]
    check(
        "scaling policies",
        [
            (
                p["PolicyType"],
                p.get("TargetTrackingConfiguration", {}).get("PredefinedMetricSpecification", {}).get("PredefinedMetricType"),
                p.get("TargetTrackingConfiguration", {}).get("TargetValue"),
            )
            for p in pols
        ],
        [("TargetTrackingScaling", "ASGAverageCPUUtilization", 50.0)],
    )


@guarded("iam roles")
def _iam():
    roles = count(
        "iam_role",
        [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(prefix)],
    )
    if not present:
        return
    trust = {}
    for r in roles:
        doc = r["AssumeRolePolicyDocument"]
        if isinstance(doc, str):
            doc = json.loads(doc)
        principals = [s["Principal"].get("Service") for s in doc["Statement"]]
        trust[r["RoleName"]] = principals
        pols = iam.list_role_policies(RoleName=r["RoleName"])["PolicyNames"]
        check(f"{r['RoleName']} inline policies", len(pols), 1)
    check(
        "roles and who may assume them",
        trust,
        {
            f"{prefix}-stop-shop": ["lambda.amazonaws.com"],
            f"{prefix}-scheduler": ["scheduler.amazonaws.com"],
        },
    )


@guarded("lambda")
def _lambda():
    fns = count(
        "lambda_function",
        [f for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith(prefix)],
    )
    if not present:
        return
    check("lambda functions", [f["FunctionName"] for f in fns], [f"{prefix}-stop-shop"])
    if fns:
        f = fns[0]
        ids["fn"] = f["FunctionArn"]
        check(
            "lambda settings",
            (f["Runtime"], f["Handler"], f["Timeout"], f.get("Environment", {}).get("Variables", {}).get("ESHOP_PROJECT")),
            ("python3.12", "stop_shop.handler", 60, project),
        )
        check("lambda role", f["Role"].rsplit("/", 1)[-1], f"{prefix}-stop-shop")


@guarded("schedule")
def _schedule():
    groups = count(
        "schedule_group",
        [g for g in sch.list_schedule_groups()["ScheduleGroups"] if g["Name"] == prefix],
    )
    if not present:
        return
    check("schedule groups", len(groups), 1)
    if not groups:
        return
    tags = sch.list_tags_for_resource(ResourceArn=groups[0]["Arn"])["Tags"]
    check("schedule group tagged", {t["Key"]: t["Value"] for t in tags}.get("eshop/project"), project)
    names = [s["Name"] for s in sch.list_schedules(GroupName=prefix)["Schedules"]]
    counts["schedule"] = len(names)
    check("schedules", names, ["stop"])
    if names:
        s = sch.get_schedule(GroupName=prefix, Name="stop")
        check(
            "schedule",
            (
                s["ScheduleExpression"],
                s.get("ScheduleExpressionTimezone"),
                s["FlexibleTimeWindow"]["Mode"],
                s["Target"]["Arn"],
                json.loads(s["Target"].get("Input") or "null"),
            ),
            ("cron(0 18 * * ? *)", "Europe/Paris", "OFF", ids.get("fn"), {"action": "stop"}),
        )
        check("schedule role", s["Target"]["RoleArn"].rsplit("/", 1)[-1], f"{prefix}-scheduler")


if not present:
    for kind, n in counts.items():
        if n:
            failures.append(f"{kind}: {n} left")

for f in failures:
    print(f"{mode} check failed: {f}")
if not failures:
    total = sum(counts.values())
    print(f"{mode}: ok ({total} owned resources: " + ", ".join(f"{k}={v}" for k, v in counts.items()) + ")")
sys.exit(1 if failures else 0)
