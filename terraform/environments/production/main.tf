# Production: the same blue/green environment as staging (the files linked from
# terraform/shared/bluegreen_root), with what production sets differently: private subnets behind a
# NAT gateway, slower health checks, longer draining, a larger budget. The ALB and the database keep
# the module's deletion protection (and the database its final snapshot on destroy), so deleting
# either takes turning that off first, on purpose.

locals {
  environment = "production"

  settings = {
    vpc_cidr               = "10.30.0.0/16" # distinct from staging's, so the two can be peered
    enable_private_subnets = true           # instances have no public address at all
    health_check           = { interval = 10, timeout = 5, healthy_threshold = 3 }
    deregistration_delay   = 30 # room for slow clients
    monthly_budget_usd     = 150
  }
}
