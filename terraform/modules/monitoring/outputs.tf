output "sns_topic_arn" {
  description = "ARN of the alarm topic."
  value       = aws_sns_topic.alarms.arn
}

output "alarm_names" {
  description = "Alarm names per color: { blue = { error_rate, unhealthy_hosts, p95_latency }, ... }."
  value = {
    for color in keys(var.target_groups) : color => {
      error_rate      = aws_cloudwatch_metric_alarm.error_rate[color].alarm_name
      unhealthy_hosts = aws_cloudwatch_metric_alarm.unhealthy_hosts[color].alarm_name
      p95_latency     = aws_cloudwatch_metric_alarm.p95_latency[color].alarm_name
    }
  }
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard, or null when enable_dashboard is false."
  value       = one(aws_cloudwatch_dashboard.this[*].dashboard_name)
}

output "budget_name" {
  description = "Name of the monthly budget, or null when enable_budget is false."
  value       = one(aws_budgets_budget.monthly[*].name)
}

output "kms_key_arn" {
  description = "KMS key of the alarm topic: kms_key_arn when given, else the module's own."
  value       = local.kms_key_arn
}
