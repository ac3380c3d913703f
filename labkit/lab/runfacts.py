"""What a run folder proves, read back from its files: the figures the site's landing page leads with.

A run folder is what ``labkit run`` writes: the executed notebooks, a ``NAME.result.json`` beside each
(:func:`labkit.lab.run.lesson_result`), the PNG figures and the Terraform logs in ``logs/``. Nothing
here is a constant: each figure is read from the output a lesson printed or displayed in that run, and
a figure whose lesson did not run (or printed nothing to read) is ``None``, which the site shows as
"not measured in this run".

- **Deploy time**: the slowest succeeded deployment in the ledger as 08 displays it, against 5 minutes.
- **Rollback exposure**: in 07's controller log, from the start of the canary step that failed to the
  rollback through the ELBv2 API: the longest the bad release could have held traffic.
- **Failed requests per deploy**: 07 prints ``N of M requests failed``; 06 checks that every request
  was answered (its checkpoint ``traffic["ok"].all()``), so 0 when that checkpoint passed.
- **Staging cost**: the estimate's goal line (``$X/month is OVER|within the $50/month goal``), from 08
  (with the measured overhead), else 00 (priced from the plan).
- **Each drill's time to recover**: 10's scoreboard table (``DrillReport.figures()``).

The ledger and the drill scoreboard are the tables those lessons displayed (pandas' HTML, parsed with
the standard library), and what the run built is the resources its Terraform applies created.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

#: The roadmap's goals the headline figures are judged against.
DEPLOY_GOAL_S = 300.0
COST_GOAL_USD = 50.0

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CONTROLLER_LINE = re.compile(r"^\[\s*(?P<t>[\d.]+)s\] (?P<text>.*)$")
_FAILED = re.compile(r"^(?P<failed>\d+) of (?P<total>\d+) requests failed")
_COST = re.compile(
    r"^\$(?P<usd>[\d,]+\.\d\d)/month is (?P<verdict>OVER|within) the \$(?P<goal>[\d,]+)/month goal"
)
_CREATED = re.compile(r"^\[[^\]]*\] (?P<address>\S.*?): Creation complete")


@dataclass(frozen=True)
class Lesson:
    """One executed notebook of the run and its ``NAME.result.json`` (empty when it has none)."""

    path: Path
    result: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def number(self) -> str:
        return self.name.split("-", 1)[0]

    @property
    def ok(self) -> bool | None:
        ok = self.result.get("ok")
        return None if ok is None else bool(ok)

    def cells(self) -> list[dict[str, Any]]:
        cells: list[dict[str, Any]] = json.loads(self.path.read_text(encoding="utf-8"))["cells"]
        return cells

    def text(self) -> list[str]:
        """Every line the notebook's code cells printed or displayed as text, in order."""
        lines: list[str] = []
        for cell in self.cells():
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream":
                    lines += _ANSI.sub("", "".join(output.get("text", ""))).splitlines()
                elif "text/plain" in output.get("data", {}):
                    lines += "".join(output["data"]["text/plain"]).splitlines()
        return lines

    def tables(self) -> list[Table]:
        """Every HTML table its cells displayed (pandas DataFrames), in order."""
        found = []
        for cell in self.cells():
            for output in cell.get("outputs", []):
                html = "".join(output.get("data", {}).get("text/html", ""))
                if "<table" in html:
                    found += parse_tables(html)
        return found

    def cell_passed(self, check: str) -> bool:
        """Whether a code cell whose source contains ``check`` ran to its end in this run (a checkpoint
        cell's asserts all held)."""
        return any(
            check in "".join(cell.get("source", ""))
            and cell.get("metadata", {}).get("papermill", {}).get("status") == "completed"
            for cell in self.cells()
            if cell.get("cell_type") == "code"
        )


@dataclass(frozen=True)
class Table:
    """An HTML table: its column names (the index's first) and its rows as text."""

    columns: list[str]
    rows: list[list[str]]

    def records(self) -> list[dict[str, str]]:
        return [dict(zip(self.columns, row, strict=False)) for row in self.rows]


class _TableParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[list[list[str]], list[list[str]]]] = []  # (head rows, body rows)
        self._section = ""
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(([], []))
        elif tag in ("thead", "tbody"):
            self._section = tag
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            head, body = self.tables[-1]
            (head if self._section == "thead" else body).append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_tables(html: str) -> list[Table]:
    """The tables in a DataFrame's HTML. pandas writes a named index as a second header row (its
    name first, blanks after): that name becomes the first column's."""
    parser = _TableParser()
    parser.feed(html)
    tables = []
    for head, body in parser.tables:
        columns = list(head[0]) if head else []
        if len(head) > 1 and head[1] and head[1][0]:
            columns[0] = head[1][0]
        tables.append(Table(columns, body))
    return tables


@dataclass(frozen=True)
class Figure:
    """One headline figure: what it is, its value in this run (None: not measured), the goal it is
    judged against, whether it meets it, and the lesson that measured it."""

    label: str
    value: str | None
    goal: str = ""
    met: bool | None = None
    lesson: str | None = None  # the notebook's stem, which is also its chapter's page
    how: str = ""
    number: float | None = None  # the value as a number, for checks and tests


@dataclass
class RunFacts:
    """A run folder, read: its lessons, headline figures, ledger, drill scoreboard and what it built."""

    run: Path
    lessons: list[Lesson] = field(default_factory=list)

    @classmethod
    def read(cls, run: Path) -> RunFacts:
        lessons = []
        for path in sorted(run.glob("*.ipynb")):
            result_file = path.with_name(f"{path.stem}.result.json")
            result = json.loads(result_file.read_text(encoding="utf-8")) if result_file.is_file() else {}
            lessons.append(Lesson(path, result))
        return cls(run, lessons)

    def lesson(self, number: str) -> Lesson | None:
        """The run's lesson numbered ``number`` (``"08"``), when it ran and did not fail."""
        return next((n for n in self.lessons if n.number == number and n.ok is not False), None)

    def name_of(self, number: str) -> str | None:
        """The name (stem) of the run's lesson ``number``, or None."""
        lesson = self.lesson(number)
        return lesson.name if lesson else None

    def ledger(self) -> Table | None:
        """The deployments table 08 displayed (the ledger read back), or None."""
        lesson = self.lesson("08")
        tables = lesson.tables() if lesson else []
        return next((t for t in tables if {"status", "duration_s"} <= set(t.columns)), None)

    def drills(self) -> Table | None:
        """The drill scoreboard 10 displayed, or None."""
        lesson = self.lesson("10")
        tables = lesson.tables() if lesson else []
        return next((t for t in tables if {"drill", "recover_s"} <= set(t.columns)), None)

    def headline(self) -> list[Figure]:
        """The landing page's figures, in order; each drill of the scoreboard has its own."""
        return [
            self._deploy_time(),
            self._rollback_exposure(),
            self._failed_requests_healthy(),
            self._failed_requests_rollback(),
            self._staging_cost(),
            *self._drill_recoveries(),
        ]

    def _deploy_time(self) -> Figure:
        label, goal = "Deploy time (slowest succeeded deploy)", "under 5 minutes (300 s)"
        ledger = self.ledger()
        times = (
            [float(r["duration_s"]) for r in ledger.records() if r.get("status") == "succeeded"]
            if ledger
            else []
        )
        if not times:
            return Figure(label, None, goal)
        slowest = max(times)
        return Figure(
            label, f"{slowest:.1f} s", goal, slowest < DEPLOY_GOAL_S, self.name_of("08"),
            f"the ledger's duration of the {len(times)} succeeded deployment(s)", slowest,
        )  # fmt: skip

    def _rollback_exposure(self) -> Figure:
        label = "Rollback exposure (bad release's canary step to rollback)"
        lesson = self.lesson("07")
        if lesson is None:
            return Figure(label, None)
        step_start = baking = None
        for line in lesson.text():
            match = _CONTROLLER_LINE.match(line)
            if not match:
                continue
            text, moment = match["text"], float(match["t"])
            if text.startswith("shift: "):
                step_start, baking = moment, None
            elif text.startswith("analysis: baking"):
                baking = moment
            elif text.startswith("rollback: ") and "through the ELBv2 API" in text and step_start is not None:
                window = moment - step_start
                after = "" if baking is None else f"; {moment - baking:.1f} s of it after that step's apply"
                return Figure(
                    label, f"{window:.1f} s", "", None, lesson.name,
                    "the longest the bad release could have held traffic: from the start of the canary step "
                    f"that failed to the rollback through the ELBv2 API{after}", window,
                )  # fmt: skip
        return Figure(label, None)

    def _failed_requests_healthy(self) -> Figure:
        label, goal = "Failed requests, healthy canary deploy", "0"
        lesson = self.lesson("06")
        if lesson is None:
            return Figure(label, None, goal)
        counted = _failed_line(lesson)
        if counted is not None:
            failed, total = counted
            return Figure(
                label, f"{failed} of {total}", goal, failed == 0, lesson.name, "the probe's count", failed
            )
        if lesson.cell_passed('traffic["ok"].all()'):
            return Figure(
                label,
                "0",
                goal,
                True,
                lesson.name,
                "the lesson's checkpoint: every probe request answered",
                0,
            )
        return Figure(label, None, goal)

    def _failed_requests_rollback(self) -> Figure:
        label, goal = "Failed requests, rolled-back bad deploy", "only from the bad release"
        lesson = self.lesson("07")
        counted = _failed_line(lesson) if lesson else None
        if lesson is None or counted is None:
            return Figure(label, None, goal)
        failed, total = counted
        met = lesson.cell_passed("every failure should come from the bad release")
        return Figure(label, f"{failed} of {total}", goal, met, lesson.name, "the probe's count", failed)

    def _staging_cost(self) -> Figure:
        label, goal = "Staging cost per month", f"under ${COST_GOAL_USD:.0f}"
        for number, how in (
            ("08", "with the blue/green overhead of the measured deploys"),
            ("00", "from the plan"),
        ):
            lesson = self.lesson(number)
            found = [m for m in map(_COST.match, lesson.text() if lesson else []) if m]
            if lesson and found:
                usd = float(found[-1]["usd"].replace(",", ""))
                return Figure(
                    label, f"${usd:,.2f}", goal, found[-1]["verdict"] == "within", lesson.name, how, usd
                )
        return Figure(label, None, goal)

    def _drill_recoveries(self) -> list[Figure]:
        scoreboard = self.drills()
        if scoreboard is None:
            return [Figure("Drills: time to recover", None, "verified recovery")]
        figures = []
        for row in scoreboard.records():
            seconds = _number(row.get("recover_s", ""))
            figures.append(
                Figure(
                    f"Drill {row['drill']}: time to recover",
                    None if seconds is None else f"{seconds:.1f} s",
                    "verified recovery",
                    row.get("verified") == "True",
                    self.name_of("10"),
                    f"{row.get('failed', '?')} of {row.get('requests', '?')} requests failed meanwhile",
                    seconds,
                )
            )
        return figures

    def built(self) -> dict[str, list[str]]:
        """Each environment's resources that the run's Terraform applies created (addresses, sorted),
        from the logs of ``labkit run`` (``logs/<time>-<env>-apply.log``)."""
        found: dict[str, set[str]] = {}
        for log in sorted((self.run / "logs").glob("*-apply.log")):
            env = log.stem.split("-", 1)[1].removesuffix("-apply")
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                match = _CREATED.match(line)
                if match:
                    found.setdefault(env, set()).add(match["address"])
        return {env: sorted(addresses) for env, addresses in sorted(found.items())}


def _failed_line(lesson: Lesson) -> tuple[int, int] | None:
    for line in lesson.text():
        match = _FAILED.match(line)
        if match:
            return int(match["failed"]), int(match["total"])
    return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
