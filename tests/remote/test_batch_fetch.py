"""Past one machine the exchange's rate limit is per host: each Batch child fetches its own coins'
candles from its own address, builds their feature files and sends back only its coins' encoder
moments. Driven for real: boto3 over HTTP to the sandbox's moto, whose Batch front runs each child
as a process; the candles come over HTTP from a market simulator that counts each address apart."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from remote.backends.base import BackendContext, JobPhase, JobSpec, RunPlan
from remote.backends.batch import BatchBackend
from remote.sandbox.market_server import MarketSimulator
from tests.remote.sandbox_fixtures import sandbox  # noqa: F401
from training.data.coingecko import CoinGeckoClient, fetch_fundamentals
from training.data.store import CandleStore
from training.families.gbm.encoder import common_names, encoder_from_moments
from training.families.gbm.moments import CoinMoments

pytestmark = pytest.mark.slow
COINS = ("BTC-USD", "ETH-USD", "SOL-USD", "AAB-USD")
SPLIT = {"horizon": 5, "longest_feature_window": 200}
KEY = "CG-" + secrets.token_urlsafe(18)


def _fetch_job(sandbox: Any, tmp_path: Path, sim: MarketSimulator, coins: tuple[str, ...]) -> tuple[BatchBackend, Any]:
    run_id = f"fetch-{time.monotonic_ns()}"
    end = int(time.time()) // 60 * 60
    start = end - 3 * 86400
    store = CandleStore(tmp_path / "data")
    # The console's part: the fundamentals, with CoinGecko's key (never sent to the children).
    with CoinGeckoClient(KEY, f"{sim.url}/api/v3") as gecko:
        for coin in coins:
            if coin != "AAB-USD":  # none staged for it: its child must skip it, not crash
                fetch_fundamentals(gecko, store, coin, start - 40 * 86400, end)
    backend = BatchBackend(BackendContext(run_id=run_id, aws=sandbox.aws_target, work_dir=tmp_path / "work",
                                          options={"bucket": run_id.lower(), "poll_s": 0.3}))  # fmt: skip
    inputs: dict[str, Path | str] = {"fundamentals": tmp_path / "data" / "fundamentals"}
    backend.prepare(RunPlan(run_id, "batch", inputs=inputs, units=coins))
    spec = JobSpec(run_id=run_id, name="engine-fetch", family="gbm", units=coins, inputs=inputs, array_size=2,
                   params={"task": "fetch", "market": {"coinbase": sim.url}, "window": {"start": start, "end": end},
                           "features": {}, "split": SPLIT})  # fmt: skip
    ref = backend.submit(spec)
    status = backend.follow(ref, lambda e: None, should_stop=lambda: False)
    assert status.phase is JobPhase.SUCCEEDED, status
    return backend, ref


def test_each_child_fetches_its_own_coins_from_its_own_address_and_sends_back_moments(
    sandbox: Any, tmp_path: Path  # noqa: F811 - the fixture imported above
) -> None:
    with MarketSimulator(seed=5, rate_limit_per_s=1000, require_api_key=KEY) as sim:
        sim.delist("SOL-USD")  # gone before its child asked: skipped with the reason, the others go on
        backend, ref = _fetch_job(sandbox, tmp_path, sim, COINS)
        candles = [r for r in sim.requests if r.path.endswith("/candles")]
    rows, features_url = backend.collect_fetched(ref, tmp_path / "moments")
    assert [rows[c]["state"] for c in COINS] == ["succeeded", "succeeded", "skipped", "skipped"], rows
    assert "404" in rows["SOL-USD"]["why"] and "fundamentals" in rows["AAB-USD"]["why"], rows
    # Two children, two hosts: every candle request came from a child's own address, none from here.
    hosts = {r.client for r in candles}
    assert len(hosts) == 2 and all(h.startswith("127.2.") for h in hosts), hosts
    assert sum(rows[c]["requests"] for c in COINS) >= len([r for r in candles if r.status == 200])
    # Only the moments came back; the feature files stay in the bucket for the heads' job.
    assert sorted(p.name for p in (tmp_path / "moments").iterdir()) == ["BTC-USD.npz", "ETH-USD.npz"]
    assert features_url == f"s3://{ref.data['bucket']}/{ref.data['prefix']}out/features/"
    moments = [CoinMoments.load(tmp_path / "moments" / f"{c}.npz") for c in ("BTC-USD", "ETH-USD")]
    encoder = encoder_from_moments(moments, common_names(m.feature_names for m in moments), 5)
    assert encoder.coins == ("BTC-USD", "ETH-USD") and encoder.rows == sum(m.rows for m in moments) > 1000


def test_moments_that_differ_from_what_their_child_recorded_are_not_taken(
    sandbox: Any, tmp_path: Path  # noqa: F811 - the fixture imported above
) -> None:
    with MarketSimulator(seed=5, rate_limit_per_s=1000, require_api_key=KEY) as sim:
        backend, ref = _fetch_job(sandbox, tmp_path, sim, ("BTC-USD", "ETH-USD"))
    bucket, key = ref.data["bucket"], ref.data["prefix"] + "out/moments/ETH-USD.npz"
    backend._call("s3", "put_object", Bucket=bucket, Key=key, Body=b"not what the child wrote")
    rows, _ = backend.collect_fetched(ref, tmp_path / "moments")
    assert rows["BTC-USD"]["state"] == "succeeded"
    assert rows["ETH-USD"] == {**rows["ETH-USD"], "state": "failed", "why": "its encoder moments are missing or damaged"}
    assert not (tmp_path / "moments" / "ETH-USD.npz").exists()
