"""Entry point of the codi-video plugin: the hooks codi-sdk calls (see codi_sdk.hookspecs)."""

from codi_sdk import hookimpl


@hookimpl
def codi_api_version() -> int:
    return 1


@hookimpl
def codi_modalities() -> list:
    from .modality import VideoModality

    return [VideoModality()]
