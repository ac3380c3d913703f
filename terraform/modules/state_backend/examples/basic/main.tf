# A state backend; point other roots at it with the backend_config output.
provider "aws" {
  region = "us-east-1"
}

module "state_backend" {
  source = "../.."

  bucket_name     = "example-tfstate-123456789012-us-east-1"
  lock_table_name = "example-tflock"
}

output "backend_config" {
  value = module.state_backend.backend_config
}
