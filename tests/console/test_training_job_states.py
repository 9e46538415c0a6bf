"""A managed training job's states reach the TUI's training pane: ``train.job`` events (the
train step emits one per SageMaker secondary status) fold into the symbol's row beside its
epochs, and the pane's label shows them."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from console.state.records import EventRecord
from console.tui.figures import SymbolTraining, fold_training
from console.tui.panes import TrainingView


def _event(i: int, kind: str, **data: object) -> EventRecord:
    return EventRecord(id=i, run_id="r", step=None, ts=float(i), kind=kind, message="", data=data)


def test_job_states_fold_beside_the_epochs_and_show_in_the_training_pane() -> None:
    progress: dict[str, SymbolTraining] = {}
    events = [
        _event(1, "train.job", symbol="BTC-USD", job="train-r-btc-usd", state="Starting"),
        _event(2, "train.job", symbol="BTC-USD", job="train-r-btc-usd", state="Training"),
        _event(3, "train.progress", symbol="BTC-USD", epoch=2, epochs=4, loss=0.5, val_metric=0.6),
        _event(4, "train.job", symbol="BTC-USD", job="train-r-btc-usd", state="Interrupted"),
    ]
    assert fold_training(progress, events)
    row = progress["BTC-USD"]
    assert (row.epoch, row.epochs, row.job_state, row.losses) == (2, 4, "Interrupted", [0.5])

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

    assert asyncio.run(drive()) == "BTC-USD ep 2/4 loss 0.500 val 0.600 · Interrupted"
