"""Test-part metrics: classification quality, two baselines, and an after-cost trading rule.

Everything is plain NumPy so the runtime checks can reuse it without torch.

- `classification_metrics`: accuracy, F1 (of "up"), AUC (rank-based, ties averaged),
  log-loss (probabilities clipped to [1e-7, 1 - 1e-7]).
- Baselines: `majority_baseline` (always the training part's majority class, with its
  training frequency as probability) and `last_move_baseline` (the last ``horizon``-bar move
  repeated, with the training part's conditional frequency as probability).
- `after_cost`: every ``horizon``-th sample, go long when P(up) > 0.5 + threshold, short
  when < 0.5 - threshold, and keep the side held while P(up) stays inside that band; hold
  each decision ``horizon`` bars. Each change of position pays per side
  ``fee + spread / 2 + slippage`` basis points (a round trip pays twice that).
- `pick_threshold`: the band with the best after-cost result on the validation part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

EPS = 1e-7


@dataclass(frozen=True)
class TradingCosts:
    """Per-side costs for one symbol, in basis points of notional."""

    fee_bps: float = 10.0
    spread_bps: float = 2.0
    slippage_bps: float = 2.0

    @property
    def round_trip(self) -> float:
        """The cost of opening and closing one position, as a fraction."""
        return 2.0 * (self.fee_bps + self.spread_bps / 2.0 + self.slippage_bps) / 1e4

    @classmethod
    def for_symbol(cls, costs: Mapping[str, Any] | None, symbol: str) -> "TradingCosts":
        """Costs from a config mapping ``{"default": {...}, "<SYMBOL>": {...}}``; the symbol overrides."""
        costs = costs or {}
        merged = {**dict(costs.get("default", {})), **dict(costs.get(symbol, {}))}
        known = {k: float(v) for k, v in merged.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def classification_metrics(y_true: np.ndarray, p_up: np.ndarray) -> dict[str, float]:
    """Accuracy, F1, AUC and log-loss of probabilities ``p_up`` against 0/1 labels."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(p_up, dtype=np.float64), EPS, 1 - EPS)
    pred = (p > 0.5).astype(np.float64)
    tp = float(((pred == 1) & (y == 1)).sum())
    fp = float(((pred == 1) & (y == 0)).sum())
    fn = float(((pred == 0) & (y == 1)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return {
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "f1": f1,
        "auc": auc(y, p),
        "log_loss": float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()) if len(y) else float("nan"),
        "samples": int(len(y)),
        "up_share": float(y.mean()) if len(y) else float("nan"),
    }


def auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks); NaN if one class is absent."""
    y = np.asarray(y_true)
    score = np.asarray(score, dtype=np.float64)
    n_pos = int((y == 1).sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    # Average the ranks of tied scores so a constant predictor scores exactly 0.5.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def majority_baseline(train_labels: np.ndarray, n: int) -> np.ndarray:
    """P(up) for ``n`` samples from always predicting the training part's majority class."""
    share = float(np.mean(train_labels)) if len(train_labels) else 0.5
    # Predict the majority class with its training frequency as confidence.
    return np.full(n, np.clip(share, EPS, 1 - EPS))


def last_move_baseline(
    close: np.ndarray, ends: np.ndarray, horizon: int, train_ends: np.ndarray, train_labels: np.ndarray
) -> np.ndarray:
    """P(up) from repeating the last ``horizon``-bar move, calibrated on the training part."""

    def last_up(at: np.ndarray) -> np.ndarray:
        prev = close[np.maximum(at - horizon, 0)]
        return close[at] > prev

    train_up = last_up(train_ends)
    p_up_after_up = _share(train_labels[train_up], default=0.5)
    p_up_after_down = _share(train_labels[~train_up], default=0.5)
    # Repeating the move means predicting "up" after up: keep the direction even when the
    # training frequencies disagree, so this stays the naive rule it is named after.
    hi = max(p_up_after_up, 0.5 + EPS)
    lo = min(p_up_after_down, 0.5 - EPS)
    return np.where(last_up(ends), hi, lo)


def decide_positions(p_up: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """The side held after each decision: +1 long, -1 short, 0 flat (only before the first call).

    A side is taken when P(up) leaves the band ``0.5 +/- threshold`` on that side and kept
    until it leaves the band on the other side: inside the band the bot keeps what it has.
    """
    p = np.asarray(p_up, dtype=np.float64)
    call = np.where(p > 0.5 + threshold, 1.0, np.where(p < 0.5 - threshold, -1.0, np.nan))
    if len(call) == 0:
        return call
    # Carry the last call forward through the band (a forward fill), flat before the first.
    filled = np.where(np.isnan(call), 0.0, call)
    last = np.maximum.accumulate(np.where(np.isnan(call), -1, np.arange(len(call))))
    return np.where(last >= 0, filled[np.maximum(last, 0)], 0.0)


def after_cost(
    p_up: np.ndarray, future_return: np.ndarray, horizon: int, costs: TradingCosts, threshold: float = 0.0
) -> dict[str, Any]:
    """Net result of the long/short rule, decided every ``horizon`` bars, after costs.

    Each decision holds its side for ``horizon`` bars (`decide_positions`: a side is kept
    until P(up) crosses the band on the other side). Costs are paid on changes only: half a
    round trip to open or close, a full one to reverse; the last position is closed at the
    end. ``trades`` counts positions opened.
    """
    step = max(1, int(horizon))
    p = np.asarray(p_up, dtype=np.float64)[::step]
    r = np.asarray(future_return, dtype=np.float64)[::step]
    position = decide_positions(p, threshold)
    held = np.concatenate([[0.0], position, [0.0]])
    change = np.abs(np.diff(held))  # one entry per decision, plus the final close
    paid = change * costs.round_trip / 2.0
    gross = position * r
    net = gross - paid[:-1]
    net[-1:] -= paid[-1]  # closing the last position (no-op when there are no decisions)
    equity = np.cumsum(net)
    drawdown = float((np.maximum.accumulate(np.concatenate([[0.0], equity])) - np.concatenate([[0.0], equity])).max())
    traded = position != 0
    n_trades = int(((held[1:-1] != held[:-2]) & traded).sum())
    per_decision = net[traded]
    return {
        "trades": n_trades,
        "decisions": int(traded.sum()),
        "threshold": float(threshold),
        "gross_return": float(gross.sum()),
        "net_return": float(net.sum()),
        "costs_paid": float(paid.sum()),
        "net_bps_per_trade": float(net.sum() / n_trades * 1e4) if n_trades else 0.0,
        "hit_rate": float((gross[traded] > 0).mean()) if traded.any() else float("nan"),
        "sharpe_per_decision": float(per_decision.mean() / per_decision.std() * np.sqrt(len(per_decision)))
        if len(per_decision) > 1 and per_decision.std() > 0
        else 0.0,
        "max_drawdown": drawdown,
        "round_trip_cost_bps": costs.round_trip * 1e4,
        "costs": asdict(costs),
    }


THRESHOLD_GRID = (0.0, 0.02, 0.05, 0.08, 0.1, 0.15, 0.2)
"""Bands `pick_threshold` tries: from "always in the market" to "only on strong calls"."""


def pick_threshold(
    p_up: np.ndarray,
    future_return: np.ndarray,
    horizon: int,
    costs: TradingCosts,
    floor: float = 0.0,
    *,
    min_trades: int = 0,
) -> tuple[float, float]:
    """The band (at least ``floor``) with the best after-cost result on these samples, and that result.

    Meant for the validation part: the test part and the dry run then judge a band chosen
    without them. Ties go to the narrower band. A wider band than ``floor`` must trade at
    least ``min_trades`` times here: a band that trades too rarely to be judged (the gates
    want that many trades on parts of the same length) is no choice at all.
    """
    best = (float(floor), after_cost(p_up, future_return, horizon, costs, floor)["net_return"])
    for band in THRESHOLD_GRID:
        if band <= floor:
            continue
        result = after_cost(p_up, future_return, horizon, costs, band)
        if result["trades"] < min_trades:
            continue
        if result["net_return"] > best[1] + 1e-12:
            best = (float(band), result["net_return"])
    return best


def _share(labels: np.ndarray, default: float) -> float:
    return float(np.mean(labels)) if len(labels) else default
