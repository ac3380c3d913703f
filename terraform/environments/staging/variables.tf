# --- target (labkit fills these) ---------------------------------------------------------------

variable "region" {
  description = "AWS region of the stack (labkit passes the target's region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region code such as us-east-1."
  }
}

variable "project" {
  description = "Project tag and name prefix (resources are named <project>-staging-...)."
  type        = string
  default     = "bglab"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.project))
    error_message = "project must be 2-15 lowercase letters, digits and hyphens, starting with a letter: with \"-staging-green\" appended it must fit AWS's 32-character names."
  }
}

variable "artifact_bucket" {
  description = "Release artifact bucket (the global environment's artifact_bucket output)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifact_bucket))
    error_message = "artifact_bucket must be a valid S3 bucket name."
  }
}

variable "image_id" {
  description = "AMI of the instances. null reads the latest Amazon Linux 2023 AMI from its public SSM parameter (AWS; the sandbox has the same parameter); the sandbox accepts any id."
  type        = string
  default     = null
}

variable "enable_budget" {
  description = "Create the monthly cost budget (AWS only: labkit turns it off in the sandbox, which has no billing)."
  type        = bool
  default     = true
}

# --- the deployment: what a deploy step changes --------------------------------------------------

variable "blue_version" {
  description = "Release that the blue fleet runs (releases/<version>/release.tar.gz in the artifact bucket)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", var.blue_version))
    error_message = "blue_version must be 1-63 letters, digits, dots, underscores or hyphens: it becomes part of an S3 key and an ASG name."
  }
}

variable "green_version" {
  description = "Release that the green fleet runs."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", var.green_version))
    error_message = "green_version must be 1-63 letters, digits, dots, underscores or hyphens: it becomes part of an S3 key and an ASG name."
  }
}

variable "blue_capacity" {
  description = "Instances in the blue fleet. 0 parks it (no cost), which is only allowed while blue receives no traffic (green_weight = 100)."
  type        = number
  default     = 2

  validation {
    condition     = var.blue_capacity >= 0 && var.blue_capacity <= 20 && floor(var.blue_capacity) == var.blue_capacity
    error_message = "blue_capacity must be a whole number from 0 to 20: the upper bound guards the account against a typo that would launch hundreds of instances."
  }
}

variable "green_capacity" {
  description = "Instances in the green fleet. 0 parks it, which is only allowed while green receives no traffic (green_weight = 0)."
  type        = number
  default     = 0

  validation {
    condition     = var.green_capacity >= 0 && var.green_capacity <= 20 && floor(var.green_capacity) == var.green_capacity
    error_message = "green_capacity must be a whole number from 0 to 20: the upper bound guards the account against a typo that would launch hundreds of instances."
  }
}

variable "green_weight" {
  description = "Percentage of requests sent to green (0-100); blue gets 100 - green_weight. A traffic step changes only this, which updates only the listener."
  type        = number
  default     = 0

  validation {
    condition     = var.green_weight >= 0 && var.green_weight <= 100 && floor(var.green_weight) == var.green_weight
    error_message = "green_weight must be a whole number from 0 to 100: it is the percentage of requests sent to green, and blue gets the rest."
  }
}

variable "preview_header" {
  description = "Name of the header that routes a request to the preview color whatever the weights (any value); null removes the rule."
  type        = string
  default     = "X-Preview"
}

variable "preview_color" {
  description = "Color the preview header reaches; null means the idle color (less traffic; green on a tie). The deploy controller sets it to the color being released."
  type        = string
  default     = null
}

# --- shape of the stack ------------------------------------------------------------------------

variable "instance_type" {
  description = "EC2 instance type of both fleets."
  type        = string
  default     = "t3.micro"
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the staging VPC."
  type        = string
  default     = "10.20.0.0/16"
}

variable "enable_private_subnets" {
  description = "Instances in private subnets behind a NAT gateway (about USD 33/month, more than the rest of staging). Off: instances in public subnets with public IPs, reachable only from the ALB's security group."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS; null serves HTTP only (the sandbox has no certificates)."
  type        = string
  default     = null
}

variable "health_check" {
  description = "Target group health checks. Staging defaults keep deploys short and are valid on AWS: /health/ready every 5 s, 2 s timeout, healthy after 2, unhealthy after 2, expecting 200."
  type = object({
    path                = optional(string, "/health/ready")
    interval            = optional(number, 5)
    timeout             = optional(number, 2)
    healthy_threshold   = optional(number, 2)
    unhealthy_threshold = optional(number, 2)
    matcher             = optional(string, "200")
  })
  default = {}
}

variable "wait_for_capacity_timeout" {
  description = "How long an apply waits for a fleet's new instances to be healthy in its target group (a Go duration; \"0\" does not wait). The deploy controller waits itself, with the strategy's health timeout and a rollback when it runs out, so by default an apply returns as soon as the ASG exists: a release that never turns healthy must not hold the apply (and the state lock) for minutes."
  type        = string
  default     = "0"
}

variable "deregistration_delay" {
  description = "Seconds a deregistered instance drains in-flight requests; 5 s keeps scale-in short for an app whose requests are quick."
  type        = number
  default     = 5
}

variable "alarm_emails" {
  description = "Email addresses notified by the alarms and the budget."
  type        = list(string)
  default     = []
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget of the account, in US dollars."
  type        = number
  default     = 50
}

variable "tags" {
  description = "Extra tags on every resource, on top of Project, Environment and ManagedBy."
  type        = map(string)
  default     = {}
}
