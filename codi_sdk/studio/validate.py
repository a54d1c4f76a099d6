"""Validation of a graph before anything runs: every problem found, each naming its node."""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from pydantic import ValidationError

from .catalog import NodeCatalog
from .errors import GraphValidationError, Problem, ServiceUnavailableError
from .graph import Edge, Graph
from .node import NodeType, Port
from .types import compatible, known_types


@dataclass
class ValidatedGraph:
    """A graph that passed validation, ready for the executor.

    ``nodes`` holds the node instances, ``edges`` every connection with bare node references
    resolved to their port, ``order`` a topological order, ``upstream`` each node's source nodes,
    and ``outputs`` each graph output's ``(node, port)``.
    """

    graph: Graph
    catalog: NodeCatalog
    nodes: dict[str, NodeType]
    edges: list[Edge]
    order: list[str]
    upstream: dict[str, set[str]]
    outputs: dict[str, tuple[str, str]] = field(default_factory=dict)

    def output_type(self, name: str) -> str:
        node, port = self.outputs[name]
        return self.nodes[node].output_ports()[port].type

    def downstream(self, node: str) -> set[str]:
        """Every node that depends, directly or not, on ``node``."""
        found: set[str] = set()
        frontier = [node]
        while frontier:
            current = frontier.pop()
            for name, ups in self.upstream.items():
                if current in ups and name not in found:
                    found.add(name)
                    frontier.append(name)
        return found


def _params_problem(node: str, type_name: str, exc: ValidationError) -> Problem:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "params"
        parts.append(f"{where}: {err.get('msg')}")
    return Problem("invalid_params", node, f"invalid params for node type {type_name!r}: " + "; ".join(parts))


def validate_graph(
    graph: Graph,
    catalog: NodeCatalog | None = None,
    inputs: Mapping[str, Any] | None = None,
    check_services: bool = True,
) -> ValidatedGraph:
    """Check ``graph`` and return it ready to run, or raise :class:`GraphValidationError` listing every problem.

    Checks: known node types and valid parameters; known port types; every connection refers to an
    existing node or graph input and an existing port, with compatible types; every required input
    port is connected; no cycle; and, when ``inputs`` is given, that it supplies every graph input
    that has no default and nothing else. With ``check_services`` each node also checks that its
    program, package or model is installed (cheaply: nothing is loaded).
    """
    catalog = catalog if catalog is not None else NodeCatalog.load()
    types = set(known_types(catalog.modalities))
    problems: list[Problem] = []
    nodes: dict[str, NodeType] = {}

    for name, gi in graph.inputs.items():
        if gi.type not in types:
            problems.append(Problem("unknown_type", None, f"graph input {name!r} has unknown type {gi.type!r}; known types: {', '.join(sorted(types))}"))

    for name, spec in graph.nodes.items():
        cls = catalog.get(spec.type)
        if cls is None:
            problems.append(Problem("unknown_node_type", name, catalog.unknown_message(spec.type)))
            continue
        try:
            params = cls.Params.model_validate(spec.params)
        except ValidationError as exc:
            problems.append(_params_problem(name, spec.type, exc))
            continue
        try:
            node = cls(params)
            ports = {**{f"input {k}": p for k, p in node.input_ports().items()}, **{f"output {k}": p for k, p in node.output_ports().items()}}
        except Exception as exc:
            problems.append(Problem("invalid_params", name, f"node type {spec.type!r} rejected its params: {exc}"))
            continue
        unknown = [f"{where} ({p.type!r})" for where, p in ports.items() if p.type not in types]
        if unknown:
            problems.append(Problem("unknown_type", name, f"port type unknown for {', '.join(unknown)}; known types: {', '.join(sorted(types))}"))
        nodes[name] = node
        if check_services:
            try:
                node.check()
            except ServiceUnavailableError as exc:
                problems.append(Problem("service_unavailable", name, str(exc)))

    edges: list[Edge] = []
    upstream: dict[str, set[str]] = {name: set() for name in graph.nodes}

    def source_type(where: str, ref: str) -> tuple[str | None, tuple[str, str | None] | None, tuple[str, str] | None]:
        """(type, resolved (source, port), (problem code, message)) of a source reference."""
        src, port = graph.resolve(ref)
        if port is None:
            return graph.inputs[src].type, (src, None), None
        if src not in graph.nodes:
            return None, None, (
                "unknown_reference",
                f"{where} refers to {ref!r}, but there is no node or graph input called {src!r}; "
                f"nodes: {', '.join(graph.nodes) or 'none'}; graph inputs: {', '.join(graph.inputs) or 'none'}"
            )
        if src not in nodes:  # its own problem is already reported
            return None, None, None
        outs = nodes[src].output_ports()
        if port == "":
            if len(outs) != 1:
                return None, None, ("unknown_port", f"{where} refers to node {src!r} without a port, but it has {len(outs)} output ports ({', '.join(outs)}); write '{src}.<port>'")
            port = next(iter(outs))
        if port not in outs:
            return None, None, ("unknown_port", f"{where} refers to {ref!r}, but node {src!r} has no output port {port!r}; its output ports: {', '.join(outs) or 'none'}")
        return outs[port].type, (src, port), None

    for name, spec in graph.nodes.items():
        node = nodes.get(name)
        if node is None:
            continue
        in_ports = node.input_ports()
        for port_name, refs in spec.inputs.items():
            port: Port | None = in_ports.get(port_name)
            if port is None:
                problems.append(Problem("unknown_port", name, f"has no input port {port_name!r}; its input ports: {', '.join(in_ports) or 'none'}"))
                continue
            ref_list = [refs] if isinstance(refs, str) else list(refs)
            if not port.many and len(ref_list) != 1:
                problems.append(Problem("invalid_params", name, f"input port {port_name!r} takes one source, got {len(ref_list)}"))
                continue
            for ref in ref_list:
                typ, resolved, bad = source_type(f"input port {port_name!r}", ref)
                if resolved is None:
                    if bad:
                        problems.append(Problem(bad[0], name, bad[1]))
                    continue
                if not compatible(typ, port.type):
                    problems.append(Problem(
                        "type_mismatch", name,
                        f"input port {port_name!r} expects {port.type!r}, but {ref!r} gives {typ!r}",
                    ))
                edges.append(Edge(resolved[0], resolved[1], name, port_name))
                if resolved[1] is not None:
                    upstream[name].add(resolved[0])
        for port_name, port in in_ports.items():
            if port.required and port_name not in spec.inputs:
                problems.append(Problem(
                    "unconnected_input", name,
                    f"required input port {port_name!r} ({port.type}) is not connected; add `inputs: {{{port_name}: <node>.<port> or <graph input>}}`",
                ))

    outputs: dict[str, tuple[str, str]] = {}
    declared = dict(graph.outputs)
    if not declared:  # the sinks' output ports are the graph's outputs
        feeding = {src for ups in upstream.values() for src in ups}
        for name, node in nodes.items():
            if name not in feeding:
                declared.update({f"{name}.{p}": f"{name}.{p}" for p in node.output_ports()})
    for out_name, ref in declared.items():
        if ref in graph.inputs:
            problems.append(Problem("unknown_reference", None, f"graph output {out_name!r} refers to graph input {ref!r}; outputs must come from a node port"))
            continue
        typ, resolved, bad = source_type(f"graph output {out_name!r}", ref)
        if resolved is None:
            if bad:
                problems.append(Problem(bad[0], None, bad[1]))
            continue
        outputs[out_name] = (resolved[0], resolved[1])

    order: list[str] = []
    try:
        order = list(graphlib.TopologicalSorter(upstream).static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        problems.append(Problem("cycle", cycle[0], f"is part of a cycle: {' -> '.join(cycle)}; a graph must be acyclic"))

    if inputs is not None:
        consumers: dict[str, list[str]] = {}
        for e in edges:
            if e.from_graph_input:
                consumers.setdefault(e.source, []).append(e.target)
        for name, gi in graph.inputs.items():
            if gi.required and name not in inputs:
                users = consumers.get(name, [])
                problems.append(Problem(
                    "missing_graph_input", users[0] if users else name,
                    f"graph input {name!r} ({gi.type}) was not given"
                    + (f"; needed by node(s) {', '.join(map(repr, users))}" if users else "")
                    + f"; pass it, e.g. `--input {name}=...`",
                ))
        for name in inputs:
            if name not in graph.inputs:
                problems.append(Problem(
                    "unknown_graph_input", None,
                    f"input {name!r} was given but graph {graph.name!r} has no such input; its inputs: {', '.join(graph.inputs) or 'none'}",
                ))

    if problems:
        raise GraphValidationError(graph.name, problems)
    return ValidatedGraph(graph, catalog, nodes, edges, order, upstream, outputs)
