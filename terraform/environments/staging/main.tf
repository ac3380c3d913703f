# Staging: the blue/green environment the labs build, deploy to and tear down. Everything it shares
# with production (variables, the module call, outputs, provider, backend, moved blocks) is in the
# files linked from terraform/shared/bluegreen_root; this file sets only what is staging's own.
# The module's defaults suit it otherwise: public subnets (no NAT), fast health checks, 5 s draining.

locals {
  environment = "staging"

  settings = {
    vpc_cidr = "10.20.0.0/16"
    # Staging is torn down at the end of every lab: no deletion protection on the ALB or the
    # database, and no final snapshot of the database.
    enable_deletion_protection = false

    # What keeps staging with its database at or under the roadmap's $50 a month (bench/cost.py
    # prints the breakdown). Staging can lose an instance for a few minutes and nobody watches its
    # dashboard, so: Graviton instances on spot capacity, no dashboard (its alarms stay), and the
    # alarm topic on the project's key rather than a key of its own.
    instance_type              = "t4g.micro"
    spot_instances             = true
    enable_dashboard           = false
    alarm_topic_on_project_key = true
  }
}
