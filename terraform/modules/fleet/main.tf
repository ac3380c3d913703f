# One color of the blue/green pair: a launch template whose user data runs the color's release, and
# an ASG that keeps `capacity` instances of it registered in the color's target group.
#
# There is no instance_refresh: a new release_version replaces the whole ASG (create before
# destroy), so the old instances leave only after the new ones are healthy, and Terraform's state
# says exactly which version every instance of the color runs.

data "aws_ssm_parameter" "ami" {
  count = var.image_id == null ? 1 : 0
  name  = local.image_ssm_parameter
}

data "aws_partition" "current" {}

locals {
  fullname = "${var.name}-${var.color}"
  # Graviton types (a "g" after the generation: t4g, m7g, c7gn) boot only arm64 images, so they
  # read Amazon Linux 2023's arm64 parameter; every other type reads the x86_64 one.
  graviton            = can(regex("^[a-z]+[0-9]+g[a-z]*\\.", var.instance_type))
  image_ssm_parameter = coalesce(var.image_ssm_parameter, "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${local.graviton ? "arm64" : "x86_64"}")
  image_id            = var.image_id != null ? var.image_id : nonsensitive(data.aws_ssm_parameter.ami[0].value)

  user_data = templatefile("${path.module}/templates/user_data.sh.tftpl", {
    artifact_bucket = var.artifact_bucket
    release_version = var.release_version
    color           = var.color
    app_port        = var.app_port
    python_packages = join(" ", [for p in var.python_packages : "'${p}'"])
    database        = var.database
  })
}

# --- network access --------------------------------------------------------------------------

resource "aws_security_group" "instances" {
  name        = "${local.fullname}-instances"
  description = "Instances of ${local.fullname}: the app port from the load balancer only; HTTPS out for packages and the release"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${local.fullname}-instances", Color = var.color })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "from_alb" {
  security_group_id            = aws_security_group.instances.id
  description                  = "App port from the load balancer"
  referenced_security_group_id = var.alb_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.app_port
  to_port                      = var.app_port

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.instances.id
  description       = "HTTPS out: dnf repositories, PyPI, S3 (the release)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443

  tags = var.tags
}

# --- identity: read this project's releases and the database's secret, nothing else --------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = local.fullname
  description        = "Instances of ${local.fullname}: read release artifacts (and the database's secret)"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = var.tags
}

data "aws_iam_policy_document" "read_releases" {
  statement {
    sid       = "ReadReleases"
    actions   = ["s3:GetObject"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::${var.artifact_bucket}/releases/*"]
  }
}

resource "aws_iam_role_policy" "read_releases" {
  name   = "read-releases"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.read_releases.json
}

# The database's secret, and nothing else of Secrets Manager: the app reads its credentials at start.
data "aws_iam_policy_document" "read_database_secret" {
  count = var.database != null ? 1 : 0

  statement {
    sid       = "ReadTheDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database.secret_arn]
  }

  # A customer managed key must let the role decrypt, and only through Secrets Manager, this secret.
  dynamic "statement" {
    for_each = var.database.kms_key_arn != null ? [var.database.kms_key_arn] : []
    content {
      sid       = "DecryptTheSecretThroughSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${split(":", var.database.secret_arn)[3]}.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "kms:EncryptionContext:SecretARN"
        values   = [var.database.secret_arn]
      }
    }
  }
}

resource "aws_iam_role_policy" "read_database_secret" {
  count = var.database != null ? 1 : 0

  name   = "read-database-secret"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.read_database_secret[0].json
}

resource "aws_iam_role_policy_attachment" "ssm" {
  count = var.enable_ssm_session_manager ? 1 : 0

  role       = aws_iam_role.instance.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "instance" {
  name = local.fullname
  role = aws_iam_role.instance.name

  tags = var.tags
}

# --- launch template and ASG -----------------------------------------------------------------

resource "aws_launch_template" "this" {
  name                   = local.fullname
  description            = "${local.fullname}: release ${var.release_version}"
  image_id               = local.image_id
  instance_type          = var.instance_type
  update_default_version = true
  user_data              = base64encode(local.user_data)

  iam_instance_profile {
    arn = aws_iam_instance_profile.instance.arn
  }

  # IMDSv2 only (session tokens), and one hop so containers on the host cannot reach it.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  # One-time spot requests that terminate when reclaimed: the only kind an Auto Scaling group
  # launches, and the group replaces a reclaimed instance like any other unhealthy one.
  dynamic "instance_market_options" {
    for_each = var.spot ? [1] : []
    content {
      market_type = "spot"
    }
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size
      encrypted             = true
      kms_key_id            = var.root_volume_kms_key_arn
      delete_on_termination = true
    }
  }

  network_interfaces {
    device_index                = 0
    associate_public_ip_address = var.associate_public_ip_address
    security_groups             = [aws_security_group.instances.id]
    delete_on_termination       = true
  }

  tags = merge(var.tags, { Color = var.color })

  # An app with a database reads its secret as it starts: no instance before the role may read it.
  depends_on = [aws_iam_role_policy.read_database_secret]
}

resource "aws_autoscaling_group" "this" {
  # The version in the name makes a new release a new ASG (see the note at the top).
  name                = "${local.fullname}-${var.release_version}"
  min_size            = var.capacity
  max_size            = var.capacity
  desired_capacity    = var.capacity
  vpc_zone_identifier = var.subnet_ids
  target_group_arns   = [var.target_group_arn]

  health_check_type         = "ELB"
  health_check_grace_period = var.health_check_grace_period
  # Apply returns only when every instance is InService and healthy behind the load balancer.
  wait_for_capacity_timeout = var.wait_for_capacity_timeout
  wait_for_elb_capacity     = var.capacity

  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  dynamic "tag" {
    for_each = merge(var.instance_tags, {
      Name    = local.fullname
      Color   = var.color
      Version = var.release_version
    })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}
