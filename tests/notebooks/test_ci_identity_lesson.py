"""11-ci-cd-and-identity, executed the way `make lab` runs it after 10: `labkit run` on a sandbox
with nothing built, in a private LABKIT_HOME.

The lesson applies global with the OIDC provider and roles, exchanges a deploy job's token for the
deploy role's credentials, sees a feature branch's token refused at assume-role and the read-only
plan role refused a write with IAM enforced, and tears global down. Each step asserts its own
result in the notebook; this test checks the run passed and what it printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.settings import PROJECT_ROOT
from tests.notebooks.lessons import run_lesson

pytestmark = pytest.mark.integration

LESSON = PROJECT_ROOT / "notebooks" / "11-ci-cd-and-identity.ipynb"
RUN_TIMEOUT_S = 15 * 60


def test_the_ci_and_identity_lesson_runs_headless_from_an_empty_sandbox(tmp_path: Path) -> None:
    _, printed = run_lesson(LESSON, tmp_path, timeout_s=RUN_TIMEOUT_S)
    assert ":assumed-role/bglab-staging-deploy/lesson-11" in printed
    assert "refused: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity" in printed
    assert "refused: AccessDeniedException: User: arn:aws:sts::" in printed  # DynamoDB's own format
    assert "repo:acme/bluegreen-lab:environment:staging" in printed  # the token's sub and the trust policy's
    assert "global removed" in printed
