"""The scheduler runs per-symbol jobs as subprocesses, survives failures, and resumes from its ledger."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from training.errors import BadTrainingConfig, LocalTrainingRefused
from training.guard import Lease, write_lease
from training.families.lstm.config import TrainConfig
from training.families.lstm.synthetic import synthetic_frame, synthetic_hash, write_synthetic_feature_file
from training.scheduler import Emitter, Ledger, SchedulePlan, format_table, run_schedule
from training.train import TrainJob, run_job
from training import registry
from training.metrics import TradingCosts

@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core box OpenMP spinning costs 5x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


REPO = Path(__file__).resolve().parents[2]
TRAIN_ARGS = ("--epochs", "2", "--window", "16", "--longest-feature-window", "10", "--hidden-size", "8",
              "--num-layers", "1", "--batch-size", "64", "--device", "cpu",
              "--expected-feature-hash", synthetic_hash(3))  # fmt: skip


@pytest.fixture()
def sandbox_host(tmp_path, monkeypatch):
    """This process and its jobs look like sandbox instance i-0test, with a lease for it."""
    monkeypatch.setenv("RC_SANDBOX_INSTANCE_ID", "i-0test")
    monkeypatch.delenv("RC_SANDBOX_HOST_KEY_FINGERPRINT", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lease = Lease.issue(run_id="run-t", host_kind="sandbox", instance_id="i-0test",
                        host_key_fingerprint="SHA256:t", operator_machine_id="op")  # fmt: skip
    return write_lease(tmp_path / ".rc-lease.json", lease)


def _plan(tmp_path, lease, symbols, **kw) -> SchedulePlan:
    return SchedulePlan(symbols=tuple(symbols), out=tmp_path / "artifacts", features_dir=tmp_path / "FEATURES",
                        lease=lease, **{"backoff_s": 0, "train_args": TRAIN_ARGS, **kw})  # fmt: skip


def _run(plan, sleeps=None):
    out = io.StringIO()
    summary = run_schedule(plan, emit=Emitter(out), sleep=(sleeps.append if sleeps is not None else lambda s: None))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]  # every stdout line is JSON
    return summary, lines


def test_modes_group_symbols_and_an_unknown_mode_is_refused(tmp_path):
    syms = ("AAA-USD", "BBB-USD", "CCC-USD")
    plan = SchedulePlan(symbols=syms, out=tmp_path, max_concurrent=2)
    assert plan.batches() == [("AAA-USD", "BBB-USD"), ("CCC-USD",)]
    assert SchedulePlan(symbols=syms, out=tmp_path, mode="sequential").batches() == [(s,) for s in syms]
    assert SchedulePlan(symbols=syms, out=tmp_path, mode="parallel").batches() == [syms]
    with pytest.raises(BadTrainingConfig, match="unknown mode 'turbo'"):
        SchedulePlan(symbols=syms, out=tmp_path, mode="turbo").batches()


def test_scheduler_refuses_without_a_lease_for_this_host(tmp_path, monkeypatch):
    monkeypatch.delenv("RC_SANDBOX_INSTANCE_ID", raising=False)
    with pytest.raises(LocalTrainingRefused):
        run_schedule(SchedulePlan(symbols=("BTC-USD",), out=tmp_path, lease=tmp_path / "none.json"), emit=Emitter(io.StringIO()))


@pytest.mark.slow
def test_one_failing_symbol_does_not_stop_the_others_and_bad_input_is_not_retried(tmp_path, sandbox_host):
    for symbol in ("BTC-USD", "ETH-USD"):
        write_synthetic_feature_file(tmp_path / "FEATURES", symbol, 500, 3)
    broken = synthetic_frame(500, 3)
    broken.loc[5, "f0"] = float("nan")
    write_synthetic_feature_file(tmp_path / "FEATURES", "SOL-USD", 500, 3, frame=broken)
    summary, lines = _run(_plan(tmp_path, sandbox_host, ["BTC-USD", "SOL-USD", "ETH-USD"], max_concurrent=2))
    rows = {r["symbol"]: r for r in summary["symbols"]}
    assert rows["BTC-USD"]["state"] == rows["ETH-USD"]["state"] == "succeeded", {s: r["why"] for s, r in rows.items()}
    assert rows["SOL-USD"]["state"] == "failed" and rows["SOL-USD"]["attempts"] == 1
    assert "NaN" in rows["SOL-USD"]["why"] and rows["SOL-USD"]["exit_code"] == 2
    epochs = [l for l in lines if l["event"] == "epoch"]
    assert {l["symbol"] for l in epochs} == {"BTC-USD", "ETH-USD"}
    assert all({"symbol", "epoch", "loss", "val_metric"} <= set(l) for l in epochs)
    assert lines[-1]["event"] == "summary"
    assert json.loads((tmp_path / "artifacts" / "summary.json").read_text())["failed"] == 1
    table = format_table(summary)
    assert "SOL-USD" in table and "NaN" in table
    ledger = Ledger(tmp_path / "artifacts" / "ledger.json")
    assert ledger.state("BTC-USD") == "succeeded" and ledger.state("SOL-USD") == "failed"


@pytest.mark.slow
def test_rerun_skips_finished_symbols_resumes_unfinished_ones_and_force_retrains(tmp_path, sandbox_host):
    for symbol in ("BTC-USD", "ETH-USD"):
        write_synthetic_feature_file(tmp_path / "FEATURES", symbol, 500, 3)
    out = tmp_path / "artifacts"
    first, _ = _run(_plan(tmp_path, sandbox_host, ["BTC-USD"]))
    assert first["succeeded"] == 1
    # ETH-USD was interrupted after epoch 1 in an earlier run: its checkpoint is on disk.
    config = TrainConfig(epochs=2, window=16, longest_feature_window=10, hidden_size=8, num_layers=1, batch_size=64,
                         device="cpu", patience=10)  # fmt: skip
    job = TrainJob("ETH-USD", tmp_path / "FEATURES", out, config, TradingCosts(), registry.GateRules(),
                   expected_hash=synthetic_hash(3))  # fmt: skip

    def interrupt(event, **fields):
        if event == "epoch":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(job, on_event=interrupt)
    summary, lines = _run(_plan(tmp_path, sandbox_host, ["BTC-USD", "ETH-USD"], mode="sequential"))
    assert [l["symbol"] for l in lines if l["event"] == "skip"] == ["BTC-USD"]
    start = next(l for l in lines if l["event"] == "start")
    assert start["symbol"] == "ETH-USD" and start["resumed_from"] == 1
    assert [l["epoch"] for l in lines if l["event"] == "epoch"] == [2]
    forced, lines = _run(_plan(tmp_path, sandbox_host, ["BTC-USD"], force=True))
    assert not any(l["event"] == "skip" for l in lines)
    assert len(registry.list_models(out, "BTC-USD")) == 2


@pytest.mark.slow
def test_a_job_past_its_timeout_is_killed_and_retried_with_backoff(tmp_path, sandbox_host):
    write_synthetic_feature_file(tmp_path / "FEATURES", "BTC-USD", 500, 3)
    sleeps = []
    # Half a second is less than the job needs just to import torch, and 100000 epochs would
    # outlast any machine: every attempt times out.
    endless = (*TRAIN_ARGS, "--epochs", "100000", "--patience", "100000")
    plan = _plan(tmp_path, sandbox_host, ["BTC-USD"], timeout_s=0.5, retries=2, backoff_s=1.5, train_args=endless)
    summary, lines = _run(plan, sleeps)
    row = summary["symbols"][0]
    assert row["state"] == "timed_out" and row["attempts"] == 3
    assert sleeps == [1.5, 3.0]
    assert [l["attempt"] for l in lines if l["event"] == "retry"] == [2, 3]
    assert "timed out after 0.5s" in row["why"]


def _cli(module, args, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_unknown_mode_on_the_command_line_exits_2_with_one_line(tmp_path, sandbox_host):
    proc = _cli("training.scheduler", ["--symbols", "BTC-USD", "--mode", "turbo", "--lease", str(sandbox_host)], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "unknown mode 'turbo': use one of sequential, parallel, hybrid"


@pytest.mark.slow
def test_train_command_refuses_a_feature_file_with_another_hash_with_exit_2(tmp_path, sandbox_host):
    write_synthetic_feature_file(tmp_path / "FEATURES", "BTC-USD", 500, 3)
    proc = _cli("training.train", ["--symbol", "BTC-USD", "--lease", str(sandbox_host),
                                   "--expected-feature-hash", "sha256:" + "1" * 64], tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("FEATURES/BTC-USD.parquet was built with feature hash")
    assert json.loads(proc.stdout.strip().splitlines()[-1])["exit_code"] == 2
    assert not (tmp_path / "artifacts" / "models").exists()
