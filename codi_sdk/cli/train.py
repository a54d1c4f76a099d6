"""``codi train toyworld``: the three CoDi training stages on ToyWorld."""

from __future__ import annotations

import json
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
    base: str = typer.Option(None, "--base", help="'shipped' or a run folder: adopt every modality not in --modalities from it, frozen."),
    eval_results: list[Path] = typer.Option([], "--eval-results", help="results.json files of `codi eval` to put on the training cards (with --ship)."),
    ship_exclude: list[str] = typer.Option([], "--ship-exclude", help="MODALITY/COMPONENT to leave out of the shipped folder (e.g. audio/vocoder)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="1, or 2: train in two processes (the recipe's side_lane beside the rest); faster on 2+ cores."),
) -> None:
    """Train every installed modality on ToyWorld (resumable: rerun the same command to continue)."""
    from pydantic import ValidationError

    from ..training.card import write_card
    from ..training.ship import ship as ship_weights
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
    try:
        fields = json.loads(recipe.read_text()) if recipe else {}
        if not isinstance(fields, dict):
            raise ValueError(f"it holds a JSON {type(fields).__name__}")
    except (OSError, ValueError) as exc:  # ValueError: also bad JSON and undecodable bytes
        typer.echo(f"error: --recipe {recipe}: {exc}; accepted: a JSON object of ToyWorldRecipe fields", err=True)
        raise typer.Exit(2)
    fields.update(scale=scale, seed=seed)
    chosen = [m for m in modalities.split(",") if m]
    if base is not None and not chosen:
        typer.echo("error: --base needs --modalities (the modalities to train against the adopted ones)", err=True)
        raise typer.Exit(2)
    from ..registry import get_registry

    everything = None
    if base is not None:  # the chosen modalities plus every installed one the base has weights for
        reg = get_registry()
        has = (lambda m: reg.get(m).default_weights() is not None) if base == "shipped" else (lambda m: (Path(base) / m).is_dir())
        everything = [m for m in reg.names() if m in chosen or has(m)]
    if jobs not in (1, 2):
        typer.echo(f"error: --jobs {jobs}; accepted: 1 or 2", err=True)
        raise typer.Exit(2)
    try:
        checked = ToyWorldRecipe(**fields)
    except ValidationError as exc:
        where = f"--recipe {recipe}" if recipe else "the recipe"
        typer.echo(f"error: {where}: {exc}\naccepted fields: {', '.join(ToyWorldRecipe.model_fields)}", err=True)
        raise typer.Exit(2)
    trainer = ToyWorldTrainer(out, checked, modalities=everything or chosen or None)
    if base is not None:
        trainer.adopt_base(base, [m for m in trainer.modalities if m not in chosen])
    state = trainer.run_parallel(sorted(stages), jobs)  # jobs 1: trainer.run
    if trainer.accelerator.is_main_process:
        typer.echo(json.dumps(state["done"], indent=2))
        if ship:
            for m in [m for m in trainer.modalities if m not in trainer.frozen]:
                target = trainer.registry.get(m).shipped_weights_dir()
                size = ship_weights(out / m, target, exclude=[e.split("/", 1)[1] for e in ship_exclude if e.startswith(f"{m}/")])
                write_card(m, out, target, [json.loads(p.read_text()) for p in eval_results])
                typer.echo(f"shipped {m} -> {target} ({size / 1e6:.1f} MB, float16)")
