"""What every command needs, built lazily from the global flags: settings, the resources they
describe (`console.resources`), and the state store.

Commands receive it with ``@pass_app``; nothing is loaded until a command asks, so
``console --help`` and ``console plan`` stay fast and touch no state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

if TYPE_CHECKING:  # imported when first used: pydantic alone costs ~0.3 s, too much for `console tui`'s first frame
    from console.instances import Instances
    from console.resources import Resources
    from console.settings import LoadedSettings, Settings
    from console.state import StateStore

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """The global flags, and the settings and store they lead to."""

    config: str | None = None
    profile: str | None = None
    state_dir: str | None = None
    debug: bool = False
    _loaded: LoadedSettings | None = field(default=None, repr=False)
    _store: StateStore | None = field(default=None, repr=False)
    _resources: Resources | None = field(default=None, repr=False)

    def flag_overrides(self) -> dict[str, Any]:
        return {"profile": self.profile, "state_dir": self.state_dir}

    @property
    def loaded(self) -> LoadedSettings:
        if self._loaded is None:
            from console.settings import load_settings

            self._loaded = load_settings(config=self.config, flags=self.flag_overrides())
        return self._loaded

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    @property
    def resources(self) -> Resources:
        """The objects the settings describe, built once for the process (`console.resources`)."""
        if self._resources is None:
            from console.resources import Resources

            self._resources = Resources(self.settings)
        return self._resources

    @property
    def instances(self) -> Instances:
        """The instances service over this state store (`console.instances`)."""
        from console.instances import Instances

        return Instances(self.resources, self.store)

    @property
    def store(self) -> StateStore:
        if self._store is None:
            from console.state import StateStore

            self._store = StateStore.open(Path(self.settings.state_dir))
        return self._store


def pass_app(fn: F) -> F:
    """Give a command the `App`, after applying the command-level copies of the global flags."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        app = ctx.ensure_object(App)
        for name in ("config", "profile", "state_dir"):
            value = kwargs.pop(name, None)
            if value is not None:
                setattr(app, name, value)
        if kwargs.pop("debug", False):
            app.debug = True
        return fn(app, *args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


def common_options(fn: F) -> F:
    """The global flags, accepted after the subcommand too (``console run --profile aws``)."""
    fn = click.option("--debug", is_flag=True, default=False, help="Show tracebacks on errors.")(fn)
    fn = click.option("--state-dir", type=click.Path(file_okay=False), help="State directory (or RC_STATE_DIR).")(fn)
    fn = click.option("--profile", type=str, help="sandbox or aws (or RC_PROFILE).")(fn)
    fn = click.option("--config", type=click.Path(dir_okay=False), help="Config file (or RC_CONFIG).")(fn)
    return fn
