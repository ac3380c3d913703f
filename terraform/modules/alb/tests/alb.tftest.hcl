# Checks with a mocked AWS provider: nothing is created, nothing needs credentials. Runs that look
# at ARNs "apply" against the mock so that those computed values are known.
mock_provider "aws" {
  mock_resource "aws_lb" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/test-stack/0123456789abcdef"
      arn_suffix = "app/test-stack/0123456789abcdef"
    }
  }
  mock_resource "aws_lb_listener" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/test-stack/0123456789abcdef/0123456789abcdef"
    }
  }
}

override_resource {
  target = aws_lb_target_group.this["blue"]
  values = {
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/test-stack-blue/1111111111111111"
  }
}

override_resource {
  target = aws_lb_target_group.this["green"]
  values = {
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/test-stack-green/2222222222222222"
  }
}

variables {
  name           = "test-stack"
  vpc_id         = "vpc-0123456789abcdef0"
  vpc_cidr_block = "10.20.0.0/16"
  subnet_ids     = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
}

run "all_traffic_to_blue_by_default" {
  command = apply

  assert {
    condition     = output.weights == { blue = 100, green = 0 }
    error_message = "green_weight 0 sends everything to blue."
  }
  assert {
    condition = {
      for tg in one(one(aws_lb_listener.http.default_action).forward).target_group : tg.arn => tg.weight
      } == {
      (output.target_group_arns.blue)  = 100
      (output.target_group_arns.green) = 0
    }
    error_message = "The listener's default action must forward to blue (100) and green (0)."
  }
  assert {
    condition     = one(one(aws_lb_listener.http.default_action).forward).stickiness[0].enabled == false
    error_message = "Forward stickiness must be off, so that a weight shift moves clients at once."
  }
  assert {
    condition     = output.listener_arn == aws_lb_listener.http.arn && output.https_listener_arn == null
    error_message = "Without a certificate, the HTTP listener carries the weighted forward."
  }
  assert {
    condition = alltrue([for tg in aws_lb_target_group.this : alltrue([
      tg.port == 8080,
      tg.protocol == "HTTP",
      tg.deregistration_delay == "5",
      tg.health_check[0].path == "/health/ready",
      tg.health_check[0].interval == 5,
      tg.health_check[0].timeout == 2,
      tg.health_check[0].healthy_threshold == 2,
      tg.health_check[0].unhealthy_threshold == 2,
      tg.health_check[0].matcher == "200",
      tg.stickiness[0].enabled == false,
    ])])
    error_message = "Target groups: port 8080, /health/ready every 5 s (2 s timeout, thresholds 2/2, 200), 5 s draining, no stickiness."
  }
  assert {
    condition     = aws_lb_listener_rule.preview[0].action[0].target_group_arn == output.target_group_arns.green
    error_message = "With all traffic on blue, the preview header must reach green (the idle color)."
  }
  assert {
    condition = alltrue([
      one(aws_lb_listener_rule.preview[0].condition).http_header[0].http_header_name == "X-Preview",
      one(aws_lb_listener_rule.preview[0].condition).http_header[0].values == toset(["*"]),
    ])
    error_message = "The preview rule matches the X-Preview header with any value."
  }
  assert {
    condition     = aws_lb.this.drop_invalid_header_fields && !aws_lb.this.internal
    error_message = "The ALB is internet-facing and drops invalid header fields."
  }
  assert {
    condition     = keys(aws_vpc_security_group_ingress_rule.http) == ["0.0.0.0/0"] && length(aws_vpc_security_group_ingress_rule.https) == 0
    error_message = "Without HTTPS, only port 80 is open, to the allowed ranges."
  }
  assert {
    condition = alltrue([
      aws_vpc_security_group_egress_rule.app.cidr_ipv4 == "10.20.0.0/16",
      aws_vpc_security_group_egress_rule.app.from_port == 8080,
      aws_vpc_security_group_egress_rule.app.to_port == 8080,
    ])
    error_message = "The ALB may only reach the app port inside the VPC."
  }
}

run "ten_percent_to_green" {
  command = apply

  variables {
    green_weight = 10
  }

  assert {
    condition = {
      for tg in one(one(aws_lb_listener.http.default_action).forward).target_group : tg.arn => tg.weight
      } == {
      (output.target_group_arns.blue)  = 90
      (output.target_group_arns.green) = 10
    }
    error_message = "green_weight 10 forwards 90 to blue and 10 to green."
  }
  assert {
    condition     = output.preview_color == "green"
    error_message = "Green, with less traffic, stays the preview color."
  }
}

run "preview_follows_the_idle_color" {
  command = plan

  variables {
    green_weight = 75
  }

  assert {
    condition     = output.preview_color == "blue" && output.weights == { blue = 25, green = 75 }
    error_message = "With most traffic on green, the preview header reaches blue."
  }
}

run "explicit_preview_color_and_no_rule" {
  command = plan

  variables {
    preview_color  = "blue"
    preview_header = null
  }

  assert {
    condition     = output.preview_color == "blue"
    error_message = "preview_color overrides the idle-color rule."
  }
  assert {
    condition     = length(aws_lb_listener_rule.preview) == 0
    error_message = "preview_header = null removes the rule."
  }
}

run "https_carries_the_forward_and_http_redirects" {
  command = apply

  variables {
    certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
    green_weight    = 50
  }

  assert {
    condition     = length(aws_lb_listener.https) == 1 && aws_lb_listener.https[0].ssl_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    error_message = "A certificate adds an HTTPS listener with a TLS 1.2+ policy."
  }
  assert {
    condition = alltrue([
      one(aws_lb_listener.http.default_action).type == "redirect",
      one(aws_lb_listener.http.default_action).redirect[0].protocol == "HTTPS",
      length(one(aws_lb_listener.http.default_action).forward) == 0,
    ])
    error_message = "With HTTPS on, port 80 only redirects to HTTPS."
  }
  assert {
    condition     = output.listener_arn == aws_lb_listener.https[0].arn && aws_lb_listener_rule.preview[0].listener_arn == aws_lb_listener.https[0].arn
    error_message = "The HTTPS listener carries the weighted forward and the preview rule."
  }
  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.https) == 1
    error_message = "With HTTPS on, port 443 is open too."
  }
}

# Bad inputs, several per run: each listed variable must fail its own validation.
run "weight_above_100_one_subnet_unknown_color_and_long_name_are_refused" {
  command = plan

  variables {
    green_weight  = 101
    subnet_ids    = ["subnet-0123456789abcdef0"]
    preview_color = "red"
    name          = "a-name-much-too-long-for-tgs"
  }

  expect_failures = [var.green_weight, var.subnet_ids, var.preview_color, var.name]
}

run "negative_weight_and_timeout_not_shorter_than_interval_are_refused" {
  command = plan

  variables {
    green_weight = -1
    health_check = { interval = 5, timeout = 5 }
  }

  expect_failures = [var.green_weight, var.health_check]
}

run "fractional_weight_and_bad_matcher_are_refused" {
  command = plan

  variables {
    green_weight = 12.5
    health_check = { matcher = "ok" }
  }

  expect_failures = [var.green_weight, var.health_check]
}
