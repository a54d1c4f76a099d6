"""The plugin registry: discovery through entry points, isolation of broken plugins, API checks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from codi_sdk.errors import DuplicateModalityError, IncompatiblePluginError, PluginError, UnknownModalityError
from codi_sdk.registry import Registry

BUILTIN = {"image": "codi-image", "video": "codi-video", "audio": "codi-audio", "text": "codi-text"}


def test_fresh_environment_discovers_the_four_builtin_modalities_through_entry_points():
    # A new interpreter: nothing is imported by hand, the entry points are all it has.
    out = subprocess.run([sys.executable, "-m", "codi_sdk", "plugins", "--json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["failures"] == {}
    found = {row["modality"]: row["distribution"] for row in data["modalities"]}
    assert found == BUILTIN


def test_broken_plugin_is_reported_by_name_and_others_still_load(make_plugin):
    make_plugin("broken", body="raise RuntimeError('boom at import')\n")
    reg = Registry.load()
    assert "broken" in reg.failures
    assert "boom at import" in str(reg.failures["broken"])
    assert "'broken'" in str(reg.failures["broken"])
    assert set(BUILTIN) <= set(reg.names())


def test_broken_plugin_raises_in_strict_mode(make_plugin):
    make_plugin("broken", body="raise RuntimeError('boom at import')\n")
    with pytest.raises(PluginError, match="broken"):
        Registry.load(strict=True)


def test_incompatible_api_version_is_refused_with_name_version_and_requirement(make_plugin):
    make_plugin("future", modality="future", api=99)
    reg = Registry.load()
    err = reg.failures["future"]
    assert isinstance(err, IncompatiblePluginError)
    msg = str(err)
    assert "'future'" in msg and "fake-codi-future 1.2.3" in msg and "99" in msg and "[1]" in msg
    assert "future" not in reg.names()


def test_plugin_without_api_version_is_refused(make_plugin):
    make_plugin("noapi", body="from codi_sdk import hookimpl\n\n@hookimpl\ndef codi_modalities():\n    return []\n")
    reg = Registry.load()
    assert isinstance(reg.failures["noapi"], IncompatiblePluginError)
    assert "codi_api_version" in str(reg.failures["noapi"])


def test_blocked_plugin_is_skipped_by_argument_and_by_environment(make_plugin, monkeypatch):
    make_plugin("extra", modality="extra")
    assert "extra" in Registry.load().names()
    assert "extra" not in Registry.load(block=["extra"]).names()
    monkeypatch.setenv("CODI_BLOCK_PLUGINS", "extra, audio")
    reg = Registry.load()
    assert "extra" not in reg.names() and "audio" not in reg.names()
    assert reg.blocked == {"extra", "audio"}
    assert reg.failures == {}


def test_duplicate_modality_name_fails_clearly(make_plugin):
    make_plugin("imposter", modality="image")
    reg = Registry.load()
    err = reg.failures["imposter"]
    assert isinstance(err, DuplicateModalityError)
    assert "'image'" in str(err) and "imposter" in str(err) and "CODI_BLOCK_PLUGINS" in str(err)
    assert reg.modalities["image"].plugin.distribution == "codi-image"  # not silently overridden


def test_unknown_modality_lists_installed_ones():
    reg = Registry.load()
    with pytest.raises(UnknownModalityError, match="installed: audio, image, text, video"):
        reg.get("smell")


def test_codi_plugins_table_and_version(capsys):
    from typer.testing import CliRunner

    from codi_sdk.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("codi-sdk ")
    res = runner.invoke(app, ["plugins"])
    assert res.exit_code == 0
    for name, dist in BUILTIN.items():
        assert name in res.output and dist in res.output
