# Checks with a mocked AWS provider: nothing is created, nothing needs credentials.
mock_provider "aws" {
  # Generated JSON would not parse as a policy; the provider validates policies even under a mock.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_data "aws_ssm_parameter" {
    defaults = {
      value = "ami-0aaaaaaaaaaaaaaaa"
    }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = {
      arn = "arn:aws:iam::123456789012:instance-profile/test-stack-blue"
    }
  }
  mock_resource "aws_launch_template" {
    defaults = {
      id = "lt-0123456789abcdef0"
    }
  }
}

variables {
  name                  = "test-stack"
  color                 = "blue"
  release_version       = "1.2.3"
  artifact_bucket       = "test-artifacts"
  capacity              = 2
  vpc_id                = "vpc-0123456789abcdef0"
  subnet_ids            = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  alb_security_group_id = "sg-0a1b2c3d4e5f60718"
  target_group_arn      = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/test-stack-blue/1111111111111111"
}

run "security_defaults_user_data_and_asg" {
  command = plan

  assert {
    condition = alltrue([
      aws_launch_template.this.metadata_options[0].http_tokens == "required",
      aws_launch_template.this.metadata_options[0].http_endpoint == "enabled",
      aws_launch_template.this.metadata_options[0].http_put_response_hop_limit == 1,
    ])
    error_message = "IMDSv2 must be required (session tokens only), with a hop limit of 1."
  }
  assert {
    condition     = aws_launch_template.this.block_device_mappings[0].ebs[0].encrypted == "true"
    error_message = "The root volume must be encrypted."
  }
  assert {
    condition = alltrue([
      aws_vpc_security_group_ingress_rule.from_alb.referenced_security_group_id == var.alb_security_group_id,
      aws_vpc_security_group_ingress_rule.from_alb.cidr_ipv4 == null,
      aws_vpc_security_group_ingress_rule.from_alb.from_port == 8080,
      aws_vpc_security_group_ingress_rule.from_alb.to_port == 8080,
    ])
    error_message = "Instances accept the app port from the ALB's security group only, from no CIDR."
  }
  assert {
    condition     = aws_vpc_security_group_egress_rule.https.from_port == 443 && aws_vpc_security_group_egress_rule.https.to_port == 443
    error_message = "Outbound traffic is HTTPS only."
  }
  assert {
    condition     = data.aws_iam_policy_document.read_releases.statement[0].actions == toset(["s3:GetObject"]) && data.aws_iam_policy_document.read_releases.statement[0].resources == toset(["arn:aws:s3:::test-artifacts/releases/*"])
    error_message = "The instance role may only read objects under releases/ of the artifact bucket."
  }
  assert {
    condition     = length(aws_iam_role_policy_attachment.ssm) == 0
    error_message = "Session Manager access is opt-in."
  }
  assert {
    condition     = aws_launch_template.this.image_id == "ami-0aaaaaaaaaaaaaaaa"
    error_message = "With image_id null, the AMI comes from the Amazon Linux 2023 SSM parameter."
  }

  assert {
    condition = alltrue([
      contains(slice(split("\n", base64decode(aws_launch_template.this.user_data)), 0, 8), "ARTIFACT_URI=\"s3://test-artifacts/releases/1.2.3/release.tar.gz\""),
      contains(slice(split("\n", base64decode(aws_launch_template.this.user_data)), 0, 8), "APP_COLOR=\"blue\""),
      contains(slice(split("\n", base64decode(aws_launch_template.this.user_data)), 0, 8), "APP_VERSION=\"1.2.3\""),
    ])
    error_message = "The first lines of the user data must assign ARTIFACT_URI, APP_COLOR and APP_VERSION exactly (the sandbox reads them)."
  }
  assert {
    condition = alltrue([
      startswith(base64decode(aws_launch_template.this.user_data), "#!/bin/bash\n"),
      strcontains(base64decode(aws_launch_template.this.user_data), "ExecStart=/opt/venv/bin/gunicorn -c app/gunicorn.conf.py \"app:create_app()\""),
      strcontains(base64decode(aws_launch_template.this.user_data), "Environment=APP_BIND=0.0.0.0:8080"),
      strcontains(base64decode(aws_launch_template.this.user_data), "Environment=APP_INSTANCE_ID=$APP_INSTANCE_ID"),
      strcontains(base64decode(aws_launch_template.this.user_data), "X-aws-ec2-metadata-token-ttl-seconds"),
    ])
    error_message = "The user data runs gunicorn under systemd with APP_BIND, APP_INSTANCE_ID from IMDSv2."
  }
  assert {
    condition     = output.artifact_uri == "s3://test-artifacts/releases/1.2.3/release.tar.gz"
    error_message = "The artifact URI output matches the user data."
  }

  assert {
    condition = alltrue([
      aws_autoscaling_group.this.min_size == 2,
      aws_autoscaling_group.this.max_size == 2,
      aws_autoscaling_group.this.desired_capacity == 2,
      aws_autoscaling_group.this.health_check_type == "ELB",
      aws_autoscaling_group.this.target_group_arns == toset([var.target_group_arn]),
    ])
    error_message = "The ASG keeps exactly `capacity` instances, registered in the color's target group, with ELB health checks."
  }
  assert {
    condition     = aws_autoscaling_group.this.name == "test-stack-blue-1.2.3"
    error_message = "The ASG name carries the release version, so a new release is a new ASG."
  }
  assert {
    condition     = length(aws_autoscaling_group.this.instance_refresh) == 0
    error_message = "No instance_refresh (moto does not implement it, and the deploy model replaces ASGs instead)."
  }
  assert {
    condition = alltrue([for key, value in { Color = "blue", Version = "1.2.3" } :
      anytrue([for t in aws_autoscaling_group.this.tag : t.key == key && t.value == value && t.propagate_at_launch])
    ])
    error_message = "Color and Version tags must propagate to the instances."
  }
}

run "on_demand_unless_spot_is_asked_for" {
  command = plan

  assert {
    condition     = length(aws_launch_template.this.instance_market_options) == 0
    error_message = "By default the instances are on demand: no market options in the launch template."
  }
}

run "spot_instances_from_the_launch_template" {
  command = plan

  variables {
    spot = true
  }

  assert {
    condition     = aws_launch_template.this.instance_market_options[0].market_type == "spot"
    error_message = "With spot = true the launch template asks for spot capacity."
  }
}

run "no_database_by_default" {
  command = plan

  assert {
    condition     = length(aws_iam_role_policy.read_database_secret) == 0 && !strcontains(base64decode(aws_launch_template.this.user_data), "DATABASE_")
    error_message = "Without a database the role reads no secret and the app gets no DATABASE_* settings."
  }
}

# apply (against the mock) so that the role's id, which the policy names, is known.
run "the_app_gets_its_database_and_the_role_reads_its_secret_only" {
  command = apply

  variables {
    database = {
      secret_arn  = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1234-AbCdEf"
      kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
      host        = "bglab-staging-db.abcdefghijkl.us-east-1.rds.amazonaws.com"
      name        = "app"
    }
  }

  assert {
    condition = alltrue([for line in [
      "DATABASE_SECRET_ARN=\"arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1234-AbCdEf\"",
      "DATABASE_HOST=\"bglab-staging-db.abcdefghijkl.us-east-1.rds.amazonaws.com\"",
      "DATABASE_PORT=\"5432\"",
      "DATABASE_NAME=\"app\"",
    ] : contains(slice(split("\n", base64decode(aws_launch_template.this.user_data)), 0, 14), line)])
    error_message = "The user data's first lines assign the database's settings (the sandbox reads them; the port defaults to 5432)."
  }
  assert {
    condition = alltrue([for name in ["DATABASE_SECRET_ARN", "DATABASE_HOST", "DATABASE_PORT", "DATABASE_NAME"] :
      strcontains(base64decode(aws_launch_template.this.user_data), format("Environment=%s=$%s\n", name, name))
    ])
    error_message = "app.service passes each DATABASE_* setting to the app."
  }
  assert {
    condition = alltrue([
      data.aws_iam_policy_document.read_database_secret[0].statement[0].actions == toset(["secretsmanager:GetSecretValue"]),
      data.aws_iam_policy_document.read_database_secret[0].statement[0].resources == toset([var.database.secret_arn]),
      data.aws_iam_policy_document.read_database_secret[0].statement[1].actions == toset(["kms:Decrypt"]),
      data.aws_iam_policy_document.read_database_secret[0].statement[1].resources == toset([var.database.kms_key_arn]),
      anytrue([for c in data.aws_iam_policy_document.read_database_secret[0].statement[1].condition :
      c.variable == "kms:ViaService" && toset(c.values) == toset(["secretsmanager.us-east-1.amazonaws.com"])]),
      length(data.aws_iam_policy_document.read_database_secret[0].statement) == 2,
      aws_iam_role_policy.read_database_secret[0].role == aws_iam_role.instance.id,
    ])
    error_message = "The instance role may read the database's secret only, and decrypt it with its key only through Secrets Manager."
  }
}

run "an_aws_managed_secret_key_needs_no_kms_grant" {
  command = plan

  variables {
    database = {
      secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app-db-AbCdEf"
      host       = "10.0.3.7"
      port       = 5433
      name       = "app"
    }
  }

  assert {
    condition     = length(data.aws_iam_policy_document.read_database_secret[0].statement) == 1 && strcontains(base64decode(aws_launch_template.this.user_data), "DATABASE_PORT=\"5433\"")
    error_message = "Without kms_key_arn the policy has no kms:Decrypt (aws/secretsmanager's key policy covers it); the port is the one given."
  }
}

run "bad_database_settings_are_refused" {
  command = plan

  variables {
    database = {
      secret_arn  = "app-db"
      kms_key_arn = "alias/project"
      host        = "db; rm -rf /"
      port        = 70000
      name        = "1app"
    }
  }

  expect_failures = [var.database]
}

run "parked_color_has_no_instances" {
  command = plan

  variables {
    capacity = 0
    image_id = "ami-0123456789abcdef0"
  }

  assert {
    condition     = aws_autoscaling_group.this.desired_capacity == 0 && aws_launch_template.this.image_id == "ami-0123456789abcdef0"
    error_message = "capacity 0 parks the color; an explicit image_id wins over the SSM parameter."
  }
}

# Bad inputs in one run: each listed variable must fail its own validation.
run "bad_color_version_capacity_packages_and_image_are_refused" {
  command = plan

  variables {
    color           = "red"
    release_version = "1.0\"; rm -rf /"
    capacity        = 21
    python_packages = ["flask' && curl evil"]
    image_id        = "ubuntu"
  }

  expect_failures = [var.color, var.release_version, var.capacity, var.python_packages, var.image_id]
}

run "the_image_follows_the_instance_types_architecture" {
  command = plan

  assert {
    condition     = data.aws_ssm_parameter.ami[0].name == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    error_message = "An x86 type (t3.micro, the default) must read Amazon Linux 2023's x86_64 image."
  }
}

run "a_graviton_type_gets_the_arm64_image" {
  command = plan

  variables {
    instance_type = "t4g.micro"
  }

  assert {
    condition     = data.aws_ssm_parameter.ami[0].name == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    error_message = "A Graviton type (t4g) boots only arm64 images: it must read Amazon Linux 2023's arm64 parameter."
  }
  assert {
    condition     = aws_launch_template.this.instance_type == "t4g.micro"
    error_message = "The launch template must run the type asked for."
  }
}
