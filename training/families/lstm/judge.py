"""How an ``lstm`` model is judged: on the test part, after costs, against its two baselines.

The test part (chronologically last, purged from validation; `training.dataset`) decides
promotion. The model and both baselines (`training.metrics`: always the training
majority; repeat the last ``horizon``-bar move) are scored on the same samples:

- classification figures (accuracy, F1, AUC, log-loss) on every test sample, and a paired
  one-sided McNemar test of accuracy against each baseline on non-overlapping samples
  (every ``horizon``-th: their outcomes are independent under "no better");
- the long/short rule after costs (`training.metrics.after_cost`, band chosen on the
  validation part), its per-decision net returns resampled in blocks for an interval and
  a p-value (`training.stats.block_bootstrap`), and paired against each baseline's.

`lstm_rules` turns the ``gates`` section into stock rules: enough samples, beat both
baselines on accuracy (significant), earn after costs (significant, enough trades), and
the optional floors (accuracy, AUC, net return) and drawdown ceiling.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from training import stats
from training.evidence import MIN_SAMPLES, MIN_TRADES, auc_p_value, bootstrap_block
from training.evidence import decision_net_returns as decision_returns
from training.families.evaluation import (
    AfterCost,
    BeatsBaseline,
    Comparison,
    EarnsAfterCosts,
    Evaluation,
    GateRule,
    JudgedPart,
    MetricAbove,
    MinSamples,
    RuleOutcome,
    SignificantlyAbove,
)
from training.families.lstm.params import LstmParams
from training.metrics import (
    TradingCosts,
    after_cost,
    auc,
    classification_metrics,
    decide_positions,
    last_move_baseline,
    majority_baseline,
    pick_threshold,
)

if TYPE_CHECKING:  # pragma: no cover
    from training.dataset import SymbolDataset
    from training.families.lstm.config import TrainConfig

FAMILY = "lstm"
BASELINES = ("majority", "last_move")
MIN_JUDGED_SAMPLES = MIN_SAMPLES
"""Non-overlapping test samples below which no figure means anything (100)."""


BAND_TRADES_MARGIN = 1.5
"""A band wider than the configured one must trade this many times the gates' minimum on the
validation part. The test part and the dry run's holdout are as long, but a band's trades
move from part to part with the market's trend lengths (a sandbox ETH-USD model: 37 on
validation, 26 in the holdout), so a band that only just reaches the minimum there often
misses it where the model is judged."""


def decision_band(
    config: "TrainConfig", dataset: "SymbolDataset", p_val: np.ndarray, costs: TradingCosts, gate_min_trades: int = 0
) -> tuple["TrainConfig", dict[str, Any]]:
    """The config the model is saved with: its long/short band chosen on the validation part
    when ``tune_threshold`` (never on the test part, which judges it), among the bands that
    trade there at least `BAND_TRADES_MARGIN` times the ``gate_min_trades`` the gates ask
    of the test part, and how it was chosen."""
    if not config.tune_threshold:
        return config, {"threshold": config.threshold, "chosen_on": "config"}
    band, val_net = pick_threshold(
        p_val,
        dataset.future_return[dataset.val_ends],
        dataset.spec.horizon,
        costs,
        floor=config.threshold,
        min_trades=math.ceil(BAND_TRADES_MARGIN * gate_min_trades),
    )
    return replace(config, threshold=band), {
        "threshold": band,
        "chosen_on": "validation",
        "validation_net_return": val_net,
    }


@dataclass(frozen=True)
class Scored:
    """P(up) of the model and each baseline on the test samples, with the truth."""

    p: dict[str, np.ndarray]
    y: np.ndarray
    future_return: np.ndarray
    horizon: int

    @classmethod
    def of(cls, dataset: "SymbolDataset", p_test: np.ndarray) -> "Scored":
        ends, horizon = dataset.test_ends, dataset.spec.horizon
        train_y = dataset.labels[dataset.train_ends]
        return cls(
            {
                "model": np.asarray(p_test, dtype=np.float64),
                "majority": majority_baseline(train_y, len(ends)),
                "last_move": last_move_baseline(dataset.close, ends, horizon, dataset.train_ends, train_y),
            },
            dataset.labels[ends].astype(np.float64),
            dataset.future_return[ends],
            horizon,
        )


def judged_figures(
    dataset: "SymbolDataset", p_test: np.ndarray, costs: TradingCosts, threshold: float
) -> dict[str, Any]:
    """Test-part figures for the model and both baselines, each with the after-cost rule
    (``metrics.json``: what the operator's table shows)."""
    scored = Scored.of(dataset, p_test)
    out: dict[str, Any] = {"baselines": {}}
    for name, p in scored.p.items():
        block = {
            **classification_metrics(scored.y, p),
            "after_cost": after_cost(p, scored.future_return, scored.horizon, costs, threshold),
        }
        if name == "model":
            out["model"] = block
        else:
            out["baselines"][name] = block
    out["split"] = {
        "train": len(dataset.train_ends),
        "val": len(dataset.val_ends),
        "test": len(dataset.test_ends),
        "purge_gap": dataset.spec.purge_gap,
    }
    return out


def evaluation(
    unit: str, dataset: "SymbolDataset", p_test: np.ndarray, costs: TradingCosts, threshold: float
) -> Evaluation:
    """The model judged on the test part: figures, baselines, paired comparisons, after costs."""
    scored = Scored.of(dataset, p_test)
    step = max(1, scored.horizon)
    metrics = judged_figures(dataset, p_test, costs, threshold)
    nets = {
        name: decision_returns(p, scored.future_return, scored.horizon, costs, threshold)[0]
        for name, p in scored.p.items()
    }
    block = bootstrap_block(len(nets["model"]))
    after = {
        name: _after_cost(
            metrics["model"]["after_cost"] if name == "model" else metrics["baselines"][name]["after_cost"],
            nets[name],
            block,
        )
        for name in scored.p
    }
    right = {name: (p[::step] > 0.5) == (scored.y[::step] > 0.5) for name, p in scored.p.items()}
    comparisons = []
    for base in BASELINES:
        p_value, _, _ = stats.mcnemar_one_sided(right["model"], right[base])
        comparisons.append(
            Comparison(
                base,
                "accuracy",
                float(right["model"].mean()),
                float(right[base].mean()),
                p_value,
                "mcnemar (non-overlapping samples)",
            )
        )
        diff = nets["model"] - nets[base]
        boot = stats.block_bootstrap(functools.partial(_sum_at, diff), len(diff), block=block)
        comparisons.append(
            Comparison(
                base,
                "net_return",
                float(nets["model"].sum()),
                float(nets[base].sum()),
                boot.p_value,
                f"block bootstrap (block {block})",
                boot.interval,
            )
        )
    model = metrics["model"]
    figures = {k: model[k] for k in ("auc", "f1", "log_loss")}
    # Discrimination and the rule that trades, on the non-overlapping samples the tests use.
    p_s, y_s = scored.p["model"][::step], scored.y[::step]
    figures["auc"] = auc(y_s, p_s)
    figures["auc_p_value"] = auc_p_value(y_s, p_s)
    held = decision_returns(scored.p["model"], scored.future_return, scored.horizon, costs, threshold)[1]
    wins = int((decide_positions(p_s, threshold)[held] * scored.future_return[::step][held] > 0).sum())
    figures["decisions_in_market"] = int(held.sum())
    figures["trade_hit_rate"] = wins / int(held.sum()) if held.any() else float("nan")
    figures["trade_hit_p_value"] = stats.binomial_sf(wins, int(held.sum())) if held.any() else 1.0
    ends = dataset.test_ends
    stamps = dataset.timestamps
    return Evaluation(
        family=FAMILY,
        unit=unit,
        part=JudgedPart(
            "test",
            int(len(right["model"])),
            _iso(stamps, ends[0]) if len(ends) else None,
            _iso(stamps, ends[-1]) if len(ends) else None,
        ),
        metrics={
            "accuracy": float(right["model"].mean()),
            "net_return": after["model"].net_return,
            "max_drawdown": float(model["after_cost"]["max_drawdown"]),
            **figures,
        },
        baselines={b: {"accuracy": float(right[b].mean()), "net_return": after[b].net_return} for b in BASELINES},
        comparisons=tuple(comparisons),
        after_cost=after["model"],
        baseline_after_cost={b: after[b] for b in BASELINES},
    )


def _sum_at(values: np.ndarray, idx: np.ndarray) -> float:
    """The sum of ``values`` at the (resampled) indices ``idx``."""
    return float(values[idx].sum())


def _after_cost(figures: dict[str, Any], net: np.ndarray, block: int) -> AfterCost:
    boot = stats.block_bootstrap(functools.partial(_sum_at, net), len(net), block=block)
    return AfterCost(
        net_return=float(figures["net_return"]),
        trades=int(figures["trades"]),
        gross_return=float(figures["gross_return"]),
        costs_paid=float(figures["costs_paid"]),
        interval=boot.interval,
        p_value=boot.p_value,
        figures={
            k: float(figures[k])
            for k in ("hit_rate", "sharpe_per_decision", "max_drawdown", "decisions", "threshold", "net_bps_per_trade")
        },
    )


def _iso(stamps: np.ndarray, row: int) -> str | None:
    if not len(stamps):
        return None
    import pandas as pd

    return str(pd.Timestamp(stamps[row]).tz_localize(None).isoformat()) + "Z"


@dataclass(frozen=True)
class DrawdownAtMost:
    """The after-cost rule's worst peak-to-trough loss stays within ``ceiling``."""

    ceiling: float

    def check(self, evaluation: Evaluation) -> RuleOutcome:
        value = evaluation.metrics.get("max_drawdown")
        ok = value is not None and math.isfinite(value) and value <= self.ceiling
        return RuleOutcome("max drawdown within ceiling", ok, value, self.ceiling)


def lstm_rules(params: LstmParams) -> tuple[GateRule, ...]:
    """The stock rules the ``gates`` section asks for (`training.families.evaluation`): the
    evidence rules of `training.evidence` on the test part, then the optional floors."""
    g, alpha = params.gates, params.alpha
    rules: list[GateRule] = [
        MinSamples(MIN_JUDGED_SAMPLES),
        SignificantlyAbove("auc", 0.5, "auc_p_value", alpha, "discrimination (AUC)"),
        SignificantlyAbove("trade_hit_rate", 0.5, "trade_hit_p_value", alpha, "hit rate of the rule that trades"),
    ]
    if g.beat_baselines:
        rules += [BeatsBaseline(base, "accuracy", alpha) for base in BASELINES]
    rules.append(EarnsAfterCosts(min_trades=int(g.min_trades or MIN_TRADES), alpha=alpha))
    if g.min_net_return is not None and g.min_net_return > 0:
        rules.append(MetricAbove("net_return", g.min_net_return))
    if g.min_accuracy is not None:
        rules.append(MetricAbove("accuracy", g.min_accuracy))
    if g.min_auc is not None:
        rules.append(MetricAbove("auc", g.min_auc))
    if g.max_drawdown is not None:
        rules.append(DrawdownAtMost(g.max_drawdown))
    return tuple(rules)
