output "asg_name" {
  description = "Name of the ASG (it includes the release version: a new release is a new ASG)."
  value       = aws_autoscaling_group.this.name
}

output "asg_arn" {
  description = "ARN of the ASG."
  value       = aws_autoscaling_group.this.arn
}

output "launch_template_id" {
  description = "ID of the launch template."
  value       = aws_launch_template.this.id
}

output "launch_template_version" {
  description = "Launch template version the ASG launches."
  value       = aws_launch_template.this.latest_version
}

output "security_group_id" {
  description = "Security group of the instances."
  value       = aws_security_group.instances.id
}

output "iam_role_name" {
  description = "IAM role of the instances."
  value       = aws_iam_role.instance.name
}

output "image_id" {
  description = "AMI the instances run."
  value       = local.image_id
}

output "artifact_uri" {
  description = "The release artifact the user data fetches."
  value       = "s3://${var.artifact_bucket}/releases/${var.release_version}/release.tar.gz"
}

output "release_version" {
  description = "Release the fleet runs."
  value       = var.release_version
}

output "capacity" {
  description = "Number of instances."
  value       = var.capacity
}

output "database" {
  description = "The database the app runs on (its DATABASE_* settings in app.service; the role may read its secret), or null."
  value       = var.database
}

output "market" {
  description = "Where the instances run: \"spot\" or \"on-demand\" (variable spot)."
  value       = var.spot ? "spot" : "on-demand"
}
