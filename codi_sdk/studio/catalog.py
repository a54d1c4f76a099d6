"""The catalogue of node types: Studio's built-in plugin plus every ``codi_studio_nodes`` hook.

Built-in node types are provided by :mod:`codi_sdk.studio.nodes.builtin`, a plugin object with the
same ``codi_studio_nodes`` hook that third-party plugins implement; the catalogue calls it exactly
like theirs. Two plugins providing the same node type name is an error naming both.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from ..errors import PluginError
from .node import NodeType

BUILTIN_PLUGIN = "codi-studio"


@dataclass
class NodeCatalog:
    """Node types by name, the plugin that provides each, and plugins whose hook failed."""

    types: dict[str, type[NodeType]] = field(default_factory=dict)
    providers: dict[str, str] = field(default_factory=dict)
    failures: dict[str, Exception] = field(default_factory=dict)
    modalities: list[str] = field(default_factory=list)
    registry: Any = None

    @classmethod
    def load(cls, registry: Any = None, builtin: bool = True) -> "NodeCatalog":
        """Collect node types from the built-in plugin and from ``registry`` (default: the process-wide one)."""
        from ..registry import get_registry
        from .nodes import builtin as builtin_plugin

        reg = registry if registry is not None else get_registry()
        cat = cls(registry=reg, modalities=list(reg.names()))
        if builtin:
            cat._add_from(BUILTIN_PLUGIN, builtin_plugin.codi_studio_nodes)
        for impl in reg.pm.hook.codi_studio_nodes.get_hookimpls():
            cat._add_from(impl.plugin_name, impl.function)
        return cat

    @classmethod
    def of(cls, *node_types: type[NodeType], modalities: list[str] | None = None) -> "NodeCatalog":
        """A catalogue of exactly these node types (tests, notebooks)."""
        cat = cls(modalities=list(modalities or []))
        cat._add_list("<direct>", list(node_types))
        return cat

    def _add_from(self, plugin: str, hook: Any) -> None:
        try:
            found = list(hook() or [])
        except Exception as exc:  # a broken plugin is reported by name, the others still load
            self.failures[plugin] = PluginError(f"plugin {plugin!r} failed in codi_studio_nodes: {type(exc).__name__}: {exc}")
            return
        self._add_list(plugin, found)

    def _add_list(self, plugin: str, node_types: list) -> None:
        for node_type in node_types:
            if not (isinstance(node_type, type) and issubclass(node_type, NodeType)) or not getattr(node_type, "name", None):
                raise PluginError(
                    f"plugin {plugin!r} returned {node_type!r} from codi_studio_nodes; expected NodeType subclasses with a name"
                )
            owner = self.providers.get(node_type.name)
            if owner is not None and self.types[node_type.name] is not node_type:
                raise PluginError(
                    f"studio node type {node_type.name!r} is provided by plugin {owner!r} and again by plugin {plugin!r}; "
                    f"uninstall or block one of them"
                )
            self.types[node_type.name] = node_type
            self.providers[node_type.name] = plugin

    def get(self, name: str) -> type[NodeType] | None:
        return self.types.get(name)

    def unknown_message(self, name: str) -> str:
        """The error text for an unknown node type: close matches, what is installed, plugin failures."""
        close = difflib.get_close_matches(name, list(self.types), n=3)
        msg = f"unknown node type {name!r}"
        if close:
            msg += f" (did you mean {', '.join(map(repr, close))}?)"
        msg += f"; installed: {', '.join(sorted(self.types)) or 'none'}"
        for plugin, exc in self.failures.items():
            msg += f"; {exc}"
        return msg

    def names(self) -> list[str]:
        return sorted(self.types)
