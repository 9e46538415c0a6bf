"""The engine's coins as events, and the board that folds them back: hundreds of coins in a few lines.

The engine steps (`console.steps.engine`) record one ``engine.queued`` event with every coin
the run resolved, then one ``engine.coin`` event each time a coin changes state::

    engine.queued  {"symbols": ["BTC-USD", ...]}
    engine.coin    {"symbol": "BTC-USD", "state": "running"}
    engine.coin    {"symbol": "BTC-USD", "state": "done", "seconds": 41.2}
    engine.coin    {"symbol": "NEW-USD", "state": "skipped", "why": "2 days of history"}

States are `STATES`. `CoinBoard` folds those events (from the state store, so a run driven
by another process reads the same) into counts by state, the slowest running coins and the
failed ones with their reason; `board_lines` draws that at a given time. No Textual here:
the TUI's training pane shows these lines (`console.tui.panes.TrainingView`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from console.state.records import EventRecord

QUEUED_EVENT = "engine.queued"
COIN_EVENT = "engine.coin"
STATES = ("queued", "running", "done", "failed", "skipped")


STEP_ENDED = ("step.succeeded", "step.failed", "step.cancelled", "step.skipped", "step.blocked")


def _format_s(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class CoinEvents:
    """What the engine steps call: one event per coin and change (``emit`` is the step's ``ctx.emit``)."""

    def __init__(self, emit: Callable[..., None]) -> None:
        self.emit = emit

    def queued(self, symbols: Iterable[str]) -> None:
        symbols = list(symbols)
        self.emit(QUEUED_EVENT, f"{len(symbols)} coins queued", symbols=symbols)

    def state(self, symbol: str, state: str, why: str = "", seconds: float | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"unknown coin state {state!r}; one of {', '.join(STATES)}")
        data: dict[str, Any] = {"symbol": symbol, "state": state}
        if why:
            data["why"] = why[:300]
        if seconds is not None:
            data["seconds"] = round(float(seconds), 3)
        self.emit(COIN_EVENT, f"{symbol} {state}" + (f": {why}" if why else "")[:300], **data)


@dataclass
class Coin:
    state: str
    since: float
    """When it entered this state (the event's time)."""
    why: str = ""
    seconds: float | None = None
    step: str | None = None
    """The step that recorded this state."""


@dataclass
class CoinBoard:
    """Every coin's latest state, folded from the run's events."""

    coins: dict[str, Coin] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    """Coins in the order they last failed or were skipped (newest last)."""

    def fold(self, events: Iterable[EventRecord]) -> bool:
        """Take ``events`` (oldest first); True when any of them was the engine's."""
        changed = False
        for event in events:
            if event.kind == QUEUED_EVENT:
                for symbol in event.data.get("symbols") or ():
                    self.coins[str(symbol)] = Coin("queued", event.ts)
                changed = True
            elif event.kind == COIN_EVENT and event.data.get("state") in STATES:
                symbol, state = str(event.data.get("symbol", "?")), str(event.data["state"])
                before = self.coins.get(symbol)
                seconds = event.data.get("seconds")
                if seconds is None and state in ("done", "failed") and before and before.state == "running":
                    seconds = event.ts - before.since
                self.coins[symbol] = Coin(state, event.ts, str(event.data.get("why", "")), seconds, event.step)
                if symbol in self.finished:
                    self.finished.remove(symbol)
                if state in ("failed", "skipped"):
                    self.finished.append(symbol)
                changed = True
            elif event.kind in STEP_ENDED and event.step:
                # The step stopped (killed, timed out, cancelled): what it still ran is no longer running.
                for coin in self.coins.values():
                    if coin.state == "running" and coin.step == event.step:
                        coin.state, coin.since, coin.why = "queued", event.ts, f"{event.kind} while it ran"
                        changed = True
        return changed

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for coin in self.coins.values():
            counts[coin.state] += 1
        return counts

    def running(self) -> bool:
        return any(c.state == "running" for c in self.coins.values())

    def lines(self, now: float, *, slowest: int = 5, failed: int = 6) -> list[str]:
        """The board at ``now``: counts; the ``slowest`` running longest; the newest ``failed`` failed
        coins with their reason; the skipped ones in one line. Never one line per coin."""
        if not self.coins:
            return []
        counts = self.counts()
        out = [f"{len(self.coins)} coins: " + " · ".join(f"{state} {counts[state]}" for state in STATES)]
        running = sorted(((now - c.since, s) for s, c in self.coins.items() if c.state == "running"), reverse=True)
        if running:
            shown = ", ".join(f"{s} {_format_s(t)}" for t, s in running[:slowest])
            more = f" (+{len(running) - slowest})" if len(running) > slowest else ""
            out.append(f"slowest running: {shown}{more}")
        done = [c.seconds for c in self.coins.values() if c.state == "done" and c.seconds is not None]
        if done:
            out.append(f"done in {_format_s(sum(done) / len(done))} on average, longest {_format_s(max(done))}")
        fails = [s for s in self.finished if self.coins[s].state == "failed"]
        if fails:
            out.append(f"failed {len(fails)}:")
            out += [f"  {s}: {self.coins[s].why or 'no reason given'}" for s in reversed(fails[-failed:])]
            if len(fails) > failed:
                out.append(f"  ... and {len(fails) - failed} more (the run's summary lists them all)")
        skips = [s for s in self.finished if self.coins[s].state == "skipped"]
        if skips:
            first = self.coins[skips[-1]]
            out.append(
                f"skipped {len(skips)}: {', '.join(reversed(skips[-4:]))}{' ...' if len(skips) > 4 else ''}"
                f" (latest: {first.why or 'no reason given'})"
            )
        return out
