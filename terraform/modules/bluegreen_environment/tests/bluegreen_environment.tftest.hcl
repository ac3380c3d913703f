# Plan-level checks of the blue/green environment with a mocked AWS provider (no backend, no
# credentials): the deployment variables, their validation, the cross-variable traffic checks, and
# the fleet behaviour every environment shares.
mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  name            = "bglab-staging"
  vpc_cidr        = "10.20.0.0/16"
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
    error_message = "On AWS (enable_budget default) the environment has a monthly budget."
  }
}

run "defaults_suit_a_lab_but_protect_the_load_balancer" {
  command = plan

  assert {
    condition = alltrue([
      output.settings.vpc_cidr == "10.20.0.0/16", !output.settings.private_subnets,
      output.settings.instances_need_public_ip, output.settings.deregistration_delay == 5,
      output.settings.enable_deletion_protection,
    ])
    error_message = "Defaults: public subnets (no NAT), 5 s draining, deletion protection on."
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

run "null_means_the_default" {
  command = plan

  variables {
    blue_capacity              = null
    green_weight               = null
    enable_deletion_protection = null
    health_check               = null
  }

  assert {
    condition     = module.fleet["blue"].capacity == 2 && module.alb.weights.green == 0 && output.settings.enable_deletion_protection
    error_message = "A root that passes null gets the module's defaults."
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
run "weight_above_100_runaway_capacity_and_bad_names_are_refused" {
  command = plan

  variables {
    name                      = "Bglab_Staging"
    green_capacity            = 2
    green_weight              = 150
    blue_capacity             = 50
    green_version             = "1.1 beta"
    vpc_cidr                  = "10.20.0.0"
    wait_for_capacity_timeout = "ten minutes"
  }

  expect_failures = [
    var.name, var.green_weight, var.blue_capacity, var.green_version, var.vpc_cidr,
    var.wait_for_capacity_timeout,
  ]
}
