"""CoinGecko fundamentals against the simulator: the key, the id map, the store."""

from __future__ import annotations

import logging
import secrets

import pandas as pd
import pytest

from remote.sandbox.market_server import MarketSimulator
from training.data.coingecko import CoinGeckoClient, fetch_fundamentals
from training.data.store import CandleStore
from training.errors import BadMarketData, MissingApiKey

T0 = 1_740_787_200
DAY = 86_400


@pytest.fixture
def key():
    return "CG-" + secrets.token_urlsafe(18)


@pytest.fixture
def sim(key):
    with MarketSimulator(require_api_key=key, rate_limit_per_s=1000) as s:
        yield s


def test_without_a_key_the_client_refuses_with_a_clear_message(sim):
    with pytest.raises(MissingApiKey, match="COINGECKO_API_KEY") as err:
        CoinGeckoClient(None, f"{sim.url}/api/v3")
    assert err.value.exit_code == 2


def test_a_wrong_key_is_reported_without_showing_it(sim):
    wrong = "CG-" + secrets.token_urlsafe(18)
    with CoinGeckoClient(wrong, f"{sim.url}/api/v3") as client, pytest.raises(MissingApiKey) as err:
        client.all_time_high("BTC-USD")
    assert "401" in str(err.value) and wrong not in str(err.value)


def test_fundamentals_are_fetched_stored_and_the_key_written_nowhere(sim, key, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    store = CandleStore(tmp_path)
    with CoinGeckoClient(key, f"{sim.url}/api/v3") as client:
        added = fetch_fundamentals(client, store, "SOL-USD", T0 - 120 * DAY, T0)
    frame = store.read_fundamentals("SOL-USD")
    assert added == len(frame) == 121
    assert (frame["market_cap"] > frame["price"]).all() and (frame["ath"] > 0).all()
    assert frame["timestamp"].iloc[0] == pd.Timestamp(T0 - 120 * DAY, unit="s", tz="UTC")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes()
    assert key not in caplog.text


def test_incremental_fetch_appends_hourly_points(sim, key, tmp_path):
    store = CandleStore(tmp_path)
    with CoinGeckoClient(key, f"{sim.url}/api/v3") as client:
        fetch_fundamentals(client, store, "BTC-USD", T0 - 100 * DAY, T0)
        added = fetch_fundamentals(client, store, "BTC-USD", T0, T0 + DAY)
    assert added == 24  # hourly points after T0 (T0 itself was already there)
    assert store.read_fundamentals("BTC-USD")["timestamp"].is_monotonic_increasing


def test_symbol_to_id_map_is_configurable(sim, key):
    with CoinGeckoClient(key, f"{sim.url}/api/v3", ids={"XBT-USD": "bitcoin"}) as client:
        assert client.coin_id("XBT-USD") == "bitcoin" and client.coin_id("ETH-USD") == "ethereum"
        with pytest.raises(BadMarketData, match="no CoinGecko id for DOGE-USD"):
            client.coin_id("DOGE-USD")
        frame = client.market_chart("XBT-USD", T0 - 2 * DAY, T0)
    assert len(frame) == 49


def test_html_from_coingecko_is_bad_data(sim, key):
    sim.inject_fault(200, times=5, body=b"<html>maintenance</html>", content_type="text/html")
    with CoinGeckoClient(key, f"{sim.url}/api/v3") as client, pytest.raises(BadMarketData, match="not JSON"):
        client.market_chart("BTC-USD", T0 - DAY, T0)
