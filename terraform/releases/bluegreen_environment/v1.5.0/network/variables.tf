variable "name" {
  description = "Name prefix for every resource of this network, e.g. \"bglab-staging\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lowercase letters, digits and hyphens, starting with a letter: it prefixes resource names that AWS limits in length and character set."
  }
}

variable "cidr_block" {
  description = "IPv4 CIDR of the VPC. A /16 leaves room for more subnets later; it must not overlap networks you may peer with."
  type        = string
  default     = "10.20.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) <= 20
    error_message = "cidr_block must be a valid IPv4 CIDR of size /20 or larger, so that each availability zone gets a public and a private /24 or bigger."
  }
}

variable "availability_zones" {
  description = "Exactly two availability zones to spread the subnets over. null picks the region's first two available zones; an ALB needs subnets in at least two."
  type        = list(string)
  default     = null

  validation {
    condition     = var.availability_zones == null || try(length(var.availability_zones) == 2, false)
    error_message = "availability_zones must list exactly two zones (or be null): an ALB needs two, and more would only add cost to a lab stack."
  }
}

variable "enable_private_subnets" {
  description = <<-EOT
    Create private subnets (one per zone) and a single NAT gateway for their outbound traffic.
    Off by default: the NAT gateway alone costs about USD 33 a month plus data processing, more than the
    rest of a staging stack. Without it the instances sit in public subnets with public IPs, reachable
    only through their security group (ALB-only ingress). Turn it on for production-like isolation.
  EOT
  type        = bool
  default     = false
}

variable "enable_database_subnets" {
  description = <<-EOT
    Create isolated database subnets (one per zone) with a route table of their own that holds no
    route out of the VPC: no internet gateway, no NAT. A database needs no internet, and these cost
    nothing. Off by default; the bluegreen_environment composition turns it on with its database.
  EOT
  type        = bool
  default     = false
}

variable "enable_flow_logs" {
  description = "Send VPC flow logs (rejected traffic only) to a KMS-encrypted CloudWatch log group. Off by default to keep the lab free of log ingestion charges; turn it on where you need an audit trail of network access."
  type        = bool
  default     = false
}

variable "flow_logs_retention_days" {
  description = "How long flow logs are kept, in days (a CloudWatch Logs retention value)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_logs_retention_days)
    error_message = "flow_logs_retention_days must be one of the retention periods CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "tags" {
  description = "Extra tags for every resource of this module (the provider's default_tags come on top)."
  type        = map(string)
  default     = {}
}

variable "flow_logs_kms_key_arn" {
  description = "KMS key to encrypt the flow-log group with; null uses CloudWatch Logs' own encryption. The key policy must let logs.<region>.amazonaws.com use it."
  type        = string
  default     = null
}
