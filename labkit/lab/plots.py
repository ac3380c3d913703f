"""The lab's figures: deploy timeline, traffic and errors over time, latency, cost, durations, DORA.

Every function takes DataFrames in the shapes below, checks them (a missing column or a wrong type is a
:class:`PlotInputError` saying which), draws on a new :class:`~matplotlib.figure.Figure` with constrained
layout (no pyplot state, so it works headless under Agg and in papermill), saves a PNG when given ``path``
and returns the Figure (a notebook displays it). The deploy timeline and the traffic figure are also
interactive: :func:`figure_svg` gives them as SVG in which each bar or time bin shows its figures on hover,
saved beside the PNG and put in the notebook's output beside it.

Input shapes (extra columns are ignored):

- **events** (the ledger's ``events_dataframe``): ``phase`` str, ``started_at`` datetime, ``ended_at``
  datetime or NaT (still running); optional ``deployment_id`` str (several deployments), ``outcome`` str
  (``ok`` / ``error`` / ``running``).
- **probe** (:meth:`labkit.Probe.results`): ``elapsed_s`` float (seconds since the probe started),
  ``status`` int (HTTP status; 0 when no response), ``ok`` bool, ``color`` str, ``version`` str,
  ``latency_ms`` float, ``phase`` str.
- **weights**: ``time_s`` float, ``weight`` float (percent of traffic sent to the new color, 0..100),
  one row per change; the weight holds until the next row.
- **cost items** (:attr:`labkit.infra.cost.CostEstimate.items`): ``component`` str, ``monthly_usd`` float.
- **deployments** (the ledger's ``to_dataframe``): ``id`` str, ``status`` str (``succeeded``,
  ``rolled_back``, ``aborted``, ``in_progress``), ``started_at`` datetime, ``ended_at`` datetime or NaT;
  optional ``version`` str, ``duration_s`` float, ``committed_at`` datetime (for lead time).
"""

from __future__ import annotations

import base64
import io
import re
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from labkit.errors import PlotInputError

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from labkit.infra.cost import CostEstimate

#: The roadmap's goals.
DEPLOY_GOAL_S = 300.0
COST_GOAL_USD = 50.0

COLOR_OF = {"blue": "#1f77b4", "green": "#2ca02c"}
STATUS_COLOR = {
    "succeeded": "#2ca02c",
    "rolled_back": "#d62728",
    "aborted": "#7f7f7f",
    "in_progress": "#ff7f0e",
}
OUTCOME_COLOR = {"ok": "#4c72b0", "error": "#d62728", "running": "#ff7f0e"}
FAILED_STATUSES = ("rolled_back", "aborted")
DPI = 120

# -- input checks --------------------------------------------------------------------------------


def _is_kind(series: pd.Series, kind: str) -> bool:
    """Whether a column holds values of ``kind``: str, number (not bool), bool or datetime."""
    types = pd.api.types
    if kind == "str":
        return bool(series.dtype == object or types.is_string_dtype(series))
    if kind == "number":
        return bool(types.is_numeric_dtype(series) and not types.is_bool_dtype(series))
    if kind == "bool":
        return bool(types.is_bool_dtype(series))
    return bool(types.is_datetime64_any_dtype(series))


def _check(given: Any, what: str, columns: Mapping[str, str]) -> pd.DataFrame:
    """``given`` as a DataFrame with ``columns`` (name -> kind), or a PlotInputError that says what is off.

    Datetime columns given as ISO 8601 strings are parsed, and all times are put in UTC (naive ones are taken
    as UTC); nothing else is converted.
    """
    if not isinstance(given, pd.DataFrame):
        raise PlotInputError(
            f"{what} must be a pandas DataFrame, not {type(given).__name__}.",
            hint=f"Build one with columns {', '.join(columns)} (see labkit/lab/plots.py).",
        )
    frame = given.copy()
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PlotInputError(
            f"{what} lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, frame.columns)) or 'none'}.",
            hint=f"{what} needs: " + ", ".join(f"{c} ({k})" for c, k in columns.items()) + ".",
        )
    if frame.empty:
        raise PlotInputError(
            f"{what} has no rows, so there is nothing to plot.", hint="Record some data first."
        )
    for column, kind in columns.items():
        if kind == "datetime" and not _is_kind(frame[column], "datetime"):
            try:
                frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
            except (ValueError, TypeError) as exc:
                raise PlotInputError(
                    f"{what}: column {column} holds values that are not times ({exc}).",
                    hint="Give datetimes or ISO 8601 strings such as 2026-01-31T12:00:00Z.",
                ) from None
        if kind == "datetime":  # one time zone for all: naive times are taken as UTC
            times = frame[column]
            frame[column] = times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")
        elif kind == "bool" and not _is_kind(frame[column], "bool"):
            raise PlotInputError(
                f"{what}: column {column} must be bool, not {frame[column].dtype}.",
                hint="Use True/False values.",
            )
        elif kind in ("str", "number") and not _is_kind(frame[column], kind):
            raise PlotInputError(
                f"{what}: column {column} must be {kind}, not {frame[column].dtype}.",
                hint=f"Convert it, e.g. frame[{column!r}].astype({'str' if kind == 'str' else 'float'}).",
            )
    return frame


# -- figure plumbing -----------------------------------------------------------------------------


def _figure(width: float = 10.0, height: float = 5.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _finish(fig: Figure, path: Path | str | None) -> Figure:
    svg = figure_svg(fig)
    if path is not None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=DPI)
        if svg is not None:
            target.with_suffix(".svg").write_text(svg, encoding="utf-8")
    _show_in_notebook(fig, svg)
    return fig


def _show_in_notebook(fig: Figure, svg: str | None = None) -> None:
    """In a Jupyter kernel, put the figure in the cell's output as a PNG now (and as ``svg`` too).

    The figures are bare :class:`~matplotlib.figure.Figure` objects (no pyplot state, so nothing
    leaks between cells), which no notebook shows by themselves unless ``%matplotlib inline`` has
    registered a formatter; and a lesson's plot cell ends in ``;``. Shown here, the figure is in the
    executed notebook, in JupyterLab and on the portfolio pages alike. JupyterLab shows the SVG of a
    notebook the reader ran (as a plain image: hover texts work on the site only) and the PNG of one
    they did not (it trusts no other SVG).
    """
    try:
        from IPython import get_ipython
    except ImportError:  # plotting outside a notebook needs no IPython
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):  # a terminal IPython shows no images
        return
    from IPython.display import display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    png = base64.b64encode(buffer.getvalue()).decode("ascii")  # as notebooks store images
    bundle = {"image/png": png, "text/plain": f"<{figure_title(fig)}>"}
    if svg is not None:
        bundle["image/svg+xml"] = svg
    display(bundle, raw=True)  # type: ignore[no-untyped-call]


# -- hover text: the interactive SVG -------------------------------------------------------------------

#: Each figure's hover texts by the gid of the artist they describe (:func:`_tip`).
_TIPS: weakref.WeakKeyDictionary[Figure, dict[str, str]] = weakref.WeakKeyDictionary()
_SVG = "http://www.w3.org/2000/svg"
#: A hovered bar or bin is outlined; its ``<title>`` is the browser's tooltip.
TIP_CLASS = "labkit-tip"
#: The class of the figure's ``<svg>``: its styles apply inside it only, once it is inline in a page.
FIGURE_CLASS = "labkit-figure"
_TIP_STYLE = (
    f"svg.{FIGURE_CLASS} g.{TIP_CLASS}:hover path {{ stroke: #222 !important; "
    "stroke-width: 2px !important; stroke-opacity: 1 !important; }"
)
_REFERENCE = re.compile(r"url\(#([^)]+)\)|href=\"#([^\"]+)\"")


def _tip(fig: Figure, artist: Artist, text: str) -> None:
    """Give ``artist`` a hover text in the figure's SVG."""
    tips = _TIPS.setdefault(fig, {})
    gid = f"{TIP_CLASS}-{len(tips)}"
    artist.set_gid(gid)
    tips[gid] = text


def figure_svg(fig: Figure) -> str | None:
    """The figure as an SVG to put inline in a page, when it has hover texts (else None).

    Each described bar or bin is a ``<g class="labkit-tip">`` with a ``<title>`` (what a browser shows
    on hover and a screen reader reads) and an outline on hover. The SVG is an image with the figure's
    title as its label; it scales to its container; text stays text; element ids are dropped unless a
    reference needs them, so several such figures can share one page.
    """
    tips = _TIPS.get(fig)
    if not tips:
        return None
    from matplotlib import rc_context

    buffer = io.BytesIO()
    with rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg")
    ET.register_namespace("", _SVG)
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    root = ET.fromstring(buffer.getvalue())
    for metadata in root.findall(f"{{{_SVG}}}metadata"):
        root.remove(metadata)
    wanted = {a or b for a, b in _REFERENCE.findall(buffer.getvalue().decode("utf-8"))}
    for element in root.iter():
        if element.tag == f"{{{_SVG}}}style" and element.text:  # matplotlib's own: `*{...}`
            element.text = element.text.replace("*{", f"svg.{FIGURE_CLASS} *{{")
        text = tips.get(element.get("id", ""))
        if text is not None:
            element.set("class", TIP_CLASS)
            title = ET.Element(f"{{{_SVG}}}title")
            title.text = text
            element.insert(0, title)
        if element.get("id") not in wanted:
            element.attrib.pop("id", None)
    label = figure_title(fig)
    root.attrib.pop("height", None)  # the viewBox keeps the shape; the width follows the page
    root.set("width", "100%")
    root.set("class", FIGURE_CLASS)
    root.set("role", "img")
    root.set("aria-label", label)
    heading = ET.Element(f"{{{_SVG}}}title")
    heading.text = label
    style = ET.Element(f"{{{_SVG}}}style")
    style.text = _TIP_STYLE
    root[:0] = [heading, style]
    return ET.tostring(root, encoding="unicode")


def figure_title(fig: Figure) -> str:
    """The figure's title, its text alternative: the figure's own (``suptitle``) when it has one,
    else its first axes' title, else "figure"."""
    own = fig.get_suptitle()
    if own:
        return own
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    return titled[0] if titled else "figure"


#: Colors for phases and components: tab10 without its blue, green and red, which mean the two colors and
#: errors in these figures.
PALETTE = [
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
]


def _phase_colors(phases: Sequence[str]) -> dict[str, str]:
    return {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(phases)}


def _component_colors(components: Sequence[str]) -> dict[str, str]:
    """A component of one color (its name says "(blue)" or "(green)") in that color; the others in
    the palette's order, which leaves blue, green and red out."""
    others = iter(PALETTE * (len(components) // len(PALETTE) + 1))
    return {
        c: next((COLOR_OF[k] for k in COLOR_OF if f"({k})" in c), None) or next(others) for c in components
    }


def _usd(value: float) -> str:
    """A dollar amount for a matplotlib text ("$" alone would start mathtext)."""
    return f"\\${value:,.2f}"


def _ordered_unique(values: pd.Series) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values))


# -- deploy timeline -----------------------------------------------------------------------------


def deploy_timeline(
    events: pd.DataFrame,
    *,
    now: pd.Timestamp | None = None,
    title: str | None = None,
    path: Path | str | None = None,
) -> Figure:
    """Phases as horizontal bars over seconds since the deployment started.

    One deployment: a row per phase, colored by outcome. Several (a ``deployment_id`` column): a row per
    deployment with its phases as colored segments, each from that deployment's own start, to compare them.
    A phase still running (no ``ended_at``) is drawn up to ``now`` (default: the latest time in the table).
    """
    frame = _check(events, "events", {"phase": "str", "started_at": "datetime", "ended_at": "datetime"})
    running = frame["ended_at"].isna()
    last = pd.concat([frame["started_at"], frame["ended_at"].dropna()]).max()
    if now is not None:
        stamp = pd.Timestamp(now)
        last = max(last, stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC"))
    frame["ended_at"] = frame["ended_at"].fillna(last)
    key = (
        "deployment_id" if "deployment_id" in frame.columns and frame["deployment_id"].nunique() > 1 else None
    )
    origin = frame.groupby(key)["started_at"].transform("min") if key else frame["started_at"].min()
    frame["start_s"] = (frame["started_at"] - origin).dt.total_seconds()
    frame["width_s"] = (frame["ended_at"] - frame["started_at"]).dt.total_seconds().clip(lower=0)
    rows = frame[key].nunique() if key else frame["phase"].nunique()
    # Several deployments: the legend lists every phase beside the bars, and must fit the figure.
    legend_rows = frame["phase"].nunique() if key else 0
    fig = _figure(10, max(3.0, 0.45 * rows + 1.6, 0.27 * legend_rows + 1.2))
    ax = fig.add_subplot()
    if key is None:
        phases = _ordered_unique(frame.sort_values("started_at")["phase"])
        outcome = frame["outcome"] if "outcome" in frame.columns else pd.Series("ok", index=frame.index)
        outcome = outcome.where(~running, "running").astype(str)
        for (_, row), state in zip(frame.iterrows(), outcome, strict=True):
            y = phases.index(str(row["phase"]))
            bars = ax.barh(
                y,
                row["width_s"],
                left=row["start_s"],
                height=0.6,
                color=OUTCOME_COLOR.get(state, "#4c72b0"),
                edgecolor="white",
            )
            _tip(fig, bars.patches[0], _phase_tip(str(row["phase"]), row["start_s"], row["width_s"], state))
            ax.annotate(
                f"{row['width_s']:.1f} s" + (" so far" if state == "running" else ""),
                (row["start_s"] + row["width_s"], y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(range(len(phases)), phases)
        from matplotlib.patches import Patch

        shown = [s for s in OUTCOME_COLOR if s in set(outcome)]
        ax.legend(
            handles=[Patch(color=OUTCOME_COLOR[s], label=s) for s in shown],
            title="outcome",
            loc="upper right",
        )
        total = (frame["ended_at"].max() - frame["started_at"].min()).total_seconds()
        ax.set_title(title or f"Deployment timeline: {len(frame)} phases in {total:.1f} s")
        ax.set_xlim(0, max(total, 1.0) * 1.12)  # room for the duration labels
    else:
        deployments = _ordered_unique(frame.sort_values("started_at")[key])
        colors = _phase_colors(_ordered_unique(frame.sort_values("started_at")["phase"]))
        for _, row in frame.iterrows():
            y = deployments.index(str(row[key]))
            bars = ax.barh(
                y,
                row["width_s"],
                left=row["start_s"],
                height=0.6,
                color=colors[str(row["phase"])],
                edgecolor="white",
            )
            state = str(row["outcome"]) if "outcome" in frame.columns else ""
            phase = f"{row[key]}: {row['phase']}"
            _tip(fig, bars.patches[0], _phase_tip(phase, row["start_s"], row["width_s"], state))
        ends = (frame["start_s"] + frame["width_s"]).groupby(frame[key].astype(str)).max()
        for y, deployment in enumerate(deployments):
            end_s = float(ends[deployment])
            ax.annotate(
                f"{end_s:.0f} s",
                (end_s, y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.set_xlim(0, float(ends.max()) * 1.1)  # room for the totals
        ax.set_yticks(range(len(deployments)), deployments)
        from matplotlib.patches import Patch

        ax.legend(
            handles=[Patch(color=c, label=p) for p, c in colors.items()],
            title="phase",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
        ax.set_title(title or f"Deployment timelines: {len(deployments)} deployments")
        ax.set_ylabel("deployment")
    ax.invert_yaxis()  # first phase / deployment on top
    ax.set_xlabel("time since the deployment started (s)")
    ax.grid(axis="x", alpha=0.3)
    return _finish(fig, path)


def _phase_tip(phase: str, start_s: float, width_s: float, outcome: str) -> str:
    ended = f", {outcome}" if outcome and outcome != "nan" else ""
    return f"{phase}: {width_s:.1f} s, from {start_s:.1f} s to {start_s + width_s:.1f} s{ended}"


# -- traffic, errors and latency over time -------------------------------------------------------

PROBE_COLUMNS = {
    "elapsed_s": "number",
    "status": "number",
    "ok": "bool",
    "color": "str",
    "version": "str",
    "latency_ms": "number",
    "phase": "str",
}


def _bin_width(span_s: float, target_bins: int = 60) -> float:
    """A round bin width giving about ``target_bins`` bins over ``span_s`` seconds."""
    for width in (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span_s / width <= target_bins:
            return float(width)
    return 1800.0


def traffic_over_time(
    probe: pd.DataFrame,
    weights: pd.DataFrame,
    *,
    new_color: str = "green",
    bin_s: float | None = None,
    title: str | None = None,
    path: Path | str | None = None,
) -> Figure:
    """Four rows sharing the time axis: the phase strip; the configured weight of ``new_color`` with the
    share of responses it actually served; the error rate; latency p50 and p95.

    Requests are grouped in ``bin_s``-second bins (default: a round width giving about 60 bins).
    """
    frame = _check(probe, "probe", PROBE_COLUMNS)
    steps = _check(weights, "weights", {"time_s": "number", "weight": "number"}).sort_values("time_s")
    if ((steps["weight"] < 0) | (steps["weight"] > 100)).any():
        raise PlotInputError(
            "weights: weight must be a percentage between 0 and 100.",
            hint="Give the new color's share of traffic, e.g. 0, 10, 50, 100.",
        )
    start, end = float(frame["elapsed_s"].min()), float(frame["elapsed_s"].max())
    width = bin_s or _bin_width(max(end - start, 1.0))
    frame["bin"] = ((frame["elapsed_s"] - start) // width) * width + start + width / 2
    grouped = frame.groupby("bin")
    per_bin = pd.DataFrame(
        {
            "requests": grouped.size(),
            "error_pct": 100 * (1 - grouped["ok"].mean()),
            "served_new_pct": 100 * grouped["color"].apply(lambda c: float((c == new_color).mean())),
            "p50": grouped["latency_ms"].quantile(0.50),
            "p95": grouped["latency_ms"].quantile(0.95),
        }
    )

    fig = _figure(11, 8.5)
    grid = fig.add_gridspec(4, 1, height_ratios=[0.45, 1.4, 1, 1])
    ax_phase = fig.add_subplot(grid[0])
    ax_weight = fig.add_subplot(grid[1], sharex=ax_phase)
    ax_err = fig.add_subplot(grid[2], sharex=ax_phase)
    ax_lat = fig.add_subplot(grid[3], sharex=ax_phase)

    # phase strip: contiguous runs of the probe's phase column
    ordered = frame.sort_values("elapsed_s")
    run_id = (ordered["phase"] != ordered["phase"].shift()).cumsum()
    runs = ordered.groupby(run_id).agg(
        phase=("phase", "first"), t0=("elapsed_s", "min"), t1=("elapsed_s", "max")
    )
    colors = _phase_colors(_ordered_unique(runs["phase"]))
    for phase, t0, t1 in zip(
        runs["phase"].astype(str), runs["t0"].astype(float), runs["t1"].astype(float), strict=True
    ):
        ax_phase.broken_barh([(t0, max(t1 - t0, width / 4))], (0, 1), color=colors[phase])
    from matplotlib.patches import Patch

    ax_phase.legend(
        handles=[Patch(color=c, label=p) for p, c in colors.items()],
        title="phase",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.15),
        fontsize=8,
        title_fontsize=8,
    )
    ax_phase.set_yticks([])
    ax_phase.set_ylabel("phase", rotation=0, ha="right", va="center")
    fig.suptitle(
        title
        or f"Traffic shift to {new_color}: weight, errors and latency "
        f"({len(frame):,} requests, {width:g} s bins)"
    )

    # configured weight (a step function held until the next change) and what the probe observed
    times = [*steps["time_s"], max(end, float(steps["time_s"].max()))]
    values = [*steps["weight"], float(steps["weight"].iloc[-1])]
    ax_weight.step(
        times, values, where="post", color="black", linewidth=2, label=f"configured {new_color} weight"
    )
    ax_weight.plot(
        per_bin.index,
        per_bin["served_new_pct"],
        "o",
        markersize=3,
        color=COLOR_OF.get(new_color, "#2ca02c"),
        label=f"responses served by {new_color}",
    )
    ax_weight.set_ylim(-5, 105)
    # Each time bin, hovered, gives its figures: an invisible column over the weight panel.
    configured = steps["weight"].to_numpy(dtype=float)
    changed = steps["time_s"].to_numpy(dtype=float)
    for center, row in zip(per_bin.index.astype(float), per_bin.itertuples(), strict=True):
        at = max(int(np.searchsorted(changed, center, side="right")) - 1, 0)
        # A face of almost no opacity: a browser sends hover only to painted shapes, and matplotlib
        # leaves out a face that is wholly transparent.
        column = ax_weight.axvspan(
            center - width / 2, center + width / 2, facecolor=(0.0, 0.0, 0.0, 0.001), edgecolor="none"
        )
        _tip(
            fig,
            column,
            f"{center - width / 2:.1f} to {center + width / 2:.1f} s: {row.requests} requests, "
            f"{row.served_new_pct:.0f} % served by {new_color} (configured {configured[at]:g} %), "
            f"{row.error_pct:.1f} % failed, p50 {row.p50:.1f} ms, p95 {row.p95:.1f} ms",
        )
    ax_weight.set_ylabel(f"{new_color} share (%)")
    ax_weight.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)

    ax_err.plot(per_bin.index, per_bin["error_pct"], color="#d62728", label="failed requests")
    ax_err.fill_between(per_bin.index, per_bin["error_pct"], color="#d62728", alpha=0.2)
    ax_err.set_ylim(bottom=0, top=max(5.0, float(per_bin["error_pct"].max()) * 1.15))
    ax_err.set_ylabel("errors (%)")
    ax_err.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)

    ax_lat.plot(per_bin.index, per_bin["p50"], color="#4c72b0", label="p50")
    ax_lat.plot(per_bin.index, per_bin["p95"], color="#dd8452", label="p95")
    ax_lat.set_ylim(bottom=0)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel("time since the probe started (s)")
    ax_lat.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)

    for ax in (ax_phase, ax_weight, ax_err):
        ax.tick_params(labelbottom=False)
    for ax in (ax_weight, ax_err, ax_lat):
        ax.grid(alpha=0.3)
    return _finish(fig, path)


def latency_percentiles(
    probe: pd.DataFrame,
    *,
    by: str = "version",
    percentiles: Sequence[float] = (50, 90, 95, 99),
    title: str | None = None,
    path: Path | str | None = None,
) -> Figure:
    """Latency percentiles of successful responses, grouped by ``by``: ``version``, ``color`` or ``phase``."""
    if by not in ("version", "color", "phase"):
        raise PlotInputError(
            f"by={by!r} is not a probe column to group on.", hint="Use version, color or phase."
        )
    frame = _check(probe, "probe", PROBE_COLUMNS)
    ok = frame[frame["ok"]]
    if ok.empty:
        raise PlotInputError(
            "probe has no successful requests, so there is no latency to plot.",
            hint="Check the probe's status column.",
        )
    groups = _ordered_unique(ok.sort_values("elapsed_s")[by])
    table = pd.DataFrame(
        {
            f"p{p:g}": [float(np.percentile(ok.loc[ok[by] == g, "latency_ms"], p)) for g in groups]
            for p in percentiles
        },
        index=groups,
    )
    fig = _figure(9, 4.8)
    ax = fig.add_subplot()
    bar_w = 0.8 / len(table.columns)
    x = np.arange(len(groups))
    for i, column in enumerate(table.columns):
        offset = (i - (len(table.columns) - 1) / 2) * bar_w
        bars = ax.bar(x + offset, table[column], bar_w, label=column, color=PALETTE[i % len(PALETTE)])
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
    counts = ok.groupby(by).size()
    ax.set_xticks(x, [f"{g}\n({counts[g]:,} ok)" for g in groups])
    ax.set_xlabel(by)
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(0, float(table.to_numpy().max()) * 1.15)
    ax.legend(title="percentile", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or f"Latency percentiles by {by} (successful requests)")
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, path)


# -- cost ----------------------------------------------------------------------------------------


def cost_by_component(
    items: pd.DataFrame | CostEstimate,
    *,
    goal_usd: float = COST_GOAL_USD,
    title: str | None = None,
    path: Path | str | None = None,
) -> Figure:
    """Monthly USD per component (bars, largest on top) and the stacked total against the goal line."""
    frame = items if isinstance(items, pd.DataFrame) else items.items
    frame = _check(frame, "cost items", {"component": "str", "monthly_usd": "number"})
    by = frame.groupby("component")["monthly_usd"].sum().sort_values(ascending=True)
    total = float(by.sum())
    fig = _figure(11, max(4.0, 0.38 * len(by) + 1.8))
    grid = fig.add_gridspec(1, 2, width_ratios=[3.2, 1])
    ax = fig.add_subplot(grid[0])
    ax_total = fig.add_subplot(grid[1])
    colors = _component_colors(list(by.index[::-1]))
    bars = ax.barh(by.index, by.to_numpy(), color=[colors[c] for c in by.index])
    ax.bar_label(bars, labels=[_usd(v) for v in by.to_numpy()], padding=3, fontsize=8)
    ax.set_xlim(0, float(by.max()) * 1.2 if by.max() > 0 else 1)
    ax.set_xlabel("USD per month")
    ax.set_title("By component")
    ax.grid(axis="x", alpha=0.3)

    bottom = 0.0
    for component, usd in zip(by.index[::-1], by.to_numpy()[::-1], strict=True):
        ax_total.bar(0, usd, bottom=bottom, color=colors[str(component)], width=0.6, edgecolor="white")
        bottom += float(usd)
    ax_total.axhline(
        goal_usd, color="#d62728", linestyle="--", linewidth=1.5, label=f"goal {_usd(goal_usd)}/month"
    )
    over = total - goal_usd
    if over > 0:  # the part above the goal, marked on the bar and named
        ax_total.bar(0, over, bottom=goal_usd, width=0.6, fill=False, hatch="///", edgecolor="#d62728",
                     label=f"over by {_usd(over)}")  # fmt: skip
        ax_total.annotate(f"+{_usd(over)}", (0.3, total), xytext=(4, 0), textcoords="offset points",
                          va="center", color="#d62728", fontsize=8)  # fmt: skip
    ax_total.set_xticks([0], [f"total\n{_usd(total)}"])
    ax_total.set_xlim(-0.6, 0.6)
    ax_total.set_ylim(0, max(total, goal_usd) * 1.18)
    ax_total.set_ylabel("USD per month")
    ax_total.set_title("Total vs goal")
    ax_total.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8, frameon=False)
    verdict = (
        f"within the {_usd(goal_usd)} goal"
        if over <= 0
        else f"OVER the {_usd(goal_usd)} goal by {_usd(over)}"
    )
    # A lesson's own title keeps the verdict: a figure over the goal must say so whatever its title.
    fig.suptitle(f"{title}\n{_usd(total)}, {verdict}" if title else f"Monthly cost: {_usd(total)}, {verdict}")
    return _finish(fig, path)


# -- deployments ---------------------------------------------------------------------------------

DEPLOYMENT_COLUMNS = {"id": "str", "status": "str", "started_at": "datetime", "ended_at": "datetime"}


def _deployments(deployments: pd.DataFrame) -> pd.DataFrame:
    frame = _check(deployments, "deployments", DEPLOYMENT_COLUMNS)
    frame["ended_at"] = pd.to_datetime(frame["ended_at"], utc=True)
    unknown = sorted(set(frame["status"]) - set(STATUS_COLOR))
    if unknown:
        raise PlotInputError(
            f"deployments: unknown status value(s) {', '.join(map(str, unknown))}.",
            hint=f"Use {', '.join(STATUS_COLOR)}.",
        )
    if "duration_s" not in frame.columns:
        frame["duration_s"] = (frame["ended_at"] - frame["started_at"]).dt.total_seconds()
    return frame.sort_values("started_at").reset_index(drop=True)


def deploy_durations(
    deployments: pd.DataFrame,
    *,
    goal_s: float = DEPLOY_GOAL_S,
    title: str | None = None,
    path: Path | str | None = None,
) -> Figure:
    """Each finished deployment's duration in minutes, colored by status, against the goal line."""
    frame = _deployments(deployments)
    frame = frame[frame["duration_s"].notna()].reset_index(drop=True)
    if frame.empty:
        raise PlotInputError(
            "deployments has no finished deployment (no duration).", hint="Finish one first."
        )
    minutes = frame["duration_s"] / 60
    fig = _figure(max(8.0, min(16.0, 0.35 * len(frame) + 4)), 4.8)
    ax = fig.add_subplot()
    x = np.arange(len(frame))
    ax.bar(x, minutes, color=[STATUS_COLOR[s] for s in frame["status"]], width=0.7)
    ax.axhline(goal_s / 60, color="black", linestyle="--", linewidth=1.2, label=f"goal: {goal_s / 60:g} min")
    names = frame["version"].fillna(frame["id"]) if "version" in frame.columns else frame["id"]
    labels = [f"{name}\n{start:%m-%d %H:%M}" for name, start in zip(names, frame["started_at"], strict=True)]
    step = max(1, len(labels) // 20)  # at most about 20 labels, so they never overlap
    ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right", fontsize=8)
    from matplotlib.patches import Patch

    handles = [Patch(color=STATUS_COLOR[s], label=s) for s in STATUS_COLOR if s in set(frame["status"])]
    ax.legend(
        handles=[*handles, *ax.get_legend_handles_labels()[0]], loc="upper left", bbox_to_anchor=(1.01, 1.0)
    )
    within = int((frame["duration_s"] <= goal_s).sum())
    ax.set_title(title or f"Deploy durations: {within} of {len(frame)} within {goal_s / 60:g} minutes")
    ax.set_xlabel("deployment (version, start time UTC)")
    ax.set_ylabel("duration (min)")
    ax.set_ylim(0, max(float(minutes.max()), goal_s / 60) * 1.15)
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, path)


def dora_table(deployments: pd.DataFrame, *, freq: str = "W") -> pd.DataFrame:
    """DORA-style figures per period (``freq``: a pandas period alias, ``D``, ``W`` or ``M``).

    - ``deploys``: deployments started in the period;
    - ``change_failure_pct``: finished ones that were rolled back or aborted, in percent;
    - ``restore_min``: median minutes from the start of a failed deployment to the end of its rollback (the
      window in which the bad change could serve traffic: an upper bound on time to restore);
    - ``lead_time_h``: median hours from ``committed_at`` to the end of a successful deployment, when the
      table has a ``committed_at`` column (else NaN).
    """
    frame = _deployments(deployments)
    start = frame["started_at"].dt.tz_localize(None)  # periods are UTC days/weeks/months
    frame["period"] = start.dt.to_period(freq).dt.start_time
    finished = frame[frame["status"] != "in_progress"]
    failed = frame[frame["status"].isin(FAILED_STATUSES)]
    table = pd.DataFrame({"deploys": frame.groupby("period").size()})
    table["failed"] = failed.groupby("period").size()
    table["finished"] = finished.groupby("period").size()
    table = table.fillna(0)
    table["change_failure_pct"] = 100 * table["failed"] / table["finished"].where(table["finished"] > 0)
    table["restore_min"] = failed.groupby("period")["duration_s"].median() / 60
    if "committed_at" in frame.columns:
        ok = frame[frame["status"] == "succeeded"].copy()
        committed = pd.to_datetime(ok["committed_at"], utc=True)
        ok["lead_h"] = (ok["ended_at"] - committed).dt.total_seconds() / 3600
        table["lead_time_h"] = ok.groupby("period")["lead_h"].median()
    else:
        table["lead_time_h"] = np.nan
    full = pd.period_range(table.index.min(), table.index.max(), freq=freq).start_time
    table = table.reindex(full)
    table[["deploys", "failed", "finished"]] = table[["deploys", "failed", "finished"]].fillna(0).astype(int)
    table.index.name = "period"
    return table


def dora_metrics(
    deployments: pd.DataFrame,
    *,
    freq: str = "W",
    title: str | None = None,
    path: Path | str | None = None,
) -> Figure:
    """Deploy frequency, change failure rate, time to restore and lead time per period.

    The figures come from :func:`dora_table`.
    """
    table = dora_table(deployments, freq=freq)
    per = {"D": "day", "W": "week", "M": "month"}.get(freq, freq)
    fig = _figure(12, 7.5)
    axes = fig.subplots(2, 2, sharex=True)
    labels = [f"{p:%Y-%m-%d}" for p in table.index]
    x = np.arange(len(table))

    def panel(ax: Axes, values: pd.Series, color: str, ylabel: str, heading: str, fmt: str) -> None:
        present = values.notna()
        bars = ax.bar(x[present.to_numpy()], values[present], color=color, width=0.7)
        if len(x) <= 16:  # beyond that, value labels would run into each other
            ax.bar_label(bars, labels=[fmt.format(v) for v in values[present]], fontsize=8, padding=2)
        ax.set_ylabel(ylabel)
        ax.set_title(heading)
        top = float(values.max()) if present.any() else 1.0
        ax.set_ylim(0, (top or 1.0) * 1.2)
        ax.grid(axis="y", alpha=0.3)
        if not present.any():
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")

    totals = _deployments(deployments)
    n_failed = int(totals["status"].isin(FAILED_STATUSES).sum())
    n_finished = int((totals["status"] != "in_progress").sum())
    rate = 100 * n_failed / n_finished if n_finished else float("nan")
    panel(
        axes[0, 0],
        table["deploys"].astype(float),
        "#4c72b0",
        f"deployments per {per}",
        f"Deploy frequency ({len(totals)} in total)",
        "{:.0f}",
    )
    panel(
        axes[0, 1],
        table["change_failure_pct"],
        "#d62728",
        "failed (%)",
        f"Change failure rate ({n_failed} of {n_finished} finished, {rate:.0f}%)",
        "{:.0f}%",
    )
    panel(
        axes[1, 0],
        table["restore_min"],
        "#dd8452",
        "median minutes",
        "Time to restore (start of a failed deploy to the end of its rollback)",
        "{:.1f}",
    )
    if table["lead_time_h"].notna().any():
        panel(
            axes[1, 1],
            table["lead_time_h"],
            "#55a868",
            "median hours",
            "Lead time (commit to successful deploy)",
            "{:.1f}",
        )
    else:
        ax = axes[1, 1]
        ax.set_title("Lead time (commit to successful deploy)")
        ax.set_ylabel("median hours")
        ax.text(
            0.5,
            0.5,
            "needs a committed_at column\nin the deployments table",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="gray",
        )
        ax.set_yticks([])
    step = max(1, len(labels) // 12)
    for ax in axes[1]:
        ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right", fontsize=8)
        ax.set_xlabel(f"{per} starting (UTC)")
    fig.suptitle(title or f"DORA-style metrics per {per}")
    return _finish(fig, path)


#: The moments of a drill, in the order they happen, and how each is drawn.
DRILL_MOMENTS = {"injected": "#d62728", "detected": "#ff7f0e", "recovered": "#2ca02c", "verified": "#17becf"}


def drill_timeline(
    moments: pd.DataFrame,
    traffic: pd.DataFrame,
    *,
    title: str | None = None,
    path: Path | str | None = None,
) -> Figure:
    """One row per drill over seconds since its injection: requests answered and failed per time bin
    (the probe's), and a line at each moment (injected, detected, recovered, verified).

    ``moments``: columns drill, moment, seconds. ``traffic``: columns drill, seconds, ok (one row per
    request). :meth:`labkit.ops.drill.DrillReport.moments` and ``.traffic`` give both.
    """
    marks = _check(moments, "moments", {"drill": "str", "moment": "str", "seconds": "number"})
    requests = _check(traffic, "traffic", {"drill": "str", "seconds": "number", "ok": "bool"})
    drills = _ordered_unique(marks["drill"])
    fig = _figure(10, 1.0 + 2.0 * len(drills))
    axes = fig.subplots(len(drills), 1, squeeze=False)[:, 0]
    span = max(float(marks["seconds"].max()), float(requests["seconds"].max()), 1.0)
    width = _bin_width(span)
    edges = np.arange(min(0.0, float(requests["seconds"].min())), span + width, width)
    for ax, drill in zip(axes, drills, strict=True):
        own = requests[requests["drill"] == drill]
        ok_counts, _ = np.histogram(own.loc[own["ok"], "seconds"], bins=edges)
        bad_counts, _ = np.histogram(own.loc[~own["ok"], "seconds"], bins=edges)
        ax.bar(edges[:-1], ok_counts / width, width=width, align="edge", color="#c7c7c7", label="answered")
        ax.bar(
            edges[:-1], bad_counts / width, width=width, align="edge", bottom=ok_counts / width,
            color="#d62728", label="failed",
        )  # fmt: skip
        for _, row in marks[marks["drill"] == drill].iterrows():
            color = DRILL_MOMENTS.get(str(row["moment"]), "#7f7f7f")
            ax.axvline(float(row["seconds"]), color=color, linestyle="--", linewidth=1.2)
            at = float(row["seconds"])
            ax.annotate(
                f"{row['moment']} {at:.0f} s", (at, 1.0), xycoords=("data", "axes fraction"),
                rotation=90, va="top", ha="right", fontsize=8, color=color,
            )  # fmt: skip
        failed = int((~own["ok"]).sum())
        ax.set_title(f"{drill}: {failed} of {len(own)} requests failed", fontsize=10, loc="left")
        ax.set_ylabel("requests / s")
        ax.set_xlim(edges[0], edges[-1])
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("seconds since the injection")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
