# A root for the database wiring's integration test (test_sandbox_databases.py): the composition
# (copied next to this file as ./modules) with enable_database, blue serving on one instance, green
# parked, the database's key its own. The state stays in the test's folder (no backend).
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6.0"
    }
  }
}

provider "aws" {
  region                      = "us-east-1"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
}

variable "artifact_bucket" {
  type = string
}

resource "aws_kms_key" "database" {
  description             = "dbwire test: the database's storage and secret"
  deletion_window_in_days = 7
  enable_key_rotation     = true
}

module "environment" {
  source = "./modules/bluegreen_environment"

  name                       = "dbwire"
  artifact_bucket            = var.artifact_bucket
  vpc_cidr                   = "10.60.0.0/16"
  enable_database            = true
  database_kms_key_arn       = aws_kms_key.database.arn
  enable_deletion_protection = false
  enable_budget              = false

  blue_version   = "1.0.0"
  green_version  = "1.0.0"
  blue_capacity  = 1
  green_capacity = 0
}

output "alb_dns_name" {
  value = module.environment.alb_dns_name
}

output "blue_target_group_arn" {
  value = module.environment.blue_target_group_arn
}

output "database" {
  value = module.environment.database
}
