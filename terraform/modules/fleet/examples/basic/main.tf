# Both colors behind one ALB: blue serves 1.0.0, green is parked (capacity 0) until the next release.
provider "aws" {
  region = "us-east-1"
}

module "network" {
  source = "../../../network"

  name = "example-fleet"
}

module "alb" {
  source = "../../../alb"

  name                       = "example-fleet"
  vpc_id                     = module.network.vpc_id
  vpc_cidr_block             = module.network.vpc_cidr_block
  subnet_ids                 = module.network.public_subnet_ids
  enable_deletion_protection = false
}

module "fleet" {
  source   = "../.."
  for_each = { blue = { version = "1.0.0", capacity = 2 }, green = { version = "1.0.0", capacity = 0 } }

  name                        = "example-fleet"
  color                       = each.key
  release_version             = each.value.version
  capacity                    = each.value.capacity
  artifact_bucket             = "example-artifacts-bucket"
  vpc_id                      = module.network.vpc_id
  subnet_ids                  = module.network.app_subnet_ids
  associate_public_ip_address = module.network.instances_need_public_ip
  alb_security_group_id       = module.alb.security_group_id
  target_group_arn            = module.alb.target_group_arns[each.key]
}

output "asg_names" {
  value = { for color, fleet in module.fleet : color => fleet.asg_name }
}
