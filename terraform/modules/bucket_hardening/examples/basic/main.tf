# A bucket that keeps its own lifecycle (here: no prevent_destroy) and gets the project's baseline.
provider "aws" {
  region = "us-east-1"
}

resource "aws_s3_bucket" "reports" {
  #checkov:skip=CKV_AWS_144:Example bucket; replication is out of scope.
  #checkov:skip=CKV2_AWS_62:Example bucket; no event consumers.
  #checkov:skip=CKV_AWS_18:Example bucket; access logging is opt-in through the module.
  bucket = "example-reports-bucket"
}

module "hardening" {
  source = "../.."

  bucket = aws_s3_bucket.reports.id
}

output "versioning_status" {
  value = module.hardening.versioning_status
}
