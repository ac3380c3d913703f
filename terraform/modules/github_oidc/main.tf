# GitHub Actions deploys with short-lived credentials: the account trusts GitHub's OIDC issuer, and
# one role admits tokens from one repository and one branch or environment only. Its policy covers
# what a staging plan, apply and blue/green deploy need, and no more than the stack's resource types
# and names allow. A second, read-only role plans pull requests.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  # IAM keys providers and condition keys by the issuer URL without its scheme.
  issuer  = trimsuffix(replace(var.oidc_issuer_url, "/^https?:///", ""), "/")
  subject = var.github_subject.environment != null ? "repo:${var.github_repository}:environment:${var.github_subject.environment}" : "repo:${var.github_repository}:ref:refs/heads/${var.github_subject.branch}"

  partition = data.aws_partition.current.partition
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  prefix    = var.managed_name_prefix

  oidc_provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : data.aws_iam_openid_connect_provider.github[0].arn
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_oidc_provider ? 1 : 0

  url            = var.oidc_issuer_url
  client_id_list = ["sts.amazonaws.com"]
  # AWS validates GitHub's certificate against its own CA library; IAM still requires a thumbprint.
  thumbprint_list = var.oidc_thumbprints

  tags = var.tags
}

data "aws_iam_openid_connect_provider" "github" {
  count = var.create_oidc_provider ? 0 : 1
  url   = var.oidc_issuer_url
}

# Each role admits one subject of the repository's tokens: the deploy role its branch or
# environment, the plan role its pull requests.
data "aws_iam_policy_document" "trust" {
  for_each = {
    deploy = { sid = "GitHubActionsOneRepoOneSubject", subject = local.subject }
    plan   = { sid = "GitHubActionsPullRequestsOfOneRepo", subject = "repo:${var.github_repository}:pull_request" }
  }

  statement {
    sid     = each.value.sid
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = [each.value.subject]
    }
  }
}

resource "aws_iam_role" "deploy" {
  name                 = var.role_name
  description          = "GitHub Actions deploys from ${local.subject}"
  assume_role_policy   = data.aws_iam_policy_document.trust["deploy"].json
  max_session_duration = var.max_session_duration

  tags = var.tags
}

# --- Terraform state and release artifacts -----------------------------------------------------

data "aws_iam_policy_document" "state" {
  # labkit checks the state bucket with HeadBucket, which needs s3:ListBucket and carries no
  # s3:prefix, so the listing cannot be limited to a prefix; reading objects still is.
  statement {
    sid = "ListStateBucket"
    # Versions: restore-state and restore-environment list the state's history to choose from.
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [var.state_bucket_arn]
  }

  statement {
    sid = "ReadWriteOwnState"
    # DeleteObject releases the S3-native lock file (use_lockfile); GetObjectVersion reads an
    # earlier state (restore-state, restore-environment).
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject"]
    resources = [for p in var.state_key_prefixes : "${var.state_bucket_arn}/${p}*"]
  }

  dynamic "statement" {
    for_each = length(var.readable_state_keys) > 0 ? [1] : []
    content {
      sid       = "ReadOtherEnvironmentsRanges"
      actions   = ["s3:GetObject"]
      resources = [for k in var.readable_state_keys : "${var.state_bucket_arn}/${k}"]
    }
  }

  # Only while Terraform locks with the table (before 1.10); with use_lockfile the lock is an object
  # under the state prefix, written and deleted with the statement above.
  dynamic "statement" {
    for_each = var.lock_table_arn != null ? [1] : []
    content {
      sid       = "LockTable"
      actions   = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
      resources = [var.lock_table_arn]
    }
  }

  # The state bucket encrypts every object with this key by default: S3 asks the caller for
  # GenerateDataKey to write state and lock objects and for Decrypt to read state.
  statement {
    sid       = "StateKey"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.state_kms_key_arn]
  }

  statement {
    sid       = "UploadReleases"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.artifact_bucket_arn}/releases/*"]
  }

  # `labkit release build` checks that the version is not there yet (HeadObject): without
  # s3:ListBucket S3 answers a missing key with 403, not 404.
  statement {
    sid       = "ListReleases"
    actions   = ["s3:ListBucket"]
    resources = [var.artifact_bucket_arn]
  }
}

# The deploy controller's ledger: deployments, their events and the environment's lock.
data "aws_iam_policy_document" "ledger" {
  statement {
    sid = "DeploymentLedger"
    actions = [
      "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
      "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem",
    ]
    resources = [var.ledger_table_arn]
  }
}

resource "aws_iam_role_policy" "ledger" {
  name   = "deployment-ledger"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.ledger.json
}

resource "aws_iam_role_policy" "state" {
  name   = "terraform-state-and-releases"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.state.json
}

# --- reading the stack (plan) ------------------------------------------------------------------

data "aws_iam_policy_document" "read" {
  #checkov:skip=CKV_AWS_356:Describe/List/Get calls of EC2, ELB, Auto Scaling and CloudWatch do not support resource-level permissions; "*" is the only valid resource for them.
  statement {
    sid = "DescribeStack"
    actions = [
      "ec2:Describe*",
      "elasticloadbalancing:Describe*",
      "autoscaling:Describe*",
      "cloudwatch:DescribeAlarms",
      # The deploy's analysis gate reads the load balancer's metrics.
      "cloudwatch:GetMetricStatistics",
      "cloudwatch:GetDashboard",
      "cloudwatch:ListDashboards",
      "cloudwatch:ListTagsForResource",
      "sns:ListTopics",
      "logs:DescribeLogGroups",
      "kms:ListAliases",
      # The quota-check runbook reads each quota the stacks use and the increases asked for.
      "servicequotas:GetServiceQuota",
      "servicequotas:GetAWSDefaultServiceQuota",
      "servicequotas:ListRequestedServiceQuotaChangeHistory",
      # adopt-or-remove-orphans finds what is tagged with the environment.
      "tag:GetResources",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [local.region]
    }
  }

  statement {
    sid       = "AmazonLinuxAmiParameter"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = ["arn:${local.partition}:ssm:${local.region}::parameter/aws/service/ami-amazon-linux-latest/*"]
  }
}

resource "aws_iam_role_policy" "read" {
  name   = "read-stack"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.read.json
}

# --- changing the stack (apply) ----------------------------------------------------------------

data "aws_iam_policy_document" "write" {
  #checkov:skip=CKV_AWS_111:EC2, ELB and Auto Scaling resources get their ARNs (random ids) only when created, so their create and modify actions cannot name them; those are listed one by one and limited to the region, and IAM, SNS, KMS alias, log group and budget writes are limited to the stack's name prefix.
  statement {
    sid = "NetworkLoadBalancerFleet"
    actions = concat([
      "ec2:CreateVpc", "ec2:DeleteVpc", "ec2:ModifyVpcAttribute",
      "ec2:CreateSubnet", "ec2:DeleteSubnet", "ec2:ModifySubnetAttribute",
      "ec2:CreateInternetGateway", "ec2:AttachInternetGateway", "ec2:DetachInternetGateway", "ec2:DeleteInternetGateway",
      "ec2:CreateRouteTable", "ec2:DeleteRouteTable", "ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ReplaceRoute",
      "ec2:AssociateRouteTable", "ec2:DisassociateRouteTable",
      "ec2:AllocateAddress", "ec2:ReleaseAddress", "ec2:CreateNatGateway", "ec2:DeleteNatGateway",
      "ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup",
      "ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress",
      "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress", "ec2:ModifySecurityGroupRules",
      "ec2:UpdateSecurityGroupRuleDescriptionsIngress", "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
      "ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate", "ec2:DeleteLaunchTemplate",
      "ec2:RunInstances", "ec2:CreateTags", "ec2:DeleteTags",
      "elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:DeleteLoadBalancer",
      "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
      "elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:DeleteTargetGroup",
      "elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",
      "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener", "elasticloadbalancing:ModifyListener",
      "elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule", "elasticloadbalancing:ModifyRule",
      "elasticloadbalancing:SetRulePriorities", "elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags",
      "autoscaling:CreateAutoScalingGroup", "autoscaling:UpdateAutoScalingGroup", "autoscaling:DeleteAutoScalingGroup",
      "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags",
      "autoscaling:AttachLoadBalancerTargetGroups", "autoscaling:DetachLoadBalancerTargetGroups",
      "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards",
      "cloudwatch:TagResource", "cloudwatch:UntagResource",
    ], var.manage_alarm_key ? ["kms:CreateKey"] : [])
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [local.region]
    }
  }

  statement {
    sid = "OwnRolesAndInstanceProfiles"
    actions = [
      "iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole",
      "iam:CreateRole", "iam:DeleteRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy", "iam:TagRole", "iam:UntagRole",
      "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
      "iam:GetInstanceProfile", "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:TagInstanceProfile",
      "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
    ]
    resources = [
      "arn:${local.partition}:iam::${local.account}:role/${local.prefix}-*",
      "arn:${local.partition}:iam::${local.account}:instance-profile/${local.prefix}-*",
    ]
  }

  # Auto Scaling asks the caller of CreateAutoScalingGroup/UpdateAutoScalingGroup for PassRole on
  # the role of the launch template's instance profile.
  statement {
    sid       = "PassOwnRolesToEc2Only"
    actions   = ["iam:PassRole"]
    resources = ["arn:${local.partition}:iam::${local.account}:role/${local.prefix}-*"]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }

  statement {
    sid       = "ServiceLinkedRolesOfTheStack"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["arn:${local.partition}:iam::${local.account}:role/aws-service-role/*"]
    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["autoscaling.amazonaws.com", "elasticloadbalancing.amazonaws.com"]
    }
  }

  statement {
    sid = "OwnAlarmTopics"
    actions = [
      "sns:CreateTopic", "sns:DeleteTopic", "sns:GetTopicAttributes", "sns:SetTopicAttributes",
      "sns:Subscribe", "sns:Unsubscribe", "sns:GetSubscriptionAttributes", "sns:ListSubscriptionsByTopic",
      "sns:ListTagsForResource", "sns:TagResource", "sns:UntagResource",
    ]
    resources = ["arn:${local.partition}:sns:${local.region}:${local.account}:${local.prefix}-*"]
  }

  # The alarm topic's own key (module monitoring), where the environment has one.
  dynamic "statement" {
    for_each = var.manage_alarm_key ? [1] : []
    content {
      sid = "OwnKeysThroughTheirAlias"
      actions = [
        "kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags",
        "kms:PutKeyPolicy", "kms:EnableKeyRotation", "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
      ]
      resources = ["arn:${local.partition}:kms:${local.region}:${local.account}:key/*"]
      condition {
        test     = "StringLike"
        variable = "kms:ResourceAliases"
        values   = ["alias/${local.prefix}-*"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.manage_alarm_key ? [1] : []
    content {
      sid       = "OwnKeyAliases"
      actions   = ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"]
      resources = ["arn:${local.partition}:kms:${local.region}:${local.account}:alias/${local.prefix}-*", "arn:${local.partition}:kms:${local.region}:${local.account}:key/*"]
    }
  }

  # VPC flow logs (the network module's enable_flow_logs): their log group, the flow log, and
  # the role that writes to the group, passed to the flow logs service.
  dynamic "statement" {
    for_each = var.manage_flow_logs ? [1] : []
    content {
      sid = "OwnLogGroups"
      actions = [
        "logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy", "logs:ListTagsForResource",
        "logs:TagResource", "logs:UntagResource", "logs:AssociateKmsKey",
      ]
      resources = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:/vpc/${local.prefix}*"]
    }
  }

  dynamic "statement" {
    for_each = var.manage_flow_logs ? [1] : []
    content {
      sid       = "FlowLogs"
      actions   = ["ec2:CreateFlowLogs", "ec2:DeleteFlowLogs"]
      resources = ["*"]
      condition {
        test     = "StringEquals"
        variable = "aws:RequestedRegion"
        values   = [local.region]
      }
    }
  }

  dynamic "statement" {
    for_each = var.manage_flow_logs ? [1] : []
    content {
      sid       = "PassFlowLogsRole"
      actions   = ["iam:PassRole"]
      resources = ["arn:${local.partition}:iam::${local.account}:role/${local.prefix}-*"]
      condition {
        test     = "StringEquals"
        variable = "iam:PassedToService"
        values   = ["vpc-flow-logs.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.manage_budget ? [1] : []
    content {
      sid       = "OwnBudget"
      actions   = ["budgets:ViewBudget", "budgets:ModifyBudget", "budgets:ListTagsForResource", "budgets:TagResource"]
      resources = ["arn:${local.partition}:budgets::${local.account}:budget/${local.prefix}-*"]
    }
  }
}

resource "aws_iam_role_policy" "write" {
  name   = "change-stack"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.write.json
}

# --- planning pull requests (read-only) --------------------------------------------------------

resource "aws_iam_role" "plan" {
  count = var.plan_role_name != null ? 1 : 0

  name                 = var.plan_role_name
  description          = "GitHub Actions plans pull requests of ${var.github_repository} (read-only)"
  assume_role_policy   = data.aws_iam_policy_document.trust["plan"].json
  max_session_duration = 3600

  tags = var.tags
}

data "aws_iam_policy_document" "plan_state" {
  # labkit checks the state bucket with HeadBucket, which needs s3:ListBucket and carries no
  # s3:prefix, so the listing cannot be limited to a prefix; reading objects still is.
  statement {
    sid       = "ListStateBucket"
    actions   = ["s3:ListBucket"]
    resources = [var.state_bucket_arn]
  }

  statement {
    sid     = "ReadStates"
    actions = ["s3:GetObject"]
    resources = concat(
      [for p in var.state_key_prefixes : "${var.state_bucket_arn}/${p}*"],
      [for k in var.readable_state_keys : "${var.state_bucket_arn}/${k}"],
    )
  }

  # A plan takes the state lock: with use_lockfile it writes and deletes the lock object, nothing
  # else; with a lock table (before Terraform 1.10) it takes a lock item in the table instead.
  dynamic "statement" {
    for_each = var.lock_table_arn == null ? [1] : []
    content {
      sid       = "StateLockFile"
      actions   = ["s3:PutObject", "s3:DeleteObject"]
      resources = [for p in var.state_key_prefixes : "${var.state_bucket_arn}/${p}*.tflock"]
    }
  }

  dynamic "statement" {
    for_each = var.lock_table_arn != null ? [1] : []
    content {
      sid       = "LockTable"
      actions   = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
      resources = [var.lock_table_arn]
    }
  }

  # The bucket's default encryption: Decrypt reads state, GenerateDataKey writes the lock object.
  statement {
    sid       = "DecryptState"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.state_kms_key_arn]
  }

}

# What a plan reads of the stack's own named resources: the read actions of the deploy role's
# write statements, with the same resource limits.
data "aws_iam_policy_document" "plan_own_resources" {
  statement {
    sid = "ReadOwnRolesAndInstanceProfiles"
    actions = [
      "iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole", "iam:GetInstanceProfile",
    ]
    resources = [
      "arn:${local.partition}:iam::${local.account}:role/${local.prefix}-*",
      "arn:${local.partition}:iam::${local.account}:instance-profile/${local.prefix}-*",
    ]
  }

  statement {
    sid = "ReadOwnAlarmTopics"
    actions = [
      "sns:GetTopicAttributes", "sns:GetSubscriptionAttributes", "sns:ListSubscriptionsByTopic",
      "sns:ListTagsForResource",
    ]
    resources = ["arn:${local.partition}:sns:${local.region}:${local.account}:${local.prefix}-*"]
  }

  dynamic "statement" {
    for_each = var.manage_alarm_key ? [1] : []
    content {
      sid       = "ReadOwnKeysThroughTheirAlias"
      actions   = ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"]
      resources = ["arn:${local.partition}:kms:${local.region}:${local.account}:key/*"]
      condition {
        test     = "StringLike"
        variable = "kms:ResourceAliases"
        values   = ["alias/${local.prefix}-*"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.manage_flow_logs ? [1] : []
    content {
      sid       = "ReadOwnLogGroups"
      actions   = ["logs:ListTagsForResource"]
      resources = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:/vpc/${local.prefix}*"]
    }
  }

  dynamic "statement" {
    for_each = var.manage_budget ? [1] : []
    content {
      sid       = "ReadOwnBudget"
      actions   = ["budgets:ViewBudget", "budgets:ListTagsForResource"]
      resources = ["arn:${local.partition}:budgets::${local.account}:budget/${local.prefix}-*"]
    }
  }
}

resource "aws_iam_role_policy" "plan_own_resources" {
  count = var.plan_role_name != null ? 1 : 0

  name   = "read-own-resources"
  role   = aws_iam_role.plan[0].id
  policy = data.aws_iam_policy_document.plan_own_resources.json
}

resource "aws_iam_role_policy" "plan_state" {
  count = var.plan_role_name != null ? 1 : 0

  name   = "read-terraform-state"
  role   = aws_iam_role.plan[0].id
  policy = data.aws_iam_policy_document.plan_state.json
}

resource "aws_iam_role_policy" "plan_read" {
  count = var.plan_role_name != null ? 1 : 0

  name   = "read-stack"
  role   = aws_iam_role.plan[0].id
  policy = data.aws_iam_policy_document.read.json
}
