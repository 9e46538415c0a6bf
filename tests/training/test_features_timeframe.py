"""Features on a longer base than one minute (`console train cloud --timeframe 1h`): each row
is an hourly candle, the indicators are computed on hourly candles, nothing uses the future,
and the spec's hash and purge look-back say which timeframe the rows are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from remote.sandbox.market import sample_inputs
from training.features.build import build_features
from training.features.files import build_feature_file, features_folder
from training.features.io import read_feature_meta
from training.features.spec import FeatureConfig, expected_counts, spec_for

START = int(pd.Timestamp("2025-03-01", tz="UTC").timestamp())
DAY = 86_400
HOURLY = FeatureConfig(timeframe="1h")


@pytest.fixture(scope="module")
def hourly():
    candles, fundamentals = sample_inputs("BTC-USD", START, START + 12 * DAY, seed=11, timeframes=("1h",))
    return candles, fundamentals, build_features("BTC-USD", candles, fundamentals, spec_for("BTC-USD", HOURLY))


def test_an_hourly_spec_is_the_base_features_with_its_own_hash_and_look_back_in_hours() -> None:
    minute, hour = spec_for("BTC-USD"), spec_for("BTC-USD", HOURLY)
    assert (minute.count, hour.count, hour.timeframes, hour.base) == (73, 54, ("1h",), "1h")
    # ETH's one-minute spec has the same 54 names: only the timeframe tells the two apart.
    assert hour.names == spec_for("ETH-USD").names and hour.hash != spec_for("ETH-USD").hash
    assert minute.hash == spec_for("BTC-USD", FeatureConfig(timeframe="1m")).hash
    assert (minute.lookback_rows, hour.lookback_rows) == (2160, 61)  # the 1h MACD on minutes; return_60 on hours
    assert expected_counts(HOURLY, ("BTC-USD", "ETH-USD")) == {"BTC-USD": 54, "ETH-USD": 54}
    assert FeatureConfig.from_mapping({"timeframe": "1h"}).timeframe == "1h"
    with pytest.raises(ValueError, match="unknown timeframe '2h'"):
        FeatureConfig.from_mapping({"timeframe": "2h"})


def test_hourly_rows_carry_indicators_of_hourly_candles(hourly) -> None:
    candles, _, built = hourly
    c = candles["1h"]
    assert (np.diff(built["timestamp"].astype("int64") // 10**9) == 3600).all()
    close = c["close"].to_numpy(dtype=np.float64)
    for name, reference in (("rsi_14", talib.RSI(close, 14)), ("sma_50", talib.SMA(close, 50)),
                            ("return_60", close / np.roll(close, 60) - 1)):  # fmt: skip
        ok = np.arange(len(close)) >= 60
        np.testing.assert_allclose(built[name].to_numpy()[ok], reference[ok], rtol=1e-9, err_msg=name)


def test_no_hourly_feature_uses_the_future(hourly) -> None:
    candles, fundamentals, built = hourly
    spec = spec_for("BTC-USD", HOURLY)
    for cut in (120, 200, 287):
        past = build_features("BTC-USD", {"1h": candles["1h"].iloc[:cut]}, fundamentals, spec)
        np.testing.assert_allclose(past[list(spec.names)].to_numpy()[-1], built[list(spec.names)].to_numpy()[cut - 1],
                                   rtol=1e-9, equal_nan=True)  # fmt: skip


def test_an_hourly_file_goes_to_its_own_folder_and_records_its_hash(hourly, tmp_path) -> None:
    candles, fundamentals, _ = hourly
    spec = spec_for("BTC-USD", HOURLY)
    report = build_feature_file(spec, candles, fundamentals, features_folder(tmp_path, "1h"))
    assert report.path == tmp_path / "1h" / "BTC-USD.parquet" and features_folder(tmp_path) == tmp_path
    meta = read_feature_meta(report.path)
    assert (meta.feature_hash, meta.feature_count) == (spec.hash, 54)
