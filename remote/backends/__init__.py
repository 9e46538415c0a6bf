"""The registered training backends (`remote.backends.base.TrainingBackend`).

Adding one is one module and one line here: ``"name": "remote.backends.<module>:<Class>"``.
Backends are imported on first use. The console builds an instance from settings in one
place (``console/resources``); nothing else names a backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # pragma: no cover
    from remote.backends.base import BackendClass

BACKENDS: dict[str, str] = {
    "batch": "remote.backends.batch:BatchBackend",
    "ssh": "remote.backends.ssh:SshBackend",
    "sagemaker": "remote.backends.sagemaker:SageMakerBackend",
}
"""Backend name -> ``module:Class``."""


def backend_names() -> tuple[str, ...]:
    return tuple(sorted(BACKENDS))


def backend_class(name: str) -> "BackendClass":
    """The class registered as ``name``; unknown names raise ``KeyError`` naming the known ones."""
    import importlib

    try:
        target = BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown training backend {name!r} (known: {', '.join(backend_names()) or 'none'})") from None
    module, _, cls = target.partition(":")
    return cast("BackendClass", getattr(importlib.import_module(module), cls))
