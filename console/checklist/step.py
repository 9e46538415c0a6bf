"""What a checklist step is: a small class with a plan, optional guards, and a run.

A step never writes state itself. The engine (`console.checklist.engine`) records the
transition to RUNNING, calls `Step.preflight` and `Step.run` with a `StepContext`, and
records the `StepResult` it returns (or the error it raises) with timing and attempt.

Writing a step::

    class FetchParams(StepParams):
        symbols: list[Symbol]
        days: int = 30

    @register
    class Fetch(Step):
        name = "fetch"
        Params = FetchParams

        def plan(self, ctx):
            return f"fetch candles for {', '.join(ctx.params.symbols)}"

        def run(self, ctx):
            ...
            return StepResult.ok("fetched 3 symbols", outputs=FetchOutputs(candles=12345))

Raise `console.errors.GuardRefused` from `preflight` (or `run`) to end BLOCKED, any other
error to end FAILED (retried if the step is `retryable`). A step's outputs are the pydantic
model it names as ``Outputs`` (`console.outputs`); later steps read them typed with
``ctx.output_of(name, Model)``. A step that learns what an earlier step's outputs must now
say (a replacement instance) asks the engine to supersede them (`StepContext.supersede`).
"""

from __future__ import annotations

import enum
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Mapping, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from console.errors import ChecklistError, Interrupted, UsageError
from console.outputs import NoOutputs, StepOutputs

if TYPE_CHECKING:  # pragma: no cover
    import logging
    from pathlib import Path

    from console.instances import Instances
    from console.resources import Resources
    from console.settings import Settings
    from console.state import StateStore

OutputsT = TypeVar("OutputsT", bound=StepOutputs)


class StepState(str, enum.Enum):
    """Where a step is in its life. Every transition is recorded as an event."""

    PENDING = "pending"
    """Not started yet."""
    RUNNING = "running"
    """Started; a step found RUNNING with no process holding the run lock was interrupted."""
    SUCCEEDED = "succeeded"
    """Finished and did what its plan said."""
    FAILED = "failed"
    """Ended with an error after its retries."""
    SKIPPED = "skipped"
    """Skipped on purpose (`--skip`, `--from`, or the operator in the TUI), with a reason."""
    CANCELLED = "cancelled"
    """Stopped by the operator (Ctrl-C) while running."""
    BLOCKED = "blocked"
    """A guard refused to start it, or its implementation has not landed."""

    @property
    def finished(self) -> bool:
        """True when a resumed run need not run this step again."""
        return self in (StepState.SUCCEEDED, StepState.SKIPPED)


_SYMBOL = re.compile(r"^[A-Z0-9]{2,10}-[A-Z]{3,5}$")


def check_symbol(value: str) -> str:
    """A trading pair such as BTC-USD; anything else (shell metacharacters included) is refused."""
    if not isinstance(value, str) or not _SYMBOL.match(value):
        raise ValueError(f"{value!r} is not a symbol like BTC-USD (BASE-QUOTE, capital letters and digits)")
    return value


def symbol_list(text: str) -> list[str]:
    """``BTC-USD,eth-usd`` as validated symbols: ASCII only (``ß-USD`` is not ``SS-USD``), upper-cased,
    no duplicates, at least one (an empty list never means "all of them")."""
    out: list[str] = []
    for raw in (s.strip() for s in text.split(",")):
        if not raw:
            continue
        if not raw.isascii():
            raise ValueError(f"{raw!r} is not a symbol like BTC-USD (ASCII letters and digits only)")
        symbol = check_symbol(raw.upper())
        if symbol in out:
            raise ValueError(f"{symbol} is listed twice")
        out.append(symbol)
    if not out:
        raise ValueError("no symbols given; leave the option out to mean the default ones")
    return out


def symbols_option(value: str, option: str = "--symbols") -> list[str]:
    """`symbol_list` for a command-line option: bad input is a one-line `UsageError`."""
    try:
        return symbol_list(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _no_duplicates(symbols: list[str]) -> list[str]:
    twice = sorted({s for s in symbols if symbols.count(s) > 1})
    if twice:
        raise ValueError(f"{twice[0]} is listed twice")
    return symbols


Symbol = Annotated[str, AfterValidator(check_symbol)]
"""A validated trading pair, for step parameters."""


class StepParams(BaseModel):
    """Base for a step's parameters: unknown names are an error, values are validated, numbers
    are finite and a boolean is never taken for a number (``epochs = true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key)
                if isinstance(value, bool) and field is not None and field.annotation is not bool:
                    raise ValueError(f"{key!r} takes a number, not the boolean {str(value).lower()}")
        return data


class NoParams(StepParams):
    """For steps that take no parameters."""


@dataclass(frozen=True)
class StepResult:
    """What a step reports when it returns. Immutable; the engine stores it."""

    state: StepState
    summary: str
    """One line for the operator: what was done, with the numbers that matter."""
    details: dict[str, Any] = field(default_factory=dict)
    """Figures and tables shown on demand (JSON-serialisable)."""
    outputs: StepOutputs | None = None
    """What later steps read with `StepContext.output_of`: the step's ``Outputs`` model."""

    @classmethod
    def ok(
        cls, summary: str, details: dict[str, Any] | None = None, *, outputs: StepOutputs | None = None
    ) -> "StepResult":
        return cls(StepState.SUCCEEDED, summary, details or {}, outputs)

    @classmethod
    def skipped(cls, summary: str, details: dict[str, Any] | None = None) -> "StepResult":
        """Nothing to do here, and why (a backend that does not need this step)."""
        return cls(StepState.SKIPPED, summary, details or {})

    @classmethod
    def failed(cls, summary: str, details: dict[str, Any] | None = None) -> "StepResult":
        return cls(StepState.FAILED, summary, details or {})

    @classmethod
    def blocked(cls, summary: str, details: dict[str, Any] | None = None) -> "StepResult":
        return cls(StepState.BLOCKED, summary, details or {})


Superseder = Callable[[str, StepOutputs, str, str], None]
"""``supersede(step_name, outputs, summary, reason)``: the engine's `Engine.supersede_outputs` for this run."""


def _no_superseding(step_name: str, outputs: StepOutputs, summary: str, reason: str) -> None:
    raise ChecklistError(f"cannot supersede {step_name}'s outputs outside a run driven by the engine")


@dataclass
class StepContext:
    """Everything a step may use. Built by the engine for each attempt."""

    run_id: str
    step_name: str
    attempt: int
    params: Any
    """The step's validated `Params` instance (checklist params it declares, plus its own)."""
    settings: "Settings"
    state: "StateStore"
    """The state store: for reading other steps' outputs and recording events; the engine alone
    writes step state."""
    log: "logging.Logger"
    """Writes to this step's log file (redacted); also what `console` shows as the step's log."""
    run_dir: "Path"
    cancelled: threading.Event
    deadline: float
    """`time.monotonic()` value after which the engine gives up on this attempt."""
    emit: Callable[..., None]
    """`emit(kind, message, **data)` records an event for this step (progress, metrics)."""
    resources: "Resources" = None  # type: ignore[assignment]  # filled in by __post_init__
    """What the settings describe, built once (`console.resources`); the engine passes its own."""
    supersede: Superseder = _no_superseding
    """Replace an earlier step's outputs (the relaunch case); the engine records why."""

    def __post_init__(self) -> None:
        if self.resources is None:
            from console.resources import Resources

            self.resources = Resources(self.settings)

    @property
    def instances(self) -> "Instances":
        """The instances service over this run's state store, logging to this step's log."""
        from console.instances import Instances

        return Instances(self.resources, self.state, log=self.log)

    def check_cancelled(self) -> None:
        """Raise `Interrupted` if the operator cancelled or the step's timeout passed."""
        if self.cancelled.is_set():
            raise Interrupted(f"step {self.step_name} was cancelled")

    @property
    def seconds_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def output_of(self, step_name: str, model: type[OutputsT]) -> OutputsT | None:
        """An earlier step's outputs as its model, or None when it recorded none (or they do not fit)."""
        raw = self.state.step_outputs(self.run_id, step_name)
        if not raw:
            return None
        try:
            return model.model_validate(raw)
        except ValidationError:
            return None

    def progress(self, done: float, total: float, label: str = "") -> None:
        """Report progress of this step (shown as a bar by the front ends)."""
        self.emit("progress", label or f"{done}/{total}", done=done, total=total, label=label)


class Step:
    """A checklist step. Subclasses set `name`, `Params` and `Outputs` and implement `plan` and `run`."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[StepParams]] = NoParams
    Outputs: ClassVar[type[StepOutputs]] = NoOutputs
    """The model of what `run` hands on (`StepResult.outputs`); the engine checks it."""
    retryable: ClassVar[bool] = True
    """Whether a failed attempt may be retried (steps with side effects must be idempotent)."""

    def plan(self, ctx: StepContext) -> str:
        """One line: what this step will do with these parameters. Touches nothing."""
        return self.name

    def preflight(self, ctx: StepContext) -> None:
        """Guards that refuse to start: raise `GuardRefused` with the reason."""

    def run(self, ctx: StepContext) -> StepResult:  # pragma: no cover - abstract
        raise NotImplementedError


class NotLandedStep(Step):
    """Stands in for a step whose implementation has not landed: it always ends BLOCKED."""

    def plan(self, ctx: StepContext) -> str:
        return f"{self.name}: not implemented yet"

    def run(self, ctx: StepContext) -> StepResult:
        return StepResult.blocked(f"{self.name}: not implemented yet")


_REGISTRY: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step available to checklists under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def not_landed(name: str, params: type[StepParams] = NoParams) -> type[Step]:
    """Register a placeholder for a step that has not landed yet (ends BLOCKED)."""
    cls = type(f"NotLanded_{name.replace('-', '_')}", (NotLandedStep,), {"name": name, "Params": params})
    return register(cls)


StepCatalog = Mapping[str, type[Step]]
"""Registered step name -> class: what a checklist's step names resolve against."""


def step_class(name: str, catalog: StepCatalog) -> type[Step]:
    """The class ``catalog`` registers as ``name``, or `ChecklistError` naming the known ones."""
    try:
        return catalog[name]
    except KeyError:
        known = ", ".join(sorted(catalog))
        raise ChecklistError(f"unknown step {name!r}", hint=f"known steps: {known}") from None


def registered_steps() -> dict[str, type[Step]]:
    """Every step registered so far (`console.steps` registers the shipped ones when imported)."""
    return dict(_REGISTRY)
