"""The graph schema: graph inputs, nodes with parameters and connections, graph outputs.

A graph in YAML::

    name: speech_to_speech
    inputs:
      speech: audio                  # a graph input and its type (or {type: audio, description: ...})
    nodes:
      asr:
        type: speech.recognize       # a registered node type
        params: {language: en}
        inputs: {speech: speech}     # input port <- a graph input
      mt:
        type: text.translate
        params: {pair: eng-spa}
        inputs: {text: asr.text}     # input port <- output port ``text`` of node ``asr``
    outputs:
      spanish: mt.text

Each entry under a node's ``inputs`` is an edge from an output port to that input port. A source is
written ``node.port``, or the bare name of a graph input; a bare node name stands for that node's
only output port. A ``many`` input port takes a list of sources. Without ``outputs``, every output
port of a node that feeds no other node is a graph output, named ``node.port``.

The same graph in Python::

    g = Graph(name="speech_to_speech", inputs={"speech": "audio"})
    g.add_node("asr", "speech.recognize", inputs={"speech": "speech"}, language="en")
    g.add_node("mt", "text.translate", inputs={"text": "asr.text"}, pair="eng-spa")
    g.add_output("spanish", "mt.text")
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import GraphValidationError, Problem

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
_NAME = re.compile(NAME_PATTERN)


class GraphInput(BaseModel):
    """A raw input of the graph: its type, and optionally a default used when none is given."""

    model_config = ConfigDict(extra="forbid")

    type: str
    description: str = ""
    default: Any = None

    @property
    def required(self) -> bool:
        return self.default is None


class NodeSpec(BaseModel):
    """One node: its type, its parameters and, for each input port, where its value comes from."""

    model_config = ConfigDict(extra="forbid")

    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str | list[str]] = Field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Edge:
    """A connection from ``source`` (graph input, ``source_port`` None; or node output port) to a node's input port."""

    source: str
    source_port: str | None
    target: str
    target_port: str

    @property
    def from_graph_input(self) -> bool:
        return self.source_port is None


class Graph(BaseModel):
    """A Studio task graph. Build it in Python, or load it with :meth:`load` (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "graph"
    description: str = ""
    inputs: dict[str, GraphInput] = Field(default_factory=dict)
    nodes: dict[str, NodeSpec] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)

    @field_validator("inputs", mode="before")
    @classmethod
    def _shorthand_inputs(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _names(self) -> "Graph":
        for kind, names in (("graph input", self.inputs), ("node", self.nodes)):
            for name in names:
                if not _NAME.match(name):
                    raise ValueError(f"{kind} name {name!r} is not allowed; use letters, digits, '_' and '-' (no dots)")
        both = sorted(set(self.inputs) & set(self.nodes))
        if both:
            raise ValueError(f"{', '.join(map(repr, both))} is both a graph input and a node; rename one")
        return self

    # -- loading and saving ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "graph") -> "Graph":
        """Validate a parsed YAML/JSON document; schema errors become a :class:`GraphValidationError`."""
        if not isinstance(data, dict):
            raise GraphValidationError(source, [Problem("schema", None, f"expected a mapping at the top level, got {type(data).__name__}")])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            name = data.get("name", source) if isinstance(data.get("name"), str) else source
            raise GraphValidationError(name, [_schema_problem(err) for err in exc.errors()]) from None

    @classmethod
    def from_yaml(cls, text: str, source: str = "graph") -> "Graph":
        """Parse a graph from YAML text."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GraphValidationError(source, [Problem("schema", None, f"not valid YAML: {exc}")]) from None
        return cls.from_dict(data, source)

    @classmethod
    def from_json(cls, text: str, source: str = "graph") -> "Graph":
        """Parse a graph from JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GraphValidationError(source, [Problem("schema", None, f"not valid JSON: {exc}")]) from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Graph":
        """Read a graph file: ``.json`` as JSON, anything else as YAML."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GraphValidationError(str(path), [Problem("schema", None, f"cannot read graph file: {exc}")]) from None
        return cls.from_json(text, str(path)) if path.suffix.lower() == ".json" else cls.from_yaml(text, str(path))

    def to_yaml(self) -> str:
        """The graph as YAML (parameters must be YAML-serialisable, so not Python callables)."""
        import yaml

        return yaml.safe_dump(self.model_dump(exclude_defaults=True), sort_keys=False)

    # -- building -------------------------------------------------------------------------------
    def add_input(self, name: str, type: str, description: str = "", default: Any = None) -> "Graph":
        """Declare a graph input; returns the graph for chaining."""
        self.inputs[name] = GraphInput(type=type, description=description, default=default)
        self._names()
        return self

    def add_node(
        self,
        name: str,
        type: str,
        inputs: dict[str, str | list[str]] | None = None,
        params: dict[str, Any] | None = None,
        **more_params: Any,
    ) -> "Graph":
        """Add a node of ``type``; ``inputs`` maps its input ports to sources, parameters come from
        ``params`` and keyword arguments (use ``params`` for parameters called ``inputs``/``params``,
        as the ``python`` and ``http.json`` nodes have). Returns the graph for chaining."""
        self.nodes[name] = NodeSpec(type=type, params={**(params or {}), **more_params}, inputs=inputs or {})
        self._names()
        return self

    def add_output(self, name: str, source: str) -> "Graph":
        """Expose ``source`` (``node.port``) as the graph output ``name``; returns the graph."""
        self.outputs[name] = source
        return self

    # -- structure ------------------------------------------------------------------------------
    def resolve(self, ref: str) -> tuple[str, str | None]:
        """Split a source reference into ``(node or graph input, port or None)`` without checking it."""
        if ref in self.inputs:
            return ref, None
        node, dot, port = ref.partition(".")
        return (node, port) if dot else (node, "")

    def edges(self) -> list[Edge]:
        """Every connection, in the order the nodes and their ports are written."""
        out: list[Edge] = []
        for target, spec in self.nodes.items():
            for port, refs in spec.inputs.items():
                for ref in [refs] if isinstance(refs, str) else refs:
                    source, source_port = self.resolve(ref)
                    out.append(Edge(source, source_port, target, port))
        return out


def _schema_problem(err: dict) -> Problem:
    loc = [str(p) for p in err.get("loc", ())]
    msg = err.get("msg", "invalid")
    if len(loc) >= 2 and loc[0] == "nodes":
        return Problem("schema", loc[1], f"{'.'.join(loc[2:]) or 'node'}: {msg}")
    if len(loc) >= 2 and loc[0] == "inputs":
        return Problem("schema", None, f"graph input {loc[1]!r}: {'.'.join(loc[2:]) or 'input'}: {msg}")
    return Problem("schema", None, f"{'.'.join(loc) or 'graph'}: {msg}")
