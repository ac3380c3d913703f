# Remote state for every environment: a versioned, KMS-encrypted, private, TLS-only bucket that
# refuses destruction (prevent_destroy), and a DynamoDB lock table for Terraform before 1.10.
#
# Tearing the bucket down is deliberate and happens outside Terraform's plan: labkit's global
# teardown (labkit.infra.stack.Stack("global", target).teardown(confirm="global")) moves the state back
# to a local file, removes the bucket from state, destroys the rest, then empties and deletes it.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.state[0].arn
}

data "aws_iam_policy_document" "kms" {
  count = var.kms_key_arn == null ? 1 : 0

  # The account (and through it, IAM policies) administers and uses the key.
  statement {
    sid       = "AccountAdministersKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  # An environment's alarm topic may be encrypted with this key (staging's is): CloudWatch alarms
  # and AWS Budgets publish to it, for this account only (the conditions keep another account's
  # alarms from using the key through the service: the confused deputy).
  statement {
    sid       = "AlarmsAndBudgetsOfThisAccountPublish"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_kms_key" "state" {
  count = var.kms_key_arn == null ? 1 : 0

  description             = "Terraform state (${var.bucket_name}) and lock table"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_key_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms[0].json

  tags = var.tags
}

resource "aws_kms_alias" "state" {
  count = var.kms_key_arn == null ? 1 : 0

  name          = "alias/${var.bucket_name}"
  target_key_id = aws_kms_key.state[0].key_id
}

resource "aws_s3_bucket" "state" {
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage and needs a second region's bucket and key; versioning plus KMS covers the lab's failure modes (bad apply, corrupted state).
  #checkov:skip=CKV2_AWS_62:Nothing consumes events of state writes; CloudTrail data events are the audit trail if needed.
  #checkov:skip=CKV_AWS_18:Access logging is opt-in (access_logs_bucket) through module bucket_hardening; a log bucket needs its own retention policy.
  bucket = var.bucket_name

  tags = merge(var.tags, { Name = var.bucket_name, Purpose = "terraform-state" })

  # The state of every environment lives here: losing it orphans every resource they manage.
  lifecycle {
    prevent_destroy = true
  }
}

module "hardening" {
  source = "../bucket_hardening"

  bucket                             = aws_s3_bucket.state.id
  kms_key_arn                        = local.kms_key_arn
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  access_logs_bucket                 = var.access_logs_bucket
  require_tls                        = var.require_tls
}

resource "aws_dynamodb_table" "lock" {
  name         = var.lock_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "LockID"

  attribute {
    name = "LockID"
    type = "S"
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }

  point_in_time_recovery {
    enabled = true
  }

  tags = merge(var.tags, { Name = var.lock_table_name, Purpose = "terraform-lock" })
}
