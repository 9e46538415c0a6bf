"""The registered model families (`training.families.base.ModelFamily`).

Adding one is one module and one line here: ``"name": "training.families.<module>:<Class>"``.
Families are imported on first use, so a host that trains one family never imports the
libraries of another (LightGBM, gymnasium, ...).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from training.errors import BadTrainingConfig

if TYPE_CHECKING:  # pragma: no cover
    from training.families.base import ModelFamily

FAMILIES: dict[str, str] = {
    "dql": "training.families.dql:DqlFamily",
    "gbm": "training.families.gbm:GbmFamily",
    "lstm": "training.families.lstm:LstmFamily",
    "regime": "training.families.regime:RegimeFamily",
    "health": "training.families.health:HealthFamily",
}
"""Family name -> ``module:Class``."""


def family_names() -> tuple[str, ...]:
    return tuple(sorted(FAMILIES))


def get_family(name: str) -> "ModelFamily":
    """A new instance of the family registered as ``name``; unknown names are bad input."""
    try:
        target = FAMILIES[name]
    except KeyError:
        known = ", ".join(family_names()) or "none"
        raise BadTrainingConfig(f"unknown model family {name!r} (known: {known})") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)()
