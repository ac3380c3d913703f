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

output "github_settings" {
  description = "The GitHub OIDC variables as applied, for the next apply to keep (labkit carries them over, as it carries an app environment's deployment); null without github_repository."
  value = var.github_repository == null ? null : {
    github_repository       = var.github_repository
    github_subject          = var.github_subject
    github_oidc_issuer_url  = var.github_oidc_issuer_url
    github_oidc_thumbprints = var.github_oidc_thumbprints
    create_oidc_provider    = var.create_oidc_provider
  }
}
