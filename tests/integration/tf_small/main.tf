# A small root module for the Terraform runner's integration test: cheap resources whose state
# lives in an S3 backend with DynamoDB locking.
terraform {
  required_version = ">= 1.6"
  backend "s3" {}
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

variable "name" {
  type = string
}

variable "tags" {
  type = map(string)
}

resource "aws_sns_topic" "this" {
  name = var.name
  tags = var.tags
}

resource "aws_ssm_parameter" "release" {
  name  = "/${var.name}/release"
  type  = "String"
  value = "1.0.0"
  tags  = var.tags
}

output "topic_arn" {
  value = aws_sns_topic.this.arn
}

output "parameter_name" {
  value = aws_ssm_parameter.release.name
}
