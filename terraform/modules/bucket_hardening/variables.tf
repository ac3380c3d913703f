variable "bucket" {
  description = "Name of an existing S3 bucket to harden. The bucket itself stays with the caller, which decides on lifecycle rules such as prevent_destroy."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "bucket must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for default encryption (SSE-KMS). null uses the AWS-managed key aws/s3: still SSE-KMS, with no key policy to manage, but it cannot be shared across accounts."
  type        = string
  default     = null
}

variable "require_tls" {
  description = "Attach a bucket policy that denies every request not made over TLS (aws:SecureTransport). Keep it on wherever the endpoint is HTTPS; an emulator served over plain HTTP on loopback (the sandbox) would be refused by it, rightly, so labkit turns it off there only."
  type        = bool
  default     = true
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept before S3 expires it. Versions are what lets you restore an overwritten state file or release; 90 days covers a quarter of history."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of days, at least 1."
  }
}

variable "access_logs_bucket" {
  description = "Bucket to receive S3 server access logs for this bucket (under <bucket>/), or null for none. The target must allow the S3 logging service to write."
  type        = string
  default     = null
}
