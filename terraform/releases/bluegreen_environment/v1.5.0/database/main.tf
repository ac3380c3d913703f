# One PostgreSQL database on RDS for a blue/green environment: both colors share it, so it lives
# apart from the fleets and outlives every deploy. It sits in isolated subnets (no route out of the
# VPC), admits only the given security groups (the fleets'), is encrypted with the project's KMS
# key, and has no password anywhere in Terraform: RDS generates the master password, keeps it in
# Secrets Manager and rotates it.

locals {
  port = 5432
  # Protection on: RDS refuses to delete the instance, and a destroy leaves a final snapshot.
  final_snapshot_identifier = var.enable_deletion_protection ? "${var.name}-final" : null
  log_exports               = ["postgresql", "upgrade"]
}

# --- network access --------------------------------------------------------------------------

resource "aws_db_subnet_group" "this" {
  name        = var.name
  description = "Isolated subnets of ${var.name}"
  subnet_ids  = var.subnet_ids

  tags = merge(var.tags, { Name = var.name })
}

resource "aws_security_group" "this" {
  name        = var.name
  description = "PostgreSQL ${var.name}: port ${local.port} from the app fleets only, nothing out"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = var.name })

  lifecycle {
    create_before_destroy = true
  }
}

# No egress rule: the database starts no connection of its own.
resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = var.allowed_security_group_ids

  security_group_id            = aws_security_group.this.id
  description                  = "PostgreSQL from ${each.key}"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port

  tags = var.tags
}

# --- logs --------------------------------------------------------------------------------------

# Created here rather than by RDS on first export, so that they have a retention and go with the
# instance.
resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:The project's KMS key admits only IAM principals of the account; CloudWatch Logs would need its own statement in that key's policy. The logs hold no data rows, and CloudWatch Logs encrypts them with its own key.
  #checkov:skip=CKV_AWS_338:A lab database's server logs are for debugging the last days; a year of retention would only add storage cost. Raise log_retention_days where an audit needs more.
  for_each = toset(local.log_exports)

  name              = "/aws/rds/instance/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days

  tags = var.tags
}

# --- the instance ------------------------------------------------------------------------------

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_293:Deletion protection is an input (enable_deletion_protection), on by default with a final snapshot; a lab's staging turns it off so that every lab's teardown can finish.
  #checkov:skip=CKV_AWS_157:Multi-AZ doubles the instance cost; it is a variable (multi_az) for an environment that needs failover within minutes rather than a restore.
  #checkov:skip=CKV_AWS_118:Enhanced monitoring needs a monitoring role and adds CloudWatch charges; the standard 60 s RDS metrics suffice for a lab database.
  #checkov:skip=CKV_AWS_353:Performance Insights is a query-level tuning tool the lab does not teach; the standard RDS metrics and the exported logs cover what the lessons look at.
  #checkov:skip=CKV2_AWS_30:Logging every statement (log_statement) would flood the logs under the probes' load; errors and slow statements reach the exported postgresql log with the engine's defaults.
  #checkov:skip=CKV2_AWS_69:RDS for PostgreSQL 15 and later defaults rds.force_ssl to 1, so the default parameter group already refuses unencrypted connections; a custom group only for that would add a resource to keep in step with every major version.
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class
  # No `port`: RDS gives PostgreSQL its default, local.port (5432), which the security group opens;
  # left to RDS, the sandbox can serve each instance on a loopback port of its own (setting it here
  # would make every plan there try to move the instance back to 5432).
  db_name  = var.database_name
  username = var.master_username

  # The password never passes through Terraform: RDS makes it and keeps it in Secrets Manager,
  # encrypted with the project's key (aws_secretsmanager_secret_rotation below sets the schedule).
  manage_master_user_password   = true
  master_user_secret_kms_key_id = var.kms_key_arn
  # Clients may also connect with a short-lived IAM token instead of a password (rds-db:connect).
  iam_database_authentication_enabled = true

  allocated_storage     = var.allocated_storage
  max_allocated_storage = var.max_allocated_storage == 0 ? null : var.max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.this.id]
  publicly_accessible    = false
  multi_az               = var.multi_az

  backup_retention_period    = var.backup_retention_days
  copy_tags_to_snapshot      = true
  deletion_protection        = var.enable_deletion_protection
  skip_final_snapshot        = !var.enable_deletion_protection
  final_snapshot_identifier  = local.final_snapshot_identifier
  auto_minor_version_upgrade = true
  apply_immediately          = var.apply_immediately

  enabled_cloudwatch_logs_exports = local.log_exports

  # Only read when the instance is created: a restore of a lost instance from its snapshot.
  snapshot_identifier = var.snapshot_identifier

  tags = merge(var.tags, { Name = var.name })

  depends_on = [aws_cloudwatch_log_group.this]

  lifecycle {
    # The provider replaces an instance whose snapshot_identifier changes: the restore's snapshot
    # would otherwise have to stay in the code forever, and removing it would destroy the data.
    ignore_changes = [snapshot_identifier]
  }
}

# RDS turns managed rotation on when it creates the secret; this states the schedule in the code.
# No Lambda: the provider leaves rotation_lambda_arn unset for a secret that RDS manages.
resource "aws_secretsmanager_secret_rotation" "master" {
  secret_id          = aws_db_instance.this.master_user_secret[0].secret_arn
  rotate_immediately = false

  rotation_rules {
    schedule_expression = var.password_rotation_schedule
  }
}

# --- what a client needs -------------------------------------------------------------------------

locals {
  # arn:PARTITION:rds:REGION:ACCOUNT:db:NAME; the IAM-auth resource is
  # arn:PARTITION:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/USER.
  arn_parts   = split(":", aws_db_instance.this.arn)
  connect_arn = "arn:${local.arn_parts[1]}:rds-db:${local.arn_parts[3]}:${local.arn_parts[4]}:dbuser:${aws_db_instance.this.resource_id}/${var.iam_database_user}"
  secret_arn  = aws_db_instance.this.master_user_secret[0].secret_arn
}

# Read this database's secret (and decrypt it, through Secrets Manager only), and connect as the
# IAM user: attach to the roles of the database's clients, nothing else.
data "aws_iam_policy_document" "client" {
  statement {
    sid       = "ReadTheDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [local.secret_arn]
  }

  statement {
    sid       = "DecryptTheSecretThroughSecretsManager"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.arn_parts[3]}.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:SecretARN"
      values   = [local.secret_arn]
    }
  }

  statement {
    sid       = "ConnectWithIamAuthentication"
    actions   = ["rds-db:connect"]
    resources = [local.connect_arn]
  }
}
