"""Shared fixtures: throw-away plugin distributions made at test time."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

FAKE_MODALITY = '''
from codi_sdk import hookimpl
from codi_sdk.modality import Modality


class FakeModality(Modality):
    name = {modality!r}
    sample_type = "anything"

    def convert(self, value):
        return value

    def load(self, path):
        raise NotImplementedError

    def save(self, sample, path):
        raise NotImplementedError

    def to_output(self, sample):
        raise NotImplementedError

    def load_encoder(self, path=None):
        raise NotImplementedError

    def load_diffuser(self, path=None):
        raise NotImplementedError

    def init_encoder(self):
        raise NotImplementedError

    def init_diffuser(self):
        raise NotImplementedError


@hookimpl
def codi_api_version():
    return {api!r}


@hookimpl
def codi_modalities():
    return [FakeModality()]
'''


@pytest.fixture
def make_plugin(tmp_path, monkeypatch):
    """Create an installed-looking distribution (dist-info + entry point) and put it on sys.path.

    ``make_plugin(name, modality=..., api=1, body=None)`` returns the module name. ``body``
    replaces the module source (e.g. one that raises on import).
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    created: list[str] = []

    def _make(name: str, modality: str | None = None, api=1, body: str | None = None) -> str:
        module = f"fake_codi_{name}"
        source = body if body is not None else FAKE_MODALITY.format(modality=modality or name, api=api)
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        dist = root / f"fake_codi_{name}-1.2.3.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-codi-{name}\nVersion: 1.2.3\n")
        (dist / "entry_points.txt").write_text(f"[codi_sdk.plugins]\n{name} = {module}\n")
        created.append(module)
        return module

    yield _make
    for module in created:
        sys.modules.pop(module, None)
