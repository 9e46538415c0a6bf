"""A deep-Q agent's training reaches the TUI's training pane: the host's episode lines keep
their reward through the SSH follow (``train.progress``), the pane shows the episode and its
reward while it trains, and the report's path (``train.report``) when the report step is done."""

from __future__ import annotations

import asyncio
import json

from textual.app import App, ComposeResult

from console.state.records import EventRecord
from console.tui.figures import SymbolTraining, fold_training
from console.tui.panes import TrainingView
from remote.backends.ssh.follow import LineReader, Seen


def _event(i: int, kind: str, **data: object) -> EventRecord:
    return EventRecord(id=i, run_id="r", step=None, ts=float(i), kind=kind, message="", data=data)


def _label(progress: dict[str, SymbolTraining]) -> str:
    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield TrainingView()

    async def drive() -> str:
        app = One()
        async with app.run_test() as pilot:
            view = app.query_one(TrainingView)
            view.show(progress)
            await pilot.pause()
            return str(view.query(".train-label").first().render())

    return asyncio.run(drive())


def test_an_agents_episode_reward_and_report_path_show_in_the_training_pane() -> None:
    events = []
    reader = LineReader("job", events.append, Seen(), None, "")
    for episode, reward in ((1, -0.0421), (2, 0.0137)):
        line = {"event": "episode", "symbol": "BTC-USD", "epoch": episode, "epochs": 6, "reward": reward, "loss": 0.2}
        reader(json.dumps(line))
    progress_events = [e for e in events if e.kind == "epoch"]
    assert [e.data["reward"] for e in progress_events] == [-0.0421, 0.0137]

    progress: dict[str, SymbolTraining] = {}
    folded = [_event(i, "train.progress", **e.data) for i, e in enumerate(progress_events)]
    assert fold_training(progress, folded)
    assert progress["BTC-USD"].rewards == [-0.0421, 0.0137]
    assert _label(progress) == "BTC-USD episode 2/6 reward +0.0137"

    page = "/work/results/r-1/report.html"
    assert fold_training(progress, [_event(9, "train.report", symbol="BTC-USD", path=page, passed=False)])
    assert _label(progress) == f"BTC-USD episode 2/6 reward +0.0137\ndid not pass · report: {page}"
