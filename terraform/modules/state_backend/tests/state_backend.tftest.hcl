# Plan-level checks with a mocked AWS provider: nothing is created, nothing needs credentials.
# (An apply run could not be cleaned up by the test harness: prevent_destroy refuses, as it should.)
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
}

variables {
  bucket_name     = "bglab-tfstate-123456789012-us-east-1"
  lock_table_name = "bglab-tflock"
}

run "state_bucket_is_versioned_encrypted_and_private" {
  command = plan

  assert {
    condition     = module.hardening.versioning_status == "Enabled"
    error_message = "The state bucket must be versioned: a corrupted or wrongly applied state is restored from an earlier version."
  }
  assert {
    condition     = module.hardening.encryption.sse_algorithm == "aws:kms" && length(aws_kms_key.state) == 1
    error_message = "The state bucket must be encrypted with SSE-KMS under a key of its own."
  }
  assert {
    condition     = alltrue(values(module.hardening.public_access_block))
    error_message = "The state bucket must not be public: all four public access block settings on."
  }
  assert {
    condition     = module.hardening.tls_only_policy
    error_message = "The state bucket must refuse requests made without TLS."
  }
  assert {
    condition     = aws_kms_key.state[0].enable_key_rotation && aws_kms_key.state[0].deletion_window_in_days == 30
    error_message = "The state key rotates yearly and waits 30 days before it can be lost."
  }

  assert {
    condition = alltrue([
      aws_dynamodb_table.lock.hash_key == "LockID",
      aws_dynamodb_table.lock.billing_mode == "PAY_PER_REQUEST",
      aws_dynamodb_table.lock.server_side_encryption[0].enabled,
      aws_dynamodb_table.lock.point_in_time_recovery[0].enabled,
    ])
    error_message = "The lock table: LockID key, on-demand, encrypted, point-in-time recovery."
  }
  assert {
    condition     = output.backend_config.dynamodb_table == "bglab-tflock"
    error_message = "backend_config names the lock table."
  }
}

run "given_key_is_used_and_none_created" {
  command = plan

  variables {
    kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/99999999-2222-3333-4444-555555555555"
  }

  assert {
    condition = alltrue([
      length(aws_kms_key.state) == 0,
      output.kms_key_arn == var.kms_key_arn,
      module.hardening.encryption.kms_master_key_id == var.kms_key_arn,
      aws_dynamodb_table.lock.server_side_encryption[0].kms_key_arn == var.kms_key_arn,
    ])
    error_message = "A given key encrypts the bucket and the lock table, and no key is created."
  }
}

run "dotted_bucket_name_and_short_key_window_are_refused" {
  command = plan

  variables {
    bucket_name                  = "bglab.tfstate"
    kms_key_deletion_window_days = 3
  }

  expect_failures = [var.bucket_name, var.kms_key_deletion_window_days]
}
