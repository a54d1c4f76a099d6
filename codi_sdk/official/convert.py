"""Convert the released CoDi checkpoints into ``save_pretrained`` folders of the codi-official profile.

Reads the official ``.pth`` files with ``torch.load(weights_only=True)`` (memory-mapped when the
file allows it) — never full unpickling: a file that needs it is refused with
:class:`OfficialCheckpointError`. Every key goes through :func:`~codi_sdk.official.mapping.map_key`;
tensors are cast (``fp16``/``fp32``; integer buffers keep their dtype) and written, per folder,
as ``config.json`` + safetensors (sharded above 5 GB) into a staging folder that is renamed onto the
destination only when everything succeeded.

Output layout (``--to DIR``)::

    DIR/codi_official.json          profile: schedule, scale factors, latent shapes, report
    DIR/scheduler/scheduler_config.json
    DIR/image/{vae,unet,env_encoder,joint,encoder}/
    DIR/video/{vae,unet,env_encoder,joint,encoder}/   the image folders (hard links when possible)
    DIR/video/temporal/
    DIR/audio/{vae,vocoder,mel,unet,env_encoder,joint,encoder}/
    DIR/text/{vae/encoder,vae/decoder,unet,env_encoder,joint,encoder}/

Example:
    >>> report = convert_official("CoDi/", "codi-official/", dtype="fp16")   # doctest: +SKIP
    >>> print(report.format())                                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import torch

from ..errors import CodiError, InvalidInputError
from ..io import atomic_path, atomic_write_text
from . import layout, profile
from .mapping import FILLED, TARGETS, VIDEO_SHARES, Dropped, Mapped, Split, map_key, mapped_layout

#: File name suffixes read from ``--from``.
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
MAX_SHARD_BYTES = 5 * 1024**3
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


class OfficialCheckpointError(CodiError):
    """An official checkpoint that cannot be converted (unsafe pickle, wrong layout, strict failure)."""


# -- reading ------------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in one checkpoint file, read without executing pickled code.

    ``.safetensors`` are read with safetensors; anything else with ``torch.load(weights_only=True)``
    (memory-mapped for zip-format files). A Lightning-style ``{"state_dict": {...}}`` wrapper is
    unwrapped. Raises :class:`OfficialCheckpointError` for a file that holds objects other than
    tensors and plain containers, i.e. one that would need full unpickling.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (pickle.UnpicklingError, AttributeError, ModuleNotFoundError, TypeError) as exc:
        raise OfficialCheckpointError(
            f"refusing to read {path}: it is not a plain tensor checkpoint, and loading it would need full "
            f"unpickling, which can run arbitrary code. codi only reads files with torch.load(weights_only=True) "
            f"or safetensors. If you trust the file, re-save its state dict yourself, e.g. "
            f"torch.save(torch.load(p, weights_only=False)['state_dict'], 'clean.pth'). ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    except RuntimeError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise OfficialCheckpointError(f"refusing to read {path}: it needs full unpickling ({str(exc).splitlines()[0]})") from exc
        raise OfficialCheckpointError(f"cannot read {path} as a PyTorch checkpoint: {str(exc).splitlines()[0]}") from exc
    return _state_dict_of(obj, path)


def _state_dict_of(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise OfficialCheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise OfficialCheckpointError(f"{path}: entries that are not tensors: {bad[:5]}{' ...' if len(bad) > 5 else ''}")
    return dict(obj)


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The checkpoint files in ``folder`` (sorted), or an error naming what was expected."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"--from must be a folder holding the official CoDi checkpoints; not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    if not files:
        raise InvalidInputError(
            f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) in {folder}; expected e.g. "
            + ", ".join(profile.CHECKPOINT_FILES)
        )
    return files


# -- planning -----------------------------------------------------------------------------------
@dataclass
class ConversionReport:
    """What a conversion did with every official key.

    ``unused``: keys no rule knows; ``missing``: expected official keys absent from the checkpoint
    (for the components it contains); ``dropped``: documented constants our modules rebuild
    (reason -> keys); ``tied``: groups of official keys sharing one tensor; ``filled``: constants
    written for keys the official model lacks; ``targets``: folder -> number of tensors;
    ``skipped_targets``: folders not written because some of their tensors are missing.
    """

    files: dict[str, int] = field(default_factory=dict)
    components: list[str] = field(default_factory=list)
    mapped: int = 0
    unused: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    tied: list[tuple[str, ...]] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    shape_errors: list[str] = field(default_factory=list)
    targets: dict[str, int] = field(default_factory=dict)
    skipped_targets: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No unused, missing or mis-shaped keys (what ``--strict`` requires)."""
        return not (self.unused or self.missing or self.shape_errors)

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "components": self.components,
            "mapped": self.mapped,
            "unused": self.unused,
            "missing": self.missing,
            "dropped": {k: len(v) for k, v in self.dropped.items()},
            "tied": [list(g) for g in self.tied],
            "filled": self.filled,
            "shape_errors": self.shape_errors,
            "targets": self.targets,
            "skipped_targets": self.skipped_targets,
            "warnings": self.warnings,
        }

    def format(self, limit: int = 10) -> str:
        """A human-readable summary (what ``codi convert-official`` prints)."""
        lines = [f"read {sum(self.files.values())} keys from {len(self.files)} file(s): " + ", ".join(f"{k} ({v})" for k, v in self.files.items())]
        lines.append(f"components: {', '.join(self.components) or 'none'}")
        lines.append(f"keys mapped: {self.mapped}")
        lines.append(f"keys dropped (documented constants): {sum(len(v) for v in self.dropped.values())}")
        for reason, keys in self.dropped.items():
            lines.append(f"  {len(keys):5d}  {reason}")
        if self.tied:
            lines.append(f"tied keys: {len(self.tied)} group(s): " + "; ".join(" = ".join(g) for g in self.tied))
        if self.filled:
            lines.append(f"constants filled in: {', '.join(self.filled)}")

        def listing(name, items):
            lines.append(f"keys {name}: {len(items)}")
            lines.extend(f"  {k}" for k in items[:limit])
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more")

        listing("unused", self.unused)
        listing("missing", self.missing)
        if self.shape_errors:
            listing("with a wrong shape", self.shape_errors)
        if self.targets:
            lines.append("folders: " + ", ".join(f"{k} ({v})" for k, v in sorted(self.targets.items())))
        lines.extend(f"warning: {w}" for w in self.warnings)
        if self.skipped_targets:
            lines.append("folders skipped (incomplete): " + ", ".join(f"{k} ({v} missing)" for k, v in sorted(self.skipped_targets.items())))
        return "\n".join(lines)


@dataclass
class ConversionPlan:
    """The report, and for each folder: our key -> (official key, how to take the tensor)."""

    report: ConversionReport
    assignments: dict[str, dict[str, tuple[str, tuple[int, ...] | None, int | None, int]]]


def plan_conversion(state: Mapping[str, torch.Tensor], files: dict[str, int] | None = None) -> ConversionPlan:
    """Map every key of an official state dict (tensors may be on the meta device) and report.

    The assignment of one of our keys is ``(official key, new shape or None, split index or None,
    number of parts)``.
    """
    report = ConversionReport(files=dict(files or {"<state dict>": len(state)}))
    expected = {e.key: e for e in layout.entries(include_lazy=True)}
    assignments: dict[str, dict] = defaultdict(dict)
    present_components: set[str] = set()
    for key, tensor in state.items():
        shape = tuple(tensor.shape)
        entry = expected.get(key)
        if entry is not None and entry.shape != shape:
            report.shape_errors.append(f"{key}: {list(shape)} (official layout: {list(entry.shape)})")
            continue
        outcome = map_key(key, shape)
        if outcome is None:
            report.unused.append(key)
            continue
        component = layout.component_of(key)
        if component not in (None, "root"):
            present_components.add(component)
        if isinstance(outcome, Dropped):
            report.dropped[outcome.reason].append(key)
            continue
        report.mapped += 1
        parts = outcome.parts if isinstance(outcome, Split) else (outcome,)
        for i, part in enumerate(parts):
            assignments[part.target][part.key] = (key, part.shape, i if isinstance(outcome, Split) else None, len(parts))

    # tied groups: one stored tensor may stand for all keys of its group
    present = set(state)
    for group in layout.tied_groups():
        have = [k for k in group if k in present]
        if not have:
            continue
        report.tied.append(group)
        first = state[have[0]]
        for k in have[1:]:
            other = state[k]
            if first.device.type != "meta" and other.device.type != "meta" and not torch.equal(first, other):
                report.warnings.append(f"{k} differs from {have[0]} although upstream ties them; the loader re-ties them to {have[0]}")
        for k in group:
            if k not in present:
                outcome = map_key(k, tuple(state[have[0]].shape))
                if isinstance(outcome, Mapped):
                    assignments[outcome.target][outcome.key] = (have[0], outcome.shape, None, 1)
                    present.add(k)
                    report.mapped += 1

    report.components = [c for c in layout.COMPONENTS if c in present_components]
    for entry in layout.entries():
        if entry.component in present_components and entry.key not in present and not entry.lazy:
            report.missing.append(entry.key)

    # which folders are complete
    full = mapped_layout(include_lazy=False).targets
    for target, table in assignments.items():
        want = set(full[target]) - set(FILLED.get(target, {}))
        lacking = want - set(table)
        if lacking:
            report.skipped_targets[target] = len(lacking)
        else:
            report.targets[target] = len(table) + len(FILLED.get(target, {}))
            report.filled += [f"{target}:{k}" for k in FILLED.get(target, {})]
    return ConversionPlan(report, {t: a for t, a in assignments.items() if t in report.targets})


def _take(state: Mapping[str, torch.Tensor], how, dtype: torch.dtype) -> torch.Tensor:
    key, shape, index, parts = how
    t = state[key]
    if index is not None:
        t = t.chunk(parts, dim=0)[index]
    if shape is not None:
        t = t.reshape(shape)
    if t.is_floating_point():
        t = t.to(dtype)
    return t.contiguous()


def _filled(kind: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return (torch.zeros if kind == "zeros" else torch.ones)(shape, dtype=dtype)


# -- writing ------------------------------------------------------------------------------------
def _config_json(target: str, dtype: torch.dtype) -> str:
    spec = profile.COMPONENTS[target]
    module, cls = spec.class_name.split(":")
    if spec.library == "transformers":
        from transformers import (
            BertConfig,
            ClapAudioConfig,
            CLIPTextConfig,
            CLIPVisionConfig,
            GPT2Config,
            SpeechT5HifiGanConfig,
        )

        config_classes = {
            "clip_vision_model": CLIPVisionConfig,
            "clip_text_model": CLIPTextConfig,
            "speecht5_hifigan": SpeechT5HifiGanConfig,
            "clap_audio_model": ClapAudioConfig,
            "bert": BertConfig,
            "gpt2": GPT2Config,
        }
        config = config_classes[spec.model_type](**spec.config)
        config.architectures = [cls]
        config.codi_class = spec.class_name
        config.dtype = str(dtype).replace("torch.", "")
        return config.to_json_string()
    import diffusers

    body = {"_class_name": cls, "_diffusers_version": diffusers.__version__}
    if spec.library == "codi":
        body["_codi_class"] = spec.class_name
    body.update(spec.config)
    return json.dumps(body, indent=2, sort_keys=False) + "\n"


def _write_folder(folder: Path, target: str, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    spec = profile.COMPONENTS[target]
    folder.mkdir(parents=True, exist_ok=True)
    for k in spec.tied:
        tensors.pop(k, None)
    atomic_write_text(folder / "config.json", _config_json(target, dtype))
    name = spec.weights_name
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in sorted(tensors):
        nbytes = tensors[k].numel() * tensors[k].element_size()
        if shards[-1] and size + nbytes > MAX_SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][k] = tensors[k]
        size += nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        with atomic_path(folder / name) as tmp:
            save_file(shards[0], str(tmp), metadata=meta)
        return
    stem, suffix = name.rsplit(".", 1)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        shard_name = f"{stem}-{i:05d}-of-{len(shards):05d}.{suffix}"
        with atomic_path(folder / shard_name) as tmp:
            save_file(shard, str(tmp), metadata=meta)
        for k, t in shard.items():
            weight_map[k] = shard_name
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    atomic_write_text(folder / f"{name}.index.json", json.dumps(index, indent=2))


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copy2(f, dst / f.name)


def convert_state_dict(
    state: Mapping[str, torch.Tensor],
    destination: str | os.PathLike,
    *,
    dtype: str = "fp32",
    strict: bool = False,
    files: dict[str, int] | None = None,
) -> ConversionReport:
    """Convert an official state dict already in memory (see :func:`convert_official`)."""
    if dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    torch_dtype = DTYPES[dtype]
    plan = plan_conversion(state, files)
    report = plan.report
    if report.shape_errors:
        raise OfficialCheckpointError("tensors with a shape that differs from the official layout:\n" + "\n".join(report.shape_errors[:20]))
    if strict and not report.ok:
        raise OfficialCheckpointError("--strict: the checkpoint does not match the official layout exactly\n" + report.format())
    if not report.targets:
        raise OfficialCheckpointError("nothing to write: no component folder is complete\n" + report.format())

    dest = Path(destination)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInputError(f"--to must be a new or empty folder; {dest} exists and is not empty")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        for target, table in sorted(plan.assignments.items()):
            tensors = {ours: _take(state, how, torch_dtype) for ours, how in table.items()}
            for k, (kind, shape) in FILLED.get(target, {}).items():
                tensors[k] = _filled(kind, shape, torch_dtype)
            _write_folder(staging / target, target, tensors, torch_dtype)
            del tensors
        for shared, source in VIDEO_SHARES.items():
            if source in report.targets:
                _link_or_copy(staging / source, staging / shared)
        _write_profile(staging, report, dtype)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _write_profile(root: Path, report: ConversionReport, dtype: str) -> None:
    import diffusers

    sched = {"_class_name": profile.SAMPLING["scheduler"], "_diffusers_version": diffusers.__version__, **profile.SCHEDULER_CONFIG}
    atomic_write_text(root / "scheduler" / "scheduler_config.json", json.dumps(sched, indent=2) + "\n")
    modalities = {}
    for name, info in profile.MODALITIES.items():
        present = [f for f in info["folders"] if (root / name / f).is_dir()]
        modalities[name] = {**{k: v for k, v in info.items() if k != "scheduler"}, "folders_written": present}
    body = {
        "profile": "codi-official",
        "dtype": dtype,
        "source": layout.source(),
        "scheduler": profile.SCHEDULER_CONFIG,
        "sampling": profile.SAMPLING,
        "joint_modes": list(profile.JOINT_MODES),
        "modalities": modalities,
        "conversion": report.to_dict(),
    }
    atomic_write_text(root / "codi_official.json", json.dumps(body, indent=2, default=list) + "\n")


def convert_official(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    dtype: str = "fp32",
    strict: bool = False,
) -> ConversionReport:
    """Convert the official CoDi checkpoints in folder ``source`` into ``destination``.

    ``dtype``: ``"fp16"`` or ``"fp32"`` for floating tensors. ``strict``: fail (writing nothing) on
    any unused or missing key. Without it, folders whose tensors are all present are written and
    the rest are listed in the report. Raises :class:`OfficialCheckpointError` for unsafe or
    mis-shaped files, :class:`~codi_sdk.errors.InvalidInputError` for bad arguments.
    """
    state: dict[str, torch.Tensor] = {}
    files: dict[str, int] = {}
    owner: dict[str, str] = {}
    for path in checkpoint_files(source):
        part = load_checkpoint(path)
        files[path.name] = len(part)
        for k, v in part.items():
            if k in state and not isinstance(map_key(k, tuple(v.shape)), Dropped):
                raise OfficialCheckpointError(f"key {k!r} is in both {owner[k]} and {path.name}")
            state.setdefault(k, v)
            owner.setdefault(k, path.name)
    return convert_state_dict(state, destination, dtype=dtype, strict=strict, files=files)


def official_state_dict_template(components: Iterable[str] | None = None, *, device: str = "meta", include_lazy: bool = False) -> dict[str, torch.Tensor]:
    """Empty tensors in the exact official layout (default: on the meta device), for tests and dry runs."""
    names = list(components) if components is not None else list(layout.COMPONENTS)
    out = {}
    for name in names:
        for e in layout.entries(name, include_lazy=include_lazy):
            out[e.key] = torch.empty(e.shape, dtype=getattr(torch, e.dtype), device=device)
    return out
