# A whole blue/green environment: blue serves release 1.0.0 on two instances, green is parked.
provider "aws" {
  region = "us-east-1"
}

module "environment" {
  source = "../.."

  name                       = "example-bg"
  vpc_cidr                   = "10.40.0.0/16"
  artifact_bucket            = "example-artifacts-123456789012-us-east-1"
  blue_version               = "1.0.0"
  green_version              = "1.0.0"
  enable_deletion_protection = false
  enable_budget              = false
}

output "alb_dns_name" {
  value = module.environment.alb_dns_name
}

output "deployment" {
  value = module.environment.deployment
}
