"""Errors raised by Studio: every one names the graph element (node, port, graph input) at fault."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CodiError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph, found before anything runs.

    ``code`` is one of: ``schema``, ``unknown_node_type``, ``invalid_params``, ``unknown_type``,
    ``unknown_port``, ``unknown_reference``, ``type_mismatch``, ``cycle``, ``unconnected_input``,
    ``missing_graph_input``, ``unknown_graph_input``, ``service_unavailable``.
    ``node`` is the node (or graph input / output) it concerns, ``None`` for the graph as a whole.
    """

    code: str
    node: str | None
    message: str

    def __str__(self) -> str:
        return f"node {self.node!r}: {self.message}" if self.node else self.message


class GraphValidationError(CodiError, ValueError):
    """A graph that cannot run; ``problems`` lists everything found, each naming its node."""

    def __init__(self, graph: str, problems: list[Problem]) -> None:
        self.graph = graph
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"graph {graph!r} is invalid ({n} problem{'s' if n != 1 else ''}):\n{lines}")

    @property
    def codes(self) -> list[str]:
        return [p.code for p in self.problems]


class ServiceUnavailableError(CodiError, RuntimeError):
    """A node's service (program, Python package, model) is not installed; the message says how to install it."""


class NodeError(CodiError, RuntimeError):
    """A node failed while running; ``node`` is its name, ``__cause__`` the original error."""

    def __init__(self, node: str, node_type: str, message: str) -> None:
        self.node = node
        self.node_type = node_type
        super().__init__(f"node {node!r} ({node_type}) failed: {message}")


class StudioRunError(CodiError, RuntimeError):
    """A run in which some nodes failed; ``failures`` maps each failed node to its :class:`NodeError`."""

    def __init__(self, graph: str, failures: dict[str, NodeError], skipped: dict[str, str]) -> None:
        self.graph = graph
        self.failures = failures
        self.skipped = skipped
        lines = [f"  - {err}" for err in failures.values()]
        lines += [f"  - node {name!r} skipped: {why}" for name, why in skipped.items()]
        super().__init__(f"graph {graph!r}: {len(failures)} node(s) failed:\n" + "\n".join(lines))
