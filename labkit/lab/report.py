"""``labkit report``: a run folder as a static site, built with MkDocs and its Material theme.

Why MkDocs Material: it is what much of the Jupyter world documents itself with (Jupyter's own
projects, and notebooks through mkdocs-jupyter), it installs with pip as pure-Python wheels, and it
builds and serves offline: ``font: false`` keeps Google Fonts out, the icons are inline SVG and search
is its own lunr index, fetched from the site (so it needs the site served over HTTP, as published or
``python -m http.server``; the pages themselves also read from ``file://``). Its ``offline`` plugin,
which would make search work from ``file://``, loads a shim from unpkg.com, so it is left out. It gives
navigation, search, and a light and a dark palette with a toggle. Jupyter Book 1 builds on Sphinx
and a larger stack; mkdocs-jupyter's pages load MathJax from a CDN, leave figures without alt text and
keep one fixed notebook style whichever palette is on. So each executed notebook is written here as
Markdown (its cells, their text and tables, each figure as a PNG whose alt text is the title the
lesson gave it) and the theme renders it like every other page.

The site (``RUN/site/`` unless told otherwise): a landing page with the architecture the run built
(:mod:`labkit.lab.diagram`) and its headline figures (:mod:`labkit.lab.runfacts`), each linked to the
lesson that measured it; the lessons as chapters; the ledger and, when the run has lesson 10, the drill
scoreboard; the runbooks with what each fixes; the roadmap. Figures are PNG with alt text, except the
deploy timelines and traffic figures, which are inline SVG that show each bar's or time bin's figures on
hover (:func:`labkit.lab.plots.figure_svg`).
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError, SiteError
from labkit.lab.check import cell_source
from labkit.lab.diagram import architecture_svg, boxes
from labkit.lab.run import runs_root
from labkit.lab.runfacts import Figure, RunFacts, Table

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STATUSES = ("Done", "Partly", "Planned", "Future")


@dataclass(frozen=True)
class RunbookPage:
    """A runbook to list: its name, what it fixes (its ``**Fixes:**`` line) and its notebook."""

    name: str
    fixes: str
    path: Path


def latest_run(root: Path | None = None) -> Path:
    """The newest ``runs/<timestamp>`` folder that holds executed notebooks."""
    root = root or runs_root()
    runs = sorted(p for p in root.glob("[0-9]*") if p.is_dir() and any(p.glob("*.ipynb")))
    if not runs:
        raise ConfigError(
            f"No run folder with executed notebooks under {root}.",
            hint="Run some first: labkit run notebooks/ (or give the folder: labkit report PATH).",
        )
    return runs[-1]


def build_site(
    run_dir: Path | str | None = None,
    out_dir: Path | str | None = None,
    *,
    runbooks: Sequence[RunbookPage] = (),
    roadmap: Path | None = None,
) -> Path:
    """Build the site of a run folder (default: the newest) into ``out_dir`` (default: ``RUN/site``).

    Returns the path of its ``index.html``.
    """
    run = Path(run_dir) if run_dir else latest_run()
    facts = RunFacts.read(run)
    if not facts.lessons:
        raise ConfigError(
            f"{run} holds no executed notebooks.", hint="Give a folder that `labkit run` wrote."
        )
    site = Path(out_dir) if out_dir else run / "site"
    _check_out_dir(site, run)
    with tempfile.TemporaryDirectory(prefix="labkit-site-") as tmp:
        docs = Path(tmp) / "docs"
        (docs / "figures").mkdir(parents=True)
        nav: list[Any] = [{"Home": "index.md"}]
        chapters = []
        for lesson in facts.lessons:
            page = f"{lesson.name}.md"
            (docs / page).write_text(notebook_markdown(lesson.path, docs / "figures"), encoding="utf-8")
            chapters.append({_title(lesson.path): page})
        nav.append({"Lessons": chapters})
        ledger = facts.ledger()
        if ledger is not None:
            page = _ledger_page(ledger, run, docs, chapter=str(facts.name_of("08")))
            (docs / "ledger.md").write_text(page, encoding="utf-8")
            nav.append({"Ledger": "ledger.md"})
        drills = facts.drills()
        if drills is not None:
            page = _drills_page(drills, run, docs, chapter=str(facts.name_of("10")))
            (docs / "drills.md").write_text(page, encoding="utf-8")
            nav.append({"Drills": "drills.md"})
        if runbooks:
            pages = [{"All runbooks": "runbooks.md"}]
            for book in runbooks:
                (docs / f"runbook-{book.name}.md").write_text(
                    notebook_markdown(book.path, docs / "figures"), encoding="utf-8"
                )
                pages.append({book.name: f"runbook-{book.name}.md"})
            (docs / "runbooks.md").write_text(_runbooks_page(runbooks), encoding="utf-8")
            nav.append({"Runbooks": pages})
        statuses: Counter[str] = Counter()
        if roadmap is not None and roadmap.is_file():
            text = roadmap.read_text(encoding="utf-8")
            statuses = roadmap_statuses(text)
            (docs / "roadmap.md").write_text(text, encoding="utf-8")
            nav.append({"Roadmap": "roadmap.md"})
        svg = architecture_svg(facts.built(), title=f"What run {run.name} built")
        if svg:
            (docs / "architecture.svg").write_text(svg, encoding="utf-8")
        (docs / "index.md").write_text(_landing(facts, bool(svg), statuses), encoding="utf-8")
        (docs / "stylesheets").mkdir()
        (docs / "stylesheets" / "labkit.css").write_text(SITE_CSS, encoding="utf-8")
        config = Path(tmp) / "mkdocs.yml"  # JSON is YAML: no YAML writer needed
        config.write_text(json.dumps(_mkdocs_config(run, docs, site, nav), indent=1), encoding="utf-8")
        _mkdocs_build(config)
    return site / "index.html"


def _check_out_dir(site: Path, run: Path) -> None:
    """MkDocs empties the site folder before it builds: refuse one that holds the run or other files."""
    if site.resolve() == run.resolve() or site.resolve() in run.resolve().parents:
        raise SiteError(
            f"The site folder {site} holds the run folder {run}, which building would empty.",
            hint="Give another --out, or none (the site then goes to RUN_DIR/site).",
        )
    if site.is_dir() and any(site.iterdir()) and not (site / "sitemap.xml").is_file():
        raise SiteError(
            f"{site} already holds files that are not a site labkit built; building would delete them.",
            hint="Give an empty or new folder as --out.",
        )


#: The old name, which ``labkit.render_report`` exports.
render_report = build_site


#: What the site changes in the theme. Its light palette's secondary text (the search panel's "Type to
#: start searching", say) is black at 54 % on a light grey: 4.42:1, under WCAG AA's 4.5:1, as the
#: suite's contrast check found. At 62 % it passes; the dark palette passes as it is.
SITE_CSS = """[data-md-color-scheme="default"] {
  --md-default-fg-color--light: rgba(0, 0, 0, 0.62);
}
"""


def _mkdocs_config(run: Path, docs: Path, site: Path, nav: list[Any]) -> dict[str, Any]:
    return {
        "site_name": f"Blue/Green Lab: run {run.name}",
        "docs_dir": str(docs),
        "site_dir": str(site.resolve()),
        "use_directory_urls": False,
        "nav": nav,
        "theme": {
            "name": "material",
            "font": False,  # no Google Fonts: the site builds and reads offline
            "features": ["navigation.sections", "navigation.top", "search.highlight", "toc.follow"],
            "palette": [
                {
                    "media": "(prefers-color-scheme: light)",
                    "scheme": "default",
                    "toggle": {"icon": "material/brightness-7", "name": "Switch to dark mode"},
                },
                {
                    "media": "(prefers-color-scheme: dark)",
                    "scheme": "slate",
                    "toggle": {"icon": "material/brightness-4", "name": "Switch to light mode"},
                },
            ],
        },
        "extra_css": ["stylesheets/labkit.css"],
        "plugins": ["search"],
        "markdown_extensions": [
            "tables",
            "attr_list",
            "md_in_html",
            "admonition",
            "pymdownx.superfences",
            {"toc": {"permalink": True}},
        ],
    }


def _mkdocs_build(config: Path) -> None:
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    try:
        build(load_config(config_file=str(config)))
    except MkDocsException as exc:
        raise SiteError(
            f"MkDocs could not build the site: {exc}", hint="Check the run folder's notebooks."
        ) from exc


# -- notebooks as Markdown ----------------------------------------------------------------------------


def _title(notebook: Path) -> str:
    """The notebook's first heading (``06 · Shifting traffic: a canary deploy``), else its name."""
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        if cell.get("cell_type") == "markdown":
            for line in cell_source(cell).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return notebook.stem


def _fence(text: str, language: str = "") -> str:
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{ticks}{language}\n{text.rstrip()}\n{ticks}\n"


def figure_title(output: dict[str, Any]) -> str:
    """What a figure output is of: the title its text form carries (``<Canary deploy of 1.1.0>``, how
    labkit's plots print), without matplotlib's escapes."""
    text = "".join(output.get("data", {}).get("text/plain", "")).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    text = " ".join(text.replace("\\$", "$").split())
    return "" if text.startswith(("Figure size", "matplotlib")) else text


def notebook_markdown(notebook: Path, figures: Path) -> str:
    """A notebook as Markdown: its markdown cells as they are, each code cell's source, then its outputs
    (text, HTML tables, figures written to ``figures/`` with their title as alt text)."""
    doc = json.loads(notebook.read_text(encoding="utf-8"))
    parts = []
    for index, cell in enumerate(doc["cells"]):
        source = cell_source(cell)
        if cell.get("cell_type") == "markdown":
            parts.append(source + "\n")
            continue
        if cell.get("cell_type") != "code":
            continue
        if source.strip():
            parts.append(_fence(source, "python"))
        for n, output in enumerate(_merged_streams(cell.get("outputs", []))):
            parts.append(_output_markdown(output, figures, f"{notebook.stem}-{index}-{n}", notebook.stem))
    return "\n".join(p for p in parts if p)


def _merged_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outputs with each run of one stream's pieces joined: a cell that prints as it goes leaves
    dozens of them, which read as one block."""
    merged: list[dict[str, Any]] = []
    for output in outputs:
        last = merged[-1] if merged else {}
        if (
            output.get("output_type") == "stream"
            and last.get("output_type") == "stream"
            and (last.get("name") == output.get("name"))
        ):
            merged[-1] = {**last, "text": "".join(last["text"]) + "".join(output.get("text", ""))}
        else:
            merged.append(output)
    return merged


def _output_markdown(output: dict[str, Any], figures: Path, name: str, chapter: str) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        text = _ANSI.sub("", "".join(output.get("text", "")))
        return _fence(text, "text") if text.strip() else ""
    if kind == "error":
        trace = _ANSI.sub("", "\n".join(output.get("traceback", [])))
        return _fence(trace or f"{output.get('ename')}: {output.get('evalue')}", "text")
    data = output.get("data", {})
    if "image/svg+xml" in data:  # an interactive figure (labkit.plots.figure_svg): inline, to hover
        svg = "".join(data["image/svg+xml"])
        (figures / f"{name}.svg").write_text(svg, encoding="utf-8")
        return _inline_figure(svg, figure_title(output) or f"A figure of {chapter}")
    if "image/png" in data:
        (figures / f"{name}.png").write_bytes(base64.b64decode("".join(data["image/png"])))
        alt = figure_title(output) or f"A figure of {chapter}"
        return _figure(f"figures/{name}.png", alt)
    if "text/html" in data:
        return f'<div class="output-html">\n{"".join(data["text/html"]).strip()}\n</div>\n'
    if "text/markdown" in data:
        return "".join(data["text/markdown"]) + "\n"
    text = "".join(data.get("text/plain", ""))
    return _fence(text, "text") if text.strip() else ""


# -- pages ----------------------------------------------------------------------------------------


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table, *, drop_unnamed: bool = True) -> str:
    """A parsed table as a Markdown table (pandas' unnamed index column left out)."""
    keep = [i for i, c in enumerate(table.columns) if c or not drop_unnamed]
    lines = [
        "| " + " | ".join(_cell(table.columns[i]) for i in keep) + " |",
        "|" + "---|" * len(keep),
    ]
    lines += [
        "| " + " | ".join(_cell(row[i]) if i < len(row) else "" for i in keep) + " |" for row in table.rows
    ]
    return "\n".join(lines) + "\n"


def _copy_figure(run: Path, docs: Path, name: str, alt: str) -> str:
    """A figure the run saved, inline when the plot also saved it as an interactive SVG."""
    if (run / name).with_suffix(".svg").is_file():
        return _inline_figure((run / name).with_suffix(".svg").read_text(encoding="utf-8"), alt)
    if not (run / name).is_file():
        return ""
    shutil.copy2(run / name, docs / "figures" / name)
    return _figure(f"figures/{name}", alt)


def _figure(src: str, alt: str, caption: bool = True) -> str:
    """An image with its alt text (raw HTML: MkDocs leaves it as it is), captioned with the same text."""
    text = html.escape(alt)
    below = f"<figcaption>{text}</figcaption>" if caption else ""
    return f'<figure><img src="{src}" alt="{text}">{below}</figure>\n'


def _inline_figure(svg: str, alt: str) -> str:
    """An SVG figure in the page itself, where its hover texts work (an ``<img>`` would keep them
    out), captioned. Its lines are joined: a blank line would end Markdown's raw HTML block."""
    text = html.escape(alt)
    body = " ".join(line.strip() for line in svg.splitlines() if line.strip())
    caption = f"{text} (hover over a bar or a time bin to read its figures)"
    return f'<figure class="interactive">{body}<figcaption>{caption}</figcaption></figure>\n'


def _ledger_page(ledger: Table, run: Path, docs: Path, *, chapter: str) -> str:
    return "\n".join(
        [
            "# The deployment ledger\n",
            "Every deployment of staging in this run, as lesson 08 read it back from the ledger table "
            f"([{chapter}]({chapter}.md)); reasons are cut where the lesson's table "
            "cut them.\n",
            markdown_table(ledger),
            "## Timeline\n",
            _copy_figure(run, docs, "08-timeline.png", "The phases of every staging deployment over time")
            or "The run has no timeline figure (08-timeline.png).\n",
        ]
    )


def _drills_page(drills: Table, run: Path, docs: Path, *, chapter: str) -> str:
    return "\n".join(
        [
            "# Drill scoreboard\n",
            f"Each disaster drill of lesson 10 ([{chapter}]({chapter}.md)): whether its "
            "recovery was verified, seconds to detect, recover and verify, the probe's requests and failures "
            "from injection to recovery, and state versions lost.\n",
            markdown_table(drills),
            _copy_figure(
                run, docs, "10-drills.png", "Traffic during the drills and the moments of each drill"
            ),
        ]
    )


def _runbooks_page(runbooks: Sequence[RunbookPage]) -> str:
    rows = [f"| [{b.name}](runbook-{b.name}.md) | {_cell(b.fixes) or '—'} |" for b in runbooks]
    return "\n".join(
        [
            "# Runbooks\n",
            "Each runbook diagnoses one kind of trouble, plans the fix, acts only when told to, and verifies "
            "the result (`labkit runbook run NAME`). Their pages here are the notebooks as committed.\n",
            "| runbook | fixes |",
            "|---|---|",
            *rows,
            "",
        ]
    )


def roadmap_statuses(text: str) -> Counter[str]:
    """How many roadmap items have each status, from the tables whose header has a Status column."""
    counts: Counter[str] = Counter()
    column = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells:
            column = None
        elif column is None and "Status" in cells:
            column = cells.index("Status")
        elif column is not None and column < len(cells) and cells[column].strip("*") in _STATUSES:
            counts[cells[column].strip("*")] += 1
    return counts


def _parameters(given: dict[str, Any]) -> str:
    return f"`{_cell(', '.join(f'{k}={v!r}' for k, v in given.items()))}`" if given else "—"


def _figure_row(figure: Figure) -> str:
    value = f"**{figure.value}**" if figure.value is not None else "not measured in this run"
    met = {True: "yes", False: "**no**", None: "—"}[figure.met]
    where = f"[{figure.lesson}]({figure.lesson}.md)" if figure.lesson else "—"
    how = f" ({_cell(figure.how)})" if figure.how and figure.value is not None else ""
    return f"| {_cell(figure.label)} | {value}{how} | {_cell(figure.goal) or '—'} | {met} | {where} |"


def _landing(facts: RunFacts, has_diagram: bool, statuses: Counter[str]) -> str:
    lessons = facts.lessons
    ok = sum(1 for n in lessons if n.ok)
    seconds = sum(float(n.result.get("seconds") or 0) for n in lessons)
    parts = [
        f"# Blue/Green Lab: run {facts.run.name}\n",
        f"{len(lessons)} notebook(s) executed, {ok} of them to the end, {seconds:.0f} s of notebook time. "
        "Every figure below was read from this run's executed notebooks and their results, and links to the "
        "lesson that measured it.\n",
        "## Headline figures\n",
        "| figure | this run | goal | met | measured in |",
        "|---|---|---|---|---|",
        *(_figure_row(f) for f in facts.headline()),
        "",
        "## Architecture\n",
    ]
    built = facts.built()
    if has_diagram:
        summary = "; ".join(
            f"{env}: {len(addresses)} resources in {len(boxes({env: addresses}))} module instance(s)"
            for env, addresses in built.items()
        )
        alt = f"Architecture diagram of what this run's Terraform applies created. {summary}."
        parts += [
            "Drawn from the resources this run's Terraform applies created (the logs in the run folder): "
            "each environment a column, each module instance a box with its resource types, and the "
            "traffic from the load balancer's target groups to the fleets keyed like them.\n",
            _figure("architecture.svg", alt, caption=False),
        ]
    else:
        parts.append("This run applied no Terraform (no `logs/*-apply.log`), so there is nothing to draw.\n")
    parts += [
        "## Lessons\n",
        "| lesson | status | wall time | checkpoints passed | figures | parameters given |",
        "|---|---|---|---|---|---|",
    ]
    for n in lessons:
        checks = n.result.get("checkpoints", [])
        passed = sum(1 for c in checks if c.get("status") == "passed")
        status = {True: "ok", False: "**FAILED**", None: "no result file"}[n.ok]
        wall = f"{float(n.result['seconds']):.1f} s" if n.result.get("seconds") is not None else "—"
        figures = len(n.result.get("figures", []))
        parts.append(
            f"| [{_cell(_title(n.path))}]({n.name}.md) | {status} | {wall} | {passed} of {len(checks)} "
            f"| {figures} | {_parameters(n.result.get('parameters') or {})} |"
        )
    if statuses:
        counts = ", ".join(f"{statuses[s]} {s.lower()}" for s in _STATUSES if statuses[s])
        parts += ["", f"## Roadmap\n\n[The roadmap](roadmap.md)'s items: {counts}.\n"]
    return "\n".join(parts) + "\n"
