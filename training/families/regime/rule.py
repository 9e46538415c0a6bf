"""The rule that names a stretch of trading days' regime, and the baselines built on it.

Over ``horizon`` consecutive days of SPY daily returns, let ``R`` be their sum and ``V``
their standard deviation times sqrt(252) (annualised volatility). The rule, checked in
this order:

1. ``high_vol_panic`` when ``V >= panic_vol`` and ``R < 0``;
2. ``choppy`` when ``|R| < trend``;
3. ``risk_off_trend`` when ``R <= -trend``;
4. ``calm_uptrend`` when ``R >= trend`` and ``V <= calm_vol``;
5. ``risk_on_trend`` otherwise (a rise with more than calm volatility).

The three thresholds are fit on the training part only (`RegimeRule.fit`): ``trend`` is
the 35th percentile of ``|R|``, ``calm_vol`` the median of ``V``, ``panic_vol`` its 90th
percentile, so every regime occurs; `DEFAULT_RULE` holds round figures for a rule with
no training behind it.

The **label** of day *t* is the rule over days *t+1 .. t+horizon* (the model forecasts);
the **persistence baseline** of day *t* is the rule over days *t-horizon+1 .. t* (what
has been, continues); the **majority baseline** is the training part's most frequent label.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from training.families.investment import REGIMES

_ANNUAL = math.sqrt(252.0)


@dataclass(frozen=True)
class RegimeRule:
    horizon: int = 10
    trend: float = 0.012
    calm_vol: float = 0.12
    panic_vol: float = 0.28

    def window_stats(self, returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(R, V) of the ``horizon`` days ending at each day (NaN before the first full window)."""
        r = np.asarray(returns, dtype=np.float64)
        n, h = len(r), self.horizon
        total = np.full(n, np.nan)
        vol = np.full(n, np.nan)
        if n >= h:
            windows = np.lib.stride_tricks.sliding_window_view(r, h)
            total[h - 1 :] = windows.sum(axis=1)
            vol[h - 1 :] = windows.std(axis=1, ddof=1) * _ANNUAL
        return total, vol

    def classify(self, total: np.ndarray, vol: np.ndarray) -> np.ndarray:
        """Regime index per (R, V); -1 where either is NaN."""
        total, vol = np.asarray(total, dtype=np.float64), np.asarray(vol, dtype=np.float64)
        out = np.full(total.shape, REGIMES.index("risk_on_trend"), dtype=np.int64)
        out[(total >= self.trend) & (vol <= self.calm_vol)] = REGIMES.index("calm_uptrend")
        out[total <= -self.trend] = REGIMES.index("risk_off_trend")
        out[np.abs(total) < self.trend] = REGIMES.index("choppy")
        out[(vol >= self.panic_vol) & (total < 0)] = REGIMES.index("high_vol_panic")
        out[~(np.isfinite(total) & np.isfinite(vol))] = -1
        return out

    def trailing(self, returns: np.ndarray) -> np.ndarray:
        """The regime of the ``horizon`` days ending at each day (-1 before a full window)."""
        return self.classify(*self.window_stats(returns))

    def forward(self, returns: np.ndarray) -> np.ndarray:
        """The label of each day: the regime of the ``horizon`` days after it (-1 at the end)."""
        past = self.trailing(returns)
        out = np.full(len(past), -1, dtype=np.int64)
        if len(past) > self.horizon:
            out[: -self.horizon] = past[self.horizon :]
        return out

    @classmethod
    def fit(cls, returns: np.ndarray, horizon: int) -> "RegimeRule":
        """Thresholds from the windows of ``returns`` (the training part's days only)."""
        total, vol = cls(horizon=horizon).window_stats(returns)
        keep = np.isfinite(total) & np.isfinite(vol)
        if keep.sum() < 5:
            return cls(horizon=horizon)
        t, v = total[keep], vol[keep]
        return cls(
            horizon=horizon,
            trend=float(np.quantile(np.abs(t), 0.35)),
            calm_vol=float(np.quantile(v, 0.5)),
            panic_vol=float(np.quantile(v, 0.9)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RegimeRule":
        return cls(
            horizon=int(data["horizon"]),
            trend=float(data["trend"]),
            calm_vol=float(data["calm_vol"]),
            panic_vol=float(data["panic_vol"]),
        )


DEFAULT_RULE = RegimeRule()
"""The rule with no training behind it: 10 days, a 1.2% move trends, 12% volatility is calm, 28% a panic."""
EMBEDDING_SIZE = 8


def regime_output(probs: np.ndarray, embedding: np.ndarray) -> dict[str, Any]:
    """The seed's output: ``{"regime_label", "regime_probs": {five names}, "regime_embedding": [8]}``."""
    probs = np.asarray(probs, dtype=np.float64)
    return {
        "regime_label": REGIMES[int(np.argmax(probs))],
        "regime_probs": {name: round(float(p), 6) for name, p in zip(REGIMES, probs, strict=True)},
        "regime_embedding": [round(float(x), 6) for x in np.asarray(embedding).reshape(-1)[:EMBEDDING_SIZE]],
    }


@dataclass(frozen=True)
class RuleRegimePredictor:
    """The fallback: the rule over the last ``horizon`` days, as the seed's output.

    The named regime gets probability 0.6 and the other four 0.1 each (the rule has no
    confidence of its own); the embedding is eight zeros. ``predict`` takes the context
    table (oldest first; at least ``horizon`` days) and answers for its last day.
    """

    rule: RegimeRule = DEFAULT_RULE
    name: str = "baseline: regime rule (persistence)"
    trained: bool = False

    def predict(self, rows: Any) -> dict[str, Any]:
        returns = np.asarray(rows["spy_return_1d"], dtype=np.float64)
        label = int(self.rule.trailing(returns)[-1]) if len(returns) else -1
        if label < 0:
            label = REGIMES.index("choppy")
        probs = np.full(len(REGIMES), 0.1)
        probs[label] = 0.6
        return regime_output(probs, np.zeros(EMBEDDING_SIZE))


def macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int = len(REGIMES)) -> float:
    """Macro-averaged F1 over the ``classes`` regimes (a regime never true nor predicted
    scores 0, as scikit-learn's ``zero_division=0``); fast enough for the bootstrap."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    tp = np.bincount(truth[truth == predicted], minlength=classes)[:classes].astype(np.float64)
    true_n = np.bincount(truth, minlength=classes)[:classes]
    pred_n = np.bincount(predicted, minlength=classes)[:classes]
    denom = true_n + pred_n
    f1 = np.divide(2 * tp, denom, out=np.zeros(classes), where=denom > 0)
    return float(f1.mean())
