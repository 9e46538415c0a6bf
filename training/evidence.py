"""The evidence a direction model must show, computed one way for promotion and for the gate.

Plain NumPy (the runtime checks use it without torch). Given P(up) of the model and of
each baseline on the same bars, the labels and the forward returns, `direction_evidence`
measures, every figure on non-overlapping samples (every ``horizon``-th bar, whose
outcomes are independent under "no edge"):

- **discrimination**: the AUC of P(up) against the outcome, with the one-sided
  Mann-Whitney p-value of "AUC is not above 0.5" (`auc_p_value`). A no-skill model's
  outputs need not sit at exactly 0.5 -- its mean confidence can read 53% -- but they do
  not rank the ups above the downs, so it fails this;
- **the rule that trades**: the long/short rule of `training.metrics.after_cost` with the
  model's band; its hit rate on the decisions where it holds a position, with an exact
  binomial p-value against 50%, and how many trades it opened;
- **baselines**: the model's direction calls against each baseline's on the same bars,
  with an exact one-sided McNemar p-value (`training.stats.mcnemar_one_sided`);
- **after costs**: the rule's per-decision net returns summed, with a circular block
  bootstrap interval and the p-value of "it earned nothing" (`training.stats.block_bootstrap`).

`EvidenceRules` holds the thresholds and `EvidenceRules.judge` returns one line per rule
that names the figure, the threshold and the p-value or interval, so a verdict can always
be read back to what decided it. A missing figure fails its rule.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from training import stats
from training.metrics import TradingCosts, after_cost, auc, decide_positions

MIN_SAMPLES = 100
"""Non-overlapping judged samples below which no figure means anything."""
MIN_TRADES = 30
"""Trades opened below which the after-cost bootstrap and the trade hit rate mean little."""
ALPHA = 0.05


def auc_p_value(y: np.ndarray, score: np.ndarray) -> float:
    """One-sided p-value that the AUC of ``score`` for 0/1 labels ``y`` is not above 0.5.

    The Mann-Whitney U statistic's normal approximation with the tie correction (scores
    that tie -- a model stuck on a few values -- shrink the variance honestly).
    """
    y = np.asarray(y)
    score = np.asarray(score, dtype=np.float64)
    n1 = int((y == 1).sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return 1.0
    area = auc(y, score)
    n = n1 + n0
    _, counts = np.unique(score, return_counts=True)
    ties = float((counts**3 - counts).sum())
    var = n1 * n0 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (area * n1 * n0 - n1 * n0 / 2.0) / math.sqrt(var)
    return stats.normal_sf(z)


def decision_net_returns(
    p_up: np.ndarray, future_return: np.ndarray, horizon: int, costs: TradingCosts, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-decision net returns of `training.metrics.after_cost`'s rule (their sum is its
    ``net_return``), and which decisions held a position."""
    step = max(1, int(horizon))
    position = decide_positions(np.asarray(p_up, dtype=np.float64)[::step], threshold)
    r = np.asarray(future_return, dtype=np.float64)[::step]
    held = np.concatenate([[0.0], position, [0.0]])
    paid = np.abs(np.diff(held)) * costs.round_trip / 2.0
    net = position * r - paid[:-1]
    net[-1:] -= paid[-1]  # closing the last position
    return net, position != 0


def bootstrap_block(n: int) -> int:
    """Block length for the decisions' bootstrap: volatility clusters over a few decisions."""
    return max(2, int(round(n ** (1 / 3)))) if n > 0 else 1


def _sum_at(values: np.ndarray, idx: np.ndarray) -> float:
    return float(values[idx].sum())


def direction_evidence(
    p_up: np.ndarray,
    up: np.ndarray,
    future_return: np.ndarray,
    horizon: int,
    costs: TradingCosts,
    threshold: float,
    baselines: Mapping[str, np.ndarray],
    *,
    resamples: int = stats.DEFAULT_RESAMPLES,
) -> dict[str, Any]:
    """Every figure `EvidenceRules` judges, for predictions ``p_up`` on the judged bars.

    ``up`` is the outcome per bar, ``future_return`` the ``horizon``-bar return per bar,
    ``baselines`` each baseline's P(up) on the same bars.
    """
    step = max(1, int(horizon))
    p = np.asarray(p_up, dtype=np.float64)
    y = np.asarray(up, dtype=bool)
    p_s, y_s = p[::step], y[::step]
    n = int(len(p_s))
    trade = after_cost(p, future_return, horizon, costs, threshold)
    net, held = decision_net_returns(p, future_return, horizon, costs, threshold)
    gross = np.asarray(future_return, dtype=np.float64)[::step] * decide_positions(p_s, threshold)
    decisions = int(held.sum())
    wins = int((gross[held] > 0).sum())
    boot = stats.block_bootstrap(
        functools.partial(_sum_at, net), len(net), block=bootstrap_block(len(net)), resamples=resamples
    )
    right = (p_s > 0.5) == y_s
    out: dict[str, Any] = {
        "samples": n,
        "bars": int(len(p)),
        "accuracy": float(right.mean()) if n else float("nan"),
        "auc": auc(y_s.astype(np.float64), p_s) if n else float("nan"),
        "auc_p_value": auc_p_value(y_s.astype(np.float64), p_s) if n else 1.0,
        "trades": int(trade["trades"]),
        "decisions_in_market": decisions,
        "trade_hit_rate": wins / decisions if decisions else float("nan"),
        "trade_hit_p_value": stats.binomial_sf(wins, decisions) if decisions else 1.0,
        "net_return": float(trade["net_return"]),
        "gross_return": float(trade["gross_return"]),
        "costs_paid": float(trade["costs_paid"]),
        "net_interval": list(boot.interval),
        "net_p_value": float(boot.p_value),
        "bootstrap_block": int(boot.block),
        "round_trip_cost_bps": float(trade["round_trip_cost_bps"]),
        "threshold": float(threshold),
        "baselines": {},
    }
    for name, base in baselines.items():
        b = np.asarray(base, dtype=np.float64)[::step]
        base_right = (b > 0.5) == y_s
        p_value, only_model, only_base = stats.mcnemar_one_sided(right, base_right)
        out["baselines"][name] = {
            "accuracy": float(base_right.mean()) if n else float("nan"),
            "p_value": float(p_value),
            "model_only_right": only_model,
            "baseline_only_right": only_base,
        }
    return out


@dataclass(frozen=True)
class EvidenceRules:
    """Thresholds of the evidence a model must show (promotion and gate use the same)."""

    min_samples: int = MIN_SAMPLES
    min_trades: int = MIN_TRADES
    min_auc: float = 0.5
    min_trade_hit_rate: float = 0.5
    min_net_return: float = 0.0
    beat_baselines: bool = True
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"significance level {self.alpha} must be between 0 and 0.5")
        if self.min_samples < 1 or self.min_trades < 1:
            raise ValueError("min_samples and min_trades must be at least 1 (zero trades never pass)")

    def judge(self, e: Mapping[str, Any]) -> list[tuple[bool, str]]:
        """(passed, line) per rule: each line names the figure, its threshold and p-value or interval."""
        a = self.alpha
        out: list[tuple[bool, str]] = []
        n = int(e.get("samples") or 0)
        out.append((n >= self.min_samples, f"judged samples {n} (need {self.min_samples}, non-overlapping)"))
        trades = int(e.get("trades") or 0)
        out.append((trades >= self.min_trades, f"trades {trades} (need {self.min_trades})"))
        area, p_auc = _f(e.get("auc")), _f(e.get("auc_p_value"), 1.0)
        out.append(
            (
                area > self.min_auc and p_auc <= a,
                f"discrimination: AUC {_g(area)} vs {self.min_auc:g}, p={p_auc:.3g} (alpha {a:g})",
            )
        )
        hit, p_hit = _f(e.get("trade_hit_rate")), _f(e.get("trade_hit_p_value"), 1.0)
        out.append(
            (
                hit > self.min_trade_hit_rate and p_hit <= a,
                f"hit rate of the rule that trades {_pct(hit)} on {int(e.get('decisions_in_market') or 0)} "
                f"decisions vs {_pct(self.min_trade_hit_rate)}, p={p_hit:.3g} (alpha {a:g})",
            )
        )
        if self.beat_baselines:
            bases = dict(e.get("baselines") or {})
            if not bases:
                out.append((False, "beats baselines: no baseline was scored on the same bars"))
            for name, b in sorted(bases.items()):
                acc, base_acc, p_b = _f(e.get("accuracy")), _f(b.get("accuracy")), _f(b.get("p_value"), 1.0)
                out.append(
                    (
                        acc > base_acc and p_b <= a,
                        f"beats the {name.replace('_', ' ')} baseline: accuracy {_pct(acc)} vs {_pct(base_acc)} "
                        f"on the same bars, McNemar p={p_b:.3g} (alpha {a:g})",
                    )
                )
        net, p_net = _f(e.get("net_return")), _f(e.get("net_p_value"), 1.0)
        low, high = (list(e.get("net_interval") or []) + [None, None])[:2]
        out.append(
            (
                net > self.min_net_return and p_net <= a,
                f"after costs {net:+.4f} vs {self.min_net_return:+.4f} ({e.get('round_trip_cost_bps', float('nan')):g} "
                f"bps round trip), 95% interval [{_f(low):+.4f}, {_f(high):+.4f}], p={p_net:.3g} (alpha {a:g})",
            )
        )
        return out


def _f(value: Any, default: float = float("nan")) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def _g(value: float) -> str:
    return "n/a" if value != value else f"{value:.4f}"


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{value * 100:.1f}%"
