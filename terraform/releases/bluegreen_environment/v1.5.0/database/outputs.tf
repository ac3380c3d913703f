output "identifier" {
  description = "Identifier of the DB instance."
  value       = aws_db_instance.this.identifier
}

output "arn" {
  description = "ARN of the DB instance."
  value       = aws_db_instance.this.arn
}

output "resource_id" {
  description = "RDS resource id of the instance (in IAM authentication's rds-db:connect ARNs)."
  value       = aws_db_instance.this.resource_id
}

output "address" {
  description = "Host name clients connect to."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port clients connect to, as RDS reports it (5432 on AWS; the sandbox serves each instance on a loopback port of its own)."
  value       = aws_db_instance.this.port
}

output "security_group_port" {
  description = "The port the database's security group opens (5432, PostgreSQL's default, which RDS gives the instance): for clients' egress rules."
  value       = local.port
}

output "database_name" {
  description = "Name of the app's database."
  value       = aws_db_instance.this.db_name
}

output "master_username" {
  description = "Name of the master user (its password is in the secret, master_user_secret_arn)."
  value       = aws_db_instance.this.username
}

output "master_user_secret_arn" {
  description = "ARN of the Secrets Manager secret RDS keeps the master user's credentials in (JSON: username, password)."
  value       = local.secret_arn
}

output "iam_connect_arn" {
  description = "The rds-db:connect resource for iam_database_user (IAM authentication)."
  value       = local.connect_arn
}

output "security_group_id" {
  description = "Security group of the database (port 5432 from allowed_security_group_ids only)."
  value       = aws_security_group.this.id
}

output "subnet_group_name" {
  description = "Name of the DB subnet group."
  value       = aws_db_subnet_group.this.name
}

output "client_policy_json" {
  description = "IAM policy for the database's clients: read this database's secret only (and decrypt it through Secrets Manager), and rds-db:connect as iam_database_user."
  value       = data.aws_iam_policy_document.client.json
}

output "final_snapshot_identifier" {
  description = "Snapshot a destroy takes (with enable_deletion_protection), or null when a destroy takes none."
  value       = local.final_snapshot_identifier
}

output "restored_from_snapshot" {
  description = "The snapshot the instance was created from, or null when it was created empty."
  value       = aws_db_instance.this.snapshot_identifier
}

output "password_rotation_schedule" {
  description = "Schedule on which Secrets Manager rotates the master password."
  value       = var.password_rotation_schedule
}

output "allowed_security_group_ids" {
  description = "The security groups admitted on the database port, by name."
  value       = { for name, rule in aws_vpc_security_group_ingress_rule.clients : name => rule.referenced_security_group_id }
}
