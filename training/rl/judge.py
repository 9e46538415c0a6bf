"""How a trading agent is judged: out of sample, after costs, against three baselines.

The agent acts greedily over a whole part (the test part decides promotion), one decision
per bar, each filled at the next bar's open (`training.rl.env`). The same rows are traded
by the baselines:

- ``buy_and_hold``: long from the first decision to the last;
- ``flat``: never in the market (0 return, 0 cost: what not trading earns);
- ``last_move``: the direction models' long/short rule on their naive call, long after an
  up bar and short after a down bar.

Every series pays the same per-side cost on each change of position and closes its last
position at the end. Figures: total return, Sharpe (per decision, scaled to a year from
the bar spacing), maximum drawdown, turnover (position change per decision), hit rate (of
decisions holding a position). Significance: the sum of per-decision net log returns is
resampled in blocks (`training.stats.block_bootstrap`) for an interval and a one-sided
p-value, and the paired difference with each baseline likewise.

`dql_rules`: enough decisions, earns after costs (significant, enough trades), and beats
every baseline on net return (significant). On a random walk nothing earns, so nothing passes.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np

from training import stats
from training.families.evaluation import (
    DEFAULT_ALPHA,
    AfterCost,
    BeatsBaseline,
    Comparison,
    EarnsAfterCosts,
    Evaluation,
    GateRule,
    JudgedPart,
    MinSamples,
)
from training.rl.market import Market

FAMILY = "dql"
BASELINES = ("buy_and_hold", "flat", "last_move")
MIN_DECISIONS = 100


def baseline_positions(market: Market, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Each baseline's position at each decision row (known at the row's close)."""
    close = market.close
    prev = close[np.maximum(rows - 1, 0)]
    return {
        "buy_and_hold": np.ones(len(rows)),
        "flat": np.zeros(len(rows)),
        "last_move": np.sign(close[rows] - prev),
    }


def net_log_returns(positions: np.ndarray, held: np.ndarray, side_cost: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-decision net log returns (the last one also closes the position) and gross ones."""
    p = np.asarray(positions, dtype=np.float64)
    change = np.abs(np.diff(np.concatenate([[0.0], p, [0.0]])))
    keep = np.log(np.maximum(1e-12, 1.0 - side_cost * change))
    gross = p * held
    net = gross + keep[:-1]
    if len(net):
        net[-1] += keep[-1]
    return net, gross


def figures(positions: np.ndarray, net: np.ndarray, gross: np.ndarray, bars_per_year: float) -> dict[str, float]:
    """What the operator's table shows for one series of decisions."""
    p = np.asarray(positions, dtype=np.float64)
    equity = np.concatenate([[0.0], np.cumsum(net)])
    drawdown = 1.0 - np.exp(equity - np.maximum.accumulate(equity))
    held = p != 0
    held_prev = np.concatenate([[0.0], p[:-1]])
    std = float(net.std())
    return {
        "net_return": float(net.sum()),
        "total_return": float(math.expm1(net.sum())),
        "gross_return": float(gross.sum()),
        "costs_paid": float(gross.sum() - net.sum()),
        "sharpe": float(net.mean() / std * math.sqrt(bars_per_year)) if len(net) > 1 and std > 0 else 0.0,
        "max_drawdown": float(drawdown.max()),
        "turnover": float(np.abs(np.diff(np.concatenate([[0.0], p]))).mean()) if len(p) else 0.0,
        "hit_rate": float((gross[held] > 0).mean()) if held.any() else float("nan"),
        "trades": float(((p != held_prev) & held).sum()),
        "decisions": float(len(p)),
        "exposure": float(held.mean()) if len(p) else 0.0,
    }


def bars_per_year(market: Market) -> float:
    stamps = market.timestamps
    if len(stamps) < 2:
        return 365.0 * 24 * 12
    spacing = float(np.median(np.diff(stamps).astype("timedelta64[s]").astype(np.float64)))
    return 365.0 * 24 * 3600 / spacing if spacing > 0 else 365.0 * 24 * 12


def greedy_positions(
    market: Market, part: str, act: Callable[[np.ndarray], int], env_kwargs: dict[str, Any]
) -> np.ndarray:
    """The agent's position at every decision row of ``part``, acting greedily from flat."""
    from training.rl.env import TradingEnv

    rows = market.rows(part)
    env = TradingEnv(market=market, part=part, episode_length=len(rows), random_start=False, **env_kwargs)
    obs, _ = env.reset(options={"start": int(rows[0])})
    out = np.zeros(len(rows))
    for i in range(len(rows)):
        action = act(obs)
        out[i] = env.positions[action]
        obs, _, _, _, _ = env.step(action)
    return out


def evaluate_positions(
    unit: str, market: Market, part: str, positions: np.ndarray, side_cost: float
) -> tuple[Evaluation, dict[str, Any]]:
    """The agent's decisions on ``part`` judged against the baselines; also the series for plots."""
    rows = market.rows(part)
    held = market.held_log_return[rows]
    per_year = bars_per_year(market)
    series = {"model": np.asarray(positions, dtype=np.float64), **baseline_positions(market, rows)}
    nets, figs = {}, {}
    for name, pos in series.items():
        net, gross = net_log_returns(pos, held, side_cost)
        nets[name] = net
        figs[name] = figures(pos, net, gross, per_year)
    block = max(2, int(round(len(rows) ** (1 / 3))))
    after = {name: _after_cost(figs[name], nets[name], block) for name in series}
    comparisons = []
    for base in BASELINES:
        diff = nets["model"] - nets[base]
        boot = stats.block_bootstrap(functools.partial(_sum_at, diff), len(diff), block=block)
        comparisons.append(
            Comparison(
                base,
                "net_return",
                figs["model"]["net_return"],
                figs[base]["net_return"],
                boot.p_value,
                f"block bootstrap (block {block})",
                boot.interval,
            )
        )
    stamps = market.timestamps
    evaluation = Evaluation(
        family=FAMILY,
        unit=unit,
        part=JudgedPart(part, len(rows), _iso(stamps, rows[0]), _iso(stamps, rows[-1])),
        metrics=figs["model"],
        baselines={b: figs[b] for b in BASELINES},
        comparisons=tuple(comparisons),
        after_cost=after["model"],
        baseline_after_cost={b: after[b] for b in BASELINES},
    )
    curves = {
        "rows": rows,
        "timestamps": stamps[rows] if len(stamps) else rows,
        "equity": {name: np.exp(np.cumsum(net)) for name, net in nets.items()},
        "positions": series["model"],
    }
    return evaluation, curves


def dql_rules(
    *, min_trades: int = 30, alpha: float = DEFAULT_ALPHA, min_decisions: int = MIN_DECISIONS
) -> tuple[GateRule, ...]:
    """Enough decisions, earns after costs, and beats each baseline on net return (significant)."""
    rules: list[GateRule] = [MinSamples(min_decisions), EarnsAfterCosts(min_trades=min_trades, alpha=alpha)]
    rules += [BeatsBaseline(base, "net_return", alpha) for base in BASELINES]
    return tuple(rules)


def _after_cost(fig: dict[str, float], net: np.ndarray, block: int) -> AfterCost:
    boot = stats.block_bootstrap(functools.partial(_sum_at, net), len(net), block=block)
    return AfterCost(
        net_return=fig["net_return"],
        trades=int(fig["trades"]),
        gross_return=fig["gross_return"],
        costs_paid=fig["costs_paid"],
        interval=boot.interval,
        p_value=boot.p_value,
        figures={k: fig[k] for k in ("total_return", "sharpe", "max_drawdown", "turnover", "hit_rate", "exposure")},
    )


def _sum_at(values: np.ndarray, idx: np.ndarray) -> float:
    return float(values[idx].sum())


def _iso(stamps: np.ndarray, row: int) -> str | None:
    if not len(stamps):
        return None
    import pandas as pd

    return str(pd.Timestamp(stamps[row]).tz_localize(None).isoformat()) + "Z"
