# Alarms and a dashboard for an existing ALB's two target groups, without a budget.
provider "aws" {
  region = "us-east-1"
}

module "monitoring" {
  source = "../.."

  name                     = "example-mon"
  load_balancer_arn_suffix = "app/example/0123456789abcdef"
  target_groups = {
    blue  = "targetgroup/example-blue/1111111111111111"
    green = "targetgroup/example-green/2222222222222222"
  }
  alarm_emails  = ["oncall@example.com"]
  enable_budget = false
}

output "alarm_names" {
  value = module.monitoring.alarm_names
}
