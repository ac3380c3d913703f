# Plan-level checks with a mocked AWS provider: nothing is created, nothing needs credentials.
mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
}

variables {
  bucket = "example-bucket-123"
}

run "versioned_encrypted_private_and_tls_only_by_default" {
  command = plan

  assert {
    condition     = output.versioning_status == "Enabled"
    error_message = "Versioning must be on: it is what lets an overwritten state or release be restored."
  }
  assert {
    condition     = output.encryption.sse_algorithm == "aws:kms" && output.encryption.kms_master_key_id == null && output.encryption.bucket_key_enabled
    error_message = "Default encryption must be SSE-KMS (aws/s3 key when none is given) with a bucket key."
  }
  assert {
    condition     = alltrue(values(output.public_access_block))
    error_message = "All four public access block settings must be on."
  }
  assert {
    condition     = output.tls_only_policy
    error_message = "The TLS-only bucket policy must be attached by default."
  }
  assert {
    condition = alltrue([
      data.aws_iam_policy_document.tls_only[0].statement[0].effect == "Deny",
      one(data.aws_iam_policy_document.tls_only[0].statement[0].condition).variable == "aws:SecureTransport",
      one(data.aws_iam_policy_document.tls_only[0].statement[0].condition).values == tolist(["false"]),
    ])
    error_message = "The bucket policy must deny requests whose aws:SecureTransport is false."
  }
  assert {
    condition     = aws_s3_bucket_ownership_controls.this.rule[0].object_ownership == "BucketOwnerEnforced"
    error_message = "ACLs must be disabled (BucketOwnerEnforced)."
  }
  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.this.rule[0].noncurrent_version_expiration[0].noncurrent_days == 90
    error_message = "Old versions must expire after 90 days by default."
  }
  assert {
    condition     = length(aws_s3_bucket_logging.this) == 0
    error_message = "Access logging is opt-in."
  }
}

run "customer_managed_key_and_no_tls_policy" {
  command = plan

  variables {
    kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    require_tls = false
  }

  assert {
    condition     = output.encryption.kms_master_key_id == var.kms_key_arn
    error_message = "A given KMS key must be the bucket's default encryption key."
  }
  assert {
    condition     = !output.tls_only_policy && output.versioning_status == "Enabled"
    error_message = "require_tls = false (a plain-HTTP emulator) drops only the TLS-only policy."
  }
}

run "bad_bucket_name_and_zero_day_retention_are_refused" {
  command = plan

  variables {
    bucket                             = "Not_A_Bucket"
    noncurrent_version_expiration_days = 0
  }

  expect_failures = [var.bucket, var.noncurrent_version_expiration_days]
}
