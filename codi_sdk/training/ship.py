"""Copy trained weights into a plugin package, stored in float16 to keep the wheels small.

Loading code casts to the dtype the user asks for (``Composer`` defaults to float32), so half
precision is only the storage format of the shipped files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def ship(source: Path, target: Path, dtype: torch.dtype = torch.float16, exclude: list[str] | tuple = ()) -> int:
    """Replace ``target`` with a copy of ``source`` whose floating tensors are stored as ``dtype``.

    Component folders named in ``exclude`` are left out (e.g. an undertrained vocoder, so that the
    plugin falls back to its documented alternative). The copy is built next to ``target`` and
    renamed into place, so an interrupted ship leaves the
    previous weights intact. Returns the size of the shipped folder in bytes.
    """
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=lambda folder, names: [n for n in names if Path(folder) == source and n in exclude])
    for f in tmp.rglob("*.safetensors"):
        tensors = load_file(str(f))
        save_file({k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}, str(f), metadata={"format": "pt"})
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
