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

# What RDS computes for the database (module database): the ARN's parts make the rds-db:connect
# resource, the secret is the one RDS manages, and the endpoint is what the fleets' apps get.
mock_resource "aws_db_instance" {
  defaults = {
    arn         = "arn:aws:rds:us-east-1:123456789012:db:bglab-staging-db"
    resource_id = "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    address     = "bglab-staging-db.abcdefghijkl.us-east-1.rds.amazonaws.com"
    port        = 5432
    master_user_secret = [{
      secret_arn    = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1234-AbCdEf"
      kms_key_id    = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
      secret_status = "active"
    }]
  }
}

# A run that applies the whole composition (against the mock) needs the ARNs that other
# resources take to look like ARNs: the provider validates them even under a mock.
mock_resource "aws_lb" {
  defaults = {
    arn        = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/bglab-staging/1111111111111111"
    arn_suffix = "app/bglab-staging/1111111111111111"
  }
}

mock_resource "aws_lb_target_group" {
  defaults = {
    arn        = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/bglab-staging/2222222222222222"
    arn_suffix = "targetgroup/bglab-staging/2222222222222222"
  }
}

mock_resource "aws_iam_instance_profile" {
  defaults = {
    arn = "arn:aws:iam::123456789012:instance-profile/bglab-staging"
  }
}

mock_resource "aws_sns_topic" {
  defaults = {
    arn = "arn:aws:sns:us-east-1:123456789012:bglab-staging-alarms"
  }
}

mock_resource "aws_kms_key" {
  defaults = {
    arn = "arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000"
  }
}

mock_resource "aws_launch_template" {
  defaults = {
    id = "lt-0123456789abcdef0"
  }
}

mock_resource "aws_lb_listener" {
  defaults = {
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/bglab-staging/1111111111111111/3333333333333333"
  }
}

# The project's key, as the environment roots look it up by its alias.
mock_data "aws_kms_alias" {
  defaults = {
    target_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }
}
