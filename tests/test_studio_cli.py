"""`codi studio validate | run | show | nodes`, with python nodes from a module made by the test."""

from __future__ import annotations

import json
import textwrap

import pytest
from PIL import Image
from typer.testing import CliRunner

from codi_sdk.cli import app

MODULE = '''
def shout(text):
    return text.upper() + "!"

def count(text):
    return {"words": len(text.split()), "chars": len(text)}

def explode(text):
    raise RuntimeError("the service is down")
'''

GRAPH = """
name: cli_demo
inputs:
  text: text
nodes:
  loud:
    type: python
    params: {{function: "studio_cli_funcs:shout", inputs: {{text: text}}, outputs: {{text: text}}}}
    inputs: {{text: text}}
  stats:
    type: python
    params: {{function: "studio_cli_funcs:{stats_fn}", inputs: {{text: text}}, outputs: {{words: number, chars: number}}}}
    inputs: {{text: loud.text}}
  again:
    type: python
    params: {{function: "studio_cli_funcs:shout", inputs: {{text: text}}, outputs: {{text: text}}}}
    inputs: {{text: text}}
outputs:
  loud: loud.text
  words: stats.words
  again: again.text
"""


@pytest.fixture
def graph_file(tmp_path, monkeypatch):
    (tmp_path / "studio_cli_funcs.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(stats_fn: str = "count"):
        path = tmp_path / f"g_{stats_fn}.yaml"
        path.write_text(GRAPH.format(stats_fn=stats_fn))
        return path

    return make


runner = CliRunner()


def test_validate_ok_and_with_inputs(graph_file):
    res = runner.invoke(app, ["studio", "validate", str(graph_file())])
    assert res.exit_code == 0, res.output
    assert "graph 'cli_demo' is valid" in res.output and "loud, " in res.output
    res = runner.invoke(app, ["studio", "validate", str(graph_file()), "--input", "txt=hi"])
    assert res.exit_code == 1
    assert "graph input 'text' (text) was not given" in res.output and "'txt'" in res.output


def test_validate_reports_bad_function_by_node(graph_file):
    res = runner.invoke(app, ["studio", "validate", str(graph_file("nope"))])
    assert res.exit_code == 1
    assert "node 'stats'" in res.output and "cannot import function 'studio_cli_funcs:nope'" in res.output


def test_run_writes_outputs_and_run_record(graph_file, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["studio", "run", str(graph_file()), "--input", "text=hello world", "-o", str(out), "--no-progress", "--intermediate"])
    assert res.exit_code == 0, res.output
    assert (out / "loud.txt").read_text() == "HELLO WORLD!\n"
    assert json.loads((out / "words.json").read_text()) == 2
    assert (out / "nodes" / "stats.chars.json").is_file()
    record = json.loads((out / "run.json").read_text())
    assert record["ok"] and set(record["nodes"]) == {"loud", "stats", "again"}
    assert all(n["seconds"] is not None for n in record["nodes"].values())
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind


def test_run_text_input_from_file(graph_file, tmp_path):
    (tmp_path / "in.txt").write_text("from a file\n")
    res = runner.invoke(app, ["studio", "run", str(graph_file()), "--input", f"text=@{tmp_path / 'in.txt'}", "-o", str(tmp_path / "o"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "loud.txt").read_text() == "FROM A FILE!\n"


def test_run_with_a_failing_node_exits_1_and_keeps_the_rest(graph_file, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["studio", "run", str(graph_file("explode")), "--input", "text=hi", "-o", str(out), "--no-progress"])
    assert res.exit_code == 1
    assert "node 'stats' failed: the service is down" in res.output
    assert (out / "again.txt").read_text() == "HI!\n" and not (out / "words.json").exists()
    assert json.loads((out / "run.json").read_text())["nodes"]["stats"]["status"] == "failed"


def test_show_prints_mermaid_and_draws_png(graph_file, tmp_path):
    png = tmp_path / "g.png"
    res = runner.invoke(app, ["studio", "show", str(graph_file()), "--png", str(png)])
    assert res.exit_code == 0, res.output
    assert "flowchart LR" in res.output and "node_loud -->|text → text|" not in res.output
    assert "node_loud -->|text| node_stats" in res.output
    with Image.open(png) as im:
        assert im.format == "PNG"


def test_nodes_lists_builtins_with_plugin():
    res = runner.invoke(app, ["studio", "nodes", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["type"]: r for r in json.loads(res.output)["node_types"]}
    assert rows["speech.recognize"]["plugin"] == "codi-studio"
    assert rows["speech.recognize"]["inputs"] == {"speech": "audio"}
