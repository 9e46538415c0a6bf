"""The investment system's daily pipeline against the market simulator over real HTTP: Stooq bars,
FRED yields and GDELT tone in, the two daily tables out, one partition per table and day."""

from __future__ import annotations

import json
import secrets
from datetime import date, timedelta

import pandas as pd
import pytest

from console.daily_data import Inputs, build, fetch_inputs, parse_day, read_window, trading_days, write_partitions
from console.errors import UsageError
from remote.sandbox.market_server import MarketSimulator
from remote.storage.local import LocalArtifactStore
from tests.console.cli import console
from training.data.daily_sources import DailySources
from training.errors import BadMarketData

LAST = date(2026, 11, 20)
ASSETS = ["XLK", "XLE", "GLD"]


@pytest.fixture(scope="module")
def market():
    with MarketSimulator(rate_limit_per_s=1000) as sim:
        yield sim


@pytest.fixture(scope="module")
def inputs(market) -> Inputs:
    with DailySources(
        stooq_url=market.url, fred_url=market.url, gdelt_url=market.url, fred_key=secrets.token_hex(16)
    ) as src:
        return fetch_inputs(src, ASSETS, LAST - timedelta(days=60), LAST)


def test_every_day_built_from_inputs_cut_at_its_close_equals_that_day_of_the_full_build(inputs):
    days = trading_days(inputs, LAST, 30)
    full = build(inputs, ASSETS, days)
    assert len(full.context) == 30 and len(full.features) == 30 * len(ASSETS)
    for day in days[::4] + [days[-1]]:
        cut = build(inputs.until(day), ASSETS, [day])
        stamp = pd.Timestamp(day)
        pd.testing.assert_frame_equal(cut.context, full.context[full.context["date"] == stamp].reset_index(drop=True))
        pd.testing.assert_frame_equal(
            cut.features, full.features[full.features["date"] == stamp].reset_index(drop=True)
        )


def test_a_trading_days_tone_is_the_previous_whole_day_of_news(inputs):
    day = trading_days(inputs, LAST, 3)[0]
    row = build(inputs, ASSETS, [day]).context.iloc[0]
    assert row["gdelt_avg_tone"] == inputs.tone[pd.Timestamp(day) - pd.Timedelta(days=1)]
    assert row["gdelt_avg_tone"] != inputs.tone[pd.Timestamp(day)]


def test_an_unknown_symbol_is_bad_input_named(market):
    with DailySources(
        stooq_url=market.url, fred_url=market.url, gdelt_url=market.url, fred_key=secrets.token_hex(16)
    ) as src:
        with pytest.raises(BadMarketData, match="no daily bars for ZZZZ") as caught:
            src.stooq_closes("ZZZZ", LAST - timedelta(days=10), LAST)
    assert caught.value.exit_code == 2


def test_a_weekend_or_an_unclosed_day_is_refused_as_bad_input(inputs):
    with pytest.raises(UsageError, match="no bars for 2026-11-14"):
        build(inputs, ASSETS, [date(2026, 11, 14)])
    with pytest.raises(UsageError, match="has not closed yet"):
        parse_day("2026-11-21", now=pd.Timestamp("2026-11-21T20:59Z").timestamp())
    assert parse_day("2026-11-21", now=pd.Timestamp("2026-11-21T21:00Z").timestamp()) == date(2026, 11, 21)
    with pytest.raises(UsageError, match="is not a date"):
        parse_day("2026-13-01")


def test_a_bond_holiday_carries_the_yields_forward_and_the_window_reads_back_checked(inputs, tmp_path):
    veterans = date(2026, 11, 11)  # stocks open, bonds shut: FRED answers "."
    assert pd.Timestamp(veterans) in inputs.closes.index and pd.Timestamp(veterans) not in inputs.yields.index
    built = build(inputs, ASSETS, trading_days(inputs, LAST, 15))
    day_before = built.context.set_index("date").loc[pd.Timestamp(veterans) - pd.Timedelta(days=1), "yield_slope"]
    assert built.context.set_index("date").loc[pd.Timestamp(veterans), "yield_slope"] == day_before

    store = LocalArtifactStore(tmp_path / "bucket")
    write_partitions(store, built)
    context, features, days = read_window(store, LAST, 10, tmp_path / "window")
    assert days == built.days[-10:]
    assert len(pd.read_parquet(context)) == 10 and len(pd.read_parquet(features)) == 10 * len(ASSETS)


def test_backfill_then_daily_write_the_same_rows(market, tmp_path):
    bucket = tmp_path / "bucket"
    key = secrets.token_hex(16)
    env = {
        "RC_STATE_DIR": str(tmp_path / "state"),
        "RC_DAILY_URLS__STOOQ": market.url,
        "RC_DAILY_URLS__FRED": market.url,
        "RC_DAILY_URLS__GDELT": market.url,
        "FRED_API_KEY": key,
    }
    common = ["--assets", ",".join(ASSETS), "--store", str(bucket), "--json"]
    filled = console("data", "backfill", "--days", "20", "--end", str(LAST), *common, env=env)
    assert filled.returncode == 0, filled.stderr
    summary = json.loads(filled.stdout)
    assert summary["days"] == 20 and summary["partitions"] == 40 and summary["last"] == str(LAST)
    assert key not in filled.stdout + filled.stderr

    one = console("data", "daily", "--date", "2026-11-12", *common, env=env)
    assert one.returncode == 0, one.stderr
    row = json.loads(one.stdout)["context"]
    stored = pd.read_parquet(bucket / "context" / "date=2026-11-12" / "context.parquet").iloc[0]
    for name, value in row.items():
        if name != "date":
            assert value == pytest.approx(stored[name], rel=1e-12), name


def test_the_default_universe_is_served_whole_by_the_simulator(market):
    from console.daily_data import UNIVERSE

    with DailySources(
        stooq_url=market.url, fred_url=market.url, gdelt_url=market.url, fred_key=secrets.token_hex(16)
    ) as src:
        got = fetch_inputs(src, UNIVERSE, LAST - timedelta(days=10), LAST)
    built = build(got, UNIVERSE, trading_days(got, LAST, 3))
    assert len(UNIVERSE) >= 30  # breadth the health model's test needs (scripts/bench/health_gate_null.py)
    assert sorted(built.features["symbol"].unique()) == sorted(UNIVERSE)
