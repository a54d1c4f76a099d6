"""Official CoDi checkpoints: their layout, the key mapping into our components, the converter,
and the ``codi-official`` profile (schedule, latent scales and shapes) that ``compose`` needs.

* :mod:`~codi_sdk.official.layout` — every key, shape and dtype of the official state dict (data);
* :mod:`~codi_sdk.official.mapping` — official key -> (our folder, our key), with documented drops;
* :mod:`~codi_sdk.official.convert` — :func:`convert_official` and ``codi convert-official``;
* :mod:`~codi_sdk.official.profile` — per-modality schedule/scale/latent-shape data and folder configs;
* :mod:`~codi_sdk.official.connectors` — official joint attention and environment encoders;
* :mod:`~codi_sdk.official.unet` — runs a diffusers UNet with the official connectors/video layers;
* :mod:`~codi_sdk.official.folder` — recognises a converted root (``codi_official.json``);
* :mod:`~codi_sdk.official.diffuser` — :class:`OfficialDiffuser`, the base of the plugins' official diffusers.

The real-size module classes of each modality live in the plugins: ``codi_image.official``,
``codi_audio.official``, ``codi_text.official``; the ``Diffuser``/``Encoder`` classes that
``compose`` runs on a converted root in ``codi_<modality>.official_diffuser``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "convert_official": "codi_sdk.official.convert",
    "convert_state_dict": "codi_sdk.official.convert",
    "plan_conversion": "codi_sdk.official.convert",
    "load_checkpoint": "codi_sdk.official.convert",
    "ConversionReport": "codi_sdk.official.convert",
    "OfficialCheckpointError": "codi_sdk.official.convert",
    "map_key": "codi_sdk.official.mapping",
    "MODALITIES": "codi_sdk.official.profile",
    "SCHEDULER_CONFIG": "codi_sdk.official.profile",
    "OfficialJointAttention": "codi_sdk.official.connectors",
    "joint_environment": "codi_sdk.official.connectors",
    "official_folder": "codi_sdk.official.folder",
    "OfficialFolder": "codi_sdk.official.folder",
    "OfficialDiffuser": "codi_sdk.official.diffuser",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
