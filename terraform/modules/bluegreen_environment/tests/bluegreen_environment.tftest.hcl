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
      output.settings.instance_type == "t3.micro", !output.settings.spot_instances, output.settings.dashboard,
    ])
    error_message = "Defaults: public subnets (no NAT), 5 s draining, deletion protection on, t3.micro on demand, a dashboard."
  }
}

run "spot_a_given_alarm_key_and_no_dashboard" {
  command = plan

  variables {
    spot_instances    = true
    enable_dashboard  = false
    alarm_kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/22222222-3333-4444-5555-666666666666"
  }

  assert {
    condition     = alltrue([for color in ["blue", "green"] : module.fleet[color].market == "spot"]) && output.settings.spot_instances
    error_message = "spot_instances reaches both fleets."
  }
  assert {
    condition     = output.dashboard_name == null && output.settings.alarm_kms_key_arn == var.alarm_kms_key_arn
    error_message = "No dashboard, and the alarm topic on the given key."
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

run "no_database_by_default" {
  command = plan

  assert {
    condition     = length(module.database) == 0 && output.database == null
    error_message = "The database is opt-in (enable_database): every lab builds staging, and the app uses none yet."
  }
  assert {
    condition     = length(module.network.database_subnet_ids) == 0 && length(aws_vpc_security_group_egress_rule.to_database) == 0 && module.fleet["blue"].database == null && module.fleet["green"].database == null
    error_message = "Without the database, no database subnets and no secret access for the fleets."
  }
}

# apply (against the mock) so that what RDS computes (the secret, the ARN) is known.
run "the_database_admits_the_fleets_and_they_read_its_secret_only" {
  command = apply

  variables {
    enable_database      = true
    database_kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = length(module.network.database_subnet_ids) == 2
    error_message = "enable_database brings the network's isolated database subnets, one per zone."
  }
  assert {
    condition = module.database[0].allowed_security_group_ids == {
      blue  = module.fleet["blue"].security_group_id
      green = module.fleet["green"].security_group_id
    }
    error_message = "The database admits both fleets' security groups, and nothing else."
  }
  assert {
    condition = alltrue([
      for color in ["blue", "green"] :
      aws_vpc_security_group_egress_rule.to_database[color].security_group_id == module.fleet[color].security_group_id &&
      aws_vpc_security_group_egress_rule.to_database[color].referenced_security_group_id == module.database[0].security_group_id &&
      aws_vpc_security_group_egress_rule.to_database[color].from_port == 5432 && aws_vpc_security_group_egress_rule.to_database[color].to_port == 5432
    ])
    error_message = "Each fleet may open connections to the database's port, to the database's group only (its other egress is HTTPS)."
  }
  assert {
    condition = alltrue([
      for color in ["blue", "green"] : module.fleet[color].database == {
        secret_arn  = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1234-AbCdEf"
        kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
        host        = "bglab-staging-db.abcdefghijkl.us-east-1.rds.amazonaws.com"
        port        = 5432
        name        = "app"
      }
    ])
    error_message = "Each fleet's app runs on the database (its endpoint, name and secret), and its role may read that secret with that key (module fleet)."
  }
  assert {
    condition = alltrue([
      output.database.identifier == "bglab-staging-db",
      output.database.database_name == "app",
      output.database.master_user_secret_arn == "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1234-AbCdEf",
    ])
    error_message = "The database output says how to reach it and where its credentials are."
  }
  assert {
    condition     = module.database[0].final_snapshot_identifier == "bglab-staging-db-final"
    error_message = "With the environment's deletion protection (the default), a destroy of the database takes a final snapshot."
  }
}

run "a_lab_staging_database_is_torn_down_with_it" {
  command = plan

  variables {
    enable_database            = true
    database_kms_key_arn       = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    enable_deletion_protection = false
  }

  assert {
    condition     = module.database[0].final_snapshot_identifier == null
    error_message = "enable_deletion_protection = false (staging) leaves the database unprotected and without a final snapshot."
  }
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
