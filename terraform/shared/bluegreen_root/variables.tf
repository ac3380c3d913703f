# The variables of an environment root: what labkit fills in for the target, the deployment a
# deploy step changes, and the settings a lesson may try. The environments module validates them
# (terraform/modules/bluegreen_environment); null means that module's default, or the
# environment's own setting where its main.tf sets one.

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
  description = "Project tag and name prefix (resources are named <project>-<environment>-...)."
  type        = string
  default     = "bglab"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.project))
    error_message = "project must be 2-15 lowercase letters, digits and hyphens, starting with a letter: with \"-production-green\" appended it must fit AWS's 32-character names."
  }
}

variable "artifact_bucket" {
  description = "Release artifact bucket (the global environment's artifact_bucket output)."
  type        = string
}

variable "image_id" {
  description = "AMI of the instances; null reads the latest Amazon Linux 2023 AMI from its public SSM parameter."
  type        = string
  default     = null
}

variable "enable_budget" {
  description = "Create the monthly cost budget (AWS only: labkit turns it off in the sandbox, which has no billing)."
  type        = bool
  default     = null
}

# --- the deployment: what a deploy step changes --------------------------------------------------

variable "blue_version" {
  description = "Release that the blue fleet runs (releases/<version>/release.tar.gz in the artifact bucket)."
  type        = string
}

variable "green_version" {
  description = "Release that the green fleet runs."
  type        = string
}

variable "blue_capacity" {
  description = "Instances in the blue fleet (null: 2). 0 parks it, only while blue receives no traffic."
  type        = number
  default     = null
}

variable "green_capacity" {
  description = "Instances in the green fleet (null: 0). 0 parks it, only while green receives no traffic."
  type        = number
  default     = null
}

variable "green_weight" {
  description = "Percentage of requests sent to green (null: 0); blue gets the rest."
  type        = number
  default     = null
}

variable "preview_header" {
  description = "Name of the header that routes a request to the preview color whatever the weights; null removes the rule."
  type        = string
  default     = "X-Preview"
}

variable "preview_color" {
  description = "Color the preview header reaches; null means the idle color. The deploy controller sets it to the color being released."
  type        = string
  default     = null
}

# --- settings a lesson may try (the environment's main.tf holds what it sets for good) ----------

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC; null keeps the environment's own (local.settings.vpc_cidr in its main.tf)."
  type        = string
  default     = null
}

variable "other_vpc_cidrs" {
  description = "The other environments' VPC CIDRs by environment, as their states' vpc_cidr outputs give them (labkit fills this in). A VPC range that overlaps one of them is refused at plan time (output vpc_cidr's precondition), before anything is created."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for cidr in values(var.other_vpc_cidrs) : can(cidrhost(cidr, 0))])
    error_message = "other_vpc_cidrs maps environment names to IPv4 CIDRs such as 10.30.0.0/16."
  }
}

variable "enable_private_subnets" {
  description = "Instances in private subnets behind a NAT gateway; null keeps the environment's own setting (staging: off, production: on)."
  type        = bool
  default     = null
}

variable "enable_database" {
  description = "Build the PostgreSQL database both colors share, in isolated subnets; null keeps the environment's own setting (off in both: every lab builds staging, and an RDS instance takes minutes to create)."
  type        = bool
  default     = null
}

variable "project_kms_key_arn" {
  description = "The project's KMS key (ARN), for the database's storage and secret and, where the environment's settings set alarm_topic_on_project_key, its alarm topic; null finds the global environment's key by its alias (alias/<project>-tfstate-<account>-<region>)."
  type        = string
  default     = null
}

variable "database_snapshot_identifier" {
  description = "A DB snapshot to create the database from if the apply has to create it: the db-restore runbook passes it once to bring a deleted database back; null (the default, and what later applies pass) creates an empty one. Ignored while the database exists."
  type        = string
  default     = null
}

variable "health_check" {
  description = "Target group health checks; null keeps the environment's own (local.settings.health_check, else the module's: /health/ready every 5 s, 2 s timeout, thresholds 2, expecting 200)."
  type = object({
    path                = optional(string)
    interval            = optional(number)
    timeout             = optional(number)
    healthy_threshold   = optional(number)
    unhealthy_threshold = optional(number)
    matcher             = optional(string)
  })
  default = null
}

variable "deregistration_delay" {
  description = "Seconds a deregistered instance drains in-flight requests; null keeps the environment's own (staging 5 s, production 30 s)."
  type        = number
  default     = null
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget of the account, in US dollars; null keeps the environment's own (staging 50, production 150)."
  type        = number
  default     = null
}

variable "instance_type" {
  description = "EC2 instance type of both fleets; null keeps the environment's own (staging t4g.micro, production the module's t3.micro)."
  type        = string
  default     = null
}

variable "spot_instances" {
  description = "Run both fleets on spot capacity; null keeps the environment's own (staging on, production off)."
  type        = bool
  default     = null
}

variable "alarm_topic_on_project_key" {
  description = "Encrypt the alarm topic with the project's key instead of a key of its own; null keeps the environment's own (staging on, production off)."
  type        = bool
  default     = null
}

variable "enable_dashboard" {
  description = "Create the CloudWatch dashboard; null keeps the environment's own (staging off, production on)."
  type        = bool
  default     = null
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS; null serves HTTP only (the sandbox has no certificates)."
  type        = string
  default     = null
}

variable "wait_for_capacity_timeout" {
  description = "How long an apply waits for new instances to be healthy (null: \"0\", no wait: the deploy controller waits itself, outside the state lock)."
  type        = string
  default     = null
}

variable "alarm_emails" {
  description = "Email addresses notified by the alarms and the budget."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Extra tags on every resource, on top of Project, Environment and ManagedBy."
  type        = map(string)
  default     = {}
}
