"""CoinGecko fundamentals: market cap, 24h volume, price and the all-time high.

The API key comes from the caller (the console passes ``settings.coingecko_api_key``,
which reads ``COINGECKO_API_KEY``). It is sent in a header and never logged, stored or
put in an error message. Base URLs with ``pro-api`` use the pro header
(``x-cg-pro-api-key``), others the demo header (``x-cg-demo-api-key``).

``market_chart/range`` answers hourly points for ranges up to 90 days and daily points
(00:00 UTC) beyond; `fetch_fundamentals` asks long ranges in one request and short ones
in hourly detail, and the feature builder reduces both to one point a day.
"""

from __future__ import annotations

import time
from typing import Mapping

import httpx
import numpy as np
import pandas as pd

from training.data.market import FUNDAMENTAL_COLUMNS, check_range, check_symbol, utc_index
from training.data.store import CandleStore
from training.errors import BadMarketData, MarketDataError, MissingApiKey

DEFAULT_URL = "https://api.coingecko.com/api/v3"
DEFAULT_IDS: dict[str, str] = {"BTC-USD": "bitcoin", "ETH-USD": "ethereum", "SOL-USD": "solana"}
"""Symbol -> CoinGecko coin id; pass ``ids`` to extend or override."""


class CoinGeckoClient:
    """Market-chart and coin data from CoinGecko (or the sandbox simulator)."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str = DEFAULT_URL,
        *,
        ids: Mapping[str, str] | None = None,
        timeout_s: float = 15.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        if not api_key:
            raise MissingApiKey("no CoinGecko API key: set COINGECKO_API_KEY (or fetch with --no-fundamentals)")
        self.base_url = base_url.rstrip("/")
        self.ids = {**DEFAULT_IDS, **dict(ids or {})}
        header = "x-cg-pro-api-key" if "pro-api" in self.base_url else "x-cg-demo-api-key"
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._http = httpx.Client(timeout=timeout_s, headers={header: api_key, "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "CoinGeckoClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def coin_id(self, symbol: str) -> str:
        check_symbol(symbol)
        try:
            return self.ids[symbol]
        except KeyError:
            raise BadMarketData(
                f"no CoinGecko id for {symbol}: add it to the symbol-to-id map (known: {', '.join(sorted(self.ids))})"
            ) from None

    def _get(self, path: str, params: dict[str, str] | None = None) -> dict:
        failures = 0
        while True:
            try:
                response = self._http.get(f"{self.base_url}{path}", params=params)
            except httpx.HTTPError as exc:
                failures += 1
                if failures > self.max_retries:
                    raise MarketDataError(
                        f"CoinGecko at {self.base_url} is unreachable ({type(exc).__name__}); check the network or the sandbox"
                    ) from None
                time.sleep(self.backoff_s * 2 ** (failures - 1))
                continue
            status = response.status_code
            if status in (401, 403):
                raise MissingApiKey(f"CoinGecko refused the API key (HTTP {status}); check COINGECKO_API_KEY")
            if status == 429 or status >= 500:
                failures += 1
                if failures > self.max_retries:
                    raise MarketDataError(
                        f"CoinGecko answered HTTP {status} after {self.max_retries} retries; try again later"
                    )
                try:
                    delay = float(response.headers.get("Retry-After", self.backoff_s * 2 ** (failures - 1)))
                except ValueError:
                    delay = self.backoff_s * 2 ** (failures - 1)
                time.sleep(min(delay, 60.0))
                continue
            if status == 404:
                raise BadMarketData(
                    f"CoinGecko does not know {path.split('/')[2] if path.count('/') > 1 else path} (HTTP 404)"
                )
            if status != 200:
                raise BadMarketData(f"CoinGecko refused {path.split('?')[0]} (HTTP {status})")
            try:
                body = response.json()
            except ValueError:
                kind = response.headers.get("content-type", "?").split(";")[0]
                raise BadMarketData(
                    f"CoinGecko answered something that is not JSON ({kind}); check the CoinGecko URL"
                ) from None
            if not isinstance(body, dict):
                raise BadMarketData("CoinGecko answered JSON of an unexpected shape")
            return body

    def market_chart(self, symbol: str, start: int, end: int) -> pd.DataFrame:
        """timestamp, price, market_cap, total_volume for [start, end] (unix seconds)."""
        check_range(start, end)
        body = self._get(
            f"/coins/{self.coin_id(symbol)}/market_chart/range",
            {"vs_currency": "usd", "from": str(int(start)), "to": str(int(end))},
        )
        try:
            series = {
                k: np.asarray(body[k], dtype=np.float64).reshape(-1, 2)
                for k in ("prices", "market_caps", "total_volumes")
            }
        except (KeyError, ValueError, TypeError):
            raise BadMarketData("CoinGecko market_chart answer lacks prices, market_caps or total_volumes") from None
        times = series["prices"][:, 0]
        if not all(np.array_equal(times, s[:, 0]) for s in series.values()):
            raise BadMarketData("CoinGecko market_chart series have different timestamps")
        frame = pd.DataFrame(
            {
                "timestamp": utc_index((times // 1000).astype(np.int64)),
                "price": series["prices"][:, 1],
                "market_cap": series["market_caps"][:, 1],
                "total_volume": series["total_volumes"][:, 1],
            }
        )
        return frame.drop_duplicates("timestamp", keep="last").reset_index(drop=True)

    def all_time_high(self, symbol: str) -> tuple[float, pd.Timestamp]:
        """The coin's all-time high in USD and when it happened."""
        body = self._get(f"/coins/{self.coin_id(symbol)}", {"localization": "false", "tickers": "false"})
        try:
            data = body["market_data"]
            return float(data["ath"]["usd"]), pd.Timestamp(data["ath_date"]["usd"]).tz_convert("UTC")
        except (KeyError, TypeError, ValueError):
            raise BadMarketData("CoinGecko coin answer lacks market_data.ath") from None


def fetch_fundamentals(client: CoinGeckoClient, store: CandleStore, symbol: str, start: int, end: int) -> int:
    """Fetch CoinGecko data for [start, end] into the store; returns rows added."""
    frame = client.market_chart(symbol, start, end)
    ath, ath_time = client.all_time_high(symbol)
    frame["ath"] = ath
    frame["ath_time"] = pd.Series([ath_time] * len(frame), dtype="datetime64[ns, UTC]")
    return store.merge_fundamentals(symbol, frame[list(FUNDAMENTAL_COLUMNS)])
