"""Coinbase Exchange candles: a client that pages any range, and a resumable fetch into the store.

The exchange answers at most 300 candles a request, newest first, as rows
``[time, low, high, open, close, volume]``, and has no candle for a minute without
trades. `CoinbaseClient` keeps a few requests in flight under a client-side rate limit,
waits out HTTP 429 for as long as ``Retry-After`` says, retries 5xx and network errors
with exponential backoff, and refuses anything that is not candle JSON.

`fetch_candles` splits a range into 300-candle windows on a fixed grid, skips the ranges
the store's coverage file says were already fetched (so an interrupted fetch resumes
where it stopped), and saves finished windows every few hundred requests and on the way
out, even when interrupted.

Errors: `MarketDataError` (exit 1) when the exchange keeps failing, `BadMarketData`
(exit 2) for garbage answers, unknown products and bad ranges.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable

import httpx
import numpy as np
import pandas as pd

from training.data.market import check_range, check_symbol, check_timeframe, iso, utc_index
from training.data.store import CandleStore, Interval, subtract_intervals
from training.errors import BadMarketData, MarketDataError, TrainingError

DEFAULT_URL = "https://api.exchange.coinbase.com"
MAX_CANDLES = 300


class FetchInterrupted(TrainingError):
    """The fetch was cancelled; what finished is saved and a rerun resumes from there."""

    exit_code = 130


class RateLimiter:
    """Spaces requests ``1/rate`` seconds apart across threads; `pause` holds everyone back."""

    def __init__(self, rate_per_s: float) -> None:
        self.interval = 1.0 / float(rate_per_s)
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


class CoinbaseClient:
    """Candles from a Coinbase Exchange compatible API (the real one or the sandbox simulator)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        max_in_flight: int = 3,
        requests_per_s: float = 8.0,
        timeout_s: float = 15.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_wait_s: float = 60.0,
        source_address: str | None = None,
    ) -> None:
        """``source_address``: the local address connections leave from (a host with several,
        e.g. a sandbox Batch child given its own loopback address so the exchange counts its
        rate limit as another host's); None for the system's choice."""
        self.base_url = base_url.rstrip("/")
        self.max_in_flight = max(1, int(max_in_flight))
        self.limiter = RateLimiter(requests_per_s)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.requests_made = 0
        self._count_lock = threading.Lock()
        self._http = httpx.Client(
            timeout=timeout_s,
            headers={"User-Agent": "retrain-console", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=self.max_in_flight + 1),
            transport=httpx.HTTPTransport(local_address=source_address) if source_address else None,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "CoinbaseClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def window(self, symbol: str, granularity: int, start: int, end: int) -> np.ndarray:
        """Candles with open time in [start, end) as an (n, 6) array, oldest first:
        columns time, open, high, low, close, volume. At most 300 candles."""
        params = {"granularity": str(granularity), "start": iso(start), "end": iso(end)}
        url = f"{self.base_url}/products/{symbol}/candles"
        failures = 0
        waits = 0
        while True:
            self.limiter.acquire()
            try:
                with self._count_lock:
                    self.requests_made += 1
                response = self._http.get(url, params=params)
            except httpx.HTTPError as exc:
                failures += 1
                if failures > self.max_retries:
                    raise MarketDataError(
                        f"Coinbase at {self.base_url} is unreachable ({type(exc).__name__}) after "
                        f"{self.max_retries} retries; check the network or the sandbox (`console sandbox status`)"
                    ) from exc
                time.sleep(self.backoff_s * 2 ** (failures - 1))
                continue
            status = response.status_code
            if status == 429:
                waits += 1
                if waits > 50:
                    raise MarketDataError(
                        "Coinbase kept answering 429 (rate limited); try again later with fewer requests in flight"
                    )
                delay = min(self.max_wait_s, _retry_after(response, default=1.0))
                self.limiter.pause(delay)
                time.sleep(delay)
                continue
            if status >= 500:
                failures += 1
                if failures > self.max_retries:
                    raise MarketDataError(
                        f"Coinbase answered HTTP {status} for {symbol} {iso(start)} after {self.max_retries} retries; try again later"
                    )
                time.sleep(self.backoff_s * 2 ** (failures - 1))
                continue
            if status == 404:
                raise BadMarketData(f"Coinbase does not know the product {symbol} (HTTP 404); check the symbol")
            if status != 200:
                raise BadMarketData(
                    f"Coinbase refused the candles request for {symbol} (HTTP {status}: {_message(response)})"
                )
            return _parse_rows(response, symbol, start, end)


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", default)))
    except ValueError:
        return default


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and "message" in body:
            return str(body["message"])[:200]
    except ValueError:
        pass
    return response.text[:80].replace("\n", " ")


def _parse_rows(response: httpx.Response, symbol: str, start: int, end: int) -> np.ndarray:
    kind = response.headers.get("content-type", "?").split(";")[0]
    try:
        rows = response.json()
        arr = np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        raise BadMarketData(
            f"Coinbase answered something that is not candle JSON for {symbol} ({kind}); check the exchange URL"
        ) from None
    if arr.size == 0:
        return np.empty((0, 6))
    if arr.ndim != 2 or arr.shape[1] != 6 or not np.isfinite(arr).all():
        raise BadMarketData(
            f"Coinbase answered malformed candle rows for {symbol} (expected [time, low, high, open, close, volume])"
        )
    # [time, low, high, open, close, volume] newest first -> time, open, high, low, close, volume oldest first
    out = arr[::-1][:, [0, 3, 2, 1, 4, 5]]
    out = out[(out[:, 0] >= start) & (out[:, 0] < end)]
    if (out[:, 1:5] <= 0).any() or (out[:, 5] < 0).any() or (out[:, 2] < out[:, 3]).any():
        raise BadMarketData(
            f"Coinbase answered impossible candles for {symbol} (non-positive prices or high below low)"
        )
    return out


@dataclass(frozen=True)
class FetchReport:
    """What one fetch of one symbol and timeframe did."""

    symbol: str
    timeframe: str
    start: int
    end: int
    windows: int
    """300-candle windows in the range."""
    skipped: int
    """Windows already fetched earlier (resume)."""
    candles: int
    """Candles received in this fetch."""
    added: int
    """Rows new to the store."""

    def summary(self) -> str:
        resumed = f", {self.skipped} windows already fetched" if self.skipped else ""
        return (
            f"{self.symbol} {self.timeframe}: {self.candles} candles in {self.windows - self.skipped} requests{resumed}"
        )


ProgressFn = Callable[[int, int], None]


def plan_windows(granularity: int, start: int, end: int, covered: list[Interval]) -> tuple[list[Interval], int]:
    """Windows of at most 300 candles on a fixed grid over [start, end) not yet covered,
    and how many windows the whole range has."""
    span = granularity * MAX_CANDLES
    windows: list[Interval] = []
    total = 0
    for a in range(start // span * span, end, span):
        w = (max(a, start), min(a + span, end))
        total += 1
        for piece in subtract_intervals(w, covered):
            windows.append(piece)
    return windows, total


def fetch_candles(
    client: CoinbaseClient,
    store: CandleStore,
    symbol: str,
    timeframe: str,
    start: int,
    end: int,
    *,
    progress: ProgressFn | None = None,
    cancelled: threading.Event | None = None,
    save_every: int = 200,
    now: float | None = None,
) -> FetchReport:
    """Fetch [start, end) into the store, resuming: ranges already covered are not asked again.

    Only closed candles are asked for (``end`` is clipped to the current candle's start).
    Finished windows are saved every ``save_every`` windows and on the way out, so an
    interruption (``cancelled`` set, an error, Ctrl-C) loses nothing that arrived.
    """
    check_symbol(symbol)
    g = check_timeframe(timeframe)
    start = int(start) // g * g
    current = int(time.time() if now is None else now) // g * g
    end = min(-(-int(end) // g) * g, current)
    check_range(start, end)
    todo, total = plan_windows(g, start, end, store.coverage(symbol, timeframe))
    skipped = total - len({a // (g * MAX_CANDLES) for a, _ in todo})
    pending_rows: list[np.ndarray] = []
    pending_cover: list[Interval] = []
    received = added = done = 0

    def flush() -> None:
        nonlocal added
        if not pending_cover:
            return
        rows = np.concatenate(pending_rows) if pending_rows else np.empty((0, 6))
        frame = pd.DataFrame(rows[:, 1:], columns=["open", "high", "low", "close", "volume"])
        frame.insert(0, "timestamp", utc_index(rows[:, 0].astype(np.int64)))
        added += store.merge_candles(symbol, timeframe, frame, covered=list(pending_cover))
        pending_rows.clear()
        pending_cover.clear()

    pool = ThreadPoolExecutor(max_workers=client.max_in_flight, thread_name_prefix=f"fetch-{symbol}")
    queue = list(reversed(todo))
    running: dict[Future, Interval] = {}
    try:
        while queue or running:
            while queue and len(running) < client.max_in_flight:
                if cancelled is not None and cancelled.is_set():
                    raise FetchInterrupted(f"fetch of {symbol} {timeframe} was cancelled; rerun to resume")
                w = queue.pop()
                running[pool.submit(client.window, symbol, g, w[0], w[1])] = w
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                w = running.pop(fut)
                rows = fut.result()  # raises the window's error
                pending_rows.append(rows)
                pending_cover.append(w)
                received += len(rows)
                done += 1
                if progress is not None:
                    progress(skipped + done, total)
            if len(pending_cover) >= save_every:
                flush()
    finally:
        # Keep what arrived; let requests already in flight finish (they are few).
        for fut, w in list(running.items()):
            try:
                rows = fut.result()
                pending_rows.append(rows)
                pending_cover.append(w)
                received += len(rows)
            except Exception:  # noqa: BLE001 - the first error is the one reported
                pass
        pool.shutdown(wait=True, cancel_futures=True)
        flush()
    return FetchReport(symbol, timeframe, start, end, total, skipped, received, added)
