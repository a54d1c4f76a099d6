"""The executor: runs a validated graph in topological order, independent branches at once.

Each node starts as soon as every node it reads from has finished, on a thread pool, so branches
that do not depend on each other run concurrently (the services release the GIL: CTranslate2,
ONNX Runtime, PyTorch, subprocesses). A failing node is recorded under its name with its cause;
the nodes downstream of it are skipped, and everything else still runs to completion.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import InvalidInputError
from ..io import atomic_write_text
from . import types as vtypes
from .catalog import NodeCatalog
from .errors import NodeError, StudioRunError
from .graph import Graph
from .validate import ValidatedGraph, validate_graph

#: ``on_event(event, result)`` is called with ``"started"``, ``"finished"``, ``"failed"`` or ``"skipped"``.
EventCallback = Callable[[str, "NodeResult"], None]


@dataclass
class NodeResult:
    """What happened to one node: ``status`` is ``ok``, ``failed``, ``skipped`` or ``pending``.

    ``outputs`` maps output ports to values (when ``ok``); ``seconds`` is the node's own run time;
    ``started`` its start, in seconds after the run began; ``error`` the :class:`NodeError` (its
    ``__cause__`` the original exception) and ``traceback`` its text, when ``failed``; ``reason``
    why it was skipped.
    """

    name: str
    type: str
    status: str = "pending"
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    started: float | None = None
    error: NodeError | None = None
    traceback: str = ""
    reason: str = ""


@dataclass
class RunResult:
    """The result of a run: every node's :class:`NodeResult` and the graph outputs that were produced."""

    graph: str
    nodes: dict[str, NodeResult]
    outputs: dict[str, Any]
    output_types: dict[str, str]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.nodes.values())

    @property
    def failed(self) -> dict[str, NodeError]:
        """Failed nodes and their errors."""
        return {n: r.error for n, r in self.nodes.items() if r.status == "failed" and r.error is not None}

    @property
    def skipped(self) -> dict[str, str]:
        """Skipped nodes and why."""
        return {n: r.reason for n, r in self.nodes.items() if r.status == "skipped"}

    def timings(self) -> dict[str, float]:
        """Seconds spent in each node that ran."""
        return {n: r.seconds for n, r in self.nodes.items() if r.seconds is not None}

    def raise_for_failures(self) -> "RunResult":
        """Raise :class:`StudioRunError` naming each failed node and its cause; return self if none failed."""
        if self.failed:
            raise StudioRunError(self.graph, self.failed, self.skipped)
        return self

    def summary(self) -> dict[str, Any]:
        """A JSON-ready record of the run: status, timing and error of every node."""
        return {
            "graph": self.graph,
            "ok": self.ok,
            "seconds": round(self.seconds, 4),
            "nodes": {
                n: {
                    "type": r.type,
                    "status": r.status,
                    "seconds": None if r.seconds is None else round(r.seconds, 4),
                    "started": None if r.started is None else round(r.started, 4),
                    **({"error": str(r.error.__cause__ or r.error)} if r.error else {}),
                    **({"reason": r.reason} if r.reason else {}),
                    "outputs": {p: vtypes.describe(v) for p, v in r.outputs.items()},
                }
                for n, r in self.nodes.items()
            },
        }

    def save(self, out_dir: str | os.PathLike, intermediate: bool = False) -> dict[str, Path]:
        """Write each produced graph output to ``out_dir/<name>.<ext>`` and the run record to ``run.json``.

        Every file is written atomically. With ``intermediate`` every node output is written as
        well, to ``out_dir/nodes/<node>.<port>.<ext>``. Returns the paths by output name.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = {name: vtypes.save(self.output_types[name], value, out / name) for name, value in self.outputs.items()}
        if intermediate:
            for n, r in self.nodes.items():
                for port, value in r.outputs.items():
                    written[f"{n}.{port}"] = vtypes.save("any", value, out / "nodes" / f"{n}.{port}")
        record = self.summary() | {"files": {k: str(p.relative_to(out)) for k, p in written.items()}}
        atomic_write_text(out / "run.json", json.dumps(record, indent=2) + "\n")
        return written


class _RichProgress:
    """A rich progress bar over nodes, with one line per finished node (written to stderr)."""

    def __init__(self, graph: str, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=False,
        )
        self.graph = graph
        self.running: list[str] = []
        self.task = self.progress.add_task(graph, total=total)

    def __enter__(self) -> "_RichProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, event: str, r: NodeResult) -> None:
        if event == "started":
            self.running.append(r.name)
        else:
            if r.name in self.running:
                self.running.remove(r.name)
            mark = {"finished": "[green]done[/]", "failed": "[red]FAILED[/]", "skipped": "[yellow]skipped[/]"}[event]
            detail = f"{r.seconds:.2f} s" if r.seconds is not None else r.reason
            if event == "failed" and r.error is not None:
                detail += f" — {r.error.__cause__ or r.error}"
            self.progress.console.print(f"  {mark} {r.name} ({r.type}) {detail}", markup=True, highlight=False)
            self.progress.advance(self.task)
        running = ", ".join(self.running)
        self.progress.update(self.task, description=f"{self.graph}" + (f": {running}" if running else ""))


def _run_node(vg: ValidatedGraph, name: str, values: dict[str, Any], result: NodeResult, t0: float) -> NodeResult:
    node = vg.nodes[name]
    spec = vg.graph.nodes[name]
    result.started = time.perf_counter() - t0
    start = time.perf_counter()
    try:
        inputs: dict[str, Any] = {}
        for port_name, port in node.input_ports().items():
            sources = [e for e in vg.edges if e.target == name and e.target_port == port_name]
            if not sources:
                inputs[port_name] = [] if port.many and port.default is None else port.default
                continue
            got = [values[e.source] if e.from_graph_input else values[e.source][e.source_port] for e in sources]
            inputs[port_name] = got if port.many else got[0]
        outputs = node.run(inputs)
        if not isinstance(outputs, Mapping):
            raise TypeError(f"run() returned {type(outputs).__name__}; expected a dict of output ports")
        declared = node.output_ports()
        missing = [p for p in declared if p not in outputs]
        if missing:
            raise TypeError(f"run() returned no value for output port(s) {', '.join(missing)}")
        for port_name, port in declared.items():
            problem = vtypes.check(port.type, outputs[port_name])
            if problem:
                raise TypeError(f"output port {port_name!r}: {problem}")
        result.outputs = {p: outputs[p] for p in declared}
        result.status = "ok"
    except Exception as exc:
        err = NodeError(name, spec.type, f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
        result.error = err
        result.traceback = traceback.format_exc()
        result.status = "failed"
    result.seconds = time.perf_counter() - start
    return result


def run_graph(
    graph: Graph | ValidatedGraph,
    inputs: Mapping[str, Any] | None = None,
    *,
    catalog: NodeCatalog | None = None,
    max_workers: int | None = None,
    progress: bool = False,
    on_event: EventCallback | None = None,
    check_services: bool = True,
) -> RunResult:
    """Validate (unless given a :class:`ValidatedGraph`) and run a graph; never raises for a failing node.

    ``inputs`` maps graph input names to values (see :func:`codi_sdk.studio.types.coerce`: file
    paths, arrays, typed outputs, strings). ``max_workers`` bounds how many nodes run at once
    (default: up to 4). ``progress`` shows a rich progress display on stderr; ``on_event`` receives
    ``(event, NodeResult)`` as nodes start and end. Returns a :class:`RunResult`; call
    :meth:`RunResult.raise_for_failures` to turn failed nodes into an exception.
    """
    inputs = dict(inputs or {})
    vg = graph if isinstance(graph, ValidatedGraph) else validate_graph(graph, catalog, inputs=inputs, check_services=check_services)
    g = vg.graph
    values: dict[str, Any] = {}
    for name, gi in g.inputs.items():
        raw = inputs[name] if name in inputs else gi.default
        try:
            values[name] = vtypes.coerce(gi.type, raw, vg.catalog.registry if gi.type not in vtypes.MEDIA_TYPES else None)
        except Exception as exc:
            raise InvalidInputError(f"graph input {name!r} ({gi.type}): {exc}") from exc

    results = {n: NodeResult(n, g.nodes[n].type) for n in vg.order}
    workers = max_workers or min(4, max(1, len(vg.order)))
    display = _RichProgress(g.name, len(vg.order)) if progress else None

    def emit(event: str, r: NodeResult) -> None:
        for cb in (display, on_event):
            if cb is not None:
                cb(event, r)

    t0 = time.perf_counter()
    if display:
        display.__enter__()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="studio") as pool:
            running: dict[Future, str] = {}
            done: set[str] = set()
            while len(done) < len(vg.order):
                for name in vg.order:
                    if name in done or name in running.values():
                        continue
                    ups = vg.upstream[name]
                    bad = [u for u in ups if u in done and results[u].status != "ok"]
                    if bad:
                        r = results[name]
                        r.status = "skipped"
                        first = bad[0]
                        r.reason = f"upstream node {first!r} {'failed' if results[first].status == 'failed' else 'was skipped'}"
                        done.add(name)
                        emit("skipped", r)
                    elif ups <= done:
                        emit("started", results[name])
                        running[pool.submit(_run_node, vg, name, values, results[name], t0)] = name
                if not running:
                    if len(done) < len(vg.order):  # cannot happen in a validated (acyclic) graph
                        raise RuntimeError(f"graph {g.name!r}: no node can start; pending: {sorted(set(vg.order) - done)}")
                    continue
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    name = running.pop(fut)
                    r = fut.result()
                    values[name] = r.outputs
                    done.add(name)
                    emit("finished" if r.status == "ok" else "failed", r)
    finally:
        if display:
            display.__exit__(None, None, None)

    outputs = {}
    output_types = {}
    for out_name, (node, port) in vg.outputs.items():
        if results[node].status == "ok":
            outputs[out_name] = results[node].outputs[port]
            output_types[out_name] = vg.output_type(out_name)
    return RunResult(g.name, results, outputs, output_types, time.perf_counter() - t0)
