"""The price table: dated us-east-1 list prices, one entry per price key (``ec2.on-demand.t3.micro``).

**The prices are list prices, not live ones.** ``labkit/infra/cost/data/prices.json`` holds them as
written down from the AWS pricing pages (each entry names its page) as of the date in the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from labkit.errors import CostError

PRICES_FILE = Path(__file__).parent / "data" / "prices.json"


@dataclass(frozen=True)
class Price:
    """One price table entry: a unit price for one kind of usage, where it came from and when."""

    key: str
    service: str
    usage: str
    unit: str
    usd: float
    source: str
    as_of: str
    note: str = ""


@dataclass(frozen=True)
class PriceTable:
    """The dated list prices for one region, by key (``ec2.on-demand.t3.micro``, ``elb.alb.hour``...)."""

    region: str
    as_of: str
    note: str
    prices: Mapping[str, Price]

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """Read a price table file (default: the one shipped in ``labkit/infra/cost/data/prices.json``)."""
        path = path or PRICES_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            prices = {row["key"]: Price(**row) for row in doc["prices"]}
            return cls(region=doc["region"], as_of=doc["as_of"], note=doc["note"], prices=prices)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CostError(
                f"The price table {path} cannot be read: {exc}.",
                hint="Restore labkit/infra/cost/data/prices.json from git; each entry needs key, service, "
                "usage, unit, usd, source and as_of.",
            ) from exc

    def __getitem__(self, key: str) -> Price:
        try:
            return self.prices[key]
        except KeyError:
            family = ".".join(key.split(".")[:2])  # e.g. "ec2.on-demand"
            near = sorted(k for k in self.prices if k.startswith(family)) or sorted(self.prices)[:8]
            raise CostError(
                f"The price table has no entry {key!r}.",
                hint=f"Known entries like it: {', '.join(near)}. Add the entry to "
                "labkit/infra/cost/data/prices.json with its source page and the date you read it.",
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self.prices

    def age_days(self, today: date | None = None) -> int:
        """How many days ago the prices were written down."""
        return ((today or date.today()) - date.fromisoformat(self.as_of)).days

    def frame(self) -> pd.DataFrame:
        """The whole table, one row per entry."""
        return pd.DataFrame([asdict(p) for p in self.prices.values()])


def price_table() -> PriceTable:
    """The shipped price table."""
    return PriceTable.load()

