"""A small market for the runtime checks' tests and benches: real pieces, small and fast.

A causal feature builder over a few lags (`SmallBuilder`, the runtime `FeatureBuilder`
protocol, without TA-Lib's warm-up lengths; ``drop``/``swap``/``version`` make a drifted
one), training feature files cut from the market simulator, an honestly fitted model, and
model folders shaped as the lstm family saves them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from remote.sandbox.market import simulated_candles
from runtime_checks.inputs import FeatureSpecInfo
from training.features.io import FeatureFileMeta, feature_hash, write_feature_file

GRANULARITY = 300
DAY = 86_400
CUTOFF = int(pd.Timestamp("2026-06-01", tz="UTC").timestamp())
"""The newest bar training may see; dry runs read bars after it."""


class SmallBuilder:
    """A causal feature builder (past data only) that implements the runtime FeatureBuilder protocol.

    It stands in for `training.features`' builder so these tests do not depend on
    TA-Lib features' warm-up lengths; ``drop``/``swap``/``version`` make a drifted builder.
    """

    LAGS = (1, 3, 12, 36)

    def __init__(self, *, drop: Sequence[str] = (), swap: bool = False, version: str = "small-1") -> None:
        self.drop = tuple(drop)
        self.swap = swap
        self.version = version

    def _definitions(self) -> list[dict]:
        defs = [{"name": f"ret_{k}", "kind": "log_return", "lag": k} for k in self.LAGS]
        defs += [{"name": f"vol_{k}", "kind": "volatility", "period": k} for k in (12, 48)]
        defs += [{"name": "vol_ratio", "kind": "ratio"}, {"name": "hour_sin", "kind": "day_cycle"}]
        defs = [d for d in defs if d["name"] not in self.drop]
        if self.swap:
            defs[0], defs[1] = defs[1], defs[0]
        return defs

    def spec(self, symbol: str) -> FeatureSpecInfo:
        defs = self._definitions()
        return FeatureSpecInfo(tuple(d["name"] for d in defs), feature_hash(self.version, defs))

    def build(self, symbol: str, candles: pd.DataFrame) -> pd.DataFrame:
        out = candles.loc[:, ["timestamp", "open", "high", "low", "close", "volume"]].reset_index(drop=True).copy()
        logc = np.log(out["close"])
        one = logc.diff()
        cols = {f"ret_{k}": logc - logc.shift(k) for k in self.LAGS}
        cols["vol_12"] = one.rolling(12).std()
        cols["vol_48"] = one.rolling(48).std()
        cols["vol_ratio"] = cols["vol_12"] / cols["vol_48"]
        hours = out["timestamp"].dt.hour + out["timestamp"].dt.minute / 60.0
        cols["hour_sin"] = np.sin(2 * np.pi * hours / 24.0)
        for name in self.spec(symbol).names:
            out[name] = cols[name]
        return out


def write_training_file(
    features_dir: Path,
    symbol: str,
    *,
    mode: str,
    days: int,
    builder: SmallBuilder | None = None,
    seed: int = 7,
    stored_symbol: str | None = None,
) -> Path:
    """The training feature file for ``symbol``: simulator candles up to `CUTOFF`, built with ``builder``."""
    builder = builder or SmallBuilder()
    candles = simulated_candles(symbol, CUTOFF - days * DAY, CUTOFF, granularity=GRANULARITY, seed=seed, mode=mode)
    frame = builder.build(symbol, candles).dropna().reset_index(drop=True)
    frame["session"] = "any"
    frame["volatility_regime"] = "any"
    spec = builder.spec(symbol)
    meta = FeatureFileMeta(stored_symbol or symbol, builder.version, spec.hash, spec.names, len(frame))
    path = Path(features_dir) / f"{symbol}.parquet"
    write_feature_file(path, frame, meta)
    return path


def write_model(
    models_dir: Path,
    symbol: str,
    names: Sequence[str],
    fhash: str,
    *,
    stamp: str = "20260601T000000Z",
    trained_symbol: str | None = None,
    drop_keys: Sequence[str] = (),
    window: int = 24,
    horizon: int = 12,
    seed: int = 0,
    network=None,
    scaler=None,
    costs: dict | None = None,
) -> Path:
    """A registry-shaped model folder with an (untrained) DirectionLSTM, as the trainer lays it out."""
    import torch

    from training import registry
    from training.dataset import Scaler
    from training.families.lstm.network import DirectionLSTM
    from training.families.lstm.saved import model_payload

    torch.manual_seed(seed)
    net = network if network is not None else DirectionLSTM(len(names), 8, 1, 0.0)
    scaler = scaler or Scaler(tuple([0.0] * len(names)), tuple([1.0] * len(names)))
    payload = model_payload(
        net,
        symbol=trained_symbol or symbol,
        feature_names=names,
        feature_hash=fhash,
        spec_version="small-1",
        scaler=scaler,
        config={"window": window, "horizon": horizon, "threshold": 0.0},
        dropout=0.0,
    )
    for key in drop_keys:
        payload.pop(key)
    folder = Path(models_dir) / "models" / symbol / stamp
    folder.mkdir(parents=True)
    torch.save(payload, folder / "model.pt")
    costs = costs if costs is not None else {"fee_bps": 10, "spread_bps": 2, "slippage_bps": 2}
    (folder / "config.json").write_text(json.dumps({"costs": costs}))
    (folder / "sha256.txt").write_text(
        "".join(f"{registry.sha256_file(folder / n)}  {n}\n" for n in ("model.pt", "config.json"))
    )
    return folder


def fit_linear_model(
    features_dir: Path, models_dir: Path, symbol: str, *, horizon: int = 1, costs: dict | None = None
) -> Path:
    """Fit a logistic regression on the training feature file alone, and save it as a real model.pt.

    The fit is honest (training rows only; labels are the next ``horizon`` bars' direction)
    and takes milliseconds, unlike an LSTM on two CPU cores. It is embedded in a one-unit
    DirectionLSTM whose gates are pinned open (input, output) and shut (forget), so the
    checkpoint's P(up) is sigmoid(tanh(tanh(w.x + b))) of the last row: the sign of the
    linear score, through the real load/scale/predict path.
    """
    import pyarrow.parquet as pq
    import torch

    from training.dataset import Scaler
    from training.families.lstm.network import DirectionLSTM
    from training.features.io import read_feature_meta

    path = Path(features_dir) / f"{symbol}.parquet"
    meta = read_feature_meta(path)
    frame = pq.read_table(path).to_pandas()
    x = frame.loc[:, list(meta.feature_names)].to_numpy(dtype=np.float64)[:-horizon]
    close = frame["close"].to_numpy(dtype=np.float64)
    y = (close[horizon:] > close[:-horizon]).astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / std
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(300):  # plain gradient descent on the log-loss, a little L2
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w -= 0.5 * (z.T @ (p - y) / len(y) + 1e-3 * w)
        b -= 0.5 * float((p - y).mean())
    n = len(meta.feature_names)
    net = DirectionLSTM(n, 1, 1, 0.0)
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
        # Gate rows in PyTorch order: input, forget, cell, output.
        net.lstm.bias_ih_l0[:] = torch.tensor([20.0, -20.0, b, 20.0])  # type: ignore[operator]
        net.lstm.weight_ih_l0[2, :] = torch.tensor(w, dtype=torch.float32)  # type: ignore[operator]
        net.head.weight[:] = 1.0
    scaler = Scaler(tuple(float(v) for v in mean), tuple(float(v) for v in std))
    return write_model(
        models_dir,
        symbol,
        meta.feature_names,
        meta.feature_hash,
        window=4,
        horizon=horizon,
        network=net,
        scaler=scaler,
        costs=costs,
    )
