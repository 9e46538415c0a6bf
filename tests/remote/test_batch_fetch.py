"""Past one machine the exchange's rate limit is per host: each Batch child fetches its own coins'
candles from its own address, builds their feature files and sends back only its coins' encoder
moments. Driven for real: boto3 over HTTP to the sandbox's moto, whose Batch front runs each child
as a process; the candles come over HTTP from a market simulator that counts each address apart."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from remote.backends.base import BackendContext, JobPhase, JobSpec, RunPlan
from remote.backends.batch import BatchBackend
from remote.errors import StorageError
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


def _fetch_job(sandbox: Any, tmp_path: Path, sim: MarketSimulator, coins: tuple[str, ...], *,
               ends: JobPhase = JobPhase.SUCCEEDED, seen: list[Any] | None = None) -> tuple[BatchBackend, Any]:
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
    status = backend.follow(ref, (seen if seen is not None else []).append, should_stop=lambda: False)
    assert status.phase is ends, status
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


def test_a_heads_child_trains_no_coin_whose_feature_file_is_not_the_one_fetched(
    sandbox: Any, tmp_path: Path  # noqa: F811 - the fixture imported above
) -> None:
    with MarketSimulator(seed=5, rate_limit_per_s=1000, require_api_key=KEY) as sim:
        backend, ref = _fetch_job(sandbox, tmp_path, sim, ("BTC-USD", "ETH-USD"))
    rows, features_url = backend.collect_fetched(ref, tmp_path / "moments")
    moments = [CoinMoments.load(tmp_path / "moments" / f"{c}.npz") for c in ("BTC-USD", "ETH-USD")]
    encoder_from_moments(moments, common_names(m.feature_names for m in moments), 5).save(tmp_path / "encoder")
    # Someone rewrites one part of ETH's feature file in the bucket after its child recorded it.
    bucket = ref.data["bucket"]
    listed = backend._call("s3", "list_objects_v2", Bucket=bucket, Prefix=ref.data["prefix"] + "out/features/ETH-USD")
    part = next(o["Key"] for o in listed["Contents"] if o["Key"].endswith(".parquet"))
    body = backend._call("s3", "get_object", Bucket=bucket, Key=part)["Body"].read()
    backend._call("s3", "put_object", Bucket=bucket, Key=part, Body=body + b"\0")

    sums = {coin: rows[coin]["sha256"]["features"] for coin in ("BTC-USD", "ETH-USD")}
    inputs: dict[str, Path | str] = {"features": features_url, "encoder": tmp_path / "encoder"}
    backend.prepare(RunPlan(ref.run_id, "batch", inputs=inputs, units=("BTC-USD", "ETH-USD")))
    spec = JobSpec(run_id=ref.run_id, name="engine-heads", family="gbm", units=("BTC-USD", "ETH-USD"),
                   inputs=inputs, array_size=2,
                   params={"split": SPLIT, "encoder": {"n_components": 5}, "gates": {"min_trades": 30},
                           "input_sha256": {"features": sums}})  # fmt: skip
    heads = backend.submit(spec)
    assert backend.follow(heads, lambda e: None, should_stop=lambda: False).phase is JobPhase.SUCCEEDED
    by_coin = {}  # what each child reported, as collect reads it
    for index in (0, 1):
        key = f"{heads.data['prefix']}out/results/{index}.json"
        body = backend._call("s3", "get_object", Bucket=bucket, Key=key)["Body"].read()
        by_coin.update({u["unit"]: u for u in json.loads(body)["units"]})
    assert by_coin["BTC-USD"]["state"] == "succeeded", by_coin
    assert by_coin["ETH-USD"]["state"] == "failed" and "sha256 differs" in by_coin["ETH-USD"]["why"], by_coin


def test_an_input_in_another_bucket_is_refused_before_anything_is_submitted(
    sandbox: Any, tmp_path: Path  # noqa: F811 - the fixture imported above
) -> None:
    run_id = f"other-{time.monotonic_ns()}"
    backend = BatchBackend(BackendContext(run_id=run_id, aws=sandbox.aws_target, work_dir=tmp_path / "work",
                                          options={"bucket": run_id.lower()}))  # fmt: skip
    with pytest.raises(StorageError, match="not the batch backend's") as refused:
        backend.prepare(RunPlan(run_id, "batch", inputs={"features": "s3://someone-else/features/"}, units=("BTC-USD",)))
    assert "someone-else" in str(refused.value)
    assert not backend._call("s3", "list_objects_v2", Bucket=run_id.lower()).get("Contents")


def test_a_job_given_other_coins_is_a_new_job_and_leaves_the_first_ones_results_alone(
    sandbox: Any, tmp_path: Path  # noqa: F811 - the fixture imported above
) -> None:
    with MarketSimulator(seed=5, rate_limit_per_s=1000, require_api_key=KEY) as sim:
        backend, first = _fetch_job(sandbox, tmp_path, sim, ("BTC-USD", "ETH-USD"))
        # The same run and job name, as when a rerun data step leaves fewer coins.
        spec = JobSpec(run_id=first.run_id, name=first.name, family="gbm", units=("BTC-USD",), array_size=1,
                       inputs={"fundamentals": tmp_path / "data" / "fundamentals"},
                       params={"task": "fetch", "market": {"coinbase": sim.url}, "features": {}, "split": SPLIT,
                               "window": {"start": int(time.time()) - 3 * 86400, "end": int(time.time())}})  # fmt: skip
        second = backend.submit(spec)
        assert second.job_id != first.job_id and second.data["units"] == ["BTC-USD"]
        assert backend.follow(second, lambda e: None, should_stop=lambda: False).phase is JobPhase.SUCCEEDED
        assert backend.submit(spec).job_id == second.job_id  # the same work again is the same job
    rows, _ = backend.collect_fetched(second, tmp_path / "second")
    assert list(rows) == ["BTC-USD"] and rows["BTC-USD"]["state"] == "succeeded"
    rows, _ = backend.collect_fetched(first, tmp_path / "first")  # untouched by the second
    assert [rows[c]["state"] for c in ("BTC-USD", "ETH-USD")] == ["succeeded", "succeeded"]


def test_an_exchange_that_keeps_failing_fails_the_job_with_why_instead_of_skipping_every_coin(
    sandbox: Any, tmp_path: Path  # noqa: F811 - the fixture imported above
) -> None:
    seen: list[Any] = []
    with MarketSimulator(seed=5, rate_limit_per_s=1000, require_api_key=KEY) as sim:
        sim.inject_fault(503, times=10_000, path_prefix="/products/")  # the exchange is down for everyone
        _fetch_job(sandbox, tmp_path, sim, ("BTC-USD", "ETH-USD"), ends=JobPhase.FAILED, seen=seen)
    errors = [e for e in seen if e.kind == "error"]
    assert errors and {e.unit for e in errors} <= {"BTC-USD", "ETH-USD"}, [e.message for e in seen]
    assert all("503" in e.data["why"] or "retries" in e.data["why"] for e in errors), [e.data for e in errors]
    assert not [e for e in seen if e.kind == "done"]  # no coin was reported skipped for the exchange's outage


def test_a_job_still_running_is_terminated_when_its_run_submits_other_work_under_its_name(
    sandbox: Any, tmp_path: Path  # noqa: F811 - the fixture imported above
) -> None:
    run_id = f"super-{time.monotonic_ns()}"
    backend = BatchBackend(BackendContext(run_id=run_id, aws=sandbox.aws_target, work_dir=tmp_path / "work",
                                          options={"bucket": run_id.lower(), "poll_s": 0.3}))  # fmt: skip
    with MarketSimulator(seed=5, rate_limit_per_s=2, require_api_key=KEY) as sim:  # slow: still going
        inputs: dict[str, Path | str] = {"fundamentals": tmp_path / "none"}
        (tmp_path / "none").mkdir()
        backend.prepare(RunPlan(run_id, "batch", inputs=inputs, units=("BTC-USD", "ETH-USD")))
        end = int(time.time()) // 60 * 60

        def spec(coins: tuple[str, ...]) -> JobSpec:
            return JobSpec(run_id=run_id, name="engine-fetch", family="gbm", units=coins, inputs=inputs, array_size=1,
                           params={"task": "fetch", "market": {"coinbase": sim.url}, "features": {}, "split": SPLIT,
                                   "window": {"start": end - 30 * 86400, "end": end}})  # fmt: skip

        first = backend.submit(spec(("BTC-USD", "ETH-USD")))
        deadline = time.monotonic() + 30
        while backend.status(first).phase is not JobPhase.RUNNING:
            assert time.monotonic() < deadline, "the first job never started"
            time.sleep(0.2)
        second = backend.submit(spec(("BTC-USD",)))
        assert second.job_id != first.job_id
        gone = backend.status(first)
        deadline = time.monotonic() + 30
        while gone.phase is not JobPhase.FAILED:
            assert time.monotonic() < deadline, f"the superseded job is still {gone.phase}"
            time.sleep(0.2)
            gone = backend.status(first)
        backend.cancel(second)
    assert "superseded" in (gone.reason or "") + (gone.secondary or ""), gone
