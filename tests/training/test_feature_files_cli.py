"""`console features build` and `verify` on the part-file layout, driven as an operator
would: a subprocess over a candle store on disk. A second build after new candles
arrive only adds rows; a torn feature file is reported as damaged, with what to do, exit 2."""

from __future__ import annotations

import pandas as pd
import pytest

from remote.sandbox.market import sample_inputs
from tests.console.cli import assert_one_line_error, console
from training.data.store import CandleStore
from training.features.files import build_feature_file
from training.features.gaps import fill_small_holes
from training.features.io import FeatureFileError, read_feature_file, read_feature_meta
from training.features.layout import MANIFEST, read_manifest
from training.features.spec import spec_for

pytestmark = pytest.mark.slow

START = int(pd.Timestamp("2025-03-01", tz="UTC").timestamp())
DAY = 86_400


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in ("COINGECKO_API_KEY", "RC_COINGECKO_API_KEY", "RC_CONFIG", "RC_PROFILE", "RC_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return {"HOME": str(tmp_path / "home"), "RC_STATE_DIR": str(tmp_path / "state")}


def _store(data, days: int, upto_days: int):
    """ETH-USD 1m candles and fundamentals for the first ``upto_days`` of a ``days`` sample."""
    candles, fundamentals = sample_inputs("ETH-USD", START, START + days * DAY, seed=3, timeframes=("1m",))
    cut = pd.Timestamp(START + upto_days * DAY, unit="s", tz="UTC")
    store = CandleStore(data)
    minutes = candles["1m"]
    store.merge_candles("ETH-USD", "1m", minutes[minutes["timestamp"] < cut])
    store.merge_fundamentals("ETH-USD", fundamentals[fundamentals["timestamp"] < cut])
    return store, minutes, fundamentals


def _build(tmp_path, env, *extra: str):
    return console("features", "build", "--symbols", "ETH-USD", "--data-dir", str(tmp_path / "data"),
                   "--out", str(tmp_path / "F"), *extra, env=env)


def test_a_second_build_after_new_candles_only_adds_their_rows(tmp_path, env):
    store, minutes, fundamentals = _store(tmp_path / "data", 4, 3)
    first = _build(tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert "built" in first.stdout and "54 features" in first.stdout
    rows_before = read_feature_meta(tmp_path / "F" / "ETH-USD.parquet").rows

    store.merge_candles("ETH-USD", "1m", minutes)
    store.merge_fundamentals("ETH-USD", fundamentals)
    second = _build(tmp_path, env)
    assert second.returncode == 0, second.stderr
    # Rows are grid minutes: the gap policy fills the minutes the simulator drops.
    grid = fill_small_holes(minutes, 60)
    new_minutes = int((grid["timestamp"] >= pd.Timestamp(START + 3 * DAY, unit="s", tz="UTC")).sum())
    assert f"updated (+{new_minutes} rows)" in second.stdout, second.stdout
    frame, meta = read_feature_file(tmp_path / "F" / "ETH-USD.parquet")
    assert meta.rows == len(frame) == rows_before + new_minutes
    assert frame["timestamp"].is_monotonic_increasing and frame["timestamp"].is_unique

    full = _build(tmp_path, env, "--full")
    assert full.returncode == 0 and "built" in full.stdout
    assert read_feature_meta(tmp_path / "F" / "ETH-USD.parquet").rows == meta.rows


def test_verify_says_a_torn_part_is_damaged_and_how_to_rebuild_exit_2(tmp_path, env):
    _store(tmp_path / "data", 3, 3)
    assert _build(tmp_path, env).returncode == 0
    folder = tmp_path / "F" / "ETH-USD.parquet"
    part = folder / read_manifest(folder).parts[-1].file
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])

    bad = console("features", "verify", "--symbols", "ETH-USD", "--out", str(tmp_path / "F"), env=env)
    assert_one_line_error(bad, 2, "damaged or unreadable", "console features build --symbols ETH-USD")
    assert "counts differ" not in bad.stderr

    # The advice works: a build replaces the damaged file, and verify passes again.
    assert _build(tmp_path, env).returncode == 0
    ok = console("features", "verify", "--symbols", "ETH-USD", "--out", str(tmp_path / "F"), env=env)
    assert ok.returncode == 0, ok.stderr + ok.stdout


def test_verify_says_a_truncated_manifest_or_single_file_is_damaged_exit_2(tmp_path, env):
    candles, fundamentals = sample_inputs("ETH-USD", START, START + 2 * DAY, seed=3, timeframes=("1m",))
    build_feature_file(spec_for("ETH-USD"), candles, fundamentals, tmp_path / "F")
    manifest = tmp_path / "F" / "ETH-USD.parquet" / MANIFEST
    manifest.write_bytes(manifest.read_bytes()[:40])
    # The older layout, one parquet file, cut short.
    (tmp_path / "F" / "SOL-USD.parquet").write_bytes(b"PAR1" + b"\0" * 64)
    for symbol in ("ETH-USD", "SOL-USD"):
        with pytest.raises(FeatureFileError, match=f"damaged or unreadable.*console features build --symbols {symbol}"):
            read_feature_meta(tmp_path / "F" / f"{symbol}.parquet")
    bad = console("features", "verify", "--symbols", "ETH-USD,SOL-USD", "--out", str(tmp_path / "F"), env=env)
    assert_one_line_error(bad, 2, "ETH-USD, SOL-USD are damaged, unreadable or missing",
                          "console features build --symbols ETH-USD,SOL-USD")
