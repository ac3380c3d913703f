# The staging root with a mocked AWS provider: it builds the environment module with staging's own
# settings. The deployment variables and their checks are tested once, in the module.
mock_provider "aws" {
  source = "../../modules/bluegreen_environment/tests/mocks"
}

variables {
  region          = "us-east-1"
  artifact_bucket = "bglab-artifacts-123456789012-us-east-1"
  blue_version    = "1.0.0"
  green_version   = "1.0.0"
}

run "staging_is_a_lab_that_tears_down" {
  command = plan

  assert {
    condition = alltrue([
      module.environment.settings.vpc_cidr == "10.20.0.0/16",
      !module.environment.settings.private_subnets,
      !module.environment.settings.enable_deletion_protection,
      module.environment.settings.budget_name == "bglab-staging-monthly",
      output.deployment.blue_capacity == 2 && output.deployment.green_weight == 0,
    ])
    error_message = "Staging: 10.20.0.0/16, public subnets, no deletion protection, a budget, blue serving."
  }
  assert {
    condition     = output.database == null
    error_message = "No database unless enable_database: every lab builds staging."
  }
}

run "staging_keeps_to_its_budget" {
  command = plan

  assert {
    condition = alltrue([
      module.environment.settings.instance_type == "t4g.micro",
      module.environment.settings.spot_instances,
      !module.environment.settings.dashboard,
      output.dashboard_name == null,
    ])
    error_message = "Staging runs Graviton instances on spot capacity and has no dashboard (bench/cost.py prices why)."
  }
  assert {
    condition     = data.aws_kms_alias.project[0].name == "alias/bglab-tfstate-123456789012-us-east-1" && module.environment.settings.alarm_kms_key_arn == data.aws_kms_alias.project[0].target_key_arn
    error_message = "Staging's alarm topic uses the project's key (found by its alias), not a key of its own."
  }
}

run "a_setting_given_as_a_variable_wins_over_stagings_budget_settings" {
  command = plan

  variables {
    instance_type              = "t3.micro"
    spot_instances             = false
    enable_dashboard           = true
    alarm_topic_on_project_key = false
  }

  assert {
    condition = alltrue([
      module.environment.settings.instance_type == "t3.micro",
      !module.environment.settings.spot_instances,
      module.environment.settings.dashboard,
    ])
    error_message = "--var instance_type, spot_instances and enable_dashboard override staging's own settings."
  }
  assert {
    condition     = length(data.aws_kms_alias.project) == 0
    error_message = "With alarm_topic_on_project_key = false and no database, the root needs no project key."
  }
}

run "the_database_uses_the_projects_key_and_tears_down_with_staging" {
  command = plan

  variables {
    enable_database = true
  }

  assert {
    condition     = data.aws_kms_alias.project[0].name == "alias/bglab-tfstate-123456789012-us-east-1"
    error_message = "Without project_kms_key_arn, the root finds the project's key by the alias global's state_backend gives it."
  }
  assert {
    condition     = output.database.final_snapshot_identifier == null
    error_message = "Staging's database is built unprotected and without a final snapshot: a lab's teardown leaves nothing that costs."
  }
}

run "a_lesson_may_try_another_range_and_private_subnets" {
  command = plan

  variables {
    vpc_cidr               = "10.99.0.0/16"
    enable_private_subnets = true
  }

  assert {
    condition     = module.environment.settings.vpc_cidr == "10.99.0.0/16" && module.environment.settings.private_subnets
    error_message = "vpc_cidr and enable_private_subnets override the environment's own settings."
  }
}

run "a_setting_on_the_command_line_wins_over_the_environments_own" {
  command = plan

  variables {
    deregistration_delay = 7
    health_check         = { interval = 10 }
  }

  assert {
    condition     = module.environment.settings.deregistration_delay == 7 && module.environment.settings.health_check.interval == 10
    error_message = "`labkit stack apply staging --var deregistration_delay=7` (and health_check) reach the module."
  }
}

run "a_range_that_overlaps_another_environments_is_refused_at_plan" {
  command = plan

  variables {
    vpc_cidr        = "10.30.128.0/20"
    other_vpc_cidrs = { production = "10.30.0.0/16" }
  }

  expect_failures = [output.vpc_cidr]
}

run "ranges_that_do_not_overlap_and_its_own_entry_pass" {
  command = plan

  variables {
    other_vpc_cidrs = { production = "10.30.0.0/16", other = "10.21.0.0/16", staging = "10.20.0.0/16" }
  }

  assert {
    condition     = length(local.vpc_cidr_overlaps) == 0
    error_message = "Only another environment's overlapping range is refused."
  }
}
