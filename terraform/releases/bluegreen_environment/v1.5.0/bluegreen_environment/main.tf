# One blue/green environment: a VPC, an ALB whose listener splits traffic between a blue and a green
# target group, a fleet per color, and alarms. A deploy changes only the deployment variables (each
# color's version and capacity, green_weight, preview_color) and applies them, so Terraform's state
# is always what serves traffic.

locals {
  # Which release of this composition this is: VERSION names it, and the digest covers every file
  # it runs (this module and the modules it calls), so an edit after a release shows as a different
  # digest under the same version. labkit computes the same digest over a release folder
  # (labkit.infra.composition) to prove which release an environment's state was applied from.
  release_files = sort(setunion(
    fileset("${path.module}/..", "{bluegreen_environment,network,alb,fleet,monitoring,database}/*.tf"),
    fileset("${path.module}/..", "{bluegreen_environment,network,alb,fleet,monitoring,database}/templates/*"),
    fileset("${path.module}/..", "bluegreen_environment/VERSION"),
  ))
  release = {
    version = trimspace(file("${path.module}/VERSION"))
    digest  = sha256(join("\n", [for f in local.release_files : "${f} ${filesha256("${path.module}/../${f}")}"]))
  }

  colors = {
    blue  = { version = var.blue_version, capacity = var.blue_capacity, weight = 100 - var.green_weight }
    green = { version = var.green_version, capacity = var.green_capacity, weight = var.green_weight }
  }
}

module "network" {
  source = "../network"

  name                    = var.name
  cidr_block              = var.vpc_cidr
  enable_private_subnets  = var.enable_private_subnets
  enable_database_subnets = var.enable_database
}

module "alb" {
  source = "../alb"

  name           = var.name
  vpc_id         = module.network.vpc_id
  vpc_cidr_block = module.network.vpc_cidr_block
  subnet_ids     = module.network.public_subnet_ids

  green_weight    = var.green_weight
  preview_header  = var.preview_header
  preview_color   = var.preview_color
  certificate_arn = var.certificate_arn

  health_check               = var.health_check
  deregistration_delay       = var.deregistration_delay
  enable_deletion_protection = var.enable_deletion_protection
}

module "fleet" {
  source   = "../fleet"
  for_each = local.colors

  name            = var.name
  color           = each.key
  release_version = each.value.version
  capacity        = each.value.capacity
  artifact_bucket = var.artifact_bucket

  vpc_id                      = module.network.vpc_id
  subnet_ids                  = module.network.app_subnet_ids
  associate_public_ip_address = module.network.instances_need_public_ip
  alb_security_group_id       = module.alb.security_group_id
  target_group_arn            = module.alb.target_group_arns[each.key]

  image_id      = var.image_id
  instance_type = var.instance_type
  spot          = var.spot_instances
  instance_tags = var.instance_tags

  wait_for_capacity_timeout = var.wait_for_capacity_timeout

  # The app's database: its settings reach app.service, and the role may read its secret.
  database = var.enable_database ? {
    secret_arn  = module.database[0].master_user_secret_arn
    kms_key_arn = var.database_kms_key_arn
    host        = module.database[0].address
    port        = module.database[0].port
    name        = module.database[0].database_name
  } : null
}

# The database both colors share: it outlives every deploy, so it is no part of a fleet. Only the
# fleets' security groups reach it, and each fleet's instance role may read its secret and nothing
# else of Secrets Manager (module fleet's database input).
module "database" {
  source = "../database"
  count  = var.enable_database ? 1 : 0

  name                       = "${var.name}-db"
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.database_subnet_ids
  allowed_security_group_ids = { for color, fleet in module.fleet : color => fleet.security_group_id }
  kms_key_arn                = var.database_kms_key_arn
  instance_class             = var.database_instance_class
  enable_deletion_protection = var.enable_deletion_protection
  snapshot_identifier        = var.database_snapshot_identifier
}

# The fleets' groups let out HTTPS only (module fleet): add the database's port, to its group alone.
resource "aws_vpc_security_group_egress_rule" "to_database" {
  for_each = var.enable_database ? local.colors : {}

  security_group_id            = module.fleet[each.key].security_group_id
  description                  = "PostgreSQL to the environment's database"
  referenced_security_group_id = module.database[0].security_group_id
  ip_protocol                  = "tcp"
  from_port                    = module.database[0].security_group_port
  to_port                      = module.database[0].security_group_port
}

module "monitoring" {
  source = "../monitoring"

  name                     = var.name
  load_balancer_arn_suffix = module.alb.lb_arn_suffix
  target_groups            = module.alb.target_group_arn_suffixes
  alarm_emails             = var.alarm_emails
  kms_key_arn              = var.alarm_kms_key_arn
  enable_dashboard         = var.enable_dashboard
  enable_budget            = var.enable_budget
  monthly_budget_usd       = var.monthly_budget_usd
}
