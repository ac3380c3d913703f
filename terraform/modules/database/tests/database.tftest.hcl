# Checks with a mocked AWS provider: nothing is created, nothing needs credentials. Runs apply
# against the mock where an assertion reads what AWS computes (the secret, the ARN).
mock_provider "aws" {
  # Generated JSON would not parse as a policy; the provider validates policies even under a mock.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_resource "aws_db_instance" {
    defaults = {
      arn         = "arn:aws:rds:us-east-1:123456789012:db:bglab-staging-db"
      resource_id = "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
      master_user_secret = [{
        secret_arn    = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1234-AbCdEf"
        kms_key_id    = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
        secret_status = "active"
      }]
    }
  }
}

variables {
  name                       = "bglab-staging-db"
  vpc_id                     = "vpc-0123456789abcdef0"
  subnet_ids                 = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  allowed_security_group_ids = { blue = "sg-0b1b2b3b4b5b6b7b8", green = "sg-0c1c2c3c4c5c6c7c8" }
  kms_key_arn                = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
}

run "postgres_16_private_encrypted_with_a_managed_password" {
  command = apply

  assert {
    condition = alltrue([
      aws_db_instance.this.engine == "postgres", aws_db_instance.this.engine_version == "16",
      aws_db_instance.this.instance_class == "db.t4g.micro",
      aws_db_instance.this.db_name == "app",
    ])
    error_message = "PostgreSQL 16 on a db.t4g.micro, database \"app\" by default."
  }
  assert {
    condition     = aws_db_instance.this.storage_encrypted && aws_db_instance.this.kms_key_id == var.kms_key_arn
    error_message = "Storage (and so snapshots and backups) is encrypted with the given KMS key."
  }
  assert {
    condition = alltrue([
      aws_db_instance.this.manage_master_user_password,
      aws_db_instance.this.master_user_secret_kms_key_id == var.kms_key_arn,
      aws_db_instance.this.password == null,
    ])
    error_message = "RDS makes the master password and keeps it in Secrets Manager under the project's key; Terraform never holds one."
  }
  assert {
    condition     = aws_db_instance.this.iam_database_authentication_enabled
    error_message = "IAM database authentication is on."
  }
  assert {
    condition     = !aws_db_instance.this.publicly_accessible && aws_db_instance.this.db_subnet_group_name == "bglab-staging-db"
    error_message = "No public address; the instance sits in its subnet group over the given subnets."
  }
  assert {
    condition     = toset(aws_db_subnet_group.this.subnet_ids) == toset(var.subnet_ids)
    error_message = "The subnet group covers exactly the given subnets."
  }
  assert {
    condition     = aws_db_instance.this.backup_retention_period == 7 && aws_db_instance.this.copy_tags_to_snapshot
    error_message = "Seven days of automated backups by default; snapshots carry the instance's tags."
  }
  assert {
    condition = alltrue([
      aws_db_instance.this.deletion_protection, !aws_db_instance.this.skip_final_snapshot,
      aws_db_instance.this.final_snapshot_identifier == "bglab-staging-db-final",
      output.final_snapshot_identifier == "bglab-staging-db-final",
    ])
    error_message = "By default (production) RDS refuses deletion, and a destroy takes a final snapshot."
  }
  assert {
    condition     = output.master_user_secret_arn == "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1234-AbCdEf"
    error_message = "The master user secret ARN is the one RDS reports."
  }
  assert {
    condition     = output.iam_connect_arn == "arn:aws:rds-db:us-east-1:123456789012:dbuser:db-ABCDEFGHIJKLMNOPQRSTUVWXYZ/app"
    error_message = "The rds-db:connect resource is built from the instance's partition, region, account and resource id, and the IAM user."
  }
}

run "only_the_given_security_groups_reach_the_port" {
  command = plan

  assert {
    condition     = keys(aws_vpc_security_group_ingress_rule.clients) == ["blue", "green"]
    error_message = "One ingress rule per allowed security group."
  }
  assert {
    condition = alltrue([
      for name, rule in aws_vpc_security_group_ingress_rule.clients :
      rule.referenced_security_group_id == var.allowed_security_group_ids[name] &&
      rule.from_port == 5432 && rule.to_port == 5432 && rule.ip_protocol == "tcp" && rule.cidr_ipv4 == null
    ])
    error_message = "Each rule admits TCP 5432 from its security group only, never a CIDR."
  }
  assert {
    condition     = length(aws_security_group.this.ingress) == 0 && length(aws_security_group.this.egress) == 0
    error_message = "No inline rules: the database starts no connection, and ingress is the rules above only."
  }
}

run "the_secret_rotates_on_the_schedule_without_a_lambda" {
  command = apply

  variables {
    password_rotation_schedule = "rate(4 hours)"
  }

  assert {
    condition     = aws_secretsmanager_secret_rotation.master.secret_id == output.master_user_secret_arn
    error_message = "The rotation is the schedule of the secret RDS manages."
  }
  assert {
    condition     = aws_secretsmanager_secret_rotation.master.rotation_rules[0].schedule_expression == "rate(4 hours)"
    error_message = "The rotation follows password_rotation_schedule."
  }
  assert {
    condition     = aws_secretsmanager_secret_rotation.master.rotation_lambda_arn == null && !aws_secretsmanager_secret_rotation.master.rotate_immediately
    error_message = "Managed rotation: no Lambda, and no rotation merely because Terraform applied."
  }
}

run "clients_may_read_this_secret_only_and_connect_as_the_iam_user" {
  command = apply

  assert {
    condition = (
      data.aws_iam_policy_document.client.statement[0].resources == toset([output.master_user_secret_arn]) &&
      data.aws_iam_policy_document.client.statement[0].actions == toset(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"])
    )
    error_message = "Clients read this database's secret and no other."
  }
  assert {
    condition = (
      data.aws_iam_policy_document.client.statement[1].resources == toset([var.kms_key_arn]) &&
      data.aws_iam_policy_document.client.statement[1].actions == toset(["kms:Decrypt"]) &&
      length(data.aws_iam_policy_document.client.statement[1].condition) == 2
    )
    error_message = "Clients decrypt with the project's key only through Secrets Manager, for this secret."
  }
  assert {
    condition     = data.aws_iam_policy_document.client.statement[2].resources == toset([output.iam_connect_arn])
    error_message = "Clients connect with IAM authentication as the IAM user of this instance only."
  }
}

run "a_lab_staging_can_be_torn_down" {
  command = plan

  variables {
    enable_deletion_protection = false
  }

  assert {
    condition = alltrue([
      !aws_db_instance.this.deletion_protection, aws_db_instance.this.skip_final_snapshot,
      aws_db_instance.this.final_snapshot_identifier == null, output.final_snapshot_identifier == null,
    ])
    error_message = "Without protection, a destroy deletes the instance and takes no snapshot (nothing left that costs)."
  }
}

# Bad inputs in one run: each listed variable must fail its own validation.
run "bad_inputs_are_refused" {
  command = plan

  variables {
    name                       = "Bglab--db-"
    subnet_ids                 = ["subnet-0123456789abcdef0"]
    allowed_security_group_ids = {}
    kms_key_arn                = "alias/bglab"
    engine_version             = "15.4"
    master_username            = "postgres"
    backup_retention_days      = 0
    password_rotation_schedule = "every week"
    snapshot_identifier        = "my snapshot"
  }

  expect_failures = [
    var.name, var.subnet_ids, var.allowed_security_group_ids, var.kms_key_arn, var.engine_version,
    var.master_username, var.backup_retention_days, var.password_rotation_schedule,
    var.snapshot_identifier,
  ]
}
