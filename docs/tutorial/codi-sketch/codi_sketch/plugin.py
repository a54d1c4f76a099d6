"""The hooks codi-sdk calls (the contract is codi_sdk.hookspecs); named by the package's entry point."""

from codi_sdk import hookimpl


@hookimpl
def codi_api_version() -> int:
    return 1


@hookimpl
def codi_modalities() -> list:
    from .modality import SketchModality  # imported here, so that `codi plugins` stays fast

    return [SketchModality()]
