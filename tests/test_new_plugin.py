"""`codi new-plugin`: the skeleton it writes imports, registers and names its entry point right."""

from __future__ import annotations

import importlib
import sys
import pytest
from typer.testing import CliRunner

from codi_sdk.cli import app
from codi_sdk.cli.new_plugin import check_name, write_plugin_skeleton
from codi_sdk.registry import Registry

runner = CliRunner()
tomllib = pytest.importorskip("tomllib")


@pytest.fixture
def import_from(monkeypatch):
    """Import a module from a folder, forgetting it (and its package) afterwards."""
    loaded: list[str] = []

    def _import(folder, module: str):
        monkeypatch.syspath_prepend(str(folder))
        loaded.append(module.split(".")[0])
        return importlib.import_module(module)

    yield _import
    for name in list(sys.modules):
        if name.split(".")[0] in loaded:
            del sys.modules[name]


def test_cli_writes_a_package_whose_plugin_registers(tmp_path, import_from):
    result = runner.invoke(app, ["new-plugin", "sonar_map", "--dir", str(tmp_path / "pkg")])
    assert result.exit_code == 0, result.output
    root = tmp_path / "pkg"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "README.md", "codi_sonar_map/__init__.py", "codi_sonar_map/diffuser.py", "codi_sonar_map/encoder.py",
        "codi_sonar_map/modality.py", "codi_sonar_map/plugin.py", "pyproject.toml", "tests/test_sonar_map.py",
    ]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "codi-sonar-map"
    assert project["project"]["entry-points"]["codi_sdk.plugins"] == {"sonar_map": "codi_sonar_map.plugin"}

    plugin = import_from(root, "codi_sonar_map.plugin")
    reg = Registry.from_plugins({"sonar_map": plugin})
    modality = reg.get("sonar_map")
    assert type(modality).__name__ == "SonarMapModality"
    with pytest.raises(NotImplementedError, match="tutorial"):
        modality.convert([1, 2])
    for module in ("diffuser", "encoder"):
        import_from(root, f"codi_sonar_map.{module}")
    tests = import_from(root / "tests", "test_sonar_map")
    tests.test_plugin_registers_the_modality()
    tests.test_unwritten_parts_point_at_the_tutorial()


def test_default_folder_is_codi_name_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = write_plugin_skeleton("sketch2")
    assert target == tmp_path / "codi-sketch2" and (target / "codi_sketch2" / "plugin.py").is_file()


def test_an_empty_target_folder_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    assert (write_plugin_skeleton("depth", tmp_path / "empty") / "pyproject.toml").is_file()


@pytest.mark.parametrize("name", ["", "Sketch", "my-plugin", "2d", "has space", "class", "x" * 41])
def test_invalid_names_are_refused(tmp_path, name):
    result = runner.invoke(app, ["new-plugin", name, "--dir", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "invalid plugin name" in result.output
    assert not (tmp_path / "p").exists()
    with pytest.raises(ValueError, match="invalid plugin name"):
        check_name(name)


def test_an_existing_non_empty_target_is_refused_and_left_alone(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["new-plugin", "depth", "--dir", str(target)])
    assert result.exit_code == 2 and "not an empty folder" in result.output
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # no temporary folder left behind


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import codi_sdk.cli.new_plugin as mod

    class HalfWritten:
        def items(self):
            yield "pyproject.toml", "[project]\n"
            raise OSError("disk full")

    monkeypatch.setattr(mod, "skeleton_files", lambda name: HalfWritten())
    with pytest.raises(OSError, match="disk full"):
        write_plugin_skeleton("depth", tmp_path / "pkg")
    assert list(tmp_path.iterdir()) == []
