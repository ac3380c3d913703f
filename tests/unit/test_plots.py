"""labkit.lab.plots: every figure renders from synthetic data to a PNG with titles, units and legends, its
texts do not overlap, and bad input gets a clear error. (The PNGs were also looked at by eye.)"""

from __future__ import annotations

import base64
import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from labkit.errors import PlotInputError
from labkit.infra.cost import DeployPattern, estimate_cost
from labkit.lab import plots

T0 = pd.Timestamp("2026-11-02T10:00:00Z")
COST_PLAN = Path(__file__).parent.parent / "fixtures" / "cost" / "staging.plan.json"
PHASES = [
    ("lock", 0.4),
    ("preflight", 2.0),
    ("scale up green", 48.0),
    ("wait healthy", 31.0),
    ("canary 10%", 45.0),
    ("canary 50%", 45.0),
    ("shift 100%", 20.0),
    ("scale down blue", 12.0),
]


# -- synthetic inputs, shaped like the ledger, the probe and the cost model ------------------------


def events(deployment_id: str = "d0", start: pd.Timestamp = T0, fail: bool = False) -> pd.DataFrame:
    phases = [*PHASES[:5], ("rollback", 14.0), ("scale down green", 11.0)] if fail else PHASES
    rows, t = [], start
    for phase, seconds in phases:
        end = t + pd.Timedelta(seconds=seconds)
        outcome = "error" if fail and phase == "canary 10%" else "ok"
        rows.append(
            {
                "deployment_id": deployment_id,
                "phase": phase,
                "started_at": t,
                "ended_at": end,
                "outcome": outcome,
            }
        )
        t = end
    return pd.DataFrame(rows)


def probe(seconds: float = 240.0, rps: float = 20.0, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    steps = pd.DataFrame({"time_s": [0.0, 60.0, 120.0, 180.0], "weight": [0.0, 10.0, 50.0, 100.0]})
    n = int(seconds * rps)
    t = np.sort(rng.uniform(0, seconds, n))
    weight = steps["weight"].to_numpy()[np.searchsorted(steps["time_s"].to_numpy(), t, side="right") - 1]
    green = rng.uniform(0, 100, n) < weight
    ok = rng.uniform(size=n) > 0.01
    frame = pd.DataFrame(
        {
            "elapsed_s": t,
            "status": np.where(ok, 200, 502),
            "ok": ok,
            "color": np.where(green, "green", "blue"),
            "version": np.where(green, "1.1.0", "1.0.0"),
            "latency_ms": rng.gamma(4, 8, n),
            "phase": np.select(
                [t < 60, t < 120, t < 180], ["baseline", "canary 10%", "canary 50%"], "shift 100%"
            ),
        }
    )
    return frame, steps


def deployments(n: int = 24, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows, t = [], T0 - pd.Timedelta(days=42)
    for i in range(n):
        t = t + pd.Timedelta(hours=float(rng.uniform(10, 60)))
        status = str(rng.choice(["succeeded", "rolled_back", "aborted"], p=[0.8, 0.15, 0.05]))
        duration = float(rng.normal(230, 50) if status == "succeeded" else rng.normal(160, 40))
        rows.append(
            {
                "id": f"dep-{i:02d}",
                "version": f"1.{i // 5}.{i % 5}",
                "status": status,
                "started_at": t,
                "ended_at": t + pd.Timedelta(seconds=duration),
                "duration_s": duration,
                "committed_at": t - pd.Timedelta(hours=float(rng.uniform(0.5, 30))),
            }
        )
    return pd.DataFrame(rows)


# -- checks on a rendered figure ---------------------------------------------------------------


def texts_overlap(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts that overlap within one axes: annotations and bar labels, y tick
    labels, and unrotated x tick labels (a rotated label's bounding box is not its outline)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    found = []
    for ax in fig.axes:
        groups = [ax.texts, ax.get_yticklabels()]
        if all(t.get_rotation() == 0 for t in ax.get_xticklabels()):
            groups.append(ax.get_xticklabels())
        for group in groups:
            shown = [t for t in group if t.get_visible() and t.get_text().strip()]
            for one, other in itertools.combinations(shown, 2):
                if one.get_window_extent(renderer).overlaps(other.get_window_extent(renderer)):
                    found.append((one.get_text(), other.get_text()))
    return found


def numeric_ticks(ax: Axes) -> bool:
    """Whether the y axis shows numbers (which need a unit), not category names."""
    texts = [t.get_text().replace("\N{MINUS SIGN}", "-") for t in ax.get_yticklabels() if t.get_text()]
    try:
        return bool(texts) and all(float(t) is not None for t in texts)
    except ValueError:
        return False


def assert_saved_and_labelled(fig: Figure, path: Path, *, legends: int = 1) -> None:
    assert isinstance(fig, Figure)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes
    suptitle = fig.get_suptitle()
    for ax in axes:
        assert ax.get_title() or suptitle, "every axes has a title (or the figure has one)"
        if numeric_ticks(ax):
            assert ax.get_ylabel(), f"{ax} has numbers on its y axis but no label (unit)"
    assert any(ax.get_xlabel() for ax in axes), "the time or value axis is labelled"
    overlapping = texts_overlap(fig)
    assert not overlapping, overlapping
    assert sum(ax.get_legend() is not None for ax in axes) >= legends


# -- each figure ---------------------------------------------------------------------------------


def test_deploy_timeline_single(tmp_path: Path) -> None:
    path = tmp_path / "timeline.png"
    fig = plots.deploy_timeline(events(fail=True), path=path)
    assert_saved_and_labelled(fig, path)
    ax = fig.axes[0]
    assert ax.get_title() == "Deployment timeline: 7 phases in 151.4 s"
    assert ax.get_xlabel() == "time since the deployment started (s)"
    assert [t.get_text() for t in ax.get_yticklabels()] == [p for p, _ in PHASES[:5]] + [
        "rollback",
        "scale down green",
    ]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ok", "error"]
    assert "45.0 s" in [t.get_text() for t in ax.texts]


def test_deploy_timeline_running_phase_and_iso_strings(tmp_path: Path) -> None:
    frame = events()[["phase", "started_at", "ended_at"]].astype(str)
    frame.loc[len(frame) - 1, "ended_at"] = None  # still running
    fig = plots.deploy_timeline(frame, path=tmp_path / "t.png", now=T0 + pd.Timedelta(seconds=200))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["ok", "running"]
    # the last phase started at 191.4 s and runs until now (200 s)
    assert fig.axes[0].texts[-1].get_text() == "8.6 s so far"


def test_deploy_timeline_several_deployments(tmp_path: Path) -> None:
    frame = pd.concat([events(f"d{i}", T0 + pd.Timedelta(hours=i), fail=i == 2) for i in range(5)])
    path = tmp_path / "timelines.png"
    fig = plots.deploy_timeline(frame, path=path)
    assert_saved_and_labelled(fig, path)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["d0", "d1", "d2", "d3", "d4"]
    assert ax.get_ylabel() == "deployment"
    assert {t.get_text() for t in ax.texts} == {"203 s", "151 s"}


def test_traffic_over_time(tmp_path: Path) -> None:
    frame, steps = probe()
    path = tmp_path / "traffic.png"
    fig = plots.traffic_over_time(frame, steps, path=path)
    assert_saved_and_labelled(fig, path, legends=4)
    phase_ax, weight_ax, err_ax, lat_ax = fig.axes
    assert (
        fig.get_suptitle().startswith("Traffic shift to green")
        and "4,800 requests, 5 s bins" in fig.get_suptitle()
    )
    assert (weight_ax.get_ylabel(), err_ax.get_ylabel(), lat_ax.get_ylabel()) == (
        "green share (%)",
        "errors (%)",
        "latency (ms)",
    )
    assert lat_ax.get_xlabel() == "time since the probe started (s)"
    configured = weight_ax.get_lines()[0]
    assert list(configured.get_ydata()) == [0.0, 10.0, 50.0, 100.0, 100.0]
    observed = weight_ax.get_lines()[1].get_ydata()
    assert max(observed) == 100.0 and min(observed) == 0.0  # the probe saw the shift happen
    assert [t.get_text() for t in phase_ax.get_legend().get_texts()] == [
        "baseline",
        "canary 10%",
        "canary 50%",
        "shift 100%",
    ]


def test_latency_percentiles(tmp_path: Path) -> None:
    frame, _ = probe()
    path = tmp_path / "latency.png"
    fig = plots.latency_percentiles(frame, by="color", path=path)
    assert_saved_and_labelled(fig, path)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "latency (ms)" and ax.get_xlabel() == "color"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["p50", "p90", "p95", "p99"]
    p99_blue = float(np.percentile(frame.loc[frame["ok"] & (frame["color"] == "blue"), "latency_ms"], 99))
    assert ax.containers[3][0].get_height() == pytest.approx(p99_blue)


def test_cost_by_component(tmp_path: Path) -> None:
    estimate = estimate_cost(COST_PLAN, deploys=DeployPattern())
    path = tmp_path / "cost.png"
    fig = plots.cost_by_component(estimate, path=path)
    assert_saved_and_labelled(fig, path)
    bars_ax, total_ax = fig.axes
    assert bars_ax.get_xlabel() == "USD per month" and total_ax.get_ylabel() == "USD per month"
    assert fig.get_suptitle() == f"Monthly cost: \\${estimate.total_usd:,.2f}, within the \\$50.00 goal"
    assert total_ax.get_lines()[0].get_ydata()[0] == 50.0  # the goal line
    heights = sum(p.get_height() for p in total_ax.patches)
    assert heights == pytest.approx(estimate.total_usd)
    labels = [t.get_text() for t in bars_ax.get_yticklabels()]
    assert labels[-1] == "load balancer" and "blue/green overhead" in labels  # largest on top
    # a plain DataFrame of line items works too, and the goal can move
    fig = plots.cost_by_component(estimate.items, goal_usd=40)
    assert "OVER" in fig.get_suptitle()
    # Over the goal, a lesson's own title keeps the verdict and the bar marks the part above it.
    over = estimate.total_usd - 40
    fig = plots.cost_by_component(estimate.items, goal_usd=40, title="Staging per month")
    assert fig.get_suptitle().startswith("Staging per month\n")
    assert fig.get_suptitle().endswith(f"OVER the \\$40.00 goal by \\${over:,.2f}")
    hatched = [p for p in fig.axes[1].patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_y() == 40 and hatched[0].get_height() == pytest.approx(over)
    # A component of one color is drawn in that color, whatever its rank.
    colors = {
        t.get_text(): b.get_facecolor()
        for t, b in zip(fig.axes[0].get_yticklabels(), fig.axes[0].patches, strict=True)
    }
    blue_or_green = {k: v for k, v in colors.items() if "(blue)" in k or "(green)" in k}
    assert blue_or_green and all(
        to_hex(v) == plots.COLOR_OF["blue" if "(blue)" in k else "green"] for k, v in blue_or_green.items()
    )
    others = {to_hex(v) for k, v in colors.items() if k not in blue_or_green}
    assert not others & {plots.COLOR_OF["blue"], plots.COLOR_OF["green"], "#d62728"}


def test_deploy_durations(tmp_path: Path) -> None:
    frame = deployments()
    path = tmp_path / "durations.png"
    fig = plots.deploy_durations(frame, path=path)
    assert_saved_and_labelled(fig, path)
    ax = fig.axes[0]
    within = int((frame["duration_s"] <= 300).sum())
    assert ax.get_title() == f"Deploy durations: {within} of 24 within 5 minutes"
    assert ax.get_ylabel() == "duration (min)"
    assert ax.get_lines()[0].get_ydata()[0] == 5.0
    assert [p.get_height() for p in ax.patches[:3]] == pytest.approx(list(frame["duration_s"][:3] / 60))
    # many deployments: at most about 20 tick labels
    many = pd.concat([deployments(30, seed=s).assign(id=lambda d, s=s: d["id"] + f"-{s}") for s in range(3)])
    assert len(plots.deploy_durations(many).axes[0].get_xticklabels()) <= 23


def test_dora_metrics(tmp_path: Path) -> None:
    path = tmp_path / "dora.png"
    fig = plots.dora_metrics(deployments(), path=path)
    assert_saved_and_labelled(fig, path, legends=0)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "Deploy frequency (24 in total)"
    assert titles[1].startswith("Change failure rate (")
    assert titles[2].startswith("Time to restore") and titles[3].startswith("Lead time")
    assert fig.get_suptitle() == "DORA-style metrics per week"
    # daily over six weeks: too many bars for value labels, which would collide
    daily = plots.dora_metrics(
        deployments().drop(columns="committed_at"), freq="D", path=tmp_path / "daily.png"
    )
    assert not texts_overlap(daily)
    assert "needs a committed_at column" in daily.axes[3].texts[0].get_text()


def test_dora_table_figures() -> None:
    week = pd.Timestamp("2026-11-02T09:00:00Z")  # a Monday
    frame = pd.DataFrame(
        [
            {
                "id": "a",
                "status": "succeeded",
                "started_at": week,
                "duration_s": 200.0,
                "committed_at": week - pd.Timedelta(hours=2),
            },
            {
                "id": "b",
                "status": "rolled_back",
                "started_at": week + pd.Timedelta(days=1),
                "duration_s": 120.0,
                "committed_at": None,
            },
            {
                "id": "c",
                "status": "succeeded",
                "started_at": week + pd.Timedelta(days=2),
                "duration_s": 100.0,
                "committed_at": week,
            },
            {
                "id": "d",
                "status": "in_progress",
                "started_at": week + pd.Timedelta(days=15),
                "duration_s": None,
                "committed_at": None,
            },
        ]
    )
    frame["ended_at"] = frame["started_at"] + pd.to_timedelta(frame["duration_s"], unit="s")
    table = plots.dora_table(frame)
    assert list(table.index.strftime("%Y-%m-%d")) == ["2026-11-02", "2026-11-09", "2026-11-16"]
    assert list(table["deploys"]) == [3, 0, 1]
    assert table["change_failure_pct"].iloc[0] == pytest.approx(100 / 3)
    assert table["change_failure_pct"].iloc[1:].isna().all()  # nothing finished: no rate, not 0%
    assert table["restore_min"].iloc[0] == 2.0
    # lead time: median of (2 h + 200 s) and (2 days + 100 s)
    expected = np.median([2 + 200 / 3600, 48 + 100 / 3600])
    assert table["lead_time_h"].iloc[0] == pytest.approx(expected)
    # naive times are taken as UTC; ISO strings are parsed
    naive = frame.assign(
        started_at=frame["started_at"].dt.tz_localize(None),
        ended_at=frame["ended_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").where(frame["ended_at"].notna()),
    )
    pd.testing.assert_frame_equal(plots.dora_table(naive), table)


# -- bad input -------------------------------------------------------------------------------------


def test_missing_columns_are_named() -> None:
    with pytest.raises(
        PlotInputError, match=re.escape("events lacks column(s) ended_at; it has phase, started_at")
    ) as info:
        plots.deploy_timeline(pd.DataFrame({"phase": ["x"], "started_at": [T0]}))
    assert "phase (str), started_at (datetime), ended_at (datetime)" in str(info.value)


def test_wrong_types_and_empty_frames() -> None:
    frame, steps = probe(seconds=5)
    with pytest.raises(PlotInputError, match="probe: column ok must be bool, not"):
        plots.traffic_over_time(frame.assign(ok=frame["ok"].map({True: "yes", False: "no"})), steps)
    with pytest.raises(PlotInputError, match="probe: column latency_ms must be number"):
        plots.latency_percentiles(frame.assign(latency_ms=frame["latency_ms"].astype(str)))
    with pytest.raises(PlotInputError, match="weight must be a percentage between 0 and 100"):
        plots.traffic_over_time(frame, steps.assign(weight=[0.0, 10.0, 50.0, 150.0]))
    with pytest.raises(PlotInputError, match="probe has no rows"):
        plots.traffic_over_time(frame.iloc[0:0], steps)
    with pytest.raises(PlotInputError, match="must be a pandas DataFrame, not list"):
        plots.latency_percentiles([1, 2])  # type: ignore[arg-type]
    with pytest.raises(PlotInputError, match="by='status' is not a probe column to group on"):
        plots.latency_percentiles(frame, by="status")
    with pytest.raises(PlotInputError, match="no successful requests"):
        plots.latency_percentiles(frame.assign(ok=False))
    with pytest.raises(PlotInputError, match="column started_at holds values that are not times"):
        plots.deploy_timeline(events().assign(started_at="yesterday-ish"))


def test_deployment_table_errors() -> None:
    with pytest.raises(PlotInputError, match=re.escape("unknown status value(s) failed")):
        plots.deploy_durations(deployments(3).assign(status="failed"))
    running = deployments(2).assign(status="in_progress", ended_at=pd.NaT, duration_s=np.nan)
    with pytest.raises(PlotInputError, match="no finished deployment"):
        plots.deploy_durations(running)


def test_the_probe_records_what_the_traffic_plots_read() -> None:
    """The plots take :meth:`labkit.Probe.results` as it is: every column they read is there."""
    from labkit import Probe

    recorded = set(Probe("http://127.0.0.1:9/", rate=1).results().columns)
    assert set(plots.PROBE_COLUMNS) <= recorded


def test_drill_timeline_draws_a_row_per_drill_with_its_moments_and_failures(tmp_path: Path) -> None:
    moments = pd.DataFrame(
        [
            {"drill": "corrupt-state", "moment": "injected", "seconds": 0.0},
            {"drill": "corrupt-state", "moment": "verified", "seconds": 30.0},
            {"drill": "accidental-destroy", "moment": "injected", "seconds": 0.0},
            {"drill": "accidental-destroy", "moment": "recovered", "seconds": 150.0},
        ]
    )
    seconds = np.arange(0, 160, 0.5)
    traffic = pd.concat(
        [
            pd.DataFrame({"drill": "corrupt-state", "seconds": seconds[:60], "ok": True}),
            pd.DataFrame(
                {"drill": "accidental-destroy", "seconds": seconds, "ok": (seconds < 20) | (seconds > 140)}
            ),
        ]
    )
    fig = plots.drill_timeline(moments, traffic, title="drills", path=tmp_path / "drills.png")
    axes = fig.get_axes()
    assert [ax.get_title(loc="left") for ax in axes] == [
        "corrupt-state: 0 of 60 requests failed",
        "accidental-destroy: 241 of 320 requests failed",
    ]
    assert [len(ax.get_lines()) for ax in axes] == [2, 2]  # one dashed line per moment
    assert (tmp_path / "drills.png").stat().st_size > 0
    with pytest.raises(PlotInputError, match="seconds"):
        plots.drill_timeline(moments.drop(columns="seconds"), traffic)


class _Kernel:
    """What get_ipython() returns inside a Jupyter kernel: a shell with a kernel."""

    kernel = object()


def test_in_a_notebook_kernel_each_figure_goes_to_the_cell_output(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython
    import IPython.display

    shown: list[dict[str, str]] = []
    monkeypatch.setattr(IPython.display, "display", lambda bundle, raw: shown.append(bundle))
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # a plain Python process
    plots.deploy_timeline(events())
    assert shown == []
    monkeypatch.setattr(IPython, "get_ipython", _Kernel)
    plots.deploy_timeline(events())
    (bundle,) = shown
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert bundle["text/plain"].startswith("<Deployment timeline: ")
    # A figure titled as a whole (several panels) is named by that title, not its first panel's.
    shown.clear()
    plots.cost_by_component(estimate_cost(COST_PLAN, deploys=DeployPattern()))
    assert shown[0]["text/plain"].startswith("<Monthly cost: ")


def test_the_legend_of_many_phases_fits_a_timeline_of_two_deployments() -> None:
    """Lesson 08's figure: two deployments, one rolled back, with 14 phases in the legend beside them;
    the legend was cut off at the bottom when the figure's height followed the two bars alone."""
    phases = [f"phase-{i}" for i in range(14)]
    rows = [
        {
            "deployment_id": f"d{d}",
            "phase": p,
            "started_at": T0 + pd.Timedelta(seconds=10 * i),
            "ended_at": T0 + pd.Timedelta(seconds=10 * i + 9),
        }
        for d in range(2)
        for i, p in enumerate(phases[d * 7 : d * 7 + 7])
    ]
    fig = plots.deploy_timeline(pd.DataFrame(rows))
    fig.canvas.draw()
    legend = fig.axes[0].get_legend().get_window_extent()
    page = fig.bbox
    assert legend.y0 >= page.y0 and legend.y1 <= page.y1, (legend, page)


def test_the_deploy_figures_are_also_svg_that_names_each_bar_on_hover(tmp_path: Path) -> None:
    """Issue 16: the deploy timeline and the traffic figure are interactive: an SVG beside the PNG in
    which each phase bar, or each time bin of traffic, is a group whose title gives its figures."""
    import xml.etree.ElementTree as ET

    svg_ns = "{http://www.w3.org/2000/svg}"
    fig = plots.deploy_timeline(events(), path=tmp_path / "timeline.png")
    root = ET.fromstring((tmp_path / "timeline.svg").read_text())
    assert (root.get("role"), root.get("aria-label")) == ("img", plots.figure_title(fig))
    tips = [g.find(f"{svg_ns}title") for g in root.iter(f"{svg_ns}g") if g.get("class") == plots.TIP_CLASS]
    texts = [t.text or "" for t in tips if t is not None]
    assert len(texts) == len(events())
    assert any(t.startswith("scale up green: 48.0 s, from 2.4 s") for t in texts)
    # No id but those a reference needs: two figures inline on one page share none.
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    assert ids and all(f"#{i}" in (tmp_path / "timeline.svg").read_text() for i in ids)

    frame, weights = probe()
    plots.traffic_over_time(frame, weights, path=tmp_path / "traffic.png")
    root = ET.fromstring((tmp_path / "traffic.svg").read_text())
    bins = [g.find(f"{svg_ns}title") for g in root.iter(f"{svg_ns}g") if g.get("class") == plots.TIP_CLASS]
    shape = r"[\d.]+ to [\d.]+ s: (\d+) requests, (\d+) % served by green"
    counted = [re.match(shape, t.text or "") for t in bins if t is not None]
    assert all(counted) and sum(int(m[1]) for m in counted if m) == len(frame)
    assert {int(m[2]) for m in counted if m} >= {0, 100}  # the shift from blue to green, bin by bin
    # A figure with no hover texts has no SVG.
    cost = plots.cost_by_component(estimate_cost(COST_PLAN, deploys=DeployPattern()))
    assert plots.figure_svg(cost) is None
    assert not list(tmp_path.glob("cost*"))
