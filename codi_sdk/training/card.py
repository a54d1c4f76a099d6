"""Training cards: what shipped weights are, how they were trained, and how well they do."""

from __future__ import annotations

import json
from pathlib import Path

from ..io import atomic_write_text
from .recipe import ToyWorldRecipe


def _tasks_touching(modality: str, results: dict) -> list[dict]:
    return [t for t in results.get("tasks", []) if modality in t["inputs"] or modality in t["outputs"]]


def training_card(modality: str, run: Path, eval_results: list[dict] | None = None) -> str:
    """Markdown card for one modality of a training run (``run/state.json`` + optional evaluations)."""
    state = json.loads((run / "state.json").read_text())
    recipe = state.get("recipe", {})
    auxiliary = ToyWorldRecipe.per(recipe.get("auxiliary_colors") or 0.0, modality, 0.0)
    align_share = (recipe.get("auxiliary_colors_align") or {}).get(modality, auxiliary)
    lines = [
        f"# Training card — codi-{modality}, ToyWorld weights",
        "",
        "Trained by `codi train toyworld --stage all` (codi-sdk's own training code) on ToyWorld v1",
        "(procedural, generated on the fly; training split only: no held-out colour–shape pair).",
        "",
        f"- seed: {recipe.get('seed')}",
        *([f"- training-only colours (orange, cyan, purple, pink) in {auxiliary:.0%} of the items"] if auxiliary else []),
        *([f"- training-only colours in {align_share:.0%} of the items of its alignment (stage 1)"] if align_share != auxiliary else []),
        f"- files: {', '.join(sorted(p.name for p in (run / modality).iterdir() if p.is_dir()))}",
        f"- size in the run folder (float32): {sum(f.stat().st_size for f in (run / modality).rglob('*') if f.is_file()) / 1e6:.2f} MB"
        " (shipped as float16: about half)",
        "",
        "## Sub-stages",
        "",
        "| sub-stage | steps | seconds | final losses |",
        "|---|---|---|---|",
    ]
    for name, info in sorted(state["done"].items(), key=lambda item: item[0][:1]):  # by stage; in order within one
        if name.endswith(f"-{modality}") or (modality == "text" and name.startswith("1-bridge")):
            # no losses: adopted from a base run (no steps recorded), or nothing to fit (0 steps: a warm start,
            # or a codec without parameters in the VAE's place)
            losses = ", ".join(f"{k} {v:.4g}" for k, v in info["final"].items()) or ("(adopted)" if "steps" not in info else "–")
            lines.append(f"| {name} | {info.get('steps', _steps_of(name, recipe))} | {info['seconds']} | {losses} |")
    lines += ["", "## Recipe", "", "```json", json.dumps(recipe, indent=2), "```"]
    for res in eval_results or []:
        rows = _tasks_touching(modality, res)
        if not rows:
            continue
        lines += ["", f"## Evaluation (`codi eval`, split `{res.get('split')}`, {res.get('n')} scenes per task)", ""]
        if res.get("note"):  # e.g. where rows of several evaluations were put together
            lines += [str(res["note"]), ""]
        lines += ["| task | accuracy | joint coherence |", "|---|---|---|"]
        for t in rows:
            coh = "–" if t.get("coherence") is None else f"{100 * t['coherence']:.1f} %"
            lines.append(f"| `{t['task']}` | {100 * t['accuracy']:.1f} % | {coh} |")
    return "\n".join(lines) + "\n"


def _steps_of(name: str, recipe: dict) -> str:
    kind, _, modality = name.partition("-")[2].partition("-")
    table = {"bridge": None, "align": "align_steps", "vae": "vae_steps", "decoder": "decoder_steps", "unet": "unet_steps",
             "refine": "unet_refine_steps", "joint": "joint_steps"}.get(kind)
    if kind == "bridge":
        return str(recipe.get("bridge_steps", "?"))
    value = recipe.get(table, {}) if table else {}
    return str(value.get(modality, "?")) if isinstance(value, dict) else str(value)


def write_card(modality: str, run: Path, target: Path, eval_results: list[dict] | None = None) -> Path:
    path = target / "TRAINING_CARD.md"
    atomic_write_text(path, training_card(modality, run, eval_results))
    return path
