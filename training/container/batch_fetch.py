"""A Batch child's ``fetch`` task: its own coins' candles, feature files and encoder moments.

Past one machine the exchange's rate limit is the wall: one host backfilling 400 coins x
a year of one-minute candles asks ~700,000 times, about a day at 8 requests a second.
Coinbase counts that limit per address, so the engine spreads the fetch over the array:
each child (its own host) fetches only its shard's candles. It runs as
``python -m training.container batch-fetch``; the manifest is the training one
(`training.container.batch`) with ``"task": "fetch"`` and these ``params``::

    market     {"coinbase": "https://..."}   where the candles come from
    window     {"start": unix s, "end": unix s}   the same window for every child
    features   the feature configuration (`training.features.spec.FeatureConfig.from_mapping`)
    split      the engine's split (`training.families.gbm.params`): the training rows the
               encoder moments are taken over

and a per-coin ``fundamentals`` input the console fetched (CoinGecko's key stays with the
console: the manifest and the child's environment carry no market key; the child's job token
is checked against the manifest's hash, as every child's is). For each coin the
child fetches the candles its spec needs (connections leave from ``RC_SOURCE_ADDRESS`` when
set: the sandbox gives each child its own loopback address, so the simulator counts its
rate limit as another host's), builds the feature file with the same builder as the
console, and computes its encoder moments (`training.families.gbm.moments`). It uploads
``features/<COIN>.parquet`` and ``moments/<COIN>.npz`` under ``out``, and records each
file's sha256 in ``results/<index>.json`` (written last). A coin with too short a history
or that the exchange stopped serving is ``skipped`` with the reason; the others go on. An
exchange that keeps failing (network, 5xx, 429s past their retries) would fail every coin
alike, so it ends the child instead (exit 1, an ``error`` event saying so): the job fails with
that reason rather than reporting a shard of "skipped" coins.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from training.container.batch import BadManifest, Events, S3Place, content_sha256, run_child
from training.errors import MarketDataError, TrainingError

TASK = "fetch"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.container batch-fetch``; exit codes as ``batch-child``'s."""
    return run_child(TASK, fetch_shard)


def fetch_settings(manifest: Mapping[str, Any]) -> tuple[str, int, int, Any, Any]:
    """(coinbase URL, start, end, `FeatureConfig`, split) from a fetch manifest, parsed once;
    bad ones refused (exit 2) before any coin is fetched."""
    params = manifest.get("params")
    if not isinstance(params, dict):
        raise BadManifest("the fetch manifest has no params")
    url = str((params.get("market") or {}).get("coinbase") or "")
    if not url.startswith(("http://", "https://")):
        raise BadManifest(f"the fetch manifest's market URL {url[:60]!r} is not http(s)")
    window = params.get("window") or {}
    try:
        start, end = int(window["start"]), int(window["end"])
    except (KeyError, TypeError, ValueError):
        raise BadManifest("the fetch manifest's window needs whole-second start and end") from None
    if not 0 < start < end:
        raise BadManifest(f"the fetch manifest's window {start}..{end} is empty")
    features, split = params.get("features") or {}, params.get("split") or {}
    if not isinstance(features, dict) or not isinstance(split, dict):
        raise BadManifest("the fetch manifest's features and split must be objects")
    from training.families.gbm.params import GbmParams
    from training.features.spec import FeatureConfig

    try:  # refused here, once (exit 2), not found again at every coin after its candles
        config = FeatureConfig.from_mapping(dict(features))
        parsed_split = GbmParams.from_mapping({"split": dict(split)}).split
    except (TrainingError, ValueError, TypeError) as exc:
        raise BadManifest(f"the fetch manifest's settings are not valid: {str(exc)[:200]}") from None
    return url, start, end, config, parsed_split


def fetch_shard(place: S3Place, manifest: Mapping[str, Any], index: int, units: list[str], here: Path) -> None:
    """Every coin of this child's shard, then ``results/<index>.json`` (last)."""
    from training.data.coinbase import CoinbaseClient

    url, start, end, config, split = fetch_settings(manifest)
    out_url = str(manifest["out"])
    event = Events(place, f"{out_url}events/{index}.jsonl", index)
    event("start", units=units, task="fetch")
    rows = []
    source = os.environ.get("RC_SOURCE_ADDRESS") or None
    with CoinbaseClient(url, source_address=source) as client:
        for unit in units:
            began, asked = time.monotonic(), client.requests_made
            try:
                row = fetch_one(place, manifest, unit, client, (start, end), config, split, here)
            except MarketDataError as exc:  # not this coin's fault: the next would fail the same way
                event("error", unit, why=str(exc)[:300])
                raise
            except (TrainingError, ValueError, KeyError) as exc:
                row = {"unit": unit, "state": "skipped", "why": f"{type(exc).__name__}: {str(exc)[:200]}"}
            row.update(
                seconds=round(time.monotonic() - began, 3), requests=client.requests_made - asked, host=source or ""
            )
            rows.append(row)
            event("done", unit, state=row["state"], why=row.get("why", ""), requests=row["requests"])
    results = {"index": index, "task": TASK, "units": rows, "source": source or "",
               "attempt": os.environ.get("AWS_BATCH_JOB_ATTEMPT", "1")}  # fmt: skip
    place.put_bytes(f"{out_url}results/{index}.json", json.dumps(results, indent=1).encode())


def fetch_one(
    place: S3Place,
    manifest: Mapping[str, Any],
    unit: str,
    client: Any,
    window: tuple[int, int],
    config: Any,
    split: Any,
    here: Path,
) -> dict[str, Any]:
    """One coin: candles, fundamentals, feature file, moments, both uploaded; its result row."""
    from training.data.coinbase import fetch_candles
    from training.data.store import CandleStore
    from training.dataset import load_symbol_dataset
    from training.families.gbm.moments import coin_moments
    from training.features.files import build_feature_file, load_inputs
    from training.features.spec import spec_for
    from training.registry import check_symbol

    check_symbol(unit)  # before it names a file or a key
    store = CandleStore(here / "data")
    where = (manifest.get("inputs") or {}).get("fundamentals")
    if isinstance(where, dict):
        place.download(f"{where['prefix']}{unit}.parquet", store.fundamentals_path(unit))
    spec = spec_for(unit, config)
    for timeframe in spec.timeframes:
        fetch_candles(client, store, unit, timeframe, *window)
    candles, fundamentals = load_inputs(store, spec)
    report = build_feature_file(spec, candles, fundamentals, here / "features")
    path = here / "features" / f"{unit}.parquet"
    moments = here / "moments" / f"{unit}.npz"
    coin_moments(load_symbol_dataset(path, split)).save(moments)
    out_url = str(manifest["out"])
    if path.is_dir():  # a feature file may be a folder of parts with its manifest
        place.upload_folder(path, f"{out_url}features/{unit}.parquet/", last="_manifest.json")
    else:
        place.put_bytes(f"{out_url}features/{unit}.parquet", path.read_bytes())
    place.put_bytes(f"{out_url}moments/{unit}.npz", moments.read_bytes())
    return {
        "unit": unit,
        "state": "succeeded",
        "rows": report.rows,
        "features": report.features,
        "sha256": {"features": content_sha256(path), "moments": content_sha256(moments)},
    }
