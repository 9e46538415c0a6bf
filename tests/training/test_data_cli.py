"""`console data ...` and `console features ...` driven as an operator would: a subprocess
against a market simulator on 127.0.0.1."""

from __future__ import annotations

import secrets

import pandas as pd
import pytest

from remote.sandbox.market import simulated_candles
from remote.sandbox.market_server import MarketSimulator
from tests.console.cli import assert_one_line_error, console

pytestmark = pytest.mark.slow

T0 = 1_740_787_200  # 2025-03-01


@pytest.fixture
def market():
    with MarketSimulator(rate_limit_per_s=1000) as sim:
        yield sim


@pytest.fixture
def env(tmp_path, market, monkeypatch):
    for name in ("COINGECKO_API_KEY", "RC_COINGECKO_API_KEY", "RC_CONFIG", "RC_PROFILE", "RC_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return {
        "HOME": str(tmp_path / "home"),
        "RC_STATE_DIR": str(tmp_path / "state"),
        "RC_COINBASE_URL": market.url,
        "RC_COINGECKO_URL": f"{market.url}/api/v3",
        "COINGECKO_API_KEY": "CG-" + secrets.token_urlsafe(18),
    }


def test_fetch_build_and_verify_round_trip_then_a_wrong_expected_count_fails_with_a_table(tmp_path, env):
    data = tmp_path / "data"
    fetched = console("data", "fetch", "--symbols", "ETH-USD", "--timeframes", "1m,1h", "--start", "2025-03-01",
                      "--end", "2025-03-03", "--data-dir", str(data), env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert "ETH-USD 1m: " in fetched.stdout and "agree with resampled 1m" in fetched.stdout
    assert (data / "candles" / "ETH-USD" / "1m.parquet").exists() and (data / "fundamentals" / "ETH-USD.parquet").exists()
    assert env["COINGECKO_API_KEY"] not in fetched.stdout + fetched.stderr

    built = console("features", "build", "--symbols", "ETH-USD", "--data-dir", str(data), "--out", str(tmp_path / "F"), env=env)
    assert built.returncode == 0, built.stderr
    assert "54 features" in built.stdout

    ok = console("features", "verify", "--symbols", "ETH-USD", "--out", str(tmp_path / "F"), env=env)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    config = tmp_path / "console.toml"
    config.write_text('[features]\nexpected_counts = { "ETH-USD" = 55 }\n')
    bad = console("features", "verify", "--symbols", "ETH-USD", "--out", str(tmp_path / "F"), env={**env, "RC_CONFIG": str(config)})
    assert_one_line_error(bad, 1, "feature counts differ for ETH-USD")
    assert "54 features, expected 55" in bad.stdout


def test_import_a_csv_then_gaps_lists_the_hole(tmp_path, env):
    frame = simulated_candles("BTC-USD", T0, T0 + 6 * 3600, seed=1)
    frame = frame.drop(index=range(100, 130))
    csv = tmp_path / "btc.csv"
    out = frame.rename(columns={"timestamp": "open_time"})
    out["open_time"] = (out["open_time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    out.to_csv(csv, index=False)
    data = tmp_path / "data"
    imported = console("data", "import", "BTC-USD", "1m", str(csv), "--data-dir", str(data), env=env)
    assert imported.returncode == 0, imported.stderr
    assert f"imported {len(frame)} 1m candles" in imported.stdout
    gaps = console("data", "gaps", "--data-dir", str(data), env=env)
    assert gaps.returncode == 0, gaps.stderr
    assert "2025-03-01T01:40:00Z" in gaps.stdout  # the hole starts at minute 100


def test_features_list_shows_every_feature_in_order_with_family_and_description(env):
    listed = console("features", "list", "--symbol", "BTC-USD", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "73 features" in listed.stdout
    assert listed.stdout.index("rsi_14") < listed.stdout.index("macd_signal") < listed.stdout.index("mtf_alignment_score")
    assert "relative strength index" in listed.stdout


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["data", "fetch", "--start", "2025-03-02", "--end", "2025-03-01"], 2, "not after start"),
        (["data", "fetch", "--timeframes", "1m,3m"], 2, "unknown timeframe '3m'"),
        (["data", "fetch", "--symbols", "BTC-USD;rm"], 2, "not a symbol"),
        (["data", "import", "BTC-USD", "1m", "/nonexistent/x.csv"], 2, "no such file"),
        (["features", "list", "--symbol", "btc"], 2, "not a symbol"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(env, args, code, needle):
    assert_one_line_error(console(*args, env=env), code, needle)


def test_a_bad_csv_or_a_truncated_parquet_is_one_line_and_exit_2_with_nothing_damaged(tmp_path, env):
    data = tmp_path / "data"
    frame = simulated_candles("SOL-USD", T0, T0 + 3600, seed=1)
    frame.to_csv(tmp_path / "good.csv", index=False)
    assert console("data", "import", "SOL-USD", "1m", str(tmp_path / "good.csv"), "--data-dir", str(data), env=env).returncode == 0
    parquet = data / "candles" / "SOL-USD" / "1m.parquet"
    before = parquet.read_bytes()
    dup = pd.concat([frame.iloc[:10], frame.iloc[9:]])
    dup.to_csv(tmp_path / "dup.csv", index=False)
    assert_one_line_error(console("data", "import", "SOL-USD", "1m", str(tmp_path / "dup.csv"), "--data-dir", str(data), env=env),
                          2, "duplicate timestamp")
    assert parquet.read_bytes() == before
    parquet.write_bytes(before[: len(before) // 3])
    assert_one_line_error(console("features", "build", "--symbols", "SOL-USD", "--data-dir", str(data), env=env),
                          2, "not a readable parquet file")


def test_fetch_fundamentals_without_a_key_says_how_to_set_it(tmp_path, env):
    no_key = {k: v for k, v in env.items() if k != "COINGECKO_API_KEY"}
    proc = console("data", "fetch", "--symbols", "BTC-USD", "--timeframes", "1h", "--days", "1",
                   "--data-dir", str(tmp_path / "d"), env=no_key)
    assert_one_line_error(proc, 2, "COINGECKO_API_KEY")


CHECKLIST = """
[checklist]
name = "data-only"
description = "the first three steps of the retrain checklist"

[params]
symbols = ["ETH-USD"]
timeframes = ["1m", "1h"]
days = 2

[defaults]
retries = 0
timeout_s = 300

[[steps]]
name = "fetch"

[[steps]]
name = "features"

[[steps]]
name = "verify-counts"
"""


def test_checklist_steps_fetch_features_and_verify_counts_run_headless(tmp_path, env):
    checklist = tmp_path / "data.toml"
    checklist.write_text(CHECKLIST)
    run = console("run", "--checklist", str(checklist), "--yes", env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (tmp_path / "state" / "data" / "features" / "ETH-USD.parquet").exists()
    config = tmp_path / "console.toml"
    config.write_text('[features]\nexpected_counts = { "ETH-USD" = 55 }\n')
    again = console("run", "--checklist", str(checklist), "--yes", "--new", "--only", "verify-counts",
                    env={**env, "RC_CONFIG": str(config)}, timeout=300)
    assert again.returncode == 1, again.stdout[-2000:] + again.stderr[-2000:]
    assert "54 features, expected 55" in again.stdout + again.stderr
