"""The dry run: the live path without orders.

For each symbol: fetch the latest candles, build runtime features, load the downloaded
model, and predict over the newest bars, printing a line per iteration such as
``BTC-USD: long @ 65.3% (LSTM: 0.653)``. Then, on every bar after the model's test part
(out of sample, and never seen by promotion), measure what the gate needs:

- the directional hit rate on every out-of-sample bar, and its one-sided binomial p-value
  against 50% on non-overlapping samples (every ``horizon``-th bar, whose outcomes are
  independent under "no edge");
- the hit rates of the two baselines (always the training majority; repeat the last move)
  on the same bars: comparing rates over every bar, rather than one phase of them, keeps
  the comparison from turning on which minute the samples happen to start;
- whether the predictions are degenerate (constant, or stuck near 0.5);
- the evidence the gate judges (`training.evidence`): discrimination (AUC and its
  p-value), the hit rate of the rule that trades, McNemar against each baseline on the
  same bars, and the after-cost result with its block-bootstrap interval.

Only bars after the model's test part are judged (the part that decided promotion is
never re-scored): the holdout the training file reserved, and anything newer.

With no trained model for a symbol the dry run falls back to the last-move baseline and
says so; its result carries ``trained: false`` and the gate refuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from runtime_checks import models
from runtime_checks.alignment import DEFAULT_FETCH_BARS, read_training_file
from runtime_checks.checks import DRYRUN, CheckResult
from runtime_checks.errors import CheckInputError
from runtime_checks.inputs import CandleSource, FeatureBuilder, fresh_candles, unix_seconds

STUCK_BAND = 0.01
"""Predictions all within 0.5 +/- this are "stuck near 0.5"."""
CONSTANT_STD = 1e-4


def binomial_p_value(hits: int, n: int) -> float:
    """P(at least ``hits`` of ``n`` fair coin flips come up heads): one-sided, against 50%."""
    if n <= 0:
        return 1.0
    hits = max(0, min(hits, n))
    # Sum the upper tail in log space; exact for the sample sizes a dry run sees.
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2) for k in range(hits, n + 1)
    ]
    top = max(log_terms)
    return float(min(1.0, math.exp(top) * sum(math.exp(t - top) for t in log_terms)))


def direction_line(symbol: str, p_up: float, label: str = "LSTM") -> str:
    """``BTC-USD: long @ 65.3% (LSTM: 0.653)``: the call, its confidence, and the raw P(up)."""
    side, conf = ("long", p_up) if p_up > 0.5 else ("short", 1.0 - p_up)
    return f"{symbol}: {side} @ {conf * 100:.1f}% ({label}: {p_up:.3f})"


def evaluate(
    p_up: np.ndarray,
    close: np.ndarray,
    ends: np.ndarray,
    horizon: int,
    *,
    majority_up: bool,
    costs: Any,
    threshold: float = 0.0,
    resamples: int | None = None,
) -> dict[str, Any]:
    """The gate's figures for predictions ``p_up`` made at bars ``ends`` (labels from ``close``).

    ``evidence`` holds what the gate judges (`training.evidence.direction_evidence`: the
    discrimination, the hit rate of the rule that trades, McNemar against each baseline on
    the same bars, the after-cost result with its block-bootstrap interval); the flat
    figures beside it are what the summary line shows.
    """
    from training import stats
    from training.evidence import direction_evidence

    p_all = np.asarray(p_up, dtype=np.float64)
    future_all = close[ends + horizon] / close[ends] - 1.0
    up_all = close[ends + horizon] > close[ends]
    last_up_all = close[ends] > close[np.maximum(ends - horizon, 0)]
    # The p-value counts hits on non-overlapping samples (every horizon-th bar): their
    # outcomes are independent under "no edge", so the binomial test means what it says.
    step = max(1, int(horizon))
    n = len(ends[::step])
    hits = int(((p_all[::step] > 0.5) == up_all[::step]).sum())

    def rate(calls: np.ndarray) -> float:
        """Share of out-of-sample bars whose direction ``calls`` got right."""
        return float((calls == up_all).mean()) if len(ends) else float("nan")

    majority = np.full(len(ends), 0.75 if majority_up else 0.25)
    last_move = np.where(last_up_all, 0.75, 0.25)
    evidence = direction_evidence(
        p_all, up_all, future_all, horizon, costs, threshold, {"majority": majority, "last_move": last_move},
        resamples=resamples or stats.DEFAULT_RESAMPLES,
    )  # fmt: skip
    figures: dict[str, Any] = {
        "samples": n,
        "bars": int(len(ends)),
        "hits": hits,
        "hit_rate": rate(p_all > 0.5),
        "p_value": binomial_p_value(hits, n),
        "baseline_majority_hit_rate": rate(np.full(len(ends), bool(majority_up))),
        "baseline_last_move_hit_rate": rate(last_up_all),
        "mean_confidence": float(np.maximum(p_all, 1 - p_all).mean()) if n else float("nan"),
        "p_up_std": float(p_all.std()) if n else 0.0,
        "long_share": float((p_all > 0.5).mean()) if n else float("nan"),
        "evidence": evidence,
        "equity": equity_curves(p_all, future_all, horizon, costs, threshold, majority, last_move),
    }
    constant = n == 0 or figures["p_up_std"] < CONSTANT_STD
    stuck = n == 0 or float(np.abs(p_all - 0.5).max()) < STUCK_BAND
    figures["degenerate"] = bool(constant or stuck)
    figures["degenerate_reason"] = "constant" if constant else "stuck near 0.5" if stuck else ""
    figures.update(
        {
            "after_cost_net_return": evidence["net_return"],
            "after_cost_trades": evidence["trades"],
            "after_cost_gross_return": evidence["gross_return"],
            "round_trip_cost_bps": evidence["round_trip_cost_bps"],
        }
    )
    return figures


EQUITY_POINTS = 240
"""Points kept of each equity curve (the run report draws them)."""


def equity_curves(
    p_up: np.ndarray, future: np.ndarray, horizon: int, costs: Any, threshold: float, *baselines: np.ndarray
) -> dict[str, list[float]]:
    """The after-cost equity of the traded rule and of each baseline's rule (majority,
    last move) on the same decisions: cumulative net return, thinned to `EQUITY_POINTS`."""
    from training.evidence import decision_net_returns

    curves = {}
    for name, p, band in (
        ("model", p_up, threshold),
        ("majority", baselines[0], 0.0),
        ("last_move", baselines[1], 0.0),
    ):
        net, _ = decision_net_returns(p, future, horizon, costs, band)
        equity = np.cumsum(net)
        keep = np.unique(np.linspace(0, len(equity) - 1, min(len(equity), EQUITY_POINTS)).astype(int))
        curves[name] = [round(float(v), 6) for v in equity[keep]] if len(equity) else []
    return curves


@dataclass(frozen=True)
class SymbolDryrun:
    """One symbol's dry run: the iteration lines and the stored result."""

    lines: tuple[str, ...]
    result: CheckResult


def dryrun_symbol(
    symbol: str,
    *,
    models_dir: Path,
    features_dir: Path,
    builder: FeatureBuilder,
    candles: CandleSource,
    iterations: int = 5,
    fetch_bars: int = DEFAULT_FETCH_BARS,
    criteria: Any = None,
    on_line: Callable[[str], None] | None = None,
) -> SymbolDryrun:
    """Run the live path for ``symbol`` without orders and measure it out of sample.

    The result passes when its figures meet the gate's ``criteria`` (`gate.GateCriteria()`
    when None); the gate still decides, with alignment and every other symbol in view.
    """
    from runtime_checks.gate import GateCriteria, judge_dryrun

    criteria = criteria or GateCriteria()
    models.check_symbol(symbol)
    training = read_training_file(features_dir, symbol)
    folder = models.model_folder(models_dir, symbol)
    model = None
    if folder is not None:
        models.require_complete(folder)
        model = models.load_predictor(folder, symbol)
    cutoff = _judged_after(folder, training)
    fetch_bars = max(fetch_bars, _bars_to_judge_from(cutoff, builder, symbol, training.granularity, candles.now()))
    raw = candles.latest(symbol, training.granularity, fetch_bars)
    frame = fresh_candles(raw, symbol=symbol, granularity=training.granularity, now=candles.now())
    close = frame["close"].to_numpy(dtype=np.float64)
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    if model is not None:
        built = builder.build(symbol, frame)
        missing = [n for n in model.feature_names if n not in built.columns]
        if missing:
            raise CheckInputError(f"{symbol}: the runtime builder lacks features the model reads ({', '.join(missing[:5])}); "
                                  "run `console check alignment`")  # fmt: skip
        if len(built) != len(frame):
            raise CheckInputError(f"{symbol}: the runtime builder returned {len(built)} rows for {len(frame)} candles")
        x = built.loc[:, list(model.feature_names)].to_numpy(dtype=np.float64)
        window, horizon, label = model.window, model.horizon, "LSTM"
        threshold = float(model.config.get("threshold", 0.0) or 0.0)
    else:
        x = close[:, None]
        baseline = models.baseline_predictor(None)
        window, horizon, label, threshold = baseline.window, baseline.horizon, baseline.label, 0.0

    ends = _usable_ends(x, window)
    if len(ends) < iterations:
        raise CheckInputError(f"{symbol}: only {len(ends)} bars have complete features (need {iterations}); "
                              "fetch more candles or wait for the feed")  # fmt: skip
    if model is not None:
        views = np.lib.stride_tricks.sliding_window_view(x, window, axis=0).transpose(0, 2, 1)
        p_all = np.concatenate(
            [model.probabilities(views[ends[i : i + 2048] - window + 1]) for i in range(0, len(ends), 2048)]
        )
    else:
        p_all = baseline.probabilities_from_close(close, ends)

    lines = []
    if model is None:
        lines.append(f"{symbol}: no trained model in {models.models_root(models_dir)}: falling back to the last-move "
                     "baseline (never passes the gate)")  # fmt: skip
    for i in range(len(ends) - iterations, len(ends)):
        line = f"{direction_line(symbol, float(p_all[i]), label)} at {stamps.iloc[ends[i]]:%Y-%m-%d %H:%M} UTC"
        lines.append(line)
    for line in lines:
        if on_line is not None:
            on_line(line)

    # Out of sample *and* not the bars that promoted it: only bars after the model's test
    # part (the holdout and anything newer). A model says where its test part ended
    # (``judged_until``); an older one that does not is judged only on bars newer than the
    # whole training file, which holds its test part.
    oos = (unix_seconds(stamps)[ends] > cutoff) & (ends + horizon < len(close))
    figures = evaluate(
        p_all[oos],
        close,
        ends[oos],
        horizon,
        majority_up=training.up_share(horizon) >= 0.5,
        costs=models.trading_costs(folder, symbol),
        threshold=threshold,
    )
    judged = ends[oos]
    figures.update({"trained": model is not None, "model": label, "horizon": horizon, "window": window,
                    "out_of_sample_after": f"{pd.Timestamp(cutoff, unit='s', tz='UTC'):%Y-%m-%d %H:%M} UTC",
                    "judged_bars": {
                        "first": f"{stamps.iloc[judged[0]]:%Y-%m-%d %H:%M} UTC" if len(judged) else None,
                        "last": f"{stamps.iloc[judged[-1]]:%Y-%m-%d %H:%M} UTC" if len(judged) else None,
                        "bars": int(len(judged)),
                        "after": f"{pd.Timestamp(cutoff, unit='s', tz='UTC'):%Y-%m-%d %H:%M} UTC",
                        "disjoint_from_training_validation_test": True,
                    },
                    "newest_bar": f"{stamps.iloc[-1]:%Y-%m-%d %H:%M} UTC",
                    "last_p_up": float(p_all[-1])})  # fmt: skip
    problems = judge_dryrun(symbol, figures, criteria)
    details = {"model_dir": str(folder) if folder else None, "iterations": lines, "problems": problems}
    e = figures["evidence"]
    summary = (
        f"{symbol}: {label}, {figures['bars']} bars after the test part ({figures['samples']} non-overlapping), "
        f"hit rate {_pct(figures['hit_rate'])} (baselines {_pct(figures['baseline_majority_hit_rate'])} majority, "
        f"{_pct(figures['baseline_last_move_hit_rate'])} last move), AUC {e['auc']:.3f} (p={e['auc_p_value']:.3g}), "
        f"trading hit rate {_pct(e['trade_hit_rate'])} (p={e['trade_hit_p_value']:.3g}), after costs "
        f"{figures['after_cost_net_return']:+.4f} over {figures['after_cost_trades']} trades "
        f"[{e['net_interval'][0]:+.4f}, {e['net_interval'][1]:+.4f}] (p={e['net_p_value']:.3g})"
        + (f", degenerate ({figures['degenerate_reason']})" if figures["degenerate"] else "")
        + (" (no trained model: baseline only)" if model is None else "")
    )
    return SymbolDryrun(tuple(lines), DRYRUN.result(symbol, not problems, summary, figures, details))


def _judged_after(folder: Path | None, training: Any) -> int:
    """Unix seconds of the last bar the dry run may not judge: the model's test part's end
    (``judged_until``); for an older model that does not say, the newer of the training
    file's last bar and the model's training time."""
    cutoff_at = models.judged_until(folder)
    if cutoff_at is None:
        cutoff_at = training.last_timestamp
        until = models.trained_until(folder)
        if until is not None and unix_seconds([until])[0] > unix_seconds([cutoff_at])[0]:
            cutoff_at = until
    return int(unix_seconds([cutoff_at])[0])


def _bars_to_judge_from(cutoff: int, builder: FeatureBuilder, symbol: str, granularity: int, now: float) -> int:
    """Candles to fetch so that every bar after ``cutoff`` is judged: the builder's settling
    before the first of them, and the bars since. A holdout longer than the default fetch is
    then judged whole, not only its newest days."""
    settle = builder.spec(symbol).settle_minutes * 60 // max(granularity, 1)
    since = max(int(now) - cutoff, 0) // max(granularity, 1)
    return int(settle + since + 2)


def _usable_ends(x: np.ndarray, window: int) -> np.ndarray:
    """Rows whose last ``window`` rows of features are all finite (indicator warm-up excluded)."""
    ok = np.isfinite(x).all(axis=1).astype(np.int64)
    run = np.convolve(ok, np.ones(window, dtype=np.int64), mode="full")[: len(ok)]
    return np.flatnonzero(run == window)


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{value * 100:.1f}%"
