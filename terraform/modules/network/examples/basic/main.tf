# A two-zone VPC with public subnets only (the staging default).
provider "aws" {
  region = "us-east-1"

  default_tags {
    tags = { Project = "example", ManagedBy = "terraform" }
  }
}

module "network" {
  source = "../.."

  name       = "example-net"
  cidr_block = "10.40.0.0/16"
}

output "public_subnet_ids" {
  value = module.network.public_subnet_ids
}
