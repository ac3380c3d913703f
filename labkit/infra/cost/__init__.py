"""What a stack costs per month on AWS, from its Terraform plan or state and a dated price table.

:func:`estimate_cost` is the entry point; the modules behind it are described in
:mod:`labkit.infra.cost.estimate`.
"""

from __future__ import annotations

from labkit.infra.cost.estimate import (
    MONTHLY_GOAL_USD,
    Assumptions,
    CostEstimate,
    DeployPattern,
    Fleet,
    GoalCheck,
    Price,
    PriceTable,
    blue_green_overhead,
    estimate_cost,
    price_table,
)

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
