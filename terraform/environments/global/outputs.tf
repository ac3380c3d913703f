output "region" {
  description = "Region of the account-wide resources."
  value       = var.region
}

output "state_bucket" {
  description = "Name of the Terraform state bucket."
  value       = module.state_backend.bucket
}

output "lock_table" {
  description = "Name of the DynamoDB state lock table (Terraform before 1.10)."
  value       = module.state_backend.lock_table
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts state, the lock table and the ledger."
  value       = module.state_backend.kms_key_arn
}

output "artifact_bucket" {
  description = "Name of the release artifact bucket."
  value       = aws_s3_bucket.artifacts.id
}

output "ledger_table" {
  description = "Name of the deployment ledger table (pk/sk strings, on-demand)."
  value       = aws_dynamodb_table.ledger.name
}

output "ledger_table_arn" {
  description = "ARN of the deployment ledger table."
  value       = aws_dynamodb_table.ledger.arn
}

output "github_deploy_role_arn" {
  description = "ARN of the role GitHub Actions assumes to deploy staging, or null without github_repository."
  value       = one(module.github_oidc[*].role_arn)
}

output "github_plan_role_arn" {
  description = "ARN of the read-only role that pull request workflows assume to plan, or null."
  value       = one(module.github_oidc[*].plan_role_arn)
}

output "github_trusted_subject" {
  description = "The one OIDC token subject the deploy role admits, or null."
  value       = one(module.github_oidc[*].trusted_subject)
}

output "backend_config" {
  description = "S3 backend settings of the state bucket (labkit adds the key and the locking mode)."
  value       = module.state_backend.backend_config
}
