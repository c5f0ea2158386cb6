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

Mistakes are loud: a hook implementation whose name no hookspec declares, a function named like a
hook but not decorated with ``@mnistp4.hookimpl``, and a plugin that needs another plugin API
version (``MNISTP4_PLUGIN_API``) are errors naming the plugin. Plugin files keep one module name
(``mnistp4_user_plugin_<stem>``) that worker processes re-import with :func:`import_plugin_files`
(``segment``'s workers: the files defining what they are sent).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

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
    version: str = ""


class _HookManager(pluggy.PluginManager):
    """pluggy's manager, quicker to register a module: pluggy looks every name of a plugin up with
    ``inspect.getattr_static`` (so properties of plugin objects are not run), which for modules
    that import many names was about half of loading the shipped plugins. A module's
    names that are not functions carrying the hookimpl marker are skipped by a dictionary lookup;
    everything else is pluggy's own decision."""

    def parse_hookimpl_opts(self, plugin, name):
        if inspect.ismodule(plugin):
            value = vars(plugin).get(name)
            hookable = inspect.isfunction(value) or inspect.ismethod(value)
            if not hookable or getattr(value, self.project_name + "_impl", None) is None:
                return None
        return super().parse_hookimpl_opts(plugin, name)


class PluginManager:
    """pluggy's manager plus load order, provenance and error attribution."""

    def __init__(self) -> None:
        self.pm = _HookManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.registry = Registry()

    # -- loading ---------------------------------------------------------------------------------
    def add(self, module: Any, name: str, origin: str, version: str = "") -> PluginInfo:
        if any(p.name == name for p in self.plugins):
            other = next(p for p in self.plugins if p.name == name)
            raise UsageError(f"two plugins are named {name!r}: {other.origin} and {origin}; rename one")
        _check_api_version(module, name)
        _check_undecorated(module, name, self.pm)
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as e:
            raise PluginError(name, str(getattr(e, "hookimpl", "?")), str(e)) from None
        _check_unknown_hooks(module, name, self.pm)
        hooks = sorted(h.name for h in (self.pm.get_hookcallers(module) or []))
        info = PluginInfo(name, origin, module, hooks, version or _version(module, origin))
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
            version = getattr(ep.dist, "version", "") if getattr(ep, "dist", None) else ""
            self.add(module, ep.name, f"entry point ({dist})", version=getattr(module, "__version__", None) or version)

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
                        self.add(self._import_file(f), f.stem, str(f))
            elif path.suffix == ".py":
                if not path.is_file():
                    raise UsageError(f"plugin file {path} does not exist")
                self.add(self._import_file(path), path.stem, str(path))
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

    @staticmethod
    def call(info: PluginInfo, fn: Callable, hook: str, **kwargs) -> Any:
        """Call one implementation; a failure names the plugin and the hook."""
        try:
            return fn(**kwargs)
        except Mnistp4Error:
            raise
        except Exception as e:
            raise PluginError(info.name, hook, f"{type(e).__name__}: {e}") from e

    def call_each(self, hook: str, **kwargs) -> list[Any]:
        """Call every implementation of ``hook`` in load order; a failure names plugin and hook."""
        return [self.call(info, fn, hook, **kwargs) for info, fn in self.impls(hook)]

    def _import_file(self, path: Path) -> ModuleType:
        return _import_file(path)

    def collect_registrations(self) -> Registry:
        for kind, hook in KINDS.items():
            for info, fn in self.impls(hook):
                self.call(info, fn, hook, register=_bound_register(self.registry, kind, info.name, info.version))
        return self.registry

    def emit(self, hook: str, **kwargs) -> None:
        """Fire an event hook."""
        self.call_each(hook, **kwargs)


def _bound_register(registry: Registry, kind: str, plugin: str, version: str = ""):
    def register(name: str, obj: Any, *, override: bool = False, description: str = "") -> None:
        registry.add(kind, name, obj, plugin, override=override, description=description, version=version)

    return register


def _version(module: Any, origin: str) -> str:
    """A plugin's version for cache keys: its ``__version__``, its distribution's version, or for a
    plugin file a digest of its source (editing the file invalidates what it produced)."""
    if getattr(module, "__version__", None):
        return str(module.__version__)
    if origin == "shipped":
        from . import __version__

        return __version__
    path = getattr(module, "__file__", None)
    if path and Path(path).is_file():
        import hashlib

        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return ""


def _check_api_version(module: Any, name: str) -> None:
    from .api import PLUGIN_API_VERSION

    wanted = getattr(module, "MNISTP4_PLUGIN_API", None)
    if wanted is None:
        return
    try:
        w_major, w_minor = (int(x) for x in str(wanted).split(".")[:2])
    except ValueError:
        raise PluginError(name, "<load>", f"MNISTP4_PLUGIN_API = {wanted!r} is not 'MAJOR.MINOR'") from None
    major, minor = (int(x) for x in PLUGIN_API_VERSION.split("."))
    if w_major != major or w_minor > minor:
        raise PluginError(
            name,
            "<load>",
            f"the plugin needs plugin API {wanted}; this mnistp4 provides "
            f"{PLUGIN_API_VERSION}. Upgrade mnistp4 or use a plugin version for "
            f"API {major}.x",
        )


@functools.cache
def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith(("register_", "on_")) and callable(getattr(hookspecs, n))]


def _check_undecorated(module: Any, name: str, pm: pluggy.PluginManager) -> None:
    """A function named like a hook (or nearly) without ``@mnistp4.hookimpl`` would never be called."""
    hooks = _hook_names()
    for attr, fn in vars(module).items():
        if not inspect.isfunction(fn) or getattr(fn, hookspecs.PROJECT + "_impl", None) is not None:
            continue
        if fn.__module__ != getattr(module, "__name__", None):
            continue  # imported helpers are not the plugin's own functions
        if attr in hooks:
            raise PluginError(
                name,
                attr,
                f"function {attr}() is not decorated with @mnistp4.hookimpl, so it "
                f"would never be called; add the decorator",
            )
        if not attr.startswith(("register", "on_")):
            continue  # the cheap test first: the similarity search is the costly part of loading
        close = difflib.get_close_matches(attr, hooks, n=1, cutoff=0.85)
        if close:
            raise PluginError(
                name,
                attr,
                f"{attr}() looks like hook {close[0]!r} but is not one (misspelled, "
                f"and not decorated with @mnistp4.hookimpl); rename it",
            )


def _check_unknown_hooks(module: Any, name: str, pm: pluggy.PluginManager) -> None:
    """``@hookimpl`` on a name no hookspec declares (a misspelling) fails here, not silently."""
    hooks = _hook_names()
    for attr, fn in vars(module).items():
        if callable(fn) and getattr(fn, hookspecs.PROJECT + "_impl", None) is not None and attr not in hooks:
            close = difflib.get_close_matches(attr, hooks, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; hooks: {', '.join(sorted(hooks))}"
            pm.unregister(module)
            raise PluginError(name, attr, f"@hookimpl {attr}() matches no mnistp4 hook{hint}")


def loaded_plugin_files() -> list[tuple[str, str]]:
    """``(module name, path)`` of every plugin file imported in this process, for worker processes."""
    return list(_LOADED_FILES.items())


def import_plugin_files(files: list[tuple[str, str]]) -> None:
    """In a worker process: import the parent's plugin files under the same module names, so that
    their functions (a segmenter, a normalizer) unpickle there."""
    for modname, path in files:
        if modname not in sys.modules:
            _import_file(Path(path), modname)


def _import(modname: str, plugin: str, origin: str) -> ModuleType:
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name == modname:
            raise UsageError(
                f"plugin module {modname!r} cannot be imported: not installed and not a file or folder"
            ) from None
        raise PluginError(plugin, "<import>", f"{type(e).__name__}: {e}") from e
    except Exception as e:
        raise PluginError(plugin, "<import>", f"{type(e).__name__}: {e}") from e


_LOADED_FILES: dict[str, str] = {}


def _import_file(path: Path, modname: str = "") -> ModuleType:
    modname = modname or f"mnistp4_user_plugin_{path.stem}"
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
    _LOADED_FILES[modname] = str(path.resolve())  # only files that import: workers re-import these
    return module
