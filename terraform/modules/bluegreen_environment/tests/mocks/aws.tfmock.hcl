# Mock data for the AWS provider, shared by this module's tests and the environment roots' tests
# (mock_provider "aws" { source = ... }). The provider validates some values even under a mock.

# Generated JSON would not parse as a policy.
mock_data "aws_iam_policy_document" {
  defaults = {
    json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
  }
}

mock_data "aws_availability_zones" {
  defaults = {
    names = ["us-east-1a", "us-east-1b"]
  }
}

mock_data "aws_ssm_parameter" {
  defaults = {
    value = "ami-0aaaaaaaaaaaaaaaa"
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
