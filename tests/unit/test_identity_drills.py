"""The identity drills' pieces that need no stack: the OIDC trust diagnosis, the doctor's deploy-role
check, the sandbox's trail of calls, and the dotenv rotation (tests/integration/test_drills_identity.py
runs the drills themselves)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labkit.identity.webidentity import OidcProvider
from labkit.infra.stack import Stack
from labkit.lab.doctor import check_deploy_role
from labkit.ops import leaks, oidc_trust
from labkit.sandbox.server import trail
from labkit.target import Target

ISSUER = "localhost/labkit-sandbox/oidc"
PROVIDER = OidcProvider(
    f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}", ISSUER, ("sts.amazonaws.com",), ("ab" * 20,)
)
TRUST = oidc_trust.DeployTrust("arn:aws:iam::123456789012:role/bglab-staging-deploy", PROVIDER.arn, "")
SUBJECT = "repo:acme/lab:environment:staging"
CLAIMS = {"iss": f"https://{ISSUER}", "aud": "sts.amazonaws.com", "sub": SUBJECT}


def trust_policy(sub: str, aud: str = "sts.amazonaws.com", federated: str = PROVIDER.arn) -> str:
    """A trust policy as the github_oidc module writes it."""
    condition = {"StringEquals": {f"{ISSUER}:aud": aud, f"{ISSUER}:sub": sub}}
    statement = {
        "Effect": "Allow",
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Principal": {"Federated": federated},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [{**statement, "Condition": condition}]})


def compare(
    provider: OidcProvider | None = PROVIDER, policy: str | None = None, thumbprint: str = "ab" * 20
) -> list[str]:
    policy = trust_policy(SUBJECT) if policy is None else policy
    return oidc_trust.compare(CLAIMS, TRUST, provider, policy, issuer_thumbprint=thumbprint)


def test_a_trust_that_admits_the_token_has_no_mismatch() -> None:
    assert compare() == []


def test_each_misconfiguration_is_named() -> None:
    wrong_branch = compare(policy=trust_policy("repo:acme/lab:ref:refs/heads/develop"))
    assert wrong_branch == [
        f"the trust policy's StringEquals on {ISSUER}:sub admits ['repo:acme/lab:ref:refs/heads/develop']; "
        f"the token's sub is '{SUBJECT}'"
    ]
    audience = compare(
        provider=OidcProvider(PROVIDER.arn, ISSUER, ("https://github.com/acme",), PROVIDER.thumbprints)
    )
    assert audience == [
        "the token's aud ['sts.amazonaws.com'] is not among the provider's audiences (client ids) "
        "['https://github.com/acme']"
    ]
    assert compare(thumbprint="cd" * 20) == [
        f"the issuer's CA thumbprint {'cd' * 20} is not among the provider's thumbprints {['ab' * 20]}"
    ]
    assert compare(
        policy=trust_policy(SUBJECT, federated="arn:aws:iam::123456789012:oidc-provider/other")
    ) == [
        "the trust policy's Federated principal is ['arn:aws:iam::123456789012:oidc-provider/other'], "
        f"not {PROVIDER.arn}"
    ]
    missing = oidc_trust.compare(CLAIMS, TRUST, None, None, issuer_thumbprint=None)
    assert missing == [
        f"the OIDC provider {PROVIDER.arn} does not exist",
        "the role bglab-staging-deploy does not exist",
    ]


def test_the_doctor_fails_when_globals_deploy_role_is_gone(
    moto_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    iam = moto_target.client("iam")
    iam.create_role(RoleName="bglab-staging-deploy", AssumeRolePolicyDocument=trust_policy(SUBJECT))
    arn = "arn:aws:iam::123456789012:role/bglab-staging-deploy"
    monkeypatch.setattr(Stack, "outputs", lambda self: {"github_deploy_role_arn": arn})
    found = check_deploy_role(moto_target)
    assert found is not None and found.ok is True
    iam.delete_role(RoleName="bglab-staging-deploy")
    found = check_deploy_role(moto_target)
    assert found is not None and found.ok is False and "NoSuchEntity" in found.detail
    assert "fix-oidc-trust" in found.fix
    monkeypatch.setattr(Stack, "outputs", lambda self: {"github_deploy_role_arn": None})
    assert check_deploy_role(moto_target) is None


def test_the_trail_keeps_iam_keys_calls_and_filters_by_time() -> None:
    def call(key_id: str, operation: str, refusal: Any = None) -> None:
        request = SimpleNamespace(_get_action=lambda: operation)
        trail.record(request, SimpleNamespace(key_id=key_id, region="us-east-1", service="s3"), refusal)

    key = "AKIAUNITTESTTRAIL001"
    before = trail.events(key)
    call(key, "ListBuckets")
    call("test", "ListBuckets")  # the sandbox's admin: not recorded
    call(key, "ListUsers", SimpleNamespace(kind="denied"))
    recorded = trail.events(key)[len(before) :]
    assert [(e["eventName"], e["errorCode"]) for e in recorded] == [
        ("ListBuckets", None),
        ("ListUsers", "AccessDenied"),
    ]
    assert recorded[0]["eventSource"] == "s3.amazonaws.com" and recorded[0]["accessKeyId"] == key
    assert trail.events("test") == []
    assert trail.events(key, since="2999-01-01T00:00:00") == []


def test_a_rotated_key_replaces_the_leaked_one_in_the_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("APP=uploader\nexport AWS_ACCESS_KEY_ID='AKIAOLD'\nAWS_SECRET_ACCESS_KEY=old\n")
    assert leaks.read_env_file(env) == {
        "APP": "uploader",
        "AWS_ACCESS_KEY_ID": "AKIAOLD",
        "AWS_SECRET_ACCESS_KEY": "old",
    }
    leaks.write_key(env, "AKIANEW", "new")
    assert leaks.read_env_file(env) == {
        "APP": "uploader",
        "AWS_ACCESS_KEY_ID": "AKIANEW",
        "AWS_SECRET_ACCESS_KEY": "new",
    }
    assert env.stat().st_mode & 0o777 == 0o600
