"""The feature builder: TA-Lib agreement, no look-ahead, missing inputs, files, incremental rebuild."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from remote.sandbox.market import sample_inputs
from training.data.market import TIMEFRAMES
from training.data.resample import resample_candles
from training.errors import MissingFeatureInput
from training.features.build import build_features
from training.features.files import build_feature_file, update_feature_file
from training.features.gaps import fill_small_holes
from training.features.io import read_feature_file, read_feature_meta
from training.features.spec import spec_for

START = int(pd.Timestamp("2025-03-01", tz="UTC").timestamp())
DAY = 86_400


@pytest.fixture(scope="module")
def btc():
    candles, fundamentals = sample_inputs("BTC-USD", START, START + 12 * DAY, seed=11)
    return candles, fundamentals


@pytest.fixture(scope="module")
def btc_features(btc):
    candles, fundamentals = btc
    return build_features("BTC-USD", candles, fundamentals, spec_for("BTC-USD"))


def test_features_come_out_in_spec_order_after_base_and_categorical_columns(btc_features):
    spec = spec_for("BTC-USD")
    assert list(btc_features.columns) == [
        "timestamp", "open", "high", "low", "close", "volume", "session", "volatility_regime", *spec.names
    ]
    assert len(spec.names) == 73


@pytest.mark.parametrize(
    "name, reference",
    [
        ("rsi_14", lambda o, h, l, c: talib.RSI(c, 14)),
        ("macd", lambda o, h, l, c: talib.MACD(c, 12, 26, 9)[0]),
        ("macd_signal", lambda o, h, l, c: talib.MACD(c, 12, 26, 9)[1]),
        ("macd_hist", lambda o, h, l, c: talib.MACD(c, 12, 26, 9)[2]),
        ("bb_upper_20", lambda o, h, l, c: talib.BBANDS(c, 20, 2, 2)[0]),
        ("bb_middle_20", lambda o, h, l, c: talib.BBANDS(c, 20, 2, 2)[1]),
        ("bb_lower_20", lambda o, h, l, c: talib.BBANDS(c, 20, 2, 2)[2]),
        ("atr_14", lambda o, h, l, c: talib.ATR(h, l, c, 14)),
        ("sma_7", lambda o, h, l, c: talib.SMA(c, 7)),
        ("sma_14", lambda o, h, l, c: talib.SMA(c, 14)),
        ("sma_21", lambda o, h, l, c: talib.SMA(c, 21)),
        ("sma_50", lambda o, h, l, c: talib.SMA(c, 50)),
    ],
)
def test_named_indicator_matches_talib_after_warm_up(btc, btc_features, name, reference):
    m = fill_small_holes(btc[0]["1m"], 60)  # the gap policy: the simulator drops a few minutes
    arrays = [m[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")]
    expected = reference(*arrays)
    got = btc_features[name].to_numpy()
    warm = 200
    assert np.isfinite(got[warm:]).all()
    np.testing.assert_allclose(got[warm:], expected[warm:], rtol=1e-6, atol=0)


def _cut_inputs(candles, fundamentals, cut_open: pd.Timestamp):
    """Inputs as a live process has them just after the 1m candle opened at ``cut_open``
    closed: 1m candles up to it; closed higher-timeframe candles plus the one in progress,
    aggregated from the minutes so far (so using it would change the answer); and
    fundamentals stamped no later than that minute's close."""
    close = cut_open + pd.Timedelta(minutes=1)
    minutes = candles["1m"][candles["1m"]["timestamp"] <= cut_open]
    cut = {"1m": minutes}
    for tf, frame in candles.items():
        if tf == "1m":
            continue
        step = pd.Timedelta(seconds=TIMEFRAMES[tf])
        closed = frame[frame["timestamp"] + step <= close]
        bucket = cut_open.floor(step)
        if bucket + step > close:  # the bucket holding the cut minute is still open
            closed = pd.concat([closed, resample_candles(minutes[minutes["timestamp"] >= bucket], tf)], ignore_index=True)
        cut[tf] = closed
    return cut, fundamentals[fundamentals["timestamp"] <= close]


def test_no_feature_uses_the_future_at_many_random_cut_points(btc, btc_features):
    candles, fundamentals = btc
    spec = spec_for("BTC-USD")
    rng = np.random.default_rng(3)
    times = btc_features["timestamp"]
    # Cut points past every warm-up (fundamentals need 30 days, which the sample has).
    picks = rng.choice(np.arange(3_000, len(times)), size=30, replace=False)
    for i in sorted(picks):
        cut_candles, cut_fund = _cut_inputs(candles, fundamentals, times.iloc[i])
        partial = build_features("BTC-USD", cut_candles, cut_fund, spec)
        assert partial["timestamp"].iloc[-1] == times.iloc[i]
        # The last rows of the partial build equal the same rows of the full build.
        rows = slice(len(partial) - 3, len(partial))
        for name in spec.names:
            a = partial[name].to_numpy()[rows]
            b = btc_features[name].to_numpy()[i - 2 : i + 1]
            np.testing.assert_array_equal(a, b, err_msg=f"{name} at cut {times.iloc[i]} differs: it sees the future")


def test_a_1h_candle_is_used_only_from_the_minute_it_closes(btc, btc_features):
    hour = btc[0]["1h"]
    feats = btc_features.set_index("timestamp")
    rsi_1h = talib.RSI(hour["close"].to_numpy(dtype=np.float64), 14)
    k = 100
    opened = hour["timestamp"].iloc[k]
    # The 1m candle opening at opened+59min closes with the 1h candle: it sees candle k.
    last_minute = opened + pd.Timedelta(minutes=59)
    assert feats.loc[last_minute, "mtf_1h_rsi_14"] == pytest.approx(rsi_1h[k], rel=1e-12)
    assert feats.loc[last_minute - pd.Timedelta(minutes=1), "mtf_1h_rsi_14"] == pytest.approx(rsi_1h[k - 1], rel=1e-12)


def test_missing_fundamentals_are_an_error_not_zeros(btc):
    candles, fundamentals = btc
    with pytest.raises(MissingFeatureInput, match="fundamentals") as err:
        build_features("BTC-USD", candles, None, spec_for("BTC-USD"))
    assert err.value.exit_code == 2
    with pytest.raises(MissingFeatureInput, match="fundamentals"):
        build_features("BTC-USD", candles, fundamentals.iloc[:0], spec_for("BTC-USD"))


def test_a_day_point_stamped_at_a_rows_close_is_not_used_by_that_row(btc):
    # Live, the row of the day's last minute is built from fundamentals asked up to its open:
    # the next day's point, stamped at the very second the row closes, is not in hand yet. The
    # training file, built later with that point, must give the row the same values.
    candles, fundamentals = btc
    midnight = pd.Timestamp(START + 5 * DAY, unit="s", tz="UTC")
    live = build_features("BTC-USD", {tf: c[c["timestamp"] < midnight] for tf, c in candles.items()},
                          fundamentals[fundamentals["timestamp"] < midnight], spec_for("BTC-USD"))  # fmt: skip
    later = build_features("BTC-USD", candles, fundamentals, spec_for("BTC-USD"))
    assert (fundamentals["timestamp"] == midnight).any()  # the point exists in the later build
    names = [f.name for f in spec_for("BTC-USD").features if f.family == "fundamentals"]
    last = midnight - pd.Timedelta(minutes=1)
    row_live = live.set_index("timestamp").loc[last, names].to_numpy(dtype=float)
    row_later = later.set_index("timestamp").loc[last, names].to_numpy(dtype=float)
    assert np.isfinite(row_live).all() and np.allclose(row_live, row_later, rtol=1e-12)


def test_stale_fundamentals_are_an_error(btc):
    candles, fundamentals = btc
    stale = fundamentals[fundamentals["timestamp"] < pd.Timestamp(START + 5 * DAY, unit="s", tz="UTC")]
    with pytest.raises(MissingFeatureInput, match="fetch them again"):
        build_features("BTC-USD", candles, stale, spec_for("BTC-USD"))


@pytest.mark.parametrize("tf", ["5m", "15m", "1h"])
def test_missing_higher_timeframe_candles_are_an_error_for_multi_timeframe_symbols(btc, tf):
    candles, fundamentals = btc
    without = {k: v for k, v in candles.items() if k != tf}
    with pytest.raises(MissingFeatureInput, match=tf):
        build_features("BTC-USD", without, fundamentals, spec_for("BTC-USD"))


def test_eth_needs_no_higher_timeframes_and_has_54_features(btc):
    candles, fundamentals = btc
    out = build_features("ETH-USD", {"1m": candles["1m"]}, fundamentals, spec_for("ETH-USD"))
    assert len([c for c in out.columns if c not in ("timestamp", "open", "high", "low", "close", "volume", "session", "volatility_regime")]) == 54


def test_feature_file_carries_names_version_and_hash(btc, tmp_path):
    candles, fundamentals = btc
    spec = spec_for("SOL-USD")
    report = build_feature_file(spec, candles, fundamentals, tmp_path)
    meta = read_feature_meta(tmp_path / "SOL-USD.parquet")
    assert meta.feature_names == spec.names and meta.feature_count == 73
    assert meta.feature_hash == spec.hash and meta.spec_version == spec.version
    frame, _ = read_feature_file(tmp_path / "SOL-USD.parquet")
    assert report.rows == len(frame) > 0
    assert np.isfinite(frame[list(spec.names)].to_numpy()).all(), "warm-up rows must be dropped"


def test_incremental_rebuild_after_one_more_day_equals_a_full_rebuild(tmp_path):
    candles, fundamentals = sample_inputs("BTC-USD", START, START + 11 * DAY, seed=5)
    spec = spec_for("BTC-USD")
    cut = pd.Timestamp(START + 10 * DAY, unit="s", tz="UTC")
    first = {tf: f[f["timestamp"] < cut] for tf, f in candles.items()}
    build_feature_file(spec, first, fundamentals[fundamentals["timestamp"] <= cut], tmp_path / "inc")
    report = update_feature_file(spec, candles, fundamentals, tmp_path / "inc")
    assert report.incremental
    build_feature_file(spec, candles, fundamentals, tmp_path / "full")
    inc, _ = read_feature_file(tmp_path / "inc" / "BTC-USD.parquet")
    full, _ = read_feature_file(tmp_path / "full" / "BTC-USD.parquet")
    assert len(inc) == len(full)
    assert (inc["timestamp"].to_numpy() == full["timestamp"].to_numpy()).all()
    assert (inc["session"].astype(str).to_numpy() == full["session"].astype(str).to_numpy()).all()
    for name in spec.names:
        # Equal to float64 rounding: only running sums restarted at the tail can differ, by a
        # tiny fraction of the feature's own scale (values near zero make a relative bound
        # alone meaningless).
        expected = full[name].to_numpy()
        scale = float(np.nanmax(np.abs(expected))) or 1.0
        np.testing.assert_allclose(inc[name].to_numpy(), expected, rtol=1e-9, atol=1e-9 * scale, err_msg=name)


def test_incremental_rebuild_of_a_file_from_another_spec_rebuilds_it_all(btc, tmp_path):
    candles, fundamentals = btc
    build_feature_file(spec_for("ETH-USD"), {"1m": candles["1m"]}, fundamentals, tmp_path)
    (tmp_path / "ETH-USD.parquet").rename(tmp_path / "BTC-USD.parquet")
    report = update_feature_file(spec_for("BTC-USD"), candles, fundamentals, tmp_path)
    assert not report.incremental
    assert read_feature_meta(tmp_path / "BTC-USD.parquet").feature_count == 73
