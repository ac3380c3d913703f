# An ALB in a new VPC with 10% of traffic on green and the X-Preview header reaching green.
provider "aws" {
  region = "us-east-1"
}

module "network" {
  source = "../../../network"

  name = "example-alb"
}

module "alb" {
  source = "../.."

  name                       = "example-alb"
  vpc_id                     = module.network.vpc_id
  vpc_cidr_block             = module.network.vpc_cidr_block
  subnet_ids                 = module.network.public_subnet_ids
  green_weight               = 10
  enable_deletion_protection = false
}

output "dns_name" {
  value = module.alb.dns_name
}
