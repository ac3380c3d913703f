"""The learning path, executed the way `make lab` runs it: `labkit run` on its own sandbox.

One run of notebooks 00 to 11 in the path's order (each builds on the ones before: 10 and 11 work on
the stack 08 leaves, then 09 tears it down), in a private LABKIT_HOME so it neither sees nor
disturbs the other tests' sandbox; it pauses after 06 while 03 runs again on its own, as a learner
going back would, and must refuse. Every notebook asserts its own checkpoints; this test checks
that the run passed all of them, left the executed copies and the figures, and that the parameters
given on the command line reached the notebooks that declare them. 12 builds staging with its
database from nothing after 09, so it runs in a test of its own (test_database_lesson.py) on
another worker: `make lab` runs the same thirteen notebooks.

Then the sandbox the lessons built and tore down restarts with nothing brought back (issue 19).
"""

from __future__ import annotations

import html
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labkit.lab.lesson import in_path_order
from labkit.settings import PROJECT_ROOT
from tests.conftest import wait_for
from tests.notebooks import lessons

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("notebooks")]

NOTEBOOKS = PROJECT_ROOT / "notebooks"
#: The path up to the teardown, in its order (00 to 08, 10, 11, 09); 12 builds what it needs itself.
PATH = in_path_order([p for p in NOTEBOOKS.glob("*.ipynb") if p.name < "12"])
#: The figures the lessons save (06 and 07 plot their deploys, 00 and 08 cost and the ledger).
FIGURES = {
    "00-staging-cost.png",
    "06-traffic.png",
    "06-timeline.png",
    "06-latency.png",
    "07-rollback-traffic.png",
    "07-rollback-timeline.png",
    "08-timeline.png",
    "08-durations.png",
    "08-dora.png",
    "08-cost.png",
}
#: A whole path run takes about 10 minutes on the 2-core CI machine.
RUN_TIMEOUT_S = 40 * 60


Run = tuple[Path, subprocess.CompletedProcess[str]]


def _cells(path: Path) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = json.loads(path.read_text())["cells"]
    return cells


#: Where the path stops for a learner's second run of earlier lessons (issue 16): 02 runs again (and
#: finds its network built), 03 refuses (applied, it would move traffic back to a parked color).
PAUSE_AFTER, AGAIN, RERUN = "06", "02-network.ipynb", "03-load-balancer.ipynb"


@dataclass(frozen=True)
class PathRun:
    """The path's run (its two halves' output joined: the one command `make lab` runs gives the same
    rows) and the second runs of earlier lessons made between them, each in a folder of its own."""

    out: Path
    proc: subprocess.CompletedProcess[str]
    again: subprocess.CompletedProcess[str]
    rerun: subprocess.CompletedProcess[str]
    work: Path  # the second runs' executed copies are in its again/ and rerun/


@pytest.fixture(scope="module")
def path_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PathRun]:
    work = tmp_path_factory.mktemp("learning-path")
    out = work / "run"
    halves = [work / "first", work / "then"]  # `labkit run` takes a folder: 00 to 06, then 07 on, linked
    for notebook in PATH:
        half = halves[0] if notebook.name[:2] <= PAUSE_AFTER else halves[1]
        half.mkdir(exist_ok=True)
        (half / notebook.name).symlink_to(notebook)
    env = {**os.environ, "LABKIT_HOME": str(work / "home")}
    env.pop("LABKIT_SANDBOX_HOME", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "labkit", "run", *args, "--quiet"]
        return subprocess.run(
            command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )

    try:
        first = run(str(halves[0]), "--out", str(out), "-p", "rate", "40")
        again = run(str(NOTEBOOKS / AGAIN), "--out", str(work / "again"))
        rerun = run(str(NOTEBOOKS / RERUN), "--out", str(work / "rerun"))  # refused: see its test
        then = run(str(halves[1]), "--out", str(out), "-p", "rate", "40") if first.returncode == 0 else first
        joined = subprocess.CompletedProcess(
            then.args, then.returncode, first.stdout + then.stdout, first.stderr + then.stderr
        )
        yield PathRun(out, joined if first.returncode == 0 else first, again, rerun, work)
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "sandbox", "down"], env=env, capture_output=True)


@pytest.fixture(scope="module")
def path_run(path_runs: PathRun) -> Run:
    return path_runs.out, path_runs.proc


def test_every_notebook_runs_headless_on_the_sandbox(path_run: Run) -> None:
    out, proc = path_run
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    sources = [p.name for p in PATH]
    assert [name[:2] for name in sources] == [*(f"{n:02d}" for n in range(9)), "10", "11", "09"]
    assert sorted(p.name for p in out.glob("*.ipynb")) == sorted(sources)
    ran = [m[1] for m in re.finditer(r"^\[\d+/\d+\] (\d\d-\S+\.ipynb)", proc.stdout, re.MULTILINE)]
    assert ran == sources, ran  # in the path's order, in both halves
    for name in sources:
        row = re.search(rf"^{re.escape(name)}\s+ok\s", proc.stdout, re.MULTILINE)
        assert row, f"{name}: no ok row in the summary"
        executed = _cells(out / name)
        code = [c for c in executed if c["cell_type"] == "code"]
        assert all(c["execution_count"] is not None for c in code), f"{name}: a cell did not run"
        errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
        assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"


def test_the_figures_are_saved_next_to_the_executed_notebooks(path_run: Run) -> None:
    out, proc = path_run
    assert proc.returncode == 0
    saved = {p.name: p.stat().st_size for p in out.glob("*.png")}
    assert set(saved) >= FIGURES, f"missing: {sorted(FIGURES - set(saved))}"
    assert all(size > 10_000 for size in saved.values()), saved  # a real figure, not an empty canvas
    assert f"executed copies: {out}" in proc.stdout and "figures (" in proc.stdout
    # And each figure a cell saved is also in that cell's output, inline.
    plotted = 0
    for executed in sorted(out.glob("*.ipynb")):
        for index, cell in enumerate(_cells(executed)):
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or "artifacts_dir()" not in source or ".png" not in source:
                continue  # 02 keeps its saved plan there too
            plotted += 1
            images = [o for o in cell["outputs"] if "image/png" in o.get("data", {})]
            assert images, f"{executed.name} cell {index} saved a figure but shows none"
    assert plotted >= len(FIGURES)


def test_earlier_lessons_run_again_after_06_pass_or_refuse_saying_what_to_do(path_runs: PathRun) -> None:
    """Issue 16: 02 run again after later lessons failed on its empty plan; now it applies nothing and
    passes. 03 run again after 06 failed its weight check; run again, 04 would send traffic to a color
    with no instances. Now each refuses before it applies, naming what changed and what to do."""
    assert path_runs.proc.returncode == 0
    again = path_runs.again
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    printed = "\n".join(_text(path_runs.work / "again" / AGAIN))
    assert "No changes: staging's network is already built" in printed, printed
    rerun = path_runs.rerun
    said = rerun.stdout + rerun.stderr
    assert rerun.returncode != 0, said
    assert f"{RERUN} failed at cell " in said, said
    assert "LessonOrderError: staging on sandbox has moved past 03-load-balancer" in said, said
    assert "green_weight is 100 (this lesson sets 0)" in said, said
    executed = _cells(path_runs.work / "rerun" / RERUN)
    (error,) = [o for c in executed for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert "Continue from the lesson after the last one you ran" in error["evalue"], error["evalue"]
    assert not any("applied staging" in line for line in _text(path_runs.work / "rerun" / RERUN))


def test_each_building_lesson_shows_its_plans_changes_as_a_table(path_run: Run) -> None:
    """Issue 16: 02 shows the plan it then applies; 01, 03, 04 and 05 the plan their apply made and
    carried out, one row per resource with its action, read from that apply's own output."""
    out, proc = path_run
    assert proc.returncode == 0
    wanted = {
        "01-state-backend.ipynb": ("state_backend", "aws_s3_bucket.state", "create"),
        "02-network.ipynb": ("environment.network", "aws_vpc.this", "create"),
        "03-load-balancer.ipynb": ("environment.alb", "aws_lb.this", "create"),
        "04-blue-fleet.ipynb": ('environment.fleet["blue"]', "aws_autoscaling_group.this", "create"),
        "05-green-release.ipynb": ('environment.fleet["green"]', "aws_autoscaling_group.this", "replace"),
    }
    for name, cells in wanted.items():
        tables = [
            html.unescape("".join(o["data"]["text/html"]))
            for c in _cells(out / name)
            if "changes_table(" in "".join(c["source"])
            for o in c["outputs"]
            if "text/html" in o.get("data", {})
        ]
        row = re.compile(r"\s*".join(f"<td>{re.escape(cell)}</td>" for cell in cells))
        assert len(tables) == 1 and row.search(tables[0]), (name, tables)


def test_the_teardown_counts_what_terraform_then_destroys(path_run: Run) -> None:
    """Issue 16: 09 said "destroying 10 resources" and Terraform destroyed 11 (the state bucket's
    encryption setting goes with the KMS key it names)."""
    out, proc = path_run
    assert proc.returncode == 0
    said = "\n".join(_text(out / "09-teardown.ipynb"))
    counted = re.search(r"^global: destroying (\d+) resources", said, re.MULTILINE)
    destroyed = re.search(r"^destroyed global: 0 added, 0 changed, (\d+) destroyed", said, re.MULTILINE)
    assert counted and destroyed and counted[1] == destroyed[1], said


def test_a_command_line_parameter_reaches_the_notebooks_that_declare_it(path_run: Run) -> None:
    out, proc = path_run
    assert proc.returncode == 0
    for name in ("06-traffic-shifting.ipynb", "07-automated-rollback.ipynb"):
        injected = [c for c in _cells(out / name) if "injected-parameters" in c["metadata"].get("tags", [])]
        assert len(injected) == 1 and "rate = 40" in "".join(injected[0]["source"])
    untouched = _cells(out / "04-blue-fleet.ipynb")
    assert not any("injected-parameters" in c["metadata"].get("tags", []) for c in untouched)


#: What Terraform says resource by resource (its `-json` messages' text): never in a cell.
RESOURCE_LINE = re.compile(
    r"^\S+: (Refreshing state|Refresh complete|Plan to \w+|Creating|Creation complete|Modifying|"
    r"Modifications complete|Destroying|Destruction complete|Still \w+ing)"
)
#: A Terraform command's closing line, which names its log.
FULL_LOG = re.compile(r" in \d+ s; full log: (\S+)$| after \d+ s.*; full log: (\S+)$")


def terraform_output(executed: Path) -> list[tuple[int, list[str], list[Path]]]:
    """For each code cell of an executed notebook that ran Terraform: its index, the lines of its
    text outputs, and the logs its closing lines name."""
    found = []
    for index, cell in enumerate(_cells(executed)):
        text = "".join(
            "".join(o["text"]) if o["output_type"] == "stream" else "".join(o["data"].get("text/plain", ""))
            for o in cell.get("outputs", [])
            if o["output_type"] in ("stream", "display_data")
        )
        lines = text.splitlines()
        logs = [Path(next(g for g in m.groups() if g)) for m in map(FULL_LOG.search, lines) if m]
        if logs or any(RESOURCE_LINE.match(line) for line in lines):
            found.append((index, lines, logs))
    return found


def test_terraform_shows_one_line_per_command_and_keeps_its_log_in_the_run_folder(path_run: Run) -> None:
    """Issues 16 and 17: Terraform's progress no longer floods the cells; the full log is a file."""
    out, proc = path_run
    assert proc.returncode == 0
    for name in (p.name for p in PATH):
        ran = terraform_output(out / name)
        for index, lines, logs in ran:
            where = f"{name} cell {index}"
            assert not [line for line in lines if RESOURCE_LINE.match(line)], f"{where}: {lines[:5]}"
            assert logs, f"{where}: no line names a log"
            assert all(log.parent == out / "logs" and log.is_file() for log in logs), f"{where}: {logs}"
    # 00's plans from scratch (init and plan, of global and staging): about 100 lines per plan before.
    ran = terraform_output(out / PATH[0].name)
    plans = next(lines for _, lines, _ in ran if any(line.startswith("planned staging: ") for line in lines))
    assert len(plans) <= 6, plans


def test_after_the_path_the_sandbox_saved_and_restarts_with_nothing_back(
    path_run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: after 09's teardown (its tag-based leftovers check left moto a pagination
    generator) the sandbox could no longer save, and a restart rewound it and resurrected a lock.
    (That a deploy survives a restart is test_new_user_path.py's, on the stack it builds.)"""
    from labkit import sandbox
    from labkit.infra.stack import StackNames
    from labkit.sandbox import target as sandbox_target

    out, proc = path_run
    assert proc.returncode == 0
    monkeypatch.setenv("LABKIT_HOME", str(out.parent / "home"))
    monkeypatch.delenv("LABKIT_SANDBOX_HOME", raising=False)
    env = {**os.environ}
    # The service saves shortly after every change, so this is a save after each lesson.
    assert sandbox.status().saves.get("last_error") is None, sandbox.status().save_lines()
    saved = wait_for("the teardown saved", lambda: sandbox.status().saves.get("unsaved_changes") is False)
    assert saved and not sandbox.status().saves_failing, sandbox.status().save_lines()

    assert labkit_cli(env, "sandbox", "down").returncode == 0
    started = labkit_cli(env, "sandbox", "up")
    assert started.returncode == 0, started.stderr
    assert "restored state holds" not in started.stdout, started.stdout
    assert sandbox.status().restored_locks == []
    target = sandbox_target()
    buckets = [b["Name"] for b in target.client("s3").list_buckets()["Buckets"]]
    assert StackNames.for_target(target).state_bucket not in buckets  # 09 removed global: it stays gone


def labkit_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labkit", *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


#: Where CI keeps the site for .github/workflows/pages.yml to publish (ci.yml sets it; unset elsewhere).
SITE_EXPORT_ENV = "LABKIT_SITE_EXPORT"


def test_the_runs_site_reads_in_a_browser_and_leads_with_its_figures(path_run: Run) -> None:
    """Issue 16: `labkit report` builds the run's site; every page loads in headless Chromium without
    a console error or a request off the site, every internal link and image resolves, every image
    has alt text, headings go in order, search answers, the dark palette switches on, the landing
    page's text has WCAG AA contrast in both palettes, the deploys' figures answer a hover, and the
    landing page shows this run's own figures, read here from the run's files."""
    from tests.site_browser import check_site

    out, proc = path_run
    assert proc.returncode == 0
    built = labkit_cli({**os.environ}, "report", str(out))
    assert built.returncode == 0 and built.stdout.strip() == f"report: {out / 'site' / 'index.html'}", (
        built.stderr
    )
    shots = {
        "index.html": out / "site-landing.png",
        "06-traffic-shifting.html": out / "site-06-traffic-shifting.png",
    }
    seen = check_site(out / "site", shots)

    assert len(seen.pages) >= len(PATH) + 4, seen.pages  # the lessons, home, ledger, runbooks, roadmap
    assert not seen.console_errors and not seen.outside_requests, seen.console_errors + seen.outside_requests
    assert not seen.broken_links and not seen.broken_images, seen.broken_links + seen.broken_images
    assert not seen.images_without_alt, seen.images_without_alt
    for page, levels in seen.headings.items():
        assert levels[:1] == [1] and all(b - a <= 1 for a, b in itertools.pairwise(levels)), (page, levels)
    assert seen.search_results > 0 and seen.dark_scheme == "slate"
    assert set(seen.contrast) == {"light", "light, search open", "dark"}
    for scheme, (measured, low) in seen.contrast.items():  # WCAG AA: the landing page's every text
        assert measured > 50 and not low, (scheme, low)
    # The deploys' traffic and timelines are interactive: inline SVG, each bin or bar with its figures.
    for page in ("06-traffic-shifting.html", "07-automated-rollback.html", "ledger.html"):
        figures = seen.interactive.get(page, [])
        assert figures and all(label and tips for label, tips in figures), (page, figures)
    labels = [label for label, _ in seen.interactive["06-traffic-shifting.html"]]
    assert labels[0].startswith("Canary deploy of") and labels[1].startswith("Phases of deployment")
    bins = seen.interactive["06-traffic-shifting.html"][0][1]
    assert all(re.match(r"[\d.]+ to [\d.]+ s: \d+ requests, \d+ % served by green", b) for b in bins), bins
    assert seen.hover_outline[1] == "2px" != seen.hover_outline[0], seen.hover_outline
    assert all(path.stat().st_size > 10_000 for path in shots.values())

    # The landing page's figures are this run's: each read here from where the lesson left it.
    rows = {line.split("\t")[0]: line for line in seen.landing_text.splitlines() if "\t" in line}
    six, seven = "\n".join(_text(out / PATH[6].name)), "\n".join(_text(out / PATH[7].name))
    ten = "\n".join(_text(out / "10-disaster-drills.ipynb"))
    deployed = re.search(r"\] succeeded: .* \((\d+\.\d) s\); lock released", six)
    assert deployed and f"\t{deployed[1]} s " in rows["Deploy time (slowest succeeded deploy)"]
    assert "\t0 " in rows["Failed requests, healthy canary deploy"]
    failed = re.search(r"^(\d+ of \d+) requests failed", seven, re.MULTILINE)
    assert failed and f"\t{failed[1]} " in rows["Failed requests, rolled-back bad deploy"]
    rolled_back = re.search(r"\] rolled_back: .* \((\d+\.\d) s\); lock released", seven)
    exposure = re.search(r"\t(\d+\.\d) s ", rows["Rollback exposure (bad release's canary step to rollback)"])
    assert rolled_back and exposure and 0 < float(exposure[1]) < float(rolled_back[1])
    cost_figure = json.loads((out / "08-timing-and-cost.result.json").read_text())["figures"][-1]["title"]
    cost = re.search(r"\\\$([\d,]+\.\d\d), (OVER|within)", cost_figure)
    assert cost and f"\t${cost[1]} " in rows["Staging cost per month"]
    # 10's drills, each with its time to recover as the lesson's scoreboard printed it.
    for drill in ("corrupt-state", "stuck-lock", "lost-deploy"):
        recovered = re.search(rf"drill {drill} on staging: VERIFIED\n.*\n  time to recover\s+([\d.]+) s", ten)
        assert recovered and f"\t{float(recovered[1]):.1f} s " in rows[f"Drill {drill}: time to recover"]
    if os.environ.get(SITE_EXPORT_ENV):
        shutil.copytree(out / "site", os.environ[SITE_EXPORT_ENV], dirs_exist_ok=True)


def _text(executed: Path) -> list[str]:
    """The text a notebook's cells printed."""
    return [
        line
        for cell in _cells(executed)
        for o in cell.get("outputs", [])
        if o["output_type"] == "stream"
        for line in "".join(o["text"]).splitlines()
    ]


def test_10_drills_the_staging_08_left_and_recovers_each_with_its_runbook(path_run: Run) -> None:
    """10 on the stack 08 left (green serving what 07 rolled back to): nothing applied before the
    drills, each drill's runbook run as a dry run, for real, then again with nothing to do."""
    out, proc = path_run
    assert proc.returncode == 0
    printed = "\n".join(_text(out / "10-disaster-drills.ipynb"))
    assert re.search(r"^staging serves: green 1\.1\.0 answers at http://127\.0\.0\.1:\d+$", printed, re.M)
    assert "applying staging" not in printed and "applying global" not in printed
    for drill, runbook in (
        ("corrupt-state", "restore-state"),
        ("stuck-lock", "unlock-state"),
        ("lost-deploy", "deploy-recover"),
    ):
        assert f"drill {drill} on staging: VERIFIED" in printed
        assert f"{runbook:<20} dry run  planned" in printed
        assert f"{runbook:<20} act      recovered" in printed
        assert f"{runbook:<20} second run: nothing-to-do" in printed
    assert printed.count("state versions lost 0") == 3
    # None of the three takes the service down: the probe ran from each injection to its recovery.
    pattern = r"drill (\S+) on staging: VERIFIED\n(?:.*\n){3}  requests failed     (\d+) of (\d+)"
    counted = {name: (int(failed), int(sent)) for name, failed, sent in re.findall(pattern, printed)}
    assert set(counted) == {"corrupt-state", "stuck-lock", "lost-deploy"}, printed
    assert all(sent > 0 and failed <= sent // 100 for failed, sent in counted.values()), counted
    assert (out / "10-drills.png").stat().st_size > 10_000


def test_11_exchanges_a_jobs_token_for_the_deploy_role_and_refuses_the_rest(path_run: Run) -> None:
    """11 on the global that 10 left: the OIDC provider and roles added, a deploy job's token
    exchanged for the deploy role's credentials, a feature branch's token refused at assume-role,
    and the read-only plan role refused a write with IAM enforced."""
    out, proc = path_run
    assert proc.returncode == 0
    executed = _cells(out / "11-ci-cd-and-identity.ipynb")
    printed = lessons.printed([o for cell in executed for o in cell.get("outputs", [])])
    assert ":assumed-role/bglab-staging-deploy/lesson-11" in printed
    assert "refused: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity" in printed
    assert "refused: AccessDeniedException: User: arn:aws:sts::" in printed  # DynamoDB's own format
    assert "repo:acme/bluegreen-lab:environment:staging" in printed  # the token's sub and the trust policy's
    assert "global removed" not in printed  # 09 removes it, after this lesson
