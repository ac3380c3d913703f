# A deploy role for the "staging" environment of one repository.
provider "aws" {
  region = "us-east-1"
}

module "github_oidc" {
  source = "../.."

  role_name           = "example-staging-deploy"
  github_repository   = "example-org/example-repo"
  github_subject      = { environment = "staging" }
  managed_name_prefix = "example-staging"
  state_bucket_arn    = "arn:aws:s3:::example-tfstate-123456789012-us-east-1"
  state_kms_key_arn   = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  artifact_bucket_arn = "arn:aws:s3:::example-artifacts-123456789012-us-east-1"
  ledger_table_arn    = "arn:aws:dynamodb:us-east-1:123456789012:table/example-deployments"
}

output "role_arn" {
  value = module.github_oidc.role_arn
}
