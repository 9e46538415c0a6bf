"""Fetching Coinbase candles into the store, against the simulator over real HTTP."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from remote.sandbox.market import simulated_candles
from remote.sandbox.market_server import MarketSimulator
from training.data.coinbase import CoinbaseClient, FetchInterrupted, fetch_candles
from training.data.market import unix_seconds
from training.data.resample import check_against_minutes
from training.data.store import CandleStore
from training.errors import BadMarketData, MarketDataError

T0 = 1_740_787_200  # 2025-03-01 00:00 UTC
DAY = 86_400
NOW = T0 + 30 * DAY


@pytest.fixture
def sim():
    with MarketSimulator(seed=7, rate_limit_per_s=1000) as s:
        yield s


@pytest.fixture
def client(sim):
    with CoinbaseClient(sim.url, max_in_flight=3, requests_per_s=500, backoff_s=0.01) as c:
        yield c


def _files(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_fetch_pages_a_range_into_the_store_exactly_as_the_exchange_has_it(sim, client, tmp_path):
    store = CandleStore(tmp_path)
    report = fetch_candles(client, store, "BTC-USD", "1m", T0, T0 + 2 * DAY, now=NOW)
    assert report.windows == 10 and report.skipped == 0
    got = store.read_candles("BTC-USD", "1m")
    want = simulated_candles("BTC-USD", T0, T0 + 2 * DAY, seed=7)
    assert len(got) == len(want) == report.candles
    np.testing.assert_array_equal(unix_seconds(got["timestamp"]), unix_seconds(want["timestamp"]))
    np.testing.assert_allclose(got[["open", "high", "low", "close", "volume"]], want[["open", "high", "low", "close", "volume"]], rtol=1e-12)
    assert sim.count("/products/BTC-USD/candles") == 10


def test_a_second_fetch_of_the_same_range_asks_nothing_and_a_longer_one_only_the_new_part(sim, client, tmp_path):
    store = CandleStore(tmp_path)
    fetch_candles(client, store, "ETH-USD", "5m", T0, T0 + 3 * DAY, now=NOW)
    asked = sim.count()
    again = fetch_candles(client, store, "ETH-USD", "5m", T0, T0 + 3 * DAY, now=NOW)
    assert sim.count() == asked and again.candles == 0
    more = fetch_candles(client, store, "ETH-USD", "5m", T0, T0 + 4 * DAY, now=NOW)
    assert sim.count() - asked <= 2 and more.added == 288  # the new day spans at most two grid windows
    assert len(store.read_candles("ETH-USD", "5m")) == 4 * 288


def test_an_interrupted_fetch_resumes_without_refetching_finished_windows(sim, client, tmp_path):
    store = CandleStore(tmp_path)
    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 4:
            stop.set()

    with pytest.raises(FetchInterrupted):
        fetch_candles(client, store, "BTC-USD", "1m", T0, T0 + 3 * DAY, progress=progress, cancelled=stop, now=NOW)
    first = sim.count()
    kept = len(store.read_candles("BTC-USD", "1m"))
    assert 4 <= first < 15 and kept > 0
    report = fetch_candles(client, store, "BTC-USD", "1m", T0, T0 + 3 * DAY, now=NOW)
    assert sim.count() == 15, "every window asked exactly once over the two runs"
    assert report.skipped == first
    assert len(store.read_candles("BTC-USD", "1m")) == len(simulated_candles("BTC-USD", T0, T0 + 3 * DAY))


def test_rate_limited_fetch_waits_out_429_and_still_gets_everything(tmp_path):
    # Four requests at once against a burst of two: some must be told to wait.
    with MarketSimulator(rate_limit_per_s=2) as s, CoinbaseClient(s.url, max_in_flight=4, requests_per_s=100) as c:
        report = fetch_candles(c, CandleStore(tmp_path), "BTC-USD", "1h", T0 - 60 * DAY, T0, now=NOW)
        assert s.count(status=429) > 0
    assert report.candles == 60 * 24


def test_server_errors_are_retried_with_backoff(sim, client, tmp_path):
    sim.inject_fault(503, times=3)
    report = fetch_candles(client, CandleStore(tmp_path), "BTC-USD", "15m", T0, T0 + DAY, now=NOW)
    assert report.candles == 96 and sim.count(status=503) == 3


def test_an_exchange_that_keeps_failing_ends_in_one_line_and_leaves_the_store_as_it_was(sim, client, tmp_path):
    store = CandleStore(tmp_path)
    fetch_candles(client, store, "BTC-USD", "1h", T0, T0 + DAY, now=NOW)
    before = _files(tmp_path)
    sim.inject_fault(500, times=1000)
    with pytest.raises(MarketDataError) as err:
        fetch_candles(client, store, "BTC-USD", "1h", T0 - 30 * DAY, T0, now=NOW)
    assert err.value.exit_code == 1 and "\n" not in str(err.value) and "500" in str(err.value)
    assert _files(tmp_path) == before


def test_an_html_answer_is_refused_as_bad_data_with_exit_2(sim, client, tmp_path):
    sim.inject_fault(200, times=100, body=b"<html><body>Just a moment...</body></html>", content_type="text/html")
    with pytest.raises(BadMarketData, match="not candle JSON") as err:
        fetch_candles(client, CandleStore(tmp_path), "BTC-USD", "1h", T0, T0 + DAY, now=NOW)
    assert err.value.exit_code == 2
    assert not (tmp_path / "candles" / "BTC-USD" / "1h.parquet").exists()


@pytest.mark.parametrize(
    "symbol, tf, start, end, match",
    [
        ("DOGE-USD", "1m", T0, T0 + 3600, "product"),
        ("BTC-USD", "2m", T0, T0 + 3600, "timeframe"),
        ("BTC-USD", "1m", T0 + 3600, T0, "not after start"),
        ("btc; ls", "1m", T0, T0 + 3600, "not a symbol"),
    ],
)
def test_bad_requests_are_refused_with_exit_2(client, tmp_path, symbol, tf, start, end, match):
    with pytest.raises(BadMarketData, match=match) as err:
        fetch_candles(client, CandleStore(tmp_path), symbol, tf, start, end, now=NOW)
    assert err.value.exit_code == 2


def test_only_closed_candles_are_fetched(sim, client, tmp_path):
    store = CandleStore(tmp_path)
    fetch_candles(client, store, "BTC-USD", "1h", T0, T0 + 10 * DAY, now=T0 + 5 * 3600 + 1200)
    got = store.read_candles("BTC-USD", "1h")
    assert got["timestamp"].iloc[-1] == pd.Timestamp(T0 + 4 * 3600, unit="s", tz="UTC")
    assert store.coverage("BTC-USD", "1h") == [(T0, T0 + 5 * 3600)]


def test_gaps_are_recorded_not_hidden(client, tmp_path):
    store = CandleStore(tmp_path)
    fetch_candles(client, store, "SOL-USD", "1m", T0, T0 + DAY, now=NOW)
    report = store.gap_report("SOL-USD", "1m")
    present = len(store.read_candles("SOL-USD", "1m"))
    assert report.expected == 1440 and report.present == present
    assert report.missing == 1440 - present > 0
    assert sum(g.candles for g in report.gaps) == report.missing
    assert "missing" in report.summary()


def test_higher_timeframes_agree_with_resampled_minutes_and_a_disagreement_is_reported(client, tmp_path):
    store = CandleStore(tmp_path)
    for tf in ("1m", "1h"):
        fetch_candles(client, store, "ETH-USD", tf, T0, T0 + DAY, now=NOW)
    check = check_against_minutes(store, "ETH-USD", "1h")
    assert check.ok and check.compared == 24
    hours = store.read_candles("ETH-USD", "1h")
    hours.loc[5, "high"] *= 1.01
    store.merge_candles("ETH-USD", "1h", hours.iloc[[5]])
    check = check_against_minutes(store, "ETH-USD", "1h")
    assert not check.ok and check.disagreeing == 1 and check.disagreements[0]["column"] == "high"
