"""What AWS said during a deploy, step by step, beside what the probe saw.

:class:`ListenerWatch` reads the listener's weights and each color's target health through the ELBv2
API once a second while a deploy runs, on the probe's clock (seconds since the probe started), as
someone watching the console would. :func:`steps_table` then gives one row per canary step: the
weight the controller asked for, the weights and healthy targets AWS reported at the end of the step's
bake, and the share of the probe's answers that the new color served during it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from labkit.deploy.colors import COLORS
from labkit.deploy.marks import ANALYSIS_PHASE
from labkit.deploy.probe import Probe
from labkit.target import Target

SAMPLE_COLUMNS = ["time_s", *(f"{c}_weight" for c in COLORS), *(f"{c}_healthy" for c in COLORS)]


class ListenerWatch:
    """Samples the listener and the target groups named in a stack's ``outputs`` (``listener_arn``,
    ``COLOR_target_group_arn``) every ``every_s`` seconds, from ``with`` to its end."""

    def __init__(
        self, target: Target, outputs: Mapping[str, Any], probe: Probe, every_s: float = 1.0
    ) -> None:
        self._elb = target.client("elbv2")
        self._listener = str(outputs["listener_arn"])
        self._groups = {color: str(outputs[f"{color}_target_group_arn"]) for color in COLORS}
        self._probe = probe
        self._every_s = every_s
        self._rows: list[dict[str, float]] = []
        #: Readings that failed (the API did not answer): each is a gap in :meth:`samples`.
        self.missed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener-watch", daemon=True)

    def __enter__(self) -> ListenerWatch:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(10)

    def samples(self) -> pd.DataFrame:
        """One row per reading: ``time_s`` on the probe's clock, each color's weight and healthy targets."""
        return pd.DataFrame(list(self._rows), columns=SAMPLE_COLUMNS)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._rows.append(self._read())
            except (BotoCoreError, ClientError):  # a gap in the table, not a reason to stop reading
                self.missed += 1
            self._stop.wait(self._every_s)

    def _read(self) -> dict[str, float]:
        time_s = self._probe.elapsed()
        action = self._elb.describe_listeners(ListenerArns=[self._listener])["Listeners"][0][
            "DefaultActions"
        ][0]
        weights = {g["TargetGroupArn"]: g.get("Weight", 0) for g in action["ForwardConfig"]["TargetGroups"]}
        row: dict[str, float] = {"time_s": time_s}
        for color, arn in self._groups.items():
            health = self._elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
            row[f"{color}_weight"] = float(weights.get(arn, 0))
            row[f"{color}_healthy"] = float(sum(1 for t in health if t["TargetHealth"]["State"] == "healthy"))
        return row


def steps_table(
    samples: pd.DataFrame, traffic: pd.DataFrame, marks: Iterable[tuple[float, str]], new_color: str
) -> pd.DataFrame:
    """One row per canary step (each ``analysis-W`` phase of the probe's ``marks``): the weight asked
    for, what AWS reported at the step's last reading, and the probe's answers in the step."""
    ordered = sorted(marks)
    rows = []
    for n, (start, phase) in enumerate(ordered):
        step = ANALYSIS_PHASE.match(phase)
        if not step:
            continue
        end = ordered[n + 1][0] if n + 1 < len(ordered) else float("inf")
        read = samples[(samples["time_s"] >= start) & (samples["time_s"] < end)]
        answers = traffic[(traffic["elapsed_s"] >= start) & (traffic["elapsed_s"] < end) & traffic["ok"]]
        last = read.iloc[-1] if len(read) else None
        row: dict[str, Any] = {"step": f"{new_color} {step.group(1)}%"}
        for column in SAMPLE_COLUMNS[1:]:
            row[f"AWS: {column.replace('_', ' ')}"] = None if last is None else int(last[column])
        row["probe: answers"] = len(answers)
        share = (answers["color"] == new_color).mean() if len(answers) else float("nan")
        row[f"probe: share on {new_color} (%)"] = round(100 * float(share), 1)
        rows.append(row)
    return pd.DataFrame(rows)
