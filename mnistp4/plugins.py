"""The plugin manager: finds plugins, loads them in a fixed order, and collects registrations.

Load order (later may replace earlier registrations, but only with ``override=True``):

1. **shipped** — the modules listed in ``mnistp4.stages.SHIPPED`` (the top-level ``plugins/``
   folder of the checkout, installed as ``mnistp4.stages``), in that order;
2. **entry points** — installed packages that declare ``[project.entry-points.mnistp4]``;
3. **extra** — in this order: the ``plugins`` config key, the ``MNISTP4_PLUGINS`` environment
   variable (``os.pathsep``-separated), and ``--plugins-dir`` on the command line. Each item is a
   folder (every ``*.py`` in it not starting with ``_`` is a plugin; the folder is put on
   ``sys.path`` so plugins can import their own helpers), a ``.py`` file, or an importable module.

A plugin's name is its stage-qualified module name for shipped plugins (``models.seed_cnn``), an
entry point's name, or a file's stem. Names must be unique.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pluggy

from . import hookspecs
from .errors import Mnistp4Error, PluginError, UsageError
from .registry import KINDS, Registry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mnistp4"
PLUGINS_ENV = "MNISTP4_PLUGINS"


@dataclass
class PluginInfo:
    name: str
    origin: str  # "shipped", "entry point <dist>", or a path
    module: Any
    hooks: list[str] = field(default_factory=list)


class PluginManager:
    """pluggy's manager plus load order, provenance and error attribution."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.registry = Registry()

    # -- loading ---------------------------------------------------------------------------------
    def add(self, module: Any, name: str, origin: str) -> PluginInfo:
        if any(p.name == name for p in self.plugins):
            other = next(p for p in self.plugins if p.name == name)
            raise UsageError(f"two plugins are named {name!r}: {other.origin} and {origin}; rename one")
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as e:
            raise PluginError(name, str(getattr(e, "hookimpl", "?")), str(e)) from None
        hooks = sorted(h.name for h in (self.pm.get_hookcallers(module) or []))
        info = PluginInfo(name, origin, module, hooks)
        self.plugins.append(info)
        log.debug("loaded plugin %s from %s", name, origin)
        return info

    def load_shipped(self) -> None:
        from mnistp4.stages import SHIPPED

        for name, modname in SHIPPED:
            self.add(_import(modname, name, "shipped"), name, "shipped")

    def load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep.dist, "name", "?") if getattr(ep, "dist", None) else "?"
            try:
                module = ep.load()
            except Exception as e:  # a broken installed plugin must be named
                raise PluginError(ep.name, "<load>", f"{type(e).__name__}: {e}") from e
            self.add(module, ep.name, f"entry point ({dist})")

    def load_extra(self, items: list[str]) -> None:
        for item in items:
            item = str(item).strip()
            if not item:
                continue
            path = Path(os.path.expanduser(item))
            if path.is_dir():
                if str(path.resolve()) not in sys.path:
                    sys.path.insert(0, str(path.resolve()))
                for f in sorted(path.glob("*.py")):
                    if not f.stem.startswith("_"):
                        self.add(_import_file(f), f.stem, str(f))
            elif path.suffix == ".py":
                if not path.is_file():
                    raise UsageError(f"plugin file {path} does not exist")
                self.add(_import_file(path), path.stem, str(path))
            elif "/" in item or os.sep in item:
                raise UsageError(f"plugin folder {path} does not exist")
            else:
                self.add(_import(item, item, "module"), item.rsplit(".", 1)[-1], f"module {item}")

    # -- calling -----------------------------------------------------------------------------------
    def impls(self, hook: str) -> list[tuple[PluginInfo, Callable]]:
        """Implementations of ``hook`` in load order, each with its plugin."""
        caller = getattr(self.pm.hook, hook)
        by_plugin = {id(i.plugin): i.function for i in caller.get_hookimpls()}
        return [(p, by_plugin[id(p.module)]) for p in self.plugins if id(p.module) in by_plugin]

    def call_each(self, hook: str, **kwargs) -> list[Any]:
        """Call every implementation of ``hook`` in load order; a failure names plugin and hook."""
        results = []
        for info, fn in self.impls(hook):
            try:
                results.append(fn(**kwargs))
            except Mnistp4Error:
                raise
            except Exception as e:
                raise PluginError(info.name, hook, f"{type(e).__name__}: {e}") from e
        return results

    def collect_registrations(self) -> Registry:
        for kind, hook in KINDS.items():
            for info, fn in self.impls(hook):
                register = _bound_register(self.registry, kind, info.name)
                try:
                    fn(register=register)
                except Mnistp4Error:
                    raise
                except Exception as e:
                    raise PluginError(info.name, hook, f"{type(e).__name__}: {e}") from e
        return self.registry

    def emit(self, hook: str, **kwargs) -> None:
        """Fire an event hook."""
        self.call_each(hook, **kwargs)


def _bound_register(registry: Registry, kind: str, plugin: str):
    def register(name: str, obj: Any, *, override: bool = False, description: str = "") -> None:
        registry.add(kind, name, obj, plugin, override=override, description=description)
    return register


def _import(modname: str, plugin: str, origin: str) -> ModuleType:
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name == modname:
            raise UsageError(f"plugin module {modname!r} cannot be imported: not installed "
                             f"and not a file or folder") from None
        raise PluginError(plugin, "<import>", f"{type(e).__name__}: {e}") from e
    except Exception as e:
        raise PluginError(plugin, "<import>", f"{type(e).__name__}: {e}") from e


def _import_file(path: Path) -> ModuleType:
    modname = f"mnistp4_user_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(modname, None)
        raise PluginError(path.stem, "<import>", f"{type(e).__name__}: {e}") from e
    return module
