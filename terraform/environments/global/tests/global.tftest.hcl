# Plan-level checks of the global root with a mocked AWS provider (no backend, no credentials).
mock_provider "aws" {
  # Generated JSON would not parse as a policy; the provider validates policies even under a mock.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_region" {
    defaults = {
      name = "us-east-1"
    }
  }
}

variables {
  region               = "us-east-1"
  state_bucket_name    = "bglab-tfstate-123456789012-us-east-1"
  lock_table_name      = "bglab-tflock"
  artifact_bucket_name = "bglab-artifacts-123456789012-us-east-1"
  ledger_table_name    = "bglab-deployments"
}

run "ledger_artifacts_and_state_backend" {
  command = plan

  assert {
    condition = alltrue([
      aws_dynamodb_table.ledger.hash_key == "pk",
      aws_dynamodb_table.ledger.range_key == "sk",
      aws_dynamodb_table.ledger.billing_mode == "PAY_PER_REQUEST",
      aws_dynamodb_table.ledger.attribute == toset([{ name = "pk", type = "S" }, { name = "sk", type = "S" }]),
      aws_dynamodb_table.ledger.point_in_time_recovery[0].enabled,
    ])
    error_message = "The ledger table: string keys pk and sk, on-demand, point-in-time recovery."
  }
  assert {
    condition = alltrue([
      module.artifact_hardening.versioning_status == "Enabled",
      module.artifact_hardening.encryption.sse_algorithm == "aws:kms",
      alltrue(values(module.artifact_hardening.public_access_block)),
      module.artifact_hardening.tls_only_policy,
    ])
    error_message = "The artifact bucket gets the same baseline as the state bucket."
  }
  assert {
    condition     = output.ledger_table == "bglab-deployments" && output.lock_table == "bglab-tflock"
    error_message = "Table names come from the variables labkit passes."
  }
  assert {
    condition     = length(module.github_oidc) == 0
    error_message = "No OIDC role without a repository to trust."
  }
}

run "oidc_role_and_sandbox_settings" {
  command = plan

  variables {
    github_repository = "acme/bluegreen-lab"
    require_tls       = false
  }

  assert {
    condition     = output.github_trusted_subject == "repo:acme/bluegreen-lab:environment:staging"
    error_message = "The deploy role trusts the repository's staging environment by default."
  }
  assert {
    condition     = !module.artifact_hardening.tls_only_policy && module.artifact_hardening.versioning_status == "Enabled"
    error_message = "require_tls = false (the sandbox) removes the TLS-only policies and nothing else."
  }
}

run "artifact_bucket_with_dots_is_refused" {
  command = plan

  variables {
    artifact_bucket_name = "bglab.artifacts"
  }

  expect_failures = [var.artifact_bucket_name]
}
