# The resource set of eshop's phases 3 (infra) and 4 (schedule) for project
# "bench", written as an ordinary Terraform user would, so bench/aws.sh can
# time `terraform apply / plan / destroy` against `eshop up / plan / destroy`
# on the same moto server. Resource for resource it matches what eshop
# creates; names and tags are eshop's (eshop-<project>-<thing>, and
# eshop/project, eshop/target, eshop/phase on everything taggable).
#
# moto gaps worked around here are marked "moto:" below. Each keeps the
# resource set the same; none of them is needed against real AWS.

terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

provider "aws" {
  region = var.region

  # moto accepts any credentials; these are its documented fake ones.
  access_key = "testing"
  secret_key = "testing"

  # An emulator: no real STS/IMDS/region list to check against.
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true

  endpoints {
    autoscaling = var.endpoint
    ec2         = var.endpoint
    elbv2       = var.endpoint
    iam         = var.endpoint
    lambda      = var.endpoint
    scheduler   = var.endpoint
    sts         = var.endpoint
  }
}

locals {
  prefix = "eshop-${var.project}"

  owner_tags = {
    "eshop/project" = var.project
    "eshop/target"  = "aws"
  }
  infra_tags    = merge(local.owner_tags, { "eshop/phase" = "infra" })
  schedule_tags = merge(local.owner_tags, { "eshop/phase" = "schedule" })
}

# --- Phase 3: infra ---------------------------------------------------------

# 1. The network.
resource "aws_vpc" "shop" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(local.infra_tags, { Name = "${local.prefix}-vpc" })
}

# 2. Its way out.
resource "aws_internet_gateway" "shop" {
  vpc_id = aws_vpc.shop.id
  tags   = merge(local.infra_tags, { Name = "${local.prefix}-igw" })
}

# 3. Two public subnets, one per zone (the load balancer needs two zones).
resource "aws_subnet" "public" {
  count                   = length(var.subnet_cidrs)
  vpc_id                  = aws_vpc.shop.id
  cidr_block              = var.subnet_cidrs[count.index]
  availability_zone       = var.availability_zones[count.index]
  map_public_ip_on_launch = true
  tags                    = merge(local.infra_tags, { Name = "${local.prefix}-public-${count.index + 1}" })
}

# 4. Default route to the internet gateway, for both subnets.
resource "aws_route_table" "public" {
  vpc_id = aws_vpc.shop.id
  tags   = merge(local.infra_tags, { Name = "${local.prefix}-public" })
}

resource "aws_route" "internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.shop.id
}

resource "aws_route_table_association" "public" {
  count          = length(aws_subnet.public)
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# 5. Security groups. Inline rules (one resource per group, the cheapest
# form for Terraform). Terraform deletes the default allow-all egress rule
# of a new group unless it is declared, so it is declared: eshop keeps it.
resource "aws_security_group" "lb" {
  name        = "${local.prefix}-lb"
  description = "eshop ${var.project}: load balancer, HTTP and HTTPS from anywhere"
  vpc_id      = aws_vpc.shop.id

  ingress {
    description = "HTTP"
    protocol    = "tcp"
    from_port   = 80
    to_port     = 80
    cidr_blocks = ["0.0.0.0/0"]
  }
  ingress {
    description = "HTTPS"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = ["0.0.0.0/0"]
  }
  egress {
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(local.infra_tags, { Name = "${local.prefix}-lb" })
}

resource "aws_security_group" "nodes" {
  name        = "${local.prefix}-nodes"
  description = "eshop ${var.project}: Kubernetes nodes"
  vpc_id      = aws_vpc.shop.id

  ingress {
    description = "node to node, everything"
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    self        = true
  }
  ingress {
    description     = "shop NodePort from the load balancer"
    protocol        = "tcp"
    from_port       = var.node_port
    to_port         = var.node_port
    security_groups = [aws_security_group.lb.id]
  }
  ingress {
    description = "SSH from the admin network"
    protocol    = "tcp"
    from_port   = 22
    to_port     = 22
    cidr_blocks = [var.admin_cidr]
  }
  ingress {
    description = "Kubernetes API from the admin network"
    protocol    = "tcp"
    from_port   = 6443
    to_port     = 6443
    cidr_blocks = [var.admin_cidr]
  }
  egress {
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(local.infra_tags, { Name = "${local.prefix}-nodes" })
}

# 6. The admin's SSH key.
resource "aws_key_pair" "admin" {
  key_name   = "${local.prefix}-admin"
  public_key = file(var.ssh_public_key)
  tags       = merge(local.infra_tags, { Name = "${local.prefix}-admin" })
}

# 7. The newest matching Ubuntu image.
data "aws_ami" "ubuntu" {
  most_recent = true
  owners      = [var.ami_owner]

  filter {
    name   = "name"
    values = [var.ami_name]
  }
}

# 8. The control plane, with a fixed public address.
resource "aws_instance" "control_plane" {
  ami                    = data.aws_ami.ubuntu.id
  instance_type          = var.instance_type
  subnet_id              = aws_subnet.public[0].id
  vpc_security_group_ids = [aws_security_group.nodes.id]
  key_name               = aws_key_pair.admin.key_name

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required" # IMDSv2 only
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_gib
    encrypted   = true
  }

  tags = merge(local.infra_tags, { Name = "${local.prefix}-control-plane" })
}

resource "aws_eip" "control_plane" {
  domain   = "vpc"
  instance = aws_instance.control_plane.id
  tags     = merge(local.infra_tags, { Name = "${local.prefix}-control-plane" })

  # The address only routes once the gateway is attached.
  depends_on = [aws_internet_gateway.shop]
}

# 9. What every worker boots from.
resource "aws_launch_template" "workers" {
  name                   = "${local.prefix}-workers"
  image_id               = data.aws_ami.ubuntu.id
  instance_type          = var.instance_type
  key_name               = aws_key_pair.admin.key_name
  vpc_security_group_ids = [aws_security_group.nodes.id]
  user_data              = filebase64("${path.module}/user-data.sh")

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required" # IMDSv2 only
  }

  block_device_mappings {
    device_name = data.aws_ami.ubuntu.root_device_name
    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_gib
      encrypted             = true
      delete_on_termination = true
    }
  }

  tags = merge(local.infra_tags, { Name = "${local.prefix}-workers" })

  # moto: DescribeLaunchTemplateVersions echoes the template's own tags
  # (sent as a "launch-template" TagSpecification by CreateLaunchTemplate)
  # back inside LaunchTemplateData, so every plan would want to remove them
  # and cut a new version. Nothing here sets tag_specifications.
  lifecycle {
    ignore_changes = [tag_specifications]
  }
}

# 10. The public entry point: ALB -> target group (the shop's NodePort).
resource "aws_lb" "shop" {
  name               = local.prefix
  internal           = false
  load_balancer_type = "application"
  security_groups    = [aws_security_group.lb.id]
  subnets            = aws_subnet.public[*].id
  tags               = merge(local.infra_tags, { Name = "${local.prefix}-lb" })
}

resource "aws_lb_target_group" "nodes" {
  name        = "${local.prefix}-nodes"
  protocol    = "HTTP"
  port        = var.node_port
  vpc_id      = aws_vpc.shop.id
  target_type = "instance"

  health_check {
    path = "/healthz"
  }

  tags = merge(local.infra_tags, { Name = "${local.prefix}-nodes" })
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.shop.arn
  protocol          = "HTTP"
  port              = 80

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.nodes.arn
  }

  tags = merge(local.infra_tags, { Name = "${local.prefix}-http" })
}

# 11. The workers: 1..4, 2 to start with, registered in the target group,
# scaled on average CPU. wait_for_capacity_timeout stays at its default
# (10m): moto reports the group's instances InService at once, so
# Terraform's capacity wait passes on the first poll.
resource "aws_autoscaling_group" "workers" {
  name                      = "${local.prefix}-workers"
  min_size                  = 1
  desired_capacity          = 2
  max_size                  = 4
  vpc_zone_identifier       = aws_subnet.public[*].id
  target_group_arns         = [aws_lb_target_group.nodes.arn]
  health_check_type         = "ELB"
  health_check_grace_period = 300

  launch_template {
    id      = aws_launch_template.workers.id
    version = "$Latest"
  }

  dynamic "tag" {
    for_each = merge(local.infra_tags, { Name = "${local.prefix}-worker" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}

resource "aws_autoscaling_policy" "cpu" {
  name                   = "${local.prefix}-cpu"
  autoscaling_group_name = aws_autoscaling_group.workers.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = 50
  }

  # moto: DescribePolicies leaves out Enabled (read back as false) and
  # returns an empty PredictiveScalingConfiguration, so every plan would
  # want to "enable" the policy and drop that block. The policy is created
  # enabled (the default) and has no predictive configuration.
  lifecycle {
    ignore_changes = [enabled, predictive_scaling_configuration]
  }
}

# --- Phase 4: schedule ------------------------------------------------------

# 12. What the stop function may do: find the project's instances and
# groups, stop/start only those tagged for this project, write its logs.
resource "aws_iam_role" "stop_shop" {
  name = "${local.prefix}-stop-shop"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = merge(local.schedule_tags, { Name = "${local.prefix}-stop-shop" })
}

resource "aws_iam_role_policy" "stop_shop" {
  name = "${local.prefix}-stop-shop"
  role = aws_iam_role.stop_shop.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "Find"
        Effect   = "Allow"
        Action   = ["ec2:DescribeInstances", "autoscaling:DescribeAutoScalingGroups"]
        Resource = "*" # Describe calls cannot be scoped to resources
      },
      {
        Sid      = "StopStartOwnInstances"
        Effect   = "Allow"
        Action   = ["ec2:StopInstances", "ec2:StartInstances"]
        Resource = "*"
        Condition = {
          StringEquals = { "aws:ResourceTag/eshop/project" = var.project }
        }
      },
      {
        Sid      = "ScaleOwnGroups"
        Effect   = "Allow"
        Action   = ["autoscaling:UpdateAutoScalingGroup", "autoscaling:CreateOrUpdateTags"]
        Resource = "*"
        Condition = {
          StringEquals = { "aws:ResourceTag/eshop/project" = var.project }
        }
      },
      {
        Sid      = "Logs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "arn:aws:logs:${var.region}:*:log-group:/aws/lambda/${local.prefix}-stop-shop:*"
      },
    ]
  })
}

# 13. The function (templates/lambda/stop_shop.py, zipped by bench/aws.sh).
resource "aws_lambda_function" "stop_shop" {
  function_name    = "${local.prefix}-stop-shop"
  role             = aws_iam_role.stop_shop.arn
  runtime          = "python3.12"
  handler          = "stop_shop.handler"
  filename         = var.lambda_zip
  source_code_hash = filebase64sha256(var.lambda_zip)
  timeout          = 60

  environment {
    variables = { ESHOP_PROJECT = var.project }
  }

  tags = merge(local.schedule_tags, { Name = "${local.prefix}-stop-shop" })
}

# 14. What the scheduler may do: invoke that function, nothing else.
resource "aws_iam_role" "scheduler" {
  name = "${local.prefix}-scheduler"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "scheduler.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = merge(local.schedule_tags, { Name = "${local.prefix}-scheduler" })
}

resource "aws_iam_role_policy" "scheduler" {
  name = "${local.prefix}-scheduler"
  role = aws_iam_role.scheduler.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = "lambda:InvokeFunction"
      Resource = aws_lambda_function.stop_shop.arn
    }]
  })
}

# 15. Every day at 18:00 in the shop's time zone.
resource "aws_scheduler_schedule_group" "shop" {
  name = local.prefix
  tags = merge(local.schedule_tags, { Name = local.prefix })
}

resource "aws_scheduler_schedule" "stop" {
  name                         = "stop"
  group_name                   = aws_scheduler_schedule_group.shop.name
  schedule_expression          = var.stop_cron
  schedule_expression_timezone = var.time_zone

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.stop_shop.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ action = "stop" })
  }
}
