"""IAM policy evaluation (labkit.identity.policy): AWS's rules for what the sandbox enforces."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.identity.policy import Decision, Request, evaluate, needed_statements


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


ALLOW_TABLE = {
    "Effect": "Allow",
    "Action": "dynamodb:PutItem",
    "Resource": "arn:aws:dynamodb:us-east-1:1:table/t",
}


def test_allow_deny_and_implicit_deny() -> None:
    allow = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    deny = policy({"Effect": "Deny", "Action": "s3:*", "Resource": "*"})
    assert evaluate([allow], Request("s3:GetObject")) is Decision.ALLOWED
    assert evaluate([allow], Request("s3:PutObject")) is Decision.IMPLICIT_DENY
    assert evaluate([allow, deny], Request("s3:GetObject")) is Decision.EXPLICIT_DENY
    assert evaluate([], Request("s3:GetObject")) is Decision.IMPLICIT_DENY


def test_actions_match_case_insensitively_with_wildcards_and_not_action() -> None:
    assert evaluate([policy({"Effect": "Allow", "Action": "EC2:Describe*", "Resource": "*"})],
                    Request("ec2:DescribeVpcs")) is Decision.ALLOWED  # fmt: skip
    assert evaluate([policy({"Effect": "Allow", "Action": "ec2:Describe?pcs", "Resource": "*"})],
                    Request("ec2:DescribeVpcs")) is Decision.ALLOWED  # fmt: skip
    not_iam = policy({"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"})
    assert evaluate([not_iam], Request("ec2:RunInstances")) is Decision.ALLOWED
    assert evaluate([not_iam], Request("iam:CreateUser")) is Decision.IMPLICIT_DENY


def test_resources_match_and_an_unknown_resource_favours_allow_only() -> None:
    table = "arn:aws:dynamodb:us-east-1:1:table/t"
    assert evaluate([policy(ALLOW_TABLE)], Request("dynamodb:PutItem", table)) is Decision.ALLOWED
    assert evaluate([policy(ALLOW_TABLE)], Request("dynamodb:PutItem", table + "2")) is Decision.IMPLICIT_DENY
    assert evaluate([policy(ALLOW_TABLE)], Request("dynamodb:PutItem", None)) is Decision.ALLOWED
    narrow_deny = {**ALLOW_TABLE, "Effect": "Deny"}
    full = {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}
    assert evaluate([policy(full, narrow_deny)], Request("dynamodb:PutItem", None)) is Decision.ALLOWED
    assert evaluate([policy(full, narrow_deny)], Request("dynamodb:PutItem", table)) is Decision.EXPLICIT_DENY
    not_resource = {"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret/*"}
    assert (
        evaluate([policy(not_resource)], Request("s3:GetObject", "arn:aws:s3:::secret/k"))
        is Decision.IMPLICIT_DENY
    )
    assert (
        evaluate([policy(not_resource)], Request("s3:GetObject", "arn:aws:s3:::open/k")) is Decision.ALLOWED
    )


def _with_condition(condition: dict[str, Any]) -> dict[str, Any]:
    return policy({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*", "Condition": condition})


@pytest.mark.parametrize(
    ("condition", "context", "allowed"),
    [
        (
            {"StringEquals": {"aws:RequestedRegion": "us-east-1"}},
            {"aws:requestedregion": ["us-east-1"]},
            True,
        ),
        (
            {"StringEquals": {"aws:RequestedRegion": "us-east-1"}},
            {"aws:requestedregion": ["eu-west-1"]},
            False,
        ),
        ({"StringEquals": {"aws:RequestedRegion": "us-east-1"}}, {}, False),  # absent: a positive test fails
        ({"StringNotEquals": {"aws:RequestedRegion": "us-east-1"}}, {}, True),  # ...a negated one holds
        ({"StringEqualsIfExists": {"aws:RequestedRegion": "us-east-1"}}, {}, True),
        ({"StringLike": {"s3:prefix": ["staging/*"]}}, {"s3:prefix": ["staging/x"]}, True),
        ({"StringLike": {"s3:prefix": ["staging/*"]}}, {"s3:prefix": ["production/x"]}, False),
        ({"StringNotLike": {"s3:prefix": ["staging/*"]}}, {"s3:prefix": ["production/x"]}, True),
        ({"StringEqualsIgnoreCase": {"s3:prefix": "ABC"}}, {"s3:prefix": ["abc"]}, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:securetransport": ["false"]}, True),
        ({"Null": {"s3:prefix": "true"}}, {}, True),
        ({"Null": {"s3:prefix": "true"}}, {"s3:prefix": ["x"]}, False),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:tagkeys": ["a", "b"]}, True),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:tagkeys": ["a", "c"]}, False),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:tagkeys": ["c", "a"]}, True),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": ["5"]}, False),  # unknown operator
    ],
)
def test_conditions(condition: dict[str, Any], context: dict[str, list[str]], allowed: bool) -> None:
    decision = evaluate([_with_condition(condition)], Request("s3:ListBucket", "*", context))
    assert (decision is Decision.ALLOWED) is allowed


def test_a_condition_on_a_key_the_caller_cannot_know_holds() -> None:
    condition = {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    knows_region_only = Request("s3:ListBucket", "*", {}, knows=lambda key: key == "aws:requestedregion")
    assert evaluate([_with_condition(condition)], knows_region_only) is Decision.ALLOWED
    assert evaluate([_with_condition(condition)], Request("s3:ListBucket", "*", {})) is Decision.IMPLICIT_DENY


def test_trust_policy_principals() -> None:
    provider = "arn:aws:iam::1:oidc-provider/issuer.example"
    trust = policy({"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
                    "Principal": {"Federated": provider}})  # fmt: skip
    ask = "sts:AssumeRoleWithWebIdentity"
    assert evaluate([trust], Request(ask, None, principal={"Federated": [provider]})) is Decision.ALLOWED
    assert (
        evaluate([trust], Request(ask, None, principal={"Federated": [provider + "x"]}))
        is Decision.IMPLICIT_DENY
    )
    assert evaluate([trust], Request(ask, None, principal={"AWS": [provider]})) is Decision.IMPLICIT_DENY
    anyone = policy({"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": "*"})
    assert evaluate([anyone], Request("sts:AssumeRole", None, principal={"AWS": ["x"]})) is Decision.ALLOWED


def test_policy_text_and_a_single_statement_object() -> None:
    text = '{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "sts:*", "Resource": "*"}}'
    assert evaluate([text], Request("sts:GetSessionToken")) is Decision.ALLOWED


def test_a_statement_is_needed_by_the_requests_that_only_it_allows() -> None:
    state = {"Sid": "State", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": "arn:aws:s3:::states/*"}  # fmt: skip
    releases = {
        "Sid": "Releases",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::rel/*",
    }
    broad = {"Sid": "Broad", "Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}
    guard = {"Sid": "Guard", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
    put_state = Request("s3:PutObject", "arn:aws:s3:::states/a")
    get_state = Request("s3:GetObject", "arn:aws:s3:::states/a")
    get_release = Request("s3:GetObject", "arn:aws:s3:::rel/1.0.0.zip")
    denied = Request("s3:ListBucket", "arn:aws:s3:::states")

    needed = needed_statements(
        [policy(state, releases)], [put_state, get_state, get_release, denied, get_state]
    )
    assert needed == {"State": [put_state, get_state], "Releases": [get_release]}

    # A broader statement covers the narrower ones: removing either alone breaks nothing it reads.
    # A Deny is never "needed"; statements without a Sid are named by their place.
    unnamed = {k: v for k, v in broad.items() if k != "Sid"}
    needed = needed_statements([policy(state, releases), policy(unnamed, guard)], [get_state, get_release])
    assert needed == {"State": [], "Releases": [], "#1.0": []}
    assert needed_statements([policy(state)], []) == {"State": []}
