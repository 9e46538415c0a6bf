"""A challenger meets the current champion on the same bars (`training.champions.ChallengeFn`).

Both models predict, through their own saved feature contract and scaler, on the rows of
the local training feature file that fall in the challenger's test part (the bars that
promoted it) and that are newer than anything the champion trained or stopped on (so the
champion is out of sample too). Both are scored by the same after-cost rule with the
challenger's costs and each model's own band (`training.evidence.direction_evidence`).

The rule: the challenger takes the place when its after-cost result on those bars is at
least the champion's. The paired block-bootstrap p-value of "the challenger is better"
and both figures are written into the line the roster keeps. Requiring the challenger to
be *significantly* better would entrench whichever model got there first, lucky or not;
the champion's expiry (``gates.champion_days``) and the challenger's own significance
rules are what keep a lucky model out. When the two cannot be compared on enough common
bars (another feature set the file lacks, too few bars newer than the champion's data),
the challenger -- which passed its own rules -- takes the place, and the line says why.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from runtime_checks import models
from runtime_checks.errors import CheckInputError
from training import stats
from training.champions import Challenge, ChallengeFn
from training.evidence import MIN_SAMPLES, bootstrap_block, decision_net_returns, direction_evidence


def same_bars_challenge(features_dir: Path, *, min_samples: int = MIN_SAMPLES) -> ChallengeFn:
    """The challenge `console.transfer.place_version` runs, reading ``features_dir``."""
    return functools.partial(_challenge, Path(features_dir), min_samples)


def _challenge(features_dir: Path, min_samples: int, symbol: str, challenger: Path, champion: Path) -> Challenge:
    from training.features.io import FeatureFileError, read_feature_file

    try:
        frame, _ = read_feature_file(Path(features_dir) / f"{models.check_symbol(symbol)}.parquet")
        new, old = models.load_predictor(challenger, symbol), models.load_predictor(champion, symbol)
    except (FeatureFileError, CheckInputError, OSError) as exc:
        return Challenge(True, f"not compared ({str(exc).splitlines()[0]}); the challenger passed its own rules")
    if not (hasattr(new, "probabilities") and hasattr(old, "probabilities")):
        return Challenge(True, "not compared (a family without probabilities); the challenger passed its own rules")
    missing = [n for n in (*new.feature_names, *old.feature_names) if n not in frame.columns]
    if missing:
        return Challenge(True, f"not compared (the feature file lacks {', '.join(missing[:3])}); the challenger passed its own rules")  # fmt: skip
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    first, last = _test_part(challenger)
    since = models.trained_until(champion)
    keep = np.ones(len(frame), dtype=bool)
    if first is not None:
        keep &= (stamps >= first).to_numpy()
    if last is not None:
        keep &= (stamps <= last).to_numpy()
    if since is not None:
        keep &= (stamps > since).to_numpy()
    horizon = int(new.horizon)
    ends = np.flatnonzero(keep)
    ends = ends[(ends >= max(new.window, old.window) - 1) & (ends + horizon < len(frame))]
    if len(ends[:: max(1, horizon)]) < min_samples:
        return Challenge(True, f"not compared ({len(ends)} common bars newer than the champion's data, need "
                               f"{min_samples} non-overlapping); the challenger passed its own rules")  # fmt: skip
    close = frame["close"].to_numpy(dtype=np.float64)
    up = close[ends + horizon] > close[ends]
    future = close[ends + horizon] / close[ends] - 1.0
    costs = models.trading_costs(challenger, symbol)
    ev, nets = {}, {}
    for name, model in (("challenger", new), ("champion", old)):
        x = frame.loc[:, list(model.feature_names)].to_numpy(dtype=np.float64)
        views = np.lib.stride_tricks.sliding_window_view(x, model.window, axis=0).transpose(0, 2, 1)
        p = np.concatenate([model.probabilities(views[ends[i : i + 2048] - model.window + 1]) for i in range(0, len(ends), 2048)])  # fmt: skip
        band = float(model.config.get("threshold", 0.0) or 0.0)
        ev[name] = direction_evidence(p, up, future, horizon, costs, band, {}, resamples=500)
        nets[name] = decision_net_returns(p, future, horizon, costs, band)[0]
    diff = nets["challenger"] - nets["champion"]
    boot = stats.block_bootstrap(lambda idx: float(diff[idx].sum()), len(diff), block=bootstrap_block(len(diff)))
    a, b = ev["challenger"]["net_return"], ev["champion"]["net_return"]
    won = a >= b
    when = f"{stamps.iloc[ends[0]]:%Y-%m-%d %H:%M}..{stamps.iloc[ends[-1]]:%Y-%m-%d %H:%M} UTC"
    return Challenge(
        won,
        f"after costs {a:+.4f} vs the champion's {b:+.4f} on the same {len(ends)} bars ({when}); "
        f"difference interval [{boot.low:+.4f}, {boot.high:+.4f}], p={boot.p_value:.3g} (challenger better); "
        f"AUC {ev['challenger']['auc']:.3f} vs {ev['champion']['auc']:.3f}; rule: challenger >= champion",
    )


def _test_part(folder: Path) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The first and last bar of the challenger's test part (its evaluation.json), if it says."""
    try:
        part = json.loads((Path(folder) / "evaluation.json").read_text()).get("part") or {}
    except (OSError, ValueError, AttributeError):
        return None, None
    first, last = part.get("first"), part.get("last")
    return (pd.to_datetime(first, utc=True) if first else None, pd.to_datetime(last, utc=True) if last else None)
