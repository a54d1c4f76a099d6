"""``codi generate``: any-to-any generation from the shell, one request or a JSONL batch."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import typer

from . import app

EXTENSIONS = {"image": ".png", "video": ".gif", "audio": ".wav", "text": ".txt"}
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            _fail(f"{what} {item!r} is not MODALITY=VALUE (e.g. text=\"a red circle\" or audio=in.wav)")
        m, v = item.split("=", 1)
        out.append((m.strip(), v))
    return out


def _parse_weights(items: list[str]) -> dict[str, float] | None:
    if not items:
        return None
    weights = {}
    for m, v in _pairs(items, "--weight"):
        try:
            weights[m] = float(v)
        except ValueError:
            _fail(f"--weight {m}={v!r}: not a number; accepted: MODALITY=NUMBER ≥ 0")
    return weights


def _request_inputs(inputs: Any, where: str) -> list[tuple[str, Any]]:
    if not isinstance(inputs, dict):
        _fail(f"{where}: 'inputs' must be an object {{modality: text or path (or a list of them)}}")
    pairs = []
    for m, v in inputs.items():
        for value in v if isinstance(v, list) else [v]:
            pairs.append((m, value))
    return pairs


@app.command("generate")
def generate(
    input: list[str] = typer.Option([], "--input", "-i", help="MODALITY=VALUE (text, or a file path); repeatable."),
    output: list[str] = typer.Option([], "--output", "-O", help="Modality to generate; repeatable."),
    out: Path = typer.Option(Path("out"), "-o", "--out", help="Output folder."),
    batch: Path = typer.Option(None, "--batch", help="JSONL file: one {id, inputs, outputs, seed} per line."),
    weight: list[str] = typer.Option([], "--weight", help="MODALITY=WEIGHT for the inputs of that modality."),
    steps: int = typer.Option(50, "--steps"),
    guidance: float = typer.Option(7.5, "--guidance"),
    seed: int = typer.Option(0, "--seed"),
    scheduler: str = typer.Option("ddim", "--scheduler", help="ddim or dpm++"),
    num_samples: int = typer.Option(1, "--num-samples"),
    joint: str = typer.Option("cross", "--joint", help="cross (paper), self (released CoDi code) or none"),
    environment: str = typer.Option("denoised", "--environment",
                                    help="What each output shows the others: denoised (its predicted clean latent) or noisy (the paper)."),
    guide_environment: bool = typer.Option(True, "--guide-environment/--no-guide-environment",
                                           help="Guidance also strengthens the pull between outputs (the unconditional branch drops the environment)."),
    environment_guidance: Optional[float] = typer.Option(
        None, "--environment-guidance",
        help="Guidance scale of the pull between outputs (default 8; the same value as --guidance gives the plain wiring).",
    ),
    environment_guidance_end: float = typer.Option(
        1.0, "--environment-guidance-end", help="The fraction of the steps, from the first, that use --environment-guidance."
    ),
    weights_dir: list[str] = typer.Option([], "--weights-dir", help="MODALITY=FOLDER to load instead of the shipped weights."),
) -> None:
    """Generate OUTPUT modalities from INPUTs, e.g.
    `codi generate -i text="a red circle moving left" -O image -O audio -o out/`."""
    from ..composer import Composer
    from ..errors import CodiError

    joint_opt = {"cross": "cross", "self": "self", "none": False}.get(joint)
    if joint_opt is None:
        _fail(f"--joint {joint!r}; accepted: cross, self, none")
    env_opts: dict[str, Any] = {"environment_guidance_end": environment_guidance_end}
    if environment_guidance is not None:
        env_opts["environment_guidance"] = environment_guidance
    folders = dict(_pairs(weights_dir, "--weights-dir")) if weights_dir else None
    composer = Composer(weights=folders)
    if batch is not None:
        if input or output:
            _fail("--batch takes its inputs and outputs from the file; drop --input/--output")
        if not batch.is_file():
            _fail(f"batch file not found: {batch}")
        requests = []
        for n, line in enumerate(batch.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                req = json.loads(line)
            except json.JSONDecodeError as exc:
                _fail(f"{batch}:{n}: not JSON ({exc.msg})")
            if not isinstance(req, dict):
                _fail(f"{batch}:{n}: each line must be an object with id, inputs, outputs, seed")
            rid = str(req.get("id", ""))
            if not _SAFE_ID.match(rid):
                _fail(f"{batch}:{n}: id {rid!r}; accepted: letters, digits, '.', '_', '-' (a folder name)")
            outs = req.get("outputs")
            if not isinstance(outs, list) or not outs:
                _fail(f"{batch}:{n}: 'outputs' must be a non-empty list of modalities")
            requests.append((rid, _request_inputs(req.get("inputs", {}), f"{batch}:{n}"), outs, int(req.get("seed", seed))))
        ids = [r[0] for r in requests]
        if len(set(ids)) != len(ids):
            _fail(f"{batch}: ids repeat; each request needs its own id")
        try:  # validate every request before sampling any
            for rid, pairs, outs, _ in requests:
                composer.check_options(outs, steps, guidance, num_samples, scheduler, joint_opt, environment, guide_environment,
                                       **env_opts)
                for m, v in pairs:
                    composer.registry.get(m).convert(v)
            for rid, pairs, outs, s in requests:
                result = composer(pairs, outs, steps=steps, guidance=guidance, seed=s, scheduler=scheduler,
                                  num_samples=num_samples, joint=joint_opt, environment=environment,
                                  guide_environment=guide_environment, progress=False, **env_opts)
                for path in result.save(out / rid, EXTENSIONS):
                    typer.echo(path)
        except CodiError as exc:
            _fail(str(exc))
        return
    if not output:
        _fail("no --output given; accepted: one or more installed modalities (see `codi plugins`)")
    try:
        result = composer(_pairs(input, "--input"), output, steps=steps, guidance=guidance, seed=seed, scheduler=scheduler,
                          weights=_weights_per_input(_pairs(input, "--input"), _parse_weights(weight)),
                          num_samples=num_samples, joint=joint_opt, environment=environment,
                          guide_environment=guide_environment, **env_opts)
    except CodiError as exc:
        _fail(str(exc))
    for path in result.save(out, EXTENSIONS):
        typer.echo(path)


def _weights_per_input(pairs: list[tuple[str, str]], weights: dict[str, float] | None) -> list[float] | None:
    if weights is None:
        return None
    unknown = set(weights) - {m for m, _ in pairs}
    if unknown:
        _fail(f"--weight for {sorted(unknown)}, which are not among the inputs")
    return [weights.get(m, 1.0) for m, _ in pairs]
