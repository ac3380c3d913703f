"""Every command a workflow's ``run:`` step may call (.github/workflows/), in one list.

tests/unit/test_workflows.py checks both ways: each ``run:`` step is one of these commands, each of
these is in a workflow, each labkit one parses against labkit's own command line, and each is run by
a test, which builds what it runs from the constant here (``STACK_DRIFT.args(env="staging")``) so
that the command a workflow calls and the one a test runs cannot drift apart.

A template is the command's words; ``{name}`` is a value the workflow passes in an environment
variable (``"$ENVIRONMENT"``) and the test as ``name=...``. A test may add options after the
template's words that make it fast on the sandbox (``--no-wait``), never change the template's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"^\{(\w+)\}$")


@dataclass(frozen=True)
class Command:
    """A command as a workflow writes it, with ``{name}`` placeholders."""

    template: str
    #: Where its test lives when it is not on this branch (None: a test here must run it).
    tested_elsewhere: str | None = None

    @property
    def words(self) -> list[str]:
        return self.template.split()

    @property
    def program(self) -> str:
        return self.words[0]

    @property
    def placeholders(self) -> list[str]:
        return [m.group(1) for w in self.words if (m := _PLACEHOLDER.match(w))]

    def argv(self, **values: str) -> list[str]:
        """The command's words with each ``{name}`` replaced by ``values[name]``."""
        missing = set(self.placeholders) - set(values)
        extra = set(values) - set(self.placeholders)
        if missing or extra:
            raise TypeError(f"{self.template}: missing {sorted(missing)}, unknown {sorted(extra)}")
        return [values[m.group(1)] if (m := _PLACEHOLDER.match(w)) else w for w in self.words]

    def args(self, **values: str) -> list[str]:
        """:meth:`argv` without the program: what ``labkit``'s CliRunner or ``python -m labkit`` takes."""
        return self.argv(**values)[1:]

    def matches(self, words: list[str]) -> bool:
        """Whether a run step's words (values as ``$VARIABLE``) are this command."""
        mine = self.words
        if len(words) != len(mine):
            return False
        return all(_PLACEHOLDER.match(m) is not None or m == w for m, w in zip(mine, words, strict=True))


MAKE_TEST = Command("make test")
MAKE_SETUP = Command("make setup")
MAKE_CHECK_TERRAFORM = Command("make check-terraform")

CI_CREDENTIALS = Command(
    "labkit ci credentials --role {role} --format github-env",
    tested_elsewhere="the OIDC branch of issue 14 (labkit/cli/ci.py and its tests)",
)
STACK_PLAN = Command("labkit stack plan {env} --out-file {plan}")
STACK_APPLY_PLAN = Command("labkit stack apply {env} --plan {plan}")
STACK_DRIFT = Command("labkit stack drift {env} --json")
RELEASE_BUILD = Command("labkit release build {version}")
RUNBOOK_DEPLOY = Command(
    "labkit runbook run deploy -p environment {env} -p version {version} -p dry_run false -p confirm {env}"
)
RUNBOOK_RUN = Command(
    "labkit runbook run {runbook} -p environment {env} -p dry_run {dry_run} -p confirm {confirm}"
)

GITHUB_DEPLOYMENT_CREATE = Command("labkit github deployment create {env} --ref {ref}")
GITHUB_DEPLOYMENT_STATUS = Command("labkit github deployment status {deployment_id} {state}")
GITHUB_DRIFT_ISSUE = Command("labkit github drift-issue {report}")
GITHUB_PLAN_RUN = Command("labkit github plan-run --commit {commit}")
GITHUB_PLAN_SUMMARY = Command("labkit github plan-summary {plan} --output {output}")
NOTIFY_DEPLOY = Command("labkit notify deploy {env} {version} --outcome {outcome} --save {save}")

#: name -> command, for the checks.
ALL: dict[str, Command] = {name: value for name, value in globals().items() if isinstance(value, Command)}
