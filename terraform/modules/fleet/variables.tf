variable "name" {
  description = "Name prefix shared by both colors, e.g. \"bglab-staging\"; this fleet's resources are named \"<name>-<color>\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lowercase letters, digits and hyphens, starting with a letter: it prefixes IAM, launch template and ASG names."
  }
}

variable "color" {
  description = "Which side of the blue/green pair this fleet is."
  type        = string

  validation {
    condition     = contains(["blue", "green"], var.color)
    error_message = "color must be \"blue\" or \"green\"."
  }
}

variable "release_version" {
  description = "Release this fleet runs: user data fetches s3://<artifact_bucket>/releases/<release_version>/release.tar.gz. Changing it replaces the ASG (new instances come up before the old ones go), so every instance of a color always runs that color's version."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", var.release_version))
    error_message = "release_version must be 1-63 letters, digits, dots, underscores or hyphens, starting with a letter or digit: it becomes part of an S3 key, an ASG name and a shell assignment."
  }
}

variable "artifact_bucket" {
  description = "S3 bucket that holds the release artifacts (releases/<version>/release.tar.gz)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifact_bucket))
    error_message = "artifact_bucket must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens."
  }
}

variable "capacity" {
  description = "Number of instances (the ASG's min, max and desired). 0 parks the color: it costs nothing and must then receive no traffic."
  type        = number

  validation {
    condition     = var.capacity >= 0 && var.capacity <= 20 && floor(var.capacity) == var.capacity
    error_message = "capacity must be a whole number from 0 to 20; the upper bound guards a lab account against a typo that would launch hundreds of instances."
  }
}

variable "vpc_id" {
  description = "VPC of the instances' security group."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets the ASG launches instances into (one per availability zone)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet for the ASG to launch into."
  }
}

variable "associate_public_ip_address" {
  description = "Give each instance a public IP. Needed when the instances sit in public subnets without NAT (they download packages and the release); their security group still admits only the ALB."
  type        = bool
  default     = false
}

variable "alb_security_group_id" {
  description = "Security group of the load balancer: the only source the instances accept traffic from."
  type        = string
}

variable "target_group_arn" {
  description = "Target group of this color; the ASG registers its instances there."
  type        = string
}

variable "app_port" {
  description = "Port the app listens on (APP_BIND=0.0.0.0:<app_port>)."
  type        = number
  default     = 8080

  validation {
    condition     = var.app_port >= 1024 && var.app_port <= 65535 && floor(var.app_port) == var.app_port
    error_message = "app_port must be an integer from 1024 to 65535: the app runs unprivileged."
  }
}

variable "database" {
  description = "The database the app uses, or null for none (the app then runs without one). secret_arn: the RDS-managed secret of its master user (JSON username and password), the only secret the instance role may read; kms_key_arn: the customer managed key that encrypts the secret (null: AWS's aws/secretsmanager key, which needs no grant); host, port and name: the instance's endpoint address, port and database (the database module's address, port and database_name). They reach the app as DATABASE_* in app.service's environment."
  type = object({
    secret_arn  = string
    kms_key_arn = optional(string)
    host        = string
    port        = optional(number, 5432)
    name        = string
  })
  default = null

  validation {
    condition     = var.database == null ? true : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@!-]+$", var.database.secret_arn))
    error_message = "database.secret_arn must be a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME): the instance role's policy names it, and the app takes its region from it."
  }
  validation {
    condition     = var.database == null ? true : (var.database.kms_key_arn == null ? true : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.database.kms_key_arn)))
    error_message = "database.kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), not an alias, or null for AWS's managed aws/secretsmanager key."
  }
  validation {
    condition     = var.database == null ? true : can(regex("^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$", var.database.host))
    error_message = "database.host must be a host name or IPv4 address (letters, digits, dots and hyphens): it is written into the user data's shell assignments."
  }
  validation {
    condition     = var.database == null ? true : (var.database.port >= 1 && var.database.port <= 65535 && floor(var.database.port) == var.database.port)
    error_message = "database.port must be a whole number from 1 to 65535."
  }
  validation {
    condition     = var.database == null ? true : can(regex("^[A-Za-z_][A-Za-z0-9_]{0,62}$", var.database.name))
    error_message = "database.name must be a PostgreSQL database name RDS accepts: 1-63 letters, digits and underscores, not starting with a digit."
  }
}

variable "image_id" {
  description = "AMI for the instances. null reads the latest Amazon Linux 2023 AMI from the public SSM parameter image_ssm_parameter (on AWS); the sandbox accepts any id."
  type        = string
  default     = null

  validation {
    condition     = var.image_id == null || can(regex("^ami-[0-9a-f]{8,17}$", coalesce(var.image_id, "none")))
    error_message = "image_id must look like ami-0123456789abcdef0, or be null to use the Amazon Linux 2023 SSM parameter."
  }
}

variable "image_ssm_parameter" {
  description = "Public SSM parameter that names the AMI when image_id is null; null reads Amazon Linux 2023's for the instance type's architecture (al2023-ami-kernel-default-arm64 for Graviton types such as t4g, -x86_64 otherwise). The user data uses dnf and the AWS CLI, so keep to Amazon Linux 2023."
  type        = string
  default     = null
}

variable "instance_type" {
  description = "EC2 instance type. t3.micro is free-tier eligible and ample for the lab app; a Graviton type (t4g.micro: the same size, about 20 % cheaper) gets the arm64 image."
  type        = string
  default     = "t3.micro"
}

variable "spot" {
  description = "Run the fleet's instances on spot capacity (about 70 % cheaper for t4g; AWS may reclaim an instance with two minutes' notice, and Auto Scaling then launches a replacement). For environments that can lose an instance for a few minutes, such as staging."
  type        = bool
  default     = false
  nullable    = false
}

variable "root_volume_size" {
  description = "Size of the encrypted gp3 root volume in GiB; the Amazon Linux 2023 AMI needs at least 8."
  type        = number
  default     = 8

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 100
    error_message = "root_volume_size must be 8-100 GiB: the AMI's snapshot is 8 GiB, and more than 100 is a typo for this app."
  }
}

variable "root_volume_kms_key_arn" {
  description = "KMS key for the root volume; null uses the account's default EBS key (aws/ebs). The volume is encrypted either way."
  type        = string
  default     = null
}

variable "python_packages" {
  description = "pip requirement specifiers the user data installs before the release (a requirements.txt in the artifact is installed on top)."
  type        = list(string)
  default     = ["flask>=3.0,<4", "gunicorn>=22,<24"]

  validation {
    condition     = alltrue([for p in var.python_packages : can(regex("^[A-Za-z0-9._\\-\\[\\]<>=!~,]+$", p))])
    error_message = "python_packages entries must be plain requirement specifiers (e.g. \"flask>=3.0,<4\") without spaces or quotes: they are pasted into a shell command."
  }
}

variable "health_check_grace_period" {
  description = "Seconds after launch before the ASG acts on failed ELB health checks; it covers the user data's package install."
  type        = number
  default     = 120
}

variable "wait_for_capacity_timeout" {
  description = "How long an apply waits for the instances to be InService and healthy in the target group before it fails (a Go duration such as \"10m\"; \"0\" does not wait)."
  type        = string
  default     = "10m"
}

variable "enable_ssm_session_manager" {
  description = "Attach AmazonSSMManagedInstanceCore so engineers can open a shell through Session Manager; there is no SSH key or port either way."
  type        = bool
  default     = false
}

variable "instance_tags" {
  description = "Tags the ASG propagates to its instances. The provider's default_tags do not reach instances an ASG launches, so pass the same map here."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Extra tags for every resource of this module (the provider's default_tags come on top)."
  type        = map(string)
  default     = {}
}
