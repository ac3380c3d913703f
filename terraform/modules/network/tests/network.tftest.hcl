# Plan-level checks with a mocked AWS provider: nothing is created, nothing needs credentials.
mock_provider "aws" {
  # Generated JSON would not parse as a policy; the provider validates policies even under a mock.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_data "aws_availability_zones" {
    defaults = {
      names = ["us-east-1a", "us-east-1b", "us-east-1c"]
    }
  }
}

variables {
  name = "test-net"
}

# apply (against the mock) so that the default security group's computed rule sets are known.
run "two_public_subnets_and_no_nat_by_default" {
  command = apply

  assert {
    condition     = output.availability_zones == tolist(["us-east-1a", "us-east-1b"])
    error_message = "With no zones given, the region's first two available zones are used."
  }
  assert {
    condition     = length(aws_subnet.public) == 2 && length(aws_subnet.private) == 0
    error_message = "Two public subnets and no private ones by default."
  }
  assert {
    condition     = length(aws_nat_gateway.this) == 0 && length(aws_eip.nat) == 0
    error_message = "No NAT gateway by default: it costs more than the rest of staging."
  }
  assert {
    condition     = [for s in aws_subnet.public : s.cidr_block] == ["10.20.0.0/24", "10.20.1.0/24"]
    error_message = "Public subnets are the VPC's first two /24s."
  }
  assert {
    condition     = alltrue([for s in aws_subnet.public : s.map_public_ip_on_launch == false])
    error_message = "Subnets must not hand out public IPs by default; instances that need one ask in their launch template."
  }
  assert {
    condition     = length(aws_default_security_group.this.ingress) == 0 && length(aws_default_security_group.this.egress) == 0
    error_message = "The default security group must allow nothing."
  }
  assert {
    condition     = output.instances_need_public_ip
    error_message = "Without NAT, instances in public subnets need a public IP for outbound traffic."
  }
  assert {
    condition     = length(aws_flow_log.this) == 0
    error_message = "Flow logs are opt-in."
  }
  assert {
    condition     = length(aws_subnet.database) == 0 && output.database_subnet_ids == [] && output.database_route_table_id == null
    error_message = "Database subnets are opt-in."
  }
}

# apply (against the mock) so that the route tables' computed route sets are known.
run "isolated_database_subnets_have_no_way_out" {
  command = apply

  variables {
    enable_database_subnets = true
    enable_private_subnets  = true
  }

  assert {
    condition     = [for s in aws_subnet.database : s.cidr_block] == ["10.20.4.0/24", "10.20.5.0/24"]
    error_message = "Database subnets are the VPC's fifth and sixth /24s, one per zone."
  }
  assert {
    condition     = tolist([for s in aws_subnet.database : s.availability_zone]) == tolist(output.availability_zones)
    error_message = "One database subnet in each of the two zones (an RDS subnet group needs two)."
  }
  assert {
    condition     = alltrue([for s in aws_subnet.database : s.map_public_ip_on_launch == false])
    error_message = "Database subnets hand out no public IPs."
  }
  assert {
    condition     = alltrue([for a in aws_route_table_association.database : a.route_table_id == output.database_route_table_id])
    error_message = "Every database subnet uses the database route table."
  }
  assert {
    condition     = length(aws_route_table.database[0].route) == 0
    error_message = "The database route table holds no route (only the VPC's implicit local one)."
  }
  assert {
    condition = alltrue([
      aws_route.public_internet.route_table_id != output.database_route_table_id,
      aws_route.private_nat[0].route_table_id != output.database_route_table_id,
    ])
    error_message = "Neither the internet gateway route nor the NAT route is on the database route table."
  }
  assert {
    condition     = output.database_subnet_ids == aws_subnet.database[*].id && length(output.database_subnet_ids) == 2
    error_message = "database_subnet_ids lists the database subnets."
  }
}

run "private_subnets_behind_one_nat" {
  command = plan

  variables {
    availability_zones     = ["eu-west-1a", "eu-west-1b"]
    enable_private_subnets = true
    enable_flow_logs       = true
  }

  assert {
    condition     = length(aws_subnet.private) == 2 && length(aws_nat_gateway.this) == 1
    error_message = "enable_private_subnets adds a private subnet per zone and one NAT gateway."
  }
  assert {
    condition     = [for s in aws_subnet.private : s.cidr_block] == ["10.20.10.0/24", "10.20.11.0/24"]
    error_message = "Private subnets start at the VPC's eleventh /24."
  }
  assert {
    condition     = !output.instances_need_public_ip
    error_message = "Behind NAT, instances need no public IP."
  }
  assert {
    condition     = length(aws_flow_log.this) == 1 && aws_flow_log.this[0].traffic_type == "REJECT"
    error_message = "enable_flow_logs records rejected traffic."
  }
}

# Bad inputs in one run: each listed variable must fail its own validation.
run "small_cidr_three_zones_and_uppercase_name_are_refused" {
  command = plan

  variables {
    cidr_block         = "10.0.0.0/24"
    availability_zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    name               = "Staging"
  }

  expect_failures = [var.cidr_block, var.availability_zones, var.name]
}
