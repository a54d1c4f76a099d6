"""The state-dict layout of the official CoDi model, shipped as data (``layout.json.gz``).

Every key that the released CoDi model (microsoft/i-Code, folder ``i-Code-V3``) puts in its
``state_dict()``, with shape, dtype and kind, grouped into its eight components plus the 12 DDPM
schedule buffers at the root. It was generated from the project's shared manifest (built from the
upstream constructors on the meta device), so the converter can check names *and shapes* of a
checkpoint without any weights at hand.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

#: The eight model components, in the order of the official state dict, then the root buffers.
COMPONENTS: tuple[str, ...] = (
    "unet_image",
    "unet_text",
    "unet_audio",
    "autokl",
    "audioldm",
    "optimus",
    "clip",
    "clap",
    "root",
)


@dataclass(frozen=True)
class Entry:
    """One official state-dict entry: full ``key``, ``shape``, ``dtype`` ("float32"/"int64"), ``kind``."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    kind: str  # "param" or "buffer"
    component: str
    lazy: bool = False


@lru_cache(maxsize=1)
def _raw() -> dict:
    data = resources.files(__package__).joinpath("layout.json.gz").read_bytes()
    return json.loads(gzip.decompress(data))


def component_prefix(component: str) -> str:
    """The key prefix of ``component`` in the official state dict (``""`` for the root buffers)."""
    return _raw()["components"][component]["prefix"]


def entries(component: str | None = None, *, include_lazy: bool = False) -> list[Entry]:
    """The official entries (of one component, or all), in upstream ``state_dict()`` order.

    ``include_lazy`` adds the CLAP front-end keys that upstream only creates on a first forward pass.
    """
    names = COMPONENTS if component is None else (component,)
    out: list[Entry] = []
    for name in names:
        comp = _raw()["components"][name]
        p = comp["prefix"]
        out += [Entry(p + k, tuple(s), d, kind, name) for k, s, d, kind in comp["entries"]]
        if include_lazy:
            out += [Entry(p + k, tuple(s), d, kind, name, lazy=True) for k, s, d, kind in comp.get("lazy", [])]
    return out


def tied_groups() -> list[tuple[str, ...]]:
    """Groups of official keys that hold one shared tensor (Optimus ``wte`` / ``lm_head``)."""
    groups = []
    for comp in _raw()["components"].values():
        p = comp["prefix"]
        groups += [tuple(p + k for k in g) for g in comp.get("tied", [])]
    return groups


def component_of(key: str) -> str | None:
    """The component an official key belongs to (``None`` if it belongs to none)."""
    for name in COMPONENTS[:-1]:
        if key.startswith(component_prefix(name)):
            return name
    return "root" if key in _root_keys() else None


@lru_cache(maxsize=1)
def _root_keys() -> frozenset[str]:
    return frozenset(k for k, *_ in _raw()["components"]["root"]["entries"])


def official_config() -> dict:
    """The top-level CoDi config: schedule ends, timesteps, latent scale factors."""
    return dict(_raw()["config"])


def source() -> dict:
    """Where the layout comes from (repository, commit, versions used to build it)."""
    return dict(_raw()["source"])
