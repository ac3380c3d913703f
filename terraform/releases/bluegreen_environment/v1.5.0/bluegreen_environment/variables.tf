# Every optional variable is nullable = false: a root may pass null to mean "the module's default",
# so a thin root forwards its own optional variables without repeating the defaults.

# --- naming and placement ------------------------------------------------------------------------

variable "name" {
  description = "Name prefix of every resource, e.g. \"bglab-staging\". Target groups, ASGs and alarms append \"-blue\"/\"-green\" and more; AWS caps target group names at 32 characters."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,24}[a-z0-9]$", var.name))
    error_message = "name must be 3-26 lowercase letters, digits and hyphens, starting with a letter: with \"-green\" appended it must fit AWS's 32-character target group names."
  }
}

variable "artifact_bucket" {
  description = "Release artifact bucket the fleets read releases/<version>/release.tar.gz from (the global environment's artifact_bucket output)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifact_bucket))
    error_message = "artifact_bucket must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the environment's VPC. Give each environment its own range, so two can be peered."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be an IPv4 CIDR such as 10.20.0.0/16."
  }
}

variable "enable_private_subnets" {
  description = "Instances in private subnets behind a NAT gateway (about USD 33/month, more than the rest of a lab's staging), with no public address at all. Off: instances in public subnets with public IPs, reachable only from the ALB's security group."
  type        = bool
  default     = false
  nullable    = false
}

# --- the database --------------------------------------------------------------------------------

variable "enable_database" {
  description = "Build the PostgreSQL database both colors share (module database) in isolated subnets, and let each fleet's instance role read its secret. Off by default while the app uses no database: every lab builds staging, and an RDS instance takes minutes to create and costs by the hour."
  type        = bool
  default     = false
  nullable    = false
}

variable "database_kms_key_arn" {
  description = "KMS key (ARN) of the database's storage, backups and master user secret: the project's key (the global environment's kms_key_arn output). Needed with enable_database; the database module refuses anything but a key ARN."
  type        = string
  default     = null
}

variable "database_snapshot_identifier" {
  description = "A DB snapshot to create the database from when it has to be created (the db-restore runbook's restore of a deleted instance); ignored while the database exists. null: an empty database."
  type        = string
  default     = null
}

variable "database_instance_class" {
  description = "RDS instance class of the database (db.t4g.micro: Graviton, the cheapest class that runs PostgreSQL 16)."
  type        = string
  default     = "db.t4g.micro"
  nullable    = false
}

# --- the fleets ----------------------------------------------------------------------------------

variable "image_id" {
  description = "AMI of the instances. null reads the latest Amazon Linux 2023 AMI from its public SSM parameter (AWS; the sandbox has the same parameter); the sandbox accepts any id."
  type        = string
  default     = null
}

variable "instance_type" {
  description = "EC2 instance type of both fleets."
  type        = string
  default     = "t3.micro"
  nullable    = false
}

variable "spot_instances" {
  description = "Run both fleets on spot capacity (module fleet's spot): about 70 % off the instances, for an environment that can lose an instance for a few minutes when AWS reclaims it."
  type        = bool
  default     = false
  nullable    = false
}

variable "wait_for_capacity_timeout" {
  description = "How long an apply waits for a fleet's new instances to be healthy in its target group (a Go duration; \"0\" does not wait). The deploy controller waits itself, with the strategy's health timeout and a rollback when it runs out, so by default an apply returns as soon as the ASG exists: a release that never turns healthy must not hold the apply (and the state lock) for minutes."
  type        = string
  default     = "0"
  nullable    = false

  validation {
    condition     = can(regex("^(0|([0-9]+h)?([0-9]+m)?([0-9]+s)?)$", var.wait_for_capacity_timeout)) && var.wait_for_capacity_timeout != ""
    error_message = "wait_for_capacity_timeout must be \"0\" (do not wait) or a Go duration such as \"90s\" or \"10m\": the AWS provider parses it as one."
  }
}

variable "instance_tags" {
  description = "Tags the ASGs propagate to their instances. The provider's default_tags do not reach instances an ASG launches, so pass the root's default tags here."
  type        = map(string)
  default     = {}
  nullable    = false
}

# --- the load balancer ---------------------------------------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate for HTTPS; null serves HTTP only (the sandbox has no certificates)."
  type        = string
  default     = null
}

variable "health_check" {
  description = "Target group health checks; an attribute left out takes the alb module's default (/health/ready every 5 s, 2 s timeout, healthy after 2, unhealthy after 2, expecting 200: short deploys, valid on AWS). The alb module validates the values against what AWS accepts."
  type = object({
    path                = optional(string)
    interval            = optional(number)
    timeout             = optional(number)
    healthy_threshold   = optional(number)
    unhealthy_threshold = optional(number)
    matcher             = optional(string)
  })
  default  = {}
  nullable = false
}

variable "deregistration_delay" {
  description = "Seconds a deregistered instance drains in-flight requests; 5 s keeps scale-in short for an app whose requests are quick. Raise it where clients are slow."
  type        = number
  default     = 5
  nullable    = false
}

variable "enable_deletion_protection" {
  description = "Refuse to delete the load balancer and the database through the API, and take a final snapshot of the database when it is destroyed. On by default, as an environment that serves users wants; a lab's staging turns it off so its teardown can finish and leave nothing that costs."
  type        = bool
  default     = true
  nullable    = false
}

# --- monitoring ----------------------------------------------------------------------------------

variable "alarm_emails" {
  description = "Email addresses notified by the alarms and the budget."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "enable_dashboard" {
  description = "Create the CloudWatch dashboard (module monitoring's enable_dashboard)."
  type        = bool
  default     = true
  nullable    = false
}

variable "alarm_kms_key_arn" {
  description = "KMS key for the alarm topic; null makes one for it (module monitoring's kms_key_arn). The key's policy must let cloudwatch.amazonaws.com and budgets.amazonaws.com use it, as the project's key does."
  type        = string
  default     = null
}

variable "enable_budget" {
  description = "Create the monthly cost budget (AWS only: labkit turns it off in the sandbox, which has no billing)."
  type        = bool
  default     = true
  nullable    = false
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget of the account, in US dollars."
  type        = number
  default     = 50
  nullable    = false

  validation {
    condition     = var.monthly_budget_usd > 0
    error_message = "monthly_budget_usd must be above 0: AWS Budgets refuses a zero limit; turn the budget off with enable_budget = false instead."
  }
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
  nullable    = false

  validation {
    condition     = var.blue_capacity >= 0 && var.blue_capacity <= 20 && floor(var.blue_capacity) == var.blue_capacity
    error_message = "blue_capacity must be a whole number from 0 to 20: the upper bound guards the account against a typo that would launch hundreds of instances."
  }
}

variable "green_capacity" {
  description = "Instances in the green fleet. 0 parks it, which is only allowed while green receives no traffic (green_weight = 0)."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.green_capacity >= 0 && var.green_capacity <= 20 && floor(var.green_capacity) == var.green_capacity
    error_message = "green_capacity must be a whole number from 0 to 20: the upper bound guards the account against a typo that would launch hundreds of instances."
  }
}

variable "green_weight" {
  description = "Percentage of requests sent to green (0-100); blue gets 100 - green_weight. A traffic step changes only this, which updates only the listener."
  type        = number
  default     = 0
  nullable    = false

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
