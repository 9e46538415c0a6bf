"""Which model each symbol trusts, settled when a new run's models arrive: challenge, expiry, one commit.

A run's artifact root says which of *its* models passed their rules (its
``champions/<UNIT>.json`` and ``roster.json``). `settle` merges that into a local models
directory that may already trust an older champion:

- a newly passed model (the *challenger*) meets the current champion on the same bars
  through ``challenge(unit, challenger_folder, champion_folder)``, when one is given; it
  takes the place only if it wins (`Challenge`), and the roster keeps the line that says
  why;
- a champion expires ``champion_days`` after it was promoted: an expired champion is not
  defended, and a failed retrain then leaves the unit with **no** champion (a lucky
  model does not hold its place for ever);
- ``roster.json`` is the commit point: the pointer files under ``champions/`` are written
  (or removed) first and ``roster.json`` last, all under the registry lock, and a reader
  that finds the two disagreeing (a crash between them) believes ``roster.json``
  (`trusted_folder`). So the roster and the pointers never tell two stories.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from training import registry

DEFAULT_CHAMPION_DAYS = 30.0


@dataclass(frozen=True)
class Challenge:
    """A challenger against the current champion on the same bars."""

    won: bool
    line: str
    """The figures both had on those bars, and the rule that decided (for the roster)."""


ChallengeFn = Callable[[str, Path, Path], Challenge]


def expired(pointer: Mapping[str, Any], *, days: float, now: datetime) -> bool:
    """True when a champion pointer was promoted more than ``days`` ago (or says nothing of when)."""
    stamp = pointer.get("promoted_at")
    if not stamp:
        return True
    try:
        promoted = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return True
    return now - promoted > timedelta(days=float(days))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def settle(
    root: Path,
    incoming: Path,
    *,
    challenge: ChallengeFn | None = None,
    champion_days: float = DEFAULT_CHAMPION_DAYS,
    now: datetime | None = None,
) -> dict[str, str]:
    """Merge the champions of the run root ``incoming`` into ``root`` (whose model folders are
    already in place); return a line per unit saying who holds the place and why."""
    root, incoming = Path(root), Path(incoming)
    now = now or datetime.now(timezone.utc)
    new_roster = registry.read_roster(incoming)
    lines: dict[str, str] = {}
    with registry.registry_lock(root):
        roster = registry.read_roster(root)
        units = set(roster["symbols"]) | set(new_roster["symbols"])
        units |= {p.stem for p in (root / "champions").glob("*.json")} if (root / "champions").is_dir() else set()
        for unit in sorted(units):
            registry.check_unit(unit)
            entry = dict(roster["symbols"].get(unit, {}))
            current = _current(root, unit, entry)
            arriving = dict(new_roster["symbols"].get(unit, {}))
            candidate = _read(incoming / "champions" / f"{unit}.json") if arriving.get("latest_passed") else None
            if candidate is not None and candidate.get("model_dir") != arriving.get("latest"):
                candidate = None  # the run's champion is an older model of that run, not a new pass
            winner, line = _decide(root, unit, current, candidate, challenge, champion_days, now)
            pointer = root / "champions" / f"{unit}.json"
            if winner is None:
                pointer.unlink(missing_ok=True)
            elif _read(pointer) != winner:
                registry.write_json_atomic(pointer, winner)
            if arriving:
                entry.update({k: arriving[k] for k in ("latest", "latest_passed", "latest_reasons") if k in arriving})
            entry["champion"] = winner.get("model_dir") if winner else None
            entry["champion_promoted_at"] = winner.get("promoted_at") if winner else None
            entry["champion_note"] = line
            roster["symbols"][unit] = entry
            lines[unit] = line
        roster["updated_at"] = registry.utc_now_iso()
        roster["champion_days"] = float(champion_days)
        registry.write_json_atomic(root / "roster.json", roster)  # the commit point: last
        _fsync_dir(root)
    return lines


def _current(root: Path, unit: str, entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The champion ``root`` trusts now: the roster's word, its pointer only when they agree."""
    pointer = _read(root / "champions" / f"{unit}.json")
    if "champion" in entry and (pointer is None or pointer.get("model_dir") != entry.get("champion")):
        return (
            None
            if not entry.get("champion")
            else {"model_dir": entry["champion"], "promoted_at": entry.get("champion_promoted_at")}
        )
    return pointer


def _decide(
    root: Path,
    unit: str,
    current: dict[str, Any] | None,
    candidate: dict[str, Any] | None,
    challenge: ChallengeFn | None,
    days: float,
    now: datetime,
) -> tuple[dict[str, Any] | None, str]:
    stale = current is not None and expired(current, days=days, now=now)
    if current is not None and not (root / str(current.get("model_dir"))).is_dir():
        current, stale = None, False
    if candidate is None:
        if current is None:
            return None, "no champion: no model has passed its rules"
        if stale:
            return (
                None,
                f"no champion: {current['model_dir']} expired (promoted {current.get('promoted_at')}, {days:g} days)",
            )
        return current, f"{current['model_dir']} keeps its place (no new model passed)"
    fresh = {**candidate, "promoted_at": registry.utc_now_iso()}
    if current is None or current.get("model_dir") == candidate.get("model_dir"):
        return fresh, f"{candidate['model_dir']} promoted (passed its rules; no champion to meet)"
    if stale:
        return fresh, f"{candidate['model_dir']} promoted ({current['model_dir']} had expired after {days:g} days)"
    if challenge is None:
        return (
            fresh,
            f"{candidate['model_dir']} promoted (passed its rules; no comparison with {current['model_dir']} asked)",
        )
    outcome = challenge(unit, root / str(candidate["model_dir"]), root / str(current["model_dir"]))
    if outcome.won:
        return fresh, f"{candidate['model_dir']} promoted over {current['model_dir']}: {outcome.line}"
    return current, f"{current['model_dir']} keeps its place over {candidate['model_dir']}: {outcome.line}"


def trusted_folder(root: Path, unit: str) -> tuple[bool, str | None]:
    """Whether ``roster.json`` speaks of ``unit``'s champion, and what it says (a folder
    relative to ``root``, or None for none). When it does not, the pointer file decides."""
    entry = registry.read_roster(Path(root))["symbols"].get(unit)
    if not isinstance(entry, dict) or "champion" not in entry:
        return False, None
    champion = entry.get("champion")
    return True, (str(champion) if champion else None)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
