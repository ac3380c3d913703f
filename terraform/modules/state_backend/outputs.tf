output "bucket" {
  description = "Name of the state bucket."
  value       = aws_s3_bucket.state.id
}

output "bucket_arn" {
  description = "ARN of the state bucket."
  value       = aws_s3_bucket.state.arn
}

output "lock_table" {
  description = "Name of the DynamoDB lock table (for Terraform before 1.10)."
  value       = aws_dynamodb_table.lock.name
}

output "lock_table_arn" {
  description = "ARN of the DynamoDB lock table."
  value       = aws_dynamodb_table.lock.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the state bucket and lock table."
  value       = local.kms_key_arn
}

output "backend_config" {
  description = "Settings for an S3 backend block (or -backend-config) that stores state here."
  value = {
    bucket         = aws_s3_bucket.state.id
    region         = aws_s3_bucket.state.region
    encrypt        = true
    kms_key_id     = local.kms_key_arn
    dynamodb_table = aws_dynamodb_table.lock.name
  }
}
