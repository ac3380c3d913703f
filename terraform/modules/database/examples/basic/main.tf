# A PostgreSQL 16 database in a new VPC's isolated subnets, reachable from one app security group,
# encrypted with a key of its own, and free to destroy (no deletion protection, no final snapshot).
provider "aws" {
  region = "us-east-1"
}

module "network" {
  source = "../../../network"

  name                    = "example-db"
  enable_database_subnets = true
}

data "aws_caller_identity" "current" {}

# As the project's key (state_backend): the account administers and uses it through IAM.
resource "aws_kms_key" "example" {
  description             = "example-db: storage and the master user's secret"
  enable_key_rotation     = true
  deletion_window_in_days = 7
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministersKeyThroughIam"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

# Stands for the app fleet's security group (the fleet module's security_group_id).
resource "aws_security_group" "app" {
  #checkov:skip=CKV2_AWS_5:An example stand-in for the app fleet's group; the fleet module attaches its real one to the instances.
  name        = "example-db-app"
  description = "The example's database client"
  vpc_id      = module.network.vpc_id
}

module "database" {
  source = "../.."

  name                       = "example-db"
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.database_subnet_ids
  allowed_security_group_ids = { app = aws_security_group.app.id }
  kms_key_arn                = aws_kms_key.example.arn
  enable_deletion_protection = false
}

output "address" {
  value = module.database.address
}

output "master_user_secret_arn" {
  value = module.database.master_user_secret_arn
}
