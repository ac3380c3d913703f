output "role_arn" {
  description = "ARN of the deploy role (aws-actions/configure-aws-credentials: role-to-assume)."
  value       = aws_iam_role.deploy.arn
}

output "role_name" {
  description = "Name of the deploy role."
  value       = aws_iam_role.deploy.name
}

output "oidc_provider_arn" {
  description = "ARN of the account's GitHub OIDC provider."
  value       = local.oidc_provider_arn
}

output "trusted_subject" {
  description = "The one token subject the role admits, e.g. repo:owner/name:environment:staging."
  value       = local.subject
}

output "plan_role_arn" {
  description = "ARN of the read-only plan role for pull requests, or null without plan_role_name."
  value       = one(aws_iam_role.plan[*].arn)
}
