# Plan-level checks of the staging root with a mocked AWS provider (no backend, no credentials):
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

run "blue_serves_everything_at_first" {
  command = plan

  assert {
    condition     = module.alb.weights == { blue = 100, green = 0 }
    error_message = "The default deployment sends all traffic to blue."
  }
  assert {
    condition     = module.fleet["blue"].capacity == 2 && module.fleet["green"].capacity == 0
    error_message = "Blue runs two instances and green is parked by default."
  }
  assert {
    condition     = output.preview_color == "green" && output.preview_header == "X-Preview"
    error_message = "The preview header reaches the idle color, green."
  }
  assert {
    condition = alltrue([
      output.deployment.blue_version == "1.0.0", output.deployment.green_version == "1.0.0",
      output.deployment.blue_capacity == 2, output.deployment.green_capacity == 0,
      output.deployment.green_weight == 0, output.deployment.preview_color == null,
    ])
    error_message = "The deployment output reports the variables as applied."
  }
  assert {
    condition     = module.fleet["blue"].artifact_uri == "s3://bglab-artifacts-123456789012-us-east-1/releases/1.0.0/release.tar.gz"
    error_message = "Each fleet fetches its color's release from the artifact bucket."
  }
  assert {
    condition     = module.monitoring.budget_name == "bglab-staging-monthly"
    error_message = "On AWS (enable_budget default) staging has a monthly budget."
  }
}

run "canary_step" {
  command = plan

  variables {
    green_version  = "1.1.0"
    green_capacity = 1
    green_weight   = 10
    enable_budget  = false
  }

  assert {
    condition     = module.alb.weights == { blue = 90, green = 10 }
    error_message = "green_weight 10 sends 90% to blue and 10% to green."
  }
  assert {
    condition     = module.fleet["green"].release_version == "1.1.0" && module.monitoring.budget_name == null
    error_message = "Green runs the new release; no budget when enable_budget is false."
  }
}

run "all_traffic_on_green_lets_blue_park" {
  command = plan

  variables {
    blue_capacity  = 0
    green_capacity = 2
    green_weight   = 100
  }

  assert {
    condition     = module.alb.weights == { blue = 0, green = 100 } && output.preview_color == "blue"
    error_message = "With all traffic on green, blue may have no instances and becomes the preview color."
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

run "traffic_to_blue_without_instances_is_refused" {
  command = plan

  variables {
    blue_capacity  = 0
    green_capacity = 2
    green_weight   = 50
  }

  expect_failures = [output.deployment]
}

# Bad inputs in one run: each listed variable must fail its own validation.
run "weight_above_100_runaway_capacity_and_bad_version_are_refused" {
  command = plan

  variables {
    green_capacity = 2
    green_weight   = 150
    blue_capacity  = 50
    green_version  = "1.1 beta"
  }

  expect_failures = [var.green_weight, var.blue_capacity, var.green_version]
}
