"""The per-coin engine's work (seed runbook 003), shared by the ``engine`` checklist's steps.

- `resolve_symbols`: ``top20`` / ``top150`` / ``top400`` (CoinGecko's market-cap list mapped to
  the exchange's online products) or ``A-USD,B-USD``; an unknown set or product is bad input.
- `fetch_and_build`: each coin's 1-minute candles (and the higher timeframes its spec needs)
  and daily fundamentals, then its feature file; a coin with too little history (a recent
  listing) or that the exchange stops serving is skipped with the reason, never crashed on.
  With the ``batch`` backend the console fetches only the fundamentals (`fetch_fundamentals`)
  and the Batch children fetch the candles (`console.engine_batch.fetch_on_batch`).
- `measure_costs`: the fee from configuration, spread and slippage walked from the coin's
  order book (`training.families.gbm.costs`); saved as ``costs/<SYMBOL>.json``. A coin whose
  book is gone (delisted since the data step: HTTP 404) is skipped with the reason.
- `fit_encoder`: the shared PCA over every coin's training rows, streamed one coin at a time;
  `fit_encoder_from_moments`: the same PCA from the per-coin sums the Batch children sent.
- `train_local`: the heads on this machine, sequential / parallel / hybrid, with a per-coin
  timeout, retries with backoff and the resume ledger; `train_on_batch`: one array job.
- `write_summary`: ``runs/<stamp>/status.json`` and ``summary/<stamp>/engine_summary.json``.
"""

from __future__ import annotations

import functools
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import httpx

from console.errors import UsageError
from console.resources import Resources

SET_PATTERN = re.compile(r"^top(\d{1,4})$")
KNOWN_SETS = ("top20", "top150", "top400")


def check_symbol_set(value: str) -> str:
    """``top20``, ``top150``, ``top400`` (any ``topN`` up to 1000) or comma-separated symbols."""
    text = str(value).strip()
    match = SET_PATTERN.match(text)
    if match and 1 <= int(match.group(1)) <= 1000:
        return text
    from console.checklist.step import check_symbol

    try:
        return ",".join(check_symbol(s.strip().upper()) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(
            f"unknown symbol set {value!r}: use {', '.join(KNOWN_SETS)} or symbols like BTC-USD,ETH-USD"
        ) from None


def resolve_symbols(resources: Resources, symbol_set: str) -> list[str]:
    """The products ``symbol_set`` names, in market-cap order (`check_symbol_set` for the forms)."""
    urls = resources.market_urls()
    with httpx.Client(timeout=20.0) as http:
        products = {p["id"] for p in _get(http, f"{urls.coinbase.rstrip('/')}/products") if p.get("status") == "online"}
        match = SET_PATTERN.match(symbol_set)
        if not match:
            wanted = [s for s in symbol_set.split(",") if s]
            unknown = [s for s in wanted if s not in products]
            if unknown:
                raise UsageError(f"unknown symbol(s) {', '.join(unknown[:5])}: the exchange lists no such product")
            return wanted
        n = int(match.group(1))
        key = resources.coingecko_key() or ""
        headers = {"x-cg-demo-api-key": key} if key else {}
        out: list[str] = []
        page = 1
        while len(out) < n:
            rows = _get(
                http,
                f"{urls.coingecko.rstrip('/')}/coins/markets",
                params={"vs_currency": "usd", "order": "market_cap_desc", "per_page": 250, "page": page},
                headers=headers,
            )
            if not rows:
                break
            out += [p for p in (f"{r['symbol'].upper()}-USD" for r in rows) if p in products and p not in out]
            page += 1
    if len(out) < n:
        raise UsageError(f"top{n}: the market lists only {len(out)} tradable coins; ask for fewer")
    return out[:n]


def _get(http: httpx.Client, url: str, *, gone_ok: bool = False, **kwargs: Any) -> Any:
    """The JSON at ``url`` (429s waited out); None for a 404 when ``gone_ok``; else an error is bad input."""
    for attempt in range(6):
        response = http.get(url, **kwargs)
        if response.status_code == 404 and gone_ok:
            return None
        if response.status_code == 429:
            time.sleep(float(response.headers.get("Retry-After", "1")) * (attempt + 1) / 2)
            continue
        if response.status_code >= 400:
            raise UsageError(f"{url} answered {response.status_code}; check the market data settings")
        return response.json()
    raise UsageError(f"{url} kept answering 429 (rate limited); try again later")


@dataclass
class CoinOutcome:
    """What happened to one coin in one stage."""

    symbol: str
    state: str
    """``ok``, ``skipped`` (short history, delisted) or ``failed``."""
    why: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def gecko_ids(resources: Resources, symbols: Sequence[str]) -> dict[str, str]:
    """Symbol -> CoinGecko id from the market-cap list (so long-tail coins get their fundamentals)."""
    urls = resources.market_urls()
    key = resources.coingecko_key() or ""
    ids: dict[str, str] = {}
    wanted = set(symbols)
    with httpx.Client(timeout=20.0) as http:
        for page in range(1, 10):
            rows = _get(
                http,
                f"{urls.coingecko.rstrip('/')}/coins/markets",
                params={"vs_currency": "usd", "per_page": 250, "page": page},
                headers={"x-cg-demo-api-key": key} if key else {},
            )
            if not rows:
                break
            ids.update({f"{r['symbol'].upper()}-USD": r["id"] for r in rows})
            if wanted <= set(ids):
                break
    return {s: ids[s] for s in symbols if s in ids}


def fetch_and_build(
    resources: Resources, symbols: Sequence[str], days: int, on_coin: Callable[[CoinOutcome], None]
) -> list[CoinOutcome]:
    """Candles, fundamentals and the feature file of each coin; short histories are skipped."""
    from console.market_data import fetch_range
    from training.data.coinbase import CoinbaseClient, fetch_candles
    from training.data.store import CandleStore
    from training.features.files import build_feature_file, load_inputs
    from training.features.spec import spec_for

    start, end = fetch_range(days, None, None)
    store = CandleStore(resources.paths.data)
    config = resources.feature_config()

    def build(symbol: str) -> CoinOutcome:
        spec = spec_for(symbol, config)
        for tf in spec.timeframes:
            fetch_candles(client, store, symbol, tf, start, end)
        candles, fundamentals = load_inputs(store, spec)
        report = build_feature_file(spec, candles, fundamentals, resources.paths.features)
        return CoinOutcome(symbol, "ok", figures={"rows": report.rows, "features": report.features})

    with CoinbaseClient(resources.market_urls().coinbase) as client:
        return _each_with_fundamentals(resources, symbols, (start, end), build, on_coin)


def fetch_fundamentals(
    resources: Resources, symbols: Sequence[str], window: tuple[int, int], on_coin: Callable[[CoinOutcome], None]
) -> list[CoinOutcome]:
    """Only each coin's daily fundamentals, into the data store: what the console fetches itself
    when Batch children fetch the candles (CoinGecko's key stays here, off the children)."""
    return _each_with_fundamentals(resources, symbols, window, lambda symbol: CoinOutcome(symbol, "ok"), on_coin)


def _each_with_fundamentals(
    resources: Resources,
    symbols: Sequence[str],
    window: tuple[int, int],
    then: Callable[[str], CoinOutcome],
    on_coin: Callable[[CoinOutcome], None],
) -> list[CoinOutcome]:
    """Each coin's fundamentals over ``window`` (and 40 days before, for the daily look-backs),
    then ``then(symbol)``; a coin that fails either is skipped with the reason, never crashed on."""
    from training.data.coingecko import CoinGeckoClient
    from training.data.coingecko import fetch_fundamentals as fetch_one
    from training.data.store import CandleStore
    from training.errors import TrainingError

    store = CandleStore(resources.paths.data)
    ids = {**dict(resources.settings.features.coingecko_ids), **gecko_ids(resources, symbols)}
    start, end = window
    outcomes = []
    with CoinGeckoClient(resources.coingecko_key(), resources.market_urls().coingecko, ids=ids) as gecko:
        for symbol in symbols:
            try:
                fetch_one(gecko, store, symbol, start - 40 * 86400, end)
                outcome = then(symbol)
            except (TrainingError, ValueError, KeyError) as exc:
                outcome = CoinOutcome(symbol, "skipped", f"{type(exc).__name__}: {str(exc)[:200]}")
            outcomes.append(outcome)
            on_coin(outcome)
    return outcomes


def engine_dir(resources: Resources) -> Path:
    return resources.paths.data / "engine"


def measure_costs(
    resources: Resources, symbols: Sequence[str], *, fee_bps: float, notional: float
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each coin's costs from its order book, saved as ``engine/costs/<SYMBOL>.json``: the costs
    section, and the coins skipped because the exchange has no book for them any more (why)."""
    from training.families.gbm.costs import costs_from_book, costs_section

    urls = resources.market_urls()
    folder = engine_dir(resources) / "costs"
    folder.mkdir(parents=True, exist_ok=True)
    measured, gone = [], {}
    with httpx.Client(timeout=20.0) as http:
        for symbol in symbols:
            url = f"{urls.coinbase.rstrip('/')}/products/{symbol}/book"
            book = _get(http, url, params={"level": 2}, gone_ok=True)
            if book is None:
                gone[symbol] = "delisted: the exchange has no order book for it any more (HTTP 404)"
                (folder / f"{symbol}.json").unlink(missing_ok=True)  # an earlier run's figures are not today's
                continue
            m = costs_from_book(symbol, book, fee_bps=fee_bps, notional=notional)
            (folder / f"{symbol}.json").write_text(json.dumps(m.to_dict(), indent=1, sort_keys=True) + "\n")
            measured.append(m)
    return costs_section(measured, {"fee_bps": fee_bps, "spread_bps": 2.0, "slippage_bps": 2.0}), gone


def fit_encoder(resources: Resources, symbols: Sequence[str], params: Mapping[str, Any]) -> tuple[str, int, int]:
    """The shared encoder over ``symbols``' feature files; (hash, components, feature names shared)."""
    from training.dataset import load_symbol_dataset
    from training.families.gbm.encoder import common_names
    from training.families.gbm.encoder import fit_encoder as fit
    from training.families.gbm.params import GbmParams
    from training.features.io import read_feature_meta

    gbm = GbmParams.from_mapping(params)
    paths = [resources.paths.features / f"{s}.parquet" for s in symbols]
    names = common_names(read_feature_meta(p).feature_names for p in paths)
    encoder = fit((load_symbol_dataset(p, gbm.split) for p in paths), names, gbm.n_components)
    encoder.save(engine_dir(resources) / "encoder")
    return encoder.hash, encoder.n_components, len(names)


def fit_encoder_from_moments(
    resources: Resources, symbols: Sequence[str], params: Mapping[str, Any], folder: Path
) -> tuple[str, int, int]:
    """The shared encoder from the moments the Batch children sent (``folder/<SYMBOL>.npz``, the
    run's own): the same PCA `fit_encoder` gives over the same rows, without the rows coming here."""
    from training.families.gbm.encoder import common_names, encoder_from_moments
    from training.families.gbm.moments import CoinMoments
    from training.families.gbm.params import GbmParams

    gbm = GbmParams.from_mapping(params)
    moments = [CoinMoments.load(Path(folder) / f"{s}.npz") for s in symbols]  # d x d floats each: all fit
    names = common_names(m.feature_names for m in moments)
    encoder = encoder_from_moments(moments, names, gbm.n_components)
    encoder.save(engine_dir(resources) / "encoder")
    return encoder.hash, encoder.n_components, len(names)


def train_local(
    resources: Resources,
    symbols: Sequence[str],
    params: Mapping[str, Any],
    costs: Mapping[str, Any],
    *,
    max_concurrent: int,
    timeout_s: float,
    retries: int,
    force: bool,
    on_coin: Callable[[CoinOutcome], None],
    on_start: Callable[[str], None] = lambda symbol: None,
    on_done: Callable[[CoinOutcome], None] = lambda outcome: None,
) -> list[CoinOutcome]:
    """The heads on this machine; the resume ledger (``engine/ledger.json``) skips finished coins.

    ``on_start`` and ``on_done`` are called in the worker threads as an attempt at a coin begins
    and as a head is trained (so a screen sees coins finish in the order they do); ``on_coin``
    once per coin with its outcome, in the order the coins were given."""
    from training.families.base import FitJob
    from training.families.run import train_unit

    ledger_path = engine_dir(resources) / "ledger.json"
    ledger: dict[str, Any] = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    encoder = engine_dir(resources) / "encoder"
    encoder_hash = json.loads((encoder / "encoder.json").read_text())["hash"]

    def one(symbol: str) -> CoinOutcome:
        on_start(symbol)
        began = time.monotonic()
        job = FitJob(
            "gbm",
            symbol,
            {"features": resources.paths.features / f"{symbol}.parquet", "encoder": encoder},
            engine_dir(resources) / "work" / symbol,
            params=dict(params),
            costs=dict(costs),
        )
        outcome = train_unit(job, resources.paths.models, pin=encoder_hash)
        rel = outcome.published.folder.relative_to(resources.paths.models).as_posix()
        done = CoinOutcome(
            symbol,
            "ok",
            figures={
                "model_dir": rel,
                "passed": outcome.verdict.passed,
                "reasons": list(outcome.verdict.reasons),
                "seconds": round(time.monotonic() - began, 3),
            },
        )
        on_done(done)
        return done

    outcomes = []
    todo = [s for s in symbols if force or ledger.get(s, {}).get("encoder_hash") != encoder_hash]
    for s in symbols:
        if s not in todo:
            outcomes.append(CoinOutcome(s, "ok", "finished in an earlier run (resume ledger)", ledger[s]["figures"]))
            on_done(outcomes[-1])
            on_coin(outcomes[-1])
    with ThreadPoolExecutor(max_workers=max(1, max_concurrent)) as pool:
        pending = {s: pool.submit(one, s) for s in todo}
        for symbol, future in pending.items():
            outcome = _with_retries(functools.partial(pool.submit, one, symbol), future, timeout_s, retries, symbol)
            if outcome.state == "ok":
                ledger[symbol] = {"encoder_hash": encoder_hash, "figures": outcome.figures}
                ledger_path.write_text(json.dumps(ledger, indent=1, sort_keys=True))
            outcomes.append(outcome)
            on_coin(outcome)
    return outcomes


def _with_retries(resubmit: Callable[[], Any], future: Any, timeout_s: float, retries: int, symbol: str) -> CoinOutcome:
    from training.errors import TrainingError, TrainingInputError

    for attempt in range(retries + 1):
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            why = f"timed out after {timeout_s:g} s"
        except TrainingInputError as exc:  # bad input does not get better with a retry
            return CoinOutcome(symbol, "skipped", str(exc)[:300])
        except TrainingError as exc:
            why = str(exc)[:300]
        if attempt < retries:
            time.sleep(min(30.0, 2.0**attempt))
            future = resubmit()
    return CoinOutcome(symbol, "failed", why)


def write_summary(resources: Resources, run_id: str, stamp: str, table: Mapping[str, Any]) -> Path:
    """``runs/<stamp>/status.json`` and ``summary/<stamp>/engine_summary.json`` under the models root."""
    root = resources.paths.models
    for rel in (f"runs/{stamp}/status.json", f"summary/{stamp}/engine_summary.json"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"run_id": run_id, "stamp": stamp, **table}, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    return root / f"summary/{stamp}/engine_summary.json"
