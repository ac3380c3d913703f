"""labkit.lab.report, runfacts and diagram: a small synthetic run folder built into its site.

The site of a real run, checked in a browser, is tests/notebooks/test_learning_path.py's.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import ConfigError, SiteError
from labkit.lab.diagram import architecture_svg, boxes, edges
from labkit.lab.report import RunbookPage, build_site, latest_run, roadmap_statuses
from labkit.lab.runfacts import RunFacts, parse_tables

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

LEDGER_HTML = """<div><style scoped>.dataframe tbody tr th {vertical-align: top;}</style>
<table border="1" class="dataframe"><thead><tr style="text-align: right;"><th></th><th>id</th>
<th>version</th><th>status</th><th>duration_s</th><th>reason</th></tr></thead><tbody>
<tr><th>0</th><td>d2</td><td>1.2.0-bad</td><td>rolled_back</td><td>91.660998</td><td>analysis failed</td></tr>
<tr><th>1</th><td>d1</td><td>1.1.0</td><td>succeeded</td><td>99.161529</td><td>1.1.0 serves | all</td></tr>
<tr><th>2</th><td>d0</td><td>1.0.1</td><td>succeeded</td><td>61.5</td><td>ok</td></tr>
</tbody></table></div>"""


def code(source: str, *outputs: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    return {
        "cell_type": "code",
        "metadata": {"papermill": {"status": status}},
        "execution_count": 1,
        "source": source,
        "outputs": list(outputs),
    }


def stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def shown(**data: str) -> dict[str, Any]:
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {k.replace("_", "/"): v for k, v in data.items()},
    }


def notebook(path: Path, title: str, *cells: dict[str, Any], ok: bool = True, seconds: float = 3.0) -> None:
    """An executed notebook and the result file `labkit run` writes beside it."""
    doc = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": f"# {title}\n\n## Objectives\nText."},
            *cells,
        ],
    }
    path.write_text(json.dumps(doc))
    result = {"notebook": path.name, "ok": ok, "seconds": seconds, "checkpoints": [], "figures": []}
    path.with_name(f"{path.stem}.result.json").write_text(json.dumps(result))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """Lessons 06, 07 and 08 as they print in a real run (no 10: its drills are not measured)."""
    folder = tmp_path / "runs" / "20261203-100000"
    folder.mkdir(parents=True)
    figure = shown(
        image_png=base64.b64encode(PNG).decode(), text_plain="<Canary deploy of 1.1.0 to \\$green>"
    )
    notebook(
        folder / "06-traffic-shifting.ipynb",
        "06 · Shifting traffic",
        code("assert record.status == 'succeeded'\nassert traffic[\"ok\"].all(), 'failed'"),
        code("traffic_over_time(...);", figure),
    )
    notebook(
        folder / "07-automated-rollback.ipynb",
        "07 · Automated rollback",
        code(
            "controller.deploy(bad)",
            stream("[  30.4s] shift: blue to 10% (step 1/3): green_weight=90\n"),
            stream(
                "[  52.7s] analysis: baking 10 s at 10%, gate every 1 s\n[  54.3s] analysis: FAIL at 10%\n"
            ),
            stream("[  54.4s] rollback: green at 100% through the ELBv2 API (was 90%)\n"),
        ),
        code("print(failed)", stream("1 of 3682 requests failed (0.0%), from ['1.2.0-bad']\n")),
        code('assert set(failed["version"]) <= {bad}, "every failure should come from the bad release"'),
    )
    notebook(
        folder / "08-timing-and-cost.ipynb",
        "08 · Timing and cost",
        code(
            "deployments",
            {"output_type": "execute_result", "data": {"text/html": LEDGER_HTML}, "metadata": {}},
        ),
        code(
            "print(estimate.summary())",
            stream("total  $ 55.91\n$55.91/month is OVER the $50/month goal by $5.91\n"),
        ),
    )
    (folder / "08-timeline.png").write_bytes(PNG)
    (folder / "logs").mkdir()
    (folder / "logs" / "20261203T095333-staging-apply.log").write_text(
        "[   2.2s] module.environment.module.alb.aws_lb_listener.http: Creating...\n"
        "[   2.7s] module.environment.module.alb.aws_lb_listener.http: Creation complete after 1s [id=x]\n"
        '[   2.7s] module.environment.module.alb.aws_lb_target_group.this["blue"]: Creation complete\n'
        '[   2.7s] module.environment.module.fleet["blue"].aws_autoscaling_group.this: Creation complete\n'
        "[   2.8s] module.environment.module.network.aws_subnet.public[0]: Creation complete after 1s\n"
        "[   2.8s] module.environment.module.network.aws_subnet.public[1]: Creation complete after 1s\n"
        "[   2.8s] module.environment.module.network.data.aws_availability_zones.x[0]: Creation complete\n"
    )
    return folder


def test_the_headline_figures_are_read_from_the_run(run: Path) -> None:
    figures = {f.label: f for f in RunFacts.read(run).headline()}
    deploy = figures["Deploy time (slowest succeeded deploy)"]
    assert (deploy.value, deploy.number, deploy.met, deploy.lesson) == (
        "99.2 s",
        99.161529,
        True,
        "08-timing-and-cost",
    )
    exposure = figures["Rollback exposure (bad release's canary step to rollback)"]
    assert exposure.number == pytest.approx(24.0) and "1.7 s of it after" in exposure.how
    healthy = figures["Failed requests, healthy canary deploy"]
    assert (healthy.value, healthy.met, healthy.lesson) == ("0", True, "06-traffic-shifting")
    bad = figures["Failed requests, rolled-back bad deploy"]
    assert (bad.value, bad.met) == ("1 of 3682", True)
    cost = figures["Staging cost per month"]
    assert (cost.value, cost.number, cost.met) == ("$55.91", 55.91, False)
    drills = figures["Drills: time to recover"]
    assert drills.value is None and drills.lesson is None


def test_a_failed_check_or_lesson_is_not_counted(run: Path) -> None:
    six = run / "06-traffic-shifting.ipynb"
    doc = json.loads(six.read_text())
    doc["cells"][1]["metadata"]["papermill"]["status"] = "failed"  # the zero-failures check did not hold
    six.write_text(json.dumps(doc))
    result = json.loads((run / "08-timing-and-cost.result.json").read_text())
    (run / "08-timing-and-cost.result.json").write_text(json.dumps({**result, "ok": False}))
    figures = {f.label: f.value for f in RunFacts.read(run).headline()}
    assert figures["Failed requests, healthy canary deploy"] is None
    assert figures["Deploy time (slowest succeeded deploy)"] is None  # 08 failed: its ledger is not read
    assert figures["Staging cost per month"] is None


def test_the_site_shows_what_the_run_measured_and_what_it_did_not(run: Path) -> None:
    book = run.parent / "restore-state.ipynb"
    notebook(book, "Runbook: restore-state")
    index = build_site(
        run, runbooks=[RunbookPage("restore-state", "a corrupt state | or none", book)], roadmap=_roadmap(run)
    )
    assert index == run / "site" / "index.html"
    site = index.parent
    landing = index.read_text()
    assert "<strong>99.2 s</strong>" in landing and "<strong>$55.91</strong>" in landing
    assert landing.count("not measured in this run") == 1  # the drills: the run has no lesson 10
    assert 'href="08-timing-and-cost.html"' in landing and 'href="07-automated-rollback.html"' in landing
    assert 'src="architecture.svg" alt="Architecture diagram' in landing
    assert "2 done, 1 partly" in landing
    svg = (site / "architecture.svg").read_text()
    assert 'environment › fleet["blue"]' in svg and "aws_subnet ×2" in svg
    chapter = (site / "06-traffic-shifting.html").read_text()
    assert 'alt="Canary deploy of 1.1.0 to $green"' in chapter
    assert (site / "figures" / "06-traffic-shifting-2-0.png").read_bytes() == PNG
    ledger = (site / "ledger.html").read_text()
    assert "1.1.0 serves | all" in ledger and 'src="figures/08-timeline.png"' in ledger
    assert not (site / "drills.html").exists()
    assert "a corrupt state | or none" in (site / "runbooks.html").read_text()
    assert (site / "search" / "search_index.json").is_file()
    assert "fonts.googleapis.com" not in landing


def _roadmap(run: Path) -> Path:
    path = run.parent / "ROADMAP.md"
    path.write_text(
        "# Roadmap\n\n| Item | Status | Notes |\n| --- | --- | --- |\n| a | Done | x |\n"
        "| b | **Done** | y |\n| c | Partly | z |\n\nNot a table: | Done |\n"
    )
    return path


def test_roadmap_statuses_count_only_status_columns() -> None:
    text = (
        "| Metric | Status |\n|---|---|\n| x | Done |\n| y | Met on the sandbox |\n\n"
        "| A | B |\n| Done | Done |\n"
    )
    assert roadmap_statuses(text) == {"Done": 1}


def test_the_diagram_follows_the_addresses() -> None:
    built = {
        "staging": [
            "module.environment.module.alb.aws_lb_listener.http",
            'module.environment.module.alb.aws_lb_target_group.this["green"]',
            'module.environment.module.fleet["green"].aws_autoscaling_group.this',
            'module.environment.module.fleet["blue"].aws_autoscaling_group.this',
        ],
        "global": ["aws_s3_bucket.artifacts", "module.state_backend.aws_s3_bucket.state"],
    }
    found = boxes(built)
    fleets = ['environment › fleet["blue"]', 'environment › fleet["green"]']
    assert sorted(b.path for b in found) == ["(root)", "environment › alb", *fleets, "state_backend"]
    assert [(s.path, t.path) for s, t in edges(found)] == [
        ("environment › alb", 'environment › fleet["green"]')
    ]
    assert architecture_svg({}, title="nothing") == ""
    assert '<title id="arch-title">A &amp; B</title>' in architecture_svg(built, title="A & B")


def test_a_named_index_becomes_the_first_column() -> None:
    html = (
        "<table><thead><tr><th></th><th>verified</th><th>recover_s</th></tr>"
        "<tr><th>drill</th><th></th><th></th></tr></thead>"
        "<tbody><tr><th>stuck-lock</th><td>True</td><td>17.8</td></tr></tbody></table>"
    )
    (table,) = parse_tables(html)
    assert table.records() == [{"drill": "stuck-lock", "verified": "True", "recover_s": "17.8"}]


def test_latest_run_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with pytest.raises(ConfigError, match="No run folder with executed notebooks"):
        latest_run(root)
    for name in ("20261126-120000", "20261126-130000", "runbooks"):
        (root / name).mkdir(parents=True)
        notebook(root / name / "a.ipynb", "A")
    (root / "20261126-140000").mkdir()  # newer, but empty
    assert latest_run(root) == root / "20261126-130000"
    with pytest.raises(ConfigError, match="holds no executed notebooks"):
        build_site(root / "20261126-140000")
    newest = root / "20261126-130000"
    with pytest.raises(SiteError, match="holds the run folder"):
        build_site(newest, root)  # building would empty the run
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("mine")
    with pytest.raises(SiteError, match="not a site labkit built"):
        build_site(newest, tmp_path / "elsewhere")


def test_the_deploy_figures_are_inline_svg_whose_bars_tell_their_figures(run: Path) -> None:
    """Issue 16: the deploy timeline and the traffic figure are interactive on the site: inline SVG
    (an <img> would keep its hover texts out) whose every bar has a title, labelled for screen readers."""
    from labkit.lab import plots
    from tests.unit.test_plots import events

    plots.deploy_timeline(events(), path=run / "08-timeline.png")
    svg = (run / "08-timeline.svg").read_text()
    six = run / "06-traffic-shifting.ipynb"
    doc = json.loads(six.read_text())
    bundle = shown(image_png="", text_plain="<Deployment timeline>")
    bundle["data"]["image/svg+xml"] = svg
    doc["cells"].append(code("plots.deploy_timeline(...);", bundle))
    six.write_text(json.dumps(doc))
    site = build_site(run).parent

    for page in ("06-traffic-shifting.html", "ledger.html"):
        text = (site / page).read_text()
        assert text.count('class="labkit-figure" role="img" aria-label="Deployment timeline: 8 phases') == 1
        assert "<title>scale up green: 48.0 s, from 2.4 s to 50.4 s, ok</title>" in text
        assert "hover over a bar" in text
    assert (site / "figures" / "06-traffic-shifting-3-0.svg").read_text() == svg
    assert not (site / "figures" / "08-timeline.png").exists()  # the ledger shows the SVG instead
