"""Clients of the investment system's daily sources (seed runbook 001), over real HTTP.

- `stooq_closes`: daily bars from Stooq's CSV download (``/q/d/l/?s=spy.us&i=d&d1=&d2=``);
- `fred_series`: a FRED series' observations (``/fred/series/observations``), e.g. DGS10, DGS2;
  the key is sent as FRED wants it (the ``api_key`` query parameter) and never appears in a
  message, a log or a file: errors say "check FRED_API_KEY", nothing more;
- `gdelt_tone`: the GDELT DOC API's daily average tone (``/api/v2/doc/doc?mode=timelinetone``).

Each answers a `pandas.Series` indexed by day (naive dates). 429 and 5xx are retried with the
server's Retry-After (else an exponential backoff); an unreachable service is `MarketDataError`
(exit 1); an answer of the wrong shape, an unknown symbol or a refused key is bad input (exit 2).
"""

from __future__ import annotations

import csv
import io
import time
from datetime import date
from typing import Any

import httpx
import pandas as pd

from training.errors import BadMarketData, MarketDataError, MissingApiKey

STOOQ_URL = "https://stooq.com"
FRED_URL = "https://api.stlouisfed.org"
GDELT_URL = "https://api.gdeltproject.org"
GDELT_QUERY = "(economy OR markets OR stocks)"
"""What the tone timeline is asked about: the news the market reads."""


class DailySources:
    """One HTTP client for the three sources; ``close()`` (or ``with``) releases it."""

    def __init__(
        self,
        *,
        stooq_url: str = STOOQ_URL,
        fred_url: str = FRED_URL,
        gdelt_url: str = GDELT_URL,
        fred_key: str | None,
        timeout_s: float = 20.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
    ) -> None:
        if not fred_key:
            raise MissingApiKey("no FRED API key: set FRED_API_KEY (free at fred.stlouisfed.org)")
        self.urls = {"stooq": stooq_url.rstrip("/"), "fred": fred_url.rstrip("/"), "gdelt": gdelt_url.rstrip("/")}
        self._fred_key = fred_key
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.requests = 0
        self._http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "DailySources":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, source: str, path: str, params: dict[str, str], name: str) -> httpx.Response:
        failures = 0
        while True:
            self.requests += 1
            response: httpx.Response | None = None
            try:
                answer = self._http.get(f"{self.urls[source]}{path}", params=params)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if answer.status_code != 429 and answer.status_code < 500:
                    return answer
                response, problem = answer, f"HTTP {answer.status_code}"
            failures += 1
            if failures > self.max_retries:
                raise MarketDataError(
                    f"{name} at {self.urls[source]} failed {failures} times ({problem}); check the network or try later"
                )
            delay = self.backoff_s * 2 ** (failures - 1)
            if response is not None:
                try:
                    delay = float(response.headers.get("Retry-After", delay))
                except ValueError:
                    pass
            time.sleep(min(delay, 30.0))

    def stooq_closes(self, symbol: str, first: date, last: date) -> pd.Series:
        """Daily closes of a US ``symbol`` (``SPY``) from ``first`` to ``last``."""
        params = {"s": f"{symbol.lower()}.us", "i": "d", "d1": f"{first:%Y%m%d}", "d2": f"{last:%Y%m%d}"}
        response = self._get("stooq", "/q/d/l/", params, "Stooq")
        text = response.text
        if response.status_code != 200:
            raise BadMarketData(f"Stooq refused {symbol} (HTTP {response.status_code})")
        if text.strip() in ("No data", ""):
            raise BadMarketData(f"Stooq has no daily bars for {symbol}; check the symbol")
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows or "Date" not in rows[0] or "Close" not in rows[0]:
            raise BadMarketData(f"Stooq answered {symbol} without Date and Close columns; check the Stooq URL")
        try:
            closes = pd.Series(
                [float(r["Close"]) for r in rows], index=pd.to_datetime([r["Date"] for r in rows]), name=symbol
            )
        except (TypeError, ValueError):
            raise BadMarketData(f"Stooq's bars for {symbol} have a date or close that is not readable") from None
        return closes[~closes.index.duplicated(keep="last")].sort_index()

    def fred_series(self, series: str, first: date, last: date) -> pd.Series:
        """FRED ``series`` from ``first`` to ``last``; days FRED marks ``.`` (no value) are left out."""
        params = {
            "series_id": series,
            "api_key": self._fred_key,
            "file_type": "json",
            "observation_start": first.isoformat(),
            "observation_end": last.isoformat(),
        }
        response = self._get("fred", "/fred/series/observations", params, "FRED")
        body = _json(response, "FRED")
        if response.status_code != 200:
            message = str(body.get("error_message", "")) if isinstance(body, dict) else ""
            if "api_key" in message:
                raise MissingApiKey(f"FRED refused the API key (HTTP {response.status_code}); check FRED_API_KEY")
            raise BadMarketData(f"FRED refused series {series} (HTTP {response.status_code})")
        observations = body.get("observations") if isinstance(body, dict) else None
        if not isinstance(observations, list):
            raise BadMarketData(f"FRED answered {series} without observations; check the FRED URL")
        values = {}
        try:
            for row in observations:
                if row["value"] != ".":
                    values[pd.Timestamp(row["date"])] = float(row["value"])
        except (KeyError, TypeError, ValueError):
            raise BadMarketData(f"FRED's {series} has an observation that is not a date and a number") from None
        return pd.Series(values, name=series, dtype="float64").sort_index()

    def gdelt_tone(self, first: date, last: date, query: str = GDELT_QUERY) -> pd.Series:
        """GDELT's average tone of each calendar day from ``first`` to ``last``."""
        params = {
            "query": query,
            "mode": "timelinetone",
            "format": "json",
            "startdatetime": f"{first:%Y%m%d}000000",
            "enddatetime": f"{last:%Y%m%d}235959",
        }
        response = self._get("gdelt", "/api/v2/doc/doc", params, "GDELT")
        if response.status_code != 200:
            raise BadMarketData(f"GDELT refused the tone timeline (HTTP {response.status_code})")
        body = _json(response, "GDELT")
        try:
            points = body["timeline"][0]["data"]
            tone = {pd.Timestamp(p["date"][:8]): float(p["value"]) for p in points}
        except (KeyError, IndexError, TypeError, ValueError):
            raise BadMarketData("GDELT answered a tone timeline of an unexpected shape; check the GDELT URL") from None
        return pd.Series(tone, name="tone", dtype="float64").sort_index()


def _json(response: httpx.Response, name: str) -> Any:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "?").split(";")[0]
        raise BadMarketData(f"{name} answered something that is not JSON ({kind}); check its URL") from None
