# The production root with a mocked AWS provider: the environment module with production's settings.
mock_provider "aws" {
  source = "../../modules/bluegreen_environment/tests/mocks"
}

run "production_defaults" {
  command = plan

  variables {
    region          = "us-east-1"
    artifact_bucket = "bglab-artifacts-123456789012-us-east-1"
    blue_version    = "2.0.0"
    green_version   = "2.0.0"
  }

  assert {
    condition     = output.deployment.blue_version == "2.0.0" && output.deployment.blue_capacity == 2 && module.environment.settings.budget_name == "bglab-production-monthly"
    error_message = "Two blue instances serve everything, and production has a monthly budget on AWS."
  }
  assert {
    condition     = module.environment.settings.private_subnets && !module.environment.settings.instances_need_public_ip
    error_message = "Production instances sit in private subnets behind NAT, with no public address."
  }
  assert {
    condition     = module.environment.settings.enable_deletion_protection && module.environment.settings.deregistration_delay == 30
    error_message = "Production's load balancer is protected from deletion and drains for 30 s."
  }
  assert {
    condition     = module.environment.settings.health_check.interval == 10 && module.environment.settings.vpc_cidr == "10.30.0.0/16"
    error_message = "Production checks health every 10 s in its own VPC range."
  }
}

run "a_setting_on_the_command_line_wins_over_productions_own" {
  command = plan

  variables {
    region               = "us-east-1"
    artifact_bucket      = "bglab-artifacts-123456789012-us-east-1"
    blue_version         = "2.0.0"
    green_version        = "2.0.0"
    deregistration_delay = 60
  }

  assert {
    condition     = module.environment.settings.deregistration_delay == 60 && module.environment.settings.health_check.interval == 10
    error_message = "--var deregistration_delay overrides production's 30 s; its own health checks stay."
  }
}

run "a_production_database_is_protected_and_snapshotted_on_destroy" {
  command = plan

  variables {
    region              = "us-east-1"
    artifact_bucket     = "bglab-artifacts-123456789012-us-east-1"
    blue_version        = "2.0.0"
    green_version       = "2.0.0"
    enable_database     = true
    project_kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/99999999-8888-7777-6666-555555555555"
  }

  assert {
    condition     = output.database.final_snapshot_identifier == "bglab-production-db-final"
    error_message = "Production's database keeps deletion protection and takes a final snapshot when destroyed."
  }
  assert {
    condition     = length(data.aws_kms_alias.project) == 0
    error_message = "A key given with project_kms_key_arn is used as is, without looking up the project's."
  }
}
