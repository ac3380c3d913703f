"""The new color's traffic weight over a deploy, from the phases the controller marks on the probe.

The weight changes when the listener does, not when the controller decides to change it. The
controller marks ``provision``, ``health`` and ``migrate-expand`` (weight 0), ``shift-N`` as the
apply of N % begins (the weight holds), ``analysis-N`` once that apply changed the listener
(N %), ``scale-down`` (still 100 %), ``rollback`` when a gate failed (the weight holds) and
``restored`` once the listener was given back to the old color (0; the load balancer follows
within moments: its 0.4 s loop in the sandbox, seconds on AWS); ``start`` is the probe's own
first mark. The resulting table is what :func:`labkit.lab.plots.traffic_over_time` takes as
``weights``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

from labkit.errors import ConfigError

#: The bake after a shift: ``analysis-W`` where W is the new color's weight (percent).
ANALYSIS_PHASE = re.compile(r"^analysis-(\d{1,3})$")
_SHIFT = re.compile(r"^shift-\d{1,3}$")
#: Marks that leave the weight where it was.
_HOLD = ("start", "health", "migrate-expand", "scale-down", "preview", "rollback")


def weights_from_marks(marks: Iterable[tuple[float, str]]) -> pd.DataFrame:
    """``time_s``/``weight`` rows, one per change of the new color's weight (percent)."""
    rows: list[tuple[float, float]] = []
    weight = 0.0
    for time_s, phase in marks:
        listener = ANALYSIS_PHASE.match(phase)
        if listener:
            weight = float(listener.group(1))
        elif phase in ("provision", "restored"):
            weight = 0.0
        elif phase not in _HOLD and not _SHIFT.match(phase):
            raise ConfigError(
                f"Unknown deploy phase mark {phase!r} at {time_s:g} s.",
                hint="Pass the marks of a probe that a deploy Controller ran with (probe.marks).",
            )
        if not rows or rows[-1][1] != weight:
            rows.append((float(time_s), weight))
    if not rows:
        raise ConfigError("No marks given.", hint="Pass probe.marks after a deploy that ran with the probe.")
    return pd.DataFrame(rows, columns=["time_s", "weight"])
