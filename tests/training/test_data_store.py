"""The candle store and CSV import: atomic writes, appends, validation of real files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from remote.sandbox.market import simulated_candles
from training.data.csv_import import import_candle_csv, read_candle_csv
from training.data.store import CandleStore, merge_intervals, subtract_intervals
from training.errors import BadMarketData

T0 = 1_740_787_200
DAY = 86_400


def _csv(tmp_path, frame: pd.DataFrame, name="c.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def minutes():
    return simulated_candles("BTC-USD", T0, T0 + 3 * 3600, seed=2)


def _snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "header, convert",
    [
        ("open_time", lambda ts: ts.dt.strftime("%Y-%m-%d %H:%M:%S+00:00")),
        ("timestamp", lambda ts: (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)),
        ("time", lambda ts: (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)),
        ("Timestamp", lambda ts: ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")),
    ],
)
def test_csv_layouts_with_seconds_milliseconds_or_iso_times_import_the_same(tmp_path, minutes, header, convert):
    raw = minutes.copy()
    raw.insert(0, header, convert(raw.pop("timestamp")))
    raw = raw[[header, "open", "close", "volume", "high", "low"]]  # any column order
    store = CandleStore(tmp_path / "data")
    assert import_candle_csv(store, "BTC-USD", "1m", _csv(tmp_path, raw)) == len(minutes)
    got = store.read_candles("BTC-USD", "1m")
    pd.testing.assert_frame_equal(got, minutes, check_exact=False, rtol=1e-12)
    assert store.coverage("BTC-USD", "1m") == [(T0, T0 + 3 * 3600)]


def _broken(minutes, how):
    raw = minutes.copy()
    raw["timestamp"] = raw["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    if how == "missing column":
        return raw.drop(columns="low")
    if how == "no time column":
        return raw.rename(columns={"timestamp": "when"})
    if how == "unparseable time":
        raw.loc[7, "timestamp"] = "yesterday-ish"
    if how == "duplicate":
        raw.loc[9, "timestamp"] = raw.loc[8, "timestamp"]
    if how == "out of order":
        raw.loc[[9, 10], "timestamp"] = raw.loc[[10, 9], "timestamp"].to_numpy()
    if how == "negative price":
        raw.loc[4, "close"] = -1.0
    if how == "not a number":
        raw["open"] = raw["open"].astype(object)
        raw.loc[3, "open"] = "n/a"
    if how == "off grid":
        raw.loc[5, "timestamp"] = "2025-03-01 00:05:30"
    return raw


@pytest.mark.parametrize(
    "how, match",
    [
        ("missing column", "lacks the column"),
        ("no time column", "no time column"),
        ("unparseable time", "unparseable time"),
        ("duplicate", "duplicate timestamp"),
        ("out of order", "out-of-order"),
        ("negative price", "positive"),
        ("not a number", "not a number"),
        ("off grid", "grid"),
    ],
)
def test_a_bad_csv_is_refused_in_one_line_and_the_store_is_untouched(tmp_path, minutes, how, match):
    store = CandleStore(tmp_path / "data")
    good = minutes.copy()
    import_candle_csv(store, "BTC-USD", "1m", _csv(tmp_path, good, "good.csv"))
    before = _snapshot(tmp_path / "data")
    with pytest.raises(BadMarketData, match=match) as err:
        import_candle_csv(store, "BTC-USD", "1m", _csv(tmp_path, _broken(minutes, how)))
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    assert _snapshot(tmp_path / "data") == before


def test_a_truncated_parquet_file_is_reported_and_not_overwritten(tmp_path, minutes):
    store = CandleStore(tmp_path)
    store.merge_candles("BTC-USD", "1m", minutes, covered=[(T0, T0 + 3 * 3600)])
    path = store.candles_path("BTC-USD", "1m")
    path.write_bytes(path.read_bytes()[:500])
    damaged = path.read_bytes()
    with pytest.raises(BadMarketData, match="not a readable parquet") as err:
        store.read_candles("BTC-USD", "1m")
    assert err.value.exit_code == 2
    with pytest.raises(BadMarketData):
        store.merge_candles("BTC-USD", "1m", minutes)
    assert path.read_bytes() == damaged


def test_merging_appends_new_candles_sorted_without_duplicates(tmp_path, minutes):
    store = CandleStore(tmp_path)
    assert store.merge_candles("BTC-USD", "1m", minutes.iloc[:100]) == 100
    assert store.merge_candles("BTC-USD", "1m", minutes.iloc[50:]) == len(minutes) - 100
    got = store.read_candles("BTC-USD", "1m")
    assert got["timestamp"].is_unique and got["timestamp"].is_monotonic_increasing and len(got) == len(minutes)
    assert not list(tmp_path.rglob("*.tmp")), "no temporary files left behind"


def test_interval_arithmetic():
    assert merge_intervals([(5, 8), (0, 3), (3, 4), (7, 10)]) == [(0, 4), (5, 10)]
    assert subtract_intervals((0, 10), [(2, 3), (5, 7)]) == [(0, 2), (3, 5), (7, 10)]
    assert subtract_intervals((0, 10), [(0, 10)]) == []


def test_real_binance_layout_is_detected(tmp_path):
    # The layout of a Binance export (open_time as ISO with offset), written here, not read from disk.
    text = "open_time,open,high,low,close,volume\n" + "\n".join(
        f"2023-03-01 00:0{i}:00+00:00,{23140 + i},{23150 + i},{23128 + i},{23142 + i},2.1" for i in range(5)
    )
    path = tmp_path / "b.csv"
    path.write_text(text)
    frame = read_candle_csv(path, "1m")
    assert len(frame) == 5 and frame["timestamp"].iloc[0] == pd.Timestamp("2023-03-01", tz="UTC")
    assert np.allclose(frame["close"], [23142, 23143, 23144, 23145, 23146])


def test_a_file_of_another_timeframe_is_refused(tmp_path):
    hours = simulated_candles("BTC-USD", T0, T0 + 2 * DAY, granularity=3600)
    with pytest.raises(BadMarketData, match="wrong timeframe"):
        read_candle_csv(_csv(tmp_path, hours), "1m")
