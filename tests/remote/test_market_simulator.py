"""The sandbox market simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import secrets

import httpx
import numpy as np
import pytest

from remote.sandbox.market import BLOCK_MINUTES, EPOCH, MARKET_ANCHOR, _day_path, clock_shift_for, generate_minutes
from remote.sandbox.market_server import MarketSimulator

T0 = 1_740_787_200  # 2025-03-01 00:00 UTC
DAY = 86_400


@pytest.fixture
def sim():
    with MarketSimulator(seed=7, rate_limit_per_s=1000) as s:
        yield s


def _candles(url: str, product: str, g: int, start: int, end: int) -> httpx.Response:
    return httpx.get(f"{url}/products/{product}/candles", params={"granularity": g, "start": start, "end": end})


def test_candles_come_newest_first_in_coinbase_row_layout(sim):
    r = _candles(sim.url, "BTC-USD", 60, T0, T0 + 300 * 60)
    assert r.status_code == 200
    rows = r.json()
    assert 290 <= len(rows) <= 300
    times = [row[0] for row in rows]
    assert times == sorted(times, reverse=True)
    for t, low, high, open_, close, volume in rows:
        assert low <= min(open_, close) <= max(open_, close) <= high and volume > 0
        assert T0 <= t < T0 + 300 * 60 and t % 60 == 0


def test_more_than_300_candles_are_refused(sim):
    r = _candles(sim.url, "BTC-USD", 60, T0, T0 + 301 * 60)
    assert r.status_code == 400 and "300" in r.json()["message"]


def test_unknown_product_and_granularity_are_refused(sim):
    assert _candles(sim.url, "DOGE-USD", 60, T0, T0 + 600).status_code == 404
    assert _candles(sim.url, "BTC-USD", 120, T0, T0 + 600).status_code == 400


def test_iso_times_are_accepted_like_unix_seconds(sim):
    a = _candles(sim.url, "ETH-USD", 300, T0, T0 + 3600).json()
    b = httpx.get(
        f"{sim.url}/products/ETH-USD/candles",
        params={"granularity": 300, "start": "2025-03-01T00:00:00Z", "end": "2025-03-01T01:00:00+00:00"},
    ).json()
    assert a == b and len(a) == 12


def test_same_seed_and_range_give_the_same_candles_whichever_range_was_asked_first():
    with MarketSimulator(seed=3, rate_limit_per_s=1000) as one, MarketSimulator(seed=3, rate_limit_per_s=1000) as two:
        _candles(one.url, "SOL-USD", 60, T0 + 40 * DAY, T0 + 40 * DAY + 18000)  # a later range first
        first = _candles(one.url, "SOL-USD", 60, T0, T0 + 18000).json()
        second = _candles(two.url, "SOL-USD", 60, T0, T0 + 18000).json()
    assert first == second
    with MarketSimulator(seed=4, rate_limit_per_s=1000) as other:
        assert _candles(other.url, "SOL-USD", 60, T0, T0 + 18000).json() != first


def _anchored(started: int) -> MarketSimulator:
    sim = MarketSimulator(seed=7, rate_limit_per_s=1000, clock_shift_s=clock_shift_for(started))
    sim.clock = lambda: started + 25 * 60 + 7  # 25 minutes after the sandbox started
    return sim


def test_an_anchored_market_serves_the_same_prices_whatever_day_and_hour_it_starts():
    monday_morning, months_later_evening = 1_764_572_430, 1_764_572_430 + 97 * DAY + 11 * 3600 + 13 * 60
    with _anchored(monday_morning) as one, _anchored(months_later_evening) as two:
        a = httpx.get(f"{one.url}/products/ETH-USD/candles", params={"granularity": 60}).json()
        b = httpx.get(f"{two.url}/products/ETH-USD/candles", params={"granularity": 60}).json()
        hourly_a = _candles(one.url, "ETH-USD", 3600, monday_morning - 30 * DAY, monday_morning - 20 * DAY).json()
        gecko = [
            httpx.get(f"{s.url}/api/v3/coins/ethereum/market_chart/range",
                      params={"vs_currency": "usd", "from": start - 2 * DAY, "to": start}).json()["prices"]
            for s, start in ((one, monday_morning), (two, months_later_evening))
        ]  # fmt: skip
    # Hourly fundamentals stay on whole wall-clock hours, so they sample the two markets at
    # different minutes of the same history: close, not equal.
    assert all(p[0] % 3_600_000 == 0 for p in gecko[0] + gecko[1])
    assert np.allclose([p[1] for p in gecko[0]][-40:], [p[1] for p in gecko[1]][-40:], rtol=0.03)
    assert len(a) > 280 and [r[1:] for r in a] == [r[1:] for r in b]  # the same minutes, prices and volumes
    assert a[0][0] == monday_morning // 60 * 60 + 24 * 60  # served on the wall clock, newest closed first
    assert all(row[0] % 3600 == 0 for row in hourly_a)  # hours stay whole hours of the wall clock
    # What the first minute served is: the process's MARKET_ANCHOR.
    first = generate_minutes("ETH-USD", MARKET_ANCHOR, MARKET_ANCHOR + 60, every_minute=True)
    served = [r for r in a if r[0] == monday_morning // 60 * 60]
    assert served and served[0][4] == pytest.approx(float(first["close"][0]), rel=1e-12)


def test_higher_granularities_aggregate_the_minutes(sim):
    hour = _candles(sim.url, "BTC-USD", 3600, T0, T0 + 3600).json()[0]
    minutes = _candles(sim.url, "BTC-USD", 60, T0, T0 + 3600).json()[::-1]
    assert hour[0] == T0
    assert hour[3] == minutes[0][3] and hour[4] == minutes[-1][4]
    assert hour[1] == min(m[1] for m in minutes) and hour[2] == max(m[2] for m in minutes)
    assert hour[5] == pytest.approx(sum(m[5] for m in minutes), rel=1e-9)


def test_minutes_without_trades_have_no_candle():
    m = generate_minutes("SOL-USD", T0, T0 + 5 * DAY)
    assert 0 < 5 * 1440 - len(m["time"]) < 5 * 1440 * 0.1


def test_only_closed_candles_up_to_now_are_served(sim):
    sim.clock = lambda: T0 + 3600 + 30  # half a minute into 01:00
    rows = _candles(sim.url, "BTC-USD", 60, T0 + 3000, T0 + 3000 + 300 * 60).json()
    assert max(r[0] for r in rows) == T0 + 3600 - 60


def test_requests_past_the_rate_get_429_with_retry_after():
    with MarketSimulator(rate_limit_per_s=2) as s:
        statuses = [_candles(s.url, "BTC-USD", 3600, T0, T0 + 7200) for _ in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1


def test_the_rate_limit_is_counted_per_client_address_as_the_exchange_counts_per_host():
    def burst(url: str, source: str) -> list[int]:
        with httpx.Client(transport=httpx.HTTPTransport(local_address=source)) as http:
            params = {"granularity": 3600, "start": T0, "end": T0 + 7200}
            return [http.get(f"{url}/products/BTC-USD/candles", params=params).status_code for _ in range(3)]

    with MarketSimulator(rate_limit_per_s=2) as s:
        first, again, other = burst(s.url, "127.0.0.1"), burst(s.url, "127.0.0.1"), burst(s.url, "127.3.0.9")
        clients = {r.client for r in s.requests}
    assert first[:2] == [200, 200] and 429 in first + again  # one host past its rate is limited...
    assert other[:2] == [200, 200]  # ...and another host still has its own allowance
    assert clients == {"127.0.0.1", "127.3.0.9"}


def test_coingecko_answers_401_without_the_key_and_takes_either_header():
    key = "CG-" + secrets.token_urlsafe(18)
    with MarketSimulator(require_api_key=key, rate_limit_per_s=1000) as s:
        url = f"{s.url}/api/v3/coins/bitcoin"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"x-cg-demo-api-key": "wrong"}).status_code == 401
        assert httpx.get(url, headers={"x-cg-demo-api-key": key}).status_code == 200
        body = httpx.get(url, headers={"x-cg-pro-api-key": key}).json()
        assert body["market_data"]["ath"]["usd"] > 0 and body["market_data"]["ath_date"]["usd"].endswith("Z")
        assert all(key not in str(r.query) for r in s.requests)


def test_market_chart_range_is_daily_beyond_90_days_and_hourly_within(sim):
    url = f"{sim.url}/api/v3/coins/ethereum/market_chart/range"
    long = httpx.get(url, params={"vs_currency": "usd", "from": T0 - 200 * DAY, "to": T0}).json()
    short = httpx.get(url, params={"vs_currency": "usd", "from": T0 - 2 * DAY, "to": T0}).json()
    assert set(long) == {"prices", "market_caps", "total_volumes"}
    assert np.all(np.diff([p[0] for p in long["prices"]]) == DAY * 1000)
    assert np.all(np.diff([p[0] for p in short["prices"]]) == 3600 * 1000)
    assert all(m[1] > p[1] > 0 for m, p in zip(long["market_caps"], long["prices"]))


def test_injected_faults_answer_once_then_the_real_thing(sim):
    sim.inject_fault(503, times=1, body=b"<html>down</html>", content_type="text/html")
    assert _candles(sim.url, "BTC-USD", 60, T0, T0 + 600).status_code == 503
    assert _candles(sim.url, "BTC-USD", 60, T0, T0 + 600).status_code == 200


def _block_autocorrelation(mode: str) -> dict[int, float]:
    start = T0 - 200 * DAY
    m = generate_minutes("BTC-USD", start, start + 120 * DAY, mode=mode)
    t, c = m["time"], m["close"]
    r = np.diff(np.log(c))
    contiguous = np.diff(t) == 60
    path = _day_path(7, "BTC-USD", mode)
    block = (t[1:] - EPOCH) // (BLOCK_MINUTES * 60)
    regime = path.regime[block]
    out = {}
    for k in range(4):
        sel = np.flatnonzero(contiguous[1:] & contiguous[:-1] & (regime[1:] == k) & (regime[:-1] == k))
        out[k] = float(np.corrcoef(r[sel], r[sel + 1])[0, 1])
    return out


def test_structured_mode_has_the_documented_lag_one_structure_and_random_walk_none():
    structured = _block_autocorrelation("structured")
    assert structured[1] > 0.05  # trending: momentum
    assert structured[2] < -0.05  # choppy: mean reversion
    walk = _block_autocorrelation("random_walk")
    assert all(abs(v) < 0.03 for v in walk.values())


def _momentum_hit_rate(mode: str, horizon: int = 15, lookback: int = 60) -> float:
    start = 1_420_070_400 + 3000 * DAY
    m = generate_minutes("BTC-USD", start, start + 120 * DAY, mode=mode, every_minute=True)
    lc = np.log(m["close"])
    past = lc[lookback:-horizon] - lc[:-lookback - horizon]
    future = lc[lookback + horizon:] - lc[lookback:-horizon]
    ok = (past != 0) & (future != 0)
    return float(np.mean(np.sign(past[ok]) == np.sign(future[ok])))


def test_momentum_scores_as_documented_on_structured_and_chance_on_random_walk():
    # The module docstring: a 2-hour momentum rule is right about 68% of the time at a
    # 15-minute horizon in structured mode, and at chance on the random walk.
    assert 0.62 < _momentum_hit_rate("structured", lookback=120) < 0.74
    assert abs(_momentum_hit_rate("random_walk", lookback=120) - 0.5) < 0.01
