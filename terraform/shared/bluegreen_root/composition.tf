# The blue/green environment, composed once for every environment root that links this file. The
# root's own main.tf sets what differs: local.environment and local.settings, an object holding only
# the settings that differ from the module's defaults (a missing one passes null, which the module
# reads as "my default"). A root variable set on the command line (`--var deregistration_delay=7`)
# wins over both.

locals {
  name     = "${var.project}-${local.environment}"
  vpc_cidr = coalesce(var.vpc_cidr, local.settings.vpc_cidr)

  # The other environments' VPC ranges that overlap this one's: two ranges overlap when their
  # network addresses agree at the shorter of the two prefixes. the vpc_cidr output's
  # precondition refuses the plan while this is not empty.
  vpc_cidr_overlaps = {
    for env, cidr in var.other_vpc_cidrs : env => cidr
    if env != local.environment && (
      cidrhost("${cidrhost(cidr, 0)}/${min(tonumber(split("/", cidr)[1]), tonumber(split("/", local.vpc_cidr)[1]))}", 0) ==
      cidrhost("${cidrhost(local.vpc_cidr, 0)}/${min(tonumber(split("/", cidr)[1]), tonumber(split("/", local.vpc_cidr)[1]))}", 0)
    )
  }

  enable_database = var.enable_database != null ? var.enable_database : try(local.settings.enable_database, false)
  # The alarm topic on the project's key instead of a key of its own (a dollar a month less); the
  # key's policy lets CloudWatch alarms and AWS Budgets of this account use it (modules/state_backend).
  alarm_topic_on_project_key = var.alarm_topic_on_project_key != null ? var.alarm_topic_on_project_key : try(local.settings.alarm_topic_on_project_key, false)
  # The project's key unless one is given: global's state_backend names it after the state bucket.
  needs_project_key  = local.enable_database || local.alarm_topic_on_project_key
  lookup_project_key = local.needs_project_key && var.project_kms_key_arn == null
  project_kms_key_arn = (
    !local.needs_project_key ? null :
    local.lookup_project_key ? data.aws_kms_alias.project[0].target_key_arn : var.project_kms_key_arn
  )

  tags = merge(var.tags, {
    Project     = var.project
    Environment = local.environment
    ManagedBy   = "terraform"
  })
}

data "aws_caller_identity" "current" {
  count = local.lookup_project_key ? 1 : 0
}

# The state bucket's name is labkit's (labkit.infra.stack.Names.state_bucket); its key's alias is
# alias/<bucket> (modules/state_backend).
data "aws_kms_alias" "project" {
  count = local.lookup_project_key ? 1 : 0
  name  = "alias/${var.project}-tfstate-${data.aws_caller_identity.current[0].account_id}-${var.region}"
}

# ./composition is each root's pin, a link to a folder of modules: staging's to ../../modules (the
# working tree), production's to a released copy, ../../releases/bluegreen_environment/vX.Y.Z, so an
# experimental module change reaches production only when promote-composition moves the link.
module "environment" {
  source = "./composition/bluegreen_environment"

  name            = local.name
  artifact_bucket = var.artifact_bucket
  vpc_cidr        = local.vpc_cidr
  image_id        = var.image_id
  instance_type   = var.instance_type != null ? var.instance_type : try(local.settings.instance_type, null)
  spot_instances  = var.spot_instances != null ? var.spot_instances : try(local.settings.spot_instances, null)
  instance_tags   = local.tags
  certificate_arn = var.certificate_arn
  alarm_emails    = var.alarm_emails
  enable_budget   = var.enable_budget

  enable_dashboard  = var.enable_dashboard != null ? var.enable_dashboard : try(local.settings.enable_dashboard, null)
  alarm_kms_key_arn = local.alarm_topic_on_project_key ? local.project_kms_key_arn : null

  enable_private_subnets     = var.enable_private_subnets != null ? var.enable_private_subnets : try(local.settings.enable_private_subnets, null)
  health_check               = var.health_check != null ? var.health_check : try(local.settings.health_check, null)
  deregistration_delay       = var.deregistration_delay != null ? var.deregistration_delay : try(local.settings.deregistration_delay, null)
  enable_deletion_protection = try(local.settings.enable_deletion_protection, null)
  monthly_budget_usd         = var.monthly_budget_usd != null ? var.monthly_budget_usd : try(local.settings.monthly_budget_usd, null)
  wait_for_capacity_timeout  = var.wait_for_capacity_timeout

  enable_database      = local.enable_database
  database_kms_key_arn = local.enable_database ? local.project_kms_key_arn : null
  # A restore's one-off input: never carried over to the next apply (outputs.tf's carried_variables).
  database_snapshot_identifier = var.database_snapshot_identifier

  blue_version   = var.blue_version
  green_version  = var.green_version
  blue_capacity  = var.blue_capacity
  green_capacity = var.green_capacity
  green_weight   = var.green_weight
  preview_header = var.preview_header
  preview_color  = var.preview_color
}

# Before the composition module, each root called these modules itself: existing states move into
# module.environment without destroying anything (a no-change plan; tests/conftest.py checks it).
moved {
  from = module.network
  to   = module.environment.module.network
}

moved {
  from = module.alb
  to   = module.environment.module.alb
}

moved {
  from = module.fleet
  to   = module.environment.module.fleet
}

moved {
  from = module.monitoring
  to   = module.environment.module.monitoring
}
