"""diagnose-access-denied's pieces that need no stack: the AccessDenied message read, the role's
policies judged on it (moto in-process; AWS's simulator through a stub), global's code read from a
plan, and what the runbook plans for each finding (tests/integration/test_drills_access_denied.py
runs the drill and the runbook)."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from botocore.stub import Stubber

from labkit.deploy.ledger import Ledger, ensure_table
from labkit.deploy.strategy import canary
from labkit.errors import RunbookError
from labkit.identity.policy import Decision
from labkit.infra.stack import Stack, StackNames
from labkit.infra.terraform import PlanResult, ResourceChange
from labkit.ops import access_denied
from labkit.ops.access_denied import AccessFinding, Verdict
from labkit.sandbox.server.iam import _denied
from labkit.target import Target

ROLE = "bglab-staging-deploy"
SESSION = f"arn:aws:sts::123456789012:assumed-role/{ROLE}/deploy"
ACTION = "cloudwatch:GetMetricStatistics"
#: The deploy role's read statement, as global's github_oidc module writes it.
READ_STACK = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "DescribeStack",
            "Effect": "Allow",
            "Action": ["cloudwatch:DescribeAlarms", ACTION, "ec2:Describe*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}},
        },
        {"Sid": "AmazonLinuxAmiParameter", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": "arn:aws:ssm:us-east-1::parameter/aws/service/ami-amazon-linux-latest/*"},
    ],
}  # fmt: skip
WITHOUT_IT = {
    **READ_STACK,
    "Statement": [
        {**READ_STACK["Statement"][0], "Action": ["cloudwatch:DescribeAlarms", "ec2:Describe*"]},
        READ_STACK["Statement"][1],
    ],
}


def sandbox_message(action: str = ACTION, resource: str | None = None) -> str:
    """The refusal as the sandbox's IAM writes it, wrapped as botocore and the controller print it."""
    message = _denied(SESSION, action, resource, Decision.IMPLICIT_DENY).message
    operation = action.split(":")[1]
    return (
        "controller error: Could not read RequestCount for the analysis: An error occurred (AccessDenied) "
        f"when calling the {operation} operation: {message}\n  -> Check the ARNs ..."
    )


# --- the message ------------------------------------------------------------------------------


def test_the_sandbox_s_refusal_in_a_deployment_s_reason_is_read() -> None:
    denial = access_denied.parse(sandbox_message())
    assert (denial.principal, denial.action, denial.resource, denial.role) == (SESSION, ACTION, None, ROLE)
    assert denial.why == f"because no identity-based policy allows the {ACTION} action"


def test_aws_s_forms_are_read_resource_quoted_or_not_and_roles_by_path() -> None:
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/bglab-ledger"
    dynamodb = access_denied.parse(sandbox_message("dynamodb:PutItem", table))
    assert (dynamodb.action, dynamodb.resource) == ("dynamodb:PutItem", table)
    quoted = access_denied.parse(
        'User: arn:aws:iam::123456789012:role/ci/bglab-plan is not authorized to perform: s3:GetObject on '
        'resource: "arn:aws:s3:::state/staging.tfstate" with an explicit deny in an identity-based policy'
    )
    assert (quoted.role, quoted.resource) == ("bglab-plan", "arn:aws:s3:::state/staging.tfstate")
    assert quoted.why == "with an explicit deny in an identity-based policy"
    user = access_denied.parse(
        "User: arn:aws:iam::123456789012:user/ann is not authorized to perform: iam:ListUsers"
    )
    assert user.role is None and user.why == ""


@pytest.mark.parametrize("text", ["", "An error occurred (Throttling): Rate exceeded", "not authorized"])
def test_text_without_an_access_denied_message_is_refused(text: str) -> None:
    with pytest.raises(RunbookError, match="No AccessDenied message") as refused:
        access_denied.parse(text)
    assert "error" in str(refused.value.hint)


def test_a_refused_web_identity_token_is_sent_to_fix_oidc_trust() -> None:
    with pytest.raises(RunbookError) as refused:
        access_denied.parse("AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity")
    assert "fix-oidc-trust" in str(refused.value.hint)


def test_without_an_error_the_newest_failed_deployment_s_reason_is_read(moto_target: Target) -> None:
    table = StackNames.for_target(moto_target).ledger_table
    ensure_table(Target(name="aws", region=moto_target.region, allow_spend=True), table)
    with pytest.raises(RunbookError, match="no rolled-back or aborted deployment of staging"):
        access_denied.find_denial(moto_target, "", "staging")
    book = Ledger(moto_target, table)
    for reason in (sandbox_message(), "the analysis failed: 5xx rate 31 % > 1 %"):  # newest last
        record = book.start("staging", "1.1.0", from_color="blue", to_color="green", strategy=canary())
        book.finish(record.id, "rolled_back", reason)
    with pytest.raises(RunbookError, match=f"No AccessDenied message in deployment {record.id} of staging"):
        access_denied.find_denial(moto_target, "", "staging")
    given = access_denied.find_denial(moto_target, sandbox_message(), "staging")
    assert (given.action, given.source) == (ACTION, "the error given")


# --- the role's policies ----------------------------------------------------------------------


def judge(*policies: dict[str, Any], action: str = ACTION, region: str = "us-east-1") -> Verdict:
    named = {f"p{n}": policy for n, policy in enumerate(policies, 1)}
    return access_denied.evaluate_policies(named, access_denied.request_for(action, None, region), "test")


def test_the_statements_that_decide_are_named() -> None:
    assert judge(READ_STACK) == Verdict(Decision.ALLOWED, ("DescribeStack of p1",), "test")
    assert judge(WITHOUT_IT) == Verdict(Decision.IMPLICIT_DENY, (), "test")
    assert not judge(READ_STACK, region="eu-west-1").allowed  # the statement's region condition
    deny = {"Statement": [{"Effect": "Deny", "Action": "cloudwatch:*", "Resource": "*"}]}
    assert judge(READ_STACK, deny) == Verdict(Decision.EXPLICIT_DENY, ("#1 of p2",), "test")


def test_the_role_s_inline_and_attached_policies_are_read_from_iam(moto_target: Target) -> None:
    iam = moto_target.client("iam")
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps({"Statement": []}))
    iam.put_role_policy(RoleName=ROLE, PolicyName="read-stack", PolicyDocument=json.dumps(WITHOUT_IT))
    metrics = {"Version": "2012-10-17", "Statement": [{"Sid": "Metrics", "Effect": "Allow", "Action": ACTION,
                                                       "Resource": "*"}]}  # fmt: skip
    arn = iam.create_policy(PolicyName="metrics", PolicyDocument=json.dumps(metrics))["Policy"]["Arn"]
    request = access_denied.request_for(ACTION, None, moto_target.region)
    before = access_denied.role_policies(moto_target, ROLE)
    assert not access_denied.evaluate_policies(before, request, "").allowed
    iam.attach_role_policy(RoleName=ROLE, PolicyArn=arn)
    policies = access_denied.role_policies(moto_target, ROLE)
    assert set(policies) == {"read-stack", arn}
    assert access_denied.evaluate_policies(policies, request, "").statements == (f"Metrics of {arn}",)


def test_on_aws_iam_s_simulator_decides(moto_target: Target) -> None:
    iam = moto_target.client("iam")
    stub = Stubber(iam)
    role_arn = f"arn:aws:iam::123456789012:role/{ROLE}"
    role = {"Path": "/", "RoleName": ROLE, "RoleId": "AROAEXAMPLE0000000001", "Arn": role_arn,
            "CreateDate": "2026-01-01T00:00:00Z"}  # fmt: skip
    stub.add_response("get_role", {"Role": role}, {"RoleName": ROLE})
    region = {"ContextKeyName": "aws:RequestedRegion", "ContextKeyValues": ["us-east-1"],
              "ContextKeyType": "string"}  # fmt: skip
    matched = {"SourcePolicyId": "read-stack", "SourcePolicyType": "IAM Policy",
               "StartPosition": {"Line": 1, "Column": 41}}  # fmt: skip
    result = {"EvalActionName": ACTION, "EvalDecision": "allowed", "MatchedStatements": [matched]}
    asked = {"PolicySourceArn": role_arn, "ActionNames": [ACTION], "ContextEntries": [region]}
    stub.add_response("simulate_principal_policy", {"EvaluationResults": [result]}, asked)
    with stub:
        verdict = access_denied.simulate(moto_target, ROLE, access_denied.parse(sandbox_message()))
    assert verdict == Verdict(
        Decision.ALLOWED, ("read-stack line 1",), "IAM's policy simulator (SimulatePrincipalPolicy)"
    )


# --- global's code, and the plan --------------------------------------------------------------


def plan(*policies: tuple[str, dict[str, Any], str], role: str = ROLE) -> PlanResult:
    """A targeted plan of global holding ``role`` and its inline policies (Terraform's resource name,
    the document after the apply, the plan's action); each policy is named as the module names it."""
    module = "module.github_oidc[0]"
    changes: list[dict[str, Any]] = [
        {"address": f"{module}.aws_iam_role.deploy", "mode": "managed", "type": "aws_iam_role",
         "change": {"actions": ["no-op"], "after": {"name": role}}},
    ]  # fmt: skip
    changes += [
        {"address": f"{module}.aws_iam_role_policy.{name}", "mode": "managed", "type": "aws_iam_role_policy",
         "change": {"actions": [verb], "after": {"name": f"{name}-stack", "role": role,
                                                 "policy": json.dumps(document)}}}
        for name, document, verb in policies
    ]  # fmt: skip
    listed = [ResourceChange(c["address"], tuple(c["change"]["actions"])) for c in changes[1:]]
    listed = [c for c in listed if c.action != "no-op"]
    return PlanResult(2 if listed else 0, listed, [], None, read_raw=lambda: {"resource_changes": changes})


def finding(live: dict[str, Any], code: PlanResult) -> AccessFinding:
    """What inspect finds, from policy documents (no IAM, no Terraform)."""
    denial = access_denied.parse(sandbox_message())
    request = access_denied.request_for(denial.action, None, "us-east-1")
    judged = access_denied.evaluate_policies({"read-stack": live}, request, "test")
    policies = access_denied.code_policies(code, ROLE)
    grants = None if policies is None else access_denied.evaluate_policies(policies, request, "code")
    drifted = tuple(c.address for c in code.changes)
    return AccessFinding(denial, ROLE, judged, grants, drifted, code)


GLOBAL = cast(Stack, object())  # actions() only hands it to the apply it plans


def test_a_hand_edit_is_named_and_the_code_applied() -> None:
    found = finding(WITHOUT_IT, plan(("read", READ_STACK, "update")))
    policy = "module.github_oidc[0].aws_iam_role_policy.read"
    assert str(found).startswith(
        f"{ACTION} is denied to role {ROLE}: no statement of its policies allows it; global's code grants "
        "it in statement DescribeStack of read-stack: the policy in IAM was changed by hand (the targeted "
        f"plan changes {policy})"
    )
    [apply] = access_denied.actions(GLOBAL, found)
    assert apply.description == f"terraform apply -target=module.github_oidc on global (update {policy})"


def test_an_action_the_code_does_not_grant_is_not_applied_and_the_file_named() -> None:
    found = finding(WITHOUT_IT, plan(("read", WITHOUT_IT, "no-op")))
    assert "global's code does not grant it either (terraform/modules/github_oidc/main.tf)" in str(found)
    with pytest.raises(RunbookError, match="does not grant") as refused:
        access_denied.actions(GLOBAL, found)
    assert "terraform/modules/github_oidc/main.tf" in str(refused.value.hint)


def test_nothing_to_do_when_allowed_and_a_role_outside_the_module_is_refused() -> None:
    allowed = finding(READ_STACK, plan(("read", READ_STACK, "no-op")))
    assert str(allowed).startswith(f"{ACTION} is allowed to role {ROLE} now (by DescribeStack of read-stack)")
    assert access_denied.actions(GLOBAL, allowed) == []
    elsewhere = finding(WITHOUT_IT, plan(role="bglab-other"))
    assert elsewhere.code is None and "is not one of global's GitHub roles" in str(elsewhere)
    with pytest.raises(RunbookError, match="not one of global's GitHub roles"):
        access_denied.actions(GLOBAL, elsewhere)
