terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }

  # Filled by labkit (-backend-config): bucket, key, region, encryption and locking per target.
  # The very first apply runs with local state and then migrates here: see README.md.
  backend "s3" {}
}
