"""Where a check step's time goes: fetching candles, building features, or the rest.

The alignment and dry-run steps fetch fresh candles and build runtime features on the way
to their verdict. `Stopwatch` wraps the candle source and the feature builder they are
given and adds up the seconds spent in each, so a step can report (and the checklist bench
can subtract) the fetching and feature building it did, apart from its own orchestration.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any


class Stopwatch:
    """Seconds per kind of work, added up across calls (thread-compatible, not thread-safe)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def candles(self, source: Any) -> "TimedCandles":
        """``source`` with its ``latest`` calls counted as ``fetch``."""
        return TimedCandles(source, self)

    def builder(self, builder: Any) -> "TimedBuilder":
        """``builder`` with its ``build`` calls counted as ``features``."""
        return TimedBuilder(builder, self)

    def outputs(self) -> dict[str, float]:
        """``{"fetch_s": ..., "features_s": ...}``, rounded to milliseconds."""
        return {f"{kind}_s": round(self.seconds.get(kind, 0.0), 3) for kind in ("fetch", "features")}

    def _add(self, kind: str, began: float) -> None:
        self.seconds[kind] += time.perf_counter() - began


class TimedCandles:
    """A candle source whose ``latest`` calls are timed (everything else passes through)."""

    def __init__(self, inner: Any, watch: Stopwatch) -> None:
        self._inner, self._watch = inner, watch

    def now(self) -> float:
        return self._inner.now()

    def latest(self, symbol: str, granularity: int, bars: int) -> Any:
        began = time.perf_counter()
        try:
            return self._inner.latest(symbol, granularity, bars)
        finally:
            self._watch._add("fetch", began)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedBuilder:
    """A feature builder whose ``build`` calls are timed (``spec`` passes through)."""

    def __init__(self, inner: Any, watch: Stopwatch) -> None:
        self._inner, self._watch = inner, watch

    def spec(self, symbol: str) -> Any:
        return self._inner.spec(symbol)

    def build(self, symbol: str, candles: Any) -> Any:
        began = time.perf_counter()
        try:
            return self._inner.build(symbol, candles)
        finally:
            self._watch._add("features", began)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
