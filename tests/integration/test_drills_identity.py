"""The identity drills on the drills' stack: each injected through the IAM API as a careless change
would be, recovered by its runbook run with papermill, and verified with checks the runbook did not
write (the deploy job's assume-role, the provider and role read back through the IAM API).

global is applied once with a repository, so it has the OIDC provider (for the sandbox's issuer)
and the deploy role, with the same variables as test_identity_deploy.py; the module leaves them as
their code says. The sandbox's IAM enforcement is not needed here: STS validates web identity
tokens whether or not it is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit import sandbox
from labkit.identity.github import STS_AUDIENCE
from labkit.infra.stack import Stack
from labkit.ops.drills import oidc_misconfigured
from labkit.ops.execute import RunbookRun, run_runbook
from labkit.target import Target
from tests.conftest import DrillsStack

pytestmark = pytest.mark.integration

REPOSITORY = "acme/bluegreen-lab"
SUBJECT = f"repo:{REPOSITORY}:environment:staging"


@pytest.fixture(scope="module")
def global_stack(drills_stack: DrillsStack) -> Iterator[Stack]:
    """global with the GitHub OIDC provider and deploy role; afterwards as its code says."""
    target = drills_stack.target
    issuer = sandbox.oidc_issuer(target)
    variables = {
        "github_repository": REPOSITORY,
        "github_oidc_issuer_url": issuer.url,
        "github_oidc_thumbprints": [issuer.thumbprint],
    }
    stack = Stack("global", target)
    stack.apply(variables)
    yield stack
    # Only when a test failed halfway: put the provider and the trust back for the tests after this.
    if not oidc_misconfigured.deploy_job_assumes(target)[0]:
        stack.apply(variables, targets=["module.github_oidc"])


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


@pytest.mark.parametrize("variant", list(EXPECTED))
def test_a_misconfigured_oidc_trust_is_named_and_restored(
    global_stack: Stack, variant: str, tmp_path: Path
) -> None:
    target = global_stack.target
    refused, named = EXPECTED[variant]
    facts = oidc_misconfigured.inject(target, "staging", variant=variant)
    assert refused in facts["refused"]
    broken = provider_and_trust(target, facts)

    dry = run(target, tmp_path)
    assert dry.ok and dry.record.outcome == "planned", dry.error
    diagnosis = next(s.detail for s in dry.record.steps if s.section == "diagnose")
    assert named in diagnosis
    assert provider_and_trust(target, facts) == broken  # the dry run changed nothing

    fixed = run(target, tmp_path, dry_run=False, confirm="global")
    assert fixed.ok and fixed.record.outcome == "recovered", fixed.error
    provider, trust = provider_and_trust(target, facts)
    assert provider["ClientIDList"] == [STS_AUDIENCE]
    assert provider["ThumbprintList"] == [sandbox.oidc_issuer(target).thumbprint]
    conditions = trust["Statement"][0]["Condition"]["StringEquals"]
    assert [v for k, v in conditions.items() if k.endswith(":sub")] == [SUBJECT]
    assert oidc_misconfigured.deploy_job_assumes(target)[0]
