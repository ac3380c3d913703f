output "alb_dns_name" {
  description = "DNS name of the load balancer: where clients (and the probe) send requests."
  value       = module.alb.dns_name
}

output "alb_arn" {
  description = "ARN of the load balancer."
  value       = module.alb.lb_arn
}

output "alb_arn_suffix" {
  description = "CloudWatch dimension value of the load balancer (app/NAME/ID)."
  value       = module.alb.lb_arn_suffix
}

output "listener_arn" {
  description = "The listener that carries the weighted forward (and the preview rule)."
  value       = module.alb.listener_arn
}

output "blue_target_group_arn" {
  description = "ARN of the blue target group."
  value       = module.alb.target_group_arns["blue"]
}

output "green_target_group_arn" {
  description = "ARN of the green target group."
  value       = module.alb.target_group_arns["green"]
}

output "target_group_arn_suffixes" {
  description = "CloudWatch dimension values of the target groups per color (targetgroup/NAME/ID)."
  value       = module.alb.target_group_arn_suffixes
}

output "blue_asg_name" {
  description = "Name of the blue ASG (it changes with blue_version: a new release is a new ASG)."
  value       = module.fleet["blue"].asg_name
}

output "green_asg_name" {
  description = "Name of the green ASG (it changes with green_version)."
  value       = module.fleet["green"].asg_name
}

output "artifact_bucket" {
  description = "Release artifact bucket the fleets read from."
  value       = var.artifact_bucket
}

output "preview_header" {
  description = "Header that reaches the preview color, or null."
  value       = var.preview_header
}

output "preview_color" {
  description = "Color the preview header reaches."
  value       = module.alb.preview_color
}

output "database" {
  description = "How to reach the database, or null without enable_database: address, port, database name, master user and the ARN of the secret holding its password, the IAM-auth connect resource, the security group, the instance's identifier and ARN, and the snapshot a destroy takes (null: none, and no deletion protection)."
  value = var.enable_database ? {
    address                = module.database[0].address
    port                   = module.database[0].port
    database_name          = module.database[0].database_name
    master_username        = module.database[0].master_username
    master_user_secret_arn = module.database[0].master_user_secret_arn
    iam_connect_arn        = module.database[0].iam_connect_arn
    security_group_id      = module.database[0].security_group_id
    identifier             = module.database[0].identifier
    arn                    = module.database[0].arn
    # null: a destroy deletes the data (no deletion protection, no final snapshot).
    final_snapshot_identifier = module.database[0].final_snapshot_identifier
  } : null
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = module.monitoring.sns_topic_arn
}

output "alarm_names" {
  description = "Alarm names per color."
  value       = module.monitoring.alarm_names
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the stack."
  value       = module.monitoring.dashboard_name
}

# The deployment as applied: labkit reads it back so that a step that changes one variable keeps
# the others as they are. The preconditions are the cross-variable checks (Terraform 1.6 cannot
# compare two variables in a validation block): a color that receives traffic must have instances,
# or its share of requests would fail with 503.
output "deployment" {
  description = "The deployment variables as applied: versions, capacities, green_weight and preview_color."
  value = {
    blue_version   = var.blue_version
    green_version  = var.green_version
    blue_capacity  = var.blue_capacity
    green_capacity = var.green_capacity
    green_weight   = var.green_weight
    preview_color  = var.preview_color
  }

  precondition {
    condition     = local.colors.blue.weight == 0 || local.colors.blue.capacity >= 1
    error_message = "blue receives ${local.colors.blue.weight}% of traffic (green_weight = ${var.green_weight}) but blue_capacity is 0, so those requests would fail with 503. Scale blue up first (blue_capacity >= 1) or shift all traffic to green (green_weight = 100)."
  }

  precondition {
    condition     = local.colors.green.weight == 0 || local.colors.green.capacity >= 1
    error_message = "green receives ${local.colors.green.weight}% of traffic but green_capacity is 0, so those requests would fail with 503. Scale green up first (green_capacity >= 1) or keep green_weight at 0."
  }
}

output "settings" {
  description = "What differs between environments, as this one is built: VPC range, where instances sit, draining, deletion protection, health checks (null attributes take the alb module's defaults), instance type, spot, dashboard and budget."
  value = {
    vpc_cidr                   = module.network.vpc_cidr_block
    private_subnets            = length(module.network.private_subnet_ids) > 0
    instances_need_public_ip   = module.network.instances_need_public_ip
    deregistration_delay       = var.deregistration_delay
    enable_deletion_protection = var.enable_deletion_protection
    health_check               = var.health_check
    instance_type              = var.instance_type
    spot_instances             = var.spot_instances
    dashboard                  = var.enable_dashboard
    alarm_kms_key_arn          = module.monitoring.kms_key_arn
    budget_name                = module.monitoring.budget_name
  }
}

output "release" {
  description = "The release of this composition the environment runs: version (its VERSION file) and digest (of every file it runs; an edit after the release changes it)."
  value       = local.release
}
