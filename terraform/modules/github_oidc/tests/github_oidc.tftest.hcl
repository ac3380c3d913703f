# Plan-level checks with a mocked AWS provider: nothing is created, nothing needs credentials.
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
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_region" {
    defaults = {
      name = "us-east-1"
    }
  }
  mock_data "aws_iam_openid_connect_provider" {
    defaults = {
      arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    }
  }
}

variables {
  role_name           = "bglab-staging-deploy"
  github_repository   = "acme/bluegreen-lab"
  managed_name_prefix = "bglab-staging"
  state_bucket_arn    = "arn:aws:s3:::bglab-tfstate-123456789012-us-east-1"
  lock_table_arn      = "arn:aws:dynamodb:us-east-1:123456789012:table/bglab-tflock"
  state_kms_key_arn   = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  artifact_bucket_arn = "arn:aws:s3:::bglab-artifacts-123456789012-us-east-1"
  ledger_table_arn    = "arn:aws:dynamodb:us-east-1:123456789012:table/bglab-deployments"
}

run "trust_is_one_repository_and_one_branch" {
  command = plan

  assert {
    condition     = output.trusted_subject == "repo:acme/bluegreen-lab:ref:refs/heads/main"
    error_message = "By default the role trusts the main branch of the one repository."
  }
  assert {
    condition = alltrue([
      one(data.aws_iam_policy_document.trust["deploy"].statement).actions == toset(["sts:AssumeRoleWithWebIdentity"]),
      anytrue([for c in one(data.aws_iam_policy_document.trust["deploy"].statement).condition :
      c.test == "StringEquals" && c.variable == "token.actions.githubusercontent.com:sub" && c.values == tolist(["repo:acme/bluegreen-lab:ref:refs/heads/main"])]),
      anytrue([for c in one(data.aws_iam_policy_document.trust["deploy"].statement).condition :
      c.test == "StringEquals" && c.variable == "token.actions.githubusercontent.com:aud" && c.values == tolist(["sts.amazonaws.com"])]),
    ])
    error_message = "The trust policy must match the token's sub exactly (StringEquals, no wildcard) and its audience."
  }
  assert {
    condition     = aws_iam_openid_connect_provider.github[0].url == "https://token.actions.githubusercontent.com" && aws_iam_openid_connect_provider.github[0].client_id_list == toset(["sts.amazonaws.com"])
    error_message = "The OIDC provider is GitHub's issuer with the STS audience."
  }
  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.state.statement :
    alltrue([for r in s.resources : !endswith(r, "*") || startswith(r, "${var.state_bucket_arn}/staging/") || startswith(r, "${var.artifact_bucket_arn}/releases/")])])
    error_message = "State access is limited to the staging/ prefix (and releases/ of the artifact bucket)."
  }
  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.write.statement :
    !contains(s.actions, "*") && alltrue([for a in s.actions : !endswith(a, ":*")])])
    error_message = "No wildcard actions in the apply policy."
  }
  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.write.statement :
    s.sid != "PassOwnRolesToEc2Only" || s.resources == toset(["arn:aws:iam::123456789012:role/bglab-staging-*"])])
    error_message = "iam:PassRole is limited to the stack's own roles."
  }
}

run "trust_an_environment" {
  command = plan

  variables {
    github_subject       = { environment = "staging" }
    create_oidc_provider = false
  }

  assert {
    condition     = output.trusted_subject == "repo:acme/bluegreen-lab:environment:staging"
    error_message = "An environment subject is trusted as repo:OWNER/NAME:environment:ENV."
  }
  assert {
    condition     = length(aws_iam_openid_connect_provider.github) == 0 && output.oidc_provider_arn == "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    error_message = "With create_oidc_provider = false the existing provider is looked up."
  }
}

# Bad inputs, several per run: each listed variable must fail its own validation.
run "two_subjects_wildcard_repository_and_bad_prefix_are_refused" {
  command = plan

  variables {
    github_subject     = { branch = "main", environment = "staging" }
    github_repository  = "acme/*"
    state_key_prefixes = ["staging"]
  }

  expect_failures = [var.github_subject, var.github_repository, var.state_key_prefixes]
}

run "wildcard_branch_is_refused" {
  command = plan

  variables {
    github_subject = { branch = "*" }
  }

  expect_failures = [var.github_subject]
}

run "deploy_rights_and_a_read_only_plan_role" {
  command = plan

  variables {
    plan_role_name = "bglab-staging-plan"
  }

  assert {
    condition     = one(data.aws_iam_policy_document.ledger.statement).resources == toset([var.ledger_table_arn]) && contains(one(data.aws_iam_policy_document.ledger.statement).actions, "dynamodb:UpdateItem")
    error_message = "The deploy role reads and writes the deployment ledger table, and no other table through that statement."
  }
  assert {
    condition     = contains(one([for s in data.aws_iam_policy_document.read.statement : s if s.sid == "DescribeStack"]).actions, "cloudwatch:GetMetricStatistics")
    error_message = "The deploy's analysis gate reads CloudWatch metrics."
  }
  assert {
    condition = anytrue([for c in one(data.aws_iam_policy_document.trust["plan"].statement).condition :
    c.variable == "token.actions.githubusercontent.com:sub" && c.values == tolist(["repo:acme/bluegreen-lab:pull_request"])])
    error_message = "The plan role trusts the repository's pull requests only."
  }
  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.plan_state.statement :
    s.resources == toset([var.lock_table_arn]) || alltrue([for a in s.actions : contains(["s3:ListBucket", "s3:GetObject", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"], a) || alltrue([for r in s.resources : endswith(r, ".tflock")])])])
    error_message = "The plan role writes nothing but the state lock: the lock file, or with a lock table the table."
  }
}

# Rights only for what the stack builds and how Terraform locks (the module's defaults: a budget, no
# flow logs, the lock file in S3), then with the lock table, flow logs and no budget.
run "rights_follow_what_the_stack_builds" {
  command = plan

  variables {
    lock_table_arn = null
    plan_role_name = "bglab-staging-plan"
  }

  assert {
    condition = alltrue([
      contains([for s in data.aws_iam_policy_document.write.statement : s.sid], "OwnBudget"),
      contains([for s in data.aws_iam_policy_document.plan_own_resources.statement : s.sid], "ReadOwnBudget"),
    ])
    error_message = "With manage_budget (the default) the deploy role manages the budget and the plan role reads it."
  }
  assert {
    condition = alltrue([
      contains([for s in data.aws_iam_policy_document.write.statement : s.sid], "OwnKeysThroughTheirAlias"),
      contains([for s in data.aws_iam_policy_document.plan_own_resources.statement : s.sid], "ReadOwnKeysThroughTheirAlias"),
    ])
    error_message = "With manage_alarm_key (the default) the deploy role manages the keys under the prefix and the plan role reads them."
  }
  assert {
    condition = length(setintersection(
      [for s in concat(data.aws_iam_policy_document.write.statement, data.aws_iam_policy_document.plan_own_resources.statement, data.aws_iam_policy_document.state.statement, data.aws_iam_policy_document.plan_state.statement) : s.sid],
      ["OwnLogGroups", "FlowLogs", "PassFlowLogsRole", "ReadOwnLogGroups", "LockTable"],
    )) == 0
    error_message = "Without flow logs and without a lock table, no statement for either."
  }
  assert {
    condition     = contains([for s in data.aws_iam_policy_document.plan_state.statement : s.sid], "StateLockFile")
    error_message = "With use_lockfile the plan role writes the lock object."
  }
  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.write.statement : !contains(s.actions, "ec2:CreateFlowLogs") && !contains(s.actions, "logs:CreateLogGroup")])
    error_message = "No flow log or log group rights without flow logs."
  }
}

run "no_kms_rights_for_an_environment_without_a_key_of_its_own" {
  command = plan

  variables {
    manage_alarm_key = false
    plan_role_name   = "bglab-staging-plan"
  }

  assert {
    condition = length(setintersection(
      [for s in concat(data.aws_iam_policy_document.write.statement, data.aws_iam_policy_document.plan_own_resources.statement) : s.sid],
      ["OwnKeysThroughTheirAlias", "OwnKeyAliases", "ReadOwnKeysThroughTheirAlias"],
    )) == 0
    error_message = "With manage_alarm_key = false neither role gets rights on keys under the prefix."
  }
  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.write.statement : !contains(s.actions, "kms:CreateKey")])
    error_message = "With manage_alarm_key = false the deploy role creates no KMS key."
  }
}

run "the_lock_table_and_flow_logs_without_a_budget" {
  command = plan

  variables {
    manage_budget    = false
    manage_flow_logs = true
    plan_role_name   = "bglab-staging-plan"
  }

  assert {
    condition = alltrue([
      contains([for s in data.aws_iam_policy_document.state.statement : s.sid], "LockTable"),
      contains([for s in data.aws_iam_policy_document.plan_state.statement : s.sid], "LockTable"),
      !contains([for s in data.aws_iam_policy_document.plan_state.statement : s.sid], "StateLockFile"),
      length(setintersection([for s in data.aws_iam_policy_document.write.statement : s.sid], ["OwnLogGroups", "FlowLogs", "PassFlowLogsRole"])) == 3,
      contains([for s in data.aws_iam_policy_document.plan_own_resources.statement : s.sid], "ReadOwnLogGroups"),
    ])
    error_message = "With a lock table both roles take locks in it (the plan role no lock file); with flow logs the deploy role manages them."
  }
  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.write.statement :
    s.sid != "PassFlowLogsRole" || anytrue([for c in s.condition : c.variable == "iam:PassedToService" && c.values == tolist(["vpc-flow-logs.amazonaws.com"])])])
    error_message = "The flow logs role is passed to the flow logs service only."
  }
  assert {
    condition = length(setintersection(
      [for s in concat(data.aws_iam_policy_document.write.statement, data.aws_iam_policy_document.plan_own_resources.statement) : s.sid],
      ["OwnBudget", "ReadOwnBudget"],
    )) == 0
    error_message = "Without a budget, no budget rights."
  }
}

run "the_sandbox_issuer" {
  command = plan

  variables {
    oidc_issuer_url  = "https://localhost/labkit-sandbox/oidc"
    oidc_thumbprints = ["0123456789abcdef0123456789abcdef01234567"]
  }

  assert {
    condition = anytrue([for c in one(data.aws_iam_policy_document.trust["deploy"].statement).condition :
    c.variable == "localhost/labkit-sandbox/oidc:sub"])
    error_message = "Condition keys name the issuer without its scheme, as IAM does."
  }
}

run "plain_http_and_bad_thumbprints_are_refused" {
  command = plan

  variables {
    oidc_issuer_url  = "http://token.actions.githubusercontent.com"
    oidc_thumbprints = ["not-a-thumbprint"]
  }

  expect_failures = [var.oidc_issuer_url, var.oidc_thumbprints]
}
