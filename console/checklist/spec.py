"""Checklists as data: load a TOML checklist by name (shipped) or path, and validate it.

A checklist file::

    [checklist]
    name = "retrain"
    description = "..."

    [params]                 # shared by every step that declares them
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]
    epochs = 15

    [profiles.sandbox.params]  # overrides for one profile
    epochs = 2

    [defaults]               # retry and timeout policy for every step
    retries = 1
    backoff_s = 2.0
    timeout_s = 1800

    [[steps]]
    name = "fetch"           # unique in the checklist; `step` defaults to it
    timeout_s = 900
    [steps.params]           # this step's own parameters
    ...

Every parameter must be declared by the `Params` of a step that uses it; anything else
is an error naming the parameter, so a typo never silently does nothing.

Step names resolve against the catalog the caller passes (`console.steps.catalog()` for
the shipped steps): this package knows what a step is, never which steps exist.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from console.checklist.step import Step, StepCatalog, StepParams, step_class
from console.errors import ChecklistError
from console.inputs import read_regular_file
from console.numbers import finite_in

SHIPPED_PACKAGE = "console.checklist"
SHIPPED_DIR = "checklists"


@dataclass(frozen=True)
class StepSpec:
    """One step of a checklist, with its validated parameters and policy."""

    name: str
    step: str
    params: StepParams
    retries: int
    backoff_s: float
    timeout_s: float
    step_cls: type[Step]

    @property
    def policy(self) -> dict[str, float]:
        """Retries, backoff and timeout, as the run records them when it is created."""
        return {"retries": self.retries, "backoff_s": self.backoff_s, "timeout_s": self.timeout_s}


@dataclass(frozen=True)
class ChecklistSpec:
    name: str
    description: str
    source: str
    """Where it was loaded from: the shipped name or a file path."""
    steps: tuple[StepSpec, ...]
    params: dict[str, Any] = field(default_factory=dict)
    """The shared parameters after profile overrides, command-line overrides and the operator's limits."""
    checklist_limits: dict[str, float] = field(default_factory=dict)
    """The checklist's own value of each limit it takes (budget_usd, ...), before the operator's tightened it."""

    def index_of(self, name: str) -> int:
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        known = ", ".join(s.name for s in self.steps)
        raise ChecklistError(f"checklist {self.name!r} has no step {name!r}", hint=f"its steps: {known}")


def shipped_checklists() -> list[str]:
    folder = resources.files(SHIPPED_PACKAGE) / SHIPPED_DIR
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read(name_or_path: str) -> tuple[str, str]:
    """(text, source) for a shipped checklist name or a file path."""
    looks_like_path = "/" in name_or_path or name_or_path.endswith(".toml") or Path(name_or_path).exists()
    if looks_like_path:
        path = Path(name_or_path).expanduser()
        data = read_regular_file(path, what="checklist file", error=ChecklistError)
        try:
            return data.decode("utf-8"), str(path)
        except UnicodeDecodeError:
            raise ChecklistError(f"checklist file {path} is not UTF-8 text, so not TOML") from None
    resource = resources.files(SHIPPED_PACKAGE) / SHIPPED_DIR / f"{name_or_path}.toml"
    if not resource.is_file():
        known = ", ".join(shipped_checklists())
        raise ChecklistError(
            f"unknown checklist {name_or_path!r}", hint=f"shipped: {known}; or pass a path to a .toml file"
        )
    return resource.read_text(), name_or_path


def load_checklist(
    name_or_path: str,
    *,
    steps: StepCatalog,
    profile: str = "sandbox",
    overrides: dict[str, Any] | None = None,
    limits: dict[str, float] | None = None,
) -> ChecklistSpec:
    """Load and validate a checklist against the step catalog ``steps``; every problem is a
    one-line `ChecklistError`. ``limits`` (the operator's explicit budget and runtime limits)
    only ever tighten the checklist's (`console.settings_shown`)."""
    text, source = _read(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ChecklistError(f"{source}: TOML syntax error {exc}") from None
    return parse_checklist(
        data, source=source, profile=profile, overrides=overrides or {}, steps=steps, limits=limits or {}
    )


_TOP_KEYS = {"checklist", "params", "profiles", "defaults", "steps"}
_STEP_KEYS = {"name", "step", "params", "retries", "backoff_s", "timeout_s"}
_POLICY_DEFAULTS = {"retries": 1, "backoff_s": 2.0, "timeout_s": 1800.0}
MAX_RETRIES, MAX_BACKOFF_S, MAX_TIMEOUT_S = 100, 3600.0, 7 * 86400.0
"""Bounds of a step's policy: a larger backoff or timeout is a typo, and inf or nan switch the guard off."""


def parse_checklist(
    data: dict[str, Any],
    *,
    source: str,
    profile: str,
    overrides: dict[str, Any],
    steps: StepCatalog,
    limits: dict[str, float] | None = None,
) -> ChecklistSpec:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ChecklistError(
            f"{source}: unknown section {sorted(unknown)[0]!r}", hint=f"sections: {', '.join(sorted(_TOP_KEYS))}"
        )
    head = _table(data, "checklist", source)
    name = str(head.get("name") or Path(source).stem)
    shared = dict(_table(data, "params", source))
    own_profile = _table(_table(data, "profiles", source), profile, source, f"[profiles.{profile}]")
    shared.update(_table(own_profile, "params", source, f"[profiles.{profile}.params]"))
    shared.update({k: v for k, v in overrides.items() if v is not None})

    defaults = {**_POLICY_DEFAULTS, **_table(data, "defaults", source)}
    bad_default = set(defaults) - set(_POLICY_DEFAULTS)
    if bad_default:
        raise ChecklistError(f"{source}: unknown key {sorted(bad_default)[0]!r} in [defaults]")

    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ChecklistError(f"{source}: no [[steps]] listed")

    used: set[str] = set()
    checklist_limits: dict[str, float] = {}
    tightened: dict[str, float] = {}
    specs: list[StepSpec] = []
    seen: set[str] = set()
    for number, raw in enumerate(raw_steps, start=1):
        if not isinstance(raw, dict) or "name" not in raw:
            raise ChecklistError(f"{source}: step {number} has no name")
        step_name = str(raw["name"])
        if step_name in seen:
            raise ChecklistError(f"{source}: step {step_name!r} is listed twice")
        seen.add(step_name)
        extra = set(raw) - _STEP_KEYS
        if extra:
            raise ChecklistError(f"{source}: step {step_name!r} has unknown key {sorted(extra)[0]!r}")
        registered = str(raw.get("step", step_name))
        cls = step_class(registered, steps)
        fields = set(cls.Params.model_fields)
        own = dict(_table(raw, "params", source, f"params of step {step_name!r}"))
        values = {k: v for k, v in shared.items() if k in fields}
        used.update(values)
        values.update(own)
        for key, limit in (limits or {}).items():
            current = values.get(key, cls.Params.model_fields[key].default) if key in fields else None
            if isinstance(current, (int, float)) and not isinstance(current, bool):
                checklist_limits.setdefault(key, float(current))
                values[key] = tightened[key] = min(float(current), limit)
        try:
            params = cls.Params(**values)
        except ValidationError as exc:
            raise ChecklistError(f"{source}: step {step_name!r}: {_one_line(exc)}") from None
        policy = {**defaults, **{k: raw[k] for k in ("retries", "backoff_s", "timeout_s") if k in raw}}
        try:
            retries = finite_in(policy["retries"], 0, MAX_RETRIES, what="retries")
            backoff = finite_in(policy["backoff_s"], 0, MAX_BACKOFF_S, what="backoff_s")
            timeout = finite_in(policy["timeout_s"], 0, MAX_TIMEOUT_S, what="timeout_s", low_open=True)
            if retries != int(retries):
                raise ValueError(f"retries must be a whole number (got {policy['retries']!r})")
        except ValueError as exc:
            raise ChecklistError(f"{source}: step {step_name!r}: {exc}") from None
        specs.append(StepSpec(step_name, registered, params, int(retries), backoff, timeout, cls))

    unused = set(shared) - used
    if unused:
        raise ChecklistError(
            f"{source}: unknown parameter {sorted(unused)[0]!r}: no step of this checklist takes it",
            hint="check the spelling, or remove it",
        )
    shared.update(tightened)  # the run records (and the watchdog reads) the limits that apply
    return ChecklistSpec(name, str(head.get("description", "")), source, tuple(specs), shared, checklist_limits)


def _table(data: dict[str, Any], key: str, source: str, what: str | None = None) -> dict[str, Any]:
    """``data[key]`` when it is a table (``{}`` when absent); a one-line error when it is not."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ChecklistError(
            f"{source}: {what or f'[{key}]'} must be a table of key = value, not {type(value).__name__}",
            hint="see the shipped checklist: `console plan --checklist retrain`",
        )
    return value


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    if err.get("type") == "extra_forbidden":
        return f"unknown parameter {loc!r}"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"parameter {loc!r}: {msg}" if loc else msg
