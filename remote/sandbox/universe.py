"""The simulator's long tail: 410 further coins, their market-cap ranking, order books, listings.

Seed runbook 003 trains 150 to 400 coins. Besides BTC, ETH and SOL the simulator serves
410 made-up coins (``AAB-USD`` ...), each with its own scale, volatility and supply, so
``top20``, ``top150`` and ``top400`` are real sets to resolve. Every 40th of them was
listed recently (``listed_days_ago`` of 3 to 10 days): its candles start then, as a new
listing's do, so the engine meets coins with too little history.

APIs (`MarketUniverseApi`, one line of `remote.sandbox.market_server.EXTRA_APIS`)::

    GET /products                        -> [{"id", "base_currency", "quote_currency", "status"}]
    GET /products/{id}/book?level=2      -> {"bids": [[price, size, orders]], "asks": [...], "sequence"}
    GET /api/v3/coins/markets?vs_currency=usd&order=market_cap_desc&per_page=&page=
                                         -> [{"id", "symbol", "name", "market_cap", "market_cap_rank", ...}]

A delisted product (`MarketSimulator.delist`) is listed with ``status: delisted`` and its
candles and book answer 404, as Coinbase's do.

Books: the spread widens and the depth thins down the ranking (BTC about 1 bp with deep
levels; the tail tens of bps with thin ones), around the coin's latest simulated close.
"""

from __future__ import annotations

import string
import zlib
from typing import Any

import numpy as np

from remote.sandbox.market import _BY_GECKO_ID, COINS, DAY, Coin, generate_minutes

EXTRA_COINS = 410
_LETTERS = string.ascii_uppercase


def _ticker(i: int) -> str:
    a, b, c = (i // 676) % 26, (i // 26) % 26, i % 26
    return _LETTERS[a] + _LETTERS[b] + _LETTERS[c]


def _generated() -> list[Coin]:
    rng = np.random.default_rng(20261205)
    coins = []
    for i in range(EXTRA_COINS):
        tick = _ticker(i + 1)
        price = float(np.exp(rng.uniform(np.log(0.01), np.log(500.0))))
        cap = 8e10 * (i + 4) ** -1.3  # a power law below the three large coins
        coins.append(
            Coin(
                f"{tick}-USD",
                f"sim-{tick.lower()}",
                f"Simcoin {tick}",
                price,
                float(rng.uniform(1.2, 2.5)),
                float(cap / price / 5e5),
                float(rng.uniform(0.02, 0.2)),
                float(cap / price),
            )
        )
    return coins


GENERATED = _generated()
for _coin in GENERATED:
    COINS.setdefault(_coin.product_id, _coin)
    _BY_GECKO_ID.setdefault(_coin.coingecko_id, _coin)
RANKED = [*(c for c in COINS.values() if c not in GENERATED), *GENERATED]
"""Every coin by market cap, largest first."""
LISTED_DAYS_AGO = {c.product_id: 3 + (i // 40) % 8 for i, c in enumerate(GENERATED) if i % 40 == 39}
"""Recent listings: product id -> days since listing."""


def listed_since(product_id: str, now: int) -> int:
    """The unix time a coin's candles start (0 for a coin listed long ago)."""
    days = LISTED_DAYS_AGO.get(product_id)
    return (now // DAY - days) * DAY if days else 0


def book(product_id: str, now: int, *, seed: int, mode: str, levels: int = 50) -> dict[str, Any]:
    """A level-2 book around the coin's latest close; spread and depth by its rank."""
    coin = COINS[product_id]
    rank = RANKED.index(coin)
    minutes = generate_minutes(product_id, now - 3 * 3600, now, seed=seed, mode=mode)
    mid = float(minutes["close"][-1]) if len(minutes["close"]) else coin.start_price
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(product_id.encode()), now // 60])
    half_spread_bps = 0.5 * (1.0 + rank**0.8) * float(rng.uniform(0.8, 1.2))
    depth_usd = 2e6 / (1.0 + rank) ** 1.1  # per level, in quote currency
    tick_bps = 0.5 + 0.1 * rank**0.7
    bids, asks = [], []
    for level in range(levels):
        offset = (half_spread_bps + level * tick_bps) / 1e4
        size = depth_usd * float(rng.uniform(0.5, 1.5)) / mid
        bids.append([f"{mid * (1 - offset):.8g}", f"{size:.8g}", int(rng.integers(1, 9))])
        asks.append([f"{mid * (1 + offset):.8g}", f"{size:.8g}", int(rng.integers(1, 9))])
    return {"bids": bids, "asks": asks, "sequence": int(now)}


class MarketUniverseApi:
    """The product list, order books and the market-cap ranking (see the module docstring)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    def answer(self, parts: list[str], query: dict[str, str], headers: Any) -> tuple[int, dict[str, str], Any] | None:
        delisted: set[str] = getattr(self.sim, "delisted", set())
        if parts == ["products"]:
            return 200, {}, [
                {"id": c.product_id, "base_currency": c.product_id.split("-")[0], "quote_currency": "USD",
                 "status": "delisted" if c.product_id in delisted else "online"}
                for c in RANKED
            ]  # fmt: skip
        if len(parts) == 3 and parts[0] == "products" and parts[1] in delisted and parts[2] in ("book", "candles"):
            return 404, {}, {"message": "NotFound"}
        if len(parts) == 3 and parts[0] == "products" and parts[2] == "book":
            if parts[1] not in COINS:
                return 404, {}, {"message": "NotFound"}
            market_now = int(self.sim.clock()) - self.sim.clock_shift_s  # the anchored market's own time
            return 200, {}, book(parts[1], market_now, seed=self.sim.seed, mode=self.sim.mode)
        if parts == ["api", "v3", "coins", "markets"]:
            return self._markets(query)
        return None

    def _markets(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if query.get("vs_currency", "").lower() != "usd":
            return 400, {}, {"error": "invalid vs_currency"}
        try:
            per_page = max(1, min(250, int(query.get("per_page", "100"))))
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            return 400, {}, {"error": "per_page and page must be whole numbers"}
        chunk = RANKED[(page - 1) * per_page : page * per_page]
        first = (page - 1) * per_page
        return 200, {}, [
            {"id": c.coingecko_id, "symbol": c.product_id.split("-")[0].lower(), "name": c.name,
             "market_cap": c.start_price * c.supply, "market_cap_rank": first + i + 1}
            for i, c in enumerate(chunk)
        ]  # fmt: skip
