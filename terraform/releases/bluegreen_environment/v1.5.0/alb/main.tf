# The ALB, its security group, the blue and green target groups and the listener(s).
#
# A traffic shift changes only `green_weight`, which lives on the listener's default action: the
# listener updates in place in under a second, while any update of the aws_lb itself makes the
# provider wait ~30 s. Nothing here that a deploy touches is an attribute of aws_lb.

locals {
  colors = ["blue", "green"]
  https  = var.certificate_arn != null

  weights = { blue = 100 - var.green_weight, green = var.green_weight }

  # The idle color: the one with less traffic, green on a tie (a fresh stack serves blue).
  preview_color = var.preview_color != null ? var.preview_color : (var.green_weight > 50 ? "blue" : "green")

  serving_listener_arn = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http.arn
}

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Load balancer ${var.name}: listeners open to the allowed ranges, egress to the app port in the VPC only"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "http" {
  #checkov:skip=CKV_AWS_260:The listener is a public website's entry point (narrow it with ingress_cidr_blocks); with a certificate, port 80 only redirects to HTTPS.
  for_each = toset(var.ingress_cidr_blocks)

  security_group_id = aws_security_group.alb.id
  description       = local.https ? "HTTP (redirects to HTTPS)" : "HTTP"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80

  tags = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  for_each = local.https ? toset(var.ingress_cidr_blocks) : toset([])

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443

  tags = var.tags
}

# Egress to the app port inside the VPC: the instance security groups (one per color, made by the
# fleet module) admit this group, and nothing else is reachable from the ALB.
resource "aws_vpc_security_group_egress_rule" "app" {
  security_group_id = aws_security_group.alb.id
  description       = "To the app instances' port"
  cidr_ipv4         = var.vpc_cidr_block
  ip_protocol       = "tcp"
  from_port         = var.app_port
  to_port           = var.app_port

  tags = var.tags
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_150:Deletion protection is an input, on by default; staging turns it off so that every lab's teardown can finish.
  #checkov:skip=CKV2_AWS_28:WAF costs USD 5+ a month per web ACL plus rules; attach one (aws_wafv2_web_acl_association) where the service is exposed to real users.
  name               = var.name
  internal           = false
  load_balancer_type = "application"
  security_groups    = [aws_security_group.alb.id]
  subnets            = var.subnet_ids

  drop_invalid_header_fields = true
  enable_deletion_protection = var.enable_deletion_protection
  idle_timeout               = var.idle_timeout

  dynamic "access_logs" {
    for_each = var.access_logs_bucket != null ? [var.access_logs_bucket] : []
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }

  tags = merge(var.tags, { Name = var.name })
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; it reaches the targets over HTTP inside the VPC, on a port only its security group may use.
  for_each = toset(local.colors)

  name                 = "${var.name}-${each.key}"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  protocol             = "HTTP"
  port                 = var.app_port
  deregistration_delay = var.deregistration_delay

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = var.health_check.path
    interval            = var.health_check.interval
    timeout             = var.health_check.timeout
    healthy_threshold   = var.health_check.healthy_threshold
    unhealthy_threshold = var.health_check.unhealthy_threshold
    matcher             = var.health_check.matcher
  }

  # Off: a weight shift must move clients at once, and a rollback must not leave them pinned.
  stickiness {
    type    = "lb_cookie"
    enabled = false
  }

  tags = merge(var.tags, { Name = "${var.name}-${each.key}", Color = each.key })
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Port 80 serves plain HTTP only when no certificate is given (the sandbox has none); with certificate_arn set it only redirects to HTTPS.
  #checkov:skip=CKV_AWS_103:TLS policy applies to the HTTPS listener, which sets ssl_policy; this is the HTTP listener.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = local.https ? "redirect" : "forward"

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }

    dynamic "forward" {
      for_each = local.https ? [] : [1]
      content {
        dynamic "target_group" {
          for_each = local.colors
          content {
            arn    = aws_lb_target_group.this[target_group.value].arn
            weight = local.weights[target_group.value]
          }
        }
        stickiness {
          enabled  = false
          duration = 1
        }
      }
    }
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type = "forward"
    forward {
      dynamic "target_group" {
        for_each = local.colors
        content {
          arn    = aws_lb_target_group.this[target_group.value].arn
          weight = local.weights[target_group.value]
        }
      }
      stickiness {
        enabled  = false
        duration = 1
      }
    }
  }

  tags = var.tags
}

# Requests carrying the preview header go to the preview color, whatever the weights say.
resource "aws_lb_listener_rule" "preview" {
  count = var.preview_header != null ? 1 : 0

  listener_arn = local.serving_listener_arn
  priority     = 10

  condition {
    http_header {
      http_header_name = var.preview_header
      values           = ["*"]
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this[local.preview_color].arn
  }

  tags = merge(var.tags, { Name = "${var.name}-preview" })
}
