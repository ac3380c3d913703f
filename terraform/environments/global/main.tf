# Account-wide resources that every environment uses: the Terraform state backend, the release
# artifact bucket, the deployment ledger table and the GitHub Actions OIDC role.

locals {
  environment = "global"

  tags = merge(var.tags, {
    Project     = var.project
    Environment = local.environment
    ManagedBy   = "terraform"
  })
}

module "state_backend" {
  source = "../../modules/state_backend"

  bucket_name     = var.state_bucket_name
  lock_table_name = var.lock_table_name
  require_tls     = var.require_tls
}

# --- release artifacts -----------------------------------------------------------------------

resource "aws_s3_bucket" "artifacts" {
  #checkov:skip=CKV_AWS_144:Releases are rebuilt from git; replicating them to a second region is not worth its cost here.
  #checkov:skip=CKV2_AWS_62:Nothing consumes upload events; the deploy controller records releases in the ledger.
  #checkov:skip=CKV_AWS_18:Access logging is opt-in through module bucket_hardening (access_logs_bucket).
  bucket        = var.artifact_bucket_name
  force_destroy = var.artifact_bucket_force_destroy

  tags = { Name = var.artifact_bucket_name, Purpose = "release-artifacts" }
}

# AWS-managed SSE-KMS (aws/s3): instances then need only s3:GetObject to read a release, with no
# key policy to keep in step with every fleet's role.
module "artifact_hardening" {
  source = "../../modules/bucket_hardening"

  bucket      = aws_s3_bucket.artifacts.id
  require_tls = var.require_tls
}

# --- deployment ledger -----------------------------------------------------------------------

resource "aws_dynamodb_table" "ledger" {
  name         = var.ledger_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = module.state_backend.kms_key_arn
  }

  # The ledger is the deployment history (DORA metrics); a bad write should be recoverable.
  point_in_time_recovery {
    enabled = true
  }

  tags = { Name = var.ledger_table_name, Purpose = "deployment-ledger" }
}

# --- GitHub Actions ----------------------------------------------------------------------------

module "github_oidc" {
  source = "../../modules/github_oidc"
  count  = var.github_repository != null ? 1 : 0

  role_name            = "${var.project}-staging-deploy"
  github_repository    = var.github_repository
  github_subject       = var.github_subject
  create_oidc_provider = var.create_oidc_provider
  oidc_issuer_url      = var.github_oidc_issuer_url
  oidc_thumbprints     = var.github_oidc_thumbprints
  managed_name_prefix  = "${var.project}-staging"
  plan_role_name       = "${var.project}-staging-plan"

  state_bucket_arn   = module.state_backend.bucket_arn
  state_key_prefixes = ["staging/"]
  # A staging plan reads production's VPC range and the developer environments' claims (labkit.infra.stack.vpc_cidrs);
  # adopt-or-remove-orphans reads what every environment's state holds (labkit.infra.inventory.find_orphans).
  readable_state_keys = [
    "production/terraform.tfstate", "global/terraform.tfstate", "dev-*/terraform.tfstate",
    "labkit/dev-environments/environments/*",
  ]
  lock_table_arn      = var.lock_with_table ? module.state_backend.lock_table_arn : null
  state_kms_key_arn   = module.state_backend.kms_key_arn
  artifact_bucket_arn = module.artifact_hardening.bucket_arn
  ledger_table_arn    = aws_dynamodb_table.ledger.arn
  # Rights only for what the app roots build: a budget where they have one; never flow logs, which
  # bluegreen_environment does not turn on; no KMS key of staging's own, since its alarm topic uses
  # the project's key (alarm_topic_on_project_key in environments/staging/main.tf).
  manage_budget    = var.enable_budget
  manage_flow_logs = false
  manage_alarm_key = false
}
