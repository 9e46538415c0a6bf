"""The operator's limits against a checklist's, and how settings are shown with them.

One precedence for budget and runtime limits: the operator's explicit settings (flags >
environment > config file) override a checklist's values, except that a stricter checklist
limit wins. Limits only ever tighten: the effective limit is the smaller of the two, and a
limit the operator did not set explicitly leaves the checklist's value alone.
`console plan` and `console config show` print the same lines (`limit_lines`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from console.checklist.spec import ChecklistSpec
    from console.settings import LoadedSettings

LIMIT_SETTINGS: dict[str, str] = {"budget_usd": "budget.run_usd", "max_runtime_hours": "max_runtime_hours"}
"""Checklist parameter -> the setting an operator sets it with."""

PRECEDENCE = (
    "budget and runtime limits: your explicit settings (flags > environment > config file) override the"
    " checklist's, but a stricter checklist limit wins (limits only tighten)"
)


def _setting(loaded: LoadedSettings, dotted: str) -> Any:
    value: Any = loaded.settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def operator_limits(loaded: LoadedSettings) -> dict[str, float]:
    """The limits the operator set explicitly (not left at their defaults), by checklist parameter."""
    return {
        param: float(_setting(loaded, setting))
        for param, setting in LIMIT_SETTINGS.items()
        if loaded.origins.get(setting, "default") != "default"
    }


def limit_lines(loaded: LoadedSettings, spec: ChecklistSpec | None = None) -> list[str]:
    """The precedence, then each limit: yours (and where from), the checklist's, and the one that applies."""
    lines = [PRECEDENCE]
    for param, setting in LIMIT_SETTINGS.items():
        origin = loaded.origins.get(setting, "default")
        yours = f"{setting} = {_setting(loaded, setting):g} ({origin})" if origin != "default" else "not set by you"
        if spec is None:
            lines.append(f"  {param}: {yours}")
            continue
        checklist = spec.checklist_limits.get(param)
        effective = spec.params.get(param, checklist)
        if checklist is None:
            lines.append(f"  {param}: {yours}; no step of this checklist takes it")
        else:
            lines.append(f"  {param}: {effective:g} applies ({yours}; checklist {checklist:g})")
    return lines
