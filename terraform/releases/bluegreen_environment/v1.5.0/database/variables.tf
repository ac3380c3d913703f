# --- naming and placement ------------------------------------------------------------------------

variable "name" {
  description = "Identifier of the DB instance, also the name of its subnet group and security group, e.g. \"bglab-staging-db\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,61}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 3-63 lowercase letters, digits and hyphens, starting with a letter, with no two hyphens in a row and none at the end: RDS refuses any other DB instance identifier."
  }
}

variable "vpc_id" {
  description = "VPC of the database's security group."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the DB subnet group: the network module's isolated database subnets (no route out of the VPC), one per availability zone."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids needs at least two subnets in different availability zones: RDS refuses a DB subnet group that covers fewer than two zones."
  }
}

variable "allowed_security_group_ids" {
  description = "Security groups admitted on the database port, by a name known at plan time (e.g. { blue = sg-..., green = sg-... }, the fleets' groups). Nothing else reaches the database."
  type        = map(string)

  validation {
    condition     = length(var.allowed_security_group_ids) >= 1
    error_message = "allowed_security_group_ids must name at least one security group: with none, nothing could ever connect to the database."
  }
}

# --- the engine ------------------------------------------------------------------------------------

variable "engine_version" {
  description = "PostgreSQL version: a major version (\"16\": RDS picks its default minor, and minor upgrades then happen in the maintenance window) or a full one (\"16.4\")."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^1[6-9](\\.[0-9]+)?$", var.engine_version))
    error_message = "engine_version must be PostgreSQL 16 or later, as \"16\" or \"16.4\": the app and its migrations are written for 16."
  }
}

variable "instance_class" {
  description = "DB instance class. db.t4g.micro (Graviton, 2 vCPU burstable, 1 GiB) is the cheapest class that runs PostgreSQL 16 and ample for the lab app."
  type        = string
  default     = "db.t4g.micro"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.instance_class))
    error_message = "instance_class must be an RDS instance class such as db.t4g.micro."
  }
}

variable "allocated_storage" {
  description = "Storage in GiB (gp3). 20 is the smallest gp3 volume RDS accepts; storage autoscaling grows it up to max_allocated_storage."
  type        = number
  default     = 20

  validation {
    condition     = var.allocated_storage >= 20 && var.allocated_storage <= 1000 && floor(var.allocated_storage) == var.allocated_storage
    error_message = "allocated_storage must be a whole number of GiB from 20 (the gp3 minimum on RDS) to 1000 (more is a typo for this app)."
  }
}

variable "max_allocated_storage" {
  description = "Upper bound of storage autoscaling in GiB; 0 turns autoscaling off."
  type        = number
  default     = 100

  validation {
    condition     = var.max_allocated_storage == 0 || (var.max_allocated_storage >= 20 && var.max_allocated_storage <= 1000)
    error_message = "max_allocated_storage must be 0 (no autoscaling) or 20-1000 GiB."
  }
}

variable "multi_az" {
  description = "A standby in a second zone with automatic failover. Off by default: it doubles the instance cost, and a lab survives a zone outage with a restore."
  type        = bool
  default     = false
}

variable "database_name" {
  description = "Name of the database created with the instance (the app's)."
  type        = string
  default     = "app"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must be 1-63 lowercase letters, digits and underscores, starting with a letter: a PostgreSQL identifier that needs no quoting."
  }
}

variable "master_username" {
  description = "Name of the master user. RDS generates its password and keeps it in Secrets Manager (never in Terraform's state)."
  type        = string
  default     = "dbadmin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,15}$", var.master_username)) && !contains(["postgres", "rdsadmin", "admin", "user", "public"], var.master_username)
    error_message = "master_username must be 1-16 lowercase letters, digits and underscores, starting with a letter, and not a name RDS for PostgreSQL reserves (postgres, rdsadmin, admin, user, public)."
  }
}

variable "iam_database_user" {
  description = "Database user that the clients' policy (client_policy_json) may connect as with IAM authentication (rds-db:connect). The user must exist and be granted rds_iam (the app's migrations create it); the master user keeps its password."
  type        = string
  default     = "app"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.iam_database_user))
    error_message = "iam_database_user must be a PostgreSQL identifier of lowercase letters, digits and underscores, starting with a letter."
  }
}

# --- encryption, credentials, backups --------------------------------------------------------------

variable "kms_key_arn" {
  description = "KMS key (ARN) that encrypts the storage, its snapshots and backups, and the master user's secret: the project's key (the global environment's kms_key_arn output)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be the ARN of a KMS key (arn:aws:kms:REGION:ACCOUNT:key/ID), not an alias: RDS records the key it encrypted with, and an alias would read back as a different value on every plan."
  }
}

variable "password_rotation_schedule" {
  description = "How often Secrets Manager rotates the master password that RDS manages (managed rotation, no Lambda): a rate() or cron() schedule expression. RDS itself sets 7 days when the secret is created; the expression makes that explicit and changeable. Clients must read the secret again when a connection is refused."
  type        = string
  default     = "rate(7 days)"

  validation {
    condition     = can(regex("^(rate\\([0-9]+ (hours|days)\\)|cron\\(.+\\))$", var.password_rotation_schedule))
    error_message = "password_rotation_schedule must be a Secrets Manager schedule expression such as \"rate(7 days)\", \"rate(4 hours)\" (the shortest Secrets Manager allows) or \"cron(0 4 ? * SUN *)\"."
  }
}

variable "backup_retention_days" {
  description = "Days of automated backups (daily snapshots plus transaction logs for point-in-time restore)."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35 && floor(var.backup_retention_days) == var.backup_retention_days
    error_message = "backup_retention_days must be a whole number from 1 to 35: RDS keeps at most 35 days, and 0 would turn automated backups (and point-in-time restore) off."
  }
}

variable "enable_deletion_protection" {
  description = "Protect the data: RDS refuses to delete the instance, and a destroy (once protection is turned off) takes a final snapshot named \"<name>-final\". On by default, as production wants; a lab's staging turns it off so its teardown finishes and leaves nothing that costs."
  type        = bool
  default     = true
}

variable "apply_immediately" {
  description = "Apply modifications (class, storage, version) at once rather than in the next maintenance window. On by default so that an apply does what its plan says; a brief outage comes with some modifications."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "How long the exported PostgreSQL and upgrade logs are kept, in days (a CloudWatch Logs retention value)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the retention periods CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "snapshot_identifier" {
  description = "A DB snapshot to create the instance from, when Terraform creates it: the db-restore runbook sets it to bring a deleted instance back with its data. Once the instance exists it is ignored, so leaving it set or unset later replaces nothing."
  type        = string
  default     = null

  validation {
    condition     = var.snapshot_identifier == null || can(regex("^(arn:[^:]+:rds:[^:]*:[0-9]{12}:snapshot:)?[a-zA-Z][a-zA-Z0-9-]{0,254}$", var.snapshot_identifier))
    error_message = "snapshot_identifier must be a DB snapshot's identifier (a letter, then letters, digits and hyphens) or its ARN; `aws rds describe-db-snapshots` lists them."
  }
}

variable "tags" {
  description = "Extra tags for every resource of this module (the provider's default_tags come on top)."
  type        = map(string)
  default     = {}
}
