"""``codi plugins``: the installed modality plugins, their components and weights."""

from __future__ import annotations

import json

import typer

from . import app


@app.command("plugins")
def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """List installed modality plugins: modality, distribution, version, components, weights found."""
    from ..registry import get_registry

    reg = get_registry()
    rows = []
    for name in reg.names():
        entry = reg.modalities[name]
        m = entry.modality
        weights = m.default_weights()
        rows.append(
            {
                "modality": name,
                "plugin": entry.plugin.name,
                "distribution": entry.plugin.distribution,
                "version": entry.plugin.version,
                "api_version": entry.plugin.api_version,
                "components": list(m.components),
                "weights": str(weights) if weights else None,
                "weights_found": m.weights_found(),
            }
        )
    failures = {k: str(v) for k, v in reg.failures.items()}
    if as_json:
        typer.echo(json.dumps({"modalities": rows, "failures": failures, "blocked": sorted(reg.blocked)}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="codi-sdk modality plugins")
    for col in ("modality", "distribution", "version", "components", "weights found"):
        table.add_column(col)
    for r in rows:
        found = ", ".join(r["weights_found"]) or "none"
        table.add_row(r["modality"], r["distribution"] or "-", r["version"] or "-", ", ".join(r["components"]), found)
    console = Console()
    console.print(table)
    for name, err in failures.items():
        console.print(f"[red]plugin {name} not loaded:[/red] {err}")
    if reg.blocked:
        console.print(f"blocked: {', '.join(sorted(reg.blocked))}")
