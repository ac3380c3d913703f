output "bucket_arn" {
  description = "ARN of the hardened bucket."
  value       = local.bucket_arn
}

output "versioning_status" {
  description = "Versioning status of the bucket (Enabled)."
  value       = aws_s3_bucket_versioning.this.versioning_configuration[0].status
}

output "encryption" {
  description = "Default encryption: { sse_algorithm = \"aws:kms\", kms_master_key_id = <key ARN, or null for aws/s3>, bucket_key_enabled }."
  value = {
    sse_algorithm      = one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].sse_algorithm
    kms_master_key_id  = one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].kms_master_key_id
    bucket_key_enabled = one(aws_s3_bucket_server_side_encryption_configuration.this.rule).bucket_key_enabled
  }
}

output "public_access_block" {
  description = "The four public access block settings (all true)."
  value = {
    block_public_acls       = aws_s3_bucket_public_access_block.this.block_public_acls
    block_public_policy     = aws_s3_bucket_public_access_block.this.block_public_policy
    ignore_public_acls      = aws_s3_bucket_public_access_block.this.ignore_public_acls
    restrict_public_buckets = aws_s3_bucket_public_access_block.this.restrict_public_buckets
  }
}

output "tls_only_policy" {
  description = "True when the bucket policy denies requests made without TLS."
  value       = length(aws_s3_bucket_policy.tls_only) == 1
}
