"""The identity drills on the drills' stack: each injected through the IAM API as a careless change
or a leak would be, recovered by its runbook run with papermill, and verified with checks the
runbook did not write (the deploy job's assume-role, the provider and role read back through the IAM
API; a call signed with the leaked key, the drill user's keys read back).

global is applied once with a repository, so it has the OIDC provider (for the sandbox's issuer)
and the deploy role, with the same variables as test_identity_deploy.py; the module leaves them as
their code says. The sandbox's IAM enforcement is not needed here: STS validates web identity
tokens whether or not it is on; the credential leak needs it, and its test puts back what it found.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner, Result

from labkit import sandbox
from labkit.cli import app
from labkit.errors import WebIdentityRejected
from labkit.identity.github import STS_AUDIENCE
from labkit.infra.stack import Stack
from labkit.lab.ci_identity import github_variables
from labkit.ops import oidc_trust
from labkit.ops.drills import credential_leak, deploy_role_deleted, oidc_misconfigured
from labkit.ops.execute import RunbookRun, run_runbook
from labkit.ops.leaks import read_env_file
from labkit.target import Credentials, Target
from tests.conftest import DrillsStack
from tests.workflow_commands import CI_CREDENTIALS

pytestmark = pytest.mark.integration

REPOSITORY = "acme/bluegreen-lab"
SUBJECT = f"repo:{REPOSITORY}:environment:staging"


@pytest.fixture(scope="module")
def global_stack(drills_stack: DrillsStack) -> Iterator[Stack]:
    """global with the GitHub OIDC provider and deploy role; afterwards as its code says."""
    target = drills_stack.target
    variables = github_variables(target, SUBJECT)
    stack = Stack("global", target)
    stack.apply(variables)
    yield stack
    # Only when a test failed halfway: put the provider and the trust back for the tests after this.
    if not oidc_misconfigured.deploy_job_assumes(target)[0]:
        stack.apply(targets=["module.github_oidc"])  # the GitHub settings as applied above


def run(target: Target, tmp_path: Path, **parameters: Any) -> RunbookRun:
    return run_runbook("fix-oidc-trust", target, {"environment": "global", **parameters}, out_root=tmp_path)


def provider_and_trust(target: Target, facts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    iam = target.client("iam")
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=facts["provider_arn"])
    role = iam.get_role(RoleName=facts["role_arn"].rsplit("/", 1)[-1])["Role"]
    return (
        {"ClientIDList": provider["ClientIDList"], "ThumbprintList": provider["ThumbprintList"]},
        role["AssumeRolePolicyDocument"],
    )


#: What each variant's refusal says (AWS's messages) and what the runbook's diagnosis names.
EXPECTED = {
    "wrong-audience": ("InvalidIdentityToken: Incorrect token audience", "not among the provider's audience"),
    "wrong-thumbprint": ("doesn't match configured thumbprint", "not among the provider's thumbprints"),
    "wrong-branch": (
        "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity",
        f"admits ['repo:{REPOSITORY}:ref:refs/heads/develop']; the token's sub is '{SUBJECT}'",
    ),
}


def assert_as_code_says(target: Target, facts: dict[str, Any]) -> None:
    """The provider and the trust read back through IAM, and the deploy job's assume-role."""
    provider, trust = provider_and_trust(target, facts)
    assert provider["ClientIDList"] == [STS_AUDIENCE]
    assert provider["ThumbprintList"] == [sandbox.oidc_issuer(target).thumbprint]
    conditions = trust["Statement"][0]["Condition"]["StringEquals"]
    assert [v for k, v in conditions.items() if k.endswith(":sub")] == [SUBJECT]
    assert oidc_misconfigured.deploy_job_assumes(target)[0]


def deploy_job_credentials(global_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    """The deploy workflow's credentials step, as a job of the staging environment runs it: its
    ID token request URL is the sandbox issuer's, for REPOSITORY's staging environment."""
    served_at = sandbox.oidc_issuer(global_stack.target).served_at
    query = urlencode({"repository": REPOSITORY, "environment": "staging"})
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", f"{served_at}/token?{query}")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "bearer")
    monkeypatch.setenv("GITHUB_ENV", str(tmp_path / "github-env"))
    role = str(global_stack.outputs()["github_deploy_role_arn"])
    return CliRunner().invoke(app, ["--target", "sandbox", *CI_CREDENTIALS.args(role=role)])


def test_a_trust_for_the_wrong_branch_refuses_the_deploy_job_until_fix_oidc_trust(
    global_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = global_stack.target
    refused, named = EXPECTED["wrong-branch"]
    facts = oidc_misconfigured.inject(target, "staging", variant="wrong-branch")
    assert refused in facts["refused"]
    job = deploy_job_credentials(global_stack, tmp_path, monkeypatch)
    assert job.exit_code == 1 and isinstance(job.exception, WebIdentityRejected), job.output
    assert refused in job.exception.message
    broken = provider_and_trust(target, facts)

    dry = run(target, tmp_path)
    assert dry.ok and dry.record.outcome == "planned", dry.error
    diagnosis = next(s.detail for s in dry.record.steps if s.section == "diagnose")
    assert named in diagnosis
    assert provider_and_trust(target, facts) == broken  # the dry run changed nothing

    fixed = run(target, tmp_path, dry_run=False, confirm="global")
    assert fixed.ok and fixed.record.outcome == "recovered", fixed.error
    assert_as_code_says(target, facts)
    job = deploy_job_credentials(global_stack, tmp_path, monkeypatch)
    assert job.exit_code == 0, job.output
    assert "AWS_SESSION_TOKEN=" in (tmp_path / "github-env").read_text()


@pytest.mark.parametrize("variant", ["wrong-audience", "wrong-thumbprint"])
def test_a_misconfigured_oidc_provider_is_named_and_restored(global_stack: Stack, variant: str) -> None:
    """The same recovery through the functions the runbook's cells call (no kernel)."""
    target = global_stack.target
    refused, named = EXPECTED[variant]
    facts = oidc_misconfigured.inject(target, "staging", variant=variant)
    assert refused in facts["refused"]
    finding = oidc_trust.inspect(global_stack)
    assert not finding.ok and any(named in m for m in finding.mismatches), finding
    assert finding.refusal is not None and refused in finding.refusal
    for action in oidc_trust.actions(global_stack, finding):
        action.run()
    assert_as_code_says(target, facts)
    assert oidc_trust.inspect(global_stack).ok


def test_a_deleted_deploy_role_fails_the_doctor_and_is_applied_again(
    global_stack: Stack, tmp_path: Path
) -> None:
    target = global_stack.target
    facts = deploy_role_deleted.inject(target, "staging")
    ok, detail = deploy_role_deleted.doctor_passes(target, "staging")
    assert not ok and "is missing from IAM (NoSuchEntity)" in detail
    assert not oidc_misconfigured.deploy_job_assumes(target)[0]

    fixed = run(target, tmp_path, dry_run=False, confirm="global")
    assert fixed.ok and fixed.record.outcome == "recovered", fixed.error
    diagnosis = next(s.detail for s in fixed.record.steps if s.section == "diagnose")
    assert f"the role {facts['role']} does not exist" in diagnosis
    iam = target.client("iam")
    assert sorted(iam.list_role_policies(RoleName=facts["role"])["PolicyNames"]) == sorted(
        facts["inline_policies"]
    )
    assert deploy_role_deleted.doctor_passes(target, "staging")[0]
    assert oidc_misconfigured.deploy_job_assumes(target)[0]


# -- credential-leak ---------------------------------------------------------------------------


def test_a_leaked_key_is_disabled_its_calls_listed_and_rotated(
    drills_stack: DrillsStack, tmp_path: Path
) -> None:
    target = drills_stack.target
    previous = sandbox.set_iam_enforced(target, True)
    try:
        facts = credential_leak.inject(target, "staging")
        env_file = Path(facts["env_file"])
        leaked = read_env_file(env_file)
        assert leaked["AWS_ACCESS_KEY_ID"] == facts["access_key_id"]
        parameters = {"access_key_id": facts["access_key_id"], "env_file": str(env_file)}

        dry = run_runbook(
            "credential-leak", target, {"environment": "staging", **parameters}, out_root=tmp_path
        )
        assert dry.ok and dry.record.outcome == "planned", dry.error
        diagnosis = next(s.detail for s in dry.record.steps if s.section == "diagnose")
        # S3's ListBuckets under its IAM action's name, as the sandbox's authorization sees it
        assert "3 call(s) since: GetCallerIdentity, ListAllMyBuckets, ListUsers (AccessDenied)" in diagnosis
        assert read_env_file(env_file) == leaked  # the dry run changed nothing
        assert not credential_leak.leaked_key_disabled(target, "staging")[0]

        fixed = run_runbook(
            "credential-leak",
            target,
            {"environment": "staging", "dry_run": False, "confirm": "staging", **parameters},
            out_root=tmp_path,
        )
        assert fixed.ok and fixed.record.outcome == "recovered", fixed.error
        old = target.as_identity(Credentials(leaked["AWS_ACCESS_KEY_ID"], leaked["AWS_SECRET_ACCESS_KEY"]))
        # The call it made before, refused as S3 refuses an inactive key (the runbook asked STS).
        with pytest.raises(ClientError, match="InvalidAccessKeyId"):
            old.client("s3").list_buckets()
        new = read_env_file(env_file)
        assert new["AWS_ACCESS_KEY_ID"] != leaked["AWS_ACCESS_KEY_ID"]
        as_new = target.as_identity(Credentials(new["AWS_ACCESS_KEY_ID"], new["AWS_SECRET_ACCESS_KEY"]))
        assert as_new.client("sts").get_caller_identity()["Arn"].endswith(f":user/{facts['user']}")
        assert credential_leak.leaked_key_disabled(target, "staging")[0]

        again = run_runbook(
            "credential-leak",
            target,
            {"environment": "staging", "dry_run": False, "confirm": "staging", **parameters},
            out_root=tmp_path,
        )
        assert again.ok and again.record.outcome == "nothing-to-do", again.error
    finally:
        sandbox.set_iam_enforced(target, previous)
