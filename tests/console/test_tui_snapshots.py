"""Snapshots of the main screen in its key states (pytest-textual-snapshot).

Stable across runs: the run id, every timestamp the screen shows and the clock are
fixed, the hardware reading is a constant taken once, and no widget on screen blinks.
Update them after a deliberate change with ``pytest tests/console/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


from console.checklist.engine import run_dir
from console.settings import Settings
from console.state import StateStore
from console.tui.app import OperatorApp
from console.tui.readings import Reading

SIZE = (130, 40)
T0 = 1_767_605_400.0  # 2026-01-05 09:30:00 UTC: the screen's "now"
RUN_ID = "20260105-091500-c0de"

STEPS = (
    ("fetch", "fetch 30 days of 1m candles for BTC-USD, ETH-USD"),
    ("features", "build features for BTC-USD, ETH-USD"),
    ("launch", "launch a g5.xlarge spot instance (budget $10.00)"),
    ("train", "train BTC-USD, ETH-USD for 2 epochs on the instance"),
    ("dryrun", "dry run the new models for 5 iterations"),
)

CHECKLIST = "\n".join(
    ["[checklist]", 'name = "retrain-demo"', "[defaults]", "retries = 0"]
    + [f'[[steps]]\nname = "{name}"\nstep = "wait"\n[steps.params]\nseconds = 1' for name, _ in STEPS]
)


def _store(tmp_path: Path) -> tuple[Settings, StateStore]:
    settings = Settings(state_dir=tmp_path / "state")
    store = StateStore.open(settings.state_dir)
    checklist = tmp_path / "retrain-demo.toml"
    checklist.write_text(CHECKLIST)
    store.create_run(RUN_ID, checklist="retrain-demo", checklist_path=str(checklist), profile="sandbox",
                     params={}, steps=[(name, "wait", plan) for name, plan in STEPS])
    return settings, store


def _progress(settings: Settings, store: StateStore, *, failed: bool) -> None:
    """A run part-way through: two steps done, an instance up, training under way (or failed)."""
    done = (("fetch", T0 - 900, T0 - 858, "fetched 43,200 candles for 2 symbols"),
            ("features", T0 - 858, T0 - 801, "built 73 and 54 features"),
            ("launch", T0 - 800, T0 - 740, "i-0abc123 running in us-east-1b"))
    for name, start, end, summary in done:
        store.update_step(RUN_ID, name, "succeeded", message=summary, attempt=1, started_at=start,
                          finished_at=end, summary=summary, details={"rows": 43200} if name == "fetch" else None)
    if failed:
        store.update_step(RUN_ID, "train", "failed", message="train failed", attempt=2, started_at=T0 - 700,
                          finished_at=T0 - 400, summary="ETH-USD: loss is NaN at epoch 2",
                          details={"exit_code": 1, "symbols": {"BTC-USD": "succeeded", "ETH-USD": "failed"}})
        store.set_run_status(RUN_ID, "failed", summary="train: ETH-USD: loss is NaN at epoch 2")
    else:
        store.update_step(RUN_ID, "train", "running", message="train started", attempt=1, started_at=T0 - 125)
        store.set_run_status(RUN_ID, "running")
    store.upsert_instance("i-0abc123", run_id=RUN_ID, provider="ec2", state="running", instance_type="g5.xlarge",
                          zone="us-east-1b", launched_at=T0 - 1800)
    store.add_cost_sample("i-0abc123", RUN_ID, 0.2968, 1.006, "sandbox table")
    store.add_event(RUN_ID, "train", "metrics.gpu", "gpu reading",
                    {"util_pct": 87, "mem_used_mib": 12288, "mem_total_mib": 24576, "temp_c": 61, "power_w": 183})
    for epoch, (btc, eth) in enumerate(((0.693, 0.701), (0.612, 0.655), (0.588, 0.640)), start=1):
        for symbol, loss in (("BTC-USD", btc), ("ETH-USD", eth)):
            store.add_event(RUN_ID, "train", "train.progress", f"{symbol} epoch {epoch}",
                            {"symbol": symbol, "epoch": epoch, "epochs": 15, "loss": loss, "val_metric": 0.5 + epoch / 50})
    log = run_dir(settings, RUN_ID) / "04-train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"train BTC-USD epoch {i // 40 + 1} batch {i % 40:>3}/40 loss 0.{700 - i}\n" for i in range(120)))


def _app(settings: Settings, store: StateStore) -> OperatorApp:
    return OperatorApp(settings, store, run_id=RUN_ID, clock=lambda: T0,
                       readings=lambda: Reading("host", util_pct=23.0, mem_pct=41.0), reading_every_s=3600,
                       terminator=lambda i: "", poll_s=0.1)


async def _settled(pilot: Any) -> None:
    app = pilot.app
    deadline = time.monotonic() + 20
    while app.snapshot is None or app.host is None or not app.feed_updates or app.spec is None:
        assert time.monotonic() < deadline, "the screen never filled in"
        await pilot.pause(0.05)
    await pilot.pause(0.3)  # the first log batch and training rows
    await pilot.wait_for_scheduled_animations()


def test_snapshot_new_run_all_pending(tmp_path: Path, snap_compare: Any) -> None:
    settings, store = _store(tmp_path)
    assert snap_compare(_app(settings, store), terminal_size=SIZE, run_before=_settled)


def test_snapshot_training_under_way_with_instance_and_gpu(tmp_path: Path, snap_compare: Any) -> None:
    settings, store = _store(tmp_path)
    _progress(settings, store, failed=False)
    assert snap_compare(_app(settings, store), terminal_size=SIZE, run_before=_settled)


def test_snapshot_failed_step_with_details(tmp_path: Path, snap_compare: Any) -> None:
    settings, store = _store(tmp_path)
    _progress(settings, store, failed=True)

    async def before(pilot: Any) -> None:
        await _settled(pilot)
        pilot.app.query_one("#steps").move_cursor(row=3)
        await pilot.press("i")
        await pilot.pause()

    assert snap_compare(_app(settings, store), terminal_size=SIZE, run_before=before)


def test_snapshot_run_all_confirmation_names_the_cost(tmp_path: Path, snap_compare: Any) -> None:
    settings, store = _store(tmp_path)

    async def before(pilot: Any) -> None:
        await _settled(pilot)
        await pilot.press("a")
        await pilot.pause()

    assert snap_compare(_app(settings, store), terminal_size=SIZE, run_before=before)
