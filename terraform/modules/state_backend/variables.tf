variable "bucket_name" {
  description = "Name of the state bucket. S3 names are global, so include the account id and region (labkit passes <project>-tfstate-<account>-<region>)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 lowercase letters, digits and hyphens (no dots: the S3 backend's TLS certificate check fails on dotted names)."
  }
}

variable "lock_table_name" {
  description = "Name of the DynamoDB lock table, which Terraform before 1.10 needs for state locking (1.10+ can lock with use_lockfile in S3 itself)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.lock_table_name))
    error_message = "lock_table_name must be 3-255 letters, digits, underscores, dots or hyphens (DynamoDB's rule for table names)."
  }
}

variable "kms_key_arn" {
  description = "KMS key to encrypt the state bucket and lock table with. null creates a dedicated key with rotation on, which other global resources may reuse (output kms_key_arn)."
  type        = string
  default     = null
}

variable "kms_key_deletion_window_days" {
  description = "Days a deleted KMS key waits before it is gone for good (7-30). Until then it can be restored, and with it every state version it encrypted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_days >= 7 && var.kms_key_deletion_window_days <= 30
    error_message = "kms_key_deletion_window_days must be 7-30, the range KMS accepts."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days an overwritten state version is kept (your window to restore a corrupted or wrongly applied state)."
  type        = number
  default     = 90
}

variable "require_tls" {
  description = "Deny every request to the state bucket that is not made over TLS. Off only for an emulator on plain-HTTP loopback (labkit's sandbox)."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "Bucket for S3 server access logs of the state bucket, or null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags for every resource of this module (the provider's default_tags come on top)."
  type        = map(string)
  default     = {}
}
