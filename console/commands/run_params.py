"""Flags of `console run` that set a checklist's parameters (the investment checklist's, from the
seed's ``train.py``). Each is None unless given; a checklist none of whose steps takes one refuses
it as bad input (exit 2: "unknown parameter ... no step of this checklist takes it")."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

PARAM_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--max-days", {"type": click.IntRange(1, 3000), "help": "Days of daily data to train on (investment)."}),
    ("--regime-type", {"type": click.Choice(["gru", "transformer"]), "help": "The regime model (investment)."}),
    ("--health-type", {"type": click.Choice(["autoencoder", "vae"]), "help": "The health model (investment)."}),
    ("--epochs", {"type": click.IntRange(1, 1000), "help": "Most training epochs (overrides the checklist)."}),
    ("--bucket", {"help": "The data bucket, or a store URL (investment)."}),
    ("--output-dir", {"type": click.Path(file_okay=False), "help": "Where the trained models go (investment)."}),
    ("--skip-upload", {"is_flag": True, "default": None, "help": "Publish nothing to the bucket (investment)."}),
)


def param_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the flags; the command receives them together as ``param_overrides`` (unset ones left out)."""
    names = [flag.lstrip("-").replace("-", "_") for flag, _ in PARAM_FLAGS]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in names}
        kwargs["param_overrides"] = {k: v for k, v in given.items() if v is not None and v is not False}
        return fn(*args, **kwargs)

    for flag, options in reversed(PARAM_FLAGS):
        wrapper = click.option(flag, **options)(wrapper)
    return wrapper
