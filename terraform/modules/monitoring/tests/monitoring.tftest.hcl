# Plan-level checks with a mocked AWS provider: nothing is created, nothing needs credentials.
mock_provider "aws" {
  # Generated JSON would not parse as a policy; the provider validates policies even under a mock.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_region" {
    defaults = {
      name = "us-east-1"
    }
  }
}

variables {
  name                     = "test-stack"
  load_balancer_arn_suffix = "app/test-stack/0123456789abcdef"
  target_groups = {
    blue  = "targetgroup/test-stack-blue/1111111111111111"
    green = "targetgroup/test-stack-green/2222222222222222"
  }
}

run "three_alarms_per_color" {
  command = plan

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.error_rate) == 2 && length(aws_cloudwatch_metric_alarm.unhealthy_hosts) == 2 && length(aws_cloudwatch_metric_alarm.p95_latency) == 2
    error_message = "Each color gets a 5xx-rate, an unhealthy-hosts and a p95-latency alarm."
  }
  assert {
    condition = alltrue([for color, tg in var.target_groups : alltrue([
      aws_cloudwatch_metric_alarm.unhealthy_hosts[color].dimensions == tomap({ LoadBalancer = var.load_balancer_arn_suffix, TargetGroup = tg }),
      aws_cloudwatch_metric_alarm.unhealthy_hosts[color].threshold == 0,
      aws_cloudwatch_metric_alarm.p95_latency[color].extended_statistic == "p95",
      aws_cloudwatch_metric_alarm.p95_latency[color].threshold == 1,
    ])])
    error_message = "Alarms watch their own target group: any unhealthy host, p95 above 1 s."
  }
  assert {
    condition = anytrue([for q in aws_cloudwatch_metric_alarm.error_rate["green"].metric_query :
    q.return_data == true && q.expression == "IF(requests >= 20, 100 * errors / requests, 0)"])
    error_message = "The 5xx rate is a percentage of requests, quiet below the minimum request count."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.error_rate["blue"].threshold == 5 && aws_cloudwatch_metric_alarm.error_rate["blue"].treat_missing_data == "notBreaching"
    error_message = "5% 5xx rate by default; no data is not an error."
  }
  assert {
    condition     = length(aws_kms_key.alarms) == 1 && aws_kms_key.alarms[0].enable_key_rotation
    error_message = "The alarm topic is encrypted with a key of its own that CloudWatch may use."
  }
  assert {
    condition     = length(aws_budgets_budget.monthly) == 1 && aws_budgets_budget.monthly[0].limit_amount == "50.00"
    error_message = "A USD 50 monthly budget by default."
  }
  assert {
    condition     = length(jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets) == 5
    error_message = "The dashboard has a widget per metric."
  }
}

run "sandbox_has_no_budget" {
  command = plan

  variables {
    enable_budget = false
    alarm_emails  = ["oncall@example.com"]
  }

  assert {
    condition     = length(aws_budgets_budget.monthly) == 0 && output.budget_name == null
    error_message = "enable_budget = false creates no budget."
  }
  assert {
    condition     = aws_sns_topic_subscription.email["oncall@example.com"].protocol == "email"
    error_message = "Alarm emails subscribe to the topic."
  }
}

run "a_given_key_and_no_dashboard" {
  command = plan

  variables {
    kms_key_arn      = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    enable_dashboard = false
  }

  assert {
    condition     = length(aws_kms_key.alarms) == 0 && aws_sns_topic.alarms.kms_master_key_id == var.kms_key_arn
    error_message = "With kms_key_arn given, the topic uses that key and the module makes none."
  }
  assert {
    condition     = length(aws_cloudwatch_dashboard.this) == 0 && output.dashboard_name == null
    error_message = "enable_dashboard = false creates no dashboard, and dashboard_name is null."
  }
  assert {
    condition     = length(aws_cloudwatch_metric_alarm.error_rate) == 2
    error_message = "The alarms do not depend on the dashboard."
  }
}

# Bad inputs in one run: each listed variable must fail its own validation.
run "bad_threshold_color_period_and_email_are_refused" {
  command = plan

  variables {
    error_rate_threshold_percent = 150
    target_groups                = { red = "targetgroup/x/1" }
    period_seconds               = 30
    alarm_emails                 = ["not-an-address"]
  }

  expect_failures = [var.error_rate_threshold_percent, var.target_groups, var.period_seconds, var.alarm_emails]
}
