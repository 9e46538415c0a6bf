"""Gaps on real candles: no feature or label bridges a hole, and training and live agree.

Run by hand (the real candles are not part of a clone):

    .venv/bin/python scripts/bench/gapped_candles.py [--data ../shared/data/real] [--seed 7]

It reads Binance.US BTCUSDT one-minute candles (2023-03-01..21), removes 50 random
minutes and one 3-hour block, and builds the BTC-USD feature spec (73 features; the
daily candles stand in for CoinGecko's fundamentals) two ways:

- the training path: `build_features` over the whole gapped history, as `console
  features build` does (higher timeframes resampled from the minutes it has);
- the runtime path: at a few times after the block, `fresh_candles` over the 11,500 newest
  candles the live path would have fetched then (holes up to the tolerance only) and
  `SpecFeatureBuilder.build`.

It reports, and exits 1 unless all hold:

1. the rows after the 3-hour hole are exactly what a build that never saw the candles
   before the hole gives (nothing bridges it; its warm-up rows are not samples);
2. no sample window and no label spans the hole (`time_contiguous` on the file's rows);
3. the runtime builder agrees with the training file on every row it builds (every
   finite row of a live 11,500-bar fetch that no longer holds the 3-hour hole; the 50
   small holes are filled the same way by both), feature by feature, within 0.1 of the
   feature's standard deviation (the alignment check's tolerance).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runtime_checks.alignment import DEFAULT_FETCH_BARS  # noqa: E402
from runtime_checks.inputs import SpecFeatureBuilder, fresh_candles  # noqa: E402
from training.data.resample import resample_candles  # noqa: E402
from training.features.build import build_features  # noqa: E402
from training.data.market import unix_seconds  # noqa: E402
from training.features.gaps import time_contiguous  # noqa: E402
from training.features.spec import spec_for  # noqa: E402

SYMBOL = "BTC-USD"
FETCH_BARS = DEFAULT_FETCH_BARS
"""What the live path fetches."""
TOLERANCE_SD = 0.1
"""The alignment check's tolerance on values (`runtime_checks.skew`), in standard deviations."""


def candles(data: Path, seed: int) -> tuple[pd.DataFrame, pd.Timestamp, pd.Timestamp]:
    raw = pd.read_csv(data / "binanceus_BTCUSDT_1m_20230301_20230321.csv")
    raw["timestamp"] = pd.to_datetime(raw.pop("open_time"), utc=True).astype("datetime64[ns, UTC]")
    raw = raw[["timestamp", "open", "high", "low", "close", "volume"]]
    rng = np.random.default_rng(seed)
    block_start = pd.Timestamp("2023-03-12 09:00", tz="UTC")
    block_end = block_start + pd.Timedelta(hours=3)
    in_block = (raw["timestamp"] >= block_start) & (raw["timestamp"] < block_end)
    drop = rng.choice(np.flatnonzero(~in_block.to_numpy()), size=50, replace=False)
    keep = ~in_block.to_numpy()
    keep[drop] = False
    return raw.loc[keep].reset_index(drop=True), block_start, block_end


def fundamentals(data: Path) -> pd.DataFrame:
    daily = pd.read_csv(data / "btcusd_1d_2011_2025.csv")
    stamps = pd.to_datetime(daily["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    close = daily["close"].to_numpy(dtype=np.float64)
    frame = pd.DataFrame({"timestamp": stamps, "price": close, "market_cap": close * 19.3e6,
                          "total_volume": daily["volume"].to_numpy(dtype=np.float64) * close})  # fmt: skip
    frame = frame[(frame["timestamp"] >= "2022-12-01") & (frame["timestamp"] < "2023-03-23")].reset_index(drop=True)
    top = int(np.argmax(close))
    frame["ath"] = float(close[top])
    frame["ath_time"] = stamps.iloc[top]
    return frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared/data/real")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--builds", type=int, default=3, help="live-path builds compared with the training file")
    args = parser.parse_args()
    minutes, hole_start, hole_end = candles(args.data, args.seed)
    fund = fundamentals(args.data)
    spec = spec_for(SYMBOL)
    by_tf = {"1m": minutes, **{tf: resample_candles(minutes, tf) for tf in spec.timeframes if tf != "1m"}}
    began = time.perf_counter()
    train = build_features(SYMBOL, by_tf, fund, spec, finite_only=True)
    print(f"training build: {len(minutes)} candles -> {len(train)} rows of {spec.count} features "
          f"in {time.perf_counter() - began:.1f} s")  # fmt: skip
    ok = True

    stamps = train["timestamp"]
    after = stamps[stamps >= hole_end]
    post = build_features(SYMBOL, {tf: f[f["timestamp"] >= hole_end].reset_index(drop=True) for tf, f in by_tf.items()},
                          fund, spec, finite_only=True)  # fmt: skip
    names = list(spec.names)
    mine = train[train["timestamp"] >= hole_end].reset_index(drop=True)
    same = len(mine) == len(post) and bool((mine["timestamp"].to_numpy() == post["timestamp"].to_numpy()).all())
    same = same and bool(np.array_equal(mine[names].to_numpy(), post[names].to_numpy(), equal_nan=True))
    warm = (after.iloc[0] - hole_end) / pd.Timedelta(minutes=1)
    print(f"1. rows after the 3-hour hole are exactly a build that never saw the candles before it: {same} "
          f"({len(mine)} rows; the first {warm:.0f} min after the hole are warm-up, not samples)")  # fmt: skip
    ok &= same

    window, horizon = 60, 5
    in_time = time_contiguous(stamps, window - 1, horizon, 60)
    t = unix_seconds(stamps)
    ends = np.flatnonzero(in_time)
    first_t, label_t = t[ends - (window - 1)], t[ends + horizon]
    spans = int(((first_t < hole_start.timestamp()) & (label_t >= hole_end.timestamp())).sum())
    long_labels = int(((label_t - t[ends]) != horizon * 60).sum())
    print(f"2. samples (window {window}, label {horizon} min ahead): {len(ends)}; spanning the hole: {spans}; "
          f"labels not exactly {horizon} min ahead: {long_labels}")  # fmt: skip
    ok &= spans == 0 and long_labels == 0

    builder = SpecFeatureBuilder(fundamentals=lambda s, a, b: fund)
    scale = train[names].std().to_numpy()
    scale = np.where(scale > 0, scale, 1.0)
    fetch = pd.Timedelta(minutes=FETCH_BARS)
    live_ok = after[after > hole_end + fetch]
    targets = live_ok.iloc[np.linspace(0, len(live_ok) - 1, args.builds).astype(int)]
    began = time.perf_counter()
    diffs: list[np.ndarray] = []
    for at in targets:
        fetched = minutes[(minutes["timestamp"] <= at) & (minutes["timestamp"] > at - fetch)]
        frame = fresh_candles(fetched, symbol=SYMBOL, granularity=60, now=at.timestamp() + 60)
        built = builder.build(SYMBOL, frame)
        both = built.merge(train[["timestamp", *names]], on="timestamp", suffixes=("", "_file"))
        live = both[names].to_numpy()
        file = both[[f"{n}_file" for n in names]].to_numpy()
        rows = np.isfinite(live).all(axis=1)  # every row the live path builds (its warm-up has NaN)
        diffs.append(np.abs(live[rows] - file[rows]) / scale)
    d = np.concatenate(diffs)
    worst = d.max(axis=0)
    order = np.argsort(worst)[::-1][:3]
    over = (d > TOLERANCE_SD).any(axis=1).mean()
    print(f"3. runtime builder vs training file: {args.builds} live builds of {FETCH_BARS} bars, {len(d)} rows "
          f"compared in {time.perf_counter() - began:.1f} s; rows off by more than {TOLERANCE_SD} sd: {over:.2%}; "
          "worst: " + ", ".join(f"{names[j]} {worst[j]:.2e} sd" for j in order))  # fmt: skip
    ok &= len(d) > 0 and over == 0.0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
