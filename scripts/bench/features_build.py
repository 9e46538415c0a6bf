"""Benchmark: build every feature for BTC-USD, ETH-USD and SOL-USD from two years of
one-minute candles (1,051,200 rows each, from the market simulator's generator).

Reports, each the median of ``--runs`` runs: wall time for all three including the
parquet writes, and for one symbol alone; peak memory (the sum of the worker processes'
resident sets, sampled); the incremental rebuild after one more day per symbol
(`update_feature_file` on the part-file layout: tail build, part and manifest writes),
whether it equals a full rebuild, and what reading the inputs from a candle store adds;
and the time TA-Lib alone takes for the named indicators, as a ratio.

Run by hand: ``.venv/bin/python scripts/bench/features_build.py [--workers 2] [--days 730] [--runs 3]``.
Targets (issue 3): <= 6 s for all three (and so for one), < 2 GB peak, <= 0.3 s
incremental per symbol.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import talib  # noqa: E402

from remote.sandbox.market import sample_inputs  # noqa: E402
from training.features.build import build_features, tune_for_large_builds  # noqa: E402
from training.data.store import CandleStore  # noqa: E402
from training.features.files import build_feature_file, load_inputs, tail_inputs, update_feature_file  # noqa: E402
from training.features.io import read_feature_file  # noqa: E402
from training.features.layout import read_manifest  # noqa: E402
from training.features.spec import spec_for  # noqa: E402

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
END = int(pd.Timestamp("2026-11-01", tz="UTC").timestamp())
DAY = 86_400


def _inputs(symbol: str, days: int):
    return sample_inputs(symbol, END - days * DAY, END, every_minute=True)


def _prepare(args: tuple[str, int, str]) -> None:
    """Generate inputs and pickle them to disk, outside the timed section."""
    symbol, days, work = args
    candles, fundamentals = _inputs(symbol, days)
    pd.to_pickle((candles, fundamentals), Path(work) / f"{symbol}.inputs.pkl")


def _build(args: tuple[str, str]) -> tuple[str, float, float, int]:
    symbol, work = args
    tune_for_large_builds()
    candles, fundamentals = pd.read_pickle(Path(work) / f"{symbol}.inputs.pkl")
    t = time.perf_counter()
    cpu = os.times()
    report = build_feature_file(spec_for(symbol), candles, fundamentals, Path(work) / "FEATURES")
    done = os.times()
    return symbol, time.perf_counter() - t, (done.user - cpu.user) + (done.system - cpu.system), report.rows


class PeakMemory:
    """Samples the resident memory of this process and its children every 20 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _runs(values: list[float]) -> str:
    return f"median {_median(values):.3f} s (runs: {', '.join(f'{v:.3f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tune_for_large_builds()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-features-") as work:
        t = time.perf_counter()
        with ctx.Pool(min(args.workers, 3)) as pool:
            pool.map(_prepare, [(s, args.days, work) for s in SYMBOLS])
        print(f"inputs generated in {time.perf_counter() - t:.1f} s (not timed): {args.days} days, "
              f"{args.days * 1440:,} 1m rows per symbol")

        # --- full build, all three symbols
        base = psutil.Process().memory_info().rss
        walls, peaks, per_symbol = [], [], {s: [] for s in SYMBOLS}
        for _ in range(args.runs):
            shutil.rmtree(Path(work) / "FEATURES", ignore_errors=True)
            with PeakMemory() as mem:
                t = time.perf_counter()
                if args.workers > 1:
                    with ctx.Pool(min(args.workers, 3)) as pool:
                        results = pool.map(_build, [(s, work) for s in SYMBOLS], chunksize=1)
                else:
                    results = [_build((s, work)) for s in SYMBOLS]
                walls.append(time.perf_counter() - t)
            peaks.append(mem.peak)
            for symbol, seconds, cpu, rows in results:
                per_symbol[symbol].append((seconds, cpu, rows))
        print(f"full build, 3 symbols, {args.workers} worker(s): {_runs(walls)} wall (target <= 6 s); "
              f"peak RSS {max(peaks) / 2**30:.2f} GiB (bench parent {base / 2**30:.2f} GiB included; target < 2 GB)")
        for symbol, rs in per_symbol.items():
            print(f"  {symbol}: build+write (in a pool worker) {_runs([r[0] for r in rs])} wall, "
                  f"median {_median([r[1] for r in rs]):.2f} s CPU, {rs[0][2]:,} rows, {spec_for(symbol).count} features")

        # --- full build of one symbol alone (nothing else running in the bench)
        alone = []
        for _ in range(args.runs):
            shutil.rmtree(Path(work) / "FEATURES", ignore_errors=True)
            alone.append(_build(("BTC-USD", work))[1])
        print(f"full build, BTC-USD alone (73 features, in this process): {_runs(alone)} wall (target <= 6 s)")
        parts = read_manifest(Path(work) / "FEATURES" / "BTC-USD.parquet").parts
        print(f"  layout: {len(parts)} parts of {', '.join(f'{p.rows:,}' for p in parts)} rows")

        talib_total = build_total = 0.0
        for symbol in SYMBOLS:
            candles, fundamentals = pd.read_pickle(Path(work) / f"{symbol}.inputs.pkl")
            spec = spec_for(symbol)
            m = candles["1m"]
            o, h, l, c = (np.ascontiguousarray(m[k].to_numpy(dtype=np.float64)) for k in ("open", "high", "low", "close"))
            t = time.perf_counter()
            talib.RSI(c, 14), talib.MACD(c, 12, 26, 9), talib.BBANDS(c, 20, 2, 2, 0), talib.ATR(h, l, c, 14)
            for p in (7, 14, 21, 50):
                talib.SMA(c, p)
            talib_s = time.perf_counter() - t
            t = time.perf_counter()
            build_features(symbol, candles, fundamentals, spec, finite_only=True)
            build_s = time.perf_counter() - t
            talib_total += talib_s
            build_total += build_s

            # --- incremental: a file built without the last day (not timed), then that day added.
            cut = m["timestamp"].iloc[-1] - pd.Timedelta(days=1)
            older = {tf: f[f["timestamp"] <= cut] for tf, f in candles.items()}
            fund_older = fundamentals[fundamentals["timestamp"] <= cut]
            pristine, inc_dir = Path(work) / "INC0", Path(work) / "INC"
            shutil.rmtree(pristine, ignore_errors=True)
            build_feature_file(spec, older, fund_older, pristine)
            inc_walls, inc_cpus, added = [], [], 0
            for _ in range(args.runs):
                shutil.rmtree(inc_dir, ignore_errors=True)
                shutil.copytree(pristine, inc_dir)
                t = time.perf_counter()
                cpu = os.times()
                report = update_feature_file(spec, candles, fundamentals, inc_dir)
                inc_walls.append(time.perf_counter() - t)
                done = os.times()
                inc_cpus.append((done.user - cpu.user) + (done.system - cpu.system))
                assert report.incremental, report.why_full
                added = report.new_rows
            t = time.perf_counter()
            build_features(symbol, tail_inputs(candles, cut), fundamentals, spec, finite_only=True)
            inc_compute = time.perf_counter() - t

            # The inputs as `console features build` reads them: from a candle store.
            store = CandleStore(Path(work) / "DATA")
            for tf, frame in candles.items():
                store.replace_candles(symbol, tf, frame, [])
            store.merge_fundamentals(symbol, fundamentals)
            reads = []
            for _ in range(args.runs):
                t = time.perf_counter()
                load_inputs(store, spec)
                reads.append(time.perf_counter() - t)

            inc, _ = read_feature_file(inc_dir / f"{symbol}.parquet")
            full, _ = read_feature_file(Path(work) / "FEATURES" / f"{symbol}.parquet") if symbol == "BTC-USD" else (None, None)
            if full is None:
                build_feature_file(spec, candles, fundamentals, Path(work) / "FULL")
                full, _ = read_feature_file(Path(work) / "FULL" / f"{symbol}.parquet")
            same_rows = len(inc) == len(full) and bool((inc["timestamp"].to_numpy() == full["timestamp"].to_numpy()).all())
            a = inc[list(spec.names)].to_numpy()
            b = full[list(spec.names)].to_numpy()
            # Differences relative to each feature's typical size (values near zero would
            # otherwise turn float rounding into huge relative numbers).
            scale = np.median(np.abs(b), axis=0) + 1e-300
            rel = float(np.max(np.abs(a - b) / scale))
            exact = float(np.mean(a == b))
            print(f"  {symbol}: incremental (+1 day, +{added:,} rows) update_feature_file {_runs(inc_walls)} wall, "
                  f"median {_median(inc_cpus):.3f} s CPU (target <= 0.3 s); tail build alone {inc_compute:.3f} s; "
                  f"same rows {same_rows}, max diff vs full {rel:.1e} of the feature's median size, "
                  f"bit-identical values {exact:.4%}")
            print(f"    reading its inputs from a candle store first (as the CLI does) adds {_runs(reads)}")
        print(f"TA-Lib alone for the named indicators: {talib_total:.2f} s for 3 symbols; "
              f"whole feature build (no writes, 1 process): {build_total:.2f} s = {build_total / talib_total:.1f}x TA-Lib")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
