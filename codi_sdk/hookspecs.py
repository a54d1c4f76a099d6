"""The plugin contract: every hook a codi-sdk plugin may implement.

A plugin is any importable module or object carrying ``@hookimpl`` functions, announced by an
entry point in the group ``codi_sdk.plugins``::

    # pyproject.toml of your package
    [project.entry-points."codi_sdk.plugins"]
    sketch = "codi_sketch.plugin"

    # codi_sketch/plugin.py
    from codi_sdk import hookimpl

    @hookimpl
    def codi_api_version():
        return 1

    @hookimpl
    def codi_modalities():
        from .modality import SketchModality
        return [SketchModality()]

The four built-in modalities (image, video, audio, text) are plugins exactly like this one.
"""

from __future__ import annotations

import pluggy

PROJECT = "codi_sdk"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def codi_api_version() -> int:
    """The plugin API version this plugin was built for. **Required.**

    The registry compares it with :data:`codi_sdk.version.SUPPORTED_API_VERSIONS` and refuses a
    plugin it does not support, with an error naming the plugin, its version and the requirement.

    Example::

        @hookimpl
        def codi_api_version():
            return 1
    """


@hookspec
def codi_modalities() -> list:
    """The :class:`~codi_sdk.modality.Modality` instances this plugin provides.

    Each modality name must be unique across installed plugins; a second plugin claiming a
    name already taken is an error, never a silent override.

    Example::

        @hookimpl
        def codi_modalities():
            return [ImageModality()]
    """


@hookspec
def codi_studio_nodes() -> list:
    """Studio node types this plugin provides (see ``codi_sdk.studio``).

    Example::

        @hookimpl
        def codi_studio_nodes():
            return [MyServiceNode]
    """
