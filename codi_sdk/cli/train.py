"""``codi train toyworld``: the three CoDi training stages on ToyWorld."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

from . import app

train_app = typer.Typer(help="Train the CoDi stages.", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("toyworld")
def toyworld(
    out: Path = typer.Option(..., "--out", help="Folder for components, losses.csv, state.json, checkpoints."),
    stage: str = typer.Option("all", "--stage", help="all, 1, 2 or 3 (or a comma list, e.g. 2,3)."),
    modalities: str = typer.Option("", "--modalities", help="Comma list; default: every installed modality."),
    scale: float = typer.Option(1.0, "--scale", help="Multiply every step count (e.g. 0.01 for a smoke run)."),
    seed: int = typer.Option(0, "--seed"),
    recipe: Path = typer.Option(None, "--recipe", help="JSON file overriding ToyWorldRecipe fields."),
    ship: bool = typer.Option(False, "--ship", help="Copy the trained weights into the installed plugin packages."),
) -> None:
    """Train every installed modality on ToyWorld (resumable: rerun the same command to continue)."""
    from ..training.recipe import ToyWorldRecipe
    from ..training.stages import ToyWorldTrainer

    stages = {1, 2, 3} if stage == "all" else set()
    if stage != "all":
        try:
            stages = {int(s) for s in stage.split(",")}
        except ValueError:
            stages = {0}
        if not stages <= {1, 2, 3}:
            typer.echo(f"error: --stage {stage!r}; accepted: all, 1, 2, 3 or a comma list", err=True)
            raise typer.Exit(2)
    fields = json.loads(recipe.read_text()) if recipe else {}
    fields.update(scale=scale, seed=seed)
    trainer = ToyWorldTrainer(out, ToyWorldRecipe(**fields), modalities=[m for m in modalities.split(",") if m] or None)
    state = trainer.run(sorted(stages))
    if trainer.accelerator.is_main_process:
        typer.echo(json.dumps(state["done"], indent=2))
        if ship:
            for m in trainer.modalities:
                target = trainer.registry.get(m).shipped_weights_dir()
                tmp = target.with_name(target.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(out / m, tmp)
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
                typer.echo(f"shipped {m} -> {target}")
