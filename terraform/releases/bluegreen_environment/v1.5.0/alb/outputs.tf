output "lb_arn" {
  description = "ARN of the load balancer."
  value       = aws_lb.this.arn
}

output "lb_arn_suffix" {
  description = "The load balancer's CloudWatch dimension value (app/NAME/ID)."
  value       = aws_lb.this.arn_suffix
}

output "dns_name" {
  description = "DNS name of the load balancer: the address clients use."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "Route 53 hosted zone of the load balancer, for an alias record."
  value       = aws_lb.this.zone_id
}

output "security_group_id" {
  description = "Security group of the load balancer; the instances admit traffic from this group only."
  value       = aws_security_group.alb.id
}

output "listener_arn" {
  description = "The listener that carries the weighted forward: HTTPS when a certificate is given, else HTTP."
  value       = local.serving_listener_arn
}

output "http_listener_arn" {
  description = "ARN of the port-80 listener (a redirect when HTTPS is on)."
  value       = aws_lb_listener.http.arn
}

output "https_listener_arn" {
  description = "ARN of the HTTPS listener, or null without a certificate."
  value       = one(aws_lb_listener.https[*].arn)
}

output "target_group_arns" {
  description = "Target group ARN per color: { blue = ..., green = ... }."
  value       = { for c, tg in aws_lb_target_group.this : c => tg.arn }
}

output "target_group_arn_suffixes" {
  description = "Target group CloudWatch dimension values per color (targetgroup/NAME/ID)."
  value       = { for c, tg in aws_lb_target_group.this : c => tg.arn_suffix }
}

output "weights" {
  description = "Percentage of requests per color: { blue = 100 - green_weight, green = green_weight }."
  value       = local.weights
}

output "preview_rule_arn" {
  description = "ARN of the header-based preview rule, or null when preview_header is null."
  value       = one(aws_lb_listener_rule.preview[*].arn)
}

output "preview_color" {
  description = "The color the preview header reaches."
  value       = local.preview_color
}
