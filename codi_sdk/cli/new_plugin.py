"""``codi new-plugin NAME``: write the skeleton of a modality plugin package.

The skeleton installs and registers at once (``pip install -e codi-NAME`` then ``codi plugins``);
its data and model methods raise ``NotImplementedError`` pointing at the plugin-author tutorial
(docs/tutorial.md), which fills each of them in for a worked example, the *sketch* modality.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import tempfile
from pathlib import Path
from string import Template

import typer

from ..version import API_VERSION
from . import app

#: A modality name: a lower-case Python identifier (it becomes the package ``codi_NAME``).
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
TUTORIAL = "docs/tutorial.md (the plugin-author tutorial)"


@app.command("new-plugin")
def new_plugin(
    name: str = typer.Argument(..., help="Modality name: lower-case letters, digits and '_', starting with a letter."),
    folder: Path = typer.Option(None, "--dir", help="Folder to create (default: ./codi-NAME); must not exist or be empty."),
) -> None:
    """Write the skeleton of a modality plugin package: pyproject with the entry point, hooks,
    modality / diffuser / encoder stubs and a test."""
    try:
        target = write_plugin_skeleton(name, folder)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    package = f"codi_{name}"
    typer.echo(f"wrote {target}/ (package {package}, entry point {name} = {package}.plugin)")
    typer.echo(f"next: pip install -e {target} && codi plugins   — then fill in the stubs, following {TUTORIAL}")


def check_name(name: str) -> str:
    """``name`` if it can name a modality and its package ``codi_NAME``, else a ValueError saying why."""
    if not NAME_PATTERN.match(name or ""):
        hint = f" (try {name.lower().replace('-', '_')!r})" if name and NAME_PATTERN.match(name.lower().replace("-", "_")) else ""
        raise ValueError(
            f"invalid plugin name {name!r}{hint}; accepted: 1-40 lower-case letters, digits and '_', starting with a letter"
        )
    if keyword.iskeyword(name):
        raise ValueError(f"invalid plugin name {name!r}: it is a Python keyword")
    return name


def write_plugin_skeleton(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Write the package for modality ``name`` into ``folder`` (default ``./codi-NAME``) and return it.

    The files are written into a temporary folder next to the target and renamed into place, so
    the target is either complete or untouched. Refuses (ValueError) an invalid name and a target
    that exists and is not an empty folder.
    """
    check_name(name)
    target = Path(folder) if folder is not None else Path.cwd() / f"codi-{name.replace('_', '-')}"
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{target} already exists and is not an empty folder; choose another --dir or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for rel, text in skeleton_files(name).items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        tmp.chmod(0o777 & ~_umask())
        if target.exists():
            target.rmdir()  # empty, checked above
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def skeleton_files(name: str) -> dict[str, str]:
    """``{relative path: text}`` of the skeleton package for modality ``name``."""
    values = {
        "name": name,
        "dist": f"codi-{name.replace('_', '-')}",
        "package": f"codi_{name}",
        "cls": "".join(part.capitalize() for part in name.split("_")),
        "api": API_VERSION,
        "tutorial": TUTORIAL,
    }
    return {Template(rel).substitute(values): Template(text).substitute(values) for rel, text in _TEMPLATES.items()}


_TEMPLATES: dict[str, str] = {
    "pyproject.toml": '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "The $name modality for codi-sdk."
requires-python = ">=3.10"
dependencies = ["codi-sdk>=0.1", "torch>=2.4", "diffusers>=0.35", "transformers>=4.50"]

[project.optional-dependencies]
dev = ["pytest>=8"]

[project.entry-points."codi_sdk.plugins"]
$name = "$package.plugin"

[tool.setuptools.packages.find]
include = ["$package*"]

[tool.setuptools.package-data]
"$package" = ["weights/**/*"]
''',
    "README.md": '''\
# $dist

The `$name` modality for codi-sdk. Install with `pip install -e .`; `codi plugins` then lists it.
Fill in the stubs in `$package/` following $tutorial.
''',
    "$package/__init__.py": '''\
"""$dist: the $name modality for codi-sdk."""

__version__ = "0.1.0"
''',
    "$package/plugin.py": '''\
"""The hooks codi-sdk calls (see codi_sdk.hookspecs); named by the entry point in pyproject.toml."""

from codi_sdk import hookimpl


@hookimpl
def codi_api_version() -> int:
    return $api


@hookimpl
def codi_modalities() -> list:
    from .modality import ${cls}Modality

    return [${cls}Modality()]
''',
    "$package/modality.py": '''\
"""`${cls}Modality`: what a $name sample is, conversion, files, and the component factories."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from codi_sdk.modality import Modality

TODO = "not written yet: see $tutorial"


class ${cls}Modality(Modality):
    """The "$name" modality."""

    name = "$name"
    sample_type = "TODO: say what users may pass and what a canonical sample is"
    extensions = ()

    def convert(self, value: Any) -> Any:
        """A user value -> a canonical sample; raise self.invalid(...) for anything else."""
        raise NotImplementedError(f"${cls}Modality.convert is {TODO}")

    def load(self, path: str | os.PathLike) -> Any:
        raise NotImplementedError(f"${cls}Modality.load is {TODO}")

    def save(self, sample: Any, path: str | os.PathLike) -> Path:
        raise NotImplementedError(f"${cls}Modality.save is {TODO}")

    def to_output(self, sample: Any):
        """A canonical sample -> a codi_sdk.outputs object (ImageOutput, AudioOutput, ...)."""
        raise NotImplementedError(f"${cls}Modality.to_output is {TODO}")

    def render_toyworld(self, scene, rng) -> Any:
        """A canonical sample of a ToyWorld scene, for `codi train toyworld`."""
        raise NotImplementedError(f"${cls}Modality.render_toyworld is {TODO}")

    def load_encoder(self, path: str | os.PathLike | None = None):
        from .encoder import ${cls}Encoder

        return ${cls}Encoder.from_pretrained(self.resolve_weights(path) / "encoder")

    def load_diffuser(self, path: str | os.PathLike | None = None):
        from .diffuser import ${cls}Diffuser

        return ${cls}Diffuser.from_pretrained(self.resolve_weights(path))

    def init_encoder(self):
        from .encoder import ${cls}Encoder

        return ${cls}Encoder.toyworld()

    def init_diffuser(self):
        from .diffuser import ${cls}Diffuser

        return ${cls}Diffuser.toyworld()
''',
    "$package/diffuser.py": '''\
"""`${cls}Diffuser`: VAE, denoiser with joint attention, environment encoder of "$name"."""

from __future__ import annotations

from codi_sdk.diffuser import Diffuser

TODO = "not written yet: see $tutorial"


class ${cls}Diffuser(Diffuser):
    """Set vae, unet, env_encoder and joint (codi_sdk.joint_attention.add_joint_attention)."""

    modality = "$name"
    env_dim = 64

    @classmethod
    def toyworld(cls) -> "${cls}Diffuser":
        """A new, untrained diffuser in the ToyWorld configuration."""
        raise NotImplementedError(f"${cls}Diffuser.toyworld is {TODO}")

    def encode(self, batch):
        raise NotImplementedError(f"${cls}Diffuser.encode is {TODO}")

    def decode(self, latents):
        raise NotImplementedError(f"${cls}Diffuser.decode is {TODO}")

    def denoise(self, z_t, t, context, env=None):
        raise NotImplementedError(f"${cls}Diffuser.denoise is {TODO}")

    def latent_tokens(self, z):
        raise NotImplementedError(f"${cls}Diffuser.latent_tokens is {TODO}")

    def vae_loss(self, batch):
        raise NotImplementedError(f"${cls}Diffuser.vae_loss is {TODO}")

    def save_pretrained(self, path) -> None:
        raise NotImplementedError(f"${cls}Diffuser.save_pretrained is {TODO}")

    @classmethod
    def from_pretrained(cls, path) -> "${cls}Diffuser":
        raise NotImplementedError(f"${cls}Diffuser.from_pretrained is {TODO}")
''',
    "$package/encoder.py": '''\
"""`${cls}Encoder`: the prompt encoder of "$name" into the shared space (pooled [B, 64], unit norm)."""

from __future__ import annotations

from codi_sdk.encoder import Encoder, EncoderOutput

TODO = "not written yet: see $tutorial"


class ${cls}Encoder(Encoder):
    """forward(batch) -> EncoderOutput(tokens=pooled[:, None], pooled=L2-normalised [B, 64])."""

    modality = "$name"

    @classmethod
    def toyworld(cls) -> "${cls}Encoder":
        raise NotImplementedError(f"${cls}Encoder.toyworld is {TODO}")

    def forward(self, batch) -> EncoderOutput:
        raise NotImplementedError(f"${cls}Encoder.forward is {TODO}")

    def save_pretrained(self, path) -> None:
        raise NotImplementedError(f"${cls}Encoder.save_pretrained is {TODO}")

    @classmethod
    def from_pretrained(cls, path) -> "${cls}Encoder":
        raise NotImplementedError(f"${cls}Encoder.from_pretrained is {TODO}")
''',
    "tests/test_${name}.py": '''\
"""Tests of the $name plugin. Extend them as you fill in the stubs."""

import pytest

from codi_sdk.registry import Registry
from $package import plugin
from $package.modality import ${cls}Modality


def test_plugin_registers_the_modality():
    reg = Registry.from_plugins({"$name": plugin})
    assert reg.names() == ["$name"]
    assert isinstance(reg.get("$name"), ${cls}Modality)


def test_unwritten_parts_point_at_the_tutorial():
    with pytest.raises(NotImplementedError, match="tutorial"):
        ${cls}Modality().convert(0)
''',
}
