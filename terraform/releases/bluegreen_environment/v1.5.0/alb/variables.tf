variable "name" {
  description = "Name prefix for the load balancer, its security group and target groups, e.g. \"bglab-staging\". Target group names add \"-blue\"/\"-green\" and AWS caps them at 32 characters."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,24}[a-z0-9]$", var.name))
    error_message = "name must be 3-26 characters of lowercase letters, digits and hyphens: target group names (name + \"-green\") may not exceed 32 characters."
  }
}

variable "vpc_id" {
  description = "VPC to place the load balancer and target groups in."
  type        = string
}

variable "vpc_cidr_block" {
  description = "IPv4 CIDR of the VPC: the ALB may send traffic to the app port inside it and nowhere else."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr_block, 0))
    error_message = "vpc_cidr_block must be an IPv4 CIDR such as 10.20.0.0/16."
  }
}

variable "subnet_ids" {
  description = "Public subnets for the load balancer, in at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids needs at least two subnets: AWS refuses an ALB with subnets in fewer than two availability zones."
  }
}

variable "ingress_cidr_blocks" {
  description = "IPv4 ranges allowed to reach the listeners. The default is the whole internet, as for any public website; narrow it to your office or VPN range for a private preview."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.ingress_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "Every entry of ingress_cidr_blocks must be an IPv4 CIDR such as 203.0.113.0/24."
  }
}

variable "app_port" {
  description = "Port the app listens on in each instance; the target groups and the ALB's egress rule use it."
  type        = number
  default     = 8080

  validation {
    condition     = var.app_port >= 1024 && var.app_port <= 65535 && floor(var.app_port) == var.app_port
    error_message = "app_port must be an integer between 1024 and 65535: the app runs unprivileged, so it cannot bind a port below 1024."
  }
}

variable "green_weight" {
  description = "Percentage of requests the listener forwards to the green target group (0-100); blue gets the rest. This is the one input a traffic shift changes, and it touches only the listener."
  type        = number
  default     = 0

  validation {
    condition     = var.green_weight >= 0 && var.green_weight <= 100 && floor(var.green_weight) == var.green_weight
    error_message = "green_weight must be a whole number from 0 to 100: it is the percentage of traffic sent to green, and blue gets 100 minus it."
  }
}

variable "preview_header" {
  description = "Name of the HTTP header that sends a request to the preview color whatever the weights say (any value matches), so a release can be tried before it takes traffic. null turns the rule off."
  type        = string
  default     = "X-Preview"

  validation {
    condition     = var.preview_header == null || can(regex("^[A-Za-z0-9-]{1,40}$", var.preview_header))
    error_message = "preview_header must be a header name of 1-40 letters, digits and hyphens (or null): the ALB matches header names, not patterns."
  }
}

variable "preview_color" {
  description = "Color the preview header sends requests to. null means the idle color: the one with the smaller weight, green on a tie. A deploy sets it to the color being released."
  type        = string
  default     = null

  validation {
    condition     = var.preview_color == null || contains(["blue", "green"], coalesce(var.preview_color, "none"))
    error_message = "preview_color must be \"blue\", \"green\" or null (the idle color)."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for an HTTPS listener on port 443. When set, HTTPS carries the weighted forward and the preview rule, and HTTP on port 80 redirects to it; when null, HTTP serves directly (the sandbox has no certificates)."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:", coalesce(var.certificate_arn, "none")))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:...), or null for HTTP only."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener. The default allows TLS 1.3 and 1.2 only."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "health_check" {
  description = <<-EOT
    Target group health check. The defaults keep deploys short (a target is healthy after 2 checks 5 s
    apart and out after 2 failures) while staying within what AWS accepts: interval 5-300 s, timeout
    2-120 s and shorter than the interval, thresholds 2-10.
  EOT
  type = object({
    path                = optional(string, "/health/ready")
    interval            = optional(number, 5)
    timeout             = optional(number, 2)
    healthy_threshold   = optional(number, 2)
    unhealthy_threshold = optional(number, 2)
    matcher             = optional(string, "200")
  })
  default = {}

  validation {
    condition     = startswith(var.health_check.path, "/")
    error_message = "health_check.path must start with \"/\"."
  }
  validation {
    condition     = var.health_check.interval >= 5 && var.health_check.interval <= 300
    error_message = "health_check.interval must be 5-300 seconds: AWS rejects anything else."
  }
  validation {
    condition     = var.health_check.timeout >= 2 && var.health_check.timeout <= 120 && var.health_check.timeout < var.health_check.interval
    error_message = "health_check.timeout must be 2-120 seconds and shorter than the interval, or checks would overlap (AWS rejects it)."
  }
  validation {
    condition = alltrue([for t in [var.health_check.healthy_threshold, var.health_check.unhealthy_threshold] :
    t >= 2 && t <= 10 && floor(t) == t])
    error_message = "health_check thresholds must be whole numbers from 2 to 10, the range AWS accepts."
  }
  validation {
    condition     = can(regex("^[0-9]{3}((,[0-9]{3})*|-[0-9]{3})$", var.health_check.matcher))
    error_message = "health_check.matcher must be HTTP codes such as \"200\", \"200,202\" or \"200-299\"."
  }
}

variable "deregistration_delay" {
  description = "Seconds a deregistered target keeps serving its in-flight requests (draining). 5 s suits an app whose requests finish in well under a second and keeps scale-in fast; raise it for long requests."
  type        = number
  default     = 5

  validation {
    condition     = var.deregistration_delay >= 0 && var.deregistration_delay <= 3600 && floor(var.deregistration_delay) == var.deregistration_delay
    error_message = "deregistration_delay must be a whole number of seconds from 0 to 3600, the range AWS accepts."
  }
}

variable "idle_timeout" {
  description = "Seconds the ALB keeps an idle connection open."
  type        = number
  default     = 60
}

variable "enable_deletion_protection" {
  description = "Refuse to delete the load balancer through the API. On by default; a lab's staging turns it off so its teardown can finish."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "S3 bucket for ALB access logs (its policy must allow the regional ELB account to write). null turns access logs off."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags for every resource of this module (the provider's default_tags come on top)."
  type        = map(string)
  default     = {}
}
