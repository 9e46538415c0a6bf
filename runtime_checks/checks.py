"""Checks as specs and results: a spec says what a check compares and whether it blocks;
a result is what one run of it found. Checks return results; the gate decides.

Both are frozen: a result, once made, is stored and shown as it is (state store,
``console check``, the TUI) and never patched later.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Mapping


class Severity(str, enum.Enum):
    """How a failed check weighs in the gate."""

    BLOCKING = "blocking"
    """A failure keeps the gate shut."""
    ADVISORY = "advisory"
    """A failure is shown, but the gate may still pass."""


@dataclass(frozen=True)
class CheckSpec:
    """What a check is: its name, what it compares, and whether a failure blocks going live."""

    name: str
    compares: str
    """One line for the operator: the things this check holds side by side."""
    severity: Severity = Severity.BLOCKING

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.BLOCKING

    def result(
        self,
        symbol: str,
        passed: bool,
        summary: str,
        figures: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> "CheckResult":
        """A result of this check for ``symbol``."""
        return CheckResult(
            self.name, symbol, passed, summary, _frozen_map(figures), _frozen_map(details), self.severity
        )


@dataclass(frozen=True)
class CheckResult:
    """What one run of a check found for one symbol. Immutable and JSON-serialisable."""

    check: str
    symbol: str
    passed: bool
    summary: str
    """One line: the verdict and the numbers that decided it."""
    figures: Mapping[str, Any] = field(default_factory=dict)
    """Numbers (counts, rates, p-values) the gate criteria read."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Everything else worth showing in full (name lists, per-source differences)."""
    severity: Severity = Severity.BLOCKING

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.BLOCKING

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check, "symbol": self.symbol, "passed": self.passed, "summary": self.summary,
            "figures": _thawed(self.figures), "details": _thawed(self.details), "severity": self.severity.value,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckResult":
        return cls(
            str(data["check"]), str(data["symbol"]), bool(data["passed"]), str(data["summary"]),
            _frozen_map(data.get("figures")), _frozen_map(data.get("details")),
            Severity(data.get("severity", Severity.BLOCKING.value)),
        )  # fmt: skip


ALIGNMENT = CheckSpec(
    "alignment",
    "feature names, order, count and hash: training feature file vs runtime builder vs model checkpoint",
)
DRYRUN = CheckSpec(
    "dryrun",
    "out-of-sample predictions on the newest bars vs 50%, both baselines and trading costs",
)


class _FrozenDict(dict):
    """A dict that refuses changes, so a result cannot be edited after it is made."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("check results are immutable")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True, default=str))


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _FrozenDict({str(k): _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _frozen_map(value: Mapping[str, Any] | None) -> Any:
    return _frozen(value) if value is not None else _FrozenDict()


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value
