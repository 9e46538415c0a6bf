"""The simulator's daily sources (Stooq bars, FRED yields, GDELT tone) over real HTTP."""

from __future__ import annotations

import secrets

import httpx
import numpy as np
import pandas as pd
import pytest

from remote.sandbox.daily import daily_process
from remote.sandbox.market_server import MarketSimulator


def _bars(sim: MarketSimulator, symbol: str = "spy.us") -> str:
    return httpx.get(f"{sim.url}/q/d/l/", params={"s": symbol, "i": "d", "d1": "20261116", "d2": "20261120"}).text


def test_a_days_bar_is_served_only_after_the_us_close_and_is_the_same_whatever_day_it_is_asked():
    with MarketSimulator() as early, MarketSimulator() as late:
        early.clock = lambda: pd.Timestamp("2026-11-20T20:59Z").timestamp()
        late.clock = lambda: pd.Timestamp("2027-06-01T12:00Z").timestamp()
        before, after = _bars(early).splitlines(), _bars(late).splitlines()
        assert before[0] == "Date,Open,High,Low,Close,Volume"
        assert [r.split(",")[0] for r in before[1:]] == ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19"]
        assert after[: len(before)] == before and after[-1].startswith("2026-11-20,")
        assert _bars(late, "nope.us") == "No data"
        refused = httpx.get(f"{late.url}/fred/series/observations", params={"series_id": "DGS10", "api_key": "short"})
        assert refused.status_code == 400 and "api_key" in refused.json()["error_message"]
        ok = httpx.get(
            f"{late.url}/fred/series/observations",
            params={"series_id": "DGS2", "api_key": secrets.token_hex(16), "observation_start": "2026-11-10",
                    "observation_end": "2026-11-12"},
        )  # fmt: skip
        assert [o["value"] == "." for o in ok.json()["observations"]] == [False, True, False]  # Veterans Day


def test_the_structured_daily_process_has_regimes_of_their_own_volatility_and_the_random_walk_has_none():
    structured, walk = daily_process(7, "structured"), daily_process(7, "random_walk")
    spy = np.diff(np.log(structured.closes["SPY"]))[structured.trading[1:]]
    regimes = structured.regimes[1:][structured.trading[1:]]
    vols = [spy[regimes == r].std() for r in range(5)]
    assert max(vols) > 5 * min(vols)  # panic against calm
    assert set(np.unique(walk.regimes)) == {-1}
    tone_lead = np.corrcoef(
        structured.tone[:-8], np.log(structured.closes["SPY"][8:]) - np.log(structured.closes["SPY"][:-8])
    )
    assert tone_lead[0, 1] > 0.1  # the news runs ahead of the market


def test_widening_the_universe_left_every_earlier_series_of_a_seed_as_it_was():
    # Closes the sixteen-asset simulator served for seed 0 on 2026-11-20, before the universe grew
    # to 32: history must not change under an operator's stored partitions.
    before = {
        "structured": ({"SPY": 64.44751415365212, "XLB": 36.23872708959896, "SLV": 25.156258287059238}, 4.759501751813232),
        "random_walk": ({"SPY": 103.03955005087529, "XLB": 109.3332160642125, "SLV": 65.73055378696783}, 3.044149794208037),
    }
    for mode, (closes, two_year) in before.items():
        process = daily_process(0, mode)
        day = process.index(pd.Timestamp("2026-11-20").date())
        assert {name: process.closes[name][day] for name in closes} == pytest.approx(closes, rel=1e-12)
        assert process.yields["DGS2"][day] == pytest.approx(two_year, rel=1e-12)
        assert len(process.closes) == 5 + 32
