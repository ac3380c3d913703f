output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "IPv4 CIDR of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "availability_zones" {
  description = "The two availability zones the subnets are in."
  value       = local.azs
}

output "public_subnet_ids" {
  description = "IDs of the public subnets, one per availability zone (ALB, and the instances unless private subnets are on)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets, one per availability zone; empty unless enable_private_subnets."
  value       = aws_subnet.private[*].id
}

output "database_subnet_ids" {
  description = "IDs of the isolated database subnets (no route out of the VPC), one per availability zone; empty unless enable_database_subnets."
  value       = aws_subnet.database[*].id
}

output "database_route_table_id" {
  description = "ID of the database subnets' route table (the VPC's local route only), or null when they are off."
  value       = one(aws_route_table.database[*].id)
}

output "app_subnet_ids" {
  description = "Where the instances go: the private subnets when they exist, else the public ones."
  value       = var.enable_private_subnets ? aws_subnet.private[*].id : aws_subnet.public[*].id
}

output "instances_need_public_ip" {
  description = "True when the instances sit in public subnets and need a public IP for outbound traffic (no NAT)."
  value       = !var.enable_private_subnets
}

output "nat_gateway_id" {
  description = "ID of the NAT gateway, or null when private subnets are off."
  value       = one(aws_nat_gateway.this[*].id)
}
