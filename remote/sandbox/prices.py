"""The sandbox's price table: documented figures, always shown labelled as sandbox figures.

moto answers every spot price history query with a constant, so the sandbox's EC2 front
(`remote.sandbox.front`) answers DescribeSpotPriceHistory from this table instead. The
figures are close to real us-east-1 prices (late 2024) so that budgets and cost lines look
like the real thing, with small per-zone differences so "cheapest zone" means something:

=============  =========================================  ==============
type           spot $/h by zone (a, b, c, d, f)           on-demand $/h
=============  =========================================  ==============
g4dn.xlarge    0.1578 0.1621 0.1594 0.1689 0.1655        0.526
g5.xlarge      0.3012 0.2968 0.3105 0.3054 0.3140        1.006
=============  =========================================  ==============

Other types have no sandbox spot price (the provider shows none).
"""

from __future__ import annotations

from typing import Mapping

SANDBOX_PRICE_SOURCE = "sandbox table"
"""The label every sandbox `Price` carries."""

SANDBOX_SPOT_USD_PER_HOUR: Mapping[str, Mapping[str, float]] = {
    "g4dn.xlarge": {"a": 0.1578, "b": 0.1621, "c": 0.1594, "d": 0.1689, "f": 0.1655},
    "g5.xlarge": {"a": 0.3012, "b": 0.2968, "c": 0.3105, "d": 0.3054, "f": 0.3140},
}
"""Spot price by instance type and zone letter (the zone is region + letter)."""

SANDBOX_ON_DEMAND_USD_PER_HOUR: Mapping[str, float] = {
    "g4dn.xlarge": 0.526,
    "g5.xlarge": 1.006,
}


def sandbox_spot_price(instance_type: str, zone: str) -> float | None:
    """The table's spot price for a type in a zone such as us-east-1b, or None."""
    return SANDBOX_SPOT_USD_PER_HOUR.get(instance_type, {}).get(zone[-1:])


SANDBOX_SAGEMAKER_USD_PER_HOUR: Mapping[str, float] = {
    "ml.m5.large": 0.115,
    "ml.g4dn.xlarge": 0.736,
    "ml.g5.xlarge": 1.408,
}
"""SageMaker training on-demand $/h (us-east-1, late 2024): what a job's billable seconds cost."""

SANDBOX_MANAGED_SPOT_BILLED_FRACTION = 0.3
"""The sandbox's managed-spot discount: a spot job bills this share of the seconds it trains
(``BillableTimeInSeconds``), i.e. a 70 % saving, about what AWS reports for g4dn spot."""
