"""The figures behind the panes and the run feed, without a terminal: real store, real files."""

from __future__ import annotations

import time
from pathlib import Path

from console.checklist.engine import run_dir
from console.errors import GateFailed
from console.resources import Resources
from console.settings import Settings
from console.state import InstanceRecord, StateStore
from console.tui.feed import RunFeed, landed_gate_verifier, landed_watchdog_status
from console.cost import instance_cost
from console.tui.figures import (
    SymbolTraining,
    run_cost_figures,
    fold_training,
    format_duration,
    gate_status,
    one_line,
    watchdog_label,
)
from console.tui.guarded import run_cost
from console.tui.readings import Reading, host_reading, reading_label

NOW = 1_767_605_400.0


def _instance(**overrides: object) -> InstanceRecord:
    values: dict[str, object] = dict(id="i-1", run_id="r", provider="ec2", instance_type="g5.xlarge", zone="us-east-1b",
                                     state="running", launched_at=NOW - 7200, terminated_at=None, terminate_reason="", data={})
    values.update(overrides)
    return InstanceRecord(**values)  # type: ignore[arg-type]


def test_cost_figures_come_from_the_cost_ledger_and_label_sandbox_prices(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    store = StateStore.open(settings.state_dir)
    store.create_run("r1", checklist="c", checklist_path="c.toml", profile="sandbox", params={"budget_usd": 5.0},
                     steps=[("a", "wait", "wait")])
    now = time.time()
    assert run_cost_figures(store, settings, "r1", now=now) is None
    store.upsert_instance("i-old", run_id="r1", provider="ec2", state="running", instance_type="g4dn.xlarge",
                          zone="us-east-1a", launched_at=now - 7200)
    store.add_cost_sample("i-old", "r1", 0.1578, 0.526, "sandbox table")
    store.mark_instance_terminated("i-old", "done")
    store.upsert_instance("i-new", run_id="r1", provider="ec2", state="running", instance_type="g5.xlarge",
                          zone="us-east-1b", launched_at=now - 3600)
    store.add_cost_sample("i-new", "r1", 0.2968, 1.006, "sandbox table")
    f = run_cost_figures(store, settings, "r1", now=now)
    assert f is not None and f.line.instance_id == "i-new" and f.line.live  # the live one is shown
    assert f.line == instance_cost(store, store.instances(run_id="r1")[1], now=now)
    assert 0.29 < f.line.cost_usd < 0.32 and f.line.savings_usd is not None and f.line.savings_usd > 0.6
    assert f.run_total_usd > f.line.cost_usd and f.budget_usd == 5.0 and f.sandbox
    assert f.projected_usd == f.line.cost_usd  # no step is running: nothing more is projected


def test_gate_status_passes_only_a_valid_unexpired_pass() -> None:
    assert not gate_status(None, now=NOW).passed
    failed = gate_status({"id": 3, "passed": 0, "expires_at": NOW + 60}, now=NOW)
    assert not failed.passed and "did not pass" in failed.reason
    expired = gate_status({"id": 4, "passed": 1, "expires_at": NOW - 7200}, now=NOW)
    assert not expired.passed and "expired 2h00m ago" in expired.reason
    ok = gate_status({"id": 5, "passed": 1, "expires_at": NOW + 3600}, now=NOW)
    assert ok.passed and ok.gate_id == 5


def test_the_gate_modules_refusal_has_the_last_word(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    store = StateStore.open(settings.state_dir)
    store.add_gate(passed=True, expires_at=NOW * 2, feature_hash="f", model_hashes={}, record={})
    (settings.data_root / "models").mkdir(parents=True)
    # A pass typed into the table with no signed record next to the models never verifies.
    snapshot = RunFeed(store, settings, None, gate_verifier=landed_gate_verifier(Resources(settings), store)).snapshot()
    assert snapshot.gate_refusal and "no gate record in" in snapshot.gate_refusal
    status = gate_status(snapshot.gate, now=NOW, refusal=snapshot.gate_refusal)
    assert not status.passed and status.reason == snapshot.gate_refusal


def test_watchdog_label_and_durations(tmp_path: Path) -> None:
    assert watchdog_label(False, None, now=NOW, interval_s=15) == "watchdog: NOT RUNNING"
    assert watchdog_label(True, None, now=NOW, interval_s=15) == "watchdog: running, no pass yet"
    assert watchdog_label(True, NOW - 4, now=NOW, interval_s=15) == "watchdog: ok (last pass 4s ago)"
    assert watchdog_label(True, NOW - 185, now=NOW, interval_s=15) == "watchdog: silent for 3m05s"
    assert watchdog_label(None, None, now=NOW, interval_s=15, last_event_at=NOW - 2) == "watchdog: ok (last pass 2s ago)"
    view = landed_watchdog_status(Settings(state_dir=tmp_path / "state"))()
    assert view is not None and not view.running  # no watchdog runs for a fresh state dir
    assert [format_duration(s) for s in (None, 42, 185, 7440)] == ["", "42s", "3m05s", "2h04m"]


def test_errors_read_as_the_cli_prints_them() -> None:
    assert one_line(GateFailed("no pass", hint="run the dry run")) == "no pass (run the dry run)"
    assert one_line(KeyError("x")) == "internal error: KeyError: 'x'"


def test_run_cost_names_the_launch_price_or_says_it_is_free() -> None:
    settings = Settings(state_dir=Path("/nonexistent"))
    launch = run_cost(["fetch", "launch", "train"], settings=settings, instance_type="g4dn.xlarge", active=[])
    assert "g4dn.xlarge spot instance: about $0.1578/h (sandbox figure)" in launch
    assert "run budget $10.00" in launch
    local = run_cost(["fetch"], settings=settings, instance_type="g5.xlarge", active=[])
    assert local.endswith("no cloud cost.")
    keeps = run_cost(["train"], settings=settings, instance_type="g5.xlarge", active=[_instance()])
    assert "Keeps i-1 (g5.xlarge) running" in keeps


def test_readings_are_labelled_for_what_they_are() -> None:
    from remote.metrics import parse_reading

    from console.tui.readings import gpu_reading_from_event, reading_from_remote

    cpu_only = reading_from_remote(parse_reading("#gpu\n#gpu-rc 127\n#mem\nMemTotal: 2048000 kB\nMemAvailable: 1024000 kB\n#end"))
    assert reading_label(cpu_only, sandbox=False) == "no GPU on the instance: CPU unknown, memory 50%"
    event = gpu_reading_from_event({"instance_id": "i-1", "gpu_util_pct": 3.0})
    assert reading_label(event, sandbox=False) == "GPU 3%"
    assert reading_label(None, sandbox=True) == "no reading yet"
    host = host_reading()
    assert host.kind == "host" and host.mem_pct is not None and 0 <= host.mem_pct <= 100
    assert reading_label(Reading("host", util_pct=5, mem_pct=50), sandbox=False) == "no GPU on this host: CPU 5%, memory 50%"


def test_feed_reads_only_new_events_and_whole_log_lines(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    store = StateStore.open(settings.state_dir)
    store.create_run("r1", checklist="c", checklist_path="c.toml", profile="sandbox", params={}, steps=[("a", "wait", "wait")])
    feed = RunFeed(store, settings, "r1")
    first = feed.poll()
    assert [e.kind for e in first.events] == ["run.created"] and first.snapshot is not None
    log = run_dir(settings, "r1") / "01-a.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("one\ntwo\nthr")
    store.add_event(None, None, "watchdog.tick", "alive")
    store.add_event("r1", "a", "train.progress", "BTC", {"symbol": "BTC-USD", "epoch": 1, "loss": 0.5})
    second = feed.poll()
    assert second.log_lines == ["one", "two"] and [e.kind for e in second.events] == ["train.progress"]
    assert second.watchdog_seen_at is not None
    with open(log, "a") as fh:
        fh.write("ee\n")
    third = feed.poll()
    assert third.log_lines == ["three"] and not third.events
    progress: dict[str, SymbolTraining] = {}
    assert fold_training(progress, second.events) and progress["BTC-USD"].losses == [0.5]
