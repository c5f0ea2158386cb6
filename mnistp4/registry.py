"""Named registrations collected from the ``register_*`` hooks, with override and conflict rules."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import NotProvided, RegistrationConflict

#: registry kind -> the hook that fills it
KINDS: dict[str, str] = {
    "sheet_layouts": "register_sheet_layouts",
    "segmenters": "register_segmenters",
    "normalizers": "register_normalizers",
    "dataset_sources": "register_dataset_sources",
    "weightings": "register_weightings",
    "augmentations": "register_augmentations",
    "models": "register_models",
    "recipes": "register_recipes",
    "model_formats": "register_model_formats",
    "quantizers": "register_quantizers",
    "deploy_targets": "register_deploy_targets",
    "pipeline_steps": "register_pipeline_steps",
}


@dataclass
class Entry:
    kind: str
    name: str
    obj: Any
    plugin: str
    description: str = ""
    replaced: list[str] = field(default_factory=list)  # plugins whose registration this one overrode


class Registry:
    """All registrations by kind and name. Filled in plugin load order."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}

    def add(self, kind: str, name: str, obj: Any, plugin: str, *, override: bool = False,
            description: str = "") -> None:
        if kind not in self._entries:
            raise KeyError(f"unknown registry kind {kind!r}")
        name = str(name)
        existing = self._entries[kind].get(name)
        if existing is not None and not override:
            raise RegistrationConflict(
                f"{kind[:-1].replace('_', ' ')} {name!r} is registered by plugin {existing.plugin!r} "
                f"and again by plugin {plugin!r}; pass override=True in {plugin!r} to replace it, "
                f"or choose another name")
        entry = Entry(kind, name, obj, plugin, description or _doc_line(obj))
        if existing is not None:
            entry.replaced = existing.replaced + [existing.plugin]
        self._entries[kind][name] = entry

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def entry(self, kind: str, name: str) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            what = kind[:-1].replace("_", " ")
            raise NotProvided(f"no plugin provides {what} {name!r} (available: {known}); "
                              f"see `mnistp4 plugins`") from None

    def get(self, kind: str, name: str) -> Any:
        return self.entry(kind, name).obj

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for kind, entries in self._entries.items():
            for name, e in entries.items():
                if e.plugin == plugin:
                    out.setdefault(kind, []).append(name)
        return {k: sorted(v) for k, v in out.items()}


def _doc_line(obj: Any) -> str:
    desc = getattr(obj, "description", "") or (getattr(obj, "__doc__", "") or "")
    return desc.strip().splitlines()[0] if isinstance(desc, str) and desc.strip() else ""
