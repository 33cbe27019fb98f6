# Inputs. bench/aws.sh sets the first three through TF_VAR_* environment
# variables; the rest mirror eshop's defaults and the benchmark's eshop.toml.

variable "endpoint" {
  description = "The AWS emulator every service endpoint points at (moto server), e.g. http://127.0.0.1:5000."
  type        = string
}

variable "ssh_public_key" {
  description = "Path of the public key imported as the key pair."
  type        = string
}

variable "lambda_zip" {
  description = "Path of the zip holding templates/lambda/stop_shop.py (built by bench/aws.sh: the hashicorp/archive provider is not in the mirror)."
  type        = string
}

variable "project" {
  description = "eshop project name: prefixes every name and fills the eshop/project tag."
  type        = string
  default     = "bench"
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "availability_zones" {
  type    = list(string)
  default = ["eu-west-1a", "eu-west-1b"]
}

variable "vpc_cidr" {
  type    = string
  default = "10.42.0.0/16"
}

variable "subnet_cidrs" {
  type    = list(string)
  default = ["10.42.1.0/24", "10.42.2.0/24"]
}

variable "admin_cidr" {
  description = "Where SSH (22) and the Kubernetes API (6443) may be reached from."
  type        = string
  default     = "203.0.113.0/24"
}

variable "ami_owner" {
  description = "Canonical's account."
  type        = string
  default     = "099720109477"
}

variable "ami_name" {
  type    = string
  default = "ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*"
}

variable "instance_type" {
  description = "Control plane and workers."
  type        = string
  default     = "t3.medium"
}

variable "root_volume_gib" {
  type    = number
  default = 20
}

variable "node_port" {
  description = "The NodePort the load balancer forwards to."
  type        = number
  default     = 30080
}

variable "stop_cron" {
  description = "When the shop stops (EventBridge Scheduler cron, in time_zone)."
  type        = string
  default     = "cron(0 18 * * ? *)"
}

variable "time_zone" {
  type    = string
  default = "Europe/Paris"
}
