"""What a stack costs per month on AWS, from its Terraform plan or state and a dated price table.

:func:`estimate_cost` is the entry point (:mod:`.estimate`, which also says how the model works).
Behind it: :mod:`.prices` (the dated price table), :mod:`.assumptions` (what a plan does not say),
:mod:`.pricers` (each resource type to line items), and :mod:`labkit.infra.tfjson` (the plan or state
read into resources).
"""

from __future__ import annotations

from labkit.infra.cost.assumptions import Assumptions, DeployPattern
from labkit.infra.cost.estimate import (
    MONTHLY_GOAL_USD,
    CostEstimate,
    GoalCheck,
    blue_green_overhead,
    estimate_cost,
)
from labkit.infra.cost.pricers import Fleet
from labkit.infra.cost.prices import Price, PriceTable, price_table

__all__ = [
    "MONTHLY_GOAL_USD",
    "Assumptions",
    "CostEstimate",
    "DeployPattern",
    "Fleet",
    "GoalCheck",
    "Price",
    "PriceTable",
    "blue_green_overhead",
    "estimate_cost",
    "price_table",
]
