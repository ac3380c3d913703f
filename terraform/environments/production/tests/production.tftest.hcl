# Plan-level checks of the production root with a mocked AWS provider (no backend, no credentials):
# the deployment variables, their validation, and the cross-variable traffic checks.
mock_provider "aws" {
  # Generated JSON would not parse as a policy; the provider validates policies even under a mock.
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
}

variables {
  region          = "us-east-1"
  artifact_bucket = "bglab-artifacts-123456789012-us-east-1"
  blue_version    = "1.0.0"
  green_version   = "1.0.0"
}

run "production_defaults" {
  command = plan

  assert {
    condition     = module.alb.weights == { blue = 100, green = 0 } && module.fleet["blue"].capacity == 2
    error_message = "The default deployment sends all traffic to two blue instances."
  }
  assert {
    condition     = length(module.network.private_subnet_ids) == 2 && !module.network.instances_need_public_ip
    error_message = "Production instances sit in private subnets behind NAT, with no public address."
  }
  assert {
    condition     = module.monitoring.budget_name == "bglab-production-monthly"
    error_message = "Production has a monthly budget on AWS."
  }
}

run "traffic_to_green_without_instances_is_refused" {
  command = plan

  variables {
    green_weight   = 10
    green_capacity = 0
  }

  expect_failures = [output.deployment]
}

run "weight_above_100_is_refused" {
  command = plan

  variables {
    green_capacity = 2
    green_weight   = 150
  }

  expect_failures = [var.green_weight]
}
