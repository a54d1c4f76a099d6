"""``codi studio``: validate, run and draw Studio task graphs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from . import app

studio_app = typer.Typer(
    name="studio",
    help="Task graphs of models and services (i-Code Studio): validate, run, show.",
    no_args_is_help=True,
)
app.add_typer(studio_app, name="studio")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _load(path: Path):
    from ..studio import Graph, GraphValidationError

    try:
        return Graph.load(path)
    except GraphValidationError as exc:
        _fail(str(exc))


def _parse_inputs(graph, pairs: list[str]) -> dict[str, Any]:
    """``name=value`` pairs -> graph input values, read according to each input's type.

    Media and unknown types: ``value`` is a file path. ``text``: the literal text, or ``@file`` to
    read a file. ``json``: a JSON literal, or ``@file.json``. ``number``: a number.
    """
    values: dict[str, Any] = {}
    for pair in pairs:
        name, eq, raw = pair.partition("=")
        if not eq or not name:
            _fail(f"--input {pair!r}: expected NAME=VALUE, e.g. --input speech=in.wav")
        gi = graph.inputs.get(name)
        type_ = gi.type if gi is not None else "any"
        if raw.startswith("@"):
            path = Path(raw[1:])
            if type_ == "json":
                try:
                    values[name] = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError) as exc:
                    _fail(f"--input {name}: cannot read JSON from {path}: {exc}")
            else:
                values[name] = path
        elif type_ in ("text", "any"):
            values[name] = raw
        elif type_ == "json":
            try:
                values[name] = json.loads(raw)
            except json.JSONDecodeError:
                values[name] = raw
        elif type_ == "number":
            try:
                values[name] = float(raw)
            except ValueError:
                _fail(f"--input {name}: {raw!r} is not a number")
        else:
            values[name] = Path(raw)
    return values


@studio_app.command("validate")
def validate(
    graph_file: Path = typer.Argument(..., help="Graph file (.yaml, .yml or .json)."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=VALUE: also check that these inputs cover the graph's."),
    no_services: bool = typer.Option(False, "--no-services", help="Do not check that the nodes' services are installed."),
) -> None:
    """Check a graph without running it: node types, params, ports, types, cycles, inputs, services."""
    from ..studio import GraphValidationError, validate_graph

    graph = _load(graph_file)
    given = _parse_inputs(graph, inputs) if inputs else None
    try:
        vg = validate_graph(graph, inputs=given, check_services=not no_services)
    except GraphValidationError as exc:
        _fail(f"{graph_file}: {exc}")
    typer.echo(
        f"{graph_file}: graph {graph.name!r} is valid — {len(vg.nodes)} node(s) in order {', '.join(vg.order)}; "
        f"inputs: {', '.join(f'{k} ({v.type})' for k, v in graph.inputs.items()) or 'none'}; "
        f"outputs: {', '.join(vg.outputs) or 'none'}"
    )


@studio_app.command("run")
def run(
    graph_file: Path = typer.Argument(..., help="Graph file (.yaml, .yml or .json)."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=VALUE, repeatable. Media: a file path; text: the text or @file."),
    out: Path = typer.Option(Path("studio-out"), "--out", "-o", help="Folder for the outputs and run.json."),
    workers: int = typer.Option(0, "--workers", help="Nodes run at once (0: up to 4)."),
    intermediate: bool = typer.Option(False, "--intermediate", help="Also save every node's outputs under OUT/nodes/."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress display."),
    as_json: bool = typer.Option(False, "--json", help="Print the run record as JSON."),
) -> None:
    """Run a graph; outputs are written atomically to OUT/<output>.<ext>, timings to OUT/run.json.

    Exits with status 1 if a node failed (what does not depend on it still runs and is saved).
    """
    from ..errors import CodiError
    from ..studio import GraphValidationError, run_graph

    graph = _load(graph_file)
    given = _parse_inputs(graph, inputs)
    try:
        result = run_graph(graph, given, max_workers=workers or None, progress=progress)
    except GraphValidationError as exc:
        _fail(f"{graph_file}: {exc}")
    except CodiError as exc:
        _fail(f"{graph_file}: {exc}")
    written = result.save(out, intermediate=intermediate)
    if as_json:
        typer.echo(json.dumps(result.summary() | {"files": {k: str(p) for k, p in written.items()}}, indent=2))
    else:
        _print_table(result, written)
    if not result.ok:
        for name, err in result.failed.items():
            typer.echo(f"node {name!r} failed: {err.__cause__ or err}", err=True)
        raise typer.Exit(1)


def _print_table(result, written: dict[str, Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..studio.types import describe

    table = Table(title=f"{result.graph}: {result.seconds:.2f} s")
    for col in ("node", "type", "status", "seconds", "outputs"):
        table.add_column(col)
    for name, r in result.nodes.items():
        status = {"ok": "[green]ok[/]", "failed": "[red]failed[/]", "skipped": "[yellow]skipped[/]"}.get(r.status, r.status)
        detail = "; ".join(f"{p}={describe(v)}" for p, v in r.outputs.items()) if r.status == "ok" else (
            str(r.error.__cause__ or r.error) if r.error else r.reason
        )
        table.add_row(name, r.type, status, "-" if r.seconds is None else f"{r.seconds:.3f}", detail)
    console = Console()
    console.print(table)
    for name, path in written.items():
        console.print(f"wrote {name}: {path}", highlight=False)


@studio_app.command("show")
def show(
    graph_file: Path = typer.Argument(..., help="Graph file (.yaml, .yml or .json)."),
    png: Optional[Path] = typer.Option(None, "--png", "-o", help="PNG to draw (default: <graph file stem>.png in the current folder)."),
    no_png: bool = typer.Option(False, "--no-png", help="Only print the Mermaid text."),
) -> None:
    """Print the graph as a Mermaid flowchart and draw it as a PNG."""
    from ..studio import GraphValidationError, draw_png, to_mermaid, validate_graph

    graph = _load(graph_file)
    try:
        vg = validate_graph(graph, check_services=False)
    except GraphValidationError as exc:  # still draw what is there, but say what is wrong
        vg = None
        typer.echo(f"warning: {exc}", err=True)
    typer.echo(to_mermaid(graph, vg), nl=False)
    if not no_png:
        target = png or Path(f"{graph_file.stem}.png")
        draw_png(graph, target, vg)
        typer.echo(f"wrote {target}", err=True)


@studio_app.command("nodes")
def nodes(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the installed node types, their ports and the plugin providing each."""
    from ..studio import NodeCatalog

    cat = NodeCatalog.load()
    rows = []
    for name in cat.names():
        cls = cat.types[name]
        rows.append({
            "type": name,
            "plugin": cat.providers[name],
            "description": cls.description,
            "inputs": {k: p.type for k, p in cls.inputs.items()},
            "outputs": {k: p.type for k, p in cls.outputs.items()},
        })
    if as_json:
        typer.echo(json.dumps({"node_types": rows, "failures": {k: str(v) for k, v in cat.failures.items()}}, indent=2))
        return
    for r in rows:
        ports = ""
        if r["inputs"] or r["outputs"]:
            ins = ", ".join(f"{k}: {t}" for k, t in r["inputs"].items())
            outs = ", ".join(f"{k}: {t}" for k, t in r["outputs"].items())
            ports = f"  ({ins}) -> ({outs})"
        else:
            ports = "  (ports set by params)"
        typer.echo(f"{r['type']:<20} [{r['plugin']}] {r['description']}{ports}")
    for plugin, err in cat.failures.items():
        typer.echo(f"plugin {plugin} failed: {err}", err=True)
    sys.stdout.flush()
