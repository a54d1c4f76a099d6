"""The registry of installed modalities, loaded from entry points through pluggy.

Plugins are discovered in the entry-point group ``codi_sdk.plugins``. Each entry point is loaded
on its own (pluggy's ``load_setuptools_entrypoints`` with its name), so a plugin that fails to
import is reported by name while the others still load. Plugins can be blocked by entry-point
name with the ``CODI_BLOCK_PLUGINS`` environment variable (comma-separated) or the ``block``
argument.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Iterable

import pluggy

from . import hookspecs
from .errors import DuplicateModalityError, IncompatiblePluginError, PluginError, UnknownModalityError
from .modality import Modality
from .version import SUPPORTED_API_VERSIONS

ENTRY_POINT_GROUP = "codi_sdk.plugins"
BLOCK_ENV = "CODI_BLOCK_PLUGINS"


@dataclass
class PluginInfo:
    """One loaded plugin: entry-point name, its distribution and version, API version."""

    name: str
    distribution: str | None
    version: str | None
    api_version: int | None
    modalities: list[str] = field(default_factory=list)


@dataclass
class ModalityEntry:
    """A registered modality and the plugin that provides it."""

    modality: Modality
    plugin: PluginInfo

    @property
    def name(self) -> str:
        return self.modality.name


class Registry:
    """Installed plugins and their modalities.

    ``Registry.load()`` discovers plugins through entry points; ``Registry.from_plugins()`` builds
    one from plugin objects directly (tests, notebooks). ``failures`` maps the name of each plugin
    that could not be loaded to its error; ``strict=True`` raises the first one instead.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.modalities: dict[str, ModalityEntry] = {}
        self.failures: dict[str, Exception] = {}
        self.blocked: set[str] = set()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def load(cls, block: Iterable[str] | None = None, strict: bool = False) -> "Registry":
        """Discover and register every plugin in the ``codi_sdk.plugins`` entry-point group."""
        reg = cls()
        env_block = [b.strip() for b in os.environ.get(BLOCK_ENV, "").split(",") if b.strip()]
        reg.blocked = set(env_block) | set(block or ())
        for name in reg.blocked:
            reg.pm.set_blocked(name)
        eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        for ep in eps:
            if reg.pm.is_blocked(ep.name):
                continue
            try:
                reg.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
                plugin = reg.pm.get_plugin(ep.name)
                if plugin is None:  # distribution filtered out by pluggy (e.g. duplicate install)
                    continue
                dist = ep.dist
                reg._admit(ep.name, plugin, dist.metadata["Name"] if dist else None, dist.version if dist else None)
            except Exception as exc:  # a broken plugin must not take the others down
                if reg.pm.get_plugin(ep.name) is not None:
                    reg.pm.unregister(name=ep.name)
                    reg.pm.set_blocked(ep.name)
                err = exc if isinstance(exc, PluginError) else PluginError(
                    f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
                )
                if strict:
                    raise err from exc
                reg.failures[ep.name] = err
        return reg

    @classmethod
    def from_plugins(cls, plugins: dict[str, object]) -> "Registry":
        """Register plugin objects by name, without entry points (errors are raised)."""
        reg = cls()
        for name, plugin in plugins.items():
            reg.pm.register(plugin, name=name)
            try:
                reg._admit(name, plugin, None, None)
            except Exception:
                reg.pm.unregister(name=name)
                raise
        return reg

    def _admit(self, name: str, plugin: object, dist: str | None, version: str | None) -> None:
        label = f"{name!r}" + (f" ({dist} {version})" if dist else "")
        impls = {impl.plugin_name: impl for impl in self.pm.hook.codi_api_version.get_hookimpls()}
        if name not in impls:
            raise IncompatiblePluginError(
                f"plugin {label} does not declare its API version (hook codi_api_version); "
                f"this codi-sdk requires one of {sorted(SUPPORTED_API_VERSIONS)}"
            )
        api = impls[name].function()
        if api not in SUPPORTED_API_VERSIONS:
            raise IncompatiblePluginError(
                f"plugin {label} targets codi-sdk plugin API {api!r}; this codi-sdk supports "
                f"API {sorted(SUPPORTED_API_VERSIONS)} — upgrade the plugin or codi-sdk"
            )
        info = PluginInfo(name=name, distribution=dist, version=version, api_version=api)
        new: list[ModalityEntry] = []
        for impl in self.pm.hook.codi_modalities.get_hookimpls():
            if impl.plugin_name != name:
                continue
            for modality in impl.function() or []:
                if not isinstance(modality, Modality):
                    raise PluginError(f"plugin {label} returned {modality!r} from codi_modalities; expected Modality instances")
                owner = self.modalities.get(modality.name) or next((e for e in new if e.name == modality.name), None)
                if owner is not None:
                    raise DuplicateModalityError(
                        f"modality {modality.name!r} is registered by plugin {owner.plugin.name!r} and again by "
                        f"plugin {label}; uninstall one or block it with {BLOCK_ENV}={name}"
                    )
                new.append(ModalityEntry(modality, info))
        for entry in new:
            self.modalities[entry.name] = entry
            info.modalities.append(entry.name)
        self.plugins[name] = info

    # -- queries ----------------------------------------------------------------------------------
    def get(self, name: str) -> Modality:
        """The modality called ``name``; an error lists the installed ones otherwise."""
        try:
            return self.modalities[name].modality
        except KeyError:
            installed = ", ".join(sorted(self.modalities)) or "none"
            raise UnknownModalityError(
                f"unknown or uninstalled modality {name!r}; installed: {installed} "
                f"(install a plugin that provides it, e.g. `pip install codi-{name}`)"
            ) from None

    def names(self) -> list[str]:
        return sorted(self.modalities)

    def studio_nodes(self) -> list:
        """Node types contributed by all plugins through ``codi_studio_nodes``."""
        return [n for nodes in self.pm.hook.codi_studio_nodes() for n in (nodes or [])]


_default: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _default
    if _default is None or reload:
        _default = Registry.load()
    return _default
