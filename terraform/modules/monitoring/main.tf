# Per-color alarms on the load balancer's target-group metrics, an SNS topic they notify, a
# dashboard, and (on AWS) a monthly budget. The deploy controller reads the same metrics to gate
# each traffic step; these alarms are the net for everything outside a deploy.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account     = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.alarms[0].arn
  topic_arn   = "arn:${local.partition}:sns:${data.aws_region.current.name}:${local.account}:${var.name}-alarms"
}

# --- notification topic ----------------------------------------------------------------------

data "aws_iam_policy_document" "kms" {
  count = var.kms_key_arn == null ? 1 : 0

  statement {
    sid       = "AccountAdministersKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid       = "AlarmAndBudgetServicesPublish"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "alarms" {
  count = var.kms_key_arn == null ? 1 : 0

  description             = "Alarm topic ${var.name}-alarms"
  enable_key_rotation     = true
  deletion_window_in_days = 7
  policy                  = data.aws_iam_policy_document.kms[0].json

  tags = var.tags
}

resource "aws_kms_alias" "alarms" {
  count = var.kms_key_arn == null ? 1 : 0

  name          = "alias/${var.name}-alarms"
  target_key_id = aws_kms_key.alarms[0].key_id
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = local.kms_key_arn

  tags = var.tags
}

data "aws_iam_policy_document" "topic" {
  statement {
    sid       = "AccountManagesTopic"
    actions   = ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:ListSubscriptionsByTopic"]
    resources = [local.topic_arn]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid       = "AlarmAndBudgetServicesPublish"
    actions   = ["sns:Publish"]
    resources = [local.topic_arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.topic.json
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alarm_emails)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

# --- alarms per target group -----------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "error_rate" {
  for_each = var.target_groups

  alarm_name          = "${var.name}-${each.key}-5xx-rate"
  alarm_description   = "More than ${var.error_rate_threshold_percent}% of ${each.key}'s requests got a 5xx from its targets (with at least ${var.min_requests} requests per period)."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.error_rate_threshold_percent
  evaluation_periods  = var.evaluation_periods
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "rate"
    expression  = "IF(requests >= ${var.min_requests}, 100 * errors / requests, 0)"
    label       = "5xx rate (%)"
    return_data = true
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      stat        = "Sum"
      period      = var.period_seconds
      dimensions  = { LoadBalancer = var.load_balancer_arn_suffix, TargetGroup = each.value }
    }
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      stat        = "Sum"
      period      = var.period_seconds
      dimensions  = { LoadBalancer = var.load_balancer_arn_suffix, TargetGroup = each.value }
    }
  }

  tags = merge(var.tags, { Color = each.key })
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_hosts" {
  for_each = var.target_groups

  alarm_name          = "${var.name}-${each.key}-unhealthy-hosts"
  alarm_description   = "At least one ${each.key} target fails its load balancer health check."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = var.load_balancer_arn_suffix, TargetGroup = each.value }
  statistic           = "Maximum"
  period              = var.period_seconds
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = var.evaluation_periods
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  tags = merge(var.tags, { Color = each.key })
}

resource "aws_cloudwatch_metric_alarm" "p95_latency" {
  for_each = var.target_groups

  alarm_name          = "${var.name}-${each.key}-p95-latency"
  alarm_description   = "${each.key}'s 95th-percentile target response time is above ${var.p95_latency_threshold_seconds} s."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = { LoadBalancer = var.load_balancer_arn_suffix, TargetGroup = each.value }
  extended_statistic  = "p95"
  period              = var.period_seconds
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.p95_latency_threshold_seconds
  evaluation_periods  = var.evaluation_periods
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  tags = merge(var.tags, { Color = each.key })
}

# --- dashboard -------------------------------------------------------------------------------

locals {
  region = data.aws_region.current.name

  tg_metric = { for color, tg in var.target_groups : color => ["TargetGroup", tg, "LoadBalancer", var.load_balancer_arn_suffix] }

  widget = {
    requests  = { title = "Requests per minute", metric = "RequestCount", stat = "Sum" }
    errors    = { title = "Target 5xx per minute", metric = "HTTPCode_Target_5XX_Count", stat = "Sum" }
    latency   = { title = "Target response time p95 (s)", metric = "TargetResponseTime", stat = "p95" }
    healthy   = { title = "Healthy hosts", metric = "HealthyHostCount", stat = "Minimum" }
    unhealthy = { title = "Unhealthy hosts", metric = "UnHealthyHostCount", stat = "Maximum" }
  }
  widget_order = ["requests", "errors", "latency", "healthy", "unhealthy"]
}

resource "aws_cloudwatch_dashboard" "this" {
  count = var.enable_dashboard ? 1 : 0

  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      for i, key in local.widget_order : {
        type   = "metric"
        x      = (i % 2) * 12
        y      = floor(i / 2) * 6
        width  = 12
        height = 6
        properties = {
          title  = local.widget[key].title
          region = local.region
          stat   = local.widget[key].stat
          period = var.period_seconds
          view   = "timeSeries"
          metrics = [
            for color, dims in local.tg_metric : concat(["AWS/ApplicationELB", local.widget[key].metric], dims, [{ label = color, color = color == "blue" ? "#1f77b4" : "#2ca02c" }])
          ]
        }
      }
    ]
  })
}

# --- budget (AWS only) -----------------------------------------------------------------------

resource "aws_budgets_budget" "monthly" {
  count = var.enable_budget ? 1 : 0

  name         = "${var.name}-monthly"
  budget_type  = "COST"
  limit_amount = format("%.2f", var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 80
    threshold_type            = "PERCENTAGE"
    notification_type         = "ACTUAL"
    subscriber_sns_topic_arns = [aws_sns_topic.alarms.arn]
  }

  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 100
    threshold_type            = "PERCENTAGE"
    notification_type         = "FORECASTED"
    subscriber_sns_topic_arns = [aws_sns_topic.alarms.arn]
  }

  depends_on = [aws_sns_topic_policy.alarms]

  tags = var.tags
}
