"""The engine's hundreds of coins on the operator's screen: counts by state, the slowest running,
the failed with their reason, never a line per coin. The events are written by the engine
steps' own emitter (`console.engine_progress.CoinEvents`) into a real state store and reach
the screen through the real feed; the end-to-end run in `test_engine_checklist.py` opens the
screen on a run the engine really drove."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import console.state.store as store_module
from console.engine_progress import CoinEvents
from console.settings import Settings
from console.state import StateStore
from console.tui.app import OperatorApp
from console.tui.readings import Reading

SIZE = (130, 40)
T0 = 1_767_605_400.0  # the screen's "now" (2026-01-05 09:30 UTC)
RUN_ID = "20260105-091500-e961"
STEPS = ("engine-symbols", "engine-data", "engine-costs", "engine-encoder", "engine-train", "engine-summary")


class _Clock:
    """Stands in for the store's clock while events are written, so their times (and the screen) are fixed."""

    def __init__(self, t: float) -> None:
        self.t = t

    def time(self) -> float:
        return self.t


def _engine_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, StateStore]:
    """400 coins part-way through engine-train: 250 done, 7 running, 4 failed, 12 skipped, the rest queued."""
    settings = Settings(state_dir=tmp_path / "state")
    store = StateStore.open(settings.state_dir)
    checklist = tmp_path / "engine-board.toml"
    checklist.write_text("\n".join(["[checklist]", 'name = "engine"', "[defaults]", "retries = 0"]
                                   + [f'[[steps]]\nname = "{s}"\nstep = "wait"\n[steps.params]\nseconds = 1' for s in STEPS]))  # fmt: skip
    store.create_run(RUN_ID, checklist="engine", checklist_path=str(checklist), profile="sandbox", params={},
                     steps=[(s, "wait", s) for s in STEPS])  # fmt: skip
    coins = [f"C{i:03d}-USD" for i in range(400)]
    clock = _Clock(T0 - 3600)
    with monkeypatch.context() as m:
        m.setattr(store_module, "time", clock)
        step = {"name": "engine-symbols"}
        events = CoinEvents(lambda kind, message, **data: store.add_event(RUN_ID, step["name"], kind, message, data))
        events.queued(coins)
        step["name"] = "engine-data"
        for symbol in coins[-12:]:
            clock.t += 1
            events.state(symbol, "skipped", "ValueError: 2 days of history, 7 needed")
        step["name"] = "engine-train"
        for i, symbol in enumerate(coins[:250]):
            clock.t = T0 - 3000 + 10 * i
            events.state(symbol, "running")
            events.state(symbol, "done", seconds=8.0 + (i == 17) * 300)
        for i, symbol in enumerate(coins[250:257]):
            clock.t = T0 - 700 + 60 * i  # C250 has run longest
            events.state(symbol, "running")
        for i, symbol in enumerate(coins[257:261]):
            clock.t = T0 - 100 + i
            events.state(symbol, "failed", f"timed out after {2700 + i} s" if i % 2 else "LightGBM: no rows left")
        for i, (name, summary) in enumerate((("engine-symbols", "400 coins: BTC-USD, ETH-USD, SOL-USD ..."),
                                             ("engine-data", "388 coins ready, 12 skipped (short history or no data)"),
                                             ("engine-costs", "costs of 388 coins (median spread 3.10 bps)"),
                                             ("engine-encoder", "encoder sha256:4be1... : 50 components"))):  # fmt: skip
            store.update_step(RUN_ID, name, "succeeded", message=summary, attempt=1, summary=summary,
                              started_at=T0 - 3600 + 100 * i, finished_at=T0 - 3500 + 100 * i)  # fmt: skip
        clock.t = T0 - 3000
        store.update_step(RUN_ID, "engine-train", "running", message="started", attempt=1, started_at=T0 - 3000)
        store.set_run_status(RUN_ID, "running")
    return settings, store


def _app(settings: Settings, store: StateStore) -> OperatorApp:
    return OperatorApp(settings, store, run_id=RUN_ID, clock=lambda: T0, poll_s=0.1, reading_every_s=3600,
                       readings=lambda: Reading("host", util_pct=23.0, mem_pct=41.0), terminator=lambda i: "")  # fmt: skip


async def _settled(pilot: Any) -> None:
    app = pilot.app
    deadline = time.monotonic() + 20
    while app.snapshot is None or app.host is None or app.spec is None or not app.coins.coins:
        assert time.monotonic() < deadline, "the screen never filled in"
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def test_engine_board_shows_counts_slowest_and_failed_not_a_line_per_coin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store = _engine_run(tmp_path, monkeypatch)

    async def scenario() -> list[str]:
        app = _app(settings, store)
        async with app.run_test(size=SIZE) as pilot:
            await _settled(pilot)
            assert app.query_one("#training").border_title == "Training · engine"
            assert "engine" in app.query_one("#bottom").classes
            return str(app.query_one("#engine-board").render()).splitlines()

    lines = asyncio.run(scenario())
    assert lines[0] == "400 coins: queued 127 · running 7 · done 250 · failed 4 · skipped 12"
    assert lines[1] == "slowest running: C250-USD 11m40s, C251-USD 10m40s, C252-USD 9m40s, C253-USD 8m40s, C254-USD 7m40s (+2)"
    assert lines[2] == "done in 9s on average, longest 5m08s"
    assert lines[3:8] == ["failed 4:", "  C260-USD: timed out after 2703 s", "  C259-USD: LightGBM: no rows left",
                          "  C258-USD: timed out after 2701 s", "  C257-USD: LightGBM: no rows left"]  # fmt: skip
    assert lines[8].startswith("skipped 12: C399-USD, C398-USD, C397-USD, C396-USD ... (latest: ValueError: 2 days")
    assert len(lines) < 12


def test_a_step_that_stops_takes_its_coins_off_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, store = _engine_run(tmp_path, monkeypatch)
    store.update_step(RUN_ID, "engine-train", "failed", message="killed", finished_at=T0, summary="killed")

    async def scenario() -> str:
        app = _app(settings, store)
        async with app.run_test(size=SIZE) as pilot:
            await _settled(pilot)
            return str(app.query_one("#engine-board").render()).splitlines()[0]

    assert asyncio.run(scenario()) == "400 coins: queued 134 · running 0 · done 250 · failed 4 · skipped 12"


def test_snapshot_engine_board_over_400_coins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snap_compare: Any) -> None:
    settings, store = _engine_run(tmp_path, monkeypatch)
    assert snap_compare(_app(settings, store), terminal_size=SIZE, run_before=_settled)
