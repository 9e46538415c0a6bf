"""The sandbox market simulator's HTTP server on 127.0.0.1: it speaks the Coinbase Exchange
candles API and the CoinGecko market-chart API over the price process of `remote.sandbox.market`,
so the real fetch code runs.

Endpoints (the shapes the real services use)::

    GET /products/{product_id}/candles?granularity=60|300|900|3600&start=&end=
        -> [[time, low, high, open, close, volume], ...] newest first, at most 300;
           start/end are ISO 8601 or unix seconds; candles with start <= time < end;
           a minute without trades has no candle; 429 + Retry-After past the rate.
           The rate (``rate_limit_per_s``) is counted per client address, as Coinbase counts
           it per IP: a client bound to its own loopback address (127.x.y.z; every sandbox
           Batch child is given one) is its own host with its own allowance.
    GET /api/v3/coins/{id}/market_chart/range?vs_currency=usd&from=&to=
        -> {"prices": [[ms, v]], "market_caps": [[ms, v]], "total_volumes": [[ms, v]]}
           hourly points for ranges up to 90 days, daily (00:00 UTC) beyond;
    GET /api/v3/coins/{id}
        -> {"id", "symbol", "name", "market_data": {"current_price", "market_cap",
            "ath", "ath_date"}} (each keyed by "usd")
    CoinGecko requests carry the key in ``x-cg-pro-api-key`` or ``x-cg-demo-api-key``;
    with ``require_api_key`` set, a missing or wrong key is answered 401.

More APIs plug in without touching this module: `EXTRA_APIS` lists ``module:Class`` entries;
each class is built with the simulator and answers ``(parts, query, headers)`` with
``(status, headers, json body)`` or None when the path is not its own (`MarketApi`); a body of
``bytes`` is sent as it is, with the ``Content-Type`` its headers give (CSV, plain text).
`remote.sandbox.daily` serves the investment system's daily sources (Stooq, FRED, GDELT).
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np

from remote.sandbox.market import (
    _BY_GECKO_ID,
    COINS,
    DAY,
    GRANULARITIES,
    MAX_CANDLES,
    _check_mode,
    aggregate,
    all_time_high,
    fundamentals_at,
    generate_minutes,
)

Answer = tuple[int, dict[str, str], Any]


class MarketApi(Protocol):
    """A further API the simulator serves (daily bars, order books, ...)."""

    def answer(self, parts: list[str], query: dict[str, str], headers: Any) -> Answer | None: ...


EXTRA_APIS: tuple[str, ...] = ("remote.sandbox.universe:MarketUniverseApi", "remote.sandbox.daily:DailySourcesApi")
"""``module:Class`` of each further API; the class is called with the `MarketSimulator`. They are
asked before the built-in routes (each answers only its own paths), so ``coins/markets`` is not
taken for a coin named "markets"."""


class _TokenBucket:
    """Allows ``rate`` requests a second with a burst of ``rate``; thread-safe."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self.tokens = float(rate)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0.0 when allowed, else the seconds to wait."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


@dataclass
class _Fault:
    status: int
    body: bytes
    content_type: str
    path_prefix: str
    times: int


@dataclass
class RequestRecord:
    """One request the simulator answered (for tests and the sandbox status pane)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    client: str = "127.0.0.1"
    """The address the request came from: the host whose rate limit it counted against."""


class MarketSimulator:
    """The market simulator server. ``start()`` serves in a background thread on ``url``."""

    def __init__(
        self,
        *,
        seed: int = 7,
        mode: str = "structured",
        rate_limit_per_s: float = 10.0,
        require_api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock_shift_s: int = 0,
    ) -> None:
        self.seed = int(seed)
        if int(clock_shift_s) % 60:
            raise ValueError("clock_shift_s must be a whole number of minutes")
        self.clock_shift_s = int(clock_shift_s)
        """Wall time minus market time: the minute served as wall time T is the price
        process's minute ``T - clock_shift_s`` (`remote.sandbox.market.clock_shift_for`)."""
        self.mode = _check_mode(mode)
        self.rate_limit_per_s = float(rate_limit_per_s)
        self._require_key = require_api_key
        self._host = host
        self._port = port
        self._buckets: dict[tuple[str, str], _TokenBucket] = {}
        """One bucket per (API, client address): the rate limit is per host, as Coinbase's is per
        address, so Batch children that each come from their own address each get the full rate."""
        self._request = threading.local()
        self._faults: list[_Fault] = []
        self.delisted: set[str] = set()
        """Products the exchange has delisted (`delist`): no candles, no book, ``status: delisted``."""
        self._lock = threading.Lock()
        self.requests: list[RequestRecord] = []
        """Every request answered, in order."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.clock = time.time
        """Where "now" comes from (the wall clock; tests may pin it)."""
        self.apis: list[MarketApi] = [_load_api(target, self) for target in EXTRA_APIS]
        """Further APIs, asked in order before the built-in ones (`EXTRA_APIS`)."""

    # -- lifecycle
    def start(self) -> "MarketSimulator":
        """Bind and serve in a daemon thread; returns self."""
        handler = type("Handler", (_Handler,), {"sim": self})
        self._server = ThreadingHTTPServer((self._host, self._port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="market-sim", daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("market simulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "MarketSimulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test hooks
    def inject_fault(
        self,
        status: int,
        *,
        times: int = 1,
        body: bytes = b"",
        content_type: str = "application/json",
        path_prefix: str = "/",
    ) -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with this status and body."""
        with self._lock:
            self._faults.append(_Fault(status, body, content_type, path_prefix, times))

    def delist(self, product_id: str) -> None:
        """The exchange delists ``product_id`` now (a coin that goes away in the middle of a run)."""
        with self._lock:
            self.delisted.add(product_id)

    def count(self, path_prefix: str = "/", status: int | None = None) -> int:
        """How many requests under ``path_prefix`` were answered (with ``status``, if given)."""
        with self._lock:
            return sum(
                1 for r in self.requests if r.path.startswith(path_prefix) and (status is None or r.status == status)
            )

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    # -- answers: (status, headers, json body)
    def answer(self, path: str, query: dict[str, str], headers: Any) -> tuple[int, dict[str, str], Any]:
        parts = [p for p in path.split("/") if p]
        if parts[:3] == ["api", "v3", "coins"]:
            denied = self._check_key(headers, query)
            if denied:
                return denied
        for api in self.apis:
            answered = api.answer(parts, query, headers)
            if answered is not None:
                return answered
        if len(parts) == 3 and parts[0] == "products" and parts[2] == "candles":
            return self._limited("coinbase") or self._candles(parts[1], query)
        if len(parts) >= 4 and parts[:3] == ["api", "v3", "coins"]:
            denied = self._check_key(headers, query)
            if denied:
                return denied
            limited = self._limited("coingecko")
            if limited:
                return limited
            if len(parts) == 4:
                return self._coin(parts[3])
            if len(parts) == 6 and parts[4:] == ["market_chart", "range"]:
                return self._market_chart(parts[3], query)
        if parts == ["api", "v3", "ping"]:
            return 200, {}, {"gecko_says": "(V3) To the Moon!"}
        return 404, {}, {"message": "NotFound"}

    def current_client(self) -> str:
        """The address of the request this thread is answering (``127.0.0.1`` outside one)."""
        return str(getattr(self._request, "client", "127.0.0.1"))

    def rate_wait(self, api: str) -> float:
        """0.0 when the current request is within ``api``'s rate for its host, else the seconds to wait."""
        key = (api, self.current_client())
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _TokenBucket(self.rate_limit_per_s)
        return bucket.take()

    def _limited(self, api: str) -> tuple[int, dict[str, str], Any] | None:
        wait = self.rate_wait(api)
        if wait <= 0:
            return None
        retry = max(1, int(np.ceil(wait)))
        if api == "coinbase":
            return 429, {"Retry-After": str(retry)}, {"message": "Public rate limit exceeded"}
        return 429, {"Retry-After": str(retry)}, {"status": {"error_code": 429, "error_message": "rate limited"}}

    def _check_key(self, headers: Any, query: dict[str, str]) -> tuple[int, dict[str, str], Any] | None:
        if self._require_key is None:
            return None
        given = (
            headers.get("x-cg-pro-api-key")
            or headers.get("x-cg-demo-api-key")
            or query.get("x_cg_pro_api_key")
            or query.get("x_cg_demo_api_key")
        )
        if given == self._require_key:
            return None
        return (
            401,
            {},
            {"status": {"error_code": 401, "error_message": "You need a valid API key to access this endpoint"}},
        )

    def _candles(self, product_id: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if product_id not in COINS:
            return 404, {}, {"message": "NotFound"}
        try:
            g = int(query.get("granularity", "60"))
        except ValueError:
            g = -1
        if g not in GRANULARITIES:
            return 400, {}, {"message": "Unsupported granularity"}
        now = int(self.clock())
        last_closed = now // 60 * 60 - 60  # the newest minute that has closed
        try:
            if "start" in query or "end" in query:
                start = _parse_time(query["start"])
                end = _parse_time(query["end"])
            else:
                end = last_closed + 60
                start = (end // g - MAX_CANDLES) * g
        except (KeyError, ValueError):
            return 400, {}, {"message": "start and end must both be ISO 8601 or unix times"}
        if end <= start:
            return 400, {}, {"message": "start must be before end"}
        if (end - start) / g > MAX_CANDLES:
            return (
                400,
                {},
                {
                    "message": "granularity too small for the requested time range. Count of aggregations requested exceeds 300"
                },
            )
        from remote.sandbox.universe import listed_since

        shift = self.clock_shift_s
        first = max(start // g * g, listed_since(product_id, now))  # a recent listing has no older candles
        minutes = generate_minutes(
            product_id, first - shift, min(end, last_closed + 60) - shift, seed=self.seed, mode=self.mode
        )
        minutes["time"] = minutes["time"] + shift  # wall times, bucketed on the wall clock's hours
        data = aggregate(minutes, g)
        keep = (data["time"] >= start) & (data["time"] < end)
        rows = [
            [int(t), float(lo), float(hi), float(op), float(cl), float(v)]
            for t, lo, hi, op, cl, v in zip(
                data["time"][keep],
                data["low"][keep],
                data["high"][keep],
                data["open"][keep],
                data["close"][keep],
                data["volume"][keep],
                strict=True,
            )
        ]
        rows.reverse()
        return 200, {}, rows

    def _coin(self, coin_id: str) -> tuple[int, dict[str, str], Any]:
        coin = _BY_GECKO_ID.get(coin_id)
        if coin is None:
            return 404, {}, {"error": "coin not found"}
        now = int(self.clock()) - self.clock_shift_s
        ath, ath_time = all_time_high(coin.product_id, now, seed=self.seed, mode=self.mode)
        current = fundamentals_at(coin.product_id, np.array([now // 60 * 60]), seed=self.seed, mode=self.mode)
        iso = datetime.fromtimestamp(ath_time + self.clock_shift_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return (
            200,
            {},
            {
                "id": coin.coingecko_id,
                "symbol": coin.product_id.split("-")[0].lower(),
                "name": coin.name,
                "market_data": {
                    "current_price": {"usd": float(current["price"][0])},
                    "market_cap": {"usd": float(current["market_cap"][0])},
                    "total_volume": {"usd": float(current["total_volume"][0])},
                    "ath": {"usd": ath},
                    "ath_date": {"usd": iso},
                },
            },
        )

    def _market_chart(self, coin_id: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        coin = _BY_GECKO_ID.get(coin_id)
        if coin is None:
            return 404, {}, {"error": "coin not found"}
        if query.get("vs_currency", "").lower() != "usd":
            return 400, {}, {"error": "invalid vs_currency"}
        try:
            start = int(float(query["from"]))
            end = min(int(float(query["to"])), int(self.clock()))
        except (KeyError, ValueError):
            return 400, {}, {"error": "from and to must be unix seconds"}
        if end < start:
            return 200, {}, {"prices": [], "market_caps": [], "total_volumes": []}
        step = 3600 if end - start <= 90 * DAY else DAY
        times = np.arange(-(-start // step) * step, end + 1, step, dtype=np.int64)
        values = fundamentals_at(coin.product_id, times - self.clock_shift_s, seed=self.seed, mode=self.mode)
        ms = (times * 1000).tolist()
        return (
            200,
            {},
            {
                "prices": [[t, float(v)] for t, v in zip(ms, values["price"], strict=True)],
                "market_caps": [[t, float(v)] for t, v in zip(ms, values["market_cap"], strict=True)],
                "total_volumes": [[t, float(v)] for t, v in zip(ms, values["total_volume"], strict=True)],
            },
        )


def _load_api(target: str, sim: "MarketSimulator") -> MarketApi:
    module, _, name = target.partition(":")
    api: MarketApi = getattr(importlib.import_module(module), name)(sim)
    return api


def _parse_time(text: str) -> int:
    text = text.strip()
    try:
        return int(float(text))
    except ValueError:
        pass
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return int(stamp.timestamp())


class _Handler(BaseHTTPRequestHandler):
    sim: MarketSimulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet server
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        client = str(self.client_address[0])
        self.sim._request.client = client  # one thread per connection: the rate limit's host
        fault = self.sim._take_fault(split.path)
        if fault is not None:
            self._send(fault.status, {}, fault.body, fault.content_type)
            status = fault.status
        else:
            try:
                status, headers, payload = self.sim.answer(split.path, query, self.headers)
            except Exception as exc:  # a bug in the simulator must not kill the server
                status, headers, payload = 500, {}, {"message": f"simulator error: {type(exc).__name__}"}
            if isinstance(payload, bytes):
                rest = {k: v for k, v in headers.items() if k != "Content-Type"}
                self._send(status, rest, payload, headers.get("Content-Type", "text/plain"))
            else:
                self._send(status, headers, json.dumps(payload).encode(), "application/json")
        logged_query = {k: v for k, v in query.items() if "key" not in k}
        self.sim._record(RequestRecord("GET", split.path, logged_query, status, client))

    def _send(self, status: int, headers: dict[str, str], body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
