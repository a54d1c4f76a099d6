"""``codi convert-official``: the released CoDi checkpoints -> codi-official weights folders."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command("convert-official")
def convert_official(
    source: Path = typer.Option(..., "--from", help="Folder with the official CoDi .pth files (CoDi_encoders.pth, ...)."),
    destination: Path = typer.Option(..., "--to", help="New (or empty) folder to write the converted weights to."),
    dtype: str = typer.Option("fp32", "--dtype", help="Floating-point type of the written weights: fp16 or fp32."),
    strict: bool = typer.Option(False, "--strict", help="Fail, writing nothing, on any unused or missing key."),
) -> None:
    """Convert the official CoDi checkpoints (read with torch.load(weights_only=True), never full
    unpickling) into save_pretrained folders with safetensors, and print what happened to every key."""
    from ..errors import CodiError
    from ..official.convert import convert_official as run

    try:
        report = run(source, destination, dtype=dtype, strict=strict)
    except CodiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(report.format())
    typer.echo(f"wrote {destination}")
