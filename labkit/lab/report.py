"""``labkit report``: a run folder's executed notebooks and figures as a static site.

A run folder is what ``labkit run`` writes (``runs/<timestamp>/``): executed notebooks, whose papermill
metadata holds their parameters, wall time and whether they failed, and the PNG figures the notebooks saved
there. The site is one ``index.html`` (a table of the notebooks, then every figure) beside one HTML page per
notebook, all relative links, so the folder can be opened from disk or published as it is.
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError
from labkit.lab.run import runs_root


@dataclass(frozen=True)
class RenderedNotebook:
    """One executed notebook in the report."""

    name: str
    page: str  # the HTML file, relative to the site folder
    ok: bool
    seconds: float | None
    parameters: dict[str, Any]


def latest_run(root: Path | None = None) -> Path:
    """The newest ``runs/<timestamp>`` folder that holds executed notebooks."""
    root = root or runs_root()
    runs = sorted(p for p in root.glob("*") if p.is_dir() and any(p.glob("*.ipynb")))
    if not runs:
        raise ConfigError(
            f"No run folder with executed notebooks under {root}.",
            hint="Run some first: labkit run notebooks/ (or give the folder: labkit report PATH).",
        )
    return runs[-1]


def _render_notebook(source: Path, page: Path) -> RenderedNotebook:
    from nbconvert import HTMLExporter

    doc = json.loads(source.read_text(encoding="utf-8"))
    meta = doc.get("metadata", {}).get("papermill", {})
    exporter = HTMLExporter(template_name="lab")  # type: ignore[no-untyped-call]  # nbconvert is untyped
    body, _ = exporter.from_filename(str(source))
    page.write_text(body, encoding="utf-8")
    seconds = meta.get("duration")
    return RenderedNotebook(
        name=source.name,
        page=page.name,
        ok=not meta.get("exception"),
        seconds=float(seconds) if seconds is not None else None,
        parameters=dict(meta.get("parameters") or {}),
    )


def _index(run_dir: Path, notebooks: list[RenderedNotebook], figures: list[str]) -> str:
    esc = html.escape
    rows = "\n".join(
        f"<tr><td><a href='{esc(nb.page)}'>{esc(nb.name)}</a></td>"
        f"<td class='{'ok' if nb.ok else 'failed'}'>{'ok' if nb.ok else 'FAILED'}</td>"
        f"<td>{'' if nb.seconds is None else f'{nb.seconds:.1f} s'}</td>"
        f"<td><code>{esc(', '.join(f'{k}={v!r}' for k, v in nb.parameters.items()))}</code></td></tr>"
        for nb in notebooks
    )
    gallery = "\n".join(
        f"<figure><img src='figures/{esc(name)}' alt='{esc(name)}'>"
        f"<figcaption>{esc(name)}</figcaption></figure>"
        for name in figures
    )
    total = sum(nb.seconds or 0.0 for nb in notebooks)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Blue/Green Lab: {esc(run_dir.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .4rem .6rem; text-align: left; }}
.ok {{ color: #2a7d2a; }} .failed {{ color: #c62828; font-weight: bold; }}
figure {{ margin: 2rem 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head><body>
<h1>Blue/Green Lab: run {esc(run_dir.name)}</h1>
<p>{len(notebooks)} notebook(s), {sum(nb.ok for nb in notebooks)} ok, {total:.1f} s of notebook time.</p>
<table><tr><th>notebook</th><th>status</th><th>wall time</th><th>parameters</th></tr>
{rows}
</table>
<h2>Figures</h2>
{gallery or "<p>No figures in this run.</p>"}
</body></html>
"""


def render_report(run_dir: Path | str | None = None, out_dir: Path | str | None = None) -> Path:
    """Render a run folder (default: the newest) to ``out_dir`` (default: ``<run>/site``).

    Returns the path of ``index.html``.
    """
    run = Path(run_dir) if run_dir else latest_run()
    notebooks = sorted(run.glob("*.ipynb"))
    if not notebooks:
        raise ConfigError(
            f"{run} holds no executed notebooks.", hint="Give a folder that `labkit run` wrote."
        )
    site = Path(out_dir) if out_dir else run / "site"
    (site / "figures").mkdir(parents=True, exist_ok=True)
    rendered = [_render_notebook(nb, site / f"{nb.stem}.html") for nb in notebooks]
    figures = sorted(p.name for p in run.glob("*.png"))
    for name in figures:
        shutil.copy2(run / name, site / "figures" / name)
    index = site / "index.html"
    index.write_text(_index(run, rendered, figures), encoding="utf-8")
    return index
