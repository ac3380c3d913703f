# Every output of the environment module, under the names labkit and the lessons read.

output "alb_dns_name" {
  description = "DNS name of the load balancer: where clients (and the probe) send requests."
  value       = module.environment.alb_dns_name
}

output "alb_arn" {
  description = "ARN of the load balancer."
  value       = module.environment.alb_arn
}

output "alb_arn_suffix" {
  description = "CloudWatch dimension value of the load balancer (app/NAME/ID)."
  value       = module.environment.alb_arn_suffix
}

output "vpc_cidr" {
  description = "The VPC's IPv4 range; labkit reads it from this state to refuse an overlapping range in another environment."
  value       = module.environment.settings.vpc_cidr

  # Checked at plan time, before anything is created: overlapping VPCs can never be peered or
  # routed to each other.
  precondition {
    condition     = length(local.vpc_cidr_overlaps) == 0
    error_message = "${local.environment}'s VPC CIDR ${local.vpc_cidr} overlaps ${join(" and ", [for env, cidr in local.vpc_cidr_overlaps : "${env}'s ${cidr}"])} (from ${join(", ", keys(local.vpc_cidr_overlaps))}'s state). Overlapping VPCs can never be peered or routed to each other: choose a range that overlaps none of them, with vpc_cidr or local.settings.vpc_cidr in terraform/environments/${local.environment}/main.tf."
  }
}

output "listener_arn" {
  description = "The listener that carries the weighted forward (and the preview rule)."
  value       = module.environment.listener_arn
}

output "blue_target_group_arn" {
  description = "ARN of the blue target group."
  value       = module.environment.blue_target_group_arn
}

output "green_target_group_arn" {
  description = "ARN of the green target group."
  value       = module.environment.green_target_group_arn
}

output "target_group_arn_suffixes" {
  description = "CloudWatch dimension values of the target groups per color (targetgroup/NAME/ID)."
  value       = module.environment.target_group_arn_suffixes
}

output "blue_asg_name" {
  description = "Name of the blue ASG (it changes with blue_version: a new release is a new ASG)."
  value       = module.environment.blue_asg_name
}

output "green_asg_name" {
  description = "Name of the green ASG (it changes with green_version)."
  value       = module.environment.green_asg_name
}

output "artifact_bucket" {
  description = "Release artifact bucket the fleets read from."
  value       = module.environment.artifact_bucket
}

output "preview_header" {
  description = "Header that reaches the preview color, or null."
  value       = module.environment.preview_header
}

output "preview_color" {
  description = "Color the preview header reaches."
  value       = module.environment.preview_color
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = module.environment.alarm_topic_arn
}

output "alarm_names" {
  description = "Alarm names per color."
  value       = module.environment.alarm_names
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the stack."
  value       = module.environment.dashboard_name
}

output "database" {
  description = "How to reach the database (address, port, database name, master user, the ARN of the secret holding its password, the IAM-auth connect resource, security group, identifier and ARN, and the snapshot a destroy takes), or null without enable_database."
  value       = module.environment.database
}

output "deployment" {
  description = "The deployment variables as applied: versions, capacities, green_weight and preview_color."
  value       = module.environment.deployment
}

output "composition" {
  description = "The release of the composition module this environment was applied from (version and digest): promote-composition reads staging's to prove it ran a release before production gets it."
  value       = module.environment.release
}

output "carried_variables" {
  description = "Environment settings given as variables (enable_database), for the next apply to keep (labkit carries them over, as it carries the deployment: a deploy would otherwise remove the database); null where none was given."
  value       = var.enable_database == null ? null : { enable_database = var.enable_database }
}
