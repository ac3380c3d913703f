"""The GitHub Actions workflows are thin shells over commands the test suite runs.

Each ``run:`` step is one command of tests/workflow_commands.py; each listed command is in a workflow,
parses against labkit's own command line (or is a make target that is the suite or part of it), and
is run by a test that builds it from the list. Actions are pinned by commit SHA, permissions are
per job, and ``id-token: write`` is given exactly to the jobs that assume a role.
"""

from __future__ import annotations

import ast
import functools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from labkit.cli import app
from labkit.cli.run import parse_parameter_args
from labkit.settings import PROJECT_ROOT
from tests import workflow_commands
from tests.workflow_commands import ALL, CI_CREDENTIALS

WORKFLOWS = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
TESTS = PROJECT_ROOT / "tests"
#: The files that name the commands without running them.
NOT_RUNNERS = {Path(__file__).resolve(), Path(workflow_commands.__file__).resolve()}
#: What a run step may write its output to (GitHub's step files) besides a file of its own.
_REDIRECTS = {">", ">>"}
#: A value for each placeholder, to parse a command as labkit's command line would.
SAMPLES = {
    "env": "staging", "plan": "plans/staging.tfplan", "version": "1.2.3", "runbook": "restore-state",
    "dry_run": "true", "confirm": "staging", "role": "arn:aws:iam::123456789012:role/plan",
    "ref": "0" * 40, "commit": "0" * 40, "deployment_id": "7", "state": "success",
    "report": "drift-staging.json", "output": "plan-staging.txt", "outcome": "success",
    "save": "deploy/notification.json",
}  # fmt: skip


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), path
    # YAML 1.1 reads the key `on` as true.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in WORKFLOWS:
        for job_id, job in load(path)["jobs"].items():
            yield path.name, job_id, job


def run_steps() -> list[tuple[str, str, str]]:
    return [(wf, job_id, step["run"]) for wf, job_id, job in jobs() for step in job["steps"] if "run" in step]


def words_of(run: str) -> list[str]:
    """The command of a run step: one line, its output at most redirected to a file, no shell logic;
    ``.venv/bin/labkit`` is ``labkit``."""
    assert "\n" not in run.strip(), f"one command per step, not a script: {run!r}"
    assert "${{" not in run, f"values come in through env:, never expanded into the script: {run!r}"
    assert not re.search(r"[|;&`<]|\$\(", run), f"no pipes, lists, substitutions or input: {run!r}"
    words = shlex.split(run)
    if len(words) > 2 and words[-2] in _REDIRECTS:
        words = words[:-2]
    assert not _REDIRECTS & set(words), f"one redirection, at the end: {run!r}"
    if words and words[0] == ".venv/bin/labkit":
        words[0] = "labkit"
    return words


def test_the_workflows_are_there() -> None:
    names = {path.name for path in WORKFLOWS}
    assert {"ci.yml", "terraform.yml", "deploy.yml", "drift.yml", "runbook.yml", "pages.yml"} <= names
    assert len(run_steps()) >= 20


@pytest.mark.parametrize(("workflow", "job", "run"), run_steps())
def test_each_run_step_is_one_listed_command(workflow: str, job: str, run: str) -> None:
    words = words_of(run)
    found = [name for name, command in ALL.items() if command.matches(words)]
    assert len(found) == 1, (
        f"{workflow} {job}: {run!r} is {found or 'no command'} of tests/workflow_commands.py"
    )


def test_each_listed_command_is_in_a_workflow() -> None:
    used = {
        name for _, _, run in run_steps() for name, command in ALL.items() if command.matches(words_of(run))
    }
    assert set(ALL) - used == set(), "listed but in no workflow: drop them from tests/workflow_commands.py"


# -- the labkit commands parse, and a test runs each -------------------------------------------


LABKIT = {name: command for name, command in ALL.items() if command.program == "labkit"}


def _subcommands(command: Any) -> dict[str, Any]:
    """A group's subcommands by name ({} for a command). typer vendors its own click, whose group
    is no ``click.Group``: read its ``commands``."""
    found = getattr(command, "commands", None)
    return found if isinstance(found, dict) else {}


@pytest.mark.parametrize("name", sorted(LABKIT))
def test_each_labkit_command_parses(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command with sample values parses as labkit's CLI would: every subcommand, option and
    argument exists, values pass their checks. The workflows set LABKIT_RUN_URL for the commands
    that read it."""
    command = LABKIT[name]
    monkeypatch.setenv("LABKIT_RUN_URL", "https://github.com/o/r/actions/runs/1")
    current: Any = typer.main.get_command(app)
    rest = command.args(**{p: SAMPLES[p] for p in command.placeholders})
    path = ["labkit"]
    while subcommands := _subcommands(current):
        if not (rest and rest[0] in subcommands):
            # A group may route by itself: `labkit deploy ENV VERSION` is `labkit deploy start ...`.
            routed = current.make_context(" ".join(path), list(rest))
            rest = [*getattr(routed, "_protected_args", []), *routed.args]  # click 8.2: the subcommand
            assert rest and rest[0] in subcommands, f"{' '.join(path)} has no command {rest[:1]}"
        path.append(rest[0])
        current = subcommands[rest.pop(0)]
    context = current.make_context(" ".join(path), list(rest))
    assert context.params, command.template
    if context.args:  # only a command that takes -p NAME VALUE pairs keeps extra arguments
        assert current.context_settings.get("allow_extra_args"), f"{command.template}: {context.args}"
        assert parse_parameter_args(context.args), command.template


def _runs(tree: ast.AST, constant: str) -> bool:
    """Whether ``tree`` calls ``CONSTANT.argv(...)`` or ``CONSTANT.args(...)`` inside a function."""
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("argv", "args")
                and isinstance(node.func.value, ast.Name | ast.Attribute)
                and (getattr(node.func.value, "id", None) or getattr(node.func.value, "attr", None))
                == constant
            ):
                return True
    return False


def _imports(tree: ast.AST, constant: str) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "tests.workflow_commands"
        and any(alias.name == constant for alias in node.names)
        for node in ast.walk(tree)
    )


@functools.cache
def _test_trees() -> list[tuple[Path, ast.AST]]:
    """Every test module but those that only name the commands, parsed once."""
    paths = sorted(p for p in TESTS.rglob("test_*.py") if p.resolve() not in NOT_RUNNERS)
    return [(p.relative_to(PROJECT_ROOT), ast.parse(p.read_text())) for p in paths]


@pytest.mark.parametrize("name", sorted(LABKIT))
def test_each_labkit_command_is_run_by_a_test(name: str) -> None:
    """A test builds the command it runs from the list: a changed workflow command changes what the
    test runs (and fails it, if the command no longer works)."""
    command = LABKIT[name]
    runners = [path for path, tree in _test_trees() if _imports(tree, name) and _runs(tree, name)]
    assert runners, f"no test runs {command.template} ({name}.argv/args from tests/workflow_commands.py)"


# -- the make commands are the suite ------------------------------------------------------------


def _makefile_rules() -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines), for the Makefile's plain rules."""
    rules: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for line in (PROJECT_ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip())
            continue
        match = re.match(r"^([\w.$()/-]+):(?!=)\s*(.*)$", line)
        if match:
            current = []
            rules[match.group(1)] = (match.group(2).split(), current)
        elif line.strip() and not line.startswith("#"):
            current = None
    return rules


def _prerequisites(rules: dict[str, tuple[list[str], list[str]]], target: str) -> set[str]:
    """What ``make target`` makes first: its prerequisites, and the targets a ``$(MAKE)`` line of
    its recipe makes (``make test`` runs its checks side by side that way), recursively."""
    seen: set[str] = set()
    todo = [target]
    while todo:
        prerequisites, recipe = rules.get(todo.pop(), ([], []))
        submade = [
            word
            for line in recipe
            if line.startswith("$(MAKE) ")
            for word in line.split()[1:]
            if not word.startswith("-")
        ]
        for prerequisite in [*prerequisites, *submade]:
            if prerequisite not in seen:
                seen.add(prerequisite)
                todo.append(prerequisite)
    return seen


@pytest.mark.parametrize("name", sorted(n for n, c in ALL.items() if c.program == "make"))
def test_each_make_command_is_the_suite_or_part_of_it(name: str) -> None:
    """`make test` is the suite; any other target is one `make test` runs first, or runs pytest on
    tests that the suite collects (its testpaths)."""
    command = ALL[name]
    assert len(command.words) == 2, command.template
    target = command.words[1]
    rules = _makefile_rules()
    assert target in rules, f"no rule for {target} in the Makefile"
    assert any(line.startswith("$(BIN)/pytest") for line in rules["test"][1])
    if target == "test" or target in _prerequisites(rules, "test"):
        return
    recipe = rules[target][1]
    assert recipe and all(line.startswith("$(BIN)/pytest ") for line in recipe), recipe
    for line in recipe:
        paths = [word for word in line.split()[1:] if not word.startswith("-")]
        assert paths, line
        for path in paths:
            assert (PROJECT_ROOT / path).exists() and path.split("/")[0] == "tests", line


# -- pinning and permissions --------------------------------------------------------------------

_USES = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w.-]+)@(\S+)(?: # (v\d+\.\d+\.\d+))?\s*$")


def test_actions_are_pinned_by_commit_sha_with_their_version() -> None:
    pins: dict[str, set[tuple[str, str | None]]] = {}
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            if "uses:" not in line:
                continue
            match = _USES.match(line)
            assert match, f"{path.name}: {line.strip()}"
            action, ref, version = match.groups()
            assert re.fullmatch(r"[0-9a-f]{40}", ref) and version, f"{path.name}: {line.strip()}"
            pins.setdefault(action, set()).add((ref, version))
    assert {a: len(p) for a, p in pins.items()} == dict.fromkeys(pins, 1), f"one pin per action: {pins}"


def test_permissions_are_per_job_and_id_token_only_where_a_role_is_assumed() -> None:
    for path in WORKFLOWS:
        assert load(path)["permissions"] == {}, f"{path.name}: no workflow-wide permissions"
    for workflow, job_id, job in jobs():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict) and permissions.get("contents") == "read", (workflow, job_id)
        assumes = any(CI_CREDENTIALS.matches(words_of(s["run"])) for s in job["steps"] if "run" in s)
        # GitHub Pages' deploy action also proves its origin with the job's OIDC token (pages.yml).
        publishes = any(s.get("uses", "").startswith("actions/deploy-pages@") for s in job["steps"])
        oidc = permissions.get("id-token") == "write"
        assert oidc == (assumes or publishes), (workflow, job_id, permissions)
        assert set(permissions.values()) <= {"read", "write"}, (workflow, job_id)


def test_the_runbook_workflow_offers_every_runbook_and_dry_runs_by_default() -> None:
    from labkit.ops.execute import catalog

    inputs = load(PROJECT_ROOT / ".github" / "workflows" / "runbook.yml")["on"]["workflow_dispatch"]["inputs"]
    runbooks = catalog()
    # deploy needs the release deploy.yml builds (that workflow runs it); fix-oidc-trust,
    # credential-leak and diagnose-access-denied need an administrator, not the deploy role this
    # workflow assumes; db-restore's checks must reach the database, inside the VPC on AWS.
    elsewhere = {"deploy", "fix-oidc-trust", "credential-leak", "diagnose-access-denied", "db-restore"}
    assert inputs["runbook"]["options"] == sorted(r.name for r in runbooks if r.name not in elsewhere)
    assert elsewhere <= {r.name for r in runbooks}
    # The workflow passes these three to whichever runbook it runs.
    assert all({"environment", "dry_run", "confirm"} <= set(r.parameters) for r in runbooks)
    assert inputs["dry_run"] == {**inputs["dry_run"], "type": "boolean", "default": True}
    assert inputs["confirm"]["default"] == ""


def test_deploys_and_applies_hold_one_concurrency_group_per_environment() -> None:
    """A second deploy of an environment waits for the first; it never cancels one halfway."""
    for workflow, job_id, job in jobs():
        if (workflow, job_id) in {("deploy.yml", "deploy"), ("terraform.yml", "apply")}:
            group = job["concurrency"]["group"]
            assert job["concurrency"]["cancel-in-progress"] is False
            environment = job["environment"]
            assert environment.strip("${} ") in group, (workflow, group, environment)
