"""`console dryrun` end to end on the sandbox's market simulator: real candles and CoinGecko
data over HTTP, the real feature spec and builder, a real model.pt, the gate's verdict."""

from __future__ import annotations

import json
import os
import secrets
import time

import pytest

from remote.sandbox.market_server import MarketSimulator
from tests.console.cli import assert_one_line_error, console
from tests.console.test_gate_cli_s3 import aws  # noqa: F401  (fixture: S3 on moto over HTTP)

SYMBOL = "ETH-USD"  # the 54-feature spec: 1m candles and fundamentals, no higher timeframes


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The market simulator (wall clock, API key required), a feature file ending two days
    ago built by the real builder, and an untrained model for today's spec."""
    from runtime_checks.inputs import CoinGeckoFundamentals, SpecFeatureBuilder
    from runtime_checks.small import write_model
    from training.features.io import FeatureFileMeta, write_feature_file
    from training.features.spec import spec_for
    from remote.sandbox.market import simulated_candles

    for name in list(os.environ):
        if name.startswith(("AWS_", "RC_", "COINGECKO")):
            monkeypatch.delenv(name, raising=False)
    key = "CG-" + secrets.token_urlsafe(18)
    sim = MarketSimulator(rate_limit_per_s=1000, require_api_key=key).start()
    end = (int(time.time()) - 2 * 86_400) // 60 * 60
    candles = simulated_candles(SYMBOL, end - 2 * 86_400, end)
    builder = SpecFeatureBuilder(CoinGeckoFundamentals(key, sim.url + "/api/v3"))
    frame = builder.build(SYMBOL, candles).dropna().reset_index(drop=True)
    spec = spec_for(SYMBOL)
    write_feature_file(tmp_path / "data" / "features" / f"{SYMBOL}.parquet", frame,
                       FeatureFileMeta(SYMBOL, spec.version, spec.hash, spec.names, len(frame)))
    write_model(tmp_path / "models", SYMBOL, spec.names, spec.hash, window=30, horizon=15)
    env = {"RC_STATE_DIR": str(tmp_path / "state"), "RC_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path / "home"),
           "RC_COINBASE_URL": sim.url, "RC_COINGECKO_URL": sim.url + "/api/v3", "COINGECKO_API_KEY": key}
    yield env, tmp_path / "models", key
    sim.stop()


@pytest.mark.slow
def test_dryrun_prints_predictions_and_an_untrained_model_fails_the_gate(sandbox, aws):
    env, models, key = sandbox
    s3_env, s3, bucket = aws
    env = {**s3_env, **env}
    proc = console("dryrun", "--symbols", SYMBOL, "--iterations", "3", "--models", str(models), env=env, timeout=240)
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    # The failed verdict is copied to the profile's S3 byte for byte: a FAIL, never a pass.
    copied = s3.get_object(Bucket=bucket, Key="gates/latest.json")["Body"].read()
    assert copied == (models / "gate.json").read_bytes() and json.loads(copied)["passed"] is False
    assert f"gate record copied to s3://{bucket}/gates/" in proc.stdout
    predictions = [line for line in proc.stdout.splitlines() if line.startswith(f"{SYMBOL}: ") and "(LSTM: " in line]
    assert len(predictions) == 3
    assert "non-overlapping), hit rate" in proc.stdout and "gate: ETH-USD: predictions are degenerate (constant)" in proc.stdout
    assert "gate failed" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert key not in proc.stdout + proc.stderr
    # What the dry run found is stored: `console check` and `console gate status` show it.
    shown = console("check", env=env)
    assert "aligned, 54 features in the same order" in shown.stdout and "dryrun" in shown.stdout
    assert_one_line_error(console("gate", "verify", "--models", str(models), env=env), 4, "the last dry run failed the gate")
