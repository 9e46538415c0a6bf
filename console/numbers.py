"""Numbers at the edge: only finite values in a sensible range get in.

``nan`` compares false with everything, so a plain range check lets it through, and ``inf``
passes any lower bound; either one switches a guard off (a budget of nan is never
reached, a timeout of inf never ends). Flags use `FiniteFloatRange`; settings, checklist
parameters and policies are pydantic models with ``allow_inf_nan=False`` and bounds.
"""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloatRange(click.FloatRange):
    """A click float range that also refuses ``nan`` and ``inf`` (exit 2, one line)."""

    name = "finite number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def finite_in(value: Any, low: float, high: float, *, what: str, low_open: bool = False) -> float:
    """``value`` as a float in [low, high] (or (low, high] with ``low_open``); booleans are not numbers.

    Raises ValueError naming ``what`` and the range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, not {value!r}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        bound = f"more than {low:g}" if low_open else f"at least {low:g}"
        raise ValueError(f"{what} must be a finite number, {bound} and at most {high:g} (got {value!r})")
    return number
