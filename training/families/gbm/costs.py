"""What trading one coin costs: fees from configuration, spread and slippage from its order book.

The engine measures each coin's costs before it trains the coin's head, saves them as
``costs.json`` beside the model, and judges the head after them (`training.metrics`:
per side ``fee + spread / 2 + slippage``).

- ``fee_bps``: the taker fee from configuration (``engine.fee_bps``), or the account's
  fee tier when a key is given (the caller passes that figure).
- ``spread_bps``: best ask minus best bid, over the mid price.
- ``slippage_bps``: walking the book with a market order of ``notional`` (in quote
  currency) on each side, how far the average fill lands beyond the best price, over the
  mid; the mean of the buy and the sell side. A book too thin to fill the order is bad
  data (`ThinBook`), never a silently small cost.

The book is Coinbase Exchange's level-2 shape: ``{"bids": [[price, size, orders], ...],
"asks": [...]}``, prices and sizes as strings, best first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from training.errors import BadMarketData
from training.metrics import TradingCosts


class ThinBook(BadMarketData):
    """The book cannot fill the order the costs are measured for."""


@dataclass(frozen=True)
class MeasuredCosts:
    """One coin's costs and where they came from (``costs.json``)."""

    symbol: str
    fee_bps: float
    spread_bps: float
    slippage_bps: float
    notional: float
    mid: float
    source: str
    """``order book`` (measured) or ``configuration`` (no book to measure)."""

    @property
    def trading(self) -> TradingCosts:
        return TradingCosts(self.fee_bps, self.spread_bps, self.slippage_bps)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "round_trip_bps": self.trading.round_trip * 1e4}


def _levels(side: Sequence[Sequence[Any]], symbol: str, name: str) -> list[tuple[float, float]]:
    out = []
    for level in side:
        try:
            price, size = float(level[0]), float(level[1])
        except (TypeError, ValueError, IndexError):
            raise BadMarketData(f"{symbol}: the order book's {name} has a level that is not [price, size]") from None
        if not (math.isfinite(price) and math.isfinite(size)) or price <= 0 or size < 0:
            raise BadMarketData(f"{symbol}: the order book's {name} has a level priced {price} for size {size}")
        out.append((price, size))
    if not out:
        raise ThinBook(f"{symbol}: the order book has no {name}; it cannot be traded now")
    return out


def _average_fill(levels: list[tuple[float, float]], notional: float, symbol: str, name: str) -> float:
    """The average price a market order of ``notional`` (quote currency) fills at."""
    left, spent, got = notional, 0.0, 0.0
    for price, size in levels:
        take = min(left, price * size)
        spent += take
        got += take / price
        left -= take
        if left <= 1e-9:
            return spent / got
    raise ThinBook(
        f"{symbol}: the book's {name} hold only {spent:,.0f} in quote currency, less than the {notional:,.0f} "
        "the costs are measured for; lower engine.cost_notional or skip the coin"
    )


def costs_from_book(symbol: str, book: Mapping[str, Any], *, fee_bps: float, notional: float) -> MeasuredCosts:
    """Spread and slippage of ``book`` for an order of ``notional``, with ``fee_bps`` per side."""
    bids = sorted(_levels(book.get("bids") or (), symbol, "bids"), key=lambda lv: -lv[0])
    asks = sorted(_levels(book.get("asks") or (), symbol, "asks"), key=lambda lv: lv[0])
    best_bid, best_ask = bids[0][0], asks[0][0]
    if best_ask <= best_bid:
        raise BadMarketData(f"{symbol}: the order book is crossed (bid {best_bid} >= ask {best_ask})")
    mid = (best_bid + best_ask) / 2.0
    buy = _average_fill(asks, notional, symbol, "asks")
    sell = _average_fill(bids, notional, symbol, "bids")
    slippage = ((buy - best_ask) + (best_bid - sell)) / 2.0 / mid * 1e4
    return MeasuredCosts(
        symbol=symbol,
        fee_bps=float(fee_bps),
        spread_bps=(best_ask - best_bid) / mid * 1e4,
        slippage_bps=max(0.0, slippage),
        notional=float(notional),
        mid=mid,
        source="order book",
    )


def costs_section(measured: Sequence[MeasuredCosts], default: Mapping[str, float]) -> dict[str, Any]:
    """The ``costs`` mapping a `FitJob` carries: the configured default, then each coin's measurement."""
    section: dict[str, Any] = {"default": dict(default)}
    for m in measured:
        section[m.symbol] = {"fee_bps": m.fee_bps, "spread_bps": m.spread_bps, "slippage_bps": m.slippage_bps}
    return section
