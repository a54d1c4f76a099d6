"""Recognise a folder written by ``codi convert-official`` and read its profile.

A converted root holds the marker file ``codi_official.json`` (``"profile": "codi-official"``) next
to one sub-folder per modality (``image/``, ``video/``, ``audio/``, ``text/``). The plugins'
``Modality.load_diffuser`` / ``load_encoder`` call :func:`official_folder` on the folder they are
given — the root itself or its ``<modality>/`` sub-folder — and, when it answers, build the
official classes instead of their ToyWorld ones.

Example:
    >>> official_folder("codi-official", "image")            # doctest: +SKIP
    OfficialFolder(root=PosixPath('codi-official'), modality='image', ...)
    >>> official_folder("my-toyworld-weights", "image") is None  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import WeightsNotFoundError

#: The marker file ``codi convert-official`` writes at the root of a converted folder.
MARKER = "codi_official.json"
#: The value of its ``"profile"`` entry.
PROFILE = "codi-official"


@dataclass(frozen=True)
class OfficialFolder:
    """One modality of a converted root: where its component folders are and its profile data.

    ``profile`` is the whole ``codi_official.json``; :attr:`info` is its entry for ``modality``
    (scale factor, latent shape, frames, ...), completed from :mod:`codi_sdk.official.profile`.
    """

    root: Path
    modality: str
    profile: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def folder(self) -> Path:
        """``<root>/<modality>``: the modality's component folders."""
        return self.root / self.modality

    def component(self, name: str) -> Path:
        """``<root>/<modality>/<name>`` (e.g. ``"unet"``, ``"vae/decoder"``)."""
        return self.folder / name

    def has(self, name: str) -> bool:
        """Whether component ``name`` was written (its ``config.json`` exists)."""
        return (self.component(name) / "config.json").is_file()

    def require(self, name: str) -> Path:
        """The folder of component ``name``, or a :class:`WeightsNotFoundError` naming what to do."""
        if not self.has(name):
            raise WeightsNotFoundError(
                f"the converted CoDi folder {self.root} has no {self.modality}/{name}/ (config.json); "
                f"convert the checkpoint file that holds it with `codi convert-official` "
                f"(folders written: {', '.join(self.written()) or 'none'})"
            )
        return self.component(name)

    def written(self) -> list[str]:
        """The component folders of this modality that hold a ``config.json``."""
        if not self.folder.is_dir():
            return []
        return sorted(str(p.parent.relative_to(self.folder)) for p in self.folder.rglob("config.json"))

    @property
    def info(self) -> dict[str, Any]:
        """Profile data of this modality: ``scale_factor``, ``latent_shape``, ``num_frames``, ..."""
        from .profile import MODALITIES

        base = {k: v for k, v in MODALITIES.get(self.modality, {}).items() if k != "scheduler"}
        base.update((self.profile.get("modalities") or {}).get(self.modality) or {})
        return base

    @property
    def scheduler_config(self) -> dict[str, Any]:
        """The official noise schedule for a diffusers scheduler (from the marker, else the profile)."""
        from .profile import SCHEDULER_CONFIG

        return dict(self.profile.get("scheduler") or SCHEDULER_CONFIG)

    @property
    def sampling(self) -> dict[str, Any]:
        """Sampling defaults of the official inference code (50 DDIM steps, guidance 7.5, ...)."""
        from .profile import SAMPLING

        return {**SAMPLING, **(self.profile.get("sampling") or {})}


def read_marker(root: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``codi_official.json`` of ``root``; ``None`` if ``root`` has none.

    Raises :class:`WeightsNotFoundError` for a marker that is not the codi-official profile's.
    """
    path = Path(root) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsNotFoundError(f"{path} is not readable JSON ({exc}); re-run `codi convert-official`") from exc
    if not isinstance(data, dict) or data.get("profile") != PROFILE:
        raise WeightsNotFoundError(f"{path} does not describe a {PROFILE!r} folder (its 'profile' entry must be {PROFILE!r})")
    return data


def official_folder(path: str | os.PathLike | None, modality: str) -> OfficialFolder | None:
    """The converted official weights of ``modality`` if ``path`` is a converted root or its
    ``<modality>/`` sub-folder; ``None`` for any other folder (or ``None``)."""
    if path is None:
        return None
    folder = Path(path)
    for root in [folder] + ([folder.parent] if folder.name == modality else []):
        marker = read_marker(root)
        if marker is not None:
            return OfficialFolder(root, modality, marker)
    return None
