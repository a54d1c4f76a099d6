"""``codi eval``: any-to-any evaluation on ToyWorld with a pluggable generator."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn, Optional

import typer

from . import app


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command("eval")
def eval_cmd(
    tasks: Optional[str] = typer.Option(
        None,
        "--tasks",
        help="Comma-separated tasks, e.g. 'text->image,audio->image,text->image+audio'. "
        "Default: all 12 single-input single-output pairs, image+audio->video and three joint tasks.",
    ),
    split: str = typer.Option("seen", "--split", help="seen (training scenes, fresh seeds) or heldout (unseen colour-shape pairs)."),
    n: int = typer.Option(48, "--n", help="Scenes per task."),
    generator: Optional[str] = typer.Option(
        None, "--generator", "-g", help="Registered generator, e.g. oracle or chance (default: compose, when registered)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the input renderings and of generation."),
    batch_size: int = typer.Option(16, "--batch-size", help="Items per generate() call."),
    out: Path = typer.Option(Path("out/eval"), "--out", "-o", help="Folder for results.json, results.md, heatmap.png."),
    steps: int = typer.Option(50, "--steps", help="Sampling steps (compose, cascade, independent)."),
    guidance: float = typer.Option(4.0, "--guidance", help="Guidance scale (compose, cascade, independent)."),
    environment: str = typer.Option(
        "denoised", "--environment", help="Joint tasks: what each output shows the others, denoised or noisy (the paper)."
    ),
    guide_environment: bool = typer.Option(
        True, "--guide-environment/--no-guide-environment", help="Joint tasks: guidance also strengthens the pull between outputs."
    ),
    environment_guidance: Optional[float] = typer.Option(
        None, "--environment-guidance", help="Joint tasks: the guidance scale of that pull (default 8; the same value as --guidance gives the plain wiring)."
    ),
    environment_guidance_end: float = typer.Option(
        1.0, "--environment-guidance-end", help="Joint tasks: the fraction of the steps, from the first, that use --environment-guidance."
    ),
    weights_dir: Optional[Path] = typer.Option(
        None, "--weights-dir", help="A training run folder (OUT of `codi train`) to evaluate instead of the shipped weights."
    ),
    device: str = typer.Option("cpu", "--device", help="Device of the models (compose, cascade, independent), e.g. cpu or cuda."),
) -> None:
    """Generate for each task, probe the outputs, and write accuracy, joint coherence and a heatmap."""
    from ..errors import CodiError
    from ..eval import GENERATORS, evaluate, get_generator, markdown_table, parse_tasks, write_results

    if split not in ("seen", "heldout"):
        _fail(f"unknown split {split!r}; accepted: seen, heldout")
    if generator is None:
        if "compose" not in GENERATORS:
            _fail(f"no default generator is registered yet; pass --generator ({', '.join(sorted(GENERATORS))})")
        generator = "compose"
    try:
        task_list = parse_tasks(tasks)
        kwargs = {}
        if generator in ("compose", "cascade", "independent", "autoencode"):
            from ..composer import Composer

            folders = {m: weights_dir / m for m in ("text", "image", "video", "audio") if (weights_dir / m).is_dir()} if weights_dir else None
            kwargs = {"composer": Composer(weights=folders, device=device)}
            if generator != "autoencode":  # the round trip samples nothing
                kwargs |= {"steps": steps, "guidance": guidance, "environment": environment, "guide_environment": guide_environment,
                           "environment_guidance_end": environment_guidance_end}
                if environment_guidance is not None:
                    kwargs["environment_guidance"] = environment_guidance
        gen = get_generator(generator, **kwargs)
        results = evaluate(gen, task_list, split=split, n=n, seed=seed, batch_size=batch_size, progress=True)
        paths = write_results(results, out)
    except CodiError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write results to {out}: {exc}")
    typer.echo(markdown_table(results))
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
