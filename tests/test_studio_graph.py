"""Studio graphs: schema, validation errors, executor, drawing, node plugins, CLI (no services needed)."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel

from codi_sdk import hookimpl
from codi_sdk.errors import PluginError
from codi_sdk.outputs import AudioOutput
from codi_sdk.registry import Registry
from codi_sdk.studio import (
    Graph,
    GraphValidationError,
    NodeCatalog,
    NodeType,
    Port,
    StudioRunError,
    draw_png,
    run_graph,
    to_mermaid,
    validate_graph,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "studio"


# -- small node types for tests -----------------------------------------------------------------
class Upper(NodeType):
    name = "test.upper"
    inputs = {"text": Port("text")}
    outputs = {"text": Port("text")}

    def run(self, inputs):
        return {"text": inputs["text"].upper()}


class Join(NodeType):
    name = "test.join"
    inputs = {"parts": Port("text", many=True), "sep": Port("text", required=False, default=" ")}
    outputs = {"text": Port("text")}

    def run(self, inputs):
        return {"text": inputs["sep"].join(inputs["parts"])}


class Beep(NodeType):
    name = "test.beep"
    inputs = {"text": Port("text")}
    outputs = {"speech": Port("audio")}

    class Params(BaseModel):
        rate: int = 8000

    def run(self, inputs):
        n = len(inputs["text"]) * 100
        return {"speech": AudioOutput("audio", waveform=np.ones(n, np.float32) * 0.1, sample_rate=self.params.rate)}


class Fail(NodeType):
    name = "test.fail"
    inputs = {"text": Port("text")}
    outputs = {"text": Port("text")}

    def run(self, inputs):
        raise ValueError(f"cannot handle {inputs['text']!r}")


class WrongType(NodeType):
    name = "test.wrong"
    inputs = {"text": Port("text")}
    outputs = {"text": Port("text")}

    def run(self, inputs):
        return {"text": 42}


class Meet(NodeType):
    """Waits at a barrier shared by every Meet node: only passes if they run at the same time."""

    name = "test.meet"
    inputs = {"text": Port("text")}
    outputs = {"text": Port("text")}
    barrier: threading.Barrier | None = None

    def run(self, inputs):
        Meet.barrier.wait(timeout=20)
        return {"text": inputs["text"] + "!"}


CATALOG = NodeCatalog.of(Upper, Join, Beep, Fail, WrongType, Meet)


def chain_graph() -> Graph:
    g = Graph(name="chain", inputs={"words": "text"})
    g.add_node("up", "test.upper", inputs={"text": "words"})
    g.add_node("say", "test.beep", inputs={"text": "up.text"}, rate=16000)
    g.add_output("loud", "up.text").add_output("speech", "say.speech")
    return g


def problems(graph: Graph, **kw) -> GraphValidationError:
    with pytest.raises(GraphValidationError) as info:
        validate_graph(graph, kw.pop("catalog", CATALOG), **kw)
    return info.value


# -- schema ---------------------------------------------------------------------------------------
def test_yaml_json_and_python_give_the_same_graph():
    text = textwrap.dedent(
        """
        name: chain
        inputs:
          words: text
        nodes:
          up:
            type: test.upper
            inputs: {text: words}
          say:
            type: test.beep
            params: {rate: 16000}
            inputs: {text: up.text}
        outputs:
          loud: up.text
          speech: say.speech
        """
    )
    from_yaml = Graph.from_yaml(text)
    from_json = Graph.from_json(json.dumps(from_yaml.model_dump()))
    assert from_yaml == from_json == chain_graph()
    assert Graph.from_yaml(from_yaml.to_yaml()) == from_yaml
    assert [(e.source, e.source_port, e.target, e.target_port) for e in from_yaml.edges()] == [
        ("words", None, "up", "text"),
        ("up", "text", "say", "text"),
    ]


def test_load_reads_yaml_and_json_files(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps(chain_graph().model_dump()))
    (tmp_path / "g.yaml").write_text(chain_graph().to_yaml())
    assert Graph.load(tmp_path / "g.json") == Graph.load(tmp_path / "g.yaml") == chain_graph()


def test_schema_errors_name_the_node():
    err = pytest.raises(GraphValidationError, Graph.from_yaml, "nodes:\n  up:\n    kind: test.upper\n").value
    assert err.codes == ["schema", "schema"]  # 'type' missing, 'kind' not allowed
    assert "node 'up'" in str(err) and "type" in str(err) and "kind" in str(err)
    err = pytest.raises(GraphValidationError, Graph.from_yaml, "nodes: [1, 2\n").value
    assert "not valid YAML" in str(err)
    err = pytest.raises(GraphValidationError, Graph.from_dict, {"nodes": {"a.b": {"type": "x"}}}).value
    assert "'a.b'" in str(err) and "no dots" in str(err)


def test_every_example_graph_is_well_formed():
    names = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert names == ["speech_to_speech.yaml", "video_to_text.yaml", "vqa.yaml"]
    catalog = NodeCatalog.load()
    for path in EXAMPLES.glob("*.yaml"):
        vg = validate_graph(Graph.load(path), catalog, check_services=False)
        assert vg.outputs, path


# -- validation errors ------------------------------------------------------------------------------
def test_unknown_node_type_names_node_and_suggests():
    g = chain_graph()
    g.nodes["up"].type = "test.uper"
    err = problems(g)
    assert err.codes == ["unknown_node_type"]
    assert "node 'up'" in str(err) and "'test.uper'" in str(err) and "did you mean 'test.upper'" in str(err)


def test_unknown_node_type_against_the_installed_catalogue():
    g = Graph(inputs={"t": "text"}).add_node("mt", "text.translat", inputs={"text": "t"})
    err = problems(g, catalog=NodeCatalog.load(), check_services=False)
    assert err.codes == ["unknown_node_type"] and "node 'mt'" in str(err) and "text.translate" in str(err)


def test_unknown_input_port_and_unknown_source_port():
    g = chain_graph()
    g.nodes["say"].inputs = {"txt": "up.text"}
    err = problems(g)
    assert err.codes == ["unknown_port", "unconnected_input"]
    assert "node 'say': has no input port 'txt'; its input ports: text" in str(err)

    g = chain_graph()
    g.nodes["say"].inputs = {"text": "up.txet"}
    err = problems(g)
    assert err.codes == ["unknown_port"]
    assert "node 'say'" in str(err) and "node 'up' has no output port 'txet'" in str(err)


def test_unknown_reference():
    g = chain_graph()
    g.nodes["say"].inputs = {"text": "upp.text"}
    err = problems(g)
    assert err.codes == ["unknown_reference"] and "node 'say'" in str(err) and "'upp'" in str(err)


def test_type_mismatch_names_both_ends():
    g = chain_graph()
    g.add_node("again", "test.upper", inputs={"text": "say.speech"})
    err = problems(g)
    assert err.codes == ["type_mismatch"]
    assert "node 'again': input port 'text' expects 'text', but 'say.speech' gives 'audio'" in str(err)


def test_cycle_is_reported_with_its_path():
    g = Graph(inputs={"t": "text"})
    g.add_node("a", "test.join", inputs={"parts": ["t", "c.text"]})
    g.add_node("b", "test.upper", inputs={"text": "a.text"})
    g.add_node("c", "test.upper", inputs={"text": "b.text"})
    err = problems(g)
    assert err.codes == ["cycle"]
    message = str(err)
    assert "cycle" in message and all(f"{n}" in message.split("cycle:")[1] for n in "abc")


def test_unconnected_required_input():
    g = chain_graph()
    g.nodes["say"].inputs = {}
    err = problems(g)
    assert err.codes == ["unconnected_input"]
    assert "node 'say': required input port 'text' (text) is not connected" in str(err)


def test_optional_input_may_stay_unconnected():
    g = Graph(inputs={"t": "text"}).add_node("j", "test.join", inputs={"parts": ["t", "t"]})
    assert run_graph(g, {"t": "ab"}, catalog=CATALOG).outputs["j.text"] == "ab ab"


def test_missing_and_unknown_graph_inputs():
    err = problems(chain_graph(), inputs={})
    assert err.codes == ["missing_graph_input"]
    assert "node 'up': graph input 'words' (text) was not given" in str(err)
    err = problems(chain_graph(), inputs={"words": "hi", "wrds": "x"})
    assert err.codes == ["unknown_graph_input"] and "'wrds'" in str(err)
    with pytest.raises(GraphValidationError, match="graph input 'words'"):
        run_graph(chain_graph(), {}, catalog=CATALOG)


def test_invalid_params_name_the_field():
    g = chain_graph()
    g.nodes["say"].params = {"rate": "fast"}
    err = problems(g)
    assert err.codes == ["invalid_params"] and "node 'say'" in str(err) and "rate" in str(err)


def test_all_problems_are_reported_at_once():
    g = chain_graph()
    g.nodes["up"].type = "nope"
    g.add_node("x", "test.upper")
    err = problems(g, inputs={})
    assert sorted(err.codes) == ["missing_graph_input", "unconnected_input", "unknown_node_type"]


# -- executor -----------------------------------------------------------------------------------------
def test_run_keeps_every_node_result_and_timing():
    events = []
    result = run_graph(chain_graph(), {"words": "hello"}, catalog=CATALOG, on_event=lambda e, r: events.append((e, r.name)))
    assert result.ok
    assert result.outputs["loud"] == "HELLO"
    assert result.outputs["speech"].sample_rate == 16000 and len(result.outputs["speech"].waveform) == 500
    assert set(result.nodes) == {"up", "say"} and result.nodes["up"].outputs == {"text": "HELLO"}
    assert set(result.timings()) == {"up", "say"} and all(t >= 0 for t in result.timings().values())
    assert events == [("started", "up"), ("finished", "up"), ("started", "say"), ("finished", "say")]


def test_failing_node_mid_graph_is_named_and_independent_branch_completes(tmp_path):
    g = Graph(name="branches", inputs={"t": "text"})
    g.add_node("a", "test.upper", inputs={"text": "t"})
    g.add_node("b", "test.fail", inputs={"text": "a.text"})
    g.add_node("c", "test.upper", inputs={"text": "b.text"})
    g.add_node("d", "test.upper", inputs={"text": "t"})
    g.add_node("e", "test.beep", inputs={"text": "d.text"})
    g.add_output("c_text", "c.text").add_output("beep", "e.speech")
    result = run_graph(g, {"t": "hi"}, catalog=CATALOG)
    assert not result.ok
    status = {n: r.status for n, r in result.nodes.items()}
    assert status == {"a": "ok", "b": "failed", "c": "skipped", "d": "ok", "e": "ok"}
    err = result.failed["b"]
    assert str(err) == "node 'b' (test.fail) failed: ValueError: cannot handle 'HI'"
    assert isinstance(err.__cause__, ValueError) and "cannot handle" in result.nodes["b"].traceback
    assert result.skipped == {"c": "upstream node 'b' failed"}
    assert set(result.outputs) == {"beep"}
    with pytest.raises(StudioRunError, match=r"node 'b' \(test.fail\) failed: ValueError: cannot handle 'HI'") as info:
        result.raise_for_failures()
    assert "'c' skipped" in str(info.value)
    written = result.save(tmp_path)
    assert set(written) == {"beep"} and written["beep"].suffix == ".wav"
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["nodes"]["b"]["status"] == "failed" and "cannot handle" in record["nodes"]["b"]["error"]


def test_output_of_the_wrong_type_fails_the_node():
    g = Graph(inputs={"t": "text"}).add_node("w", "test.wrong", inputs={"text": "t"})
    result = run_graph(g, {"t": "x"}, catalog=CATALOG)
    assert "output port 'text': expected str for type 'text', got int" in str(result.failed["w"])


def test_independent_branches_run_concurrently():
    Meet.barrier = threading.Barrier(2)
    g = Graph(inputs={"t": "text"})
    g.add_node("left", "test.meet", inputs={"text": "t"}).add_node("right", "test.meet", inputs={"text": "t"})
    result = run_graph(g, {"t": "go"}, catalog=CATALOG, max_workers=2)
    assert result.ok, result.failed  # a sequential run would break the barrier (timeout)
    starts = sorted(r.started for r in result.nodes.values())
    assert starts[1] < result.nodes["left"].started + result.nodes["left"].seconds


def test_progress_display_runs(capsys):
    result = run_graph(chain_graph(), {"words": "x"}, catalog=CATALOG, progress=True)
    assert result.ok
    err = capsys.readouterr().err
    assert "up (test.upper)" in err and "say (test.beep)" in err


def test_graph_outputs_default_to_the_sinks():
    g = chain_graph()
    g.outputs.clear()
    vg = validate_graph(g, CATALOG)
    assert set(vg.outputs) == {"say.speech"}


def test_graph_inputs_are_read_from_files(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.zeros(800, np.float32), 8000)
    g = Graph(inputs={"speech": "audio"})
    g.add_node("p", "python", inputs={"speech": "speech"}, params={
        "function": lambda speech: len(speech.waveform) / speech.sample_rate,
        "inputs": {"speech": "audio"},
        "outputs": {"seconds": "number"},
    })
    result = run_graph(g, {"speech": tmp_path / "a.wav"})
    assert result.ok, result.failed
    assert result.outputs["p.seconds"] == pytest.approx(0.1)


# -- drawing --------------------------------------------------------------------------------------------
def test_mermaid_text_lists_inputs_nodes_outputs_and_edges():
    text = to_mermaid(chain_graph(), validate_graph(chain_graph(), CATALOG))
    assert text.startswith("flowchart LR\n")
    for line in ('in_words(["words: text"])', 'node_up["up<br/><small>test.upper</small>"]', 'out_speech[/"speech"/]',
                 "in_words -->|text| node_up", "node_up -->|text| node_say", "node_say -->|speech| out_speech"):
        assert line in text


def test_png_is_drawn(tmp_path):
    path = draw_png(chain_graph(), tmp_path / "g.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 200 and im.height > 100
        assert len(set(im.convert("RGB").getdata())) > 10  # not a blank canvas


# -- node types are plugins ---------------------------------------------------------------------------
class AcmePlugin:
    @hookimpl
    def codi_api_version(self):
        return 1

    @hookimpl
    def codi_studio_nodes(self):
        return [Upper]


class BrokenPlugin:
    @hookimpl
    def codi_api_version(self):
        return 1

    @hookimpl
    def codi_studio_nodes(self):
        raise ImportError("no module named acme_models")


def test_node_types_come_from_the_plugin_hook():
    cat = NodeCatalog.load(Registry.from_plugins({"acme": AcmePlugin()}))
    assert cat.get("test.upper") is Upper and cat.providers["test.upper"] == "acme"
    assert cat.providers["speech.recognize"] == "codi-studio"  # built-ins arrive through the same hook
    assert {"codi.compose", "python", "http.json", "speech.recognize", "speech.synthesize", "text.translate",
            "vision.ocr", "vision.detect", "text.embed", "text.retrieve"} <= set(cat.names())


def test_broken_node_plugin_is_reported_by_name():
    cat = NodeCatalog.load(Registry.from_plugins({"broken": BrokenPlugin()}))
    assert "broken" in cat.failures and "acme_models" in str(cat.failures["broken"])
    assert "python" in cat.names()  # the others still load
    assert "plugin 'broken' failed in codi_studio_nodes" in cat.unknown_message("acme.thing")


def test_two_plugins_with_one_node_type_name_is_an_error():
    class Other(Upper):
        pass

    class Second:
        @hookimpl
        def codi_api_version(self):
            return 1

        @hookimpl
        def codi_studio_nodes(self):
            return [Other]

    with pytest.raises(PluginError, match="'test.upper' is provided by plugin"):
        NodeCatalog.load(Registry.from_plugins({"acme": AcmePlugin(), "second": Second()}))


def test_unknown_types_are_reported():
    g = Graph(inputs={"t": "txt"}).add_node("p", "python", inputs={"x": "t"}, params={
        "function": lambda x: x, "inputs": {"x": "text"}, "outputs": {"y": "pictures"}})
    err = problems(g, catalog=NodeCatalog.load(Registry.from_plugins({})))
    assert sorted(err.codes) == ["type_mismatch", "unknown_type", "unknown_type"]
    text = str(err)
    assert "graph input 't' has unknown type 'txt'" in text
    assert "node 'p': port type unknown for output y ('pictures')" in text
