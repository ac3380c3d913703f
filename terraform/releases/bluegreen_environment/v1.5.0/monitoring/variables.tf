variable "name" {
  description = "Name prefix for the alarms, topic, dashboard and budget, e.g. \"bglab-staging\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "load_balancer_arn_suffix" {
  description = "The load balancer's CloudWatch dimension value (app/NAME/ID): the alb module's lb_arn_suffix."
  type        = string
}

variable "target_groups" {
  description = "Target group CloudWatch dimension values (targetgroup/NAME/ID) per color; each gets its own alarms, so a bad release shows on its own color."
  type        = map(string)

  validation {
    condition     = length(var.target_groups) > 0 && alltrue([for k in keys(var.target_groups) : contains(["blue", "green"], k)])
    error_message = "target_groups must map \"blue\" and/or \"green\" to target group ARN suffixes."
  }
}

variable "error_rate_threshold_percent" {
  description = "Alarm when more than this percentage of a target group's requests get a 5xx from the targets."
  type        = number
  default     = 5

  validation {
    condition     = var.error_rate_threshold_percent > 0 && var.error_rate_threshold_percent < 100
    error_message = "error_rate_threshold_percent must be between 0 and 100 (exclusive): it is a percentage of requests."
  }
}

variable "min_requests" {
  description = "The 5xx-rate alarm stays quiet below this many requests per period, so that one failed request out of three does not page anyone."
  type        = number
  default     = 20

  validation {
    condition     = var.min_requests >= 1
    error_message = "min_requests must be at least 1: a rate needs requests to divide by."
  }
}

variable "p95_latency_threshold_seconds" {
  description = "Alarm when the 95th-percentile target response time exceeds this many seconds."
  type        = number
  default     = 1

  validation {
    condition     = var.p95_latency_threshold_seconds > 0
    error_message = "p95_latency_threshold_seconds must be positive."
  }
}

variable "period_seconds" {
  description = "Length of each alarm evaluation period. 60 s is the shortest period the load balancer's metrics support."
  type        = number
  default     = 60

  validation {
    condition     = var.period_seconds >= 60 && var.period_seconds % 60 == 0
    error_message = "period_seconds must be a multiple of 60: ALB metrics are published per minute."
  }
}

variable "evaluation_periods" {
  description = "Consecutive breaching periods before an alarm fires: 2 trades one minute of extra detection time for far fewer false alarms."
  type        = number
  default     = 2

  validation {
    condition     = var.evaluation_periods >= 1 && var.evaluation_periods <= 10 && floor(var.evaluation_periods) == var.evaluation_periods
    error_message = "evaluation_periods must be a whole number from 1 to 10."
  }
}

variable "alarm_emails" {
  description = "Addresses subscribed to the alarm topic (each must confirm by email)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "Every alarm_emails entry must be an email address."
  }
}

variable "kms_key_arn" {
  description = "KMS key for the alarm topic. null creates one whose policy lets CloudWatch and AWS Budgets publish: the AWS-managed aws/sns key would silently drop their messages."
  type        = string
  default     = null
}

variable "enable_dashboard" {
  description = "Create the CloudWatch dashboard ($3 a month beyond the account's three free ones). The alarms and metrics are the same without it; the lab's notebooks plot the metrics themselves."
  type        = bool
  default     = true
  nullable    = false
}

variable "enable_budget" {
  description = "Create a monthly cost budget that notifies the alarm topic. On AWS only: the sandbox has no billing."
  type        = bool
  default     = true
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget in US dollars; notifications at 80% actual and 100% forecast spend."
  type        = number
  default     = 50

  validation {
    condition     = var.monthly_budget_usd > 0
    error_message = "monthly_budget_usd must be a positive amount of dollars."
  }
}

variable "tags" {
  description = "Extra tags for every resource of this module (the provider's default_tags come on top)."
  type        = map(string)
  default     = {}
}
