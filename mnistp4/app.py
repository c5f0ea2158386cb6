"""The application object: config + plugins + registry. It is the *context* (``mnistp4.api.Context``)
that every acting registered callable receives first, and that commands get with
``@mnistp4.pass_context``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from . import config as config_mod
from .config import Config, Key
from .errors import UsageError
from .plugins import PLUGINS_ENV, PluginManager
from .registry import Registry


class App:
    """Everything a stage needs: ``config``, ``registry``, ``console``, ``progress()``, ``emit()``."""

    def __init__(self, config: Config, manager: PluginManager, console: Console | None = None):
        self.config = config
        self.manager = manager
        self.console = console or Console()

    @property
    def registry(self) -> Registry:
        return self.manager.registry

    @property
    def root(self) -> Path:
        return self.config.root

    def get(self, kind: str, name: str | None = None, *, key: str | None = None) -> Any:
        """A registered object by name, or by the name a config key holds (``key="model"``)."""
        if name is None:
            if key is None:
                raise TypeError("get() needs a name or a config key")
            name = str(self.config[key])
        return self.registry.get(kind, name)

    def emit(self, hook: str, **kwargs) -> None:
        self.manager.emit(hook, **kwargs)

    def path(self, key: str) -> Path:
        """Shorthand for ``config.path(key)`` (and lets a source written as ``source(config, split)``
        for earlier versions keep working with the context in ``config``'s place)."""
        return self.config.path(key)

    def __getitem__(self, key: str) -> Any:
        return self.config[key]

    def override(self, **values: Any) -> None:
        """Command-line flags: set keys whose value is not ``None`` (a choice that names nothing
        registered is a usage error, as with ``--set``)."""
        for key, value in values.items():
            if value is not None:
                self.config.set(key, value, "command line")
        check_choices(self.config, self.registry)

    def progress(self, transient: bool = False) -> Progress:
        return Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=transient,
        )


def create_app(
    *,
    root: Path | None = None,
    plugin_dirs: list[str] | None = None,
    config_files: list[Path] | None = None,
    settings: list[str] | None = None,
    env: dict[str, str] | None = None,
    console: Console | None = None,
    load_entry_points: bool = True,
) -> App:
    """Load config, then plugins in the documented order, then declare plugin keys."""
    env = dict(os.environ) if env is None else env
    cfg = config_mod.load(root, config_files, settings, env)
    manager = PluginManager()
    manager.load_shipped()
    if load_entry_points:
        manager.load_entry_points()
    extra = list(cfg.get("plugins") or [])
    extra += [p for p in env.get(PLUGINS_ENV, "").split(os.pathsep) if p]
    extra += list(plugin_dirs or [])
    manager.load_extra(extra)

    for info, fn in manager.impls("register_config_keys"):

        def register(key: str, default: Any, help: str = "", _owner=info.name) -> None:
            cfg.declare(Key(key, default, help, _owner))

        manager.call(info, fn, "register_config_keys", register=register)
    cfg.apply_pending()
    manager.collect_registrations()
    check_choices(cfg, manager.registry)
    return App(cfg, manager, console)


def check_choices(cfg: Config, registry: Registry) -> None:
    """Config keys that name a registered object must name one that is registered (exit 2)."""
    from .api import CHOICE_KEYS

    for key, kind in CHOICE_KEYS.items():
        if key not in cfg.keys:
            continue
        value = cfg[key]
        names = registry.names(kind)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v not in names:
                raise UsageError(
                    f"config key {key!r} = {v!r} (from {cfg.origin(key)}) names no registered "
                    f"{kind[:-1].replace('_', ' ')}; choices: {', '.join(names) or 'none'}"
                )
