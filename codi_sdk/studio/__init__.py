"""Studio: task graphs of models and services (i-Code Studio), validated before they run.

A graph has raw inputs, nodes (models and services, each a registered node type) and outputs;
edges carry typed values from output ports to input ports. Load one from YAML or JSON, or build it
in Python, then run it::

    from codi_sdk.studio import Graph, run_graph

    graph = Graph.load("examples/studio/speech_to_speech.yaml")
    result = run_graph(graph, {"speech": "hello.wav"}, progress=True)
    result.raise_for_failures()
    print(result.outputs["spanish_text"], result.timings())

Node types are plugins: return :class:`NodeType` subclasses from the ``codi_studio_nodes`` hook.
"""

from .catalog import NodeCatalog
from .drawing import draw_png, to_mermaid
from .errors import GraphValidationError, NodeError, Problem, ServiceUnavailableError, StudioRunError
from .executor import NodeResult, RunResult, run_graph
from .graph import Edge, Graph, GraphInput, NodeSpec
from .node import NodeType, NoParams, Port
from .validate import ValidatedGraph, validate_graph

__all__ = [
    "Edge",
    "Graph",
    "GraphInput",
    "GraphValidationError",
    "NodeCatalog",
    "NodeError",
    "NodeResult",
    "NodeSpec",
    "NodeType",
    "NoParams",
    "Port",
    "Problem",
    "RunResult",
    "ServiceUnavailableError",
    "StudioRunError",
    "ValidatedGraph",
    "draw_png",
    "run_graph",
    "to_mermaid",
    "validate_graph",
]
